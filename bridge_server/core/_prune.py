"""Exact labels without distances, for low-dimensional data: a grid of certain cells.

Labelling a row costs a product with every center and an argmin over them
(about 170 ns a row for 100 centers). In 1 to 3 dimensions most rows lie
well inside one center's Voronoi cell, where no rounding can change the
answer. :class:`CellTable` lays a grid over the data's bounding box and
decides, once per call, which grid cells lie wholly inside one center's
region with a margin larger than any rounding error of the scores; a row in
such a cell gets that center as its label after a few arithmetic operations.
Rows in the other cells go through the exact scorer as before.

Why this is exact. scikit-learn's label for a row is the argmin of the
rounded scores ``fl(|c|^2 - 2 x.c)``. Each score is within ``E`` of the exact
``|x - c|^2 - |x|^2`` (a bound on the rounding of a ``d + 1`` term
dot product, taken four times over). If the exact squared distance of every
other center exceeds the nearest one's by more than ``2 E`` for every point of
a cell, the rounded argmin is the nearest center, whatever the rounding. A
cell with center ``p`` and half-diagonal ``r`` qualifies when, for the
nearest center at distance ``d1`` from ``p`` and the second at ``d2``:
``(d2 - r)^2 - (d1 + r)^2 > 2 E`` (plus slack for the float64 arithmetic of
the test itself). ``r`` is inflated so that a row placed in a cell by rounded
arithmetic is still within it.

The grid covers the centers' bounding box with a margin, so building it
needs no pass over the data; rows outside it are simply scored. The rows
left over are scored as a gathered block. That gives the same
scores as scoring them in place only if a score does not depend on the row's
position in the product, which holds for the few-term products here on
OpenBLAS's x86 kernels; :func:`gather_is_exact` checks it once per process
and pruning is off where it fails.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict

import numpy as np

#: Most features for which the grid is used.
MAX_FEATURES = 3

#: Fewest rows for which building a table pays.
MIN_ROWS = 4096

#: Fewest centers for which a grid used once pays: a row's labelling costs
#: about 1.7 ns per center, a lookup about 12 ns plus the build's share.
MIN_CLUSTERS = 24

#: Rows over which a grid pays even for a few centers (the build is at most
#: :data:`MAX_PAIRS` pairs, about 20 ms).
AMORTIZE_ROWS = 1 << 22

#: Rows looked up per block (blocks are long: each costs a dozen NumPy calls).
BLOCK_ROWS = 1 << 15

#: Most coarse cells, and rows of the call per coarse cell.
COARSE_CELLS = 256
ROWS_PER_COARSE_CELL = 64

#: (fine cell, candidate center) pairs the build may evaluate per row of the call,
#: and in all (each costs about 10 ns, a row's labelling about 1.7 ns per center).
PAIRS_PER_ROW = 2
MAX_PAIRS = 1 << 21

#: Most fine cells in a table.
MAX_CELLS = 1 << 17

#: How far the grid reaches past the centers' bounding box, as a share of its extent.
MARGIN = 0.1

#: Largest center coordinate, and smallest nonzero spread of the centers along
#: an axis, for which a grid is built (see :func:`grid_fits`).
GRID_REACH = 1e150
GRID_MIN_SPAN = 1e-150


def _squared_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``|p - c|^2`` by coordinates, shape ``points.shape[:-1] + centers.shape[-2:-1]``.

    ``points`` is (..., n, d) and ``centers`` (..., m, d) with matching leading
    axes; float64, direct differences (no cancellation).
    """
    out = None
    for axis in range(points.shape[-1]):
        t = points[..., :, np.newaxis, axis] - centers[..., np.newaxis, :, axis]
        np.multiply(t, t, out=t)
        if out is None:
            out = t
        else:
            out += t
    assert out is not None
    return out


