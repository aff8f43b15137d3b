"""Values on the wire: msgpack with array buffers carried as separate frames.

An array never enters the msgpack header. It is replaced there by an extension
value that names a buffer frame by index and gives its dtype and shape; the
array's bytes travel as that frame, unchanged, and come back as a NumPy array
viewing the received buffer. See ``protocol/SPEC.md`` ("Values").

Extension types:

* ``1`` ndarray: payload ``msgpack([frame_index, dtype, shape])``
* ``2`` data reference: payload ``msgpack({"path": str})``
* ``3`` string array: payload ``msgpack([shape, [str, ...]])`` (row-major)

Buffer ownership (SPEC section 2.3). Encoding does not copy a C-contiguous
array: the array object itself goes into the frame list and ZeroMQ reads its
memory while (possibly after) ``send`` returns. Callers MUST NOT mutate an
array passed to :func:`pack_header` / ``encode`` until the send has completed
(``copy=False`` with ``track=True`` and ``tracker.wait()``, or the message is
known to be gone); a sender of live state that will keep changing (an
estimator's fitted attribute, a reused output buffer) sends a copy. Decoded
arrays are read-only views of the received frames; copy one to mutate it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .errors import (
    DTypeNotAllowed,
    EncodeError,
    LimitExceeded,
    MalformedMessage,
    ProtocolError,
    ShapeMismatch,
)

EXT_NDARRAY = 1
EXT_DATAREF = 2
EXT_STRARRAY = 3
EXT_TABLE = 4

#: dtype strings (NumPy's ``dtype.str``) allowed for array frames.
ALLOWED_DTYPES: frozenset[str] = frozenset(
    ["|b1", "|i1", "|u1"]
    + [f"{order}{kind}{size}" for order in "<>" for kind in "iu" for size in (2, 4, 8)]
    + [f"{order}f{size}" for order in "<>" for size in (4, 8)]
)

_MAX_NDIM = 32
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
#: Deepest nesting of containers (maps, lists) a header may have; the header
#: map itself is level 1. Deeper input is refused before it can exhaust a
#: recursive consumer's stack.
MAX_DEPTH = 64
#: Cap on the element count of a string array (they travel inside the header,
#: so ``max_header_bytes`` bounds them in practice; this only keeps shape
#: arithmetic sane).
_MAX_STRARRAY_ITEMS = 2**31


@dataclass(frozen=True)
class DataRef:
    """A ``.npy`` file under the server's data directory, standing in for an array.

    Attributes
    ----------
    path : str
        Path relative to the server's data directory, ``/``-separated.
    """

    path: str


@dataclass(frozen=True, eq=False)
class Table:
    """A 2-D array with string column names: the wire form of a data frame.

    It carries what scikit-learn reads from a pandas DataFrame (``columns`` for
    ``feature_names_in_``, the values for the math) and acts enough like one
    for that: ``columns``, ``shape``, ``len()`` and ``__array__``.

    Attributes
    ----------
    columns : list of str
        One name per column of ``data``.
    data : ndarray of shape (n_samples, n_features)
        The values, a numeric array of the allowlist.
    index : ndarray of shape (n_samples,), optional
        Row labels (numbers or strings), or None.
    """

    columns: list[str]
    data: np.ndarray
    index: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 2:
            raise ValueError(f"a table's data must be 2-D, got {self.data.ndim} dimension(s)")
        if len(self.columns) != self.data.shape[1]:
            raise ValueError(
                f"a table has {len(self.columns)} column names for {self.data.shape[1]} columns"
            )
        if not all(isinstance(c, str) for c in self.columns):
            raise ValueError("a table's column names must be strings")
        if self.index is not None and self.index.shape != (self.data.shape[0],):
            raise ValueError(
                f"a table's index must have shape ({len(self)},), got {self.index.shape}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        """``data.shape``."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """``data.dtype``."""
        return self.data.dtype

    def __len__(self) -> int:
        return self.data.shape[0]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if dtype is None or np.dtype(dtype) == self.data.dtype:
            return self.data.copy() if copy else self.data
        return self.data.astype(dtype)

    def __dataframe__(self, nan_as_null: bool = False, allow_copy: bool = True) -> _TableColumns:
        """The part of the DataFrame interchange protocol scikit-learn reads: column names.

        scikit-learn's ``_get_feature_names`` takes an object's feature names
        from ``X.__dataframe__().column_names()``; a consumer of the full
        interchange protocol should use ``np.asarray(table)`` instead.
        """
        return _TableColumns(self)


class _TableColumns:
    """Names and counts of a :class:`Table` (a subset of the interchange protocol)."""

    __slots__ = ("_table",)

    def __init__(self, table: Table) -> None:
        self._table = table

    def column_names(self) -> list[str]:
        """The column names, in order."""
        return list(self._table.columns)

    def num_columns(self) -> int:
        """Number of columns."""
        return self._table.data.shape[1]

    def num_rows(self) -> int:
        """Number of rows."""
        return self._table.data.shape[0]


def _table_ext(table: Table, buffers: list[Any], depth: int) -> msgpack.ExtType:
    content: dict[str, Any] = {"columns": list(table.columns), "data": table.data}
    if table.index is not None:
        content["index"] = table.index
    payload = msgpack.packb(to_wire(content, buffers, depth + 1), use_bin_type=True)
    return msgpack.ExtType(EXT_TABLE, payload)


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


#: Types that go to msgpack unchanged: checked by exact type first (the common case,
#: and the per-message cost of every small call), subclasses by isinstance after.
_LEAF_TYPES = frozenset({type(None), bool, str, bytes})


def _dict_to_wire(value: dict[Any, Any], buffers: list[Any], depth: int) -> dict[str, Any]:
    """A plain dict's wire form: keys checked then sorted, scalar values passed as they are."""
    for key in value:
        if type(key) is not str and not isinstance(key, str):
            raise EncodeError(f"map keys must be strings, got {type(key).__name__}")
    out = {}
    for key in sorted(value):
        item = value[key]
        kind = type(item)
        if kind in _LEAF_TYPES or (kind is int and _INT_MIN <= item <= _INT_MAX):
            out[key] = item
        else:
            out[key] = to_wire(item, buffers, depth + 1)
    return out


