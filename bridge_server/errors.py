"""Errors the server itself raises (``protocol/SPEC.md`` section 7).

Each class derives from the built-in exception named in the spec's table, so
:func:`protocol.error_to_wire` sends the right ``bases`` and a client can catch
it as that built-in. Errors of the codec (``MalformedMessage``,
``LimitExceeded``, ...) live in :mod:`protocol.errors`; ``CallCancelled`` is
the core's.
"""

from __future__ import annotations


class ServerError(Exception):
    """Base of the errors raised by the server (not by the codec or the core)."""


class UnknownEstimator(ServerError, LookupError):
    """``init`` named a class that ``describe`` does not list."""


class UnknownInstance(ServerError, LookupError):
    """The id names no instance of this session."""


class InstanceExists(ServerError, ValueError):
    """``init`` of an id already in use in this session."""


class MethodNotAllowed(ServerError, AttributeError):
    """The method is not in the estimator's schema."""


class AttributeNotAllowed(ServerError, AttributeError):
    """The attribute is not in the estimator's schema."""


class InvalidArguments(ServerError, TypeError):
    """Argument names the method does not take, or a required one missing."""


class DataRefError(ServerError, ValueError):
    """A data reference was refused (bad path, bad file, existing output)."""


class ServerShuttingDown(ServerError, RuntimeError):
    """The server is stopping and takes no new work."""
