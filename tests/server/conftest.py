"""Fixtures of the server tests: connections to the shared server, private servers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from server_wire import Wire

from client_py.launcher import ServerProcess


@pytest.fixture
def connect(server: ServerProcess) -> Iterator[Callable[..., Wire]]:
    """Open authenticated connections to the shared server; each says bye at the end."""
    wires: list[Wire] = []

    def open_wire(session: str | None = None, hello: bool = True) -> Wire:
        wire = Wire(server.endpoint, server.token if hello else None, session)
        wires.append(wire)
        return wire

    yield open_wire
    for wire in wires:
        if wire.hello_result is not None:
            with contextlib.suppress(Exception):
                wire.ok("bye", timeout=2)
        wire.close()


@pytest.fixture
def wire(connect: Callable[..., Wire]) -> Wire:
    """One authenticated connection (a session of its own) to the shared server."""
    return connect()


@pytest.fixture(scope="session")
def long_X() -> np.ndarray:
    """Data for fits that run until cancelled (300k x 2)."""
    return np.random.RandomState(0).rand(300_000, 2)
