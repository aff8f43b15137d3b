"""The grid of certain cells (``_prune``) never gives a label the scores would not."""

from __future__ import annotations

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans, sklearn_loop_labels

from bridge_server.core import MiniBatchKMeans, _blas, _kmeans_steps, _prune


def _scored_labels(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """scikit-learn's pick from the exact scorer over all centers: the reference labels."""
    scorer = _kmeans_steps.Scorer(C.shape[0], C.shape[1], C.dtype)
    scorer.set_centers(C)
    out = np.empty((X.shape[0], C.shape[0]), C.dtype)
    with _blas.section(1):
        scores = scorer.scores(X, scorer.row_buffer(X.shape[0]), out)
        return sklearn_loop_labels(scores, axis=1)


def _datasets(n_features: int, dtype: type) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.RandomState(n_features)
    n = 30_000
    blob_centers = rng.uniform(-50, 50, size=(40, n_features))
    blobs = blob_centers[rng.randint(0, 40, n)] + rng.normal(size=(n, n_features))
    grid = rng.randint(-6, 7, size=(n, n_features)).astype(float)
    sets = [
        ("blobs", blobs, blob_centers + rng.normal(scale=0.1, size=blob_centers.shape)),
        # Integer data and integer centers: many rows exactly halfway between two.
        ("integer ties", grid, rng.randint(-6, 7, size=(25, n_features)).astype(float)),
        # Duplicated centers are never certain; the lower index must win.
        ("duplicate centers", grid, np.repeat(rng.randint(-6, 7, size=(8, n_features)), 2, 0)),
        (
            "rounded",
            np.round(rng.normal(size=(n, n_features)) * 10, 1),
            rng.normal(size=(30, n_features)) * 10,
        ),
        (
            "offset",
            rng.normal(size=(n, n_features)) * 1e3 + 1e5,
            rng.normal(size=(30, n_features)) * 1e3 + 1e5,
        ),
        # Rows far outside the centers' box, beyond the grid.
        ("far rows", rng.normal(size=(n, n_features)) * 1e4, rng.normal(size=(20, n_features))),
    ]
    return [(name, X.astype(dtype), C.astype(dtype)) for name, X, C in sets]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_features", [1, 2, 3])
def test_certain_cells_agree_with_the_scores(dtype, n_features):
    for name, X, C in _datasets(n_features, dtype):
        # Sized as for a million rows: a finer grid (3 features need it to do much).
        table = _prune.CellTable(C, 1_000_000, np.dtype(dtype))
        looked_up = table.lookup(X, np.empty(X.shape[0], np.intp))
        certain = looked_up >= 0
        expected = _scored_labels(X, C)
        np.testing.assert_array_equal(looked_up[certain], expected[certain], err_msg=name)
        if name == "blobs":
            assert certain.mean() > 0.5, (name, certain.mean())  # the grid does its job
        if name == "duplicate centers":
            # Twins are never certain, so neither of a pair is ever looked up.
            assert not certain.any(), name


def test_lookup_places_rows_in_the_ring_outside_the_box():
    C = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    table = _prune.CellTable(C, 100_000, np.dtype(np.float64))
    far = np.array([[1e300, 0.0], [-1e300, 5.0], [3.0, -1e12], [np.nextafter(-2.0, -3), 1.0]])
    out = table.lookup(far, np.empty(4, np.intp))
    assert list(out[:3]) == [-1, -1, -1]
    # Just inside the box's margin: a certain label is still the right one.
    assert out[3] in (-1, 0)


@pytest.mark.parametrize("with_weights", [False, True])
def test_labels_and_inertia_equal_with_and_without_the_grid(monkeypatch, with_weights):
    rng = np.random.RandomState(5)
    X = np.round(rng.normal(size=(50_000, 2)) * 4, 1)
    sw = rng.uniform(0.5, 2, size=X.shape[0]) if with_weights else None
    C = X[rng.choice(X.shape[0], 60, replace=False)]
    with_grid = np.empty(X.shape[0], np.int32)
    inertia_grid = _kmeans_steps.labels_inertia(X, sw, C, with_grid)
    assert _prune.table_for(X.shape[0], C, X.dtype) is not None  # the grid was used
    monkeypatch.setattr(_prune, "MIN_ROWS", 10**9)
    without = np.empty(X.shape[0], np.int32)
    inertia_plain = _kmeans_steps.labels_inertia(X, sw, C, without)
    np.testing.assert_array_equal(with_grid, without)
    assert inertia_grid == inertia_plain


def test_tables_are_reused_for_the_same_centers():
    rng = np.random.RandomState(6)
    C = rng.normal(size=(30, 2))
    first = _prune.table_for(100_000, C, np.dtype(np.float64))
    assert _prune.table_for(100_001, C.copy(), np.dtype(np.float64)) is first
    moved = C.copy()
    moved[3, 1] += 1e-12
    assert _prune.table_for(100_000, moved, np.dtype(np.float64)) is not first
    assert _prune.table_for(100_000, C.astype(np.float32), np.dtype(np.float32)) is not first
    assert _prune.table_for(_prune.MIN_ROWS - 1, C, np.dtype(np.float64)) is None
    assert _prune.table_for(100_000, rng.normal(size=(30, 4)), np.dtype(np.float64)) is None
    # Few centers: labelling is cheap, so a grid only for centers seen twice
    # (a predict stream, not a partial_fit stream) or for very many rows.
    few = rng.normal(size=(_prune.MIN_CLUSTERS - 1, 2))
    assert _prune.table_for(100_000, few, np.dtype(np.float64)) is None
    assert _prune.table_for(100_000, few + 1, np.dtype(np.float64)) is None
    assert _prune.table_for(100_000, few, np.dtype(np.float64)) is not None
    assert _prune.table_for(100_000, few + 2, np.dtype(np.float64)) is None
    assert _prune.table_for(_prune.AMORTIZE_ROWS, few + 2, np.dtype(np.float64)) is not None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_features", [1, 2, 3])
def test_predict_and_score_match_sklearn_on_tie_heavy_data(dtype, n_features):
    rng = np.random.RandomState(10 + n_features)
    X = rng.randint(-20, 21, size=(12_000, n_features)).astype(dtype)
    X_new = rng.randint(-25, 26, size=(20_000, n_features)).astype(dtype)
    params = dict(n_clusters=30, batch_size=256, max_iter=5, random_state=0, n_init=1)
    ours = MiniBatchKMeans(**params).fit(X)
    ref = SkMiniBatchKMeans(**params).fit(X)
    assert _prune.table_for(X_new.shape[0], ours.cluster_centers_, np.dtype(dtype)) is not None
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_array_equal(ours.predict(X_new), ref.predict(X_new))
    # Labels are exact; the float32 total is summed in a different order (as in fit).
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(ours.score(X_new), ref.score(X_new), rtol=rtol)


@pytest.mark.parametrize(
    "centers",
    [
        np.random.RandomState(8).normal(size=(30, 2)) * 1e170,  # squares overflow
        np.array([[1e308, 1e308], [-1e308, -1e308]] + [[i, i] for i in range(30)]),  # span: inf
        np.random.RandomState(9).normal(size=(30, 2)) * 1e-170,  # widths' reciprocals overflow
    ],
)
def test_no_grid_beyond_float64_arithmetic(centers):
    # Finite data that passes validation: labelled the plain way, without a grid.
    assert not _prune.grid_fits(centers, np.dtype(np.float64))
    assert _prune.table_for(100_000, centers, np.dtype(np.float64)) is None
    with pytest.raises(ValueError, match="beyond the grid"):
        _prune.CellTable(centers, 100_000, np.dtype(np.float64))
    X = np.vstack([centers, centers[:5] * 0.5])
    X = np.repeat(X, 200, axis=0)
    labels = np.empty(X.shape[0], np.int32)
    with np.errstate(all="ignore"):  # the plain products overflow, as scikit-learn's do
        _kmeans_steps.labels_inertia(X, None, centers, labels, with_inertia=False)
        expected = _scored_labels(X, centers)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize(
    "extent",
    [
        [5.8e-2, 2.1e-15],  # centers on a constant feature differ by rounding
        [3e-110, 3e-110, 3e-110],  # the product of the extents underflows
        [1e-140, 1e100],  # and one that would overflow a cell count
        [1e100, 1e100, 1e-100],
        [1.0, 2.0, 3.0],
        [7.0],
    ],
)
@pytest.mark.parametrize("n_cells", [1, 16, 256])
def test_grid_shape_stays_within_the_cell_budget(extent, n_cells):
    shape = _prune._grid_shape(np.array(extent), n_cells)
    assert shape.dtype == np.intp and (shape >= 1).all() and (shape <= n_cells).all()
    assert int(np.prod(shape)) <= 2 ** len(extent) * n_cells
    widest = int(np.argmax(extent))
    assert shape[widest] == shape.max()  # the cells go to the wide axes


@pytest.mark.parametrize(
    "columns",
    [
        # A constant feature: centers on it differ only by rounding, and the
        # grid once gave that axis's sliver ~1e8 cells (13 GiB).
        lambda rng: [rng.randint(0, 50, 6000) * 1e-3, np.full(6000, 5.0)],
        # Three features spread over 3e-110: their product underflowed to 0.
        lambda rng: [rng.randint(0, 4, 6000) * 1e-110 for _ in range(3)],
    ],
    ids=["constant-feature", "tiny-spread"],
)
def test_degenerate_spreads_get_a_small_grid_and_sklearns_labels(columns):
    X = np.column_stack(columns(np.random.RandomState(0)))
    params = dict(n_clusters=30, random_state=0, max_iter=2, batch_size=1024)
    ref = SkMiniBatchKMeans(**params).fit(X)
    ours = MiniBatchKMeans(**params).fit(X)
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    table = _prune.table_for(X.shape[0], ours.cluster_centers_, X.dtype)
    assert table is not None  # the grid was used, and is small
    assert table.table.nbytes < 16 << 20


@pytest.mark.parametrize("scale", [1e-30, 1e-40])
def test_no_certain_cells_where_float32_scores_underflow(scale):
    # Every float32 score of these rows underflows to 0 (or nearly): scikit-learn
    # labels them all 0, and the grid (4,096 rows, 24 centers: built at once)
    # must not call its geometry certain there.
    X = (np.random.RandomState(0).rand(4096, 1) * scale).astype(np.float32)
    ref = SkMiniBatchKMeans(n_clusters=24, random_state=0).fit(X)
    ours = MiniBatchKMeans(n_clusters=24, random_state=0).fit(X)
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_grid_reach_follows_the_scores_dtype():
    centers = np.array([[0.0, 0.0], [1e18, 1e18], [3e18, -2e18]])
    assert _prune.grid_fits(centers, np.dtype(np.float64))
    assert not _prune.grid_fits(centers, np.dtype(np.float32))  # float32 squares overflow
    assert _prune.grid_fits(centers / 1e10, np.dtype(np.float32))
    assert not _prune.grid_fits(centers * 1e-35, np.dtype(np.float32))  # scores underflow
    assert _prune.grid_fits(centers * 1e-35, np.dtype(np.float64))
