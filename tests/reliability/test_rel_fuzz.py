"""Fuzz a real server with malformed multipart messages; a real client must not notice.

Each hypothesis example is a batch of messages sent on a raw DEALER, either
after a valid ``hello`` or without one. Every message must be answered with
exactly one reply (hostile input is never silently swallowed by a DEALER
peer, which always has a routing identity), and after each batch a
``client_py`` bridge of another session fits the reference data to the same
centres as before the fuzzing began.
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import LiveClient, rss_mib
from server_wire import Wire

from client_py.launcher import launch_server
from protocol import OPERATIONS, golden

_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)

_DUNDERS = ["__class__", "__dict__", "__init__", "__reduce__", "__globals__", "_schema"]
_GOLDEN = [golden.read_frames(d) for d in golden.valid_vectors() if d.name.startswith("req_")] + [
    golden.read_frames(d) for d in golden.invalid_vectors()
]

_any_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=8,
)  # fmt: skip


class Target:
    """The fuzzed server, its victim session, and the reference client."""

    def __init__(self) -> None:
        self.srv = launch_server()
        self.victim = Wire(self.srv.endpoint, self.srv.token)
        self.victim.init("victim", n_clusters=2)
        self.client = LiveClient(self.srv.endpoint, self.srv.token)
        self.expected = self.client.centers()
        self.rss0 = rss_mib(self.srv.pid)

    def close(self) -> None:
        self.client.close()
        self.victim.close()
        self.srv.kill()


@pytest.fixture(scope="module")
def target():
    t = Target()
    yield t
    assert t.srv.alive()
    assert rss_mib(t.srv.pid) - t.rss0 < 100  # no leak worth the name
    t.close()


def _throw(target: Target, batch: list[list[bytes]], hello: bool) -> None:
    with Wire(target.srv.endpoint, target.srv.token if hello else None) as w:
        for frames in batch:
            w.send_frames([bytes(f) for f in frames])
            while True:
                msg = w.recv_one(10)  # exactly one reply per message; events skipped
                if msg["k"] != "ev":
                    break
            assert msg["k"] in ("ok", "err")
            if msg["k"] == "err":
                assert msg["error"]["type"] and isinstance(msg["error"]["message"], str)
        if w.hello_result is not None:
            w.send("bye")
    np.testing.assert_allclose(target.client.centers(), target.expected)


# -- strategies ------------------------------------------------------------------------

random_frames = st.lists(st.binary(max_size=200), min_size=1, max_size=5)


@st.composite
def mutated_golden(draw):
    frames = [bytearray(f) for f in draw(st.sampled_from(_GOLDEN))]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(frames) - 1))
        f = frames[i]
        action = draw(st.sampled_from(["flip", "cut", "insert", "dup", "drop"]))
        if action == "flip" and f:
            j = draw(st.integers(0, len(f) - 1))
            f[j] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del f[draw(st.integers(0, len(f))) :]
        elif action == "insert":
            j = draw(st.integers(0, len(f)))
            f[j:j] = draw(st.binary(min_size=1, max_size=8))
        elif action == "dup":
            frames.append(bytearray(f))
        elif action == "drop" and len(frames) > 1:
            frames.pop(i)
    return frames


_VALID = {
    "describe": {}, "ping": {}, "cancel": {"target": 3},
    "configure": {"settings": {"enable_metadata_routing": False}},
    "init": {"cls": "MiniBatchKMeans", "id": "fz", "opts": {}},
    "call": {"id": "victim", "method": "get_params", "args": {}},
    "get": {"id": "victim", "attr": "n_clusters"},
    "dispose": {"id": "fz"},
}  # fmt: skip


@st.composite
def wrong_field(draw):
    op = draw(st.sampled_from(sorted(_VALID)))
    header = {"v": 1, "op": op, "rid": draw(st.integers(1, 1000)), **_VALID[op]}
    name = draw(st.sampled_from(sorted(header) + ["args", "out", "token"]))
    header[name] = draw(_any_value)
    return [msgpack.packb(header, use_bin_type=True)]


@st.composite
def bogus_array(draw):
    payload = [
        draw(st.integers(-2, 4) | st.booleans() | st.none()),
        draw(st.sampled_from(["<f8", "<f4", "|b1", "<i8", ">u2", "<c16", "|O", "", "<f8x"])),
        draw(st.lists(st.integers(-1, 2**40), max_size=4) | _any_value),
    ]
    header = {
        "v": 1,
        "op": "call",
        "rid": 7,
        "id": "victim",
        "method": "fit",
        "args": {"X": msgpack.ExtType(draw(st.integers(0, 5)), msgpack.packb(payload))},
    }
    buffers = draw(st.lists(st.binary(max_size=64), max_size=3))
    return [msgpack.packb(header), *buffers]  # fmt: skip


@st.composite
def names_and_ids(draw):
    op = draw(st.sampled_from(["call", "get", "dispose", "init"]))
    name = draw(st.sampled_from(_DUNDERS) | st.text(max_size=12))
    iid = draw(st.sampled_from(["victim", "other", "fz"]) | st.text(min_size=1, max_size=8))
    fields = {
        "call": {"id": iid, "method": name, "args": {}},
        "get": {"id": iid, "attr": name},
        "dispose": {"id": iid},
        "init": {"cls": name, "id": iid, "opts": {}},
    }[op]
    return [msgpack.packb({"v": 1, "op": op, "rid": 9, **fields})]


_messages = st.one_of(random_frames, mutated_golden(), wrong_field(), bogus_array(),
                      names_and_ids())  # fmt: skip


@_SETTINGS
@given(batch=st.lists(_messages, min_size=1, max_size=6))
def test_fuzz_after_hello(target, batch):
    _throw(target, batch, hello=True)


@_SETTINGS
@given(batch=st.lists(_messages, min_size=1, max_size=6))
def test_fuzz_without_hello(target, batch):
    _throw(target, batch, hello=False)


def test_every_op_is_known():
    assert set(_VALID) | {"hello", "bye"} == set(OPERATIONS)
