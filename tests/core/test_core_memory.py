"""Bounded memory and no copies: read-only buffers, memory maps, chunked checks."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans

from bridge_server.core import MiniBatchKMeans, _kmeans_steps, _validation


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_validation_does_not_copy_c_contiguous_float(dtype):
    X = _readonly(np.random.RandomState(0).normal(size=(500, 4)).astype(dtype))
    checked = _validation.check_array(X, estimator_name="MiniBatchKMeans", input_name="X")
    assert np.shares_memory(checked, X)
    assert checked.dtype == dtype


def test_memmap_fit_predict_without_copy_or_full_temporaries(tmp_path):
    n, k = 200_000, 64
    rng = np.random.RandomState(0)
    path = tmp_path / "X.npy"
    np.save(path, rng.normal(size=(n, 2)))
    X = np.load(path, mmap_mode="r")
    checked = _validation.check_array(X, estimator_name="MiniBatchKMeans", input_name="X")
    assert np.shares_memory(checked, X)

    est = MiniBatchKMeans(n_clusters=k, random_state=0, batch_size=1024, max_iter=1)
    full_distance_matrix = n * k * 8
    tracemalloc.start()
    try:
        est.fit(X)
        _, fit_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        est.predict(X)
        est.score(X)
        _, predict_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # labels (n int32) + a few MB of blocks; never n x k, never a copy of X
    assert fit_peak < full_distance_matrix / 4
    assert predict_peak < full_distance_matrix / 4
    assert fit_peak < X.nbytes + (8 << 20)


def test_input_is_never_modified():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(1000, 3))
    sw = rng.uniform(0.5, 2, size=1000)
    X0, sw0 = X.copy(), sw.copy()
    est = MiniBatchKMeans(n_clusters=5, random_state=0).fit(X, sample_weight=sw)
    est.partial_fit(X, sample_weight=sw)
    est.predict(X), est.transform(X), est.score(X, sample_weight=sw)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(sw, sw0)


def test_finiteness_check_is_chunked_and_nan_wins(monkeypatch):
    monkeypatch.setattr(_validation, "FINITE_CHECK_ROWS", 7)
    X = np.zeros((50, 2))
    X[3, 1] = np.inf
    X[40, 0] = np.nan  # NaN in a later block still wins, as in scikit-learn
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MiniBatchKMeans(n_clusters=2).fit(X)
    X[40, 0] = 0.0
    with pytest.raises(ValueError, match="infinity"):
        MiniBatchKMeans(n_clusters=2).fit(X)
    # a huge but finite block sum that overflows is not an error
    _validation.assert_all_finite(np.full((20, 2), 1e308), input_name="X")


def test_blocked_tolerance_equals_numpy_var():
    X = np.random.RandomState(0).normal(size=(10_000, 3)) * 100 + 3
    expected = float(np.mean(np.var(X, axis=0)) * 1e-3)
    assert _kmeans_steps.tolerance(X, 1e-3, block_rows=333) == pytest.approx(expected, rel=1e-12)
    assert _kmeans_steps.tolerance(X, 0.0) == 0


def test_labels_in_blocks_equal_one_block(monkeypatch):
    X = np.round(np.random.RandomState(2).normal(size=(5000, 5)), 1)
    est = MiniBatchKMeans(n_clusters=9, random_state=0).fit(X)
    ref = SkMiniBatchKMeans(n_clusters=9, random_state=0).fit(X)
    monkeypatch.setattr(_kmeans_steps, "BLOCK_BYTES", 1)  # smallest blocks: one chunk each
    np.testing.assert_array_equal(est.predict(X), ref.predict(X))
    big = MiniBatchKMeans(n_clusters=9, random_state=0).partial_fit(X)
    ref_big = SkMiniBatchKMeans(n_clusters=9, random_state=0).partial_fit(X)
    np.testing.assert_allclose(big.cluster_centers_, ref_big.cluster_centers_, rtol=1e-10)
    np.testing.assert_array_equal(big.labels_, ref_big.labels_)
