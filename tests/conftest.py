"""Fixtures shared by every test layer: one embedded server launcher for all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client_py.launcher import ServerProcess, launch_server


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of the shared server (for data-reference tests)."""
    return tmp_path_factory.mktemp("skbridge-data")


@pytest.fixture(scope="session")
def server(data_dir: Path) -> Iterator[ServerProcess]:
    """A real ``bridge_server`` subprocess shared by the whole test session."""
    proc = launch_server(data_dir=data_dir)
    yield proc
    proc.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of this test's own, for tests that kill, restart or exhaust it."""
    proc = launch_server(data_dir=tmp_path)
    yield proc
    proc.kill()


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
