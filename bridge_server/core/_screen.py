"""A single-precision first pass that labels most float64 rows for certain.

scikit-learn labels a row by the argmin of its double-precision scores
``|c|^2 - 2 x.c`` (one GEMM per chunk of rows). Which index wins depends on
those exact doubles only when two scores are closer than their rounding
errors. So a float32 product (about 3x faster than the float64 one on
AVX2) decides every row whose best score beats all others by more than a
rigorous bound on both passes' errors; only the rest need the exact,
chunk-by-chunk double-precision scores.

The bound. For a row ``x`` and center ``c_j`` let ``T_j = |c_j|^2 - 2 x.c_j``
be the exact value, ``G_j`` the double-precision score and ``A_j`` the float32
one. Both are dot products of length ``K + 1`` (``K`` features plus the norm
term) of rounded inputs, so, in any summation order, with or without fused
multiply-adds, while nothing overflows or underflows and ``K <= 4096``,
``|A_j - T_j| <= (K + 6) u W`` and ``|G_j - T_j| <= (K + 6) 2**-53 W``,
where ``u = 2**-24`` and ``W = 2 |x| max|c| + max|c|^2`` bounds
``2 sum|x_i c_ji| + |c_j|^2`` (Cauchy-Schwarz). So if every ``A_j`` other
than the smallest, ``A_b``, exceeds ``A_b + 2 (K + 6) (u + 2**-53) W``, every
``G_j`` exceeds ``G_b``: ``b`` is scikit-learn's label, ties included. The
threshold used, ``2 (K + 8) u W`` plus a floor of ``2**-120``, also covers
its own float32 evaluation (about ``2 u W`` at ``K = 4096``: ``|x|^2`` summed
in float32 is off by up to about ``K u / 2`` relatively, and adding the best
score rounds once) and the absolute errors of values in float32's subnormal
range. Centers whose norms are tiny (below
``2**-40``, where those could matter) and blocks whose values could
overflow float32 are not screened.

Rows the float32 margin leaves undecided are usually decided in float64
(:meth:`Screen.settle`): the same argument with two float64 evaluations
needs a margin of only ``4 (K + 6) 2**-53 W``. Only true near-ties are left
for scikit-learn's own chunk-by-chunk scores.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from . import _columns

#: float32's unit roundoff.
_U = 2.0**-24

#: Fewest features for which screening pays (below, the float64 GEMM is cheap).
SCREEN_MIN_FEATURES = 8

#: Most features screened (the error bound assumes ``K * u`` is small).
SCREEN_MAX_FEATURES = 4096

#: Largest ``W`` screened: float32 scores of at most about this size cannot overflow.
_MAX_BOUND = 1e36

_NONE = np.empty(0, dtype=np.intp)

#: Smallest largest-center norm screened: above it, float32 underflow errors
#: are far inside the slack of the threshold.
_MIN_CENTER = 2.0**-40

#: Added to every threshold: covers rounding of products near float32's underflow.
_FLOOR = 2.0**-120

#: float64's unit roundoff, and a floor for float64 thresholds (far above the
#: absolute error of products near float64's underflow).
_U64 = 2.0**-53
_FLOOR64 = 2.0**-1000


def screens(n_features: int, n_clusters: int, dtype: np.dtype) -> bool:
    """Whether rows of ``n_features`` features of ``dtype`` are worth screening.

    At most 2**24 centers: even one 256-row chunk of scores for more would
    take tens of gigabytes.
    """
    return (
        np.dtype(dtype) == np.float64
        and SCREEN_MIN_FEATURES <= n_features <= SCREEN_MAX_FEATURES
        and n_clusters <= 2**24
    )


def _cache_lines(nbytes: int) -> int:
    """``nbytes`` rounded up to whole 64-byte cache lines."""
    return -(-nbytes // 64) * 64


class ScreenBuffers:
    """One thread's float32 scratch for screening up to ``n_rows`` rows.

    ``memory`` (uint8, at least :meth:`lendable_bytes`), if given, holds the
    two largest buffers, :attr:`rows` and :attr:`scores`: a caller whose
    other scratch is never in use during :meth:`Screen.label` lends it, so
    that its loop touches less memory (see :class:`._kmeans_steps.StepWorkspace`).
    """

    def __init__(
        self, n_rows: int, n_clusters: int, n_features: int, memory: np.ndarray | None = None
    ) -> None:
        width = n_features + 1
        #: Whether the memory is lent, so that other scratch may overwrite it
        #: between calls (:meth:`Screen.label` then writes the ones again).
        self.lent = memory is not None
        if memory is None:
            memory = np.empty(self.lendable_bytes(n_rows, n_clusters, n_features), np.uint8)
        split = _cache_lines(n_rows * width * 4)
        #: Rows rounded to float32, beside a column of ones (the norm term).
        self.rows = memory[: n_rows * width * 4].view(np.float32).reshape(n_rows, width)
        if not self.lent:
            self.rows[:, n_features] = 1.0
        #: Scores, one row per center (reductions over centers run along rows).
        self.scores = memory[split : split + n_clusters * n_rows * 4].view(np.float32)
        self.scores = self.scores.reshape(n_clusters, n_rows)
        self.best = np.empty(n_rows, dtype=np.float32)
        self.threshold = np.empty(n_rows, dtype=np.float32)
        #: Which centers are within the threshold of each row's best, and their count.
        self.flags = _columns.Flags(n_clusters, n_rows)

    @staticmethod
    def lendable_bytes(n_rows: int, n_clusters: int, n_features: int) -> int:
        """Bytes of :attr:`rows` and :attr:`scores` (the ``memory`` they may share)."""
        return _cache_lines(n_rows * (n_features + 1) * 4) + n_rows * n_clusters * 4

    @staticmethod
    def bytes_per_row(n_clusters: int, n_features: int) -> int:
        """Bytes of these buffers per row screened at once."""
        flags = _columns.Flags.bytes_per_row(n_clusters)
        return n_clusters * 4 + flags + (n_features + 1) * 4 + 8  # scores, flags, rows, per-row

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers."""
        arrays = (self.rows, self.scores, self.best, self.threshold)
        return self.flags.nbytes + sum(a.nbytes for a in arrays)


