"""Everything the client raises or warns, and the mapping from wire errors to classes.

One base class, :class:`BridgeError`, and four families under it:

* :class:`RemoteError` -- the server raised it. Built from the wire error
  object (``protocol/SPEC.md`` section 7) by :func:`remote_error`: the class is
  also a subclass of every built-in named in the error's ``bases``, so
  ``except ValueError`` catches a remote ``ValueError`` exactly as it would
  catch scikit-learn's own.
* :class:`BridgeConnectionError` -- the server cannot be reached, died,
  restarted, or the bridge was closed.
* :class:`LimitExceeded` -- a message would cross a limit the server
  advertised; refused locally before anything is sent.
* :class:`LifecycleError` -- an estimator used out of order (before ``init``,
  after ``dispose``); a ``RuntimeError`` with scikit-learn-ts's messages.

Warnings from the server are re-emitted under the class :func:`warning_class`
picks for the category name and bases the server sent.
"""

from __future__ import annotations

import builtins
import threading
from typing import Any

from protocol import builtin_exception

__all__ = [
    "AttributeNotAllowed",
    "AuthenticationFailed",
    "BridgeConnectionError",
    "BridgeError",
    "CallCancelled",
    "CallTimeout",
    "ConvergenceWarning",
    "DTypeNotAllowed",
    "DataConversionWarning",
    "DataRefError",
    "IncompatibleServer",
    "InstanceExists",
    "InvalidArguments",
    "InvalidParameterError",
    "LifecycleError",
    "LimitExceeded",
    "MalformedMessage",
    "MethodNotAllowed",
    "NotFittedError",
    "RemoteError",
    "RemoteLimitExceeded",
    "ServerShuttingDown",
    "ShapeMismatch",
    "UnknownEstimator",
    "UnknownInstance",
    "UnknownOperation",
    "UnsupportedVersion",
    "remote_error",
    "remote_error_class",
    "warning_class",
]


class BridgeError(Exception):
    """Base class of every error the client raises on its own account or the server's."""


# -- errors the server raised -------------------------------------------------------


class RemoteError(BridgeError):
    """An error the server raised; ``str()`` is the server's message, verbatim.

    Attributes
    ----------
    message : str
        The server's message.
    remote_type : str
        The error's class name on the server (``"NotFittedError"``, ...).
    bases : tuple of str
        The built-in classes the server said it derives from.
    detail : str or None
        Extra context the server sent, if any.
    """

    message: str = ""
    remote_type: str = ""
    bases: tuple[str, ...] = ()
    detail: str | None = None

    def __str__(self) -> str:
        # Not str(args): KeyError and OSError subclasses would decorate the message.
        return self.message


class NotFittedError(RemoteError, ValueError, AttributeError):
    """The estimator was used before it was fitted (scikit-learn's NotFittedError)."""


class InvalidParameterError(RemoteError, ValueError, TypeError):
    """A parameter or argument failed its constraint (scikit-learn's InvalidParameterError)."""


class CallCancelled(RemoteError):
    """The call was cancelled on the server (cancel, dispose, bye, lease end, shutdown)."""


class MalformedMessage(RemoteError, ValueError):
    """The server could not parse a message this client sent."""


class UnsupportedVersion(RemoteError, ValueError):
    """The server and the client share no protocol version."""


class UnknownOperation(RemoteError, ValueError):
    """The server does not know the requested operation."""


class DTypeNotAllowed(RemoteError, TypeError):
    """An array's dtype is outside the protocol's allowlist."""


class ShapeMismatch(RemoteError, ValueError):
    """An array's buffer length disagrees with its dtype and shape."""


class AuthenticationFailed(RemoteError, PermissionError):
    """The token was refused, or a request came before ``hello``."""


class UnknownEstimator(RemoteError, LookupError):
    """The server has no estimator class of that name."""


class UnknownInstance(RemoteError, LookupError):
    """The server has no instance of that id in this session."""


class InstanceExists(RemoteError, ValueError):
    """An instance of that id already exists in this session."""


class MethodNotAllowed(RemoteError, AttributeError):
    """The method is not in the estimator's schema."""


class AttributeNotAllowed(RemoteError, AttributeError):
    """The attribute is not in the estimator's schema."""


class InvalidArguments(RemoteError, TypeError):
    """An argument the method does not take, or a required one missing."""


class DataRefError(RemoteError, ValueError):
    """The server refused a data reference."""


class ServerShuttingDown(RemoteError, RuntimeError):
    """The server is stopping and takes no new work."""


# -- errors of the connection, of limits, of the lifecycle -------------------------


class BridgeConnectionError(BridgeError, ConnectionError):
    """The server is unreachable, died, restarted, dropped the session, or the bridge is closed."""


class IncompatibleServer(BridgeError, RuntimeError):
    """The server at the other end speaks no protocol version this client speaks."""


class CallTimeout(BridgeError, TimeoutError):
    """A call took longer than its timeout; it was cancelled on the server."""


class LimitExceeded(BridgeError, ValueError):
    """A message would cross one of the server's limits (or the server said one was crossed)."""


class RemoteLimitExceeded(RemoteError, LimitExceeded):
    """The server refused a message that crossed one of its limits."""


class LifecycleError(BridgeError, RuntimeError):
    """An estimator was used out of order: before ``init()`` or after ``dispose()``."""


