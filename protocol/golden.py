"""Golden test vectors: the JSON convention for decoded values, and loading.

Each vector under ``protocol/vectors/<name>/`` holds the frames of one message
(``frame0.bin`` is the header, ``frame1.bin``... the array buffers) and
``decoded.json``, the decoded header written with the convention below
(``protocol/vectors/README.md`` is its language-neutral description). A vector
under ``protocol/vectors/invalid/<name>/`` holds frames a decoder must refuse
and ``expect.json``: ``{"error": <ProtocolError type name>, "stage": "decode" |
"validate"}``.

JSON convention (plain JSON stands for itself: null, true/false, str, list, object):

* ``int``: a JSON integer when ``|n| <= 2**53 - 1``, else ``{"$int": "<decimal>"}``;
* ``float``: always ``{"$float": "<repr>"}`` (``"1.0"``, ``"-0.0"``, ``"nan"``,
  ``"inf"``, ``"-inf"``) so that no JSON parser can confuse it with an int;
* bytes: ``{"$bin": "<lowercase hex>"}``;
* ext 1 array: ``{"$ndarray": {"dtype": "<f8", "shape": [2, 2], "data": [...]}}``,
  ``data`` the elements flat in row-major order: bools as true/false, integers
  as JSON integers (decimal strings beyond ``2**53 - 1``), reals as JSON numbers
  or ``"nan"``, ``"inf"``, ``"-inf"``;
* ext 2 data reference: ``{"$dataref": "<path>"}``;
* ext 3 string array: ``{"$strarray": {"shape": [...], "data": [str, ...]}}``;
* ext 4 table: ``{"$table": {"columns": [...], "data": <$ndarray>, "index": <value>}}``
  (``index`` absent when the table has none).

An object with exactly one key that is one of these tags is always a tag.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .values import DataRef, Table

#: Where the committed vectors live.
VECTORS_DIR = Path(__file__).parent / "vectors"

_SAFE_INT = 2**53 - 1
_TAGS = frozenset(["$int", "$float", "$bin", "$ndarray", "$dataref", "$strarray", "$table"])


def _element_to_json(x: Any) -> Any:
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x if abs(x) <= _SAFE_INT else str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _element_from_json(x: Any, kind: str) -> Any:
    if kind == "b":
        return bool(x)
    if kind in "iu":
        return int(x)
    return float(x)


def _ndarray_to_json(arr: np.ndarray) -> dict[str, Any]:
    if arr.dtype == object:
        return {"$strarray": {"shape": list(arr.shape), "data": arr.reshape(-1).tolist()}}
    data = [_element_to_json(x) for x in arr.reshape(-1).tolist()]
    return {"$ndarray": {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": data}}


def to_json(value: Any) -> Any:
    """The JSON-convention form of a decoded (or to-be-encoded) value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _SAFE_INT else {"$int": str(value)}
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, DataRef):
        return {"$dataref": value.path}
    if isinstance(value, Table):
        table: dict[str, Any] = {"columns": list(value.columns), "data": to_json(value.data)}
        if value.index is not None:
            table["index"] = to_json(value.index)
        return {"$table": table}
    if isinstance(value, np.ndarray):
        return _ndarray_to_json(value)
    raise TypeError(f"no JSON convention for {type(value).__name__}")


def from_json(doc: Any) -> Any:
    """The Python value a JSON-convention document describes (inverse of :func:`to_json`)."""
    if isinstance(doc, list):
        return [from_json(v) for v in doc]
    if not isinstance(doc, dict):
        return doc
    if len(doc) == 1 and next(iter(doc)) in _TAGS:
        tag, body = next(iter(doc.items()))
        if tag == "$int":
            return int(body)
        if tag == "$float":
            return float(body)
        if tag == "$bin":
            return bytes.fromhex(body)
        if tag == "$dataref":
            return DataRef(body)
        if tag == "$strarray":
            arr = np.empty(len(body["data"]), dtype=object)
            arr[:] = body["data"]
            return arr.reshape(body["shape"])
        if tag == "$table":
            index = from_json(body["index"]) if "index" in body else None
            return Table(columns=list(body["columns"]), data=from_json(body["data"]), index=index)
        dtype = np.dtype(body["dtype"])
        data = [_element_from_json(x, dtype.kind) for x in body["data"]]
        return np.array(data, dtype=dtype).reshape(body["shape"])
    return {k: from_json(v) for k, v in doc.items()}


def dumps(doc: Any) -> str:
    """Canonical text of a JSON document (sorted keys, one space indent, UTF-8, final newline)."""
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def read_frames(directory: Path) -> list[bytes]:
    """``frame0.bin``, ``frame1.bin``, ... of a vector directory, in order."""
    frames = []
    while (path := directory / f"frame{len(frames)}.bin").exists():
        frames.append(path.read_bytes())
    return frames


def valid_vectors() -> list[Path]:
    """Directories of the valid vectors, sorted by name."""
    return sorted(p.parent for p in VECTORS_DIR.glob("*/decoded.json"))


def invalid_vectors() -> list[Path]:
    """Directories of the invalid vectors, sorted by name."""
    return sorted(p.parent for p in (VECTORS_DIR / "invalid").glob("*/expect.json"))
