"""What the end-to-end benchmarks share: options, data, servers, a raw echo peer.

Every benchmark times through :mod:`harness` (warm-ups discarded, sides
alternated, medians); this module only sets the stage: the command-line
options every script takes (``--quick``, ``--smoke``, ``--repeats``,
``--markdown``), the 1,000,000 x 2 blobs, an embedded bridge server on a given
transport, and a raw ZeroMQ echo server in a separate process (the yardstick
for what the bridge adds on top of the socket).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from harness import machine  # noqa: E402

#: The issue's workload: k=100, batch 1024, n_init=3, a fixed seed.
PARAMS: dict[str, Any] = dict(n_clusters=100, batch_size=1024, n_init=3, random_state=0)


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one run (full, ``--quick`` or ``--smoke``)."""

    n_samples: int
    repeats: int
    warmup: int
    markdown: bool
    smoke: bool


def parse(
    description: str,
    argv: list[str] | None,
    full: int,
    quick: int,
    smoke: int,
    default_samples: int = 1_000_000,
) -> Plan:
    """Parse the options every benchmark takes; ``full``/``quick``/``smoke`` are the repeats."""
    parser = argparse.ArgumentParser(description=description)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer repeats, same sizes")
    mode.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repeat (checks it runs)"
    )
    parser.add_argument("--repeats", type=int, help="timed rounds (overrides the mode's)")
    parser.add_argument(
        "--samples", type=int, default=default_samples, help=f"rows (default {default_samples:,})"
    )
    parser.add_argument("--markdown", action="store_true", help="print pipe tables")
    args = parser.parse_args(argv)
    repeats = smoke if args.smoke else quick if args.quick else full
    n_samples = min(args.samples, 20_000) if args.smoke else args.samples
    return Plan(
        n_samples=n_samples,
        repeats=args.repeats or repeats,
        warmup=0 if args.smoke else 1,
        markdown=args.markdown,
        smoke=args.smoke,
    )


def blobs(n_samples: int, seed: int) -> np.ndarray:
    """``n_samples`` x 2 float64 blobs around 100 centers (scikit-learn's make_blobs)."""
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=n_samples, n_features=2, centers=100, random_state=seed)
    return np.ascontiguousarray(X)


