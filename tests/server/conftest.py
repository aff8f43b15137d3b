"""Fixtures of the server tests: connections to the shared server, private servers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_wire import Wire

from client_py.launcher import ServerProcess, launch_server


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


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start private servers with extra options; all are killed at the end."""
    started: list[ServerProcess] = []

    def start(*extra: str, **kwargs: Any) -> ServerProcess:
        kwargs.setdefault("data_dir", tmp_path)
        proc = launch_server(extra_args=list(extra), **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture(scope="session")
def long_X() -> np.ndarray:
    """Data for fits that run until cancelled (300k x 2)."""
    return np.random.RandomState(0).rand(300_000, 2)