# -- warnings ---------------------------------------------------------------------


class ConvergenceWarning(UserWarning):
    """The algorithm did not converge as expected (scikit-learn's ConvergenceWarning)."""


class DataConversionWarning(UserWarning):
    """Input data was converted to another dtype or layout (scikit-learn's)."""


# -- mapping ------------------------------------------------------------------------

#: Server error types with a class of their own, by wire name.
_KNOWN_ERRORS: dict[str, type[RemoteError]] = {
    cls.__name__: cls
    for cls in (
        NotFittedError,
        InvalidParameterError,
        CallCancelled,
        MalformedMessage,
        UnsupportedVersion,
        UnknownOperation,
        DTypeNotAllowed,
        ShapeMismatch,
        AuthenticationFailed,
        UnknownEstimator,
        UnknownInstance,
        InstanceExists,
        MethodNotAllowed,
        AttributeNotAllowed,
        InvalidArguments,
        DataRefError,
        ServerShuttingDown,
    )
}
_KNOWN_ERRORS["LimitExceeded"] = RemoteLimitExceeded

_KNOWN_WARNINGS: dict[str, type[Warning]] = {
    "ConvergenceWarning": ConvergenceWarning,
    "DataConversionWarning": DataConversionWarning,
}

_error_classes: dict[tuple[str, tuple[str, ...]], type[RemoteError]] = {}
_warning_classes: dict[tuple[str, tuple[str, ...]], type[Warning]] = {}
_cache_lock = threading.Lock()


def _most_derived(classes: list[type]) -> list[type]:
    """``classes`` without duplicates and without any class another one already derives from."""
    unique = list(dict.fromkeys(classes))
    return [c for c in unique if not any(o is not c and issubclass(o, c) for o in unique)]


def _make_class(name: str, root: type, extra: list[type], doc: str) -> type:
    """``class name(root, *extra)``, dropping extras until the MRO and layouts agree."""
    extra = [c for c in _most_derived(extra) if not issubclass(root, c)]
    while True:
        try:
            return type(name, (root, *extra), {"__doc__": doc, "__module__": __name__})
        except TypeError:  # layout conflict or inconsistent MRO: keep the most specific
            if not extra:
                raise
            extra = extra[:-1]


def remote_error_class(type_name: str, bases: list[str] | tuple[str, ...]) -> type[RemoteError]:
    """The class to raise for a server error named ``type_name`` deriving from ``bases``.

    Known names map to the classes above; when ``bases`` names built-ins the
    known class lacks, or the name is unknown, a subclass is made on the fly
    that derives from them too. Classes are cached by ``(type_name, bases)``.
    """
    key = (type_name, tuple(bases))
    cls = _error_classes.get(key)
    if cls is not None:
        return cls
    with _cache_lock:
        cls = _error_classes.get(key)
        if cls is None:
            root = _KNOWN_ERRORS.get(type_name, RemoteError)
            wanted = [b for b in map(builtin_exception, bases) if b is not None]
            wanted = [b for b in wanted if b is not Exception]
            if all(issubclass(root, b) for b in wanted) and root is not RemoteError:
                cls = root
            else:
                name = type_name if type_name.isidentifier() else "RemoteError"
                doc = f"The server's {type_name}."
                cls = _make_class(name, root, wanted, doc)  # type: ignore[assignment]
            _error_classes[key] = cls  # type: ignore[assignment]
    return cls  # type: ignore[return-value]


def remote_error(error: Any) -> RemoteError:
    """The exception for a wire error object ``{type, bases, message, detail?}``."""
    if not isinstance(error, dict):
        error = {}
    type_name = error.get("type")
    type_name = type_name if isinstance(type_name, str) and type_name else "RemoteError"
    bases = error.get("bases")
    bases = tuple(b for b in bases if isinstance(b, str)) if isinstance(bases, list) else ()
    message = error.get("message")
    message = message if isinstance(message, str) else ""
    detail = error.get("detail")
    exc = remote_error_class(type_name, bases)(message)
    exc.message = message
    exc.remote_type = type_name
    exc.bases = bases
    exc.detail = detail if isinstance(detail, str) else None
    return exc


def warning_class(category: str, bases: list[str] | tuple[str, ...] = ()) -> type[Warning]:
    """The warning class for a server warning named ``category`` deriving from ``bases``.

    Built-in categories map to themselves, scikit-learn's ``ConvergenceWarning``
    and ``DataConversionWarning`` to this module's; any other name becomes a
    subclass (cached) of the first built-in warning class in ``bases``
    (``UserWarning`` when none is named).
    """
    builtin = getattr(builtins, category, None)
    if isinstance(builtin, type) and issubclass(builtin, Warning):
        return builtin
    known = _KNOWN_WARNINGS.get(category)
    if known is not None:
        return known
    key = (category, tuple(bases))
    with _cache_lock:
        cls = _warning_classes.get(key)
        if cls is None:
            parents: list[type] = []
            for name in bases:
                base = getattr(builtins, name, None)
                if isinstance(base, type) and issubclass(base, Warning):
                    parents.append(base)
            parents = _most_derived(parents) or [UserWarning]
            name = category if category.isidentifier() else "RemoteWarning"
            cls = _make_class(name, parents[0], parents[1:], f"The server's {category}.")
            _warning_classes[key] = cls
    return cls