def params_for(n_samples: int) -> dict[str, Any]:
    """:data:`PARAMS`, with fewer clusters when a smoke run has few samples."""
    params = dict(PARAMS)
    params["n_clusters"] = min(params["n_clusters"], max(2, n_samples // 200))
    return params


def banner(title: str) -> None:
    """The title and the machine line every benchmark prints first."""
    import zmq

    print(f"## {title}\n")
    print(f"machine: {machine()}; pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}")
    print(f"load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}\n")


@contextlib.contextmanager
def endpoint_for(transport: str) -> Iterator[str]:
    """A fresh endpoint to bind: ``tcp://127.0.0.1:0`` or an ``ipc://`` path in a temp dir."""
    if transport == "tcp":
        yield "tcp://127.0.0.1:0"
        return
    with tempfile.TemporaryDirectory(prefix="skbench-") as tmp:
        yield f"ipc://{tmp}/sock"


@contextlib.asynccontextmanager
async def bridge_on(transport: str = "tcp") -> AsyncIterator[Any]:
    """A connected :class:`~client_py.PythonBridge` to a fresh embedded server on ``transport``."""
    from client_py import create_python_bridge
    from client_py.launcher import launch_server_async

    with endpoint_for(transport) as bind:
        server = await launch_server_async(bind=bind)
        try:
            py = await create_python_bridge(server.endpoint, server.token)
            try:
                yield py
            finally:
                await py.disconnect()
        finally:
            await asyncio.to_thread(server.stop, 5.0)


#: The server's debug line for a finished call: ``... call ID.METHOD ok=True queued=..ms ran=..ms``.
_RAN = re.compile(r" call \S+\.(\w+) ok=True queued=[\d.]+ms ran=([\d.]+)ms")


class ServerLog:
    """The debug log of a server started by :func:`logged_bridge`: how long each call ran there.

    ``ran`` is measured by the server from the moment it hands the call to a
    worker to the moment the result is back on its loop thread: the core's time
    plus two thread hand-offs, and nothing of the socket or the codec.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._ran: dict[str, list[float]] = {}

    def take(self, method: str, count: int, timeout: float = 5.0) -> list[float]:
        """Seconds each of the next ``count`` finished calls of ``method`` ran (waits for them)."""
        deadline = time.monotonic() + timeout
        while len(self._ran.get(method, ())) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not log {count} {method} calls")
            time.sleep(0.01)
            self._read()
        found = self._ran[method]
        self._ran[method] = found[count:]
        return found[:count]

    def _read(self) -> None:
        with open(self.path) as fh:
            fh.seek(self._offset)
            text = fh.read()
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # still being written
            self._offset += len(line)
            match = _RAN.search(line)
            if match:
                self._ran.setdefault(match.group(1), []).append(float(match.group(2)) / 1e3)


@contextlib.asynccontextmanager
async def logged_bridge() -> AsyncIterator[tuple[Any, ServerLog]]:
    """A bridge to a fresh tcp server that logs every call at debug level to a file.

    Spawned here rather than by the client's launcher so that its stderr can go
    to a file: the benchmark reads back how long each call ran on the server.
    """
    from client_py import create_python_bridge

    token = secrets.token_urlsafe(16)
    env = dict(os.environ, SKBRIDGE_TOKEN=token)
    with tempfile.TemporaryDirectory(prefix="skbench-") as tmp:
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bridge_server", "--bind", "tcp://127.0.0.1:0"]
                + ["--log-level", "DEBUG", "--parent-pid", str(os.getpid())],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                text=True,
            )
        try:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line.startswith("SKBRIDGE-READY "):
                raise RuntimeError(f"the server did not start: {log_path.read_text()[-2000:]}")
            endpoint = json.loads(line.split(" ", 1)[1])["endpoint"]
            py = await create_python_bridge(endpoint, token)
            try:
                yield py, ServerLog(log_path)
            finally:
                await py.disconnect()
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 10)


class EchoPeer:
    """A raw ZeroMQ ROUTER in a separate process, answered from a ``zmq.asyncio`` DEALER.

    The server echoes every message back unchanged, or, with ``reply_bytes``,
    answers each one with a single preallocated frame of that many bytes (the
    shape of a predict: 16 MB in, 4 MB of labels out). No codec, no dispatch:
    the cost of the socket alone.
    """

    def __init__(self, transport: str = "tcp", reply_bytes: int | None = None) -> None:
        self.transport = transport
        self.reply_bytes = reply_bytes
        self._proc: subprocess.Popen[str] | None = None
        self._sock: Any = None
        self._endpoints: contextlib.ExitStack | None = None

    async def __aenter__(self) -> EchoPeer:
        import zmq
        import zmq.asyncio

        self._endpoints = contextlib.ExitStack()
        bind = self._endpoints.enter_context(endpoint_for(self.transport))
        cmd = [sys.executable, str(HERE / "echo_server.py"), bind]
        if self.reply_bytes is not None:
            cmd.append(str(self.reply_bytes))
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        endpoint = (await asyncio.to_thread(self._proc.stdout.readline)).strip()
        if not endpoint:
            raise RuntimeError("the echo server did not start")
        self._sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close(0)
        if self._proc is not None:
            self._proc.kill()  # it holds nothing worth a clean exit
            self._proc.wait(5)
        if self._endpoints is not None:
            self._endpoints.close()

    async def roundtrip(self, frames: list[Any]) -> list[Any]:
        """Send ``frames`` and await the answer (frames, ``copy=False``)."""
        await self._sock.send_multipart(frames, copy=False)
        return await self._sock.recv_multipart(copy=False)  # type: ignore[no-any-return]


def ms(seconds: float) -> str:
    """Seconds as a short millisecond string."""
    return f"{seconds * 1e3:.1f}"
