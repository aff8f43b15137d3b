"""Exact labels from (k, n) scores equal scikit-learn's over (n, k) ones, ties and NaN included."""

from __future__ import annotations

import numpy as np
import pytest
from core_oracle import sklearn_loop_labels

from bridge_server.core import _blas, _columns, _kmeans_steps


@pytest.mark.parametrize("n_clusters", [1, 2, 50, 63, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_min_is_sklearns_with_ties_nan_and_signed_zeros(n_clusters, dtype):
    rng = np.random.RandomState(n_clusters)
    n = 2000
    scores = rng.randint(-3, 3, size=(n_clusters, n)).astype(dtype)  # ties everywhere
    scores[:, :100] = 0.0
    scores[rng.randint(0, n_clusters, 100), np.arange(100, 200)] = -0.0  # -0.0 == 0.0
    scores[rng.randint(0, n_clusters, 50), rng.randint(200, n, 50)] = np.nan
    scores[:, 300] = np.nan
    scores[:, 301] = np.inf
    out = np.full(n, -1, dtype=np.intp)
    flags = _columns.Flags(n_clusters, n, dtype)
    _columns.first_min(scores, flags, out)
    # NumPy's argmin where no score is NaN; scikit-learn's loop's choice where one is.
    np.testing.assert_array_equal(out, sklearn_loop_labels(scores, axis=0))
    # Unique minima (the usual case, no fallback) and a view of fewer columns.
    distinct = rng.permutation(n_clusters * n).reshape(n_clusters, n).astype(dtype)
    _columns.first_min(distinct[:, :777], flags, out[:777])
    np.testing.assert_array_equal(out[:777], np.argmin(distinct[:, :777], axis=0))


def test_flags_know_their_size():
    for n_clusters in (50, 300, 70_000):
        flags = _columns.Flags(n_clusters, 8, np.float32)
        per_row = _columns.Flags.bytes_per_row(n_clusters)
        assert flags.nbytes == 8 * (per_row + 4)  # + the float32 minimum
    assert _columns.count_type(255) == np.uint8 and _columns.count_type(256) == np.uint16


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n_features", "n_clusters"), [(3, 7), (8, 20), (50, 50), (100, 63)])
@pytest.mark.parametrize("n_rows", [1, 700, 1024, 1300, 5000])
def test_column_labels_equal_row_labels(dtype, n_features, n_clusters, n_rows):
    rng = np.random.RandomState(n_rows + n_features)
    # Small integers: every product and sum is exact, whatever the BLAS kernel,
    # so forcing (k, n) scoring is valid anywhere; and ties are everywhere.
    X = rng.randint(-3, 4, size=(n_rows, n_features)).astype(dtype)
    C = rng.randint(-3, 4, size=(n_clusters, n_features)).astype(dtype)
    cases = [(X, C, True)]
    # Real-valued data, where the (k, n) product is used only if the probe
    # found it bitwise equal on this machine.
    Xr = (rng.normal(size=(n_rows, n_features)) * 10).astype(dtype)
    cases.append((np.asfortranarray(Xr), C + 0.5, None))
    for X, C, columns in cases:
        rows = _kmeans_steps.Scorer(n_clusters, n_features, dtype, columns=False)
        cols = _kmeans_steps.Scorer(n_clusters, n_features, dtype, columns=columns)
        assert columns is None or cols.columns
        expected, got = np.empty(n_rows, np.intp), np.empty(n_rows, np.intp)
        for scorer, out in ((rows, expected), (cols, got)):
            scorer.set_centers(C)
            with _blas.section(1):
                scorer._label_exactly(X, scorer.work(n_rows, exact_rows=2048), out)
        np.testing.assert_array_equal(got, expected)


def test_column_scores_are_the_row_scores_transposed_where_chosen():
    rng = np.random.RandomState(3)
    for dtype, n_features, n_clusters in [(np.float32, 50, 50), (np.float64, 8, 20)]:
        scorer = _kmeans_steps.Scorer(n_clusters, n_features, dtype)
        if not scorer.columns:  # the probe found other bits on this machine's BLAS
            continue
        X = rng.normal(size=(1024, n_features)).astype(dtype) * 1e3 + 7
        scorer.set_centers(rng.normal(size=(n_clusters, n_features)).astype(dtype) * 1e3)
        with _blas.section(1):
            rows = scorer.scores(X, None, np.empty((1024, n_clusters), dtype))
            cols = scorer.column_scores(X, np.empty((n_clusters, 1024), dtype))
        np.testing.assert_array_equal(cols.T, rows)


def test_column_scoring_is_chosen_only_where_it_pays_and_applies():
    assert _columns.pays(50, 50, 4) and _columns.pays(63, 8, 4) and _columns.pays(31, 8, 8)
    # NumPy's argmin runs its vector loop from 256-byte rows of scores.
    assert not _columns.pays(64, 8, 4) and not _columns.pays(32, 8, 8)
    assert not _columns.pays(8, 128, 4)  # a GEMM with few rows, many features: slower
    # Folded norms (at most 2 features) keep the (n, k) product.
    assert not _kmeans_steps.Scorer(10, 2, np.float64).columns
    assert not _kmeans_steps.Scorer(100, 50, np.float32).columns
    # Fewer rows at once than MIN_ROWS: the (n, k) path, without (k, n) scratch.
    scorer = _kmeans_steps.Scorer(20, 8, np.float32, columns=True)
    scorer.set_centers(np.arange(160, dtype=np.float32).reshape(20, 8))
    work = scorer.work(_columns.MIN_ROWS)
    X = np.ones((_columns.MIN_ROWS, 8), np.float32)
    out = np.empty(_columns.MIN_ROWS, np.intp)
    with _blas.section(1):
        scorer._label_exactly(X[:-1], work, out[:-1])
        assert work._column_scores is None
        scorer._label_exactly(X, work, out)
        assert work._column_scores is not None


@pytest.mark.parametrize("n_clusters", [1, 2, 50, 100])
def test_gaps_are_second_best_less_best_in_either_layout(n_clusters):
    rng = np.random.RandomState(n_clusters)
    n = 1500
    scores = rng.randint(-50, 50, size=(n_clusters, n)).astype(np.float32)
    scores += rng.uniform(0, 0.5, size=scores.shape).astype(np.float32)
    scores[:, 7] = 3.0  # every center tied
    scores[0, 9] = np.nan
    ordered = np.sort(scores, axis=0)
    if n_clusters > 1:
        expected = ordered[1] - ordered[0]
    else:
        expected = np.full(n, np.inf, np.float32)
    tied = np.zeros(n, bool)
    tied[7] = n_clusters > 1
    # (k, n): ties and NaN get -inf.
    out, gaps = np.empty(n, np.intp), np.empty(n, np.float32)
    _columns.first_min(scores.copy(), _columns.Flags(n_clusters, n, np.float32), out, gaps)
    np.testing.assert_array_equal(out, np.argmin(scores, axis=0))
    plain = ~tied & ~np.isnan(scores).any(axis=0)
    np.testing.assert_array_equal(gaps[plain], expected[plain])
    assert np.all(gaps[~plain] == -np.inf)
    # (n, k): a tie leaves 0, NaN leaves NaN; neither passes any positive margin.
    rows = np.ascontiguousarray(scores.T)
    labels = np.argmin(rows, axis=1)
    _columns.row_gaps(rows, labels, gaps)
    np.testing.assert_array_equal(gaps[plain], expected[plain])
    assert not np.any(gaps[~plain] > 0)
