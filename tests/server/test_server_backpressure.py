"""Back-pressure: events may be dropped (and counted), replies never are.

This one runs a :class:`bridge_server.server.Server` in a thread of the test
process, over ``inproc://``: there are no kernel socket buffers there, so the
ZeroMQ high-water marks alone decide when the pipe is full and the test is
deterministic.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest
import zmq
from server_wire import Wire, result_of

from bridge_server.config import ServerConfig
from bridge_server.server import (
    _LONG_CALL_S,
    GIL_SWITCH_INTERVAL_LONG_CALL_S,
    GIL_SWITCH_INTERVAL_S,
    Server,
)
from protocol import decode


def test_events_are_dropped_and_counted_but_the_reply_arrives():
    ctx = zmq.Context()
    server = Server(ServerConfig(bind="inproc://skbridge-bp", token="t", workers=2), context=ctx)
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    w = Wire("inproc://skbridge-bp", context=ctx, rcvhwm=5)
    sock = w.sock
    try:
        w.hello("t")
        # Thousands of verbose lines and progress events, and nobody reading them.
        w.init(
            "km",
            n_clusters=3,
            random_state=0,
            verbose=1,
            max_iter=1,
            batch_size=100,
            max_no_improvement=None,
        )
        X = np.random.RandomState(0).rand(300_000, 2)  # 3000 steps, a line each
        rid = w.send("call", id="km", method="fit", args={"X": X})
        time.sleep(0.5)
        deadline = time.monotonic() + 60
        reply = None
        seen = 0
        while time.monotonic() < deadline:
            if not sock.poll(100):
                continue
            msg = decode(sock.recv_multipart())
            if msg["rid"] == rid and msg["k"] != "ev":
                reply = msg
                break
            seen += 1
            time.sleep(0.001)  # a slow reader
        assert reply is not None and reply["k"] == "ok", reply
        assert reply.get("dropped", 0) > 0
        # Events that were not dropped came through, in order, before the reply.
        assert seen > 0
        assert seen + reply["dropped"] >= 3000  # every verbose line was either seen or counted
        assert w.ok("ping")["time"] > 0
    finally:
        w.close()
        server.request_stop("test over")
        thread.join(10)
        ctx.destroy(linger=0)
    assert not thread.is_alive()


def _drain(sock: zmq.Socket, stop: threading.Event, seen: list[int]) -> None:
    """Read and count every message on ``sock`` until ``stop`` (a client that keeps up)."""
    count = 0
    while not stop.is_set():
        if sock.poll(20):
            sock.recv_multipart()
            count += 1
    seen.append(count)


def test_a_flood_of_events_does_not_keep_the_loop_from_other_requests():
    # Workers can post events faster than the loop sends them. The loop must
    # still come back to its socket between outbox passes: it once drained
    # the outbox until it was empty, which a steady flood never let happen,
    # and every other client's requests waited unread. And another call's
    # reply must not wait behind the flood: it once queued behind up to 10,000
    # events, each a send that gives the GIL away to the flooding threads and
    # waits for it back, and took seconds. Meanwhile the outbox stays within
    # its cap, and each request's events stay in order and before its reply.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as the server process runs
    ctx = zmq.Context()
    config = ServerConfig(bind="inproc://skbridge-flood", token="t", workers=2)
    server = Server(config, context=ctx)
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    noisy = Wire("inproc://skbridge-flood", context=ctx)
    other = Wire("inproc://skbridge-flood", context=ctx)
    stop = threading.Event()
    stop_reading = threading.Event()
    seen: list[int] = []
    reader = threading.Thread(target=_drain, args=(noisy.sock, stop_reading, seen), daemon=True)
    try:
        noisy.hello("t")
        noisy.init("km", n_clusters=3, random_state=0, max_iter=10**6, max_no_improvement=None)
        X = np.random.RandomState(0).rand(20_000, 2)
        rid = noisy.send("call", id="km", method="fit", args={"X": X})
        deadline = time.monotonic() + 10
        while not server._jobs and time.monotonic() < deadline:
            time.sleep(0.01)
        (job,) = server._jobs
        post = server._emitter(job)  # what a worker's verbose callback calls
        reader.start()  # its events go out: the flood reaches the loop's outbox

        posted: list[int] = []
        longest = [0]

        def flood() -> None:
            # Bursts with the GIL released between them, as compute would.
            count = 0
            while not stop.is_set():
                for _ in range(200):
                    post("verbose", {"line": "a step"})
                count += 200
                longest[0] = max(longest[0], len(server._outbox))
                time.sleep(0)
            posted.append(count)

        flooders = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
        for flooder in flooders:
            flooder.start()
        time.sleep(0.2)
        other.hello("t")
        for _ in range(5):
            started = time.monotonic()
            assert other.ok("ping", timeout=5)["time"] > 0
            assert time.monotonic() - started < 2
        other.init("small", n_clusters=2, random_state=0, n_init=1)
        Xs = np.random.RandomState(1).rand(100, 2)
        for _ in range(3):
            started = time.monotonic()
            other.call("small", "fit", timeout=10, X=Xs)  # a worker's job: answered via the outbox
            assert time.monotonic() - started < 2
        # Numbered events of another running call, posted into the flood.
        other.init("slow", n_clusters=3, random_state=0, max_iter=10**6, max_no_improvement=None)
        rid2 = other.send("call", id="slow", method="fit", args={"X": X})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            mine = [j for j in list(server._jobs) if j.rid == rid2 and j.instance.id == "slow"]
            if mine and mine[0].started is not None:
                break
            time.sleep(0.01)
        post2 = server._emitter(mine[0])
        for i in range(3000):
            post2("verbose", {"line": f"n{i}"})
            if i % 100 == 0:
                time.sleep(0)
        other.send("cancel", target=rid2)
        reply, events = other.collect(rid2)
        assert reply["error"]["type"] == "CallCancelled"
        numbered = [
            int(e["data"]["line"][1:])
            for e in events
            if e["event"] == "verbose" and e["data"]["line"].startswith("n")
        ]
        assert numbered == sorted(set(numbered))  # in order, none twice
        assert len(numbered) + reply.get("dropped", 0) >= 3000
        time.sleep(0.2)
        while other.sock.poll(0):  # nothing of that request after its reply
            assert other.recv_one()["rid"] != rid2
        stop.set()
        for flooder in flooders:
            flooder.join(5)
        stop_reading.set()
        reader.join(5)
        assert sum(posted) > 10_000  # the flood really ran
        assert longest[0] <= 10_100  # the outbox kept to its cap (10,000, + a post per flooder)
        assert seen[0] > 0  # its events went out (those meeting a full pipe are dropped)
        cancel = noisy.send("cancel", target=rid)
        assert result_of(noisy.collect(cancel)[0]) == {"found": True}
    finally:
        sys.setswitchinterval(switch)
        stop.set()
        stop_reading.set()
        server.request_stop("test over", grace=0)
        thread.join(10)
        noisy.close()
        other.close()


def test_the_switch_interval_is_short_only_while_a_call_runs_long():
    # A call that keeps the GIL busy (a fit of tiny batches) makes every other
    # thread wait up to a switch interval each time it gives the GIL away
    # (a socket call, a BLAS product). A short interval bounds that, but costs
    # throughput among many short calls, so the server uses it only while a
    # call has run long, and restores the process's own setting when it stops.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.004)  # the embedding process's own setting
    ctx = zmq.Context()
    config = ServerConfig(bind="inproc://skbridge-gil", token="t", workers=2)
    server = Server(config, context=ctx, manage_gil=True)
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    w = Wire("inproc://skbridge-gil", context=ctx)

    def wait_for(interval: float) -> float:
        started = time.monotonic()
        while abs(sys.getswitchinterval() - interval) > 1e-9:  # stored in microseconds
            assert time.monotonic() - started < 10, sys.getswitchinterval()
            time.sleep(0.005)
        return time.monotonic() - started

    try:
        thread.start()
        w.hello("t")
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
        w.init("long", n_clusters=3, random_state=0, max_iter=10**6, max_no_improvement=None)
        X = np.random.rand(20_000, 2)
        sent = time.monotonic()
        rid = w.send("call", id="long", method="fit", args={"X": X})
        while True:  # not before the call has run _LONG_CALL_S (it starts after `sent`)
            interval = sys.getswitchinterval()
            if time.monotonic() - sent >= _LONG_CALL_S * 0.75:
                break
            assert interval == pytest.approx(GIL_SWITCH_INTERVAL_S)
            time.sleep(0.005)
        wait_for(GIL_SWITCH_INTERVAL_LONG_CALL_S)  # and then it is shortened
        assert w.ok("cancel", target=rid) == {"found": True}
        assert w.collect(rid)[0]["error"]["type"] == "CallCancelled"
        wait_for(GIL_SWITCH_INTERVAL_S)  # nothing runs long any more
        server.request_stop("test over")
        thread.join(10)
        assert not thread.is_alive()
        assert sys.getswitchinterval() == pytest.approx(0.004)
        # A late stop request (or a late "done" from a call that ignored its
        # cancel) wakes nothing: the wake-up pipe is closed. It once wrote to
        # the closed descriptor (EBADF, or another file once it was reused).
        server.request_stop("again")
    finally:
        sys.setswitchinterval(switch)
        if thread.is_alive():
            server.request_stop("test over", grace=0)
            thread.join(10)
        w.close()
        ctx.destroy(linger=0)
