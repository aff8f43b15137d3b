"""The per-call context: how the core talks to whoever called it.

The core never prints, warns, allocates large outputs or polls for
cancellation directly; it goes through the functions here. With no context set
(plain in-process use) they behave like scikit-learn: verbose lines are
printed, warnings go through :func:`warnings.warn`, outputs are ordinary
arrays, metadata routing follows :func:`~._config.set_config`, and nothing is
ever cancelled. The server runs each call inside its own :class:`CallContext`
(a :mod:`contextvars` value, so concurrent calls on worker threads never see
each other's), which routes all of this to the calling client.
"""

from __future__ import annotations

import contextvars
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ._config import get_config
from ._errors import CallCancelled

#: ``(name, shape, dtype) -> array``: where per-sample outputs are written.
Allocator = Callable[[str, tuple[int, ...], np.dtype], np.ndarray]


@dataclass
class CallContext:
    """Sinks and settings for one call.

    Attributes
    ----------
    on_verbose : callable(str) or None
        Receives each verbose line (no trailing newline).
    on_warning : callable(str, type[Warning]) or None
        Receives each warning's message and category.
    on_progress : callable(int, int, str) or None
        Receives ``(done, total, phase)``: units done so far, units in all
        (``0`` when unknown), and a short phase name such as ``"fit"``.
    cancel_event : threading.Event or None
        Once set, the next :func:`check_cancelled` raises :class:`CallCancelled`.
    metadata_routing : bool or None
        The session's ``enable_metadata_routing``; ``None`` defers to the
        process-wide configuration.
    allocate : Allocator or None
        Allocates per-sample outputs (labels, predictions, transforms), for
        example as a memory-mapped ``.npy`` file; ``None`` means ``np.empty``.
    wrap_outputs : bool
        Whether ``transform``-like outputs are wrapped in the container chosen
        with ``set_output`` (pandas, polars). The server sets ``False``: arrays
        cross the wire and the client does the wrapping.
    """

    on_verbose: Callable[[str], None] | None = None
    on_warning: Callable[[str, type[Warning]], None] | None = None
    on_progress: Callable[[int, int, str], None] | None = None
    cancel_event: threading.Event | None = None
    metadata_routing: bool | None = None
    allocate: Allocator | None = None
    wrap_outputs: bool = True
    #: ``(category, message)`` of the warnings handed to ``on_warning`` so far.
    routed: set[tuple[type[Warning], str]] = field(default_factory=set, repr=False)


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "skbridge_call_context", default=None
)


def current_context() -> CallContext | None:
    """The context of the running call, or ``None`` in plain in-process use."""
    return _current.get()


@contextmanager
def call_context(ctx: CallContext) -> Iterator[CallContext]:
    """Run the body with ``ctx`` as the current call context."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def emit_verbose(line: str) -> None:
    """Emit one verbose line: to the caller in a server call, else ``print``."""
    ctx = _current.get()
    if ctx is not None and ctx.on_verbose is not None:
        ctx.on_verbose(line)
    else:
        print(line)


def warn(message: str, category: type[Warning] = UserWarning, stacklevel: int = 2) -> None:
    """Emit a warning: to the caller in a server call, else :func:`warnings.warn`."""
    if not _route(category, message):
        warnings.warn(message, category, stacklevel=stacklevel + 1)


def _route(category: type[Warning], message: str) -> bool:
    """Hand a warning to the running call's ``on_warning``; False when there is none.

    Once per call for each category and message: in-process, Python shows
    a warning once per code location, and a call's step loop could
    otherwise send the same one thousands of times.
    """
    ctx = _current.get()
    if ctx is None or ctx.on_warning is None:
        return False
    key = (category, message)
    if key not in ctx.routed:
        ctx.routed.add(key)
        ctx.on_warning(message, category)
    return True


#: The ``warnings.showwarning`` that :func:`route_warnings_to_callers` replaced.
_fallback_showwarning: Callable[..., None] | None = None


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` while routed: to the running call's caller, if any."""
    if not _route(category, str(message)) and _fallback_showwarning is not None:
        _fallback_showwarning(message, category, filename, lineno, file, line)


def route_warnings_to_callers() -> None:
    """Send every warning raised inside a call to that call's caller, NumPy's included.

    For a server process (process-wide; calling it again changes nothing). The
    core's own warnings already go through :func:`warn`; this catches the
    rest, such as NumPy's ``RuntimeWarning: overflow encountered in matmul``
    on data near the float limits, which would otherwise be printed on the
    server's stderr where the caller never sees it. ``warnings.showwarning``
    is replaced by one that hands a warning raised under a context with
    ``on_warning`` to it, and any other to the previous ``showwarning``.
    An ``always`` filter is appended too: Python shows a warning once per
    code location, and every call must get its own (once per call, as
    :func:`warn` does). Filters already in place (``-W``, ``PYTHONWARNINGS``,
    the ignored ``DeprecationWarning``) keep precedence; the client's own
    filters then decide what is shown.
    """
    global _fallback_showwarning
    if warnings.showwarning is not _show_warning:
        _fallback_showwarning = warnings.showwarning
        warnings.showwarning = _show_warning
    warnings.filterwarnings("always", append=True)  # not added twice


def report_progress(done: int, total: int, phase: str = "fit") -> None:
    """Report progress (``done`` of ``total`` units); a no-op in plain in-process use."""
    ctx = _current.get()
    if ctx is not None and ctx.on_progress is not None:
        ctx.on_progress(done, total, phase)


def check_cancelled() -> None:
    """Raise :class:`CallCancelled` if the current call has been cancelled."""
    ctx = _current.get()
    if ctx is not None and ctx.cancel_event is not None and ctx.cancel_event.is_set():
        raise CallCancelled("The call was cancelled")


def metadata_routing_enabled() -> bool:
    """Whether metadata routing is on for this call (session setting, else global)."""
    ctx = _current.get()
    if ctx is not None and ctx.metadata_routing is not None:
        return ctx.metadata_routing
    return get_config()["enable_metadata_routing"]


def allocate_output(name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """Allocate a per-sample output array (uninitialised) for ``name``.

    ``name`` is the output's role, such as ``"labels_"``, ``"predict"`` or
    ``"transform"``; a server context may place it in a memory-mapped file.
    """
    ctx = _current.get()
    dt = np.dtype(dtype)
    if ctx is not None and ctx.allocate is not None:
        return ctx.allocate(name, tuple(shape), dt)
    return np.empty(shape, dtype=dt)


def outputs_wrapped() -> bool:
    """Whether ``set_output`` containers apply to this call (always in-process)."""
    ctx = _current.get()
    return True if ctx is None else ctx.wrap_outputs
