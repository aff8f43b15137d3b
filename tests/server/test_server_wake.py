"""The loop's wake-up pipe: a worker's result must never wait for the housekeeping timeout."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator

import pytest

from bridge_server.config import ServerConfig
from bridge_server.server import Server


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(ServerConfig(bind="inproc://wake-test", token="t"))
    yield srv
    srv._close()


def pipe_has_byte(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_a_wake_up_during_the_drain_is_not_lost(server: Server, monkeypatch) -> None:
    # A worker's result arrives; the loop wakes and starts draining the pipe.
    server._wake()
    assert pipe_has_byte(server._wake_r)
    real_read = os.read
    woke_during_read = []

    def read_while_a_worker_wakes(fd: int, n: int) -> bytes:
        # The interleaving that lost wake-ups: another worker finishes exactly
        # while the loop is emptying the pipe.
        if fd == server._wake_r and not woke_during_read:
            woke_during_read.append(True)
            server._wake()
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", read_while_a_worker_wakes)
    server._drain_wake()
    monkeypatch.setattr(os, "read", real_read)
    assert woke_during_read
    # The loop now drains the outbox (which holds that worker's item too). The
    # next worker to finish must be able to wake it again.
    server._wake()
    assert pipe_has_byte(server._wake_r)
