"""Helpers of the reliability tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from client_py import MiniBatchKMeans, PythonBridge, create_python_bridge

T = TypeVar("T")

#: Reference data: three separated blobs; a fit with seed 0 has one known answer.
REF_X = np.concatenate(
    [
        np.asarray(c) + np.random.RandomState(i).randn(40, 2) * 0.2
        for i, c in enumerate([(0, 0), (5, 5), (0, 9)])
    ]
)
REF_OPTS = {"n_clusters": 3, "random_state": 0, "n_init": 1}


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def reference_centers(py: PythonBridge) -> np.ndarray:
    """Fit the reference model on a bridge; returns its centres."""
    model = MiniBatchKMeans(dict(REF_OPTS))
    await model.init(py)
    try:
        await model.fit(REF_X)
        return np.asarray(await model.cluster_centers_)
    finally:
        await model.dispose()


class LiveClient:
    """A real ``client_py`` bridge on an event loop of its own thread, for sync tests."""

    def __init__(self, endpoint: str, token: str, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.py: PythonBridge = self.run(create_python_bridge(endpoint, token, **kwargs))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the client's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def centers(self) -> np.ndarray:
        """The reference fit's centres, through this bridge."""
        return self.run(reference_centers(self.py))

    def centers_within(self, seconds: float, server_pid: int) -> np.ndarray:
        """:meth:`centers`, failing after ``seconds`` with every thread's stack on stderr.

        The server prints its stacks on SIGUSR1 (to its stderr, which pytest
        captures with this process's); this process's own follow.
        """
        try:
            return self.run(reference_centers(self.py), timeout=seconds)
        except concurrent.futures.TimeoutError:
            os.kill(server_pid, signal.SIGUSR1)
            time.sleep(1.0)
            py = self.py  # the client's own state, read for the report only
            print(
                f"client: broken={py._broken!r}, replies awaited for rids {sorted(py._calls)}, "
                f"{len(py._send_queue)} requests waiting to be sent",
                file=sys.stderr,
            )
            faulthandler.dump_traceback(all_threads=True)
            pytest.fail(f"the reference fit got no answer in {seconds} s; stacks on stderr")

    def close(self) -> None:
        """Disconnect and stop the loop."""
        try:
            self.run(self.py.disconnect(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