class Screen:
    """Labels rows of float64 data for certain in float32 where the margin allows.

    Parameters
    ----------
    n_clusters, n_features : int
    """

    def __init__(self, n_clusters: int, n_features: int) -> None:
        self.n_features = n_features
        # (k, K + 1): -2 c rounded to float32 (scaling by -2 is exact), then |c|^2.
        self._matrix = np.empty((n_clusters, n_features + 1), dtype=np.float32)
        self._factor = 2.0 * (n_features + 8) * _U
        # Two float64 evaluations (see settle): 4 (K + 6) 2**-53 W, with slack.
        self._factor64 = 4.0 * (n_features + 8) * _U64
        #: False for centers that cannot be screened (see :meth:`set_centers`).
        self.active = False
        self._per_norm = self._constant = self._max_sq_norm = np.float32(0)
        self._c_max = 0.0

    def set_centers(self, centers: np.ndarray, sq_norms: np.ndarray, largest: float) -> None:
        """Screen against ``centers`` (k, K) float64 with squared norms ``sq_norms`` (k,).

        ``largest`` is the largest of ``sq_norms`` (the caller has it).
        """
        # Slightly enlarged: the float64 norms and square root round too.
        c_max = math.sqrt(largest) * (1 + 1e-6)
        # Tiny centers would make float32 underflow matter; huge ones, overflow.
        self.active = _MIN_CENTER <= c_max and c_max * c_max < _MAX_BOUND / 2
        if not self.active:
            return
        with np.errstate(under="ignore"):  # tiny coordinates round to float32 subnormals
            np.multiply(centers, -2.0, out=self._matrix[:, : self.n_features], casting="same_kind")
            np.copyto(self._matrix[:, self.n_features], sq_norms, casting="same_kind")
        self._c_max = c_max
        factor = self._factor
        # threshold = best + factor * (2 |x| c_max + c_max^2) + floor
        self._per_norm = np.float32(2 * factor * c_max)
        self._constant = np.float32(factor * c_max * c_max + _FLOOR)
        # Rows with |x|^2 below this keep W under _MAX_BOUND.
        self._max_sq_norm = np.float32(min(((_MAX_BOUND / 2) / (2 * c_max)) ** 2, 1e38))

    def buffers(self, n_rows: int, memory: np.ndarray | None = None) -> ScreenBuffers:
        """Scratch for :meth:`label` on up to ``n_rows`` rows (``memory``: see the class)."""
        return ScreenBuffers(n_rows, self._matrix.shape[0], self.n_features, memory)

    def lendable_bytes(self, n_rows: int) -> int:
        """:meth:`ScreenBuffers.lendable_bytes` for this screen."""
        return ScreenBuffers.lendable_bytes(n_rows, self._matrix.shape[0], self.n_features)

    def label(
        self,
        X: np.ndarray,
        buf: ScreenBuffers,
        labels: np.ndarray,
        margins: Margins | None = None,
        sq_norms: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """Label the rows of ``X`` (n, K) float64 whose label is certain.

        Returns the indices (into ``X``) of rows left undecided, whose entries
        of ``labels`` (n,) are meaningless, or None when the block cannot be
        screened (centers or rows too large or centers too small for
        float32); then ``labels`` is untouched. With ``margins`` (for these
        n rows), also records how far each row's label is from changing
        (see :class:`Margins`; meaningless for undecided rows, untouched on
        None). ``sq_norms`` (n,) float32, if given, are the rows' squared
        norms from :func:`._row_norms.finite_sq_norms`, used instead of
        summing the rounded rows' squares (within about ``2 u`` of those,
        far inside the slack the bound leaves for ``|x|``). Run inside a
        one-thread BLAS section.
        """
        if not self.active:
            return None
        if X.shape[0] == 0:
            return _NONE
        # Under any NumPy error settings: float32 may underflow (covered by the
        # bound) or overflow (refused below) where float64 does not.
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return self._label(X, buf, labels, margins, sq_norms)

    def _label(
        self,
        X: np.ndarray,
        buf: ScreenBuffers,
        labels: np.ndarray,
        margins: Margins | None,
        sq_norms: np.ndarray | None,
    ) -> np.ndarray | None:
        """:meth:`label` for at least one row, with float errors silenced."""
        n = X.shape[0]
        K = self.n_features
        rows = buf.rows[:n]
        np.copyto(rows[:, :K], X, casting="same_kind")
        if buf.lent:
            rows[:, K] = 1.0
        threshold = buf.threshold[:n]
        if sq_norms is None:
            # |x|^2 per row in float32: its relative error is well inside the margin.
            sq_norms = np.einsum("ij,ij->i", rows[:, :K], rows[:, :K], out=threshold)
        if not np.maximum.reduce(sq_norms) < self._max_sq_norm:
            return None  # also when a square overflowed to inf, or for NaN
        scores = buf.scores[:, :n]
        np.matmul(self._matrix, rows.T, out=scores)
        best = np.minimum.reduce(scores, axis=0, out=buf.best[:n])
        np.sqrt(sq_norms, out=threshold)  # |x|, the start of each row's threshold
        if margins is not None:
            np.copyto(margins.norms, threshold)
        threshold *= self._per_norm
        threshold += self._constant
        threshold += best
        within = np.less_equal(scores, threshold, out=buf.flags.within[:, :n])
        if margins is not None:
            # The smallest score beyond the threshold (the second best, where
            # exactly one center is within it), less the threshold.
            np.copyto(scores, np.float32(np.inf), where=within)
            np.subtract(
                np.minimum.reduce(scores, axis=0, out=buf.best[:n]), threshold, out=margins.gaps
            )
        return _columns.single_flag(within, buf.flags, labels)

    def settle(
        self,
        X: np.ndarray,
        rows: np.ndarray,
        labels: np.ndarray,
        scaled: np.ndarray,
        sq_norms: np.ndarray,
    ) -> np.ndarray:
        """Label for certain, in float64, what rows ``rows`` of ``X`` the screen left.

        A float32 margin too thin to decide is usually wide in float64: the
        rows' scores are computed again in float64 (any order, so not
        scikit-learn's bits), and the same argument as the screen's, with
        two float64 evaluations (``4 (K + 6) 2**-53 W``), proves the label of
        every row whose best score beats the others by more than that.
        Only true near-ties are left for exact, chunk-by-chunk scoring.

        Parameters
        ----------
        X : ndarray of shape (n, K), float64
            The block the screen was given (after :meth:`label` did not refuse it).
        rows : ndarray of shape (m,)
            Indices into ``X`` of the rows left undecided.
        labels : ndarray of shape (n,)
            Receives the labels of the rows settled.
        scaled, sq_norms : ndarray of shape (k, K) and (k,), float64
            ``-2 c`` and ``|c|^2`` of the centers given to :meth:`set_centers`.

        Returns
        -------
        ndarray of shape (m',)
            The indices still undecided (a subset of ``rows``).
        """
        if rows.size == 0:
            return rows
        with np.errstate(under="ignore"):  # covered by the floor, under any error settings
            x = np.take(X, rows, axis=0)
            scores = np.matmul(x, scaled.T)
            scores += sq_norms
            best = np.argmin(scores, axis=1)
            c_max = self._c_max
            x_norms = np.sqrt(np.einsum("ij,ij->i", x, x))
            threshold = self._factor64 * (2 * c_max * x_norms + c_max * c_max) + _FLOOR64
            threshold += scores[np.arange(rows.size), best]
            sure = np.count_nonzero(scores <= threshold[:, np.newaxis], axis=1) == 1
        labels[rows[sure]] = best[sure]
        return rows[~sure]


class Margins:
    """How far each row's label is from changing, for rows labelled again.

    ``partial_fit`` labels its batch against the centers, moves them, then
    labels the batch again against the moved centers. A row labelled ``b``
    whose other scores all exceed its best by a margin keeps label ``b``
    against centers that moved little enough (see :meth:`certain`), so its
    second label needs no product. The margins come from one of two first
    passes (``first``):

    * ``"screen"``: float64 rows screened in float32. A row's gap is its
      smallest score beyond the screen's threshold, less the threshold
      (which already covers both passes' errors).
    * ``"exact"``: float32 rows scored exactly, as scikit-learn scores them,
      laid out either way (:func:`._columns.first_min`,
      :func:`._columns.row_gaps`). A row's gap is its second smallest score
      less its smallest; :meth:`certain` then also covers the errors of both
      passes' float32 scores.

    ``gaps`` (n,) float32 (-inf where the first pass did not decide the
    row, or recorded no gap); ``norms`` (n,) float32: the row's float32 norm ``|x|``.
    """

    def __init__(self, n_rows: int, first: Literal["screen", "exact"] = "screen") -> None:
        self.first = first
        self.gaps = np.full(n_rows, -np.inf, dtype=np.float32)
        self.norms = np.zeros(n_rows, dtype=np.float32)

    def undecided(self, start: int, stop: int, rows: np.ndarray | None = None) -> None:
        """Mark rows ``start:stop`` (or those of them at offsets ``rows``) as not certain."""
        gaps = self.gaps[start:stop]
        if rows is None:
            gaps[...] = -np.inf
        else:
            gaps[rows] = -np.inf

    def view(self, start: int, stop: int) -> Margins:
        """The margins of rows ``start:stop`` (views, written through)."""
        part = Margins.__new__(Margins)
        part.first = self.first
        part.gaps, part.norms = self.gaps[start:stop], self.norms[start:stop]
        return part

    def certain(self, old: np.ndarray, new: np.ndarray) -> np.ndarray | None:
        """Which rows keep their label when the centers move from ``old`` to ``new`` (k, K).

        Returns a boolean mask (n,), or None when the centers are outside
        float32's safe range (then nothing is certain).

        The argument (see the module's): moving the centers changes each
        exact score ``T_j`` by at most ``nu + 2 |x| delta``, where ``delta``
        is the largest center's move and ``nu`` the largest change of a
        squared norm, so the best exact score stays the best by more than
        the second pass's evaluation error if the first pass showed it
        ahead by that much more.

        * After the screen, a row whose float32 scores other than the best
          exceed the threshold by more than ``s`` has exact scores
          ``T_j - T_b > 2 (K + 6) 2**-53 W + s`` (the threshold covers both
          passes' errors), and the new ones differ by more than their
          float64 evaluations' errors (``2 (K + 6) 2**-53 W'``, with ``W'``
          the new centers' ``W``) once
          ``s >= 2 nu + 4 |x| delta + 4 u (c_max + delta)**2``.
        * After exact float32 scores ``G``, each within ``(K + 6) u W`` of
          ``T``, a row with ``G_j - G_b >= s`` for every ``j != b`` keeps
          ``b`` as the strict argmin of the new float32 scores (first on
          ties or not) once ``s > 2 nu + 4 |x| delta + 2 (K + 6) u (W + W')``,
          ``W = 2 |x| c + c**2`` with ``c`` the largest old center's norm
          (``W'``: the new one's), plus a floor for float32's subnormals.

        ``|x|`` is the row's float32 norm enlarged by ``(K + 4) u``, and
        everything by a relative ``1e-6`` for the rounding of these sums
        (computed in float64) and of the gaps themselves. (Where squares
        underflow, below ``2**-150``, the float32 norm can fall short of
        ``|x|`` by up to ``sqrt(K) 2**-75`` more; the terms that adds stay
        under 1% of the slack the bound keeps, at least ``10 u c_max**2``
        with ``c_max >= 2**-40``.)
        """
        old = np.asarray(old, dtype=np.float64)
        new = np.asarray(new, dtype=np.float64)
        old_sq = np.einsum("ij,ij->i", old, old)
        new_sq = np.einsum("ij,ij->i", new, new)
        moved = new - old
        delta = math.sqrt(float(np.einsum("ij,ij->i", moved, moved).max()))
        nu = float(np.abs(new_sq - old_sq).max())
        c_old, c_new = math.sqrt(float(old_sq.max())), math.sqrt(float(new_sq.max()))
        c_max = max(c_old, c_new)
        if not (_MIN_CENTER <= c_max and c_max * c_max < _MAX_BOUND / 2 and math.isfinite(delta)):
            return None
        n_features = old.shape[1]
        grow = 1 + 1e-6
        if self.first == "screen":
            constant = (2 * nu + 4 * _U * (c_max + delta) ** 2 + _FLOOR64) * grow
            per_norm = 4 * delta * (1 + (n_features + 4) * _U) * grow
        else:
            error = 2 * (n_features + 6) * _U
            constant = (2 * nu + error * (c_old**2 + c_new**2) + 2 * _FLOOR) * grow
            per_norm = (4 * delta + 2 * error * (c_old + c_new)) * grow
            per_norm *= 1 + (n_features + 4) * _U
        needed = self.norms.astype(np.float64)
        needed *= per_norm
        needed += constant
        return self.gaps > needed
