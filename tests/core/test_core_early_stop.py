"""Early stopping from bounded batch inertias decides as scikit-learn's own sums would."""

from __future__ import annotations

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans, assert_same_fit
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster._k_means_common import _inertia_dense
from sklearn.datasets import make_blobs

from bridge_server.core import (
    CallContext,
    MiniBatchKMeans,
    _early_stop,
    _kmeans_steps,
    call_context,
)
from bridge_server.core._early_stop import Bounded


def _bounded(X, weights, centers, labels) -> Bounded:
    ws = _kmeans_steps.StepWorkspace(X.shape[0], centers.shape[0], X.shape[1], X.dtype)
    signed = weights is not None and bool((weights < 0).any())
    return ws.batch_inertia_bounded(X, weights, centers, labels, signed_weights=signed)


@settings(max_examples=80, deadline=None)
@given(
    n_rows=st.integers(1, 600),
    n_features=st.sampled_from([1, 2, 3, 7, 50]),
    scale=st.sampled_from([1e-150, 1e-3, 1.0, 1e5, 1e140]),
    offset=st.sampled_from([0.0, 1e6]),
    weights=st.sampled_from(["none", "positive", "signed"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_the_bound_covers_scikit_learns_sums_on_any_thread_count(
    n_rows, n_features, scale, offset, weights, seed
):
    rng = np.random.RandomState(seed)
    centers = rng.normal(size=(5, n_features)) * scale + offset
    X = (rng.normal(size=(n_rows, n_features)) * rng.lognormal(size=(n_rows, 1))) * scale + offset
    labels = rng.randint(0, 5, n_rows)
    w = {
        "none": None,
        "positive": rng.uniform(0.01, 5, n_rows),
        "signed": rng.uniform(-2, 5, n_rows),
    }[weights]
    ours = _bounded(X, w, centers, labels)
    sw = np.ones(n_rows) if w is None else w
    for threads in (1, 2, 3):
        theirs = _inertia_dense(X, sw, centers, labels.astype(np.int32), threads)
        assert abs(ours.value - theirs) <= ours.error, (threads, ours, theirs)


def test_an_exactly_zero_inertia_has_no_error():
    X = np.repeat(np.arange(6.0).reshape(3, 2), 4, axis=0)
    labels = np.repeat(np.arange(3), 4)
    assert _bounded(X, None, X[::4].copy(), labels) == Bounded(0.0, 0.0)
    # Differences whose squares underflow are not exact zeros: they keep a bound.
    tiny = _bounded(X + 1e-170, None, X[::4].copy(), labels)
    assert tiny.value == 0.0 and tiny.error > 0.0


@pytest.mark.parametrize(
    ("scale", "spread", "seed"),
    [
        (1e3, 1.0, 0),  # the bounds of sum_of for a 1024 x 2 batch
        (1e3, 1.0, 1),
        (1e3, 1e12, 2),  # signed weights: bounds far larger than the values
        (1e-305, 1.0, 3),  # values and their roundings in the subnormal range
        (1e-318, 1.0, 4),
    ],
)
def test_the_smoothed_bound_covers_every_choice_within_the_batch_bounds(scale, spread, seed):
    # scikit-learn's batch inertias may be anywhere inside our bounds; its
    # smoothing of any such sequence must stay inside the carried bound.
    rng = np.random.RandomState(seed)
    batch_size, n_samples = 1024, 1_000_000
    alpha = min(batch_size * 2.0 / (n_samples + 1), 1)
    ours: Bounded | None = None
    theirs = 0.0
    for step in range(3000):
        total = float(rng.uniform(0.5, 2.0) * scale * batch_size)
        batch = Bounded.sum_of(total, total * spread, batch_size * 3, np.dtype(np.float64))
        # The extremes of the interval, as scikit-learn's total could be.
        their_total = total + batch.error * rng.choice([-1.0, 1.0])
        mean = batch.divided(batch_size)
        their_mean = their_total / batch_size
        if ours is None:
            ours, theirs = mean, their_mean
        else:
            ours = ours.smoothed(mean, alpha)
            theirs = theirs * (1 - alpha) + their_mean * alpha
        assert abs(ours.value - theirs) <= ours.error, step
    assert ours is not None
    if spread == 1.0 and scale > 1e-300:
        assert ours.error < 1e-11 * ours.value  # stays tight, never compounds


def test_a_bound_never_rounds_to_zero():
    # A difference in the subnormal range stays a difference after dividing.
    assert Bounded(5.8094e-319, 5e-324).divided(3).error > 0.0


def test_values_whose_bounds_reach_past_the_largest_float_are_never_compared():
    top = float(np.finfo(np.float64).max)
    assert Bounded.sum_of(top, top, 100, np.dtype(np.float64)).error == np.inf
    with pytest.raises(_early_stop.Undecided):
        _early_stop.less(Bounded(top, 1e294), Bounded(1.0, 1e-16))
    # Data whose batch inertias land within rounding of overflow (found by review):
    # another summation order overflows to inf, so the stop is left to scikit-learn's order.
    rng = np.random.RandomState(18)
    X = rng.choice([1, -1], 400) * rng.lognormal(0, 1.5, 400) * 4.636963824254932e152
    params = dict(
        n_clusters=1,
        batch_size=32,
        init=np.zeros((1, 1)),
        n_init=1,
        random_state=18,
        max_no_improvement=1,
    )
    with np.errstate(over="ignore", invalid="ignore"):
        ours = MiniBatchKMeans(**params).fit(X.reshape(-1, 1))
        ref = SkMiniBatchKMeans(**params).fit(X.reshape(-1, 1))
    assert ours.n_steps_ == ref.n_steps_
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)


def test_less_decides_outside_the_bounds_and_refuses_inside():
    assert _early_stop.less(Bounded(1.0, 1e-9), Bounded(2.0, 1e-9)) is True
    assert _early_stop.less(Bounded(2.0, 1e-9), Bounded(1.0, 1e-9)) is False
    # Exact values (scikit-learn's order) compare as they are, ties included.
    assert _early_stop.less(Bounded(1.0, 0.0), Bounded(1.0, 0.0)) is False
    with pytest.raises(_early_stop.Undecided):
        _early_stop.less(Bounded(1.0, 1e-9), Bounded(1.0 + 1e-10, 1e-9))


DATA, _ = make_blobs(n_samples=4000, n_features=12, centers=8, random_state=3)


@pytest.mark.parametrize(
    "params",
    [
        dict(n_clusters=8, batch_size=256, random_state=0),
        dict(n_clusters=8, batch_size=300, random_state=1, max_no_improvement=3),
        dict(n_clusters=5, batch_size=200, random_state=2, max_no_improvement=None, max_iter=4),
    ],
)
def test_an_undecided_stop_reruns_the_steps_in_scikit_learns_order(monkeypatch, params):
    # Bounds this wide leave no comparison decided: the first one reruns the
    # steps. (With max_no_improvement=None nothing depends on the inertias,
    # which are then not summed at all.)
    monkeypatch.setattr(_early_stop, "_SLACK", 1e300)
    events: list[tuple[int, int, str]] = []
    rs_ours, rs_theirs = np.random.RandomState(7), np.random.RandomState(7)
    params = dict(params, random_state=rs_ours)
    with call_context(CallContext(on_progress=lambda *e: events.append(e))):
        ours = MiniBatchKMeans(**params).fit(DATA)
    ref = SkMiniBatchKMeans(**dict(params, random_state=rs_theirs)).fit(DATA)
    assert_same_fit(ours, ref)  # n_steps_, n_iter_, labels_, inertia_
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)  # bit for bit
    # The caller's random state ends where scikit-learn leaves it.
    assert rs_ours.randint(1 << 30) == rs_theirs.randint(1 << 30)
    # Progress never goes back, and no step is reported twice (the fit's
    # closing report may repeat the last step).
    fit_steps = [done for done, _, phase in events if phase == "fit"]
    assert fit_steps == sorted(fit_steps)
    assert len(set(fit_steps[:-1])) == len(fit_steps) - 1


def test_fits_whose_inertias_are_shown_sum_them_in_scikit_learns_order():
    # Without labels, inertia_ is the smoothed batch inertia itself.
    params = dict(n_clusters=8, batch_size=256, random_state=0, compute_labels=False)
    ours = MiniBatchKMeans(**params).fit(DATA)
    ref = SkMiniBatchKMeans(**params).fit(DATA)
    assert ours.inertia_ == ref.inertia_


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_rows", [1, 2, 3, 255, 1024])
@pytest.mark.parametrize("weighted", [False, True])
def test_exact_batch_inertia_is_scikit_learns_bit_for_bit(dtype, n_rows, weighted):
    # Rows of every width up to 13 (blocks of four and their remainders) and
    # 50; magnitudes spread over ten decades, so the order of every sum shows.
    rng = np.random.RandomState(n_rows)
    for n_features in [*range(1, 14), 50]:
        X = rng.normal(size=(n_rows, n_features)) * 10 ** rng.uniform(-5, 5, (n_rows, n_features))
        centers = rng.normal(size=(4, n_features))
        X, centers = X.astype(dtype), centers.astype(dtype)
        labels = rng.randint(0, 4, n_rows)
        sw = rng.uniform(0.1, 3, n_rows).astype(dtype) if weighted else None
        # (With three threads scikit-learn adds the blocks' sums as they arrive.)
        for threads in (1, 2):
            ws = _kmeans_steps.StepWorkspace(n_rows, 4, n_features, dtype, sum_threads=threads)
            ours = ws.batch_inertia(X, sw, centers, labels)
            ones = np.ones(n_rows, dtype)
            theirs = _inertia_dense(
                X, ones if sw is None else sw, centers, labels.astype(np.int32), threads
            )
            assert ours == theirs, (n_features, threads)