def to_wire(value: Any, buffers: list[Any], _depth: int = 1) -> Any:
    """Turn ``value`` into plain msgpack-able data, moving arrays into ``buffers``.

    Parameters
    ----------
    value : any
        None, bool, int, float, str, bytes, list/tuple, dict with str keys,
        NumPy scalars and arrays, :class:`DataRef`, :class:`Table`, nested up to
        :data:`MAX_DEPTH` levels.
    buffers : list
        Receives each array (C-contiguous, not copied when already so); an
        array's frame index is its position in this list plus one (frame 0 is
        the header). The caller must not mutate those arrays until they are sent.

    Returns
    -------
    Plain data with map keys sorted (the canonical order), every NaN the
    canonical quiet NaN, and arrays replaced by extension values.

    Raises
    ------
    EncodeError, DTypeNotAllowed
        A value with no wire form (non-string key, integer outside 64 bits,
        nesting deeper than :data:`MAX_DEPTH`, unknown type).
    """
    kind = type(value)
    if kind in _LEAF_TYPES:
        return value
    if kind is dict and _depth <= MAX_DEPTH:
        return _dict_to_wire(value, buffers, _depth)
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise EncodeError(f"integer {value} does not fit in 64 bits")
        return int(value)
    if isinstance(value, float):
        # Every NaN goes out as 0x7ff8000000000000 so equal values give equal bytes.
        return math.nan if value != value else float(value)
    if isinstance(value, np.ndarray):
        return _array_ext(value, buffers)
    if isinstance(value, (dict, list, tuple)) and _depth > MAX_DEPTH:
        raise EncodeError(f"values nest deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise EncodeError(f"map keys must be strings, got {type(key).__name__}")
        return {key: to_wire(value[key], buffers, _depth + 1) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [to_wire(v, buffers, _depth + 1) for v in value]
    if isinstance(value, np.generic):
        return to_wire(value.item(), buffers, _depth)
    if isinstance(value, DataRef):
        if not isinstance(value.path, str):
            raise EncodeError("a data reference's path must be a string")
        return msgpack.ExtType(EXT_DATAREF, msgpack.packb({"path": value.path}, use_bin_type=True))
    if isinstance(value, Table):
        return _table_ext(value, buffers, _depth)
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


def nominal_size(shape: Sequence[int]) -> int:
    """Product of ``shape`` with each 0 counted as 1.

    A shape such as ``[0, 2**62, 2**62]`` describes zero elements yet cannot be
    allocated (NumPy refuses it); bounding this product by the array limit keeps
    every accepted shape sane without rejecting ordinary empty arrays.
    """
    size = 1
    for dim in shape:
        size *= dim or 1
    return size


class _ArrayDecoder:
    """The msgpack ``ext_hook`` for one message: views frames as arrays."""

    def __init__(self, frames: Sequence[Any], max_array_bytes: int) -> None:
        self.frames = frames
        self.used = [False] * len(frames)
        self.max_array_bytes = max_array_bytes
        # Only a table payload is decoded with this hook again; a table inside a
        # table would let a small header recurse through msgpack's C unpacker
        # (tens of KiB of C stack per level) until the process segfaults.
        self.in_table = False

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
            if nominal_size(shape) > _MAX_STRARRAY_ITEMS:
                raise LimitExceeded(f"string array shape {list(shape)} is too large")
            if len(items) != math.prod(shape):
                raise ShapeMismatch("a string array's shape does not match its item count")
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            return arr.reshape(shape)
        if code == EXT_TABLE:
            return self._table(data)
        raise MalformedMessage(f"unknown extension type {code}")

    def _table(self, data: bytes) -> Table:
        if self.in_table:
            raise MalformedMessage("a table cannot contain a table")
        self.in_table = True  # no reset needed on error: the whole decode fails
        try:
            # Nested arrays refer to this message's frames: decode with this same hook.
            payload = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                ext_hook=self,
                object_pairs_hook=_str_keyed_map,
            )
        except (MalformedMessage, DTypeNotAllowed, ShapeMismatch, LimitExceeded):
            raise
        except Exception as exc:
            raise MalformedMessage(f"malformed extension payload: {exc}") from None
        self.in_table = False
        if not isinstance(payload, dict) or not {"columns", "data"} <= payload.keys():
            raise MalformedMessage("a table must be a map with 'columns' and 'data'")
        if not payload.keys() <= {"columns", "data", "index"}:
            raise MalformedMessage("a table's map may hold only 'columns', 'data' and 'index'")
        columns, values, index = payload["columns"], payload["data"], payload.get("index")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise MalformedMessage("a table's columns must be an array of strings")
        if not isinstance(values, np.ndarray) or values.dtype == object or values.ndim != 2:
            raise MalformedMessage("a table's data must be a 2-D array (ext 1)")
        if len(columns) != values.shape[1]:
            raise ShapeMismatch(
                f"a table has {len(columns)} column names for {values.shape[1]} columns"
            )
        if index is not None and (
            not isinstance(index, np.ndarray) or index.shape != (values.shape[0],)
        ):
            raise ShapeMismatch("a table's index must be a 1-D array with one item per row")
        return Table(columns=columns, data=values, index=index)

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
        nominal = nominal_size(shape) * dt.itemsize
        if nominal > self.max_array_bytes:
            raise LimitExceeded(
                f"array of shape {list(shape)} and dtype {dtype} ({nominal} bytes, zero "
                f"dimensions counted as 1) exceeds max_array_bytes={self.max_array_bytes}"
            )
        buf = _byte_view(self.frames[index])
        expected = math.prod(shape) * dt.itemsize
        if buf.nbytes != expected:
            raise ShapeMismatch(
                f"array frame {index} holds {buf.nbytes} bytes but dtype {dtype} and "
                f"shape {list(shape)} need {expected}"
            )
        self.used[index] = True
        if expected == 0:
            return np.empty(shape, dtype=dt)
        # A view of the received frame: no copy, read-only when the frame is.
        return np.frombuffer(buf, dtype=dt).reshape(shape)


def _byte_view(frame: Any) -> memoryview:
    """``frame``'s bytes as a flat memoryview (no copy)."""
    try:
        view = memoryview(frame)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"a frame is not a contiguous byte buffer: {exc}") from None
    return view


