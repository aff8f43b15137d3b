"""The mapping from wire errors and warnings to client classes (no server needed)."""

from __future__ import annotations

import pickle  # noqa: F401  (documents that remote errors need not pickle)

import pytest

from client_py import errors
from client_py.errors import (
    BridgeError,
    CallCancelled,
    ConvergenceWarning,
    DataConversionWarning,
    InvalidParameterError,
    LimitExceeded,
    NotFittedError,
    RemoteError,
    remote_error,
    remote_error_class,
    warning_class,
)


def wire(type_: str, bases: list[str], message: str = "boom") -> dict[str, object]:
    return {"type": type_, "bases": bases, "message": message}


def test_not_fitted_is_value_and_attribute_error() -> None:
    exc = remote_error(wire("NotFittedError", ["ValueError", "AttributeError", "Exception"]))
    assert type(exc) is NotFittedError
    assert isinstance(exc, ValueError) and isinstance(exc, AttributeError)
    assert isinstance(exc, RemoteError) and isinstance(exc, BridgeError)
    assert str(exc) == "boom" and exc.message == "boom"
    assert exc.remote_type == "NotFittedError"


def test_invalid_parameter_error() -> None:
    exc = remote_error(wire("InvalidParameterError", ["ValueError", "TypeError", "Exception"]))
    assert type(exc) is InvalidParameterError
    assert isinstance(exc, ValueError) and isinstance(exc, TypeError)


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("MalformedMessage", ValueError),
        ("UnsupportedVersion", ValueError),
        ("UnknownOperation", ValueError),
        ("DTypeNotAllowed", TypeError),
        ("ShapeMismatch", ValueError),
        ("LimitExceeded", ValueError),
        ("AuthenticationFailed", PermissionError),
        ("UnknownEstimator", LookupError),
        ("UnknownInstance", LookupError),
        ("InstanceExists", ValueError),
        ("MethodNotAllowed", AttributeError),
        ("AttributeNotAllowed", AttributeError),
        ("InvalidArguments", TypeError),
        ("DataRefError", ValueError),
        ("CallCancelled", Exception),
        ("ServerShuttingDown", RuntimeError),
    ],
)
def test_spec_error_types(name: str, builtin: type[Exception]) -> None:
    exc = remote_error(wire(name, [builtin.__name__]))
    assert isinstance(exc, builtin) and isinstance(exc, RemoteError)
    assert type(exc).__name__ == name or name == "LimitExceeded"
    assert getattr(errors, name) is not None


def test_remote_limit_exceeded_is_the_local_family() -> None:
    exc = remote_error(wire("LimitExceeded", ["ValueError", "Exception"]))
    assert isinstance(exc, LimitExceeded) and isinstance(exc, RemoteError)


def test_call_cancelled() -> None:
    assert type(remote_error(wire("CallCancelled", ["Exception"]))) is CallCancelled


def test_builtin_and_unknown_types_are_built_and_cached() -> None:
    exc = remote_error(wire("ValueError", ["ValueError", "Exception"], "bad value"))
    assert isinstance(exc, ValueError) and isinstance(exc, RemoteError)
    assert type(exc).__name__ == "ValueError" and str(exc) == "bad value"
    custom = remote_error(wire("WeirdError", ["KeyError", "LookupError", "Exception"], "k"))
    assert isinstance(custom, KeyError) and isinstance(custom, LookupError)
    assert str(custom) == "k"  # not KeyError's quoted form
    assert remote_error_class("WeirdError", ["KeyError", "LookupError", "Exception"]) is type(
        custom
    )
    # Known class with an extra built-in base: a subclass of both.
    extra = remote_error(wire("NotFittedError", ["ValueError", "AttributeError", "KeyError"]))
    assert isinstance(extra, NotFittedError) and isinstance(extra, KeyError)


def test_awkward_bases_never_fail() -> None:
    for bases in (
        ["LookupError", "KeyError"],  # least specific first
        ["OSError", "UnicodeError", "ValueError"],  # layout conflict
        ["NoSuchBuiltin"],
        [],
    ):
        exc = remote_error(wire("Odd", bases))
        assert isinstance(exc, RemoteError)
    assert isinstance(remote_error("garbage"), RemoteError)
    assert isinstance(remote_error({"type": "not an identifier!", "bases": []}), RemoteError)


def test_detail_kept() -> None:
    exc = remote_error({**wire("ValueError", ["ValueError"]), "detail": "more"})
    assert exc.detail == "more"


def test_warning_classes() -> None:
    assert warning_class("RuntimeWarning", ["RuntimeWarning", "Warning"]) is RuntimeWarning
    assert warning_class("FutureWarning") is FutureWarning
    assert warning_class("ConvergenceWarning", ["UserWarning", "Warning"]) is ConvergenceWarning
    assert warning_class("DataConversionWarning") is DataConversionWarning
    assert issubclass(ConvergenceWarning, UserWarning)
    odd = warning_class("OddWarning", ["DeprecationWarning", "Warning"])
    assert issubclass(odd, DeprecationWarning) and odd.__name__ == "OddWarning"
    assert warning_class("OddWarning", ["DeprecationWarning", "Warning"]) is odd
    assert issubclass(warning_class("Nameless", []), UserWarning)
