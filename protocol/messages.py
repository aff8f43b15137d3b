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
from .values import DataRef, pack_header, unpack_header

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
    "get": ({"id": str, "attr": str}, {"out": DataRef}),
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
#: Length bounds of an instance id (SPEC 5.4).
_ID_MAX_CHARS = 128


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


_DEFAULT_LIMITS = Limits()


def message_nbytes(frames: Sequence[Any]) -> int:
    """Total bytes of all frames.

    Raises :class:`MalformedMessage` if a frame is not a buffer.
    """
    try:
        return sum(memoryview(f).nbytes for f in frames)
    except TypeError:
        raise MalformedMessage("every frame must be a byte buffer") from None


def check_frame_limits(frames: Sequence[Any], limits: Limits) -> None:
    """Raise :class:`LimitExceeded` if ``frames`` cross a limit (before any parsing)."""
    if not frames:
        raise MalformedMessage("a message needs at least a header frame")
    if len(frames) > limits.max_frames:
        raise LimitExceeded(
            f"message has {len(frames)} frames, more than max_frames={limits.max_frames}"
        )
    total = message_nbytes(frames)
    header_bytes = memoryview(frames[0]).nbytes
    if header_bytes > limits.max_header_bytes:
        raise LimitExceeded(
            f"header of {header_bytes} bytes exceeds max_header_bytes={limits.max_header_bytes}"
        )
    if total > limits.max_message_bytes:
        raise LimitExceeded(
            f"message of {total} bytes exceeds max_message_bytes={limits.max_message_bytes}"
        )


def encode(header: dict[str, Any]) -> list[Any]:
    """Frames for ``header``: the msgpack header, then each array's buffer (not copied).

    The returned buffers are the caller's C-contiguous arrays themselves. They
    MUST NOT be mutated until ZeroMQ has finished sending them (SPEC 2.3): send
    with ``copy=False`` and, for memory that will change, ``track=True`` and wait
    on the tracker, or pass copies. Raises :class:`~.errors.EncodeError` (or
    :class:`~.errors.DTypeNotAllowed`) for a value with no wire form.
    """
    head, buffers = pack_header(header)
    return [head, *buffers]


def decode(frames: Sequence[Any], limits: Limits | None = None) -> dict[str, Any]:
    """The header map of a message, with arrays as NumPy views of their frames.

    Arrays are read-only and share memory with the frames (no copy); keep the
    frames alive while the arrays are in use. Raises a
    :class:`~.errors.ProtocolError` subclass on any defect, never another exception.
    """
    limits = limits or _DEFAULT_LIMITS
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_request(header: dict[str, Any]) -> str:
    """Check a request header's common and per-op fields; returns its ``op``.

    ``hello`` is accepted whatever its ``v`` (any integer >= 1): its fields are
    frozen across versions so that negotiation itself never depends on a
    version (SPEC 5.1); every other op needs ``v`` in :data:`SUPPORTED_VERSIONS`.
    Whether ``v`` is the version negotiated on this connection is the caller's
    (the server session's) check.

    Raises
    ------
    UnsupportedVersion, UnknownOperation, MalformedMessage
    """
    if not isinstance(header, dict):
        raise MalformedMessage("the header must be a map")
    version = header.get("v")
    if not _is_int(version):
        raise MalformedMessage("field 'v' (protocol version) must be an integer")
    if request_id(header) == 0:
        raise MalformedMessage(f"field 'rid' must be an integer in [1, {_RID_MAX}]")
    op = header.get("op")
    if not isinstance(op, str):
        raise MalformedMessage("field 'op' must be a string")
    if op == "hello":
        if version < 1:
            raise MalformedMessage("field 'v' must be >= 1")
    elif version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(
            f"protocol version {version} is not supported; this peer speaks "
            f"{list(SUPPORTED_VERSIONS)}"
        )
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
    _check_op_fields(op, header)
    return op


def _check_op_fields(op: str, header: dict[str, Any]) -> None:
    """Constraints finer than a field's type (SPEC section 5)."""
    if op == "hello":
        versions = header["versions"]
        if not versions or not all(_is_int(v) and v >= 1 for v in versions):
            raise MalformedMessage("field 'versions' must be a non-empty array of integers >= 1")
    if "id" in OPERATIONS[op][0]:
        if not 1 <= len(header["id"]) <= _ID_MAX_CHARS:
            raise MalformedMessage(f"field 'id' must have 1 to {_ID_MAX_CHARS} characters")
    if op == "call" and "out" in header:
        if not all(isinstance(ref, DataRef) for ref in header["out"].values()):
            raise MalformedMessage("field 'out' must map output names to data references")
    if op == "cancel" and not 1 <= header["target"] <= _RID_MAX:
        raise MalformedMessage(f"field 'target' must be a request id in [1, {_RID_MAX}]")


def negotiate_version(offered: Sequence[Any]) -> int:
    """The protocol version to use with a peer that speaks ``offered``: the highest in common.

    Raises
    ------
    UnsupportedVersion
        No version in common.
    """
    common = {v for v in offered if _is_int(v)} & set(SUPPORTED_VERSIONS)
    if not common:
        raise UnsupportedVersion(
            f"no common protocol version: peer speaks {list(offered)!r}, this peer speaks "
            f"{list(SUPPORTED_VERSIONS)}"
        )
    return max(common)


def reply_kind(header: dict[str, Any]) -> str:
    """Check a server-to-client header (SPEC 2.2); returns its ``k``.

    For clients: raises :class:`MalformedMessage` when the fields a kind needs
    are missing or of the wrong type, and :class:`UnsupportedVersion` when ``v``
    is not an integer this peer speaks.
    """
    if not isinstance(header, dict):
        raise MalformedMessage("the header must be a map")
    version = header.get("v")
    if not _is_int(version):
        raise MalformedMessage("field 'v' (protocol version) must be an integer")
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(f"protocol version {version} is not supported")
    rid = header.get("rid")
    if not _is_int(rid) or not 0 <= rid <= _RID_MAX:
        raise MalformedMessage(f"field 'rid' must be an integer in [0, {_RID_MAX}]")
    if not isinstance(header.get("ep"), str):
        raise MalformedMessage("field 'ep' (server epoch) must be a string")
    kind = header.get("k")
    if kind == KIND_OK:
        if "result" not in header:
            raise MalformedMessage("an ok reply needs field 'result'")
    elif kind == KIND_ERROR:
        error = header.get("error")
        if not (
            isinstance(error, dict)
            and isinstance(error.get("type"), str)
            and isinstance(error.get("message"), str)
            and isinstance(error.get("bases"), list)
            and all(isinstance(b, str) for b in error["bases"])
        ):
            raise MalformedMessage("an error reply needs an error object {type, bases, message}")
    elif kind == KIND_EVENT:
        if not isinstance(header.get("event"), str) or not isinstance(header.get("data"), dict):
            raise MalformedMessage("an event needs fields 'event' (str) and 'data' (map)")
    else:
        raise MalformedMessage(f"field 'k' must be 'ok', 'err' or 'ev', got {kind!r}")
    if "dropped" in header and not (_is_int(header["dropped"]) and header["dropped"] >= 0):
        raise MalformedMessage("field 'dropped' must be a non-negative integer")
    return kind


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
