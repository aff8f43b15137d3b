"""The algorithmic steps of mini-batch k-means, one private function per step.

Every function here reproduces scikit-learn 1.5.2's arithmetic exactly where
the result can steer the algorithm (labels, centers, random draws): see
``/work/shared/CORE-NOTES.md``. In short:

* distances go through a BLAS product on blocks of :data:`ROW_CHUNK` rows, as
  scikit-learn's Cython does, because single-precision GEMM rounds differently
  for different block heights (a row of wide float64 data is labelled from a
  float32 product instead only where a proven bound shows that no rounding of
  those products could change its argmin: see :mod:`._screen`);
* centers are accumulated sample by sample in minibatch order in the data's
  dtype (``np.add.at`` is an unbuffered, in-order loop), starting from
  ``center * weight_sum`` and finished with a reciprocal multiply;
* per-sample squared distances are summed over features in blocks of four and
  the weighted total sequentially (``np.cumsum``), in the data's dtype, where
  they steer the algorithm (the validation inertia picks the best init; a
  step's batch inertia drives early stopping, unless it is summed in any
  order with a proven bound, see :mod:`._early_stop`); a reported inertia (``inertia_``,
  ``score``) sums each row's squares with ``einsum`` from
  :data:`FAST_SQ_MIN_FEATURES` features on, as scikit-learn's own total
  depends on its thread count and is only comparable to a tolerance;
* random draws call the same ``RandomState`` methods in the same order.

Nothing here allocates ``n_samples x n_clusters``: callers give row blocks.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple

import numpy as np

from . import _argmin, _blas, _columns, _openmp, _prune, _scratch, _screen
from ._context import check_cancelled, emit_verbose, warn
from ._early_stop import Bounded
from ._split_sum import usable_cores
from ._twin import HELPERS, SplitChooser, Twin, split_history
from ._validation import all_finite, is_close

#: Rows per distance block: scikit-learn's ``CHUNK_SIZE`` (block heights change GEMM rounding).
ROW_CHUNK = 256

#: Approximate bytes for one block of the distance matrix in chunked passes.
BLOCK_BYTES = 1 << 20

#: Most features for which :class:`Scorer` folds ``|c|^2`` into the GEMM.
FOLD_MAX_FEATURES = 2

#: Most centers for which :class:`Scorer` folds (its probe scores that many).
FOLD_MAX_CLUSTERS = 4096

#: Fewest features for which :func:`labels_inertia` may sum a row's squared
#: differences with ``einsum`` (2.5x faster at 50 features, slower below 8).
FAST_SQ_MIN_FEATURES = 8

#: A screened block that leaves more than 1/SCREEN_GIVE_UP of its rows to exact
#: scoring stops screening for the next :data:`UNSCREENED_CALLS` calls.
SCREEN_GIVE_UP = 4
UNSCREENED_CALLS = 64

#: How :func:`mini_batch_step` sums its batch inertia.
InertiaMode = Literal["exact", "bounded", "none"]

#: Blocks per thread below which labelling stays on the calling thread.
PARALLEL_MIN_BLOCKS = 4

#: Most rows per block where a :class:`Scorer` screens in float32 (see
#: :func:`labels_inertia`): the screen's buffers are float32 and seldom
#: followed by exact scores, and on two threads fewer, longer blocks mean
#: fewer hand-overs of the GIL (12,800-row blocks labelled 50,000 x 50 rows
#: in 5.2 ms against 6.5 ms in 2,560-row ones).
SCREEN_BLOCK_ROWS = 50 * ROW_CHUNK

#: Approximate bytes of one thread's screen buffers for a screened block
#: (6.4 MB for 12,800 rows of 50 features and 50 centers): many centers or
#: features make blocks shorter.
SCREEN_BLOCK_BYTES = 8 << 20

#: Fewest blocks per thread for screened labelling on more than one thread.
SCREEN_MIN_BLOCKS = 2

#: Blocks per thread in one round of threaded labelling (between rounds, a
#: section at another BLAS thread count may have its turn).
ROUND_BLOCKS = 32

#: Most rows of a ``partial_fit`` batch whose first labels keep margins for its
#: second labelling (9 bytes a row: float32 gap and norm, then the certain
#: mask; 36 MiB at this cap). A call on more rows at once (a whole memory map)
#: labels twice instead, its scratch then only the labels themselves.
MARGINS_MAX_ROWS = 1 << 22

#: Least ``batch_size * n_clusters * (n_features + 1)`` for which a minibatch step
#: is labelled on two threads (1024 rows x 100 centers x 2 features is above).
STEP_SPLIT_MIN_WORK = 1 << 18


def rows_per_block(n_clusters: int, itemsize: int) -> int:
    """Rows per block so that a (rows, n_clusters) block is about :data:`BLOCK_BYTES`.

    Always a multiple of :data:`ROW_CHUNK`, so block boundaries fall on
    scikit-learn's chunk boundaries.
    """
    rows = BLOCK_BYTES // max(1, n_clusters * itemsize)
    return max(ROW_CHUNK, (rows // ROW_CHUNK) * ROW_CHUNK)


def row_sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of each row, shape (n_rows,), with scikit-learn's einsum."""
    return np.einsum("ij,ij->i", X, X)


# --------------------------------------------------------------------------- #
# Distances and labels
# --------------------------------------------------------------------------- #


def _sq_distances_init(
    A: np.ndarray,
    B: np.ndarray,
    B_sq_norms: np.ndarray,
    A_sq_norms: np.ndarray | None = None,
) -> np.ndarray:
    """Squared distances (len(A), len(B)) as k-means++ computes them, clipped at 0.

    float64: ``-2 A B^T + |a|^2 + |b|^2`` with the given ``|b|^2`` (and
    ``|a|^2`` if given: equal to recomputing them, as einsum's per-row sum
    does not depend on the other rows). float32: computed in float64 on blocks
    of the rows (scikit-learn's upcast, whose block size is reproduced), then
    rounded to float32.
    """
    if A.dtype != np.float32 and B.dtype != np.float32:
        out = np.matmul(A, B.T)
        out *= -2
        out += (row_sq_norms(A) if A_sq_norms is None else A_sq_norms)[:, np.newaxis]
        out += B_sq_norms.reshape(1, -1)
    else:
        out = np.empty((A.shape[0], B.shape[0]), dtype=np.float32)
        step = upcast_rows(A.shape[0], B.shape[0], A.shape[1])
        for a0 in range(0, A.shape[0], step):
            _upcast_sq_distances(A[a0 : a0 + step], B, out[a0 : a0 + step], step)
    np.maximum(out, 0, out=out)
    return out


def _upcast_sq_distances(A: np.ndarray, B: np.ndarray, out: np.ndarray, step: int) -> None:
    """One chunk of rows of scikit-learn's float32 squared distances, taken in float64.

    ``-2 a.b + |a|^2 + |b|^2`` for the rows of ``A`` against ``B`` in chunks of
    ``step`` rows, rounded into ``out`` (len(A), len(B)) float32; not clipped.
    """
    a64 = A.astype(np.float64)
    a_norms = row_sq_norms(a64)[:, np.newaxis]
    for b0 in range(0, B.shape[0], step):
        b64 = B[b0 : b0 + step].astype(np.float64)
        d = -2 * (a64 @ b64.T)
        d += a_norms
        d += row_sq_norms(b64)[np.newaxis, :]
        out[:, b0 : b0 + step] = d


def upcast_rows(n_x: int, n_y: int, n_features: int) -> int:
    """Rows per chunk, on both sides, of scikit-learn's float32 distances taken in float64.

    scikit-learn's ``_euclidean_distances_upcast`` sizes its chunks to about a
    tenth of the memory of both inputs and the ``(n_x, n_y)`` result (at
    least 10 MiB in 8-byte items). Products of other row counts can round
    differently, so the core uses the same chunks.
    """
    maxmem = max(((n_x + n_y) * n_features + n_x * n_y) / 10, 10 * 2**17)
    tmp = 2 * n_features
    return max(int((-tmp + np.sqrt(tmp**2 + 4 * maxmem)) / 2), 1)


def _fold_probe(dtype: np.dtype, n_features: int, n_clusters: int) -> bool:
    """Whether folding ``|c|^2`` into the product is bitwise exact here (see :class:`Scorer`).

    For ``n_clusters`` centers itself: which kernel OpenBLAS runs, and so
    how it sums, depends on the product's width. (At 2 float64 features,
    folding was exact for 67 centers but not for 196 to 199, 204 to 207,
    ...: from 196 on, for 4 to 7 more than a multiple of 8.) Two whole
    chunks, then a partial one, which :meth:`Scorer.product` multiplies
    without folding.
    """
    rng = np.random.RandomState(12345)  # a private generator: never the caller's draws
    n_rows = 2 * ROW_CHUNK + 37
    for scale in (1.0, 1e-3, 1e3):
        X = (rng.normal(size=(n_rows, n_features)) * scale + 3 * scale).astype(dtype)
        C = (rng.normal(size=(n_clusters, n_features)) * scale).astype(dtype)
        plain, folded = (
            Scorer(n_clusters, n_features, dtype, fold=False),
            Scorer(n_clusters, n_features, dtype, fold=True),
        )
        plain.set_centers(C)
        folded.set_centers(C)
        with _blas.section(1):
            a = plain.scores(X, plain.row_buffer(n_rows), np.empty((n_rows, n_clusters), dtype))
            b = folded.scores(X, folded.row_buffer(n_rows), np.empty((n_rows, n_clusters), dtype))
        if not np.array_equal(a, b):
            return False
    return True


#: Fewest features for which :func:`gemm_panels` looks for split products.
PANEL_MIN_FEATURES = 64

#: Columns a panel's product is computed with (zeros past the centers), and
#: the probe's: a narrow product could take OpenBLAS's one-pass small-matrix
#: kernel, whose sums need not be the panelled driver's.
PANEL_WIDTH = 64


