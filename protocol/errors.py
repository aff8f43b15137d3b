"""Protocol-level errors and the wire form of any error.

Every error that crosses the wire is a map ``{type, bases, message, detail?}``
(``protocol/SPEC.md``, "The error object"). ``bases`` lists the built-in
exception classes the error derives from, so a client can raise something that
is both its own ``RemoteError`` and, say, a ``ValueError`` and an
``AttributeError``.
"""

from __future__ import annotations

import builtins
from typing import Any


class ProtocolError(Exception):
    """Base of every error raised by the codec or by a peer's protocol checks."""


class MalformedMessage(ProtocolError, ValueError):
    """The frames are not a well-formed message (bad msgpack, wrong field types)."""


class UnsupportedVersion(ProtocolError, ValueError):
    """The peer speaks no protocol version this side supports."""


class UnknownOperation(ProtocolError, ValueError):
    """The ``op`` of a request is not one the spec defines."""


class DTypeNotAllowed(ProtocolError, TypeError):
    """An array's dtype is outside the allowlist."""


class ShapeMismatch(ProtocolError, ValueError):
    """An array's declared shape and dtype disagree with its buffer's size."""


class LimitExceeded(ProtocolError, ValueError):
    """A message crosses one of the limits advertised in ``hello``."""


class AuthenticationFailed(ProtocolError, PermissionError):
    """The ``hello`` token is missing or wrong, or a request came before ``hello``."""


class EncodeError(ProtocolError, TypeError):
    """A value has no wire representation (an arbitrary object, a non-string map key)."""


#: Builtin exception classes a wire error may name in ``bases``.
_BUILTIN_EXCEPTIONS: dict[str, type[BaseException]] = {
    name: obj
    for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, Exception)
}


def builtin_bases(exc_type: type[BaseException]) -> list[str]:
    """Names of the built-in exception classes in ``exc_type``'s MRO, most specific first.

    ``Exception`` itself is included when present; ``BaseException`` and
    ``object`` never are.
    """
    return [
        cls.__name__
        for cls in exc_type.__mro__
        if cls.__module__ == "builtins" and cls.__name__ in _BUILTIN_EXCEPTIONS
    ]


def builtin_exception(name: str) -> type[Exception] | None:
    """The built-in exception class called ``name``, or ``None`` if there is none."""
    return _BUILTIN_EXCEPTIONS.get(name)  # type: ignore[return-value]


def _message(exc: BaseException) -> str:
    # str(KeyError("x")) is "'x'": send the bare message, as for every other type.
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        return str(exc.args[0])
    return str(exc)


def error_to_wire(exc: BaseException, detail: str | None = None) -> dict[str, Any]:
    """The wire error object for ``exc``."""
    err: dict[str, Any] = {
        "type": type(exc).__name__,
        "bases": builtin_bases(type(exc)),
        "message": _message(exc),
    }
    if detail:
        err["detail"] = detail
    return err
