"""Hostile input: every kind gets an error reply, and the next valid request succeeds."""

from __future__ import annotations

import math
import os

import msgpack
import numpy as np
import pytest
from server_wire import Wire

from protocol import OPERATIONS, encode, request

#: Values of every msgpack type, to put where a field expects another one.
WRONG_VALUES: list[object] = [
    None, True, -1, 0, 2**64 - 1, 1.5, math.nan, "", "s" * 200, b"\x00",
    [], [1, "a"], {}, {"k": 1}, np.zeros(2),
]  # fmt: skip

#: Names that must never reach getattr.
DUNDERS = [
    "__class__", "__dict__", "__init__", "__reduce__", "__reduce_ex__", "__getattribute__",
    "__setattr__", "__del__", "__globals__", "__subclasses__", "_schema", "_py", "__module__",
    "fit.__globals__", "cluster_centers_.__class__", "", "fit ", "FIT", "\x00fit",
]  # fmt: skip

VALID = {
    "hello": {"token": "t", "versions": [1]},
    "describe": {},
    "configure": {"settings": {"enable_metadata_routing": False}},
    "init": {"cls": "MiniBatchKMeans", "id": "victim", "opts": {}},
    "call": {"id": "victim", "method": "get_params", "args": {}},
    "get": {"id": "victim", "attr": "n_clusters"},
    "dispose": {"id": "nope"},
    "cancel": {"target": 1},
    "ping": {},
    "bye": {},
}


@pytest.fixture
def w(server):
    with Wire(server.endpoint, server.token) as wire:
        wire.init("victim", n_clusters=2, random_state=0)
        yield wire
        wire.ok("bye")


def healthy(w: Wire) -> None:
    """The connection's session still works: a ping and a real fit."""
    assert w.ok("ping")["time"] > 0
    X = np.random.RandomState(0).rand(40, 2)
    assert w.call("victim", "fit", X=X) is None
    assert np.asarray(w.get("victim", "cluster_centers_")).shape == (2, 2)


def answer(w: Wire, frames: list) -> dict:
    """Send raw frames; the one reply (events skipped)."""
    w.send_frames(frames)
    while True:
        msg = w.recv_one(5)
        if msg["k"] != "ev":
            return msg


def test_random_bytes_and_truncated_msgpack(w):
    rng = np.random.RandomState(0)
    golden = encode(request("call", 77, id="victim", method="fit", args={"X": np.ones((4, 2))}))
    head = bytes(golden[0])
    cases = [[rng.bytes(n)] for n in (0, 1, 7, 64, 1000)]
    cases += [[head[:cut], golden[1]] for cut in range(0, len(head), 7)]
    cases += [[head, bytes(golden[1])[:cut]] for cut in (0, 1, 31)]
    cases += [[head], [head, golden[1], b""], [rng.bytes(20), rng.bytes(20)]]
    for frames in cases:
        assert answer(w, frames)["k"] == "err", frames
    healthy(w)


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_wrong_type_in_every_header_field(server, w, op):
    session = w.hello_result["session"]
    fields = {"v": 1, "op": op, "rid": 0, **VALID[op]}
    if op == "hello":
        fields.update(token=server.token, session=session)
    types = set()
    for name in fields:
        for value in WRONG_VALUES:
            header = dict(fields, rid=900)
            header[name] = value
            if type(value) is type(fields[name]) and name not in ("rid", "v"):
                continue  # not a wrong type
            try:
                frames = encode(header)
            except Exception:
                continue
            reply = answer(w, frames)
            if reply["k"] == "ok":
                if op == "hello" and name == "v" and isinstance(value, int) and value >= 1:
                    continue  # SPEC 5.1: hello is accepted whatever its version
                # A value the field may legitimately take (e.g. a map for settings' values).
                assert (
                    name not in ("v", "op", "rid")
                    and op in ("configure", "call", "init")
                    or (op == "hello" and name == "session" and value is None)
                ), (
                    name,
                    value,
                )
                continue
            types.add(reply["error"]["type"])
    assert types <= {
        "MalformedMessage", "UnsupportedVersion", "UnknownOperation", "AuthenticationFailed",
        "InvalidArguments", "UnknownEstimator", "UnknownInstance", "MethodNotAllowed",
        "AttributeNotAllowed", "TypeError", "InstanceExists", "DataRefError", "LimitExceeded",
    }, types  # fmt: skip
    # A hello that passed (e.g. with session nil) may have moved the connection to a
    # new session: come back to the one that owns the instance.
    assert w.hello(server.token, session)["resumed"]
    healthy(w)


