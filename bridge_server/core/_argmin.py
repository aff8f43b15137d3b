"""scikit-learn's label for a row of scores, NaN included.

scikit-learn's compiled labelling keeps the first center's score and moves
on only for a strictly smaller one: ties go to the first center, as with
``np.argmin``, but a NaN score is never taken unless it is the first (every
comparison with NaN is false), where ``np.argmin`` takes the first NaN.
Scores are NaN only where their terms overflow (coordinates of about 1e154
in float64, 1e19 in float32: infinities of both signs meet) or a center
holds NaN. There, NumPy's labels would send the fit down another path.

:func:`watch` tells whether a product made NaN, at the price of one error
setting per call where nothing did: an operation that turns non-NaN values
into NaN raises the floating-point "invalid" flag, which NumPy checks after
each operation (BLAS products included). NaN carried in from a center does
not raise it, so callers also check their centers (:func:`finite_total`).
"""

from __future__ import annotations

import math
import threading

import numpy as np

_seen = threading.local()


def _invalid(kind: str, flag: int) -> None:
    """NumPy's error callback: record that this thread's operations made NaN."""
    _seen.nan = True


def watch() -> np.errstate:
    """Error settings that record an invalid operation for :func:`seen` (and clear it).

    Only the "invalid" setting changes: overflow, underflow and division
    keep the caller's. Enter it around the products whose NaN matters.
    """
    _seen.nan = False
    return np.errstate(invalid="call", call=_invalid)


def seen() -> bool:
    """Whether an operation made NaN on this thread since the last :func:`watch`."""
    return bool(getattr(_seen, "nan", False))


def finite_total(values: np.ndarray) -> bool:
    """Whether ``values`` (the centers' squared norms, say) are all finite, by one sum.

    False also where the sum alone overflows: callers then look for NaN
    themselves, which costs time only there.
    """
    with np.errstate(all="ignore"):
        return math.isfinite(float(np.add.reduce(values, axis=None)))


def argmin(scores: np.ndarray, axis: int) -> np.ndarray:
    """scikit-learn's labels of ``scores`` along ``axis`` (the centers' axis), as intp.

    The first minimum, skipping NaN, except that a NaN first score keeps
    the first center.
    """
    along = np.moveaxis(scores, axis, -1)
    nan = np.isnan(along)
    labels = np.argmin(np.where(nan, np.inf, along), axis=-1)
    labels[nan[..., 0]] = 0
    return labels


def fix_rows(scores: np.ndarray, labels: np.ndarray) -> None:
    """Relabel, by :func:`argmin`, the rows of ``scores`` (n, k) that hold NaN.

    ``labels`` (n,) are ``np.argmin``'s, and are right for every other row.
    """
    rows = np.flatnonzero(np.isnan(scores).any(axis=1))
    if rows.size:
        labels[rows] = argmin(scores[rows], axis=1)
