"""Squared row norms of the training data, taken as validation's look for NaN and infinity.

The float32 screen (:mod:`._screen`) needs ``|x|`` of every row it labels,
for its error bound: in a minibatch step that is an ``einsum`` over the
batch's rounded rows, about 20 us of a 500 us step for 1,024 rows of 50
features, and again for every row of the final labelling. Validation reads
all of ``X`` once anyway (scikit-learn's one sum, a test for NaN and
infinity). Reading it as squared row norms instead costs about as much, and
their total is a test of its own: it is finite only if every value is
(NaN and infinity square to themselves), so a finite total lets validation
skip the sum. A total that is not finite proves nothing (squares of values
over about ``1e154`` overflow), and the caller then makes the usual check,
which raises and warns as scikit-learn's.

The norms are float64 sums of the unrounded rows, stored in float32: within
about ``2 u`` (``u = 2**-24``) of the float32 norms of the rounded rows
that the screen took before, far inside its bound's slack for ``|x|``
(``2 / (K + 8)`` relatively; see :mod:`._screen`).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from ._split_sum import SPLIT_MIN_VALUES, usable_cores
from ._twin import run_parts

#: Rows whose float64 norms are taken at once before being stored in float32.
PIECE_ROWS = 1 << 14

#: Most rows whose norms are kept (16 MiB of float32): a longer input (a
#: memory map far larger than memory, say) is validated as usual, and each
#: block's norms taken where it is labelled.
MAX_ROWS = 1 << 22


def wanted(X: np.ndarray, screened: bool) -> bool:
    """Whether :func:`finite_sq_norms` is worth taking for ``X`` (2-D, validated).

    Only for rows the screen will label (``screened``), of float64 data
    in one aligned C-contiguous block, at most :data:`MAX_ROWS` of them.
    """
    return (
        screened
        and X.dtype == np.float64
        and X.ndim == 2
        and 0 < X.shape[0] <= MAX_ROWS
        and X.flags.c_contiguous
        and X.flags.aligned
    )


def finite_sq_norms(X: np.ndarray) -> np.ndarray | None:
    """Squared norms (n_samples,) float32 of the rows of ``X``, if they prove it finite.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64
        C-contiguous (see :func:`wanted`).

    Returns
    -------
    ndarray of shape (n_samples,), float32, or None
        None when the norms' total is not finite: ``X`` may hold NaN or
        infinity (or values whose squares overflow), and still needs the
        usual check. Taken with floating-point errors ignored, on up to
        :func:`._split_sum.usable_cores` threads for large inputs.
    """
    n_rows = X.shape[0]
    norms = np.empty(n_rows, dtype=np.float32)
    threads = usable_cores() if X.size >= SPLIT_MIN_VALUES else 1
    bounds = [n_rows * part // threads for part in range(threads + 1)]
    totals: list[float] = []

    def run(start: int, stop: int) -> None:
        # float64 sums a piece at a time (the float64 scratch stays small and
        # in cache), stored in float32; the pieces' totals in Python floats,
        # where NaN and infinity carry through.
        scratch = np.empty(min(PIECE_ROWS, stop - start), dtype=np.float64)
        total = 0.0
        with np.errstate(all="ignore"):
            for first in range(start, stop, PIECE_ROWS):
                last = min(first + PIECE_ROWS, stop)
                rows, piece = X[first:last], scratch[: last - first]
                np.einsum("ij,ij->i", rows, rows, out=piece)
                total += float(np.add.reduce(piece))
                np.copyto(norms[first:last], piece, casting="same_kind")
        totals.append(total)

    run_parts([functools.partial(run, a, b) for a, b in itertools.pairwise(bounds)])
    return norms if math.isfinite(sum(totals)) else None
