"""Values on the wire: msgpack with array buffers carried as separate frames.

An array never enters the msgpack header. It is replaced there by an extension
value that names a buffer frame by index and gives its dtype and shape; the
array's bytes travel as that frame, unchanged, and come back as a NumPy array
viewing the received buffer. See ``protocol/SPEC.md`` ("Values").

Extension types:

* ``1`` ndarray: payload ``msgpack([frame_index, dtype, shape])``
* ``2`` data reference: payload ``msgpack({"path": str})``
* ``3`` string array: payload ``msgpack([shape, [str, ...]])`` (row-major)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .errors import DTypeNotAllowed, EncodeError, LimitExceeded, MalformedMessage, ShapeMismatch

EXT_NDARRAY = 1
EXT_DATAREF = 2
EXT_STRARRAY = 3

#: dtype strings (NumPy's ``dtype.str``) allowed for array frames.
ALLOWED_DTYPES: frozenset[str] = frozenset(
    ["|b1", "|i1", "|u1"]
    + [f"{order}{kind}{size}" for order in "<>" for kind in "iu" for size in (2, 4, 8)]
    + [f"{order}f{size}" for order in "<>" for size in (4, 8)]
)

_MAX_NDIM = 32
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


@dataclass(frozen=True)
class DataRef:
    """A ``.npy`` file under the server's data directory, standing in for an array.

    Attributes
    ----------
    path : str
        Path relative to the server's data directory, ``/``-separated.
    """

    path: str


def _array_ext(arr: np.ndarray, buffers: list[Any]) -> msgpack.ExtType:
    if arr.dtype.kind in "OUS":
        flat = arr.reshape(-1).tolist()
        if not all(isinstance(s, str) for s in flat):
            raise EncodeError(f"arrays of dtype {arr.dtype} must hold only strings to be sent")
        payload = msgpack.packb([list(arr.shape), flat], use_bin_type=True)
        return msgpack.ExtType(EXT_STRARRAY, payload)
    dtype = arr.dtype.str
    if arr.dtype.kind == "b":
        dtype = "|b1"
    if dtype not in ALLOWED_DTYPES:
        raise DTypeNotAllowed(f"dtype {arr.dtype} is not in the protocol's allowlist")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    buffers.append(arr)
    payload = msgpack.packb([len(buffers), dtype, list(arr.shape)], use_bin_type=True)
    return msgpack.ExtType(EXT_NDARRAY, payload)


def to_wire(value: Any, buffers: list[Any]) -> Any:
    """Turn ``value`` into plain msgpack-able data, moving arrays into ``buffers``.

    Parameters
    ----------
    value : any
        None, bool, int, float, str, bytes, list/tuple, dict with str keys,
        NumPy scalars and arrays, :class:`DataRef`, nested freely.
    buffers : list
        Receives each array (C-contiguous, not copied when already so); an
        array's frame index is its position in this list plus one (frame 0 is
        the header).

    Returns
    -------
    Plain data with map keys sorted (the canonical order) and arrays replaced
    by extension values.
    """
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise EncodeError(f"integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, np.ndarray):
        return _array_ext(value, buffers)
    if isinstance(value, dict):
        out = {}
        for key in sorted(value):
            if not isinstance(key, str):
                raise EncodeError(f"map keys must be strings, got {type(key).__name__}")
            out[key] = to_wire(value[key], buffers)
        return out
    if isinstance(value, (list, tuple)):
        return [to_wire(v, buffers) for v in value]
    if isinstance(value, np.generic):
        return to_wire(value.item(), buffers)
    if isinstance(value, DataRef):
        return msgpack.ExtType(EXT_DATAREF, msgpack.packb({"path": value.path}))
    raise EncodeError(f"values of type {type(value).__name__} cannot be sent")


def _unpack_payload(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise MalformedMessage(f"malformed extension payload: {exc}") from None


def _checked_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM:
        raise MalformedMessage("an array's shape must be a list of at most 32 integers")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise MalformedMessage("an array's shape must hold non-negative integers")
    return tuple(shape)


class _ArrayDecoder:
    """The msgpack ``ext_hook`` for one message: views frames as arrays."""

    def __init__(self, frames: Sequence[Any], max_array_bytes: int) -> None:
        self.frames = frames
        self.used = [False] * len(frames)
        self.max_array_bytes = max_array_bytes

    def __call__(self, code: int, data: bytes) -> Any:
        if code == EXT_NDARRAY:
            return self._array(_unpack_payload(data))
        if code == EXT_DATAREF:
            payload = _unpack_payload(data)
            if not isinstance(payload, dict) or not isinstance(payload.get("path"), str):
                raise MalformedMessage("a data reference must be a map with a string 'path'")
            return DataRef(payload["path"])
        if code == EXT_STRARRAY:
            payload = _unpack_payload(data)
            if not isinstance(payload, list) or len(payload) != 2:
                raise MalformedMessage("a string array must be [shape, strings]")
            shape = _checked_shape(payload[0])
            items = payload[1]
            if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
                raise MalformedMessage("a string array's items must be strings")
            if len(items) != math.prod(shape):
                raise ShapeMismatch("a string array's shape does not match its item count")
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            return arr.reshape(shape)
        raise MalformedMessage(f"unknown extension type {code}")

    def _array(self, payload: Any) -> np.ndarray:
        if not isinstance(payload, list) or len(payload) != 3:
            raise MalformedMessage("an array must be [frame_index, dtype, shape]")
        index, dtype, shape = payload
        if isinstance(index, bool) or not isinstance(index, int):
            raise MalformedMessage("an array's frame index must be an integer")
        if not 1 <= index < len(self.frames):
            raise MalformedMessage(f"array frame index {index} is out of range")
        if self.used[index]:
            raise MalformedMessage(f"frame {index} is referenced twice")
        if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
            raise DTypeNotAllowed(f"dtype {dtype!r} is not in the protocol's allowlist")
        shape = _checked_shape(shape)
        dt = np.dtype(dtype)
        buf = memoryview(self.frames[index])
        expected = math.prod(shape) * dt.itemsize
        if buf.nbytes != expected:
            raise ShapeMismatch(
                f"array frame {index} holds {buf.nbytes} bytes but dtype {dtype} and "
                f"shape {list(shape)} need {expected}"
            )
        if expected > self.max_array_bytes:
            raise LimitExceeded(
                f"array of {expected} bytes exceeds max_array_bytes={self.max_array_bytes}"
            )
        self.used[index] = True
        if expected == 0:
            return np.empty(shape, dtype=dt)
        return np.frombuffer(buf, dtype=dt).reshape(shape)


def unpack_header(frames: Sequence[Any], max_array_bytes: int) -> Any:
    """Decode frame 0 of ``frames``, turning array references into views of the others.

    Raises
    ------
    MalformedMessage, DTypeNotAllowed, ShapeMismatch, LimitExceeded
        On any defect; every frame after the header must be referenced exactly once.
    """
    decoder = _ArrayDecoder(frames, max_array_bytes)
    try:
        value = msgpack.unpackb(
            memoryview(frames[0]), raw=False, strict_map_key=True, ext_hook=decoder
        )
    except (MalformedMessage, DTypeNotAllowed, ShapeMismatch, LimitExceeded):
        raise
    except Exception as exc:
        raise MalformedMessage(f"header is not valid msgpack: {exc}") from None
    if not all(decoder.used[1:]):
        unused = [i for i, used in enumerate(decoder.used) if i and not used]
        raise MalformedMessage(f"frames {unused} are not referenced by the header")
    return value


def pack_header(value: Any) -> tuple[bytes, list[Any]]:
    """Encode ``value`` canonically; returns the header bytes and the array buffers."""
    buffers: list[Any] = []
    plain = to_wire(value, buffers)
    return msgpack.packb(plain, use_bin_type=True), buffers
