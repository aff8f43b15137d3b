"""Faults: a client or server killed mid-request, a consumer that never reads, a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zmq
from reliability_helpers import LiveClient, cpu_seconds, reference_centers, rss_mib
from server_wire import Wire

from client_py import BridgeConnectionError, MiniBatchKMeans, create_python_bridge
from protocol import encode, request

_LONG = {"n_clusters": 5, "max_iter": 10_000_000, "max_no_improvement": None, "random_state": 0}

_DOOMED_CLIENT = textwrap.dedent(
    f"""
    import asyncio, os, sys
    import numpy as np
    from client_py import MiniBatchKMeans, create_python_bridge

    async def main():
        py = await create_python_bridge(os.environ["EP"], os.environ["SKBRIDGE_TOKEN"])
        models = [MiniBatchKMeans(dict({_LONG!r})) for _ in range(3)]
        for m in models:
            await m.init(py)
        fits = [asyncio.ensure_future(m.fit(np.random.rand(5000, 4))) for m in models]
        print(py.session, flush=True)
        await asyncio.gather(*fits)

    asyncio.run(main())
    """
)


def test_client_killed_mid_request_is_released_at_lease_end(launch):
    srv = launch("--lease", "1.5", "--max-sessions", "2", "--workers", "3")
    other = LiveClient(srv.endpoint, srv.token)
    try:
        expected = other.centers()
        env = dict(os.environ, EP=srv.endpoint, SKBRIDGE_TOKEN=srv.token)
        doomed = subprocess.Popen(
            [sys.executable, "-c", _DOOMED_CLIENT], stdout=subprocess.PIPE, env=env
        )
        session = doomed.stdout.readline().decode().strip()
        assert session
        time.sleep(0.3)  # its three fits are running
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(5)
        doomed.stdout.close()
        killed_at = time.monotonic()
        # Nothing else is disturbed: the other session fits the same as before.
        np.testing.assert_allclose(other.centers(), expected)
        # The dead session holds the second slot until its lease runs out.
        with Wire(srv.endpoint) as w:
            while True:
                reply, _ = w.request("hello", token=srv.token, versions=[1], session=session)
                if reply["k"] == "ok":
                    break
                assert reply["error"]["type"] == "LimitExceeded"
                assert time.monotonic() - killed_at < 6, "the lease never ended"
                time.sleep(0.1)
            assert reply["result"]["resumed"] is False  # the session and its instances are gone
            w.ok("bye")
        # Its fits were cancelled with it: the server is idle again.
        time.sleep(0.3)
        cpu0 = cpu_seconds(srv.pid)
        time.sleep(1.0)
        assert cpu_seconds(srv.pid) - cpu0 < 0.5
        np.testing.assert_allclose(other.centers(), expected)
    finally:
        other.close()


async def test_server_killed_mid_request_fails_every_pending_call_fast(fresh_server):
    py = await create_python_bridge(fresh_server.endpoint, fresh_server.token)
    models = [MiniBatchKMeans(dict(_LONG)) for _ in range(3)]
    for m in models:
        await m.init(py)
    X = np.random.RandomState(0).rand(5000, 4)
    pending = [asyncio.ensure_future(m.fit(X)) for m in models]
    pending.append(asyncio.ensure_future(models[0].predict(X)))  # queued behind the fit
    await asyncio.sleep(0.3)
    fresh_server.kill()
    started = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 10)
    assert all(isinstance(r, BridgeConnectionError) for r in results), results
    assert time.monotonic() - started < 2
    with pytest.raises(BridgeConnectionError):
        await py.ping()
    await py.disconnect()


def test_consumer_that_never_reads_does_not_grow_the_server(launch):
    srv = launch("--workers", "2")
    other = LiveClient(srv.endpoint, srv.token)
    ctx = zmq.Context.instance()
    flood = ctx.socket(zmq.DEALER)
    flood.setsockopt(zmq.LINGER, 0)
    flood.setsockopt(zmq.RCVHWM, 10)
    flood.setsockopt(zmq.RCVBUF, 4096)
    try:
        expected = other.centers()
        flood.connect(srv.endpoint)
        flood.send_multipart(encode(request("hello", 1, token=srv.token, versions=[1])))
        assert flood.poll(5000)
        flood.recv_multipart()  # the last message this peer ever reads
        # A verbose fit that floods events...
        opts = dict(_LONG, verbose=1, batch_size=64)
        flood.send_multipart(encode(request("init", 2, cls="MiniBatchKMeans", id="v", opts=opts)))
        X = np.random.RandomState(0).rand(20_000, 2)
        flood.send_multipart(encode(request("call", 3, id="v", method="fit", args={"X": X})))
        # ...and requests with 8 KB replies, as fast as the socket takes them.
        opts = {"n_clusters": 50, "random_state": 0}
        flood.send_multipart(encode(request("init", 4, cls="MiniBatchKMeans", id="c", opts=opts)))
        Xc = np.random.RandomState(0).rand(200, 20)
        flood.send_multipart(encode(request("call", 5, id="c", method="fit", args={"X": Xc})))
        time.sleep(0.5)
        get = [
            encode(request("get", rid, id="c", attr="cluster_centers_"))[0]
            for rid in range(10, 100_010)
        ]
        samples = []
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 3.0:
            for _ in range(500):
                try:
                    flood.send(get[i % len(get)], zmq.NOBLOCK)
                except zmq.Again:
                    break
                i += 1
            time.sleep(0.002)
            if not samples or time.monotonic() - samples[-1][0] > 0.5:
                samples.append((time.monotonic(), rss_mib(srv.pid)))
        after_1s = next(rss for t, rss in samples if t - started >= 1.0)
        final = rss_mib(srv.pid)
        assert i > 20_000  # the flood really happened
        assert final - after_1s < 25, samples  # bounded (unbounded: ~25 MiB/s here)
        # Everyone else is served normally meanwhile and after.
        started = time.monotonic()
        np.testing.assert_allclose(other.centers_within(5, srv.pid), expected)
        # The README quotes this (pytest -s shows it).
        print(f"the reference fit was answered in {time.monotonic() - started:.2f} s")
    finally:
        flood.close(0)
        other.close()


async def test_server_restart_is_reported_through_the_epoch_and_a_new_bridge_works(launch):
    first = launch()
    port_endpoint = first.endpoint
    py = await create_python_bridge(first.endpoint, first.token, heartbeat=False)
    await reference_centers(py)
    old_epoch = py.epoch
    first.kill()
    second = launch(bind=port_endpoint, token=first.token)
    assert second.epoch != old_epoch
    started = time.monotonic()
    with pytest.raises(BridgeConnectionError):
        for _ in range(50):  # the disconnect or the new epoch breaks the bridge
            await py.ping(timeout=2)
            await asyncio.sleep(0.05)
    assert time.monotonic() - started < 5
    await py.disconnect()
    async with await create_python_bridge(second.endpoint, second.token) as fresh:
        assert fresh.epoch == second.epoch
        assert (await reference_centers(fresh)).shape == (3, 2)