def _str_keyed_map(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """msgpack ``object_pairs_hook``: only str keys, each at most once."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MalformedMessage("a map has a duplicate key")
    for key in out:
        if type(key) is not str:
            raise MalformedMessage(f"map keys must be strings, got {type(key).__name__}")
    return out


_TIMESTAMP = msgpack.Timestamp


def _check_tree(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse containers nested deeper than ``max_depth`` and msgpack timestamps.

    Iterative, so that checking deep input cannot itself exhaust the stack.
    msgpack decodes extension type -1 (timestamp) itself, bypassing ``ext_hook``;
    it is not a wire value of this protocol.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise LimitExceeded(f"values nest deeper than {max_depth} levels")
        # The decoder builds exact dicts and lists (object_pairs_hook, use_list):
        # exact type checks are enough, and cheap on every message.
        children = item.values() if type(item) is dict else item
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is _TIMESTAMP:
                raise MalformedMessage("unknown extension type -1 (msgpack timestamp)")


def unpack_header(frames: Sequence[Any], max_array_bytes: int) -> Any:
    """Decode frame 0 of ``frames``, turning array references into views of the others.

    Arrays come back as read-only NumPy views of their frames (no copy), so a
    frame must stay alive and unchanged as long as its array is used.

    Raises
    ------
    MalformedMessage, DTypeNotAllowed, ShapeMismatch, LimitExceeded
        On any defect (a :class:`ProtocolError` subclass, never anything else):
        every frame after the header must be referenced exactly once, map keys
        must be distinct strings, nesting is at most :data:`MAX_DEPTH` levels.
    """
    if not frames:
        raise MalformedMessage("a message needs at least a header frame")
    decoder = _ArrayDecoder(frames, max_array_bytes)
    try:
        value = msgpack.unpackb(
            _byte_view(frames[0]),
            raw=False,
            strict_map_key=True,
            ext_hook=decoder,
            object_pairs_hook=_str_keyed_map,
            use_list=True,
        )
    except ProtocolError:
        raise
    except Exception as exc:
        raise MalformedMessage(f"header is not valid msgpack: {exc!r}") from None
    if type(value) is dict or type(value) is list:
        _check_tree(value)
    if not all(decoder.used[1:]):
        unused = [i for i, used in enumerate(decoder.used) if i and not used]
        raise MalformedMessage(f"frames {unused} are not referenced by the header")
    return value


def pack_header(value: Any) -> tuple[bytes, list[Any]]:
    """Encode ``value`` canonically; returns the header bytes and the array buffers.

    The buffers are the caller's arrays themselves when C-contiguous (else
    C-ordered copies): do not mutate them until the message has been sent.

    Raises
    ------
    EncodeError, DTypeNotAllowed
        ``value`` has no wire form; never another exception.
    """
    buffers: list[Any] = []
    try:
        plain = to_wire(value, buffers)
        return msgpack.packb(plain, use_bin_type=True), buffers
    except ProtocolError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # e.g. a str holding a lone surrogate (not UTF-8 encodable).
        raise EncodeError(f"value cannot be encoded: {exc!r}") from None
