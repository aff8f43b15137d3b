"""The float32 screen labels exactly as the float64 scores' argmin, whatever the data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans, assert_same_fit
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_server.core import MiniBatchKMeans, _blas, _columns, _kmeans_steps, _row_norms, _screen


def _labels(
    X: np.ndarray, C: np.ndarray, *, screen: bool, given_norms: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Labels by :meth:`Scorer.labels` with or without the screen, and the undecided rows.

    ``given_norms``: the screen is given the rows' squared norms from
    validation's pass (:func:`_row_norms.finite_sq_norms`) instead of taking them.
    """
    scorer = _kmeans_steps.Scorer(C.shape[0], C.shape[1], C.dtype)
    if not screen:
        scorer.screen = None
    scorer.set_centers(C)
    work = scorer.work(X.shape[0])
    out = np.empty(X.shape[0], dtype=np.intp)
    norms = _row_norms.finite_sq_norms(np.ascontiguousarray(X)) if given_norms else None
    assert norms is not None or not given_norms
    with _blas.section(1):
        scorer.labels(X, work, out, sq_norms=norms)
        undecided = np.empty(0, dtype=np.intp)
        if screen:
            assert scorer.screen is not None
            found = scorer.screen.label(X, work.screen, np.empty_like(out), sq_norms=norms)
            undecided = np.arange(X.shape[0]) if found is None else found
    return out, undecided


