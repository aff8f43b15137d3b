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
"""

from __future__ import annotations

import math

import numpy as np

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


def screens(n_features: int, n_clusters: int, dtype: np.dtype) -> bool:
    """Whether rows of ``n_features`` features of ``dtype`` are worth screening.

    Center indices must be exact in float32 (the label is read from a
    float32 product), so at most 2**24 centers.
    """
    return (
        np.dtype(dtype) == np.float64
        and SCREEN_MIN_FEATURES <= n_features <= SCREEN_MAX_FEATURES
        and n_clusters <= 2**24
    )


class ScreenBuffers:
    """One thread's float32 scratch for screening up to ``n_rows`` rows."""

    def __init__(self, n_rows: int, n_clusters: int, n_features: int) -> None:
        #: Rows rounded to float32, beside a column of ones (the norm term).
        self.rows = np.ones((n_rows, n_features + 1), dtype=np.float32)
        #: Scores, one row per center (reductions over centers run along rows);
        #: then 1.0 where a center's score is within the threshold of the best.
        self.scores = np.empty((n_clusters, n_rows), dtype=np.float32)
        self.best = np.empty(n_rows, dtype=np.float32)
        self.threshold = np.empty(n_rows, dtype=np.float32)
        #: Per row: how many centers are within the threshold, and their index sum.
        self.tally = np.empty((2, n_rows), dtype=np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers."""
        arrays = (self.rows, self.scores, self.best, self.threshold, self.tally)
        return sum(a.nbytes for a in arrays)


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
        # Row 0 counts centers, row 1 sums their indices (exact in float32 up to 2**24).
        self._tally = np.ones((2, n_clusters), dtype=np.float32)
        self._tally[1] = np.arange(n_clusters)
        self._factor = 2.0 * (n_features + 8) * _U
        #: False for centers that cannot be screened (see :meth:`set_centers`).
        self.active = False
        self._per_norm = self._constant = self._max_sq_norm = np.float32(0)

    def set_centers(self, centers: np.ndarray, sq_norms: np.ndarray) -> None:
        """Screen against ``centers`` (k, K) float64 with squared norms ``sq_norms`` (k,)."""
        # Slightly enlarged: the float64 norms and square root round too.
        c_max = math.sqrt(float(sq_norms.max())) * (1 + 1e-6)
        # Tiny centers would make float32 underflow matter; huge ones, overflow.
        self.active = _MIN_CENTER <= c_max and c_max * c_max < _MAX_BOUND / 2
        if not self.active:
            return
        with np.errstate(under="ignore"):  # tiny coordinates round to float32 subnormals
            np.multiply(centers, -2.0, out=self._matrix[:, : self.n_features], casting="same_kind")
            np.copyto(self._matrix[:, self.n_features], sq_norms, casting="same_kind")
        factor = self._factor
        # threshold = best + factor * (2 |x| c_max + c_max^2) + floor
        self._per_norm = np.float32(2 * factor * c_max)
        self._constant = np.float32(factor * c_max * c_max + _FLOOR)
        # Rows with |x|^2 below this keep W under _MAX_BOUND.
        self._max_sq_norm = np.float32(min(((_MAX_BOUND / 2) / (2 * c_max)) ** 2, 1e38))

    def buffers(self, n_rows: int) -> ScreenBuffers:
        """Scratch for :meth:`label` on up to ``n_rows`` rows."""
        return ScreenBuffers(n_rows, self._matrix.shape[0], self.n_features)

    def label(self, X: np.ndarray, buf: ScreenBuffers, labels: np.ndarray) -> np.ndarray | None:
        """Label the rows of ``X`` (n, K) float64 whose label is certain.

        Returns the indices (into ``X``) of rows left undecided, whose entries
        of ``labels`` (n,) are meaningless, or None when the block cannot be
        screened (centers or rows too large or centers too small for
        float32); then ``labels`` is untouched. Run inside a one-thread BLAS
        section.
        """
        if not self.active:
            return None
        if X.shape[0] == 0:
            return _NONE
        # Under any NumPy error settings: float32 may underflow (covered by the
        # bound) or overflow (refused below) where float64 does not.
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return self._label(X, buf, labels)

    def _label(self, X: np.ndarray, buf: ScreenBuffers, labels: np.ndarray) -> np.ndarray | None:
        """:meth:`label` for at least one row, with float errors silenced."""
        n = X.shape[0]
        K = self.n_features
        rows = buf.rows[:n]
        np.copyto(rows[:, :K], X, casting="same_kind")
        # |x|^2 per row in float32: its relative error is well inside the margin.
        norms = np.einsum("ij,ij->i", rows[:, :K], rows[:, :K], out=buf.threshold[:n])
        if not norms.max() < self._max_sq_norm:
            return None  # also when a square overflowed to inf, or for NaN
        scores = buf.scores[:, :n]
        np.matmul(self._matrix, rows.T, out=scores)
        best = np.min(scores, axis=0, out=buf.best[:n])
        threshold = np.sqrt(norms, out=norms)
        threshold *= self._per_norm
        threshold += self._constant
        threshold += best
        within = np.less_equal(scores, threshold, out=scores, casting="unsafe")
        tally = np.matmul(self._tally, within, out=buf.tally[:, :n])
        np.copyto(labels, tally[1], casting="unsafe")
        counts = tally[0]
        if counts.min() == 1 and counts.max() == 1:  # the usual case, without a mask
            return _NONE
        return np.flatnonzero(counts != 1)
