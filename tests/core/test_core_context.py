"""The per-call context: verbose lines, warnings, progress, cancellation, output allocation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans, capture_stdout, record_warnings
from sklearn.datasets import make_blobs

from bridge_server.core import CallCancelled, CallContext, MiniBatchKMeans, call_context

X, _ = make_blobs(n_samples=3000, n_features=3, centers=6, random_state=0)


def _collecting_context(**kwargs):
    events = {"verbose": [], "warnings": [], "progress": [], "alloc": []}
    ctx = CallContext(
        on_verbose=events["verbose"].append,
        on_warning=lambda msg, cat: events["warnings"].append((cat, msg)),
        on_progress=lambda done, total, phase: events["progress"].append((done, total, phase)),
        **kwargs,
    )
    return ctx, events


@pytest.mark.parametrize(
    "params",
    [
        dict(n_clusters=6, random_state=0, verbose=1, batch_size=200),
        dict(n_clusters=6, random_state=1, verbose=True, init="random", tol=1e-2),
        dict(n_clusters=40, random_state=2, verbose=2, reassignment_ratio=0.5, batch_size=100,
             max_iter=2, max_no_improvement=None),
    ],
)  # fmt: skip
def test_verbose_lines_equal_sklearns_stdout(params):
    expected = capture_stdout(lambda: SkMiniBatchKMeans(**params).fit(X))
    ctx, events = _collecting_context()
    with call_context(ctx):
        printed = capture_stdout(lambda: MiniBatchKMeans(**params).fit(X))
    assert printed == []  # nothing printed inside a server call
    assert events["verbose"] == expected
    assert any("Minibatch step" in line for line in expected)


def test_verbose_without_context_prints_like_sklearn():
    params = dict(n_clusters=3, random_state=0, verbose=1, batch_size=500)
    expected = capture_stdout(lambda: SkMiniBatchKMeans(**params).fit(X))
    assert capture_stdout(lambda: MiniBatchKMeans(**params).fit(X)) == expected


def test_partial_fit_verbose_reassignment_line():
    params = dict(n_clusters=60, random_state=0, verbose=1, reassignment_ratio=0.9)
    chunk = X[:500]
    expected = capture_stdout(lambda: SkMiniBatchKMeans(**params).partial_fit(chunk))
    assert capture_stdout(lambda: MiniBatchKMeans(**params).partial_fit(chunk)) == expected
    assert any("Reassigning" in line for line in expected)


def test_warnings_go_to_the_context():
    init = X[:3].copy()
    expected = record_warnings(lambda: SkMiniBatchKMeans(n_clusters=3, init=init, n_init=2).fit(X))
    ctx, events = _collecting_context()
    with call_context(ctx):
        direct = record_warnings(lambda: MiniBatchKMeans(n_clusters=3, init=init, n_init=2).fit(X))
    assert direct == []
    assert events["warnings"] == expected


def test_progress_events():
    ctx, events = _collecting_context()
    with call_context(ctx):
        est = MiniBatchKMeans(n_clusters=6, random_state=0, batch_size=100).fit(X)
    fit_events = [e for e in events["progress"] if e[2] == "fit"]
    assert len(fit_events) >= est.n_steps_ - 1
    assert all(total == fit_events[0][1] for _, total, _ in fit_events)
    assert fit_events[-1][0] == fit_events[-1][1]
    with call_context(ctx):
        est.predict(X)
    assert events["progress"][-1] == (X.shape[0], X.shape[0], "predict")


def test_cancellation_between_steps():
    cancel = threading.Event()
    steps_seen = []

    def on_progress(done, total, phase):
        steps_seen.append(done)
        if done == 3:
            cancel.set()

    ctx = CallContext(on_progress=on_progress, cancel_event=cancel)
    est = MiniBatchKMeans(n_clusters=6, random_state=0, batch_size=50, max_no_improvement=None)
    with call_context(ctx), pytest.raises(CallCancelled):
        est.fit(X)
    assert steps_seen == [1, 2, 3]
    assert not hasattr(est, "cluster_centers_")


def test_cancellation_of_predict():
    est = MiniBatchKMeans(n_clusters=6, random_state=0).fit(X)
    cancel = threading.Event()
    cancel.set()
    with call_context(CallContext(cancel_event=cancel)), pytest.raises(CallCancelled):
        est.predict(X)


def test_outputs_are_allocated_through_the_context():
    requested = []
    provided = {}

    def allocate(name, shape, dtype):
        requested.append((name, shape, np.dtype(dtype)))
        provided[name] = np.full(shape, -7, dtype=dtype)
        return provided[name]

    ctx = CallContext(allocate=allocate)
    with call_context(ctx):
        est = MiniBatchKMeans(n_clusters=6, random_state=0).fit(X)
        labels = est.predict(X[:100])
        dist = est.transform(X[:50])
    assert requested == [
        ("labels_", (3000,), np.dtype(np.int32)),
        ("predict", (100,), np.dtype(np.int32)),
        ("transform", (50, 6), np.dtype(np.float64)),
    ]
    assert est.labels_ is provided["labels_"]
    assert labels is provided["predict"] and dist is provided["transform"]
    assert (labels >= 0).all() and (est.labels_ >= 0).all()


def test_routed_warnings_reach_the_call_from_the_core_threads(monkeypatch):
    import warnings

    from bridge_server.core import _kmeans_steps, route_warnings_to_callers
    from bridge_server.core._twin import Twin

    seen: list[tuple[str, type[Warning]]] = []
    elsewhere: list[str] = []
    ctx = CallContext(on_warning=lambda message, category: seen.append((message, category)))
    big = np.full(4, 1e300)
    # Labelled in one-chunk blocks on three threads: helpers raise the warnings too.
    monkeypatch.setattr(_kmeans_steps, "BLOCK_BYTES", 1)
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 3)
    X = np.full((256 * 12, 2), 1e200)
    with warnings.catch_warnings():  # restores showwarning and the filters afterwards
        warnings.showwarning = lambda message, *rest: elsewhere.append(str(message))
        route_warnings_to_callers()
        route_warnings_to_callers()  # idempotent
        with call_context(ctx):
            for _ in range(2):  # one code location, twice: routed once per call
                big * big
            with Twin() as twin:
                twin.start(lambda: np.full(4, 1.7e308) + np.full(4, 1.7e308))
                twin.join()
            _kmeans_steps.labels_inertia(X, None, np.zeros((3, 2)))  # multiply overflows again
        assert elsewhere == []  # no thread of the call lost its context
        with call_context(CallContext(on_warning=lambda m, c: seen.append((m, c)))):
            big * big  # a new call gets its own
        big * big  # outside any call: the previous showwarning
    assert seen == [
        ("overflow encountered in multiply", RuntimeWarning),
        ("overflow encountered in add", RuntimeWarning),
        ("overflow encountered in multiply", RuntimeWarning),
    ]
    assert len(elsewhere) == 1 and "overflow" in elsewhere[0]