def _exact(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """scikit-learn's labels: argmin of ``|c|^2 - 2 x.c`` from 256-row float64 products."""
    norms = np.einsum("ij,ij->i", C, C)
    return np.concatenate(
        [np.argmin(X[i : i + 256] @ (-2 * C).T + norms, axis=1) for i in range(0, len(X), 256)]
    )


def _near_ties(rng: np.random.RandomState, n: int, C: np.ndarray, spread: float) -> np.ndarray:
    """Rows on the bisector of two centers, moved along it by up to ``spread``."""
    a, b = rng.randint(0, len(C), size=(2, n))
    t = 0.5 + rng.uniform(-spread, spread, size=(n, 1))
    return C[a] + t * (C[b] - C[a])


def test_screening_is_the_default_for_wide_float64_only():
    assert _kmeans_steps.Scorer(5, 50, np.float64).screen is not None
    assert _kmeans_steps.Scorer(5, 50, np.float32).screen is None
    assert _kmeans_steps.Scorer(5, _screen.SCREEN_MIN_FEATURES - 1, np.float64).screen is None
    # Labels are read from a float32 product: indices past 2**24 would not be exact.
    assert _screen.screens(50, 2**24, np.float64)
    assert not _screen.screens(50, 2**24 + 1, np.float64)


def test_well_separated_rows_are_decided_in_float32():
    rng = np.random.RandomState(0)
    C = rng.normal(size=(40, 50)) * 10
    X = C[rng.randint(0, 40, size=3000)] + rng.normal(size=(3000, 50))
    labels, undecided = _labels(X, C, screen=True)
    np.testing.assert_array_equal(labels, _exact(X, C))
    assert undecided.size == 0


@pytest.mark.parametrize("spread", [0.0, 1e-12, 1e-7, 1e-4])
def test_near_ties_are_left_to_the_exact_scores(spread):
    rng = np.random.RandomState(1)
    C = rng.normal(size=(30, 20)) * 5
    X = np.concatenate([_near_ties(rng, 1500, C, spread), C[rng.randint(0, 30, 1500)] + 0.3])
    X = X[rng.permutation(len(X))]
    labels, undecided = _labels(X, C, screen=True)
    np.testing.assert_array_equal(labels, _exact(X, C))
    np.testing.assert_array_equal(labels, _labels(X, C, screen=False)[0])
    assert undecided.size > 0  # the fallback really ran


def test_exact_ties_go_to_the_first_center():
    rng = np.random.RandomState(2)
    X = rng.randint(0, 4, size=(2000, 12)).astype(np.float64)
    C = X[rng.choice(2000, 25, replace=False)]
    C[20:] = C[:5]  # duplicated centers: every row of theirs is an exact tie
    labels, undecided = _labels(X, C, screen=True)
    np.testing.assert_array_equal(labels, _exact(X, C))
    assert not np.isin(labels, np.arange(20, 25)).any()
    assert undecided.size > 0


def test_a_large_offset_stops_screening_for_a_while():
    # float32 cannot resolve 1e7 + noise: nearly every row is undecided.
    rng = np.random.RandomState(3)
    X = 1e7 + rng.normal(size=(3000, 16))
    C = 1e7 + rng.normal(size=(20, 16))
    scorer = _kmeans_steps.Scorer(20, 16, np.float64)
    scorer.set_centers(C)
    work = scorer.work(3000)
    out = np.empty(3000, dtype=np.intp)
    with _blas.section(1):
        scorer.labels(X, work, out)
    np.testing.assert_array_equal(out, _exact(X, C))
    assert scorer._unscreened == _kmeans_steps.UNSCREENED_CALLS
    with _blas.section(1):
        for _ in range(_kmeans_steps.UNSCREENED_CALLS):
            scorer.labels(X[:256], work, out[:256])
    assert scorer._unscreened == 0  # the next call screens again


@pytest.mark.parametrize(
    ("scale", "screened"),
    [(1e-20, False), (1e-9, True), (1e15, True), (1e19, False), (1e30, False), (1e45, False)],
)
def test_extreme_scales_label_exactly(scale, screened):
    # Tiny centers would underflow float32 and huge ones overflow it: not screened.
    rng = np.random.RandomState(4)
    C = rng.normal(size=(10, 9)) * scale
    X = np.concatenate([C[rng.randint(0, 10, 800)] * 1.01, _near_ties(rng, 200, C, 1e-6)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from the float32 pass
        labels, undecided = _labels(X, C, screen=True)
    np.testing.assert_array_equal(labels, _exact(X, C))
    assert (undecided.size < len(X)) == screened


def test_one_huge_row_leaves_its_block_to_the_exact_scores():
    rng = np.random.RandomState(5)
    C = rng.normal(size=(10, 9))
    X = C[rng.randint(0, 10, 600)] + 0.1
    X[300] = 1e39  # beyond float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels, undecided = _labels(X, C, screen=True)
    np.testing.assert_array_equal(labels, _exact(X, C))
    assert undecided.size == len(X)  # the overflow guard refused the block


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_features=st.integers(_screen.SCREEN_MIN_FEATURES, 70),
    n_clusters=st.integers(1, 40),
    log_scale=st.floats(-8, 12),
    offset=st.floats(-1e3, 1e3),
    spread=st.sampled_from([0.0, 1e-9, 1e-5, 1e-2, 0.5]),
    given_norms=st.booleans(),
)
def test_screened_labels_are_the_exact_argmin(
    seed, n_features, n_clusters, log_scale, offset, spread, given_norms
):
    rng = np.random.RandomState(seed)
    scale = 10.0**log_scale
    C = (rng.normal(size=(n_clusters, n_features)) + offset) * scale
    n = 700
    X = np.concatenate(
        [
            _near_ties(rng, n // 2, C, spread),
            C[rng.randint(0, n_clusters, n - n // 2)]
            + rng.normal(size=(n - n // 2, n_features)) * scale,
        ]
    )
    labels, _ = _labels(X, C, screen=True, given_norms=given_norms)
    np.testing.assert_array_equal(labels, _exact(X, C))


@pytest.mark.parametrize("given_norms", [False, True])
@pytest.mark.parametrize(
    "n_features", [_screen.SCREEN_MIN_FEATURES, 50, _screen.SCREEN_MAX_FEATURES]
)
def test_the_threshold_covers_both_passes_rounding(n_features, given_norms):
    # White box: the margin the screen actually used, threshold - best in
    # float32, must be at least the proven bound 2 (K + 6) (u + 2**-53) W.
    # Rows of mixed sizes and a large best score stress its float32 evaluation.
    rng = np.random.RandomState(n_features)
    C = rng.normal(size=(12, n_features)) * 3 + 40
    X = np.concatenate(
        [
            C[rng.randint(0, 12, 100)] + rng.normal(size=(100, n_features)),
            rng.normal(size=(50, n_features)) * 1e3,
        ]
    )
    scorer = _kmeans_steps.Scorer(12, n_features, np.float64)
    scorer.set_centers(C)
    work = scorer.work(len(X))
    assert scorer.screen is not None and work.screen is not None
    # The norms validation takes (float64 sums of the unrounded rows), or the screen's own.
    norms = _row_norms.finite_sq_norms(X) if given_norms else None
    with _blas.section(1):
        labelled = scorer.screen.label(X, work.screen, np.empty(len(X), np.intp), sq_norms=norms)
        assert labelled is not None
    margin = work.screen.threshold.astype(np.float64) - work.screen.best
    c_max = np.sqrt(np.einsum("ij,ij->i", C, C).max())
    W = 2 * np.linalg.norm(X, axis=1) * c_max + c_max**2
    assert (margin >= 2 * (n_features + 6) * (2.0**-24 + 2.0**-53) * W).all()


def test_a_wide_block_labels_exactly():
    rng = np.random.RandomState(6)
    K = _screen.SCREEN_MAX_FEATURES
    C = rng.normal(size=(6, K))
    X = np.concatenate(
        [C[rng.randint(0, 6, 300)] + 0.5 * rng.normal(size=(300, K)), _near_ties(rng, 100, C, 1e-9)]
    )
    for given_norms in (False, True):
        labels, undecided = _labels(X, C, screen=True, given_norms=given_norms)
        np.testing.assert_array_equal(labels, _exact(X, C))
        assert 0 < undecided.size < len(X)


def test_subnormal_rows_nan_rows_and_no_rows():
    rng = np.random.RandomState(7)
    C = rng.normal(size=(5, 9))
    tiny = rng.normal(size=(300, 9)) * 1e-40  # subnormal in float32: decided by the floor
    for given_norms in (False, True):
        labels, _ = _labels(tiny, C, screen=True, given_norms=given_norms)
        np.testing.assert_array_equal(labels, _exact(tiny, C))
    scorer = _kmeans_steps.Scorer(5, 9, np.float64)
    scorer.set_centers(C)
    work = scorer.work(300)
    assert scorer.screen is not None and work.screen is not None
    bad = C[rng.randint(0, 5, 300)]
    bad[17, 3] = np.nan
    with _blas.section(1):
        assert scorer.screen.label(bad, work.screen, np.empty(300, np.intp)) is None  # refused
        assert scorer.screen.label(bad[:0], work.screen, np.empty(0, np.intp)).size == 0


def test_strict_numpy_error_settings_do_not_reach_the_float32_pass():
    # Values that underflow float32 but not float64: the screen must not raise.
    rng = np.random.RandomState(8)
    C = rng.normal(size=(5, 9)) * 1e-30
    C[0, 0] = 1e-45
    X = np.concatenate([C[rng.randint(0, 5, 300)] * 1.01, rng.normal(size=(20, 9)) * 1e-40])
    with np.errstate(all="raise"):
        labels, _ = _labels(X, C, screen=True)
    np.testing.assert_array_equal(labels, _exact(X, C))


def _settled(X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float32 screen's undecided rows, what float64 left of them, and its labels."""
    scorer = _kmeans_steps.Scorer(C.shape[0], C.shape[1], C.dtype)
    scorer.set_centers(C)
    work = scorer.work(X.shape[0])
    assert scorer.screen is not None and work.screen is not None
    out = np.full(X.shape[0], -1, dtype=np.intp)
    with _blas.section(1):
        undecided = scorer.screen.label(X, work.screen, out)
        assert undecided is not None
        left = scorer.screen.settle(X, undecided, out, scorer._scaled, scorer.norms)
    return undecided, left, out


def test_float64_settles_what_float32_could_not_and_leaves_true_ties():
    rng = np.random.RandomState(8)
    C = rng.normal(size=(30, 20)) * 5
    # A margin of about 1e-4 of the scores: too thin for float32, wide for float64.
    thin = _near_ties(rng, 1000, C, 1e-5)
    undecided, left, out = _settled(thin, C)
    assert undecided.size > 100 and left.size == 0
    np.testing.assert_array_equal(out, _exact(thin, C))
    # Rows on the bisector to the last bits (margins of 0 to about 1e-14 of
    # the scores' size, around the bound): only some can be settled.
    ties = np.concatenate([_near_ties(rng, 1000, C, 0.0), _near_ties(rng, 2000, C, 1e-14)])
    undecided, left, out = _settled(ties, C)
    assert left.size > 100 and np.isin(left, undecided).all()
    settled = np.setdiff1d(undecided, left)
    assert settled.size > 0
    np.testing.assert_array_equal(out[settled], _exact(ties, C)[settled])
    # White box: a row is settled only beyond the proven bound 4 (K + 6) 2**-53 W.
    scores = np.sort(ties[settled] @ (-2 * C).T + np.einsum("ij,ij->i", C, C), axis=1)
    c_max = np.sqrt(np.einsum("ij,ij->i", C, C).max())
    W = 2 * np.linalg.norm(ties[settled], axis=1) * c_max + c_max**2
    assert (scores[:, 1] - scores[:, 0] > 4 * (20 + 6) * 2.0**-53 * W).all()
    # And through Scorer.labels, which sends what is left to the exact chunks.
    np.testing.assert_array_equal(_labels(ties, C, screen=True)[0], _exact(ties, C))


@pytest.mark.parametrize("n_clusters", [1, 255, 256, 300])
def test_center_counts_past_a_byte_are_counted_exactly(n_clusters):
    # Flags are summed in uint8 up to 255 centers, uint16 past that.
    rng = np.random.RandomState(n_clusters)
    C = rng.normal(size=(n_clusters, 9)) * 4
    X = np.concatenate(
        [
            C[rng.randint(0, n_clusters, 600)] + 0.01 * rng.normal(size=(600, 9)),
            _near_ties(rng, 100, C, 1e-9),
        ]
    )
    labels, undecided = _labels(X, C, screen=True)
    np.testing.assert_array_equal(labels, _exact(X, C))
    if n_clusters > 1:
        assert 0 < undecided.size < len(X)
    assert _columns.count_type(n_clusters) == (np.uint8 if n_clusters <= 255 else np.uint16)
    assert _columns.count_type(2**16) == np.uint32


def test_data_float32_cannot_resolve_skips_the_float64_rescoring():
    # A common offset of 1e3 over a spread of 3: float32 decides almost no row,
    # float64 would settle nearly all of them, one by one; the exact pass is
    # cheaper, so screening pauses at once.
    rng = np.random.RandomState(9)
    C = 1e3 + rng.normal(size=(20, 16)) * 3
    X = 1e3 + rng.normal(size=(3000, 16)) * 3
    scorer = _kmeans_steps.Scorer(20, 16, np.float64)
    scorer.set_centers(C)
    work = scorer.work(3000)
    out = np.empty(3000, dtype=np.intp)
    with _blas.section(1):
        assert scorer.labels(X, work, out)  # the screen ran: X is finite
    np.testing.assert_array_equal(out, _exact(X, C))
    assert scorer._unscreened == _kmeans_steps.UNSCREENED_CALLS


@pytest.mark.parametrize(("n_clusters", "n_features"), [(50, 50), (1000, 50), (20, 4096)])
def test_screened_blocks_keep_their_buffers_near_the_budget(n_clusters, n_features):
    per_row = _screen.ScreenBuffers.bytes_per_row(n_clusters, n_features)
    rows_cap = _kmeans_steps.SCREEN_BLOCK_BYTES // per_row
    score_rows = _kmeans_steps.rows_per_block(n_clusters, 8)
    block = _kmeans_steps._screen_block(10**7, score_rows, rows_cap)
    assert block % _kmeans_steps.ROW_CHUNK == 0
    buffers = _screen.ScreenBuffers(block, n_clusters, n_features)
    assert buffers.nbytes <= block * per_row  # bytes_per_row is not an underestimate
    assert buffers.nbytes <= max(_kmeans_steps.SCREEN_BLOCK_BYTES, score_rows * per_row)


def _rows_of_kind(rng: np.random.Generator, kind: int, n: int, K: int, k: int) -> np.ndarray:
    """(n, K) rows: an integer grid (ties), an offset cloud at some scale, or k blobs."""
    if kind == 0:
        return rng.integers(0, 4, size=(n, K)).astype(float)
    if kind == 1:
        offset = rng.uniform(-1, 1) * 10 ** rng.uniform(0, 4)
        return rng.standard_normal((n, K)) * 10 ** rng.uniform(-3, 3) + offset
    return rng.standard_normal((k, K))[rng.integers(0, k, n)] * 5 + rng.standard_normal((n, K))


def _moved_problem(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, centers, moved centers: integer grids (ties), offsets or blobs; moves of any size."""
    rng = np.random.default_rng(seed)
    n, K, k = int(rng.integers(300, 2000)), int(rng.integers(8, 60)), int(rng.integers(2, 30))
    X = _rows_of_kind(rng, seed % 3, n, K, k)
    C = X[rng.choice(n, k, replace=False)].copy()
    scale = 10 ** rng.uniform(-12, 0) * (np.abs(C).max() + 1)
    moved = C + rng.standard_normal(C.shape) * scale * (rng.random((k, 1)) < 0.5)
    return X, C, moved


@pytest.mark.parametrize("seed", range(40))
def test_labels_certain_after_a_move_are_the_exact_argmin(seed):
    # partial_fit labels its batch, moves the centers, and labels it again:
    # rows whose screen margin outlasts the move keep their first label
    # without a product. Every row certified must have the label the exact
    # scores give against the moved centers, and the second pass (the
    # others' chunks scored) must give every label.
    X, C, moved = _moved_problem(seed)
    margins = _screen.Margins(X.shape[0])
    first = np.empty(X.shape[0], dtype=np.intp)
    _kmeans_steps.labels_inertia(X, None, C, first, with_inertia=False, margins=margins)
    _assert_certified_labels_hold(X, moved, first, margins.certain(C, moved))


def _assert_certified_labels_hold(
    X: np.ndarray, moved: np.ndarray, first: np.ndarray, certain: np.ndarray | None
) -> np.ndarray:
    """Certified rows keep ``first``; a second pass reusing them gives every exact label."""
    assert certain is not None
    expected = _exact(X, moved)
    np.testing.assert_array_equal(first[certain], expected[certain])
    second = np.empty(X.shape[0], dtype=np.intp)
    known = _kmeans_steps.Known(first, certain)
    _kmeans_steps.labels_inertia(X, None, moved, second, with_inertia=False, known=known)
    np.testing.assert_array_equal(second, expected)
    return expected


def test_a_small_move_keeps_most_labels_and_a_large_one_none():
    X, C, _ = _moved_problem(2)  # blobs
    margins = _screen.Margins(X.shape[0])
    first = np.empty(X.shape[0], dtype=np.intp)
    _kmeans_steps.labels_inertia(X, None, C, first, with_inertia=False, margins=margins)
    small = margins.certain(C, C + 1e-3)
    large = margins.certain(C, C + 1e3)
    assert small is not None and large is not None
    assert small.mean() > 0.9
    assert not large.any()
    # Rows the screen did not decide are never certain, even without a move.
    margins.undecided(0, 10)
    unmoved = margins.certain(C, C)
    assert unmoved is not None and not unmoved[:10].any()


def test_the_move_bound_is_tight_enough_to_matter():
    # The worst case of the bound: the label's center and its rival move
    # along x in opposite directions, so both the norm changes (nu) and the
    # |x| delta terms close the gap. Rows whose gap is below the actual
    # change flip; rows certified by a bound any weaker would include some.
    X, C, moved = _opposite_moves(2000, np.float64)
    margins = _screen.Margins(X.shape[0])
    first = np.empty(X.shape[0], dtype=np.intp)
    _kmeans_steps.labels_inertia(X, None, C, first, with_inertia=False, margins=margins)
    _assert_tight(X, moved, first, margins.certain(C, moved))


def _opposite_moves(n_rows: int, dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (1, t) for t in [0, 0.5], two centers that all rows pick first, moved apart along x."""
    a, h, eps, delta = 1.0, 1.0, 1e-3, 0.05
    t = np.linspace(0.0, 0.5, n_rows)
    X = np.zeros((t.size, 8), dtype=dtype)
    X[:, 0], X[:, 1] = 1.0, t
    C = np.zeros((2, 8), dtype=dtype)
    C[0, :2] = -a, h  # every row's label
    C[1, :2] = -a, -(h + eps)
    moved = C.copy()
    moved[0, 0] -= delta
    moved[1, 0] += delta
    return X, C, moved


def _assert_tight(X: np.ndarray, moved: np.ndarray, first: np.ndarray, certain: np.ndarray | None):
    """Some rows flip, some are certain, and the first certain row follows the last flip closely."""
    assert not first.any()
    expected = _exact(X, moved)
    assert certain is not None
    assert expected.any() and certain.any()  # some rows flip, some are certain
    np.testing.assert_array_equal(first[certain], expected[certain])
    # Gaps grow with t: the rows that flip come first, and the certain ones
    # start only a little after them (the bound is tight here).
    last_flip, first_certain = np.flatnonzero(expected).max(), np.flatnonzero(certain).min()
    assert last_flip < first_certain <= 1.05 * last_flip + 5


def _moved_problem32(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_moved_problem`'s kinds in float32, for (k, n) exact scores or (n, k) ones.

    From 4 to 100 centers (64 or more take the (n, k) path) and 1,024 rows
    or more (a last partial chunk takes it too).
    """
    rng = np.random.default_rng(1000 + seed)
    n, K = int(rng.integers(1024, 3000)), int(rng.integers(4, 60))
    k = int(rng.integers(-(-K // _columns.FEATURES_PER_CENTER), 100))
    X = _rows_of_kind(rng, seed % 3, n, K, k)
    C = X[rng.choice(n, k, replace=False)]
    scale = 10 ** rng.uniform(-7, 0) * (np.abs(C).max() + 1)
    moved = C + rng.standard_normal(C.shape) * scale * (rng.random((k, 1)) < 0.5)
    return X.astype(np.float32), C.astype(np.float32), moved.astype(np.float32)


def _exact_margins(X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, _screen.Margins]:
    """First labels of float32 ``X`` and their "exact" margins, as partial_fit records them."""
    margins = _screen.Margins(X.shape[0], first="exact")
    first = np.empty(X.shape[0], dtype=np.intp)
    _kmeans_steps.labels_inertia(X, None, C, first, with_inertia=False, margins=margins)
    return first, margins


@pytest.mark.parametrize("seed", range(40))
def test_labels_certain_after_a_move_from_exact_float32_scores(seed):
    # The same promise from float32 data scored exactly (no screen): rows
    # whose gap between their two best scores outlasts the move and both
    # passes' float32 errors keep their label.
    X, C, moved = _moved_problem32(seed)
    first, margins = _exact_margins(X, C)
    np.testing.assert_array_equal(first, _exact(X, C))
    _assert_certified_labels_hold(X, moved, first, margins.certain(C, moved))


def test_exact_float32_margins_keep_most_labels_after_a_small_move_and_none_after_a_large():
    rng = np.random.RandomState(4)
    C = (rng.normal(size=(20, 30)) * 5).astype(np.float32)
    X = (C[rng.randint(0, 20, 3000)] + rng.normal(size=(3000, 30))).astype(np.float32)
    first, margins = _exact_margins(X, C)
    small = margins.certain(C, C + np.float32(1e-3))
    large = margins.certain(C, C + np.float32(1e3))
    assert small is not None and large is not None
    # Whole chunks from (k, n) scores, the last partial one from (n, k) scores.
    assert small[:2816].mean() > 0.95 and small[2816:].mean() > 0.95
    assert not large.any()
    # A tie between two centers leaves no gap: never certain, even unmoved.
    tied = np.concatenate([C[:1], C[:1], C[2:]])
    _, margins = _exact_margins(X, tied)
    unmoved = margins.certain(tied, tied)
    assert unmoved is not None
    nearest = _exact(X, tied)
    assert nearest[:2816].min() == 0 and nearest[2816:].min() == 0
    assert not unmoved[nearest == 0].any() and unmoved.mean() > 0.8


def test_the_exact_float32_move_bound_is_tight_enough_to_matter():
    # As for the screen: rows whose gap is below the change flip, and the
    # first certain row comes only a little after the last that flips.
    X, C, moved = _opposite_moves(2048, np.float32)
    first, margins = _exact_margins(X, C)
    _assert_tight(X, moved, first, margins.certain(C, moved))


@pytest.mark.parametrize("seed", range(3))
def test_exact_float32_margins_cover_the_scores_rounding_far_from_the_origin(seed):
    # Blobs 10,000 from the origin: float32 scores are off by tens there, more
    # than many gaps between them. Centers moved by one ulp here and there
    # barely move the exact scores, but rescoring rounds differently, so only
    # the error terms keep near-ties from being certified (without them,
    # 0.4-2% of the certified rows got another label).
    rng = np.random.RandomState(seed)
    C = (rng.normal(size=(20, 30)) * 3 + 1e4).astype(np.float32)
    X = (C[rng.randint(0, 20, 4096)] + rng.normal(size=(4096, 30)) * 3).astype(np.float32)
    first, margins = _exact_margins(X, C)
    moved = C.copy()
    where = rng.randint(0, 20, size=10), rng.randint(0, 30, size=10)
    moved[where] = np.nextafter(moved[where], np.float32(np.inf))
    certain = margins.certain(C, moved)
    assert certain is not None
    np.testing.assert_array_equal(first[certain], _exact(X, moved)[certain])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_batch_over_the_margins_cap_keeps_no_margins(monkeypatch, dtype):
    # partial_fit keeps margins (9 bytes a row) only for batches of at most
    # MARGINS_MAX_ROWS rows; a longer one is labelled again from scratch, with
    # the same result.
    rng = np.random.RandomState(7)
    C = rng.normal(size=(6, 12)) * 4
    X = (C[rng.randint(0, 6, 3000)] + rng.normal(size=(3000, 12))).astype(dtype)

    def step(cap: int) -> tuple[_kmeans_steps.Known | None, np.ndarray]:
        monkeypatch.setattr(_kmeans_steps, "MARGINS_MAX_ROWS", cap)
        centers = C.astype(dtype)
        known = _kmeans_steps.large_batch_step(
            X,
            None,
            centers,
            np.full(6, 100.0, dtype=dtype),
            np.random.RandomState(0),
            random_reassign=False,
            reassignment_ratio=0.01,
            verbose=False,
            relabel=True,
        )
        return known, centers

    known, centers = step(3000)
    assert known is not None and known.certain.mean() > 0.9
    unkept, unkept_centers = step(2999)
    assert unkept is None
    np.testing.assert_array_equal(unkept_centers, centers)


def test_partial_fit_over_the_margins_cap_matches_sklearn(monkeypatch):
    monkeypatch.setattr(_kmeans_steps, "MARGINS_MAX_ROWS", 500)
    rng = np.random.RandomState(8)
    X = rng.normal(size=(4000, 10)) + rng.randint(0, 4, size=(4000, 1)) * 6.0
    ours, ref = (
        MiniBatchKMeans(n_clusters=5, random_state=0),
        SkMiniBatchKMeans(n_clusters=5, random_state=0, n_init="auto"),
    )
    for chunk in (X[:400], X[400:2400], X[2400:]):  # under, then over the cap
        ours.partial_fit(chunk)
        ref.partial_fit(chunk)
        assert_same_fit(ours, ref)
