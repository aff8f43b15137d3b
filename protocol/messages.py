"""Messages: a header frame plus array frames, and the fields each kind carries.

A message is a list of frames: frame 0 is a msgpack map (the header); frames 1..n
are raw array buffers the header refers to (:mod:`.values`). Requests go from a
client (ZeroMQ DEALER) to the server (ROUTER); replies, errors and events go
back, each tied to a request by its ``rid``. ``protocol/SPEC.md`` is the
normative description; this module is its Python form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import LimitExceeded, MalformedMessage, UnknownOperation, UnsupportedVersion
from .values import pack_header, unpack_header

#: The protocol version this code speaks.
PROTOCOL_VERSION = 1
#: Every version this code can speak, newest first.
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

#: Request operations and their fields: name -> (required fields, optional fields).
#: Every request also carries ``v`` (int), ``op`` (str) and ``rid`` (int).
OPERATIONS: dict[str, tuple[dict[str, type | tuple[type, ...]], dict[str, Any]]] = {
    "hello": ({"token": str, "versions": list}, {"client": dict, "session": (str, type(None))}),
    "describe": ({}, {}),
    "configure": ({"settings": dict}, {}),
    "init": ({"cls": str, "id": str, "opts": dict}, {}),
    "call": ({"id": str, "method": str, "args": dict}, {"out": dict}),
    "get": ({"id": str, "attr": str}, {"out": dict}),
    "dispose": ({"id": str}, {}),
    "cancel": ({"target": int}, {}),
    "ping": ({}, {}),
    "bye": ({}, {}),
}

#: Reply kinds (``k`` field of a server-to-client header).
KIND_OK = "ok"
KIND_ERROR = "err"
KIND_EVENT = "ev"

#: Event names (``event`` field of an ``ev`` header).
EVENTS = ("progress", "verbose", "warning")

_RID_MAX = 2**63 - 1


@dataclass(frozen=True)
class Limits:
    """What a server accepts; advertised in the ``hello`` reply.

    All sizes are in bytes.
    """

    max_header_bytes: int = 1 << 20
    max_frames: int = 64
    max_array_bytes: int = 1 << 30
    max_message_bytes: int = 2 << 30
    max_instances_per_session: int = 1000
    max_sessions: int = 256
    max_inflight_per_session: int = 256

    def to_wire(self) -> dict[str, int]:
        """Plain-data form for the ``hello`` reply."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Limits:
        """Read a ``hello`` reply's ``limits`` map; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in known})


def message_nbytes(frames: Sequence[Any]) -> int:
    """Total bytes of all frames."""
    return sum(memoryview(f).nbytes for f in frames)


def check_frame_limits(frames: Sequence[Any], limits: Limits) -> None:
    """Raise :class:`LimitExceeded` if ``frames`` cross a limit (before any parsing)."""
    if not frames:
        raise MalformedMessage("a message needs at least a header frame")
    if len(frames) > limits.max_frames:
        raise LimitExceeded(
            f"message has {len(frames)} frames, more than max_frames={limits.max_frames}"
        )
    header_bytes = memoryview(frames[0]).nbytes
    if header_bytes > limits.max_header_bytes:
        raise LimitExceeded(
            f"header of {header_bytes} bytes exceeds max_header_bytes={limits.max_header_bytes}"
        )
    total = message_nbytes(frames)
    if total > limits.max_message_bytes:
        raise LimitExceeded(
            f"message of {total} bytes exceeds max_message_bytes={limits.max_message_bytes}"
        )


def encode(header: dict[str, Any]) -> list[Any]:
    """Frames for ``header``: the msgpack header, then each array's buffer (not copied)."""
    head, buffers = pack_header(header)
    return [head, *buffers]


def decode(frames: Sequence[Any], limits: Limits | None = None) -> dict[str, Any]:
    """The header map of a message, with arrays as NumPy views of their frames.

    Raises a :class:`~.errors.ProtocolError` subclass on any defect.
    """
    limits = limits or Limits()
    check_frame_limits(frames, limits)
    header = unpack_header(frames, limits.max_array_bytes)
    if not isinstance(header, dict):
        raise MalformedMessage("the header must be a map")
    return header


def _check_type(name: str, value: Any, expected: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) and expected is int:
        raise MalformedMessage(f"field {name!r} must be an integer, not a boolean")
    if not isinstance(value, expected):
        names = (
            " or ".join(t.__name__ for t in expected)
            if isinstance(expected, tuple)
            else expected.__name__
        )
        raise MalformedMessage(f"field {name!r} must be of type {names}")


def request_id(header: dict[str, Any]) -> int:
    """The header's ``rid`` if it is a valid request id, else 0 (unanswerable by id)."""
    rid = header.get("rid")
    if isinstance(rid, int) and not isinstance(rid, bool) and 0 < rid <= _RID_MAX:
        return rid
    return 0


def validate_request(header: dict[str, Any]) -> str:
    """Check a request header's common and per-op fields; returns its ``op``.

    Raises
    ------
    UnsupportedVersion, UnknownOperation, MalformedMessage
    """
    version = header.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise MalformedMessage("field 'v' (protocol version) must be an integer")
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(
            f"protocol version {version} is not supported; this peer speaks "
            f"{list(SUPPORTED_VERSIONS)}"
        )
    if request_id(header) == 0:
        raise MalformedMessage(f"field 'rid' must be an integer in [1, {_RID_MAX}]")
    op = header.get("op")
    if not isinstance(op, str):
        raise MalformedMessage("field 'op' must be a string")
    if op not in OPERATIONS:
        raise UnknownOperation(f"unknown operation {op!r}; known: {sorted(OPERATIONS)}")
    required, optional = OPERATIONS[op]
    for name, expected in required.items():
        if name not in header:
            raise MalformedMessage(f"operation {op!r} needs field {name!r}")
        _check_type(name, header[name], expected)
    for name, expected in optional.items():
        if name in header:
            _check_type(name, header[name], expected)
    return op


def request(op: str, rid: int, **fields_: Any) -> dict[str, Any]:
    """A request header (fields that are ``None`` are still sent as nil)."""
    return {"v": PROTOCOL_VERSION, "op": op, "rid": rid, **fields_}


def ok_reply(rid: int, epoch: str, result: Any, dropped: int = 0) -> dict[str, Any]:
    """A success reply; ``dropped`` counts this request's events lost to back-pressure."""
    header: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "k": KIND_OK,
        "rid": rid,
        "ep": epoch,
        "result": result,
    }
    if dropped:
        header["dropped"] = dropped
    return header


def error_reply(rid: int, epoch: str, error: dict[str, Any]) -> dict[str, Any]:
    """An error reply; ``error`` is a wire error object (:func:`~.errors.error_to_wire`)."""
    return {"v": PROTOCOL_VERSION, "k": KIND_ERROR, "rid": rid, "ep": epoch, "error": error}


def event(rid: int, epoch: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    """An event tied to request ``rid`` (``progress``, ``verbose`` or ``warning``)."""
    return {
        "v": PROTOCOL_VERSION,
        "k": KIND_EVENT,
        "rid": rid,
        "ep": epoch,
        "event": name,
        "data": data,
    }
