"""Back-pressure: events may be dropped (and counted), replies never are.

This one runs a :class:`bridge_server.server.Server` in a thread of the test
process, over ``inproc://``: there are no kernel socket buffers there, so the
ZeroMQ high-water marks alone decide when the pipe is full and the test is
deterministic.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import zmq
from server_wire import Wire

from bridge_server.config import ServerConfig
from bridge_server.server import Server
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
