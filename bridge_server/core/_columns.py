"""Labels from scores laid out one row per center: reductions as passes along rows.

A block of ``n`` rows scored against ``k`` centers is usually a (n, k)
array, and its labels the argmin of each row. NumPy finds that argmin row by
row, and a row shorter than its vector loop's step (64 float32 or 32
float64 values with AVX-512) takes a scalar loop: for 50 centers the argmin
then costs about as much as the product itself. Laid out (k, n), one row per
center, every reduction over the centers is instead a few passes of vector
operations along rows of ``n``: the minimum, a comparison with it, and
integer sums of the flags it raises (their count, and the flagged index,
which is the label where exactly one center is flagged).

The float32 screen (:mod:`._screen`) flags the centers within its threshold
of the best score this way; exact scoring flags the centers equal to the
minimum (:func:`first_min`), where this layout pays (:func:`pays`, :data:`MIN_ROWS`).
"""

from __future__ import annotations

import numpy as np

from . import _argmin

#: Bytes of a row from which NumPy's row-by-row argmin runs its vector loop
#: on AVX-512 (64 float32 or 32 float64 values): shorter rows take a scalar
#: loop, and only they are worth laying out (k, n).
VECTOR_ROW_BYTES = 256

#: Most features per center for which the (k, n) product keeps up with the
#: (n, k) one: with few centers and many features, BLAS does worse with ``k``
#: as the product's row count (128 features and 8 centers took 1.3x as long).
FEATURES_PER_CENTER = 4

#: Fewest rows labelled at once from (k, n) scores: the passes' fixed costs
#: outweigh the argmin they save below (512 rows of 20 centers took 1.2x as
#: long, 1,024 rows 0.75x).
MIN_ROWS = 1024


def pays(n_clusters: int, n_features: int, itemsize: int) -> bool:
    """Whether exact labels of many rows are faster from (k, n) scores than (n, k) ones.

    Measured on blocks of 1,024 to 5,120 rows (4 to 128 features, 8 to 256
    centers): 0.45-0.87x the time where a row of scores is shorter than
    :data:`VECTOR_ROW_BYTES` and there are at most
    :data:`FEATURES_PER_CENTER` features per center; 1.1-2x elsewhere.
    """
    short_rows = n_clusters * itemsize < VECTOR_ROW_BYTES
    return short_rows and n_features <= FEATURES_PER_CENTER * n_clusters


def count_type(n_clusters: int) -> np.dtype:
    """The smallest unsigned integer type that holds ``n_clusters``."""
    if n_clusters <= 0xFF:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16 if n_clusters <= 0xFFFF else np.uint32)


class Flags:
    """Scratch for :func:`single_flag` and :func:`first_min` on up to ``n_rows`` columns.

    Parameters
    ----------
    n_clusters, n_rows : int
    dtype : numpy dtype or None
        The scores' dtype, for :func:`first_min`'s minimum (None: not needed).
    """

    def __init__(self, n_clusters: int, n_rows: int, dtype: np.dtype | None = None) -> None:
        counted = count_type(n_clusters)
        #: Each center's index, as a column (multiplies that center's flags).
        self.index = np.arange(n_clusters, dtype=counted)[:, np.newaxis]
        #: Whether each center is flagged for each column.
        self.within = np.empty((n_clusters, n_rows), dtype=np.bool_)
        self.flagged = np.empty((n_clusters, n_rows), dtype=counted)
        self.counts = np.empty(n_rows, dtype=counted)
        self.index_sums = np.empty(n_rows, dtype=counted)
        self.best = None if dtype is None else np.empty(n_rows, dtype=dtype)

    @staticmethod
    def bytes_per_row(n_clusters: int) -> int:
        """Bytes of the flag buffers per column (without :attr:`best`)."""
        count = count_type(n_clusters).itemsize
        return n_clusters * (1 + count) + 2 * count

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers."""
        arrays = (self.within, self.flagged, self.counts, self.index_sums, self.best)
        return sum(a.nbytes for a in arrays if a is not None)


def single_flag(within: np.ndarray, flags: Flags, out: np.ndarray) -> np.ndarray:
    """The flagged center of each column of ``within`` (k, n) into ``out`` (n,).

    ``within`` is a view of ``flags.within``. Returns the columns where not
    exactly one center is flagged, whose entries of ``out`` are meaningless
    (an empty array in the usual case).
    """
    n = within.shape[1]
    # Integer sums along axis 0 (whole rows of flags at a time). A float32
    # product of the flags with [1; index] was twice as slow: two output rows
    # make a poor GEMM.
    bits = within.view(np.uint8)
    flagged = flags.flagged[:, :n]
    counts = np.add.reduce(bits, axis=0, out=flags.counts[:n], dtype=flagged.dtype)
    np.multiply(bits, flags.index, out=flagged)
    np.copyto(out, np.add.reduce(flagged, axis=0, out=flags.index_sums[:n]), casting="unsafe")
    # The usual case, without a mask.
    if np.minimum.reduce(counts) == 1 and np.maximum.reduce(counts) == 1:
        return np.empty(0, dtype=np.intp)
    return np.flatnonzero(counts != 1)


def first_min(
    scores: np.ndarray, flags: Flags, out: np.ndarray, gaps: np.ndarray | None = None
) -> None:
    """Each column's argmin of ``scores`` (k, n) into ``out`` (n,): the first on ties.

    The same labels as ``np.argmin(scores, axis=0)`` where no score is NaN;
    columns with a tie or a NaN, where no single center equals the
    minimum, are left to :func:`._argmin.argmin` (scikit-learn's rule for NaN).
    ``flags`` was made with the scores' dtype. With ``gaps`` (n,) float32,
    also records each column's second smallest score less its smallest
    (inf for one center; -inf where the minimum is tied or NaN), and
    overwrites the minima in ``scores`` with infinity to find them.
    """
    n = scores.shape[1]
    assert flags.best is not None
    best = np.minimum.reduce(scores, axis=0, out=flags.best[:n])
    within = np.equal(scores, best, out=flags.within[:, :n])
    left = single_flag(within, flags, out)
    if left.size:
        out[left] = _argmin.argmin(scores[:, left], axis=0)
    if gaps is not None:
        np.copyto(scores, scores.dtype.type(np.inf), where=within)
        np.subtract(np.min(scores, axis=0), best, out=gaps, casting="same_kind")
        gaps[left] = -np.inf


def row_gaps(scores: np.ndarray, labels: np.ndarray, gaps: np.ndarray) -> None:
    """:func:`first_min`'s gaps for (n, k) scores labelled ``labels`` (their argmin).

    Each row's second smallest score less its smallest into ``gaps`` (n,)
    float32: 0 where the minimum is tied, NaN where the row holds NaN, inf
    for one center. Overwrites each row's minimum in ``scores`` with infinity.
    """
    rows = np.arange(scores.shape[0])
    best = scores[rows, labels]
    scores[rows, labels] = np.inf
    np.subtract(np.min(scores, axis=1), best, out=gaps, casting="same_kind")