def _outer_views(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Views of the (m, split, n1) parts that broadcast to (m, split, ..., split, n1).

    ``sum(view[j] for view in views)`` is then ``parts[0][j, i0] + parts[1][j, i1] + ...``
    for every fine cell (i0, i1, ..., coarse cell).
    """
    n_axes = len(parts)
    views = []
    for index, part in enumerate(parts):
        m, split, n1 = part.shape
        ones_before, ones_after = (1,) * index, (1,) * (n_axes - 1 - index)
        views.append(part.reshape((m, *ones_before, split, *ones_after, n1)))
    return views


class CellTable:
    """Certain labels for the cells of a grid around the centers (see the module docstring).

    The grid covers the centers' bounding box widened by :data:`MARGIN` of its
    extent on every side, plus one ring of cells that are never certain:
    rows outside the box land there (after clipping) and are scored.

    It is built in two levels. A coarse grid keeps, per coarse cell, the
    centers that could be nearest (with the margin) to some point of it;
    each coarse cell is then cut into fine cells, tested against those
    candidates only. A center left out at the coarse level is beaten by the
    coarse cell's nearest center by more than the margin everywhere in the
    cell, so it cannot be nearer than any fine cell's certain label either.

    Parameters
    ----------
    centers : ndarray of shape (n_clusters, n_features)
    n_rows : int
        Rows the table will label (sizes the grid: the build is a small part of their cost).
    dtype : numpy dtype
        The dtype in which the scores are computed (sets the rounding bound).
    """

    def __init__(self, centers: np.ndarray, n_rows: int, dtype: np.dtype) -> None:
        if not grid_fits(centers, dtype):
            raise ValueError("these centers are beyond the grid's arithmetic")
        n_clusters, n_features = centers.shape
        c64 = centers.astype(np.float64)
        lo = c64.min(axis=0)
        extent = c64.max(axis=0) - lo
        # A flat axis still needs width, or rows off it would look inside.
        extent = np.where(extent > 0, extent, max(float(extent.max()), 1.0))
        lo = lo - MARGIN * extent
        extent = extent * (1 + 2 * MARGIN)

        # Rounding bound of one score, |fl(s) - s| <= E, taken generously, and
        # the margin a certain label needs: 2 E plus slack for this float64 test.
        unit = float(np.finfo(dtype).eps) / 2
        corner = np.maximum(np.abs(lo), np.abs(lo + extent))
        x_norm = float(np.sqrt(np.sum(corner**2)))
        c_norm = float(np.sqrt(np.max(np.einsum("ij,ij->i", c64, c64))))
        bound = 4 * (n_features + 3) * unit * (c_norm**2 + 2 * x_norm * c_norm)
        # ... and the absolute error of results in the subnormal range (half
        # the smallest subnormal per operation, 2K + 1 operations).
        bound += 4 * (n_features + 3) * float(np.finfo(dtype).smallest_subnormal)

        def beaten(dist: np.ndarray, best: np.ndarray, radius: float) -> np.ndarray:
            """Whether a center at ``dist`` from a cell's middle is farther than the
            one at ``best`` by more than the margin, everywhere in the cell."""
            low = dist - radius
            high = best + radius
            # The relative slack covers this float64 test's own rounding; written
            # so that a lone candidate (dist = inf) is beaten-proof, not NaN.
            return (low > 0) & (low * low * (1 - 1e-9) - high * high * (1 + 1e-9) > 2 * bound)

        # Coarse level: candidates per coarse cell.
        n_coarse = min(COARSE_CELLS, max(1, n_rows // ROWS_PER_COARSE_CELL))
        coarse = _grid_shape(extent, n_coarse)
        coarse_width = extent / coarse
        coarse_radius = _half_diagonal(coarse_width)
        starts = _cell_corners(lo, coarse_width, coarse)  # (n1, d)
        middles = starts + coarse_width / 2
        dist = np.sqrt(_squared_distances(middles, c64))  # (n1, k)
        candidate = ~beaten(dist, dist.min(axis=1, keepdims=True), coarse_radius)
        n_cand = int(candidate.sum(axis=1).max())
        # Each coarse cell's candidates in center order, padded with a center
        # at infinity that is never nearest.
        cell_of, center_of = np.nonzero(candidate)
        firsts = np.searchsorted(cell_of, np.arange(candidate.shape[0]))
        cand_index = np.full((candidate.shape[0], n_cand), n_clusters, dtype=np.intp)
        cand_index[cell_of, np.arange(cell_of.size) - firsts[cell_of]] = center_of
        padded = np.vstack([c64, np.full((1, n_features), np.inf)])

        # Fine level: each coarse cell cut into split^d cells.
        n1 = starts.shape[0]
        budget = min(MAX_PAIRS, PAIRS_PER_ROW * n_rows)
        split = int((budget / (n1 * n_cand)) ** (1.0 / n_features))
        split = max(1, min(split, int((MAX_CELLS / n1) ** (1.0 / n_features))))
        fine_width = coarse_width / split
        fine_radius = _half_diagonal(fine_width)
        # Squared distance by axis, (m, split, n1) each: (x_i - c_j)^2 for the
        # split middles x_i of each coarse cell along that axis. Coarse cells
        # are the last (longest) axis, so every NumPy loop below is long.
        cand = padded[cand_index]  # (n1, m, d)
        steps = (np.arange(split) + 0.5)[:, np.newaxis]
        per_axis = []
        with np.errstate(invalid="ignore"):
            for axis in range(n_features):
                mid = starts[np.newaxis, :, axis] + steps * fine_width[axis]  # (split, n1)
                t = mid[np.newaxis, :, :] - cand[:, :, axis].T[:, np.newaxis, :]
                per_axis.append(np.multiply(t, t, out=t))
        # The two nearest candidates of every fine cell, one candidate at a time
        # (a running minimum over few candidates beats argmin's per-row cost).
        cells = (split,) * n_features + (n1,)
        best = np.full(cells, np.inf)
        second = np.full(cells, np.inf)
        local = np.zeros(cells, dtype=np.intp)
        d2 = np.empty(cells)
        larger = np.empty(cells)
        closer = np.empty(cells, dtype=bool)
        views = _outer_views(per_axis)
        for j in range(n_cand):
            np.copyto(d2, views[0][j])
            for view in views[1:]:
                d2 += view[j]
            np.less(d2, best, out=closer)
            np.copyto(local, j, where=closer)
            # second = min(second, max(best, d2)); best = min(best, d2)
            np.maximum(best, d2, out=larger)
            np.minimum(second, larger, out=second)
            np.minimum(best, d2, out=best)
        sure = beaten(np.sqrt(second), np.sqrt(best), fine_radius)
        labels = np.where(sure, cand_index[np.arange(n1), local], -1)

        # Fine cells in grid order: (split axes..., coarse axes...) to
        # (coarse 0, split 0, coarse 1, split 1, ...).
        inner = coarse * split
        grid = labels.reshape((split,) * n_features + tuple(coarse))
        perm = [a for axis in range(n_features) for a in (n_features + axis, axis)]
        grid = grid.transpose(perm).reshape(tuple(inner))

        #: Cells per axis, with the ring.
        self.shape = inner + 2
        #: Where ring cell 0 starts, and 1 / cell width, per axis.
        self.origin = lo - fine_width
        self.scale = 1.0 / fine_width
        self.strides = np.ones(n_features, dtype=np.intp)
        for axis in range(n_features - 2, -1, -1):
            self.strides[axis] = self.strides[axis + 1] * self.shape[axis + 1]
        table = np.full(tuple(self.shape), -1, dtype=np.intp)
        table[tuple(slice(1, -1) for _ in range(n_features))] = grid
        #: Flat table over ``shape`` (C order): a label, or -1.
        self.table = table.ravel()

    def lookup(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Certain label of each row of ``X``, -1 where not certain; into ``out`` (intp)."""
        n_rows, n_features = X.shape
        cell = np.zeros(n_rows, dtype=np.intp)
        coord = np.empty(n_rows, dtype=np.float64)
        index = np.empty(n_rows, dtype=np.intp)
        for axis in range(n_features):
            with np.errstate(over="ignore"):  # far rows: inf, clipped into the ring below
                np.subtract(X[:, axis], self.origin[axis], out=coord)
                coord *= self.scale[axis]
            # Clipped before the cast (far rows would overflow it); truncation
            # then puts anything below the box into ring cell 0.
            np.maximum(coord, 0, out=coord)
            np.minimum(coord, self.shape[axis] - 1, out=coord)
            np.copyto(index, coord, casting="unsafe")
            if self.strides[axis] != 1:
                index *= self.strides[axis]
            cell += index
        return np.take(self.table, cell, out=out, mode="clip")


def _grid_shape(extent: np.ndarray, n_cells: int) -> np.ndarray:
    """Cells per axis for about ``n_cells`` square-ish cells over ``extent`` (all > 0).

    An axis narrower than a cell's side gets one cell, and the other axes
    share the cells: extents can differ by many orders of magnitude (centers
    on a constant feature differ by rounding only). The side is found in
    logarithms, so no product of extents underflows or overflows. Each axis
    gets at most ``n_cells`` cells, and all together at most ``2**d`` times
    ``n_cells``.
    """
    n_cells = max(1, n_cells)
    logs = np.log(extent)
    shape = np.ones(extent.size, dtype=np.intp)
    active = np.ones(extent.size, dtype=bool)
    log_side = 0.0
    while active.any():
        log_side = (float(logs[active].sum()) - math.log(n_cells)) / int(active.sum())
        thin = active & (logs <= log_side)
        if not thin.any():
            break
        active &= ~thin
    if active.any():
        cells = np.ceil(np.exp(logs[active] - log_side))
        shape[active] = np.minimum(cells, n_cells).astype(np.intp)
    return shape


def _half_diagonal(width: np.ndarray) -> float:
    """Half the diagonal of a cell, inflated well past the rounding of cell placement."""
    return 0.5 * float(np.sqrt(np.sum(width**2))) * (1 + 1e-6)


def _cell_corners(lo: np.ndarray, width: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Lower corners of the cells of a grid, shape (prod(shape), d), in C order."""
    index = np.arange(int(np.prod(shape)))
    corners = np.empty((index.size, lo.size))
    inner = 1
    for axis in range(lo.size - 1, -1, -1):
        corners[:, axis] = lo[axis] + (index // inner % shape[axis]) * width[axis]
        inner *= int(shape[axis])
    return corners


#: Tables kept for reuse (a fitted model's repeated predicts share one).
CACHE_SIZE = 4

_cache: OrderedDict[tuple[object, ...], CellTable] = OrderedDict()
#: Keys of tables not built yet because they had few centers and were seen once.
_seen: OrderedDict[tuple[object, ...], None] = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every kept table (benchmarks time a first call with it)."""
    with _cache_lock:
        _cache.clear()
        _seen.clear()


def grid_fits(centers: np.ndarray, dtype: np.dtype) -> bool:
    """Whether a grid around ``centers`` can say what scores in ``dtype`` decide.

    The grid's own float64 arithmetic must stay finite and exact enough:
    squares of coordinates (and of the grid's reach past the centers) must not
    overflow, and cell widths must not be so small that their reciprocals do.
    So must the scores it stands for, in ``dtype``: where they would overflow
    (float32 from about 2e18) scikit-learn's labels are not the nearest
    center's, and where every score is at the bottom of the range (float32
    centers below about 3e-16) no cell would be certain. Data that fails this
    is labelled the plain way.
    """
    info = np.finfo(dtype)
    lo, hi = centers.min(axis=0), centers.max(axis=0)
    largest = float(max(np.abs(lo).max(), np.abs(hi).max()))
    reach = min(GRID_REACH, 0.25 * math.sqrt(float(info.max) / (centers.shape[1] + 1)))
    if not largest < reach:
        return False  # (and hi - lo could overflow)
    if largest * largest < float(info.tiny) / float(info.eps):
        return False
    span = hi - lo
    positive = span[span > 0]
    return positive.size == 0 or float(positive.min()) > GRID_MIN_SPAN


def table_for(n_samples: int, centers: np.ndarray, dtype: np.dtype) -> CellTable | None:
    """A :class:`CellTable` for labelling ``n_samples`` rows, or None where it would not pay.

    Tables depend only on the centers' values, the dtype and the scale of
    ``n_samples``; the last :data:`CACHE_SIZE` are kept, so predicting chunk
    after chunk against the same centers builds one. With few centers
    (labelling is cheap) a table is built only when it will be used enough:
    for at least :data:`AMORTIZE_ROWS` rows, or for centers seen before (the
    second chunk of a predict stream, not each call of a ``partial_fit``
    stream, whose centers move every time).
    """
    n_features, n_clusters = centers.shape[1], centers.shape[0]
    dtype = np.dtype(dtype)
    if (
        n_features > MAX_FEATURES
        or n_samples < MIN_ROWS
        or n_clusters < 2
        or not grid_fits(centers, dtype)
        or not gather_is_exact(dtype, n_features)
    ):
        return None
    key = (dtype.str, n_samples.bit_length(), centers.shape, centers.dtype.str, centers.tobytes())
    with _cache_lock:
        table = _cache.get(key)
        if table is not None:
            _cache.move_to_end(key)
            return table
        if n_clusters < MIN_CLUSTERS and n_samples < AMORTIZE_ROWS and key not in _seen:
            _seen[key] = None
            while len(_seen) > CACHE_SIZE:
                _seen.popitem(last=False)
            return None
        _seen.pop(key, None)
    # Sized for the top of the bucket, so every call that shares it is served as well.
    table = CellTable(centers, 1 << n_samples.bit_length(), dtype)
    with _cache_lock:
        _cache[key] = table
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return table


@functools.cache
def gather_is_exact(dtype: np.dtype, n_features: int) -> bool:
    """Whether scoring rows gathered out of place gives the scores they get in place."""
    from ._blas import section
    from ._kmeans_steps import Scorer

    rng = np.random.RandomState(2718)  # a private generator: never the caller's draws
    n_rows, n_clusters = 1000, 37
    X = (rng.normal(size=(n_rows, n_features)) * 7 + 2).astype(dtype)
    C = (rng.normal(size=(n_clusters, n_features)) * 5).astype(dtype)
    order = rng.permutation(n_rows)[:613]
    scorer = Scorer(n_clusters, n_features, dtype)
    scorer.set_centers(C)
    with section(1):
        whole = scorer.scores(X, scorer.row_buffer(n_rows), np.empty((n_rows, n_clusters), dtype))
        part = scorer.scores(
            X[order], scorer.row_buffer(order.size), np.empty((order.size, n_clusters), dtype)
        )
    return bool(np.array_equal(whole[order], part))
