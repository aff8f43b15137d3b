"""Fixtures of the reliability tests: private servers, raw connections, a reference fit.

The raw protocol helper is the server tests' ``server_wire`` (a synchronous
DEALER speaking ``protocol/SPEC.md``); its directory is put on ``sys.path`` so
both layers share one helper.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from client_py.launcher import ServerProcess, launch_server  # noqa: E402


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
