"""Property tests: invariants that hold for any data."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bridge_server.core import MiniBatchKMeans

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def problems(draw):
    n_features = draw(st.integers(1, 6))
    n_samples = draw(st.integers(4, 120))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    values = st.floats(-50, 50, allow_nan=False, width=32).map(lambda v: round(v, 1))
    X = draw(arrays(dtype, (n_samples, n_features), elements=values))
    n_clusters = draw(st.integers(1, min(6, n_samples)))
    weights = draw(
        st.none() | arrays(np.float64, (n_samples,), elements=st.floats(0.125, 5, width=32))
    )
    params = dict(
        n_clusters=n_clusters,
        random_state=draw(st.integers(0, 2**31)),
        batch_size=draw(st.integers(1, 64)),
        max_iter=draw(st.integers(1, 5)),
        init=draw(st.sampled_from(["k-means++", "random"])),
        reassignment_ratio=draw(st.sampled_from([0.0, 0.01, 0.5])),
    )
    return X, weights, params


def _sq_distances(X, centers):
    X = X.astype(np.float64)
    centers = centers.astype(np.float64)
    return ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)


@SETTINGS
@given(problems())
def test_labels_are_nearest_centers_and_inertia_is_weighted_sum(problem):
    X, sw, params = problem
    est = MiniBatchKMeans(**params).fit(X, sample_weight=sw)
    d = _sq_distances(X, est.cluster_centers_)
    chosen = d[np.arange(X.shape[0]), est.labels_]
    # argmin up to the rounding of the |c|^2 - 2 x.c form
    scale = 1e-9 if X.dtype == np.float64 else 1e-3
    assert np.all(chosen <= d.min(axis=1) + scale * (1 + np.abs(X).max() ** 2))
    w = np.ones(X.shape[0]) if sw is None else sw
    rel = 1e-9 if X.dtype == np.float64 else 1e-4
    np.testing.assert_allclose(est.inertia_, float(chosen @ w), rtol=rel, atol=rel)
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    np.testing.assert_allclose(-est.score(X, sample_weight=sw), est.inertia_, rtol=rel, atol=rel)


@SETTINGS
@given(problems())
def test_inference_never_changes_centers_or_input(problem):
    X, sw, params = problem
    X_before = X.copy()
    est = MiniBatchKMeans(**params).fit(X, sample_weight=sw)
    centers = est.cluster_centers_.copy()
    est.predict(X)
    est.transform(X)
    est.score(X)
    np.testing.assert_array_equal(est.cluster_centers_, centers)
    np.testing.assert_array_equal(X, X_before)
    assert est.cluster_centers_.dtype == X.dtype
    assert np.isfinite(est.cluster_centers_).all()


@SETTINGS
@given(problems())
def test_same_seed_same_result(problem):
    X, sw, params = problem
    a = MiniBatchKMeans(**params).fit(X, sample_weight=sw)
    b = MiniBatchKMeans(**params).fit(X, sample_weight=sw)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.n_steps_ == b.n_steps_
