"""Sums in the blocks of scikit-learn's OpenMP threads, on the thread count it would use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans, capture_stdout, openmp_threads
from sklearn.datasets import make_blobs

from bridge_server.core import MiniBatchKMeans
from bridge_server.core._openmp import PrangeSum, static_blocks

_COUNTS = (
    "import json; from bridge_server.core._openmp import sklearn_threads; "
    "from sklearn.utils._openmp_helpers import _openmp_effective_n_threads; "
    "print(json.dumps([sklearn_threads(), _openmp_effective_n_threads()]))"
)


@pytest.mark.parametrize(
    "env",
    [{}, {"OMP_NUM_THREADS": "3"}, {"OMP_NUM_THREADS": "1,2"}, {"OMP_NUM_THREADS": "x"},
     {"LOKY_MAX_CPU_COUNT": "1"}],
    ids=["default", "omp3", "omp-list", "omp-invalid", "loky1"],
)  # fmt: skip
def test_thread_count_is_scikit_learns(env):
    # A fresh process: OpenMP reads OMP_NUM_THREADS when it loads, and
    # scikit-learn caches the CPU count on first use.
    ours_only = ("OMP_NUM_THREADS", "LOKY_MAX_CPU_COUNT")
    clean = {k: v for k, v in os.environ.items() if k not in ours_only}
    done = subprocess.run(
        [sys.executable, "-c", _COUNTS], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    ours, theirs = json.loads(done.stdout.splitlines()[-1])
    assert ours == theirs


def test_static_blocks_split_as_libgomp():
    assert static_blocks(5, 2) == [(0, 3), (3, 5)]
    assert static_blocks(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert static_blocks(3, 4) == [(0, 1), (1, 2), (2, 3), (3, 3)]
    assert static_blocks(0, 2) == [(0, 0), (0, 0)]
    for n in range(0, 40):
        for threads in range(1, 7):
            blocks = static_blocks(n, threads)
            sizes = [stop - start for start, stop in blocks]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def _reference(values: np.ndarray, threads: int) -> np.generic:
    """The prange reduction, one scalar addition at a time."""
    total = values.dtype.type(0)
    for start, stop in static_blocks(values.shape[0], threads):
        block = values.dtype.type(0)
        for v in values[start:stop]:
            block = block + v
        total = total + block
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_prange_sum_adds_as_the_threads_do(dtype, threads):
    rng = np.random.RandomState(threads)
    values = (rng.lognormal(0, 3, 1001) * rng.choice([1, 1e-6], 1001)).astype(dtype)
    expected = _reference(values, threads)
    summed = PrangeSum(values.shape[0], threads, dtype)
    cuts = np.sort(rng.choice(np.arange(1, 1001), 6, replace=False))
    for piece in np.split(values, cuts):  # pieces that straddle the blocks' ends
        summed.add(piece)
    assert summed.total == expected and summed.total.dtype == dtype
    summed.restart(7)
    summed.add(values[:7])
    assert summed.total == _reference(values[:7], threads)
    # The blocks matter: a big first value swallows the ones after it only
    # in its own block.
    ones = np.ones(1001, dtype=dtype)
    ones[0] = 2.0 ** (np.finfo(dtype).nmant + 1)  # adding 1 rounds back to it
    summed.restart(ones.shape[0])
    summed.add(ones)
    assert summed.total == _reference(ones, threads)
    assert (summed.total == _reference(ones, 1)) == (threads == 1)


# Two inits give the same two clusters, in opposite orders: their validation
# inertias differ only by rounding, so the thread count decides which is kept.
TIE_X = np.array([[0.5, 6.8], [8.0, 8.0], [9.7, 4.4], [8.3, 2.5], [0.5, 4.9]])
TIE_PARAMS = dict(n_clusters=2, n_init=3, max_iter=1, batch_size=5, random_state=78)


def test_best_init_follows_scikit_learns_thread_count():
    centers = {}
    for threads in (1, 2):
        with openmp_threads(threads):
            ref = SkMiniBatchKMeans(**TIE_PARAMS, max_no_improvement=None).fit(TIE_X)
            ours = MiniBatchKMeans(**TIE_PARAMS, max_no_improvement=None).fit(TIE_X)
        np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
        centers[threads] = ref.cluster_centers_
    assert not np.array_equal(centers[1], centers[2])  # the scenario is a near-tie


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inertia_and_score_are_scikit_learns_bit_for_bit(dtype):
    # Under 8 features each row is summed in scikit-learn's order, and the
    # rows in its threads' blocks: inertia_ and score are its values exactly.
    X, _ = make_blobs(n_samples=20001, n_features=5, centers=7, random_state=3)
    X = X.astype(dtype)
    weights = np.random.RandomState(0).uniform(0.5, 2.0, X.shape[0])
    params = dict(n_clusters=7, random_state=0, batch_size=512)
    ref = SkMiniBatchKMeans(**params).fit(X, sample_weight=weights)
    ours = MiniBatchKMeans(**params).fit(X, sample_weight=weights)
    assert ours.inertia_ == ref.inertia_
    assert ours.score(X[:9999]) == ref.score(X[:9999])
    with openmp_threads(1):  # and the thread count shows in them
        assert SkMiniBatchKMeans(**params).fit(X, sample_weight=weights).inertia_ != ref.inertia_


def test_verbose_inertias_follow_the_thread_count():
    X, _ = make_blobs(n_samples=2000, n_features=3, centers=5, random_state=1)
    params = dict(n_clusters=5, random_state=0, batch_size=150, n_init=3, verbose=1)
    for threads in (1, 2):
        with openmp_threads(threads):
            expected = capture_stdout(lambda: SkMiniBatchKMeans(**params).fit(X))
            assert capture_stdout(lambda: MiniBatchKMeans(**params).fit(X)) == expected
