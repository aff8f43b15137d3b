"""scikit-learn's label for a row of scores, NaN included.

scikit-learn's compiled labelling keeps the first center's score and moves
on only for a strictly smaller one: ties go to the first center, as with
``np.argmin``, but a NaN score is never taken unless it is the first (every
comparison with NaN is false), where ``np.argmin`` takes the first NaN.
Scores are NaN only where their terms overflow (coordinates of about 1e154
in float64, 1e19 in float32: infinities of both signs meet) or a center
holds NaN. There, NumPy's labels would send the fit down another path.

:func:`seen` tells whether a product made NaN: an operation that turns
non-NaN values into NaN raises the floating-point "invalid" flag, which
NumPy checks after each operation (BLAS products included), and under
:func:`recording` (the core's settings for what scikit-learn does in
compiled code) or :func:`watch` NumPy calls :func:`_invalid` for it instead
of warning. NaN carried in from a center does not raise the flag, so
callers also check their centers (:func:`finite_total`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
from collections.abc import Iterator

import numpy as np

_seen = threading.local()

#: Whether the current context records invalid operations (see :func:`recording`).
_RECORDING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "skbridge_records_nan", default=False
)


def _invalid(kind: str, flag: int) -> None:
    """NumPy's error callback: record that this thread's operations made NaN."""
    _seen.nan = True


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """No floating-point warnings or errors, and invalid operations recorded, for a block.

    Helper threads running in a copy of this context (:class:`._twin.Twin`)
    record theirs too (NumPy 2 keeps its error settings in the context).
    """
    with np.errstate(all="ignore", invalid="call", call=_invalid):
        token = _RECORDING.set(True)
        try:
            yield
        finally:
            _RECORDING.reset(token)


def records() -> bool:
    """Whether the current context is under :func:`recording` (then :func:`clear` will do)."""
    return _RECORDING.get()


def clear() -> None:
    """Forget invalid operations recorded so far on this thread."""
    _seen.nan = False


def watch() -> np.errstate:
    """Error settings that record an invalid operation for :func:`seen` (and clear it).

    Enter it around the products whose NaN matters, where :func:`records`
    is False (it costs about 2.5 us). As :func:`recording`'s, other errors
    are ignored, as in scikit-learn's compiled products: the recorder
    replaces the caller's handler, so no other error may reach it.
    """
    _seen.nan = False
    return np.errstate(all="ignore", invalid="call", call=_invalid)


def seen() -> bool:
    """Whether an operation made NaN on this thread since the last :func:`watch`."""
    return bool(getattr(_seen, "nan", False))


def finite_total(values: np.ndarray) -> bool:
    """Whether ``values`` (the centers' squared norms, say: none negative) are all finite.

    By their maximum, which NaN and infinity reach and which cannot
    overflow (no error setting needed).
    """
    return math.isfinite(float(np.maximum.reduce(values, axis=None)))


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
