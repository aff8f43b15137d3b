"""Limits: typed errors before sending, typed errors from the server, and the last guard."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
import pytest
from server_wire import Wire

from client_py import (
    BridgeConnectionError,
    LimitExceeded,
    MiniBatchKMeans,
    RemoteLimitExceeded,
    create_python_bridge,
)
from protocol import encode, request

_TIGHT = (
    "--max-header-bytes", "4096",
    "--max-frames", "4",
    "--max-array-bytes", "80000",
    "--max-message-bytes", "200000",
    "--max-instances-per-session", "3",
    "--max-sessions", "3",
    "--max-inflight-per-session", "8",
)  # fmt: skip


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    from client_py.launcher import launch_server

    srv = launch_server(data_dir=tmp_path_factory.mktemp("tight"), extra_args=list(_TIGHT))
    yield srv
    srv.kill()


async def test_client_refuses_before_sending(tight):
    async with await create_python_bridge(tight.endpoint, tight.token) as py:
        limits = py.limits
        assert (limits.max_frames, limits.max_array_bytes, limits.max_header_bytes) == (
            4,
            80000,
            4096,
        )
        model = MiniBatchKMeans({"n_clusters": 2})
        await model.init(py)
        cases = [
            ("fit", {"X": np.zeros((10_001, 1))}, "max_array_bytes"),  # one array too big
            ("fit", {"X": np.zeros((2, 2)), "sample_weight": "w" * 5000}, "max_header_bytes"),
            ("score", {"X": np.zeros((9000, 1)), "y": np.zeros(9000),
                       "sample_weight": np.zeros(9000)}, "max_message_bytes"),
        ]  # fmt: skip
        for method, args, limit in cases:
            with pytest.raises(LimitExceeded, match=limit) as info:
                await getattr(model, method)(args)
            assert not isinstance(info.value, RemoteLimitExceeded)  # refused locally
        # Five arrays: more frames than max_frames, refused at the bridge's request path.
        with pytest.raises(LimitExceeded, match="max_frames"):
            await py.request("ping", {f"a{i}": np.zeros(1) for i in range(4)})
        await model.fit(np.random.RandomState(0).rand(50, 2))  # the bridge is fine
        assert (await model.predict(np.zeros((3, 2)))).shape == (3,)


def expect(reply, type_="LimitExceeded", needle=""):
    assert reply["k"] == "err" and reply["error"]["type"] == type_, reply
    assert needle in reply["error"]["message"]


def test_server_answers_each_limit_and_goes_on(tight):
    with Wire(tight.endpoint, tight.token) as w:
        w.init("km", n_clusters=2)

        def raw(frames):
            w.send_frames(frames)
            return w.recv_one()

        head = encode(request("call", 50, id="km", method="fit", args={"X": np.zeros((4, 2))}))
        expect(raw([head[0]] + [b"x"] * 4), needle="max_frames=4")
        expect(raw([b"\x80" * 5000]), needle="max_header_bytes=4096")
        big = np.zeros((12_000, 2))  # 192000 bytes: over max_array_bytes
        expect(w.request("call", id="km", method="fit", args={"X": big})[0], needle="max_array")
        frames = encode(
            request("call", 51, id="km", method="score",
                    args={"X": np.zeros((9000, 1)), "y": np.zeros(9000),
                          "sample_weight": np.zeros(9000)})
        )  # fmt: skip
        expect(raw(frames), needle="max_message_bytes=200000")
        for i in range(2):
            w.init(f"k{i}")
        expect(w.request("init", cls="MiniBatchKMeans", id="k9", opts={})[0], needle="max_inst")
        w.ok("dispose", id="k0")
        X = np.random.RandomState(0).rand(2000, 2)
        w.init("slow", n_clusters=3, max_iter=1_000_000, max_no_improvement=None)
        rids = [w.send("call", id="slow", method="fit", args={"X": X}) for _ in range(8)]
        expect(w.request("call", id="slow", method="fit", args={"X": X})[0], needle="in flight")
        assert w.ok("ping")["time"] > 0
        w.ok("dispose", id="slow")  # cancels the running fit and the queued ones
        for rid in rids:
            expect(w.collect(rid, timeout=20)[0], "CallCancelled")
        assert w.call("km", "fit", X=X[:100]) is None  # every refusal left the session working
        w.ok("bye")


def test_max_sessions(launch):
    srv = launch("--max-sessions", "3")
    wires = [Wire(srv.endpoint) for _ in range(4)]
    try:
        replies = [w.request("hello", token=srv.token, versions=[1])[0] for w in wires]
        assert [r["k"] for r in replies[:3]] == ["ok"] * 3
        expect(replies[3], needle="max_sessions=3")
        wires[0].ok("bye")
        assert wires[3].hello(srv.token)["session"]
    finally:
        for w in wires:
            w.close()


async def test_frame_above_maxmsgsize_drops_the_connection_and_fails_pending_calls(launch):
    # max_array_bytes 100 KB -> ZMQ_MAXMSGSIZE = 100 KB + 1 MiB.
    srv = launch("--max-array-bytes", "100000")
    py = await create_python_bridge(srv.endpoint, srv.token)
    other = await create_python_bridge(srv.endpoint, srv.token)
    model = MiniBatchKMeans({"n_clusters": 2, "max_iter": 1_000_000, "max_no_improvement": None})
    await model.init(py)
    pending = asyncio.ensure_future(model.fit(np.random.RandomState(0).rand(500, 2)))
    await asyncio.sleep(0.3)
    # A peer that ignores the advertised limits: the bridge is told the limits are huge.
    py._limits = dataclasses.replace(py.limits, max_array_bytes=1 << 40, max_message_bytes=1 << 41)
    started = time.monotonic()
    oversize = asyncio.ensure_future(py.request("ping", {"blob": np.zeros(2_000_000)}))
    for call in (pending, oversize):
        with pytest.raises(BridgeConnectionError):
            await asyncio.wait_for(call, 10)
    assert time.monotonic() - started < 3
    with pytest.raises(BridgeConnectionError):
        await py.ping()
    await py.disconnect()
    # The server keeps serving everyone else.
    model2 = MiniBatchKMeans({"n_clusters": 2, "random_state": 0})
    await model2.init(other)
    await model2.fit(np.random.RandomState(1).rand(100, 2))
    assert (await model2.cluster_centers_).shape == (2, 2)
    await other.disconnect()
