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
callers also check their centers (``Scorer.finite_centers`` in
:mod:`._kmeans_steps`).
"""

from __future__ import annotations

import contextlib
import contextvars
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


def _recorder() -> np.errstate:
    """Every floating-point error ignored, except invalid ones, which go to :func:`_invalid`.

    The recorder replaces the caller's handler, so no other error may reach it.
    """
    return np.errstate(all="ignore", invalid="call", call=_invalid)


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """No floating-point warnings or errors, and invalid operations recorded, for a block.

    Helper threads running in a copy of this context (:class:`._twin.Twin`)
    record theirs too (NumPy 2 keeps its error settings in the context).
    """
    with _recorder():
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


def watch() -> contextlib.AbstractContextManager[object]:
    """Record, for :func:`seen`, the invalid operations of a block (and forget earlier ones).

    Enter it around the products whose NaN matters. Under :func:`recording`
    (the core's fits, final labels and scores) the settings are in place
    already and it only clears the record; elsewhere it sets
    :func:`recording`'s settings for the block (about 2.5 us): other errors
    are ignored, as in scikit-learn's compiled products.
    """
    clear()
    return contextlib.nullcontext() if records() else _recorder()


def seen() -> bool:
    """Whether an operation made NaN on this thread since the last :func:`watch`."""
    return bool(getattr(_seen, "nan", False))


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


def row_labels(scores: np.ndarray, maybe_nan: bool, out: np.ndarray | None = None) -> np.ndarray:
    """scikit-learn's labels of (n, k) ``scores``: ``np.argmin``'s, with its rule for NaN.

    ``maybe_nan`` False (no operation made NaN and no center holds any)
    spares the look for NaN. ``out`` (n,) receives the labels if given.
    """
    labels = np.argmin(scores, axis=1, out=out)
    if maybe_nan:
        fix_rows(scores, labels)
    return labels


def fix_rows(scores: np.ndarray, labels: np.ndarray) -> None:
    """Relabel, by :func:`argmin`, the rows of ``scores`` (n, k) that hold NaN.

    ``labels`` (n,) are ``np.argmin``'s, and are right for every other row.
    """
    rows = np.flatnonzero(np.isnan(scores).any(axis=1))
    if rows.size:
        labels[rows] = argmin(scores[rows], axis=1)
