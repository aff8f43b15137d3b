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
import zmq
from server_wire import Wire

from bridge_server.config import ServerConfig
from bridge_server.server import GIL_SWITCH_INTERVAL_S, Server
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


def test_a_flood_of_events_does_not_keep_the_loop_from_other_requests():
    # Workers can post events faster than the loop sends them. The loop must
    # still come back to its socket between outbox passes: it once drained
    # the outbox until it was empty, which a steady flood never let happen,
    # and every other client's requests waited unread.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as the server process runs
    ctx = zmq.Context()
    config = ServerConfig(bind="inproc://skbridge-flood", token="t", workers=2)
    server = Server(config, context=ctx)
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    quiet = Wire("inproc://skbridge-flood", context=ctx, rcvhwm=5)
    other = Wire("inproc://skbridge-flood", context=ctx)
    stop = threading.Event()
    try:
        quiet.hello("t")
        quiet.init("km", n_clusters=3, random_state=0, max_iter=10**6, max_no_improvement=None)
        X = np.random.RandomState(0).rand(20_000, 2)
        rid = quiet.send("call", id="km", method="fit", args={"X": X})
        deadline = time.monotonic() + 10
        while not server._jobs and time.monotonic() < deadline:
            time.sleep(0.01)
        (job,) = server._jobs
        post = server._emitter(job)  # what a worker's verbose callback calls

        def flood() -> None:
            # Bursts with the GIL released between them, as compute would.
            while not stop.is_set():
                for _ in range(200):
                    post("verbose", {"line": "a step"})
                time.sleep(0)

        flooders = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
        for flooder in flooders:
            flooder.start()
        time.sleep(0.2)
        other.hello("t")
        for _ in range(5):
            started = time.monotonic()
            assert other.ok("ping", timeout=5)["time"] > 0
            assert time.monotonic() - started < 2
        stop.set()
        for flooder in flooders:
            flooder.join(5)
        assert quiet.ok("cancel", target=rid) == {"found": True}
    finally:
        sys.setswitchinterval(switch)
        stop.set()
        server.request_stop("test over", grace=0)
        thread.join(10)
        quiet.close()
        other.close()
