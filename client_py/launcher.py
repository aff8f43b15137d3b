"""Start and stop a private ``bridge_server`` subprocess (the embedded server).

The contract with the server's command line (``python -m bridge_server``):

* the token comes in the environment variable ``SKBRIDGE_TOKEN`` (never on the
  command line, where other users could read it);
* once its socket is bound, the server prints one line to stdout,
  ``SKBRIDGE-READY {"endpoint": ..., "epoch": ..., "pid": ...}``, and flushes;
* ``--parent-pid`` makes the server exit when that process is gone, so a
  killed client leaves no orphan behind; this module also stops the server at
  interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY_PREFIX = "SKBRIDGE-READY "
TOKEN_ENV = "SKBRIDGE_TOKEN"

_live: set[ServerProcess] = set()
_live_lock = threading.Lock()


class LaunchError(RuntimeError):
    """The embedded server did not start."""


@dataclass(eq=False)
class ServerProcess:
    """A running embedded server.

    Attributes
    ----------
    endpoint : str
        The ZeroMQ endpoint it is bound to (``tcp://127.0.0.1:PORT`` or ``ipc://...``).
    token : str
        The shared secret clients must present in ``hello``.
    epoch : str
        The server's epoch, as printed in its ready line.
    process : subprocess.Popen
        The child process.
    curve_public_key : str or None
        The server's CURVE public key (Z85) when it encrypts (``--curve``).
    """

    endpoint: str
    token: str
    epoch: str
    process: subprocess.Popen[bytes]
    stderr_path: Path | None = field(default=None)
    curve_public_key: str | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; returns the exit code."""
        with _live_lock:
            _live.discard(self)
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the server at once (for fault tests)."""
        with _live_lock:
            _live.discard(self)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def _stop_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        server.stop(timeout=3.0)


atexit.register(_stop_all)


def launch_server(
    *,
    bind: str = "tcp://127.0.0.1:0",
    token: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    startup_timeout: float = 30.0,
    watch_parent: bool = True,
) -> ServerProcess:
    """Start ``python -m bridge_server`` and wait until it is ready.

    Parameters
    ----------
    bind : str
        Endpoint to bind; a ``tcp`` port of 0 picks a free port.
    token : str, optional
        Shared secret; a fresh random one by default.
    data_dir : path, optional
        The server's data directory for data references.
    extra_args : sequence of str
        More command-line options (``--lease``, ``--max-frames``, ...).
    env : dict, optional
        Extra environment variables for the child.
    startup_timeout : float
        Seconds to wait for the ready line.
    watch_parent : bool
        Pass ``--parent-pid`` so the server exits when this process dies.

    Raises
    ------
    LaunchError
        If the server exits or stays silent past ``startup_timeout``.
    """
    proc, token = _spawn(bind, token, data_dir, extra_args, env, watch_parent)
    return _wait_ready(proc, token, startup_timeout)


async def launch_server_async(
    *,
    bind: str = "tcp://127.0.0.1:0",
    token: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    startup_timeout: float = 30.0,
    watch_parent: bool = True,
) -> ServerProcess:
    """:func:`launch_server` for a running event loop: waits without blocking the loop.

    The process is spawned from the calling (event-loop) thread, not a worker
    thread: on Linux the server asks for a parent-death signal, which the
    kernel sends when the *thread* that spawned it ends.
    """
    import asyncio

    proc, token = _spawn(bind, token, data_dir, extra_args, env, watch_parent)
    try:
        return await asyncio.to_thread(_wait_ready, proc, token, startup_timeout)
    except BaseException:  # cancelled while waiting: leave nothing behind
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        raise


def _spawn(
    bind: str,
    token: str | None,
    data_dir: str | os.PathLike[str] | None,
    extra_args: Sequence[str],
    env: dict[str, str] | None,
    watch_parent: bool,
) -> tuple[subprocess.Popen[bytes], str]:
    token = token or secrets.token_urlsafe(32)
    cmd = [sys.executable, "-m", "bridge_server", "--bind", bind]
    if data_dir is not None:
        cmd += ["--data-dir", os.fspath(data_dir)]
    if watch_parent:
        cmd += ["--parent-pid", str(os.getpid())]
    cmd += list(extra_args)
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env[TOKEN_ENV] = token
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None,
        env=child_env,
        start_new_session=True,  # a Ctrl-C aimed at the client's terminal is the client's
    )
    return proc, token


def _wait_ready(proc: subprocess.Popen[bytes], token: str, startup_timeout: float) -> ServerProcess:
    deadline = time.monotonic() + startup_timeout
    ready: dict[str, object] | None = None
    result: list[str] = []

    def read_ready() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith(READY_PREFIX):
                result.append(line[len(READY_PREFIX) :])
                break

    reader = threading.Thread(target=read_ready, daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    if result:
        ready = json.loads(result[0])
    if ready is None:
        code = proc.poll()
        if code is None:
            proc.kill()
            proc.wait(5)
            raise LaunchError(f"bridge_server did not report ready within {startup_timeout} s")
        raise LaunchError(f"bridge_server exited with code {code} before it was ready")
    curve_key = ready.get("curve_public_key")
    server = ServerProcess(
        endpoint=str(ready["endpoint"]),
        token=token,
        epoch=str(ready["epoch"]),
        process=proc,
        curve_public_key=str(curve_key) if curve_key is not None else None,
    )
    # Keep draining stdout so a chatty server never blocks on a full pipe.
    threading.Thread(target=_drain, args=(proc,), daemon=True).start()
    with _live_lock:
        _live.add(server)
    return server


def _drain(proc: subprocess.Popen[bytes]) -> None:
    stream = proc.stdout
    if stream is None:
        return
    try:
        for _ in stream:
            pass
    except (OSError, ValueError):
        pass