def test_unknown_ops_methods_attributes_and_dunders(w):
    for op in ["", "HELLO", "eval", "exec", "__import__", "call ", "x" * 1000]:
        reply = answer(w, encode({"v": 1, "op": op, "rid": 5}))
        assert reply["error"]["type"] == "UnknownOperation"
    for name in DUNDERS + ["score_samples", "_labels_inertia", "set_params", "__call__"]:
        reply, _ = w.request("call", id="victim", method=name, args={})
        assert reply["error"]["type"] == "MethodNotAllowed", (name, reply)
        reply, _ = w.request("get", id="victim", attr=name)
        assert reply["error"]["type"] == "AttributeNotAllowed", (name, reply)
    for name in ["__init__", "X.__class__"]:
        reply, _ = w.request("call", id="victim", method="fit", args={name: 1})
        assert reply["error"]["type"] == "InvalidArguments"
        reply, _ = w.request("init", cls="MiniBatchKMeans", id="v2", opts={name: 1})
        assert reply["error"]["type"] == "TypeError"
    for cls in ["__builtins__", "object", "os.system", "MiniBatchKMeans.__class__"]:
        reply, _ = w.request("init", cls=cls, id="v3", opts={})
        assert reply["error"]["type"] == "UnknownEstimator"
    healthy(w)


def test_ids_of_other_sessions(server, w):
    with Wire(server.endpoint, server.token) as thief:
        for op, fields in [
            ("call", {"id": "victim", "method": "fit", "args": {"X": np.zeros((5, 2))}}),
            ("get", {"id": "victim", "attr": "cluster_centers_"}),
            ("dispose", {"id": "victim"}),
        ]:
            reply, _ = thief.request(op, **fields)
            assert reply["error"]["type"] == "UnknownInstance"
        # Cancelling another connection's request ids finds nothing.
        assert all(not thief.ok("cancel", target=t)["found"] for t in range(1, 20))
        # A session token is a secret: guessing one opens a new session instead.
        assert thief.hello(server.token, "guessed-token")["resumed"] is False
        thief.ok("bye")
    healthy(w)


def _array_msg(rid: int, payload: list, buffers: list[bytes]) -> list:
    header = {"v": 1, "op": "call", "rid": rid, "id": "victim", "method": "fit",
              "args": {"X": msgpack.ExtType(1, msgpack.packb(payload))}}  # fmt: skip
    return [msgpack.packb(header), *buffers]


def test_arrays_whose_declared_shape_or_dtype_disagree_with_the_buffer(w):
    cases = {
        "ShapeMismatch": [
            ([1, "<f8", [4, 2]], [b"\x00" * 8]),
            ([1, "<f8", [2, 2]], [b"\x00" * 33]),
            ([1, "<f4", [2, 2]], [b"\x00" * 32]),
            ([1, "|b1", [3]], [b"\x00" * 4]),
        ],
        "DTypeNotAllowed": [
            ([1, "<c16", [1]], [b"\x00" * 16]),
            ([1, "|O", [1]], [b"\x00" * 8]),
            ([1, "<U3", [1]], [b"\x00" * 12]),
            ([1, "=f8", [1]], [b"\x00" * 8]),
        ],
        "MalformedMessage": [
            ([0, "<f8", [1]], [b"\x00" * 8]),
            ([2, "<f8", [1]], [b"\x00" * 8]),
            ([1, "<f8", [-1]], [b"\x00" * 8]),
            ([1, "<f8", [1.0]], [b"\x00" * 8]),
            ([True, "<f8", [1]], [b"\x00" * 8]),
            ([1, "<f8", [1] * 33], [b"\x00" * 8]),
            ([1, "<f8"], [b"\x00" * 8]),
            ([1, "<f8", [1]], [b"\x00" * 8, b"extra"]),
        ],
        "LimitExceeded": [([1, "<f8", [2**40, 2**40]], [b""]), ([1, "<f8", [0, 2**62]], [b""])],
    }
    for expected, items in cases.items():
        for payload, buffers in items:
            reply = answer(w, _array_msg(31, payload, buffers))
            assert reply["error"]["type"] == expected, (payload, reply["error"])
            assert reply["rid"] == 31
    healthy(w)


@pytest.mark.parametrize(
    "X,needle",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), "infinity"),
        (np.array([[1.0, -np.inf], [2.0, 3.0]]), "infinity"),
        (np.zeros((0, 2)), "0 sample"),
        (np.zeros((5, 0)), "0 feature"),
        (np.zeros(0), "Expected 2D array"),
        (np.zeros((2, 2, 2)), "dim"),
        (np.array(3.0), "Expected 2D array"),
        (np.array([[True, False]] * 3), None),
        (np.full((3, 2), np.finfo(np.float64).max), None),
    ],
)
def test_nan_inf_empty_and_zero_feature_arrays(w, X, needle):
    reply, _ = w.request("call", id="victim", method="fit", args={"X": X})
    if needle is None:
        assert reply["k"] in ("ok", "err")  # either is fine; the server must answer
    else:
        assert reply["k"] == "err" and needle in reply["error"]["message"], reply
        assert "ValueError" in reply["error"]["bases"]
    healthy(w)


def test_hostile_input_without_hello_is_refused(server):
    with Wire(server.endpoint) as w:
        for frames in ([os.urandom(32)], encode(request("init", 3, **VALID["init"]))):
            assert answer(w, frames)["k"] == "err"
        reply, _ = w.request("call", **VALID["call"])
        assert reply["error"]["type"] == "AuthenticationFailed"
        w.hello(server.token)
        assert w.ok("ping")["time"] > 0
        w.ok("bye")