def _gemm(lhs: np.ndarray, rhs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(lhs, rhs, out=out)`` for 2-D operands, by a matrix-matrix product always.

    NumPy takes a one-row ``lhs`` as a vector and calls BLAS's GEMV, whose
    sums round differently from GEMM's; scikit-learn calls GEMM for one row
    too. So one row is multiplied as two copies of it, and the first kept.
    """
    if lhs.shape[0] != 1:
        return np.matmul(lhs, rhs, out=out)
    pair = np.matmul(np.concatenate([lhs, lhs]), rhs)[:1]
    if out is None:
        return pair
    np.copyto(out, pair)
    return out


def _chunked_product(lhs: np.ndarray, rhs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``lhs @ rhs`` as scikit-learn takes it: one GEMM per 256-row chunk (into ``out``).

    ``lhs`` starts on a chunk boundary; run inside ``_blas.section(1)``.
    """
    n_rows = lhs.shape[0]
    if out is None:
        out = np.empty((n_rows, rhs.shape[1]), dtype=np.result_type(lhs, rhs))
    full = n_rows // ROW_CHUNK if n_rows > ROW_CHUNK else 0
    if not full:
        return _gemm(lhs, rhs, out=out)
    head = full * ROW_CHUNK
    np.matmul(
        lhs[:head].reshape(full, ROW_CHUNK, lhs.shape[1]),
        rhs,
        out=out[:head].reshape(full, ROW_CHUNK, out.shape[1]),
    )
    if head < n_rows:
        _gemm(lhs[head:], rhs, out=out[head:])
    return out


@functools.cache
def gemm_panels(dtype: np.dtype, n_features: int, n_clusters: int) -> tuple[int, ...]:
    """Where OpenBLAS splits a chunk's product along the features, as offsets.

    OpenBLAS's GEMM driver takes the inner dimension in panels (384
    features, then two near-halves of what is left under twice that, for
    float64 on AVX-512 here) and adds each panel's partial products to the
    output. scikit-learn's output starts as ``|c|^2`` (``beta=1``), so its
    score is ``((|c|^2 + p1) + p2) + ...``, where one product followed by
    ``+ |c|^2`` rounds differently: from 385 features on, labels of
    near-ties differed. Panel sizes depend on the CPU's kernel, so a probe
    finds them (:func:`_panel_starts`) and checks the whole split on random
    data. Returns the panels' start offsets after 0; empty for one panel, or
    when no consistent split was found. Cached per process.
    """
    if n_features <= PANEL_MIN_FEATURES:
        return ()
    dtype = np.dtype(dtype)
    # Panels do not depend on the number of centers once the product goes
    # through the driver at all: at most PANEL_WIDTH columns keep the probe cheap.
    width = min(n_clusters, PANEL_WIDTH)
    rhs = np.ones((n_features, width), dtype=dtype, order="F")
    with _blas.section(1):
        starts = _panel_starts(rhs)
        if starts:
            rng = np.random.RandomState(271828)  # private: never the caller's draws
            lhs = rng.normal(size=(ROW_CHUNK, n_features)).astype(dtype)
            rhs = np.asfortranarray(rng.normal(size=(n_features, width)).astype(dtype))
            if not np.array_equal(_chunked_product(lhs, rhs), _panelled(lhs, rhs, starts)):
                return ()
    return starts


def _panel_starts(ones: np.ndarray) -> tuple[int, ...]:
    """Offsets where the product's panels start, found with ``ones`` (K, width) on the right.

    Row ``r`` of a probe tests an offset ``b``: 1 at feature ``b - 1`` and
    half an ulp of 1 at features ``b`` and ``b + 1``. Added in one
    accumulation, each half ulp rounds away (ties to even): the row's
    product is 1. If a panel starts at ``b``, the two halves are summed
    first, to a whole ulp, and the product is the next float after 1.
    """
    n_features = ones.shape[0]
    half_ulp = np.finfo(ones.dtype).eps / 2
    offsets = np.arange(2, n_features - 1)  # panels of at least two features
    found: list[int] = []
    for first in range(0, offsets.size, ROW_CHUNK):
        batch = offsets[first : first + ROW_CHUNK]
        rows = np.arange(batch.size)
        lhs = np.zeros((ROW_CHUNK, n_features), dtype=ones.dtype)
        lhs[rows, batch - 1] = 1
        lhs[rows, batch] = half_ulp
        lhs[rows, batch + 1] = half_ulp
        out = _chunked_product(lhs, ones)[: batch.size, 0]
        found.extend(batch[out != 1].tolist())
    return tuple(found)


def _panel_product(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """One panel's product ``lhs @ rhs``, by the panelled driver's kernels."""
    n_clusters = rhs.shape[1]
    if n_clusters >= PANEL_WIDTH:
        return _chunked_product(lhs, rhs)
    padded = np.zeros((rhs.shape[0], PANEL_WIDTH), dtype=rhs.dtype, order="F")
    padded[:, :n_clusters] = rhs
    return _chunked_product(lhs, padded)[:, :n_clusters]


def _add_panels(
    lhs: np.ndarray, rhs: np.ndarray, starts: tuple[int, ...], out: np.ndarray
) -> np.ndarray:
    """Add ``lhs @ rhs`` to ``out`` panel by panel, in order (panels start at ``starts``)."""
    bounds = (0, *starts, lhs.shape[1])
    for a, b in zip(bounds[:-1], bounds[1:]):
        out += _panel_product(lhs[:, a:b], rhs[a:b])
    return out


def _panelled(lhs: np.ndarray, rhs: np.ndarray, starts: tuple[int, ...]) -> np.ndarray:
    """``lhs @ rhs`` summed panel by panel from 0, as the GEMM driver sums it."""
    out = np.zeros((lhs.shape[0], rhs.shape[1]), dtype=np.result_type(lhs, rhs))
    return _add_panels(lhs, rhs, starts, out)


@functools.cache
def _fold_norms(dtype: np.dtype, n_features: int, n_clusters: int) -> bool:
    """Whether :class:`Scorer` may fold ``|c|^2`` into the GEMM for this shape.

    Only for at most :data:`FOLD_MAX_FEATURES` features: OpenBLAS's x86 kernels
    accumulate ``K <= 3`` in order in one register per output, but not
    larger ``K`` (folded and separate adds were seen to differ from 3
    features on), and not in every kernel (see :func:`_fold_probe`).
    Kernels are picked at run time, so a probe on this machine confirms it
    once per process and shape; a single center (whose product NumPy may
    take another way) and more than :data:`FOLD_MAX_CLUSTERS` centers are
    not folded.
    """
    return (
        n_features <= FOLD_MAX_FEATURES
        and 1 < n_clusters <= FOLD_MAX_CLUSTERS
        and _fold_probe(dtype, n_features, n_clusters)
    )


@functools.cache
def _columns_exact(dtype: np.dtype, n_features: int, n_clusters: int) -> bool:
    """Whether (k, n) scores (:meth:`Scorer.column_scores`) equal the (n, k) ones bit for bit.

    Each score is one dot product either way, but BLAS picks its kernels by
    the product's shape, and a kernel may split the sum over the features
    differently: a probe on random data at three scales says, once per
    process and shape (transposed scores for 50 features were seen equal on
    OpenBLAS's SkylakeX kernels).
    """
    rng = np.random.RandomState(161803)  # a private generator: never the caller's draws
    n_rows = 2 * ROW_CHUNK
    plain = Scorer(n_clusters, n_features, dtype, fold=False, columns=False)
    rows = np.empty((n_rows, n_clusters), dtype)
    columns = np.empty((n_clusters, n_rows), dtype)
    for scale in (1.0, 1e-3, 1e3):
        X = (rng.normal(size=(n_rows, n_features)) * scale + 3 * scale).astype(dtype)
        C = (rng.normal(size=(n_clusters, n_features)) * scale).astype(dtype)
        plain.set_centers(C)
        with _blas.section(1):
            plain.scores(X, None, rows)
            plain.column_scores(X, columns)
        if not np.array_equal(rows, columns.T):
            return False
    return True


class Scorer:
    """``|c|^2 - 2 x.c`` of row blocks against fixed centers, as scikit-learn's GEMM does.

    scikit-learn starts its GEMM's output from ``|c|^2`` (``beta=1``, ``alpha=-2``),
    so the norm is added inside the kernel. NumPy's ``matmul`` has no ``beta``:
    by default the norms are added in a second pass over the (rows, k) scores,
    which costs as much as the product itself for 2 features. When
    :func:`_fold_norms` allows, the rows get a trailing column of ones and the
    centers a trailing row of norms instead, so the kernel adds the norm as
    the last term of the same in-order accumulation: the same rounding
    (``-2`` scaling is exact either way), one pass less.

    Exact labels come from scores laid out one row per center where that is
    faster and gives the same bits (:attr:`columns`; see :mod:`._columns`).

    Parameters
    ----------
    n_clusters, n_features : int
    dtype : numpy dtype
    fold : bool or None
        Force folding on or off (the probe); None asks :func:`_fold_norms`.
    columns : bool or None
        Force (k, n) exact scoring on or off (off where folding or panels
        apply); None chooses by :func:`._columns.pays` and :func:`_columns_exact`.
    """

    def __init__(
        self,
        n_clusters: int,
        n_features: int,
        dtype: np.dtype,
        *,
        fold: bool | None = None,
        columns: bool | None = None,
    ) -> None:
        dtype = np.dtype(dtype)
        self.fold = _fold_norms(dtype, n_features, n_clusters) if fold is None else fold
        self.n_clusters = n_clusters
        self.n_features = n_features
        self.dtype = dtype
        width = n_features + 1 if self.fold else n_features
        # Filled row-wise as (k, width) and used transposed: the same (Fortran)
        # layout as ``(-2 * centers).T``.
        self._buf = np.empty((n_clusters, width), dtype=dtype)
        self.matrix = self._buf.T
        self._scaled = self._buf[:, :n_features]
        self._minus_two = dtype.type(-2)
        self.norms = self._buf[:, n_features] if self.fold else np.empty(n_clusters, dtype)
        #: Where OpenBLAS starts each panel of the product (see gemm_panels).
        self.panels = () if self.fold else gemm_panels(dtype, n_features, n_clusters)
        if self.fold or self.panels:
            columns = False
        elif columns is None:
            columns = _columns.pays(n_clusters, n_features, dtype.itemsize) and _columns_exact(
                dtype, n_features, n_clusters
            )
        #: Whether exact labels come from (k, n) scores (:meth:`column_scores`).
        self.columns = columns
        #: The float32 first pass of :meth:`labels`, where it pays (see :mod:`._screen`).
        self.screen = (
            _screen.Screen(n_clusters, n_features)
            if _screen.screens(n_features, n_clusters, dtype)
            else None
        )
        # Calls of :meth:`labels` left to run without the screen, after one that
        # left too many rows undecided (data at a scale where float32 cannot tell).
        self._unscreened = 0

    def set_centers(self, centers: np.ndarray) -> None:
        """Score against ``centers`` (n_clusters, n_features) from now on."""
        np.multiply(centers, self._minus_two, out=self._scaled)
        np.einsum("ij,ij->i", centers, centers, out=self.norms)
        # The largest squared norm: NaN and infinity reach it, and a maximum
        # cannot overflow. The screen's bound needs it too.
        largest = float(np.maximum.reduce(self.norms))
        #: Whether no score can be NaN unless a product makes it (see :mod:`._argmin`).
        self.finite_centers = math.isfinite(largest)
        if self.screen is not None:
            self.screen.set_centers(centers, self.norms, largest)

    def work(
        self, n_rows: int, exact_rows: int | None = None, memory: np.ndarray | None = None
    ) -> LabelWork:
        """One thread's scratch for :meth:`labels` of up to ``n_rows`` rows.

        ``exact_rows`` (a multiple of :data:`ROW_CHUNK`, default ``n_rows``)
        caps the rows scored exactly at once, and so the exact scores'
        buffer; :meth:`labels` takes longer inputs in pieces of that size.
        ``memory`` (uint8, at least :meth:`lendable_bytes`) is lent to the
        screen's largest buffers (see :class:`._screen.ScreenBuffers`).
        """
        return LabelWork(self, n_rows, exact_rows, memory)

    def lendable_bytes(self, n_rows: int) -> int:
        """Bytes of scratch :meth:`work` for ``n_rows`` rows can borrow (0 without a screen)."""
        return 0 if self.screen is None else self.screen.lendable_bytes(n_rows)

    def labels(
        self,
        X: np.ndarray,
        work: LabelWork,
        out: np.ndarray,
        margins: _screen.Margins | None = None,
        sq_norms: np.ndarray | None = None,
    ) -> bool:
        """Labels (n_rows,) into ``out``: the argmin of the rows' :meth:`scores`, first on ties.

        ``X`` starts on a chunk boundary; ``work`` is this scorer's
        :meth:`work` for at least ``len(X)`` rows. Where a :attr:`screen`
        exists, it labels the rows it is certain of, and only the chunks
        holding the others are scored exactly: the labels are the same.
        ``margins`` (for these rows) records the screen's margins, or, if
        "exact", the gaps of the exact scores (either layout); rows neither
        decides are marked undecided. ``sq_norms`` (n_rows,) float32, the
        rows' squared norms from :func:`._row_norms.finite_sq_norms`, spare
        the screen taking them. Run inside ``_blas.section(1)``.

        Returns True when the screen labelled the rows, which proves every
        value of ``X`` finite (it refuses NaN and infinity); False says nothing.
        """
        n_rows = X.shape[0]
        if margins is not None:
            margins.undecided(0, n_rows)  # until the screen says otherwise
        if self.screen is not None and work.screen is not None:
            if self._unscreened > 0:  # (threads may race it below 0: that screens)
                self._unscreened -= 1
            else:
                undecided = self.screen.label(X, work.screen, out, margins, sq_norms)
                if undecided is not None and margins is not None and undecided.size:
                    margins.undecided(0, n_rows, undecided)
                if undecided is not None:
                    if undecided.size * SCREEN_GIVE_UP > n_rows:
                        # float32 cannot resolve this data (a large common
                        # offset, say): float64 rescoring of most rows would
                        # cost more than the exact pass itself.
                        self._unscreened = UNSCREENED_CALLS
                        self._label_exactly(X, work, out)
                        return True
                    if undecided.size:
                        undecided = self.screen.settle(X, undecided, out, self._scaled, self.norms)
                    if undecided.size:
                        self._label_chunks(X, work, out, undecided)
                    return True
        exact = margins is not None and margins.first == "exact"
        self._label_exactly(X, work, out, margins if exact else None)
        return False

    def _label_exactly(
        self,
        X: np.ndarray,
        work: LabelWork,
        out: np.ndarray,
        margins: _screen.Margins | None = None,
    ) -> None:
        """Label every row of ``X`` by its exact scores, ``work.exact_capacity`` rows at a time.

        ``margins`` ("exact" ones, for these rows) receive every row's gap
        and norm (see :meth:`_label_scored`).
        """
        step = work.exact_capacity
        for start in range(0, X.shape[0], step):
            stop = min(start + step, X.shape[0])
            part = None if margins is None else margins.view(start, stop)
            self._label_scored(X[start:stop], work, out[start:stop], part)

    def _label_scored(
        self,
        X: np.ndarray,
        work: LabelWork,
        out: np.ndarray,
        margins: _screen.Margins | None = None,
    ) -> None:
        """Label the rows of ``X`` (a chunk boundary on, at most ``work.exact_capacity``) exactly.

        With :attr:`columns`, whole chunks from (k, n) scores if there are
        enough of them (:data:`._columns.MIN_ROWS`); a last partial chunk
        always from (n, k) ones, whose product is the one scikit-learn takes
        for it (the probe checks whole chunks only). ``margins`` ("exact"
        ones) receive every row's gap between its two best scores and its
        float32 norm.
        """
        n_rows = X.shape[0]
        whole = n_rows // ROW_CHUNK * ROW_CHUNK if self.columns else 0
        if whole < _columns.MIN_ROWS:
            whole = 0
        gaps = None if margins is None else margins.gaps
        if whole:
            scores = self.column_scores(X[:whole], work.column_scores(whole))
            _columns.first_min(
                scores, work.flags, out[:whole], None if gaps is None else gaps[:whole]
            )
        if whole < n_rows:
            scores = self.labelled_scores(
                X[whole:], work.rows, work.scores(n_rows - whole), out[whole:]
            )
            if gaps is not None:
                _columns.row_gaps(scores, out[whole:], gaps[whole:])
        if margins is not None:
            norms = np.einsum("ij,ij->i", X, X, out=margins.norms)
            np.sqrt(norms, out=norms)

    def _label_chunks(
        self, X: np.ndarray, work: LabelWork, out: np.ndarray, undecided: np.ndarray
    ) -> None:
        """Label exactly the chunks of ``X`` that hold the rows ``undecided``."""
        chunks = np.unique(undecided // ROW_CHUNK)
        if chunks.size * ROW_CHUNK * SCREEN_GIVE_UP > X.shape[0]:
            self._unscreened = UNSCREENED_CALLS
        for chunk in chunks.tolist():
            start = chunk * ROW_CHUNK
            stop = min(start + ROW_CHUNK, X.shape[0])
            self._label_scored(X[start:stop], work, out[start:stop])

    def row_buffer(self, n_rows: int) -> np.ndarray | None:
        """Scratch that :meth:`scores` needs for up to ``n_rows`` rows (None when not folding).

        Column-major: copying a few-feature ``X`` into its first columns is
        then a few contiguous rows of writes (3 us for 1024 x 2, against 9 us
        row-major), and BLAS packs either layout into the same panels, so the
        products are identical (which the fold probe checks on this path).
        """
        if not self.fold:
            return None
        return np.ones((self.n_features + 1, n_rows), dtype=self.dtype).T

    def labelled_scores(
        self, X: np.ndarray, rows: np.ndarray | None, out: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """:meth:`scores` into ``out``, and scikit-learn's labels from them into ``labels``.

        The argmin of each row, NaN skipped as scikit-learn skips it (see
        :mod:`._argmin`; looked for only where an operation made NaN or a
        center holds some). Returns the scores.
        """
        with _argmin.watch():
            scores = self.scores(X, rows, out)
            maybe_nan = _argmin.seen() or not self.finite_centers
        _argmin.row_labels(scores, maybe_nan, out=labels)
        return scores

    def scores(self, X: np.ndarray, rows: np.ndarray | None, out: np.ndarray) -> np.ndarray:
        """Scores of the rows of ``X`` (starting on a chunk boundary) into ``out``.

        ``rows`` is this scorer's :meth:`row_buffer` (at least ``len(X)`` rows).
        Products are taken in :data:`ROW_CHUNK`-row GEMMs, as scikit-learn's.
        Run inside ``_blas.section(1)``: on more BLAS threads a partial chunk's
        rows could be split between them and round differently.
        """
        return self.product(self.operand(X, rows), out)

    def operand(self, X: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """The left operand of :meth:`product` for the rows of ``X`` (n_rows, width).

        ``X`` itself, or (when folding) ``X`` copied into ``rows``, this
        scorer's :meth:`row_buffer`, beside its column of ones.
        """
        if not self.fold:
            return X
        assert rows is not None
        lhs = rows[: X.shape[0]]
        np.copyto(lhs[:, : self.n_features], X)
        return lhs

    def column_scores(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        """:meth:`scores` transposed: (n_clusters, n_rows) into ``out``, for whole chunks.

        ``X`` (n_rows, n_features), a whole number of :data:`ROW_CHUNK`-row
        chunks, is not copied: each chunk's product ``(-2 C) @ chunk.T`` is
        one GEMM, as scikit-learn's is, then ``|c|^2`` is added. Only where
        neither folding nor panels apply; see :meth:`scores` for the BLAS section.
        """
        n_rows, n_features = X.shape
        n_chunks = n_rows // ROW_CHUNK
        assert n_chunks * ROW_CHUNK == n_rows and not (self.fold or self.panels)
        if X.flags.c_contiguous:
            # Chunk c's rows transposed, (n_features, ROW_CHUNK), as views of X
            # and out (out's rows are contiguous, so its reshape is a view too).
            chunks = X.reshape(n_chunks, ROW_CHUNK, n_features).transpose(0, 2, 1)
            targets = out.reshape(self.n_clusters, n_chunks, ROW_CHUNK).transpose(1, 0, 2)
            np.matmul(self._scaled, chunks, out=targets)
        else:
            for start in range(0, n_rows, ROW_CHUNK):
                stop = start + ROW_CHUNK
                np.matmul(self._scaled, X[start:stop].T, out=out[:, start:stop])
        out += self.norms[:, np.newaxis]
        return out

    def product(self, lhs: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Scores (n_rows, n_clusters) into ``out`` of rows of an :meth:`operand`.

        ``lhs`` must start on a chunk boundary of the rows scikit-learn would
        score together; see :meth:`scores` for the BLAS section.
        """
        if self.panels:
            return self._panelled_product(lhs, out)
        if not self.fold:
            _chunked_product(lhs, self.matrix, out)
            out += self.norms
            return out
        n_rows = lhs.shape[0]
        head = n_rows // ROW_CHUNK * ROW_CHUNK
        if head:
            _chunked_product(lhs[:head], self.matrix, out[:head])
        if head < n_rows:
            # A partial chunk, whose short product OpenBLAS may sum in
            # another kernel: its norms are added after it, as when not folding.
            tail = out[head:]
            _gemm(lhs[head:, : self.n_features], self.matrix[: self.n_features], out=tail)
            tail += self.norms
        return out

    def _panelled_product(self, lhs: np.ndarray, out: np.ndarray) -> np.ndarray:
        """:meth:`product` where OpenBLAS adds panels into ``|c|^2`` (see :func:`gemm_panels`).

        Each part's output starts as the norms and each panel's product is
        added in turn, as scikit-learn's ``beta=1`` GEMM does. A last partial
        chunk small enough for OpenBLAS's one-pass kernel has no panels
        (:func:`_partial_chunk_panelled`), nor then has scikit-learn's.
        """
        n_rows = lhs.shape[0]
        head = n_rows // ROW_CHUNK * ROW_CHUNK
        rhs = self.matrix
        for first, last in ((0, head), (head, n_rows)):
            if first == last:
                continue
            part, scores = lhs[first:last], out[first:last]
            if first == head and not _partial_chunk_panelled(
                self.dtype, self.n_features, rhs.shape[1], last - first
            ):
                _gemm(part, rhs, out=scores)
                scores += self.norms
                continue
            scores[...] = self.norms
            _add_panels(part, rhs, self.panels, scores)
        return out


@functools.cache
def _partial_chunk_panelled(dtype: np.dtype, n_features: int, n_clusters: int, n_rows: int) -> bool:
    """Whether OpenBLAS splits the product of ``n_rows`` (< 256) rows into panels too.

    Small products skip the panelled driver on some CPUs (OpenBLAS's
    small-matrix kernels): NumPy's own product on random data says which.
    """
    starts = gemm_panels(dtype, n_features, n_clusters)
    rng = np.random.RandomState(314159)  # private: never the caller's draws
    lhs = rng.normal(size=(n_rows, n_features)).astype(dtype)
    rhs = np.asfortranarray(rng.normal(size=(n_features, n_clusters)).astype(dtype))
    with _blas.section(1):
        return bool(np.array_equal(_gemm(lhs, rhs), _panelled(lhs, rhs, starts)))


class LabelWork:
    """One thread's scratch for :meth:`Scorer.labels` on up to ``n_rows`` rows.

    The exact scores' buffer is allocated when first asked for: with a
    screen it is seldom needed, and fresh pages are costly here (first
    touching a megabyte took about as long as labelling it).
    """

    def __init__(
        self,
        scorer: Scorer,
        n_rows: int,
        exact_rows: int | None = None,
        memory: np.ndarray | None = None,
    ) -> None:
        exact = n_rows if exact_rows is None or exact_rows >= n_rows else exact_rows
        if exact < n_rows and exact % ROW_CHUNK:
            raise ValueError(f"exact_rows={exact_rows} is not a multiple of {ROW_CHUNK}")
        self.capacity = n_rows
        #: Most rows scored exactly at once (a multiple of ROW_CHUNK when below capacity).
        self.exact_capacity = exact
        self.rows = scorer.row_buffer(exact)
        self.screen = None if scorer.screen is None else scorer.screen.buffers(n_rows, memory)
        self._n_clusters = scorer.n_clusters
        self._dtype = scorer.dtype
        self._scores: np.ndarray | None = None
        self._column_scores: np.ndarray | None = None
        self._flags: _columns.Flags | None = None

    def scores(self, n_rows: int) -> np.ndarray:
        """Scratch (n_rows, n_clusters) for exact scores of up to ``exact_capacity`` rows."""
        if self._scores is None:
            self._scores = np.empty((self.exact_capacity, self._n_clusters), dtype=self._dtype)
        return self._scores[:n_rows]

    def column_scores(self, n_rows: int) -> np.ndarray:
        """Scratch (n_clusters, n_rows) for (k, n) scores of up to ``exact_capacity`` rows."""
        if self._column_scores is None:
            self._column_scores = np.empty((self._n_clusters, self.exact_capacity), self._dtype)
        return self._column_scores[:, :n_rows]

    @property
    def flags(self) -> _columns.Flags:
        """Scratch for :func:`._columns.first_min` on up to ``exact_capacity`` rows."""
        if self._flags is None:
            self._flags = _columns.Flags(self._n_clusters, self.exact_capacity, self._dtype)
        return self._flags

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers allocated so far."""
        screen = 0 if self.screen is None else self.screen.nbytes
        flags = 0 if self._flags is None else self._flags.nbytes
        arrays = (self.rows, self._scores, self._column_scores)
        return screen + flags + sum(a.nbytes for a in arrays if a is not None)


def _differences(
    X: np.ndarray, centers: np.ndarray, labels: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """``X - centers[labels]`` (n_rows, n_features) into ``out``, which it returns."""
    # mode="clip" only avoids take's buffering; the labels are in range.
    centers.take(labels, axis=0, out=out, mode="clip")
    return np.subtract(X, out, out=out)


def _sq_by_einsum(n_features: int, any_order: bool) -> bool:
    """Whether :func:`_sample_sq_distances` sums rows of ``n_features`` by ``einsum``."""
    return any_order and n_features >= FAST_SQ_MIN_FEATURES


def _sample_sq_distances(
    X: np.ndarray,
    centers: np.ndarray,
    labels: np.ndarray,
    diff: np.ndarray,
    out: np.ndarray | None = None,
    *,
    any_order: bool = False,
    blocks: np.ndarray | None = None,
) -> np.ndarray:
    """Squared distance of each row to its assigned center, shape (n_rows,).

    Summed as scikit-learn's ``_euclidean_dense_dense``: features in blocks of
    four (``((d0 + d1) + d2) + d3``), blocks in order, then the remainder one
    by one. With ``any_order``, rows of :data:`FAST_SQ_MIN_FEATURES` or more
    features are summed by ``einsum`` instead (vectorised, order set by
    NumPy; the result still depends only on the row and its center), for a
    total that is only reported. ``diff`` is scratch of X's shape; ``out``
    (n_rows,) receives the result if given; ``blocks`` is scratch of at least
    (n_features // 4, n_rows) in X's dtype (allocated if None).
    """
    _differences(X, centers, labels, diff)
    n_rows, n_features = diff.shape
    result = np.empty(n_rows, diff.dtype) if out is None else out
    if _sq_by_einsum(n_features, any_order):
        return np.einsum("ij,ij->i", diff, diff, out=result)
    np.multiply(diff, diff, out=diff)
    n_blocks = n_features // 4
    if n_blocks and n_rows > 1:
        # Each block's sums as one row of ``sums`` (block, row), then the
        # blocks added in order by one reduction down its rows: NumPy adds
        # row after row, element-wise, as long as a row holds more than one
        # value (one row of blocks alone would be summed pairwise).
        quads = diff[:, : 4 * n_blocks].reshape(n_rows, n_blocks, 4).transpose(1, 0, 2)
        if blocks is None:
            blocks = np.empty((n_blocks, n_rows), diff.dtype)
        sums = blocks[:n_blocks, :n_rows]
        np.add(quads[:, :, 0], quads[:, :, 1], out=sums)
        sums += quads[:, :, 2]
        sums += quads[:, :, 3]
        np.add.reduce(sums, axis=0, out=result)
        rem_start = 4 * n_blocks
    elif n_blocks:
        quads = diff[:, : 4 * n_blocks].reshape(n_rows, n_blocks, 4)
        row = quads[:, :, 0] + quads[:, :, 1]
        row += quads[:, :, 2]
        row += quads[:, :, 3]
        np.copyto(result, row[:, 0])
        for j in range(1, n_blocks):
            result += row[:, j]
        rem_start = 4 * n_blocks
    else:
        np.copyto(result, diff[:, 0])
        rem_start = 1
    for j in range(rem_start, n_features):
        result += diff[:, j]
    return result


def _n_threads() -> int:
    """Threads for labelling big inputs: the usable cores, at most 4."""
    return usable_cores()


class _LabellerBuffers:
    """One thread's scratch for :class:`_BlockLabeller` (pooled between calls).

    Parameters
    ----------
    scorer : Scorer
    block : int
        Most rows per block.
    score_rows : int
        Most rows scored exactly at once (a multiple of :data:`ROW_CHUNK`
        when below ``block``), and rows per piece of squared distances.
    with_inertia, with_table : bool
        Whether squared distances are computed, and rows gathered for a cell table.
    """

    def __init__(
        self, scorer: Scorer, block: int, score_rows: int, with_inertia: bool, with_table: bool
    ) -> None:
        n_features, dtype = scorer.n_features, scorer.dtype
        # With a table only the rows it leaves are labelled, score_rows at a time.
        self.work = scorer.work(score_rows if with_table else block, exact_rows=score_rows)
        self.labels = np.empty(block, dtype=np.intp)
        self.sq = np.empty(block, dtype=dtype) if with_inertia else None
        self.diff = np.empty((score_rows, n_features), dtype=dtype) if with_inertia else None
        self.gathered = np.empty((score_rows, n_features), dtype=dtype) if with_table else None
        self._blocks: np.ndarray | None = None

    @property
    def blocks(self) -> np.ndarray:
        """:func:`_sample_sq_distances`'s sums of blocks of four features, made on first use.

        Only squares summed in scikit-learn's order need them (not those
        summed by chunks or by ``einsum``).
        """
        if self._blocks is None:
            assert self.diff is not None
            score_rows, n_features = self.diff.shape
            self._blocks = np.empty((n_features // 4, score_rows), self.diff.dtype)
        return self._blocks

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers allocated so far."""
        arrays = (self.labels, self.sq, self.diff, self._blocks, self.gathered)
        return self.work.nbytes + sum(a.nbytes for a in arrays if a is not None)


class _BlockLabeller:
    """One thread's labelling of blocks of rows (and their squared distances)."""

    def __init__(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray | None,
        centers: np.ndarray,
        scorer: Scorer,
        labels_out: np.ndarray | None,
        with_inertia: bool,
        buffers: _LabellerBuffers,
        table: _prune.CellTable | None = None,
        score_rows: int | None = None,
        sklearn_order: bool = True,
        finite_check: Callable[[], None] | None = None,
        *,
        margins: _screen.Margins | None = None,
        known: Known | None = None,
        sq_norms: np.ndarray | None = None,
        chunk_totals: bool = False,
    ) -> None:
        #: Whether a row's squares may be summed in any order (see :func:`_sample_sq_distances`).
        self.any_order = not sklearn_order
        #: Whether :meth:`run` returns the totals of the block's 256-row chunks
        #: instead of each row's value (see :func:`_chunk_totals`).
        self.chunk_totals = chunk_totals
        #: Squared norms of every row of ``X`` for the screen, or None.
        self.sq_norms = sq_norms
        self.finite_check = finite_check
        self.margins, self.known = margins, known
        self.X, self.sample_weight, self.centers, self.scorer = X, sample_weight, centers, scorer
        self.labels_out, self.with_inertia, self.table = labels_out, with_inertia, table
        block = buffers.labels.shape[0]
        #: Most rows scored at once (rows of ``scores``).
        self.score_rows = block if score_rows is None else min(block, score_rows)
        self.work = buffers.work
        self.labels = buffers.labels
        self.sq = buffers.sq
        self.diff = buffers.diff
        self.buffers = buffers
        self.gathered = buffers.gathered

    def run(self, start: int, stop: int) -> np.ndarray | None:
        """Label rows ``start:stop``; return their (weighted) squared distances if asked."""
        n = stop - start
        xb = self.X[start:stop]
        if xb.dtype != self.centers.dtype:
            xb = xb.astype(self.centers.dtype)
        lab = self.labels[:n]
        finite = False
        norms = None if self.sq_norms is None else self.sq_norms[start:stop]
        if self.table is None and self.known is not None:
            self._label_known(xb, lab, start, norms)
        elif self.table is None:
            margins = None if self.margins is None else self.margins.view(start, stop)
            finite = self.scorer.labels(xb, self.work, lab, margins, norms)
        else:
            if self.margins is not None:
                self.margins.undecided(start, stop)
            # Rows in certain cells are labelled; the others are scored as usual.
            self.table.lookup(xb, lab)
            left = np.flatnonzero(lab < 0)
            assert self.gathered is not None
            for first in range(0, left.size, self.score_rows):
                todo = left[first : first + self.score_rows]
                rows = np.take(xb, todo, axis=0, out=self.gathered[: todo.size], mode="clip")
                found = np.empty(todo.size, dtype=np.intp)
                self.scorer.labelled_scores(
                    rows, self.work.rows, self.work.scores(todo.size), found
                )
                lab[todo] = found
        if self.finite_check is not None and not finite and not all_finite(self.X[start:stop]):
            self.finite_check()  # raises validation's error, which looks at all of X
        if self.labels_out is not None:
            self.labels_out[start:stop] = lab
        if not self.with_inertia:
            return None
        assert self.diff is not None and self.sq is not None
        sq = self.sq[:n]
        # In pieces of the diff buffer's rows: each row's value is its own.
        piece = self.diff.shape[0]
        if self.chunk_totals:
            # One total per 256-row chunk (blocks and pieces start on chunk
            # boundaries), so the totals do not depend on how rows were split
            # into blocks; each chunk's squares summed as one long row.
            totals = sq[: -(-n // ROW_CHUNK)]
            for first in range(0, n, piece):
                last = min(first + piece, n)
                diff = _differences(
                    xb[first:last], self.centers, lab[first:last], self.diff[: last - first]
                )
                chunk = first // ROW_CHUNK
                whole = (last - first) // ROW_CHUNK
                if whole:
                    rows = diff[: whole * ROW_CHUNK].reshape(whole, -1)
                    _row_dots(rows, out=totals[chunk : chunk + whole])
                if whole * ROW_CHUNK < last - first:  # the last rows of X
                    rest = diff[whole * ROW_CHUNK :].reshape(1, -1)
                    _row_dots(rest, out=totals[chunk + whole :][:1])
            return totals
        # Scratch for the sums of blocks of four, where the rows are summed in order.
        blocks = None if _sq_by_einsum(xb.shape[1], self.any_order) else self.buffers.blocks
        for first in range(0, n, piece):
            last = min(first + piece, n)
            _sample_sq_distances(
                xb[first:last],
                self.centers,
                lab[first:last],
                self.diff[: last - first],
                out=sq[first:last],
                any_order=self.any_order,
                blocks=blocks,
            )
        if self.sample_weight is not None:
            sq *= self.sample_weight[start:stop]
        return sq

    def _label_known(
        self, xb: np.ndarray, lab: np.ndarray, start: int, sq_norms: np.ndarray | None
    ) -> None:
        """Labels of block ``xb`` (rows ``start`` on): known ones, the others' chunks scored.

        ``sq_norms`` are the block's rows' squared norms for the screen, or None.
        """
        assert self.known is not None
        n = xb.shape[0]
        lab[:] = self.known.labels[start : start + n]
        unsure = np.flatnonzero(~self.known.certain[start : start + n])
        if unsure.size == 0:
            return
        chunks = np.unique(unsure // ROW_CHUNK)
        if 2 * chunks.size * ROW_CHUNK > n:
            self.scorer.labels(xb, self.work, lab, sq_norms=sq_norms)
            return
        for chunk in chunks.tolist():  # blocks start on chunk boundaries
            first = chunk * ROW_CHUNK
            last = min(first + ROW_CHUNK, n)
            norms = None if sq_norms is None else sq_norms[first:last]
            self.scorer.labels(xb[first:last], self.work, lab[first:last], sq_norms=norms)


class Known(NamedTuple):
    """Labels of a batch known to hold against some centers (see :func:`large_batch_step`).

    ``labels`` (n,) intp are right where ``certain`` (n,) bool is set; the
    other rows are labelled again.
    """

    labels: np.ndarray
    certain: np.ndarray


def labels_inertia(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    centers: np.ndarray,
    labels_out: np.ndarray | None = None,
    *,
    with_inertia: bool = True,
    on_block: Callable[[int, int], None] | None = None,
    sklearn_order: bool = True,
    finite_check: Callable[[], None] | None = None,
    sum_threads: int = 1,
    margins: _screen.Margins | None = None,
    known: Known | None = None,
    sq_norms: np.ndarray | None = None,
) -> float:
    """Labels and inertia of ``X`` against ``centers``, in blocks of rows.

    Big inputs are labelled on a few threads (NumPy releases the GIL in each
    operation; BLAS is kept on one thread meanwhile), the helpers taken from
    :data:`._twin.HELPERS` rather than started. Blocks start on chunk
    boundaries, so labels do not depend on which thread did a block, and the
    calling thread adds up the blocks' distances in row order, so the inertia
    is the same sequential sum as on one thread.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Cast block by block to ``centers``' dtype if it differs.
    sample_weight : ndarray of shape (n_samples,) or None
        ``None`` means unit weights.
    centers : ndarray of shape (n_clusters, n_features)
    labels_out : ndarray of shape (n_samples,) or None
        Integer array to fill with labels, block by block.
    with_inertia : bool
        Whether to compute the inertia (sum of weighted squared distances).
    on_block : callable(done, total) or None
        Called on the calling thread after each of its blocks with the rows
        done so far (progress, cancellation); an exception from it stops the
        other threads and propagates.
    sklearn_order : bool, default=True
        Sum each row's squared differences in scikit-learn's order (blocks
        of four features), as an inertia that steers the algorithm (choosing
        the best init) must. False, for an inertia that is only reported
        (``inertia_``, ``score``): rows of :data:`FAST_SQ_MIN_FEATURES` or
        more features are summed by ``einsum``, or for unweighted float64
        rows a 256-row chunk at a time (see :func:`_chunk_totals`).
    finite_check : callable() or None
        Given when ``X`` has not been checked for NaN and infinity: each
        block is checked as it is labelled (free where the float32 screen
        labels it, since the screen refuses such values), on whichever
        thread labels it, and ``finite_check`` is called if a block holds
        any; it must raise (validation's error, which looks at all of
        ``X``). This saves predict a serial pass over its input.
    sum_threads : int, default=1
        scikit-learn's OpenMP thread count: the rows' values are added as its
        parallel loop adds them, each thread's static block left to right,
        then the blocks' sums (see :mod:`._openmp`). 1: left to right.
    margins : Margins or None
        Receives, for every row of ``X``, the float32 screen's margin or
        ("exact" margins) the gap between its two best exact scores (see
        :class:`._screen.Margins`; -inf where neither was recorded).
    known : Known or None
        Labels already known for the rows it marks certain: only the chunks
        holding the others are scored (where no grid of cells is used).
    sq_norms : ndarray of shape (n_samples,), float32, or None
        The rows' squared norms from :func:`._row_norms.finite_sq_norms`,
        for the float32 screen (which otherwise takes them block by block).

    Returns
    -------
    float
        The inertia (summed in the data's dtype), or 0.0.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    dtype = centers.dtype
    score_rows = min(rows_per_block(n_clusters, dtype.itemsize), n_samples)
    scorer = Scorer(n_clusters, n_features, dtype)
    scorer.set_centers(centers)
    # Few features: most rows get their label from a grid of certain cells,
    # and blocks are longer (the scores buffer holds only the rows left over).
    table = _prune.table_for(n_samples, centers, dtype)
    if table is not None:
        block, min_blocks = min(n_samples, _prune.BLOCK_ROWS), 1
    elif scorer.screen is not None:
        rows_cap = SCREEN_BLOCK_BYTES // _screen.ScreenBuffers.bytes_per_row(n_clusters, n_features)
        block = _screen_block(n_samples, score_rows, rows_cap)
        min_blocks = SCREEN_MIN_BLOCKS
    else:
        block, min_blocks = score_rows, PARALLEL_MIN_BLOCKS
    n_blocks = -(-n_samples // block)
    # An inertia summed by chunks adds one total per 256-row chunk, in order
    # (every block must start on a chunk boundary).
    by_chunks = _chunk_totals(X, sample_weight, dtype, sklearn_order) and (
        block % ROW_CHUNK == 0 or block >= n_samples
    )
    n_values = -(-n_samples // ROW_CHUNK) if by_chunks else n_samples
    # Blocks are shared between Python threads with one BLAS thread each: that
    # also spreads the argmin and distances, so it beats splitting products
    # between BLAS threads even for 50 features.
    n_threads = min(_n_threads(), n_blocks // min_blocks) or 1

    # Per-thread scratch comes from the pool and goes back at the end (fresh
    # pages cost about as much as labelling with them; see _scratch).
    pool_key = (
        "labeller",
        n_clusters,
        n_features,
        dtype.str,
        scorer.fold,
        scorer.screen is not None,
        block,
        min(block, score_rows),
        with_inertia,
        table is not None,
    )
    taken: list[_LabellerBuffers] = []
    if finite_check is not None:
        finite_check = _once(finite_check)

    def labeller() -> _BlockLabeller:
        buffers = _scratch.POOL.take(pool_key)
        if buffers is None:
            buffers = _LabellerBuffers(
                scorer, block, min(block, score_rows), with_inertia, table is not None
            )
        taken.append(buffers)
        return _BlockLabeller(
            X,
            sample_weight,
            centers,
            scorer,
            labels_out,
            with_inertia,
            buffers,
            table,
            score_rows,
            sklearn_order,
            finite_check,
            margins=margins,
            known=known,
            sq_norms=sq_norms,
            chunk_totals=by_chunks,
        )

    # Unchecked input may hold NaN or infinity until a block's check finds it:
    # NumPy must not warn or raise about them first (scikit-learn's error is
    # a ValueError, and no warning). The helpers inherit this setting.
    quiet = _argmin.recording() if finite_check is not None else contextlib.nullcontext()
    with quiet:
        inertia = _labels_inertia_blocks(
            labeller,
            n_samples,
            block,
            n_threads,
            on_block,
            dtype,
            1 if by_chunks else sum_threads,  # (chunks' totals: left to right)
            n_values,
        )
    # Only after a clean finish: an exception (an interrupt during a join) can
    # leave a helper still writing into its buffers.
    for buffers in taken:
        _scratch.POOL.give(pool_key, buffers, buffers.nbytes)
    return inertia


def _row_dots(rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Each row of ``rows`` (m, L) dotted with itself into ``out`` (m,).

    ``np.vecdot`` (NumPy 2: a BLAS dot per row, twice as fast on long
    rows), else ``einsum``.
    """
    if _VECDOT is not None:
        return _VECDOT(rows, rows, out=out)
    return np.einsum("ij,ij->i", rows, rows, out=out)


_VECDOT = getattr(np, "vecdot", None)


def _chunk_totals(
    X: np.ndarray, sample_weight: np.ndarray | None, dtype: np.dtype, sklearn_order: bool
) -> bool:
    """Whether an inertia is summed as one dot product per 256-row chunk, the chunks in order.

    Only for an inertia that is only reported (not ``sklearn_order``), of
    unweighted float64 rows of :data:`FAST_SQ_MIN_FEATURES` or more
    features: a chunk's squared differences summed as one long row
    (:func:`_row_dots`; about 2x faster than per-row sums at 50 features),
    the chunks' totals added left to right whatever the blocks and threads.
    float32 keeps scikit-learn's row order: its float32 running sum drifts
    from the exact value as the rows add up, and the core's must drift alike.
    """
    return (
        not sklearn_order
        and sample_weight is None
        and np.dtype(dtype) == np.float64
        and X.shape[1] >= FAST_SQ_MIN_FEATURES
    )


def _once(check: Callable[[], None]) -> Callable[[], None]:
    """``check`` (which raises) run at most once, whichever threads call it.

    Two threads may each find a bad block; the check's first sum warns, and
    scikit-learn warns once. A later caller raises the first call's
    exception again (to stop its thread) without checking again.
    """
    lock = threading.Lock()
    raised: list[BaseException] = []

    def run() -> None:
        with lock:
            if raised:
                raise raised[0]
            try:
                check()
            except BaseException as exc:
                raised.append(exc)
                raise

    return run


def _screen_block(n_samples: int, score_rows: int, rows_cap: int = SCREEN_BLOCK_ROWS) -> int:
    """Rows per block of screened labelling: up to :data:`SCREEN_BLOCK_ROWS` and ``rows_cap``.

    Shorter where that leaves each thread fewer than :data:`SCREEN_MIN_BLOCKS`
    blocks, never shorter than ``score_rows``; a multiple of
    :data:`ROW_CHUNK` (blocks start on scikit-learn's chunk boundaries).
    """
    per_block = -(-n_samples // (_n_threads() * SCREEN_MIN_BLOCKS))
    rows = -(-per_block // ROW_CHUNK) * ROW_CHUNK
    cap = min(SCREEN_BLOCK_ROWS, rows_cap) // ROW_CHUNK * ROW_CHUNK
    return min(n_samples, max(score_rows, min(cap, rows)))


def _labels_inertia_blocks(
    labeller: Callable[[], _BlockLabeller],
    n_samples: int,
    block: int,
    n_threads: int,
    on_block: Callable[[int, int], None] | None,
    dtype: np.dtype,
    sum_threads: int,
    n_values: int,
) -> float:
    """The block loop of :func:`labels_inertia`: ``n_samples`` rows on ``n_threads`` threads.

    ``labeller`` makes one thread's :class:`_BlockLabeller`; the others'
    are as in :func:`labels_inertia`. The blocks' values (``n_values`` in
    all: one per row, or one per 256-row chunk) are summed in row order.
    """
    n_blocks = -(-n_samples // block)
    total = _openmp.PrangeSum(n_values, sum_threads, dtype)
    # One BLAS thread throughout (other core calls share it); a section at
    # another count gets a turn between blocks (one thread) or rounds of
    # blocks (helpers idle), never mid-block.
    blas = _blas.held(1)
    if n_threads == 1:
        state = labeller()
        with blas:
            for start in range(0, n_samples, block):
                blas.breathe()
                stop = min(start + block, n_samples)
                sq = state.run(start, stop)
                if sq is not None:
                    total.add(sq)
                if on_block is not None:
                    on_block(stop, n_samples)
        return float(total.total)

    lock = threading.Lock()
    # Distances of blocks finished out of order, until every block before them is added.
    waiting: dict[int, np.ndarray] = {}
    progress = {"rows": 0, "next": 0}
    stop_event = threading.Event()
    errors: list[BaseException] = []

    def finish(index: int, rows: int, sq: np.ndarray | None) -> int:
        """Record a finished block; add every block now in row order. Returns the rows done."""
        with lock:
            progress["rows"] += rows
            if sq is not None:
                # A copy: the thread's buffer is reused for its next block.
                waiting[index] = sq.copy()
                while progress["next"] in waiting:
                    total.add(waiting.pop(progress["next"]))
                    progress["next"] += 1
            return progress["rows"]

    def work(
        state: _BlockLabeller, blocks: Iterator[int], after: Callable[[int, int], None] | None
    ) -> None:
        while not stop_event.is_set():
            with lock:
                index = next(blocks, None)
            if index is None:
                return
            start = index * block
            stop = min(start + block, n_samples)
            rows_done = finish(index, stop - start, state.run(start, stop))
            if after is not None:
                after(rows_done, n_samples)

    def helper(state: _BlockLabeller, blocks: Iterator[int]) -> None:
        try:
            work(state, blocks, None)
        except BaseException as exc:  # re-raised on the calling thread
            errors.append(exc)
            stop_event.set()

    # Helper threads from the pool (no thread start per call), given back at the
    # end; fewer if no more threads can be had.
    twins: list[Twin] = []
    try:
        for _ in range(n_threads - 1):
            try:
                twins.append(HELPERS.take())
            except RuntimeError:  # a thread or process limit
                break
        states = [labeller() for _ in range(len(twins) + 1)]
        per_round = ROUND_BLOCKS * len(states)
        # The helpers' products run inside this section too: one BLAS thread each.
        with blas:
            for first in range(0, n_blocks, per_round):
                blas.breathe()
                blocks = iter(range(first, min(first + per_round, n_blocks)))  # shared, under lock
                started: list[Twin] = []
                try:
                    for twin, state in zip(twins, states[1:], strict=True):
                        # In a copy of the caller's context: a helper's warnings reach the caller.
                        twin.start(functools.partial(helper, state, blocks))
                        started.append(twin)
                    work(states[0], blocks, on_block)
                except BaseException:
                    stop_event.set()
                    raise
                finally:
                    for twin in started:
                        twin.join()
                if errors:
                    raise errors[0]
    finally:
        for twin in twins:
            HELPERS.give(twin)
    if on_block is not None:
        on_block(n_samples, n_samples)
    return float(total.total)


def euclidean_distances(
    X: np.ndarray,
    centers: np.ndarray,
    out: np.ndarray,
    on_block: Callable[[int, int], None] | None = None,
) -> None:
    """Distances of the rows of ``X`` to ``centers``, into ``out`` (n_samples, n_clusters).

    As scikit-learn's ``euclidean_distances`` computes them for ``transform``:
    ``-2 x.c + |x|^2 + |c|^2`` clipped at 0, square-rooted, in ``out``'s dtype.
    A product's rounding of a row depends on the product's size (and on how
    BLAS splits it between threads), so the core takes scikit-learn's products:

    - float32: in float64, on chunks of :func:`upcast_rows` rows and centers;
    - float64: one product of all rows, written into ``out`` (the only
      ``n_samples x n_clusters`` array); the rest goes block by block.

    ``on_block(done, total)`` is called after each block (progress, cancellation).
    """
    n_samples, n_clusters = X.shape[0], centers.shape[0]
    upcast = out.dtype == np.float32
    if upcast:
        block = upcast_rows(n_samples, n_clusters, X.shape[1])
    else:
        np.matmul(X, centers.T, out=out)
        c_norms = row_sq_norms(centers)[np.newaxis, :]
        block = rows_per_block(n_clusters, 8)
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        d = out[start:stop]
        if upcast:
            _upcast_sq_distances(X[start:stop], centers, d, block)
        else:
            d *= -2
            d += row_sq_norms(X[start:stop])[:, np.newaxis]
            d += c_norms
        np.maximum(d, 0, out=d)
        np.sqrt(d, out=d)
        if on_block is not None:
            on_block(stop, n_samples)


# --------------------------------------------------------------------------- #
# Initialisation
# --------------------------------------------------------------------------- #


def _stable_cumsum(values: np.ndarray) -> np.ndarray:
    """Cumulative sum in float64, warning (as scikit-learn) if it drifted from the sum."""
    # add.accumulate / add.reduce are cumsum / sum (the same loops) without the wrappers.
    out = np.add.accumulate(values.ravel(), dtype=np.float64)
    expected = np.add.reduce(values.ravel(), dtype=np.float64)
    if not is_close(float(out[-1]), float(expected)):
        warn(
            "cumsum was found to be unstable: its last element does not correspond to sum",
            RuntimeWarning,
        )
    return out


def kmeans_plusplus(
    X: np.ndarray,
    n_clusters: int,
    x_sq_norms: np.ndarray,
    sample_weight: np.ndarray,
    random_state: np.random.RandomState,
) -> np.ndarray:
    """Greedy k-means++ seeding: ``2 + int(log k)`` candidates per new center.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Candidate points (the init subset).
    n_clusters : int
    x_sq_norms : ndarray of shape (n_samples,)
        Squared norms of the rows of X.
    sample_weight : ndarray of shape (n_samples,)
    random_state : RandomState
        Consumed as scikit-learn does: ``choice`` for the first center, then
        ``uniform(size=n_local_trials)`` per further center.

    Returns
    -------
    ndarray of shape (n_clusters, n_features)
        Rows of X, in X's dtype.
    """
    n_samples, n_features = X.shape
    centers = np.empty((n_clusters, n_features), dtype=X.dtype)
    n_local_trials = 2 + int(np.log(n_clusters))

    center_id = random_state.choice(n_samples, p=sample_weight / sample_weight.sum())
    centers[0] = X[center_id]
    closest_dist_sq = _sq_distances_init(centers[0, np.newaxis], X, x_sq_norms)
    current_pot = closest_dist_sq @ sample_weight

    for c in range(1, n_clusters):
        rand_vals = random_state.uniform(size=n_local_trials) * current_pot
        candidate_ids = np.searchsorted(_stable_cumsum(sample_weight * closest_dist_sq), rand_vals)
        # Rounding can put a draw past the last cumulative value.
        np.minimum(candidate_ids, closest_dist_sq.size - 1, out=candidate_ids)
        dist_to_candidates = _sq_distances_init(
            X[candidate_ids], X, x_sq_norms, x_sq_norms[candidate_ids]
        )
        np.minimum(closest_dist_sq, dist_to_candidates, out=dist_to_candidates)
        candidates_pot = dist_to_candidates @ sample_weight.reshape(-1, 1)
        best = np.argmin(candidates_pot)
        current_pot = candidates_pot[best]
        closest_dist_sq = dist_to_candidates[best]
        centers[c] = X[candidate_ids[best]]
    return centers


def random_init(
    X: np.ndarray,
    n_clusters: int,
    sample_weight: np.ndarray,
    random_state: np.random.RandomState,
) -> np.ndarray:
    """``n_clusters`` distinct rows of X drawn with probability proportional to weight."""
    seeds = random_state.choice(
        X.shape[0], size=n_clusters, replace=False, p=sample_weight / sample_weight.sum()
    )
    return X[seeds]


# --------------------------------------------------------------------------- #
# The minibatch step
# --------------------------------------------------------------------------- #


class StepWorkspace:
    """Buffers reused by every minibatch step (no per-step allocation of big arrays).

    Parameters
    ----------
    batch_size : int
        Most rows a step sees.
    n_clusters, n_features : int
    dtype : numpy dtype
        float32 or float64, the data's dtype.
    sum_threads : int, default=1
        scikit-learn's OpenMP thread count, whose blocks :meth:`batch_inertia`
        sums in (see :mod:`._openmp`).
    """

    def __init__(
        self,
        batch_size: int,
        n_clusters: int,
        n_features: int,
        dtype: np.dtype,
        sum_threads: int = 1,
    ) -> None:
        dtype = np.dtype(dtype)
        self.capacity = batch_size
        self.X = np.empty((batch_size, n_features), dtype=dtype)
        self.weights = np.empty(batch_size, dtype=dtype)
        # Big enough steps may be shared with a twin thread (as scikit-learn's
        # OpenMP loops share theirs): see :meth:`gather_label`. Below that size
        # the hand-overs cost more than they save; above it, whether sharing
        # pays depends on the machine, so :attr:`chooser` times both ways.
        work = batch_size * n_clusters * (n_features + 1)
        halves = _n_threads() > 1 and batch_size >= 2 * ROW_CHUNK and work >= STEP_SPLIT_MIN_WORK
        #: First row of the twin thread's half (a chunk boundary), or 0 for no split.
        self.split = (batch_size // 2) // ROW_CHUNK * ROW_CHUNK if halves else 0
        #: Whether each step is shared, by timing (see :class:`SplitChooser`).
        #: Loops whose steps are within a factor of two in work, and whether
        #: their scores are screened, share what the trials found.
        kind = ("step", work.bit_length(), _screen.screens(n_features, n_clusters, dtype))
        self.chooser = SplitChooser(enabled=halves, history=split_history(kind))
        self._twin: Twin | None = None
        self.scorer = Scorer(n_clusters, n_features, dtype)
        self.sq = np.empty(batch_size, dtype=dtype)
        # A step's three largest scratch buffers are in use one after the
        # other: the screen's (labelling), the differences (batch inertia),
        # the flat index (center update). They share one block of memory,
        # so that a step touches less of it: the buffers of a 1,024 x 50
        # step otherwise fill about a core's L2 cache (2 MB on the test
        # host), and sharing took about 4% off a 200,000 x 50 fit.
        row_bytes = batch_size * n_features * max(dtype.itemsize, np.dtype(np.intp).itemsize)
        shared = np.empty(max(row_bytes, self.scorer.lendable_bytes(batch_size)), np.uint8)
        # Scratch for labelling: the calling thread's (any rows); the twin's
        # (its half) comes with the twin, on the first shared step.
        self.work = self.scorer.work(batch_size, memory=shared)
        self._twin_work: LabelWork | None = None
        self.labels = np.empty(batch_size, dtype=np.intp)
        #: The batch's rows' squared norms, when the data's are known.
        self.sq_norms = np.empty(batch_size, dtype=np.float32)
        #: The batch's differences from its centers (shares memory with the
        #: screen's buffers and :attr:`flat_index`).
        self.diff = _carve(shared, (batch_size, n_features), dtype)
        # The batch inertia in scikit-learn's order (its OpenMP threads' blocks).
        self.summed = _openmp.PrangeSum(batch_size, sum_threads, dtype)
        #: :func:`_add_rows`'s table, and its scratch (shares memory, as :attr:`diff`).
        self.flat_table = scatter_table(n_clusters, n_features)
        width = self.flat_table.shape[1]
        self.flat_index = _carve(shared, (batch_size, width), np.dtype(np.intp))
        self._weighted: np.ndarray | None = None
        # batch_inertia's sums of blocks of four features, made on first use.
        self._blocks: np.ndarray | None = None
        self.acc = np.empty((n_clusters, n_features), dtype=dtype)

    @property
    def twin(self) -> Twin:
        """The twin thread, started on first use."""
        if self._twin is None:
            self._twin = Twin()
        return self._twin

    @property
    def weighted(self) -> np.ndarray:
        """Scratch (capacity, n_features) for the weighted rows, made on first use.

        In use together with :attr:`flat_index`, so not in the shared memory.
        """
        if self._weighted is None:
            self._weighted = np.empty_like(self.X)
        return self._weighted

    @property
    def twin_work(self) -> LabelWork:
        """The twin's labelling scratch (rows from :attr:`split` on), made on first use."""
        if self._twin_work is None:
            self._twin_work = self.scorer.work(self.capacity - self.split)
        return self._twin_work

    def close(self) -> None:
        """End the twin thread, if one was started."""
        if self._twin is not None:
            self._twin.close()
            self._twin = None

    def __enter__(self) -> StepWorkspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def gather_label(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray | None,
        rows: np.ndarray | None,
        centers: np.ndarray,
        *,
        shared: bool = True,
        sq_norms: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The batch, its weights and its labels: ``(xb, swb, labels)``.

        ``X`` (and ``sample_weight``) are the batch itself when ``rows`` is
        None, else the data from which rows ``rows`` are copied into the
        workspace. With ``shared`` and :attr:`split` set, rows from that chunk
        boundary on are copied, scored and labelled on the twin thread: each
        chunk's product and each row's argmin are the same computations on
        either thread. ``sq_norms`` (like ``sample_weight``, float32) are
        the rows' squared norms for the screen, if known. Call inside
        ``_blas.section(1)`` (or a :class:`_blas.held`). Returns views of
        workspace memory (or of the given batch).
        """
        n_rows = X.shape[0] if rows is None else rows.shape[0]
        if n_rows > self.capacity:
            raise ValueError(f"a batch of {n_rows} rows exceeds the workspace's {self.capacity}")
        self.scorer.set_centers(centers)
        if rows is None:
            xb, swb = X, sample_weight
        else:
            xb = self.X[:n_rows]
            swb = None if sample_weight is None else self.weights[:n_rows]
        half = self.split if shared and 0 < self.split < n_rows else 0
        if not half:
            self._gather_label_rows(X, sample_weight, rows, 0, n_rows, self.work, sq_norms)
        else:
            work = self.twin_work
            self.twin.start(
                lambda: self._gather_label_rows(
                    X, sample_weight, rows, half, n_rows, work, sq_norms
                )
            )
            try:
                self._gather_label_rows(X, sample_weight, rows, 0, half, self.work, sq_norms)
            finally:
                self.twin.join()
        return xb, swb, self.labels[:n_rows]

    def _gather_label_rows(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray | None,
        rows: np.ndarray | None,
        start: int,
        stop: int,
        work: LabelWork,
        sq_norms: np.ndarray | None = None,
    ) -> None:
        """Copy (if ``rows``) and label batch rows ``start:stop`` (a chunk boundary on)."""
        norms = None
        if rows is None:
            xb = X[start:stop]
            if sq_norms is not None:
                norms = sq_norms[start:stop]
        else:
            # mode="clip" only avoids take's buffering; the indices are in range.
            xb = X.take(rows[start:stop], axis=0, out=self.X[start:stop], mode="clip")
            if sample_weight is not None:
                sample_weight.take(rows[start:stop], out=self.weights[start:stop], mode="clip")
            if sq_norms is not None and self.scorer.screen is not None:
                norms = sq_norms.take(rows[start:stop], out=self.sq_norms[start:stop], mode="clip")
        self.scorer.labels(xb, work, self.labels[start:stop], sq_norms=norms)

    def batch_inertia(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray | None,
        centers: np.ndarray,
        labels: np.ndarray,
    ) -> np.generic:
        """Batch inertia: the weighted squared distances to the labels' centers, summed.

        Each row's squares in blocks of four features, the rows in the blocks
        of scikit-learn's OpenMP threads (the workspace's ``sum_threads``).
        """
        n_rows = X.shape[0]
        if self._blocks is None:
            self._blocks = np.empty((X.shape[1] // 4, self.capacity), X.dtype)
        sq = _sample_sq_distances(
            X, centers, labels, self.diff[:n_rows], out=self.sq[:n_rows], blocks=self._blocks
        )
        if sample_weight is not None:
            sq *= sample_weight
        self.summed.restart(n_rows)
        self.summed.add(sq)
        return self.summed.total

    def batch_inertia_bounded(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray | None,
        centers: np.ndarray,
        labels: np.ndarray,
        *,
        signed_weights: bool = False,
    ) -> Bounded:
        """The batch inertia summed in the fastest order, with a bound on any order's value.

        One dot product over all squared differences (or per row, then with
        the weights), instead of scikit-learn's order: see
        :mod:`._early_stop`. ``signed_weights`` says some weight may be
        negative (the bound then needs the weights' absolute values).
        """
        n_rows, n_features = X.shape
        diff = _differences(X, centers, labels, self.diff[:n_rows])
        if sample_weight is None:
            flat = diff.reshape(-1)
            total = magnitude = float(np.dot(flat, flat))
        else:
            sq = np.einsum("ij,ij->i", diff, diff, out=self.sq[:n_rows])
            total = magnitude = float(np.dot(sq, sample_weight))
            if signed_weights:
                magnitude = float(np.dot(sq, np.abs(sample_weight)))
        if total == 0.0 and not diff.any():
            return Bounded(0.0, 0.0)  # every term is an exact zero, in any order
        return Bounded.sum_of(total, magnitude, n_rows * (n_features + 1), X.dtype)


def scatter_table(n_clusters: int, n_features: int) -> np.ndarray:
    """The flat positions (k, w) of each center's values in a (k, f) array, for :func:`_add_rows`.

    With an even number of features the values go in pairs (``w = f / 2``),
    otherwise one by one (``w = f``).
    """
    width = n_features // 2 if n_features % 2 == 0 else n_features
    return np.arange(n_clusters * width, dtype=np.intp).reshape(n_clusters, width)


def _add_rows(
    acc: np.ndarray, rows: np.ndarray, labels: np.ndarray, table: np.ndarray, index: np.ndarray
) -> None:
    """Add row i of ``rows`` (m, f) to row ``labels[i]`` of ``acc`` (k, f), i = 0, 1, ...

    Sequential per center, as scikit-learn's update: ``np.add.at`` adds
    unbuffered, in index order. Where ``table`` (:func:`scatter_table`) pairs
    the values, each pair is added as one complex number: complex addition
    adds the real parts and the imaginary parts separately, each rounded
    once, so the sums are the same bits, from half the index entries and
    half the indexed additions (a 1,024 x 50 float64 batch: 45 us against
    70). ``acc`` is C-contiguous, ``rows`` of its dtype; ``index`` is
    scratch of at least (m, w).
    """
    assert rows.dtype == acc.dtype and acc.flags.c_contiguous
    flat = table.take(labels, axis=0, out=index[: labels.shape[0]], mode="clip")
    if table.shape[1] != acc.shape[1]:
        pair = np.complex128 if acc.dtype == np.float64 else np.complex64
        acc = acc.view(pair)
        rows = np.ascontiguousarray(rows).view(pair)
    np.add.at(acc.reshape(-1), flat.reshape(-1), rows.reshape(-1))


def _carve(memory: np.ndarray, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` over the start of ``memory`` (uint8)."""
    size = shape[0] * shape[1] * dtype.itemsize
    return memory[:size].view(dtype).reshape(shape)


def _unit_weight_sums(labels: np.ndarray, n_clusters: int, dtype: np.dtype) -> np.ndarray:
    """Each center's batch weight (n_clusters,) in ``dtype`` when every weight is 1.

    scikit-learn adds the ones one by one in ``dtype``: exact up to
    ``2**24`` in float32, where the sum stops growing (``2**24 + 1`` rounds
    back down). Counts clipped there are that sum, in any float type.
    """
    counts = np.bincount(labels, minlength=n_clusters)
    if np.dtype(dtype) == np.float32:
        np.minimum(counts, 2**24, out=counts)
    return counts.astype(dtype)


def _move_received(
    acc: np.ndarray, batch_weight: np.ndarray, weight_sums: np.ndarray, centers: np.ndarray
) -> None:
    """Divide each accumulated center that received weight by its new weight sum.

    As scikit-learn's update: only where the batch weight is positive
    (``if wsum > 0``), ``weight_sums`` grows by it and the center becomes
    ``acc * (1 / weight_sums)``; other centers in ``centers`` are left as they are.
    """
    received = batch_weight > 0
    weight_sums[received] += batch_weight[received]
    alpha = 1 / weight_sums[received]
    centers[received] = acc[received] * alpha[:, np.newaxis]


def _accumulate_centers(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    labels: np.ndarray,
    centers: np.ndarray,
    centers_new: np.ndarray,
    weight_sums: np.ndarray,
    ws: StepWorkspace,
) -> None:
    """Move each center to the weighted mean of its past and new points.

    For a center that received weight ``w > 0`` in this batch:
    ``new = (old * W + sum_i x_i s_i) * (1 / (W + w))`` with the sum taken
    sample by sample in batch order and ``W`` updated in place. Other centers
    are copied unchanged. ``centers_new`` may be ``centers``.
    """
    n_clusters, n_features = centers.shape
    dtype = centers.dtype
    n_rows = X.shape[0]
    if sample_weight is None:
        batch_weight = _unit_weight_sums(labels, n_clusters, dtype)
        every = np.count_nonzero(batch_weight) == n_clusters  # never negative
        contrib = X
    else:
        batch_weight = np.zeros(n_clusters, dtype=dtype)
        np.add.at(batch_weight, labels, sample_weight)
        every = bool((batch_weight > 0).all())
        contrib = np.multiply(X, sample_weight[:, np.newaxis], out=ws.weighted[:n_rows])
    acc = np.multiply(centers, weight_sums[:, np.newaxis], out=ws.acc)
    _add_rows(acc, contrib, labels, ws.flat_table, ws.flat_index)

    if every:
        weight_sums += batch_weight
        alpha = 1 / weight_sums
        np.multiply(acc, alpha[:, np.newaxis], out=centers_new)
    else:
        if centers_new is not centers:
            centers_new[...] = centers
        _move_received(acc, batch_weight, weight_sums, centers_new)


def _reassign_small_centers(
    X: np.ndarray,
    centers_new: np.ndarray,
    weight_sums: np.ndarray,
    reassignment_ratio: float,
    random_state: np.random.RandomState,
    verbose: bool,
) -> None:
    """Move centers with little accumulated weight onto random rows of the batch.

    Centers whose weight is below ``reassignment_ratio * max weight`` (at most
    half the batch size of them, the lightest) jump to rows drawn uniformly
    without replacement; their weight is reset to the smallest weight kept.
    """
    n_rows = X.shape[0]
    threshold = reassignment_ratio * np.maximum.reduce(weight_sums)
    if not np.minimum.reduce(weight_sums) < threshold:
        # Nothing to reassign, and resetting no weight is a no-op: skip the
        # masks (this runs every step when 10 * n_clusters <= batch_size).
        return
    to_reassign = weight_sums < threshold
    if to_reassign.sum() > 0.5 * n_rows:
        keep = np.argsort(weight_sums)[int(0.5 * n_rows) :]
        to_reassign[keep] = False
    n_reassigns = to_reassign.sum()
    if n_reassigns:
        new_rows = random_state.choice(n_rows, replace=False, size=n_reassigns)
        if verbose:
            emit_verbose(f"[MiniBatchKMeans] Reassigning {n_reassigns} cluster centers.")
        centers_new[to_reassign] = X[new_rows]
    # Not reset to zero: that would trigger an immediate reassignment again.
    weight_sums[to_reassign] = np.min(weight_sums[~to_reassign])


def mini_batch_step(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    centers: np.ndarray,
    centers_new: np.ndarray,
    weight_sums: np.ndarray,
    random_state: np.random.RandomState,
    ws: StepWorkspace,
    *,
    random_reassign: bool,
    reassignment_ratio: float,
    verbose: bool,
    rows: np.ndarray | None = None,
    inertia: InertiaMode = "exact",
    signed_weights: bool = False,
    sq_norms: np.ndarray | None = None,
) -> Bounded:
    """One minibatch update: label, accumulate, maybe reassign.

    With :attr:`StepWorkspace.split` set, the twin thread may copy, score
    and label half of the batch (:meth:`StepWorkspace.gather_label`), as the
    workspace's :class:`SplitChooser` finds faster.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features) or (n_samples, n_features)
        The minibatch (``n_rows <= ws.capacity``), or with ``rows`` the data
        it is drawn from.
    sample_weight : ndarray of shape (n_rows,) or (n_samples,), or None
        Like ``X``.
    centers : ndarray of shape (n_clusters, n_features)
        Centers before the step.
    centers_new : ndarray of shape (n_clusters, n_features)
        Receives the centers after the step (may be ``centers``).
    weight_sums : ndarray of shape (n_clusters,)
        Accumulated weight per center, updated in place.
    random_state : RandomState
        Drawn from only when centers are reassigned.
    ws : StepWorkspace
    random_reassign, reassignment_ratio, verbose
        As scikit-learn's ``_mini_batch_step``.
    rows : ndarray of shape (n_rows,) or None
        Indices of the batch's rows in ``X``.
    inertia : {"exact", "bounded", "none"}
        How the batch inertia is summed: in scikit-learn's order (error 0),
        in the fastest order with a bound (see :mod:`._early_stop`), or not
        at all (0, for fits where nothing depends on it).
    signed_weights : bool
        Whether some sample weight may be negative (for the bound).
    sq_norms : ndarray of shape (n_rows,) or (n_samples,), float32, or None
        Like ``sample_weight``: the rows' squared norms from
        :func:`._row_norms.finite_sq_norms`, for the float32 screen.

    Returns
    -------
    Bounded
        The batch inertia against ``centers`` (before the update), and how
        far scikit-learn's value may be from it.
    """
    shared = ws.chooser.next()
    start = time.perf_counter()
    xb, swb, labels = ws.gather_label(
        X, sample_weight, rows, centers, shared=shared, sq_norms=sq_norms
    )
    # Only the part that sharing changes is timed (less noise for the choice).
    ws.chooser.record(time.perf_counter() - start)
    if inertia == "exact":
        batch = Bounded(float(ws.batch_inertia(xb, swb, centers, labels)), 0.0)
    elif inertia == "bounded":
        batch = ws.batch_inertia_bounded(xb, swb, centers, labels, signed_weights=signed_weights)
    else:
        batch = Bounded(0.0, 0.0)
    _accumulate_centers(xb, swb, labels, centers, centers_new, weight_sums, ws)
    if random_reassign and reassignment_ratio > 0:
        _reassign_small_centers(
            xb, centers_new, weight_sums, reassignment_ratio, random_state, verbose
        )
    return batch


def large_batch_step(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    centers: np.ndarray,
    weight_sums: np.ndarray,
    random_state: np.random.RandomState,
    *,
    random_reassign: bool,
    reassignment_ratio: float,
    verbose: bool,
    relabel: bool = False,
    sq_norms: np.ndarray | None = None,
) -> Known | None:
    """:func:`mini_batch_step` in place for a batch of any size (``partial_fit``).

    Labels the whole batch with :func:`labels_inertia` (on its threads, as
    scikit-learn's OpenMP loop labels it), then accumulates the centers
    block by block; accumulation is sequential per center, so carrying the
    running sums from one block to the next gives the same result as one
    pass. Checks for cancellation after each block.

    With ``relabel`` (the batch will be labelled again against the moved
    centers), a float32 screen or float32 data (scored exactly), and at most
    :data:`MARGINS_MAX_ROWS` rows, returns the labels that provably still
    hold (see :class:`._screen.Margins`), for :func:`labels_inertia`'s
    ``known``; else None. ``sq_norms`` (n_rows,) float32 are the rows'
    squared norms for the screen (see :func:`labels_inertia`), or None.
    """
    n_rows, n_features = X.shape
    n_clusters = centers.shape[0]
    dtype = centers.dtype
    margins = None
    keep = relabel and n_rows <= MARGINS_MAX_ROWS
    if keep and _screen.screens(n_features, n_clusters, dtype):
        margins = _screen.Margins(n_rows)
    elif keep and dtype == np.float32:
        margins = _screen.Margins(n_rows, first="exact")
    old = None if margins is None else centers.copy()
    labels = np.empty(n_rows, dtype=np.intp)
    labels_inertia(
        X,
        None,
        centers,
        labels,
        with_inertia=False,
        on_block=lambda done, total: check_cancelled(),
        margins=margins,
        sq_norms=sq_norms,
    )
    block = min(rows_per_block(n_clusters, dtype.itemsize), n_rows)
    flat_table = scatter_table(n_clusters, n_features)
    flat_index = np.empty((block, flat_table.shape[1]), dtype=np.intp)
    weighted = None if sample_weight is None else np.empty((block, n_features), dtype=dtype)
    acc = np.multiply(centers, weight_sums[:, np.newaxis])
    if sample_weight is None:
        batch_weight = _unit_weight_sums(labels, n_clusters, dtype)
    else:
        batch_weight = np.zeros(n_clusters, dtype=dtype)
        np.add.at(batch_weight, labels, sample_weight)
    for start in range(0, n_rows, block):
        stop = min(start + block, n_rows)
        contrib = X[start:stop]
        if sample_weight is not None:
            assert weighted is not None
            contrib = np.multiply(
                contrib, sample_weight[start:stop, np.newaxis], out=weighted[: stop - start]
            )
        _add_rows(acc, contrib, labels[start:stop], flat_table, flat_index)
        check_cancelled()
    _move_received(acc, batch_weight, weight_sums, centers)
    if random_reassign and reassignment_ratio > 0:
        _reassign_small_centers(X, centers, weight_sums, reassignment_ratio, random_state, verbose)
    if margins is None or old is None:
        return None
    certain = margins.certain(old, centers)
    return None if certain is None else Known(labels, certain)


def tolerance(X: np.ndarray, tol: float, *, block_rows: int = 1 << 16) -> float:
    """Absolute tolerance ``mean(var(X, axis=0)) * tol`` (0 when ``tol == 0``).

    Small arrays use ``np.var`` itself. Large ones (memory maps) use two
    blocked passes that sum rows in order, as NumPy's axis-0 reduction does
    for more than one feature, without a full-size temporary.
    """
    if tol == 0:
        return 0
    if X.nbytes <= 64 * block_rows * 8 or X.shape[1] == 1:
        return float(np.mean(np.var(X, axis=0)) * tol)
    n = X.shape[0]
    total = np.zeros((1, X.shape[1]), dtype=X.dtype)
    for start in range(0, n, block_rows):
        total = np.sum(
            np.concatenate([total, X[start : start + block_rows]]), axis=0, keepdims=True
        )
    mean = total / n
    sq_total = np.zeros_like(total)
    for start in range(0, n, block_rows):
        centred = X[start : start + block_rows] - mean
        np.multiply(centred, centred, out=centred)
        sq_total = np.sum(np.concatenate([sq_total, centred]), axis=0, keepdims=True)
    return float(np.mean(sq_total[0] / n) * tol)
