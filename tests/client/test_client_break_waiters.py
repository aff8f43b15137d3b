"""A call waiting for an in-flight slot when the bridge breaks fails; it never hangs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import zmq

from client_py import BridgeConnectionError, CallTimeout
from client_py.bridge import PythonBridge


@pytest.fixture
async def stalled_bridge() -> AsyncIterator[PythonBridge]:
    """A bridge over a DEALER with no peer and one in-flight slot.

    Every send queues, like a server that stopped reading, so the first call
    holds the only slot for good.
    """
    ctx = zmq.Context()
    bridge = PythonBridge("tcp://127.0.0.1:1", "token", heartbeat=False, context=ctx)
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    bridge._loop = asyncio.get_running_loop()
    bridge._sock = sock
    bridge._inflight = asyncio.Semaphore(1)
    try:
        yield bridge
    finally:
        bridge._send_queue.clear()
        sock.close(linger=0)
        ctx.term()


async def test_call_waiting_for_a_slot_fails_when_the_bridge_breaks(
    stalled_bridge: PythonBridge,
) -> None:
    bridge = stalled_bridge
    first = asyncio.create_task(bridge.request("ping", {}))
    second = asyncio.create_task(bridge.request("ping", {}))  # waits for the slot
    for _ in range(5):
        await asyncio.sleep(0)
    bridge._break("the server went away")
    async with asyncio.timeout(5):
        with pytest.raises(BridgeConnectionError):
            await first
        with pytest.raises(BridgeConnectionError):
            await second


async def test_timeout_covers_the_wait_for_an_in_flight_slot(
    stalled_bridge: PythonBridge,
) -> None:
    bridge = stalled_bridge
    first = asyncio.create_task(bridge.request("ping", {}))
    await asyncio.sleep(0)
    async with asyncio.timeout(10):  # guards against a hang; not a timing check
        with pytest.raises(CallTimeout):
            await bridge.request("ping", {}, timeout=0.2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
