"""Limits give LimitExceeded and leave the server serving; malformed input never hurts it."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from server_testdata import small_X
from server_wire import RemoteErr, Wire

from protocol import encode, request


def expect(reply, type_):
    assert reply["k"] == "err", reply
    assert reply["error"]["type"] == type_, reply["error"]


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """A server with small limits (module-scoped: it is started once)."""
    from client_py.launcher import launch_server

    srv = launch_server(
        data_dir=tmp_path_factory.mktemp("tight"),
        extra_args=[
            "--max-instances-per-session", "3",
            "--max-frames", "4",
            "--max-header-bytes", "2048",
            "--max-array-bytes", "100000",
            "--max-sessions", "4",
            "--max-inflight-per-session", "2",
        ],
    )  # fmt: skip
    yield srv
    srv.kill()


def test_limits_are_advertised(tight):
    with Wire(tight.endpoint, tight.token) as w:
        limits = w.hello_result["limits"]
        assert limits["max_frames"] == 4 and limits["max_instances_per_session"] == 3
        w.ok("bye")


def test_max_instances_per_session(tight):
    with Wire(tight.endpoint, tight.token) as w:
        for i in range(3):
            w.init(f"k{i}")
        reply, _ = w.request("init", cls="MiniBatchKMeans", id="k3", opts={})
        expect(reply, "LimitExceeded")
        assert "ValueError" in reply["error"]["bases"]
        w.ok("dispose", id="k0")
        w.init("k3")  # room again
        w.ok("bye")


def test_max_frames_then_next_request_succeeds(tight):
    with Wire(tight.endpoint, tight.token) as w:
        w.init("km", n_clusters=2)
        arrays = {f"a{i}": np.zeros(3) for i in range(4)}  # 5 frames > 4
        rid = w.next_rid()
        w.sock.send_multipart(encode(request("call", rid, id="km", method="fit", args=arrays)))
        reply, _ = w.collect(rid)
        expect(reply, "LimitExceeded")
        assert w.ok("ping")["time"] > 0
        w.ok("bye")


def test_oversize_header_then_next_request_succeeds(tight):
    with Wire(tight.endpoint, tight.token) as w:
        w.send("configure", settings={"x" * 5000: True})
        reply = w.recv_one()
        expect(reply, "LimitExceeded")
        assert reply["rid"] == 0  # the header was not read
        assert w.ok("ping")["time"] > 0
        w.ok("bye")


def test_oversize_array(tight):
    with Wire(tight.endpoint, tight.token) as w:
        w.init("km", n_clusters=2)
        reply, _ = w.request("call", id="km", method="fit", args={"X": np.zeros((10_000, 2))})
        expect(reply, "LimitExceeded")
        assert w.call("km", "fit", X=small_X(n=200)) is None
        w.ok("bye")


def test_max_inflight_per_session(tight):
    with Wire(tight.endpoint, tight.token) as w:
        w.init("km", n_clusters=2, max_iter=100_000, max_no_improvement=None)
        X = np.random.RandomState(0).rand(3000, 2)
        running = [w.send("call", id="km", method="fit", args={"X": X}) for _ in range(2)]
        reply, _ = w.request("call", id="km", method="fit", args={"X": X})
        expect(reply, "LimitExceeded")
        assert w.ok("ping")["time"] > 0  # inline operations are not limited
        for rid in running:
            w.ok("cancel", target=rid)
        for rid in running:
            expect(w.collect(rid, timeout=20)[0], "CallCancelled")
        w.ok("bye")


def test_max_sessions(tight):
    wires = []
    try:
        while True:
            w = Wire(tight.endpoint)
            wires.append(w)
            reply, _ = w.request("hello", token=tight.token, versions=[1])
            if reply["k"] == "err":
                expect(reply, "LimitExceeded")
                break
            w.hello_result = reply["result"]
            assert len(wires) <= 4
        assert len(wires) >= 2
        wires[0].ok("bye")
        wires[-1].hello(tight.token)  # a slot is free again
    finally:
        for w in wires:
            if w.hello_result is not None:
                try:
                    w.ok("bye", timeout=2)
                except RemoteErr:
                    pass
            w.close()


@pytest.mark.parametrize(
    "frames",
    [
        [b"\xc1garbage"],
        [msgpack.packb([1, 2, 3])],
        [msgpack.packb({"v": 1, "op": "ping"})],
        [msgpack.packb({"v": 1, "op": "nope", "rid": 5})],
        [msgpack.packb({"v": 1, "op": "call", "rid": 6, "id": 3})],
        [msgpack.packb({"v": 1, "op": "ping", "rid": 7}), b"stray frame"],
        [msgpack.packb({"v": 1, "op": "call", "rid": 8, "id": "km", "method": "fit",
                        "args": {"X": msgpack.ExtType(1, msgpack.packb([1, "<f8", [4, 2]]))}}),
         b"\x00" * 8],
        [msgpack.packb({"v": 1, "op": "call", "rid": 9, "id": "km", "method": "fit",
                        "args": {"X": msgpack.ExtType(1, msgpack.packb([1, "<c16", [1]]))}}),
         b"\x00" * 16],
        [msgpack.packb({"v": 1, "op": "call", "rid": 10, "id": "km", "method": "fit",
                        "args": {"X": msgpack.ExtType(1, msgpack.packb([5, "<f8", [1]]))}}),
         b"\x00" * 8],
        [msgpack.packb({"v": 99, "op": "ping", "rid": 11})],
    ],
)  # fmt: skip
def test_malformed_messages_get_errors_and_hurt_nothing(wire, frames):
    wire.send_frames(frames)
    reply = wire.recv_one(5)
    assert reply["k"] == "err"
    assert reply["error"]["type"] in {
        "MalformedMessage",
        "UnknownOperation",
        "ShapeMismatch",
        "DTypeNotAllowed",
        "UnsupportedVersion",
    }, reply["error"]
    assert wire.ok("ping")["time"] > 0


def test_empty_message_is_answered_with_rid_0(wire):
    wire.send_frames([b""])
    reply = wire.recv_one(5)
    assert reply["k"] == "err" and reply["rid"] == 0
    assert wire.ok("ping")["time"] > 0
