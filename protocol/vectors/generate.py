"""Regenerate the golden vectors: ``python protocol/vectors/generate.py``.

Deterministic: no randomness, no clocks; rerunning rewrites identical bytes.
Every valid vector is a complete message (a request, a reply or an event), so
a frontend can push each one through its whole receive path. Values that are
not about a particular operation travel as the ``result`` of an ``ok`` reply.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol import (  # noqa: E402
    ALLOWED_DTYPES,
    DataRef,
    encode,
    error_reply,
    event,
    ok_reply,
    request,
)
from protocol.golden import VECTORS_DIR, dumps, to_json  # noqa: E402

EPOCH = "e4f1c2a9"
SESSION = "5f0c7a3e9b2d48e1a6c3f0b7d9e2a4c1"
ID = "MiniBatchKMeans1a2b3c4d"


def _ok(result: Any, rid: int = 7, dropped: int = 0) -> dict[str, Any]:
    return ok_reply(rid, EPOCH, result, dropped)


def _dtype_arrays() -> dict[str, np.ndarray]:
    """One small array of each allowlisted dtype, holding its edge values; named ``le_f8`` etc."""
    out: dict[str, np.ndarray] = {}
    for code in sorted(ALLOWED_DTYPES):
        dt = np.dtype(code)
        if dt.kind == "b":
            values: list[Any] = [True, False, True]
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            values = [int(info.min), 0, 1, int(info.max)]
        else:
            finfo = np.finfo(dt)
            values = [0.5, -0.0, float(finfo.max), float(finfo.tiny), np.nan, np.inf, -np.inf]
        name = code.replace("<", "le_").replace(">", "be_").replace("|", "")
        out[name] = np.array(values, dtype=dt)
    return out


def valid() -> dict[str, dict[str, Any]]:
    """Name -> header of every valid vector."""
    x22 = np.array([[1.0, 2.0], [3.0, 4.0]])
    vectors: dict[str, dict[str, Any]] = {
        # -- requests, one per op (and the variants worth pinning down)
        "req_hello": request("hello", 1, token="s3cret", versions=[1]),
        "req_hello_client": request(
            "hello",
            1,
            token="s3cret",
            versions=[2, 1],
            client={"name": "skbridge-ts", "version": "0.1.0"},
        ),
        "req_hello_resume": request("hello", 1, token="s3cret", versions=[1], session=SESSION),
        "req_describe": request("describe", 2),
        "req_configure": request("configure", 3, settings={"enable_metadata_routing": True}),
        "req_init": request(
            "init",
            4,
            cls="MiniBatchKMeans",
            id=ID,
            # batch_size absent (default); max_no_improvement nil (disables early stopping)
            opts={"n_clusters": 3, "random_state": 0, "max_no_improvement": None, "tol": 0.0},
        ),
        "req_call_array": request("call", 5, id=ID, method="fit", args={"X": x22}),
        "req_call_arg_nil": request(
            "call", 6, id=ID, method="set_fit_request", args={"sample_weight": None}
        ),
        "req_call_arg_missing": request("call", 6, id=ID, method="set_fit_request", args={}),
        "req_call_dataref": request(
            "call",
            7,
            id=ID,
            method="fit_predict",
            args={"X": DataRef("blobs/X.npy"), "sample_weight": None},
            out={"result": DataRef("out/labels.npy")},
        ),
        "req_call_two_arrays": request(
            "call",
            8,
            id=ID,
            method="partial_fit",
            args={"X": x22, "sample_weight": np.array([0.5, 2.0])},
        ),
        "req_get": request("get", 9, id=ID, attr="cluster_centers_"),
        "req_get_out": request("get", 10, id=ID, attr="labels_", out=DataRef("out/labels_.npy")),
        "req_dispose": request("dispose", 11, id=ID),
        "req_cancel": request("cancel", 12, target=5),
        "req_ping": request("ping", 13),
        "req_bye": request("bye", 14),
        # -- replies
        "reply_ok_nil": _ok(None, rid=4),
        "reply_ok_hello": ok_reply(
            1,
            EPOCH,
            {
                "version": 1,
                "server": {"name": "skbridge", "version": "0.1.0"},
                "epoch": EPOCH,
                "session": SESSION,
                "resumed": False,
                "limits": {
                    "max_header_bytes": 1 << 20,
                    "max_frames": 64,
                    "max_array_bytes": 1 << 30,
                    "max_message_bytes": 2 << 30,
                    "max_instances_per_session": 1000,
                    "max_sessions": 256,
                    "max_inflight_per_session": 256,
                },
                "lease_s": 60.0,
                "heartbeat_s": 10.0,
                "settings": {"enable_metadata_routing": False},
            },
        ),
        "reply_ok_describe": ok_reply(
            2,
            EPOCH,
            {
                "protocol": 1,
                "server": {"name": "skbridge", "version": "0.1.0"},
                "estimators": {
                    "MiniBatchKMeans": {
                        "name": "MiniBatchKMeans",
                        "doc": "Mini-Batch K-Means clustering.",
                        "params": {"n_clusters": 8, "max_no_improvement": 10, "init_size": None},
                        "methods": {
                            "predict": {
                                "name": "predict",
                                "args": ["X"],
                                "required": ["X"],
                                "returns": "array",
                                "per_sample_output": True,
                                "long_running": False,
                            }
                        },
                        "attributes": ["cluster_centers_", "labels_", "inertia_"],
                        "per_sample_attributes": ["labels_"],
                    }
                },
            },
        ),
        "reply_ok_array": _ok(x22, rid=9),
        "reply_ok_scalar": _ok(-1234.5),
        "reply_ok_dataref": _ok(DataRef("out/labels.npy")),
        "reply_ok_dropped": _ok(None, rid=5, dropped=3),
        "reply_ok_ping": ok_reply(13, EPOCH, {"time": 1700000000.25}),
        "reply_ok_cancel": ok_reply(12, EPOCH, {"found": True}),
        "reply_err": error_reply(
            9,
            EPOCH,
            {
                "type": "NotFittedError",
                "bases": ["ValueError", "AttributeError", "Exception"],
                "message": "This MiniBatchKMeans instance is not fitted yet. Call 'fit' "
                "with appropriate arguments before using this estimator.",
            },
        ),
        "reply_err_detail": error_reply(
            5,
            EPOCH,
            {
                "type": "LimitExceeded",
                "bases": ["ValueError", "Exception"],
                "message": "message has 65 frames, more than max_frames=64",
                "detail": "limit max_frames",
            },
        ),
        "reply_err_rid0": error_reply(
            0,
            EPOCH,
            {
                "type": "MalformedMessage",
                "bases": ["ValueError", "Exception"],
                "message": "header is not valid msgpack",
            },
        ),
        # -- events
        "ev_progress": event(5, EPOCH, "progress", {"done": 10, "total": 100, "phase": "fit"}),
        "ev_verbose": event(
            5, EPOCH, "verbose", {"line": "Minibatch step 10/100: mean batch inertia: 0.25"}
        ),
        "ev_warning": event(
            5,
            EPOCH,
            "warning",
            {
                "category": "ConvergenceWarning",
                "bases": ["UserWarning", "Warning"],
                "message": "Number of distinct clusters (2) found smaller than n_clusters (3).",
            },
        ),
        # -- values
        "array_0d": _ok(np.array(3.5)),
        "array_empty_rows": _ok(np.empty((0, 3))),
        "array_empty_1d": _ok(np.empty(0, dtype="<i8")),
        "array_3d": _ok(np.arange(24, dtype="<i4").reshape(2, 3, 4)),
        "strarray_1d": _ok(np.array(["x0", "x1", "größe"], dtype=object)),
        "strarray_2d": _ok(np.array([["a", "b"], ["c", ""]], dtype=object)),
        "strarray_empty": _ok(np.empty(0, dtype=object)),
        "dataref_nested": _ok({"labels": DataRef("out/labels.npy"), "X": DataRef("a/b/X.npy")}),
        "missing_vs_nil": request(
            "init",
            4,
            cls="MiniBatchKMeans",
            id=ID,
            opts={"max_no_improvement": None, "init_size": None, "random_state": None},
        ),
        "floats_special": _ok(
            {
                "nan": float("nan"),
                "inf": float("inf"),
                "ninf": float("-inf"),
                "nzero": -0.0,
                "one": 1.0,
                "tenth": 0.1,
                "big": 1e300,
                "denormal": 5e-324,
                "array": np.array([np.nan, np.inf, -np.inf, -0.0, 1.0]),
            }
        ),
        "nested": _ok(
            {
                "list": [1, [2, [3, {"deep": [None, True, False, "s", 1.5]}]]],
                "empty_map": {},
                "empty_list": [],
                "list16": list(range(16)),
                "map16": {f"k{i:02d}": i for i in range(16)},
                "arrays": {"b": [np.array([1, 2], dtype="<i8")], "a": np.array([True])},
            }
        ),
        "ints": _ok(
            [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, 2**53]
            + [2**63 - 1, 2**63, 2**64 - 1]
            + [-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1]
            + [-(2**53) + 1, -(2**53), -(2**63)]
        ),
        "strings": _ok(
            ["", "ascii", "é", "日本語", "😀", "a" * 31, "a" * 32, "b" * 255, "c" * 256, "\x00"]
        ),
        "bytes": _ok([b"", b"\x00\xff", bytes(range(40))]),
        "key_order": _ok({"b": 1, "a": 2, "B": 3, "aa": 4, "é": 5, "": 6, "z": 7, "Z": 8}),
    }
    for name, arr in _dtype_arrays().items():
        vectors[f"dtype_{name}"] = _ok(arr)
    return vectors


def _ext(code: int, payload: Any) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(payload))


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _call(args: Any) -> dict[str, Any]:
    return {"v": 1, "op": "call", "rid": 5, "id": ID, "method": "fit", "args": args}


def invalid() -> dict[str, tuple[list[bytes], str, str]]:
    """Name -> (frames, expected error type, stage) of every invalid vector."""
    f8 = np.arange(4.0).tobytes()
    arr = _ext(1, [1, "<f8", [2, 2]])
    nested: Any = None
    for _ in range(70):
        nested = [nested]
    return {
        "not_msgpack": ([b"\xc1"], "MalformedMessage", "decode"),
        "truncated": ([_pack(request("ping", 1))[:-1]], "MalformedMessage", "decode"),
        "trailing_bytes": ([_pack(request("ping", 1)) + b"\x00"], "MalformedMessage", "decode"),
        "header_not_map": ([_pack([1, "ping", 1])], "MalformedMessage", "decode"),
        "invalid_utf8": ([b"\x81\xa2op\xa2\xff\xfe"], "MalformedMessage", "decode"),
        "duplicate_key": ([b"\x82\xa1a\x01\xa1a\x02"], "MalformedMessage", "decode"),
        "int_key": ([_pack({1: "x"})], "MalformedMessage", "decode"),
        "bin_key": ([_pack({b"op": "ping"})], "MalformedMessage", "decode"),
        "too_deep": ([_pack({"args": nested})], "LimitExceeded", "decode"),
        "unknown_ext": ([_pack(_call({"X": _ext(9, [])}))], "MalformedMessage", "decode"),
        "ext_garbage": (
            [_pack(_call({"X": msgpack.ExtType(1, b"\xc1")})), f8],
            "MalformedMessage",
            "decode",
        ),
        "dtype_not_allowed": (
            [_pack(_call({"X": _ext(1, [1, "<c16", [2]])})), f8],
            "DTypeNotAllowed",
            "decode",
        ),
        "dtype_float16": (
            [_pack(_call({"X": _ext(1, [1, "<f2", [16]])})), f8],
            "DTypeNotAllowed",
            "decode",
        ),
        "shape_mismatch": (
            [_pack(_call({"X": _ext(1, [1, "<f8", [2, 3]])})), f8],
            "ShapeMismatch",
            "decode",
        ),
        "negative_dim": (
            [_pack(_call({"X": _ext(1, [1, "<f8", [-2, -2]])})), f8],
            "MalformedMessage",
            "decode",
        ),
        "huge_shape": (
            [_pack(_call({"X": _ext(1, [1, "<f8", [0, 2**63, 2**63]])})), b""],
            "LimitExceeded",
            "decode",
        ),
        "frame_index_zero": (
            [_pack(_call({"X": _ext(1, [0, "<f8", [2, 2]])})), f8],
            "MalformedMessage",
            "decode",
        ),
        "frame_index_out_of_range": (
            [_pack(_call({"X": _ext(1, [2, "<f8", [2, 2]])})), f8],
            "MalformedMessage",
            "decode",
        ),
        "frame_index_negative": (
            [_pack(_call({"X": _ext(1, [-1, "<f8", [2, 2]])})), f8],
            "MalformedMessage",
            "decode",
        ),
        "duplicate_frame_ref": (
            [_pack(_call({"X": arr, "Y": arr})), f8],
            "MalformedMessage",
            "decode",
        ),
        "unreferenced_frame": (
            [_pack(_call({"X": arr})), f8, b"\x00"],
            "MalformedMessage",
            "decode",
        ),
        "strarray_count": (
            [_pack({"v": 1, "k": "ok", "rid": 1, "ep": EPOCH, "result": _ext(3, [[3], ["a"]])})],
            "ShapeMismatch",
            "decode",
        ),
        "dataref_not_map": (
            [_pack(_call({"X": _ext(2, "x.npy")}))],
            "MalformedMessage",
            "decode",
        ),
        "unknown_op": ([_pack(request("frobnicate", 1))], "UnknownOperation", "validate"),
        "wrong_version": (
            [_pack({"v": 99, "op": "ping", "rid": 1})],
            "UnsupportedVersion",
            "validate",
        ),
        "rid_zero": ([_pack({"v": 1, "op": "ping", "rid": 0})], "MalformedMessage", "validate"),
        "rid_bool": ([_pack({"v": 1, "op": "ping", "rid": True})], "MalformedMessage", "validate"),
        "missing_field": (
            [_pack(request("init", 1, id=ID, opts={}))],
            "MalformedMessage",
            "validate",
        ),
        "wrong_field_type": ([_pack(request("dispose", 1, id=17))], "MalformedMessage", "validate"),
        "cancel_target_bool": (
            [_pack(request("cancel", 1, target=True))],
            "MalformedMessage",
            "validate",
        ),
        "hello_versions_empty": (
            [_pack(request("hello", 1, token="t", versions=[]))],
            "MalformedMessage",
            "validate",
        ),
    }


def _clear(directory: Path) -> None:
    for marker in ("decoded.json", "expect.json"):
        for path in directory.glob(f"*/{marker}"):
            shutil.rmtree(path.parent)


def main() -> None:
    """Write every vector (removing stale ones) and ``index.json``."""
    _clear(VECTORS_DIR)
    (VECTORS_DIR / "invalid").mkdir(exist_ok=True)
    _clear(VECTORS_DIR / "invalid")
    index: dict[str, Any] = {"valid": {}, "invalid": {}}
    for name, header in valid().items():
        frames = encode(header)
        directory = VECTORS_DIR / name
        directory.mkdir()
        for i, frame in enumerate(frames):
            (directory / f"frame{i}.bin").write_bytes(memoryview(frame).tobytes())
        (directory / "decoded.json").write_text(dumps(to_json(header)), encoding="utf-8")
        index["valid"][name] = {"frames": len(frames)}
    for name, (frames, error, stage) in invalid().items():
        directory = VECTORS_DIR / "invalid" / name
        directory.mkdir()
        for i, frame in enumerate(frames):
            (directory / f"frame{i}.bin").write_bytes(frame)
        expect = {"error": error, "stage": stage}
        (directory / "expect.json").write_text(dumps(expect), encoding="utf-8")
        index["invalid"][name] = {"frames": len(frames), **expect}
    (VECTORS_DIR / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(index['valid'])} valid and {len(index['invalid'])} invalid vectors")


if __name__ == "__main__":
    main()
