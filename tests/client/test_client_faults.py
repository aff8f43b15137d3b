"""A dead, restarted or unreachable server never leaves a call hanging; no orphans."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from client_testdata import LONG_FIT, SMALL_X, long_fit_data

from client_py import (
    AuthenticationFailed,
    BridgeConnectionError,
    MiniBatchKMeans,
    create_python_bridge,
)
from client_py.launcher import ServerProcess, launch_server


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


async def test_server_killed_under_a_pending_call(fresh_server: ServerProcess) -> None:
    py = await create_python_bridge(address=fresh_server.endpoint, token=fresh_server.token)
    model = MiniBatchKMeans(LONG_FIT)
    await model.init(py)
    task = asyncio.ensure_future(model.fit(long_fit_data()))
    await asyncio.sleep(0.3)
    fresh_server.kill()
    started = time.monotonic()
    with pytest.raises(BridgeConnectionError):
        await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 5
    with pytest.raises(BridgeConnectionError):  # later calls fail at once too
        await model.predict(SMALL_X)
    assert isinstance(BridgeConnectionError("x"), ConnectionError)
    await model.dispose()  # quiet on a dead bridge
    await py.disconnect()


async def test_restart_detected(fresh_server: ServerProcess, tmp_path: Path) -> None:
    py = await create_python_bridge(address=fresh_server.endpoint, token=fresh_server.token)
    model = MiniBatchKMeans(n_clusters=2)
    await model.init(py)
    epoch = py.epoch
    fresh_server.kill()
    replacement = launch_server(bind=fresh_server.endpoint, token=fresh_server.token)
    try:
        assert replacement.epoch != epoch
        with pytest.raises(BridgeConnectionError):
            await asyncio.wait_for(model.fit(SMALL_X), 10)
    finally:
        await py.disconnect()
        replacement.stop()


async def test_epoch_change_in_a_reply_breaks_the_bridge(fresh_server: ServerProcess) -> None:
    """The epoch check itself: a reply from another epoch fails the call."""
    py = await create_python_bridge(
        address=fresh_server.endpoint, token=fresh_server.token, heartbeat=False
    )
    try:
        py._epoch = "an-earlier-epoch"  # as if the server had restarted since hello
        with pytest.raises(BridgeConnectionError, match="restarted"):
            await py.ping()
        with pytest.raises(BridgeConnectionError, match="restarted"):
            await py.ping()
    finally:
        await py.disconnect()


async def test_heartbeat_detects_restart(tmp_path: Path) -> None:
    server = launch_server(data_dir=tmp_path, extra_args=["--heartbeat", "0.3"])
    py = await create_python_bridge(address=server.endpoint, token=server.token)
    replacement = None
    try:
        assert py.heartbeat_s == pytest.approx(0.3)
        await asyncio.sleep(0.5)  # the heartbeat has joined the session and pinged
        assert py.connected
        # Stop watching the main socket: only the heartbeat thread is watching now.
        py._loop.remove_reader(py._watched[1])  # type: ignore[union-attr]
        server.kill()
        replacement = launch_server(bind=server.endpoint, token=server.token)
        deadline = time.monotonic() + 5
        while py.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not py.connected
        with pytest.raises(BridgeConnectionError, match="restarted"):
            await py.ping()
    finally:
        await py.disconnect()
        server.kill()
        if replacement is not None:
            replacement.stop()


async def test_unreachable_server_times_out() -> None:
    started = time.monotonic()
    with pytest.raises(BridgeConnectionError, match="no bridge server answered"):
        await create_python_bridge(address="tcp://127.0.0.1:9", token="x", connect_timeout=0.5)
    assert time.monotonic() - started < 3


async def test_wrong_token(server: ServerProcess) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        await create_python_bridge(address=server.endpoint, token="wrong")
    assert isinstance(info.value, PermissionError)


async def test_embedded_server_stopped_on_disconnect_and_context_exit() -> None:
    py = await create_python_bridge()
    server = py.server
    assert server is not None and server.alive()
    await py.disconnect()
    assert not server.alive()
    with pytest.raises(BridgeConnectionError):
        await py.ping()

    async with await create_python_bridge() as py2:
        server2 = py2.server
        assert server2 is not None and server2.alive()
        assert isinstance(await py2.ping(), float)
    assert not server2.alive()


def test_no_orphan_server_after_sigkill(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from client_py import create_python_bridge

        async def main():
            py = await create_python_bridge()
            print(py.server.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2]
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        server_pid = int(line)
        assert not _gone(server_pid)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    deadline = time.monotonic() + 5
    while not _gone(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(server_pid), "the embedded server outlived its client"


def test_no_orphan_server_at_normal_exit() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from client_py import create_python_bridge

        async def main():
            py = await create_python_bridge()
            print(py.server.pid, flush=True)   # never disconnected: atexit must stop it

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    server_pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 5
    while not _gone(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(server_pid)


async def test_disconnect_never_reports_its_own_heartbeat_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # bye closes the session; a heartbeat ping answered after it was refused
    # ("this connection has not authenticated") and the bridge logged a
    # warning as if the connection had broken. Pings every millisecond make
    # the race likely within a few dozen disconnects.
    server = launch_server(data_dir=tmp_path, extra_args=["--heartbeat", "0.001"])
    try:
        for _ in range(80):
            py = await create_python_bridge(address=server.endpoint, token=server.token)
            await asyncio.sleep(0.01)  # the heartbeat has joined the session
            with caplog.at_level("WARNING", logger="client_py"):
                await py.disconnect()
            await asyncio.sleep(0.02)  # a late report would arrive now
        assert not [r.getMessage() for r in caplog.records if r.name.startswith("client_py")]
    finally:
        server.stop()


async def test_disconnect_cancelled_during_bye_still_closes_the_bridge(tmp_path: Path) -> None:
    # disconnect stops the heartbeat before bye; cancelled while waiting for
    # bye's reply, it once left the bridge open with no heartbeat, so its
    # session would have expired without the bridge noticing.
    server = launch_server(data_dir=tmp_path)
    py = await create_python_bridge(address=server.endpoint, token=server.token)
    heartbeat = py._heartbeat
    assert heartbeat is not None and heartbeat.is_alive()
    os.kill(server.pid, signal.SIGSTOP)  # bye gets no answer
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(py.disconnect(), 0.3)
        assert not py.connected
        heartbeat.join(2)
        assert not heartbeat.is_alive()
        with pytest.raises(BridgeConnectionError):
            await py.ping()
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.stop()
