"""The process: command line, ready line, shutdown on signals, parent watch."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from server_testdata import LONG_FIT, small_X
from server_wire import Wire

from client_py.launcher import launch_server


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bridge_server", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def test_sigterm_with_a_call_in_flight_answers_it_and_exits_0(launch, long_X):
    srv = launch("--grace", "0.3")
    w = Wire(srv.endpoint, srv.token)
    w.init("km", **LONG_FIT)
    rid = w.send("call", id="km", method="fit", args={"X": long_X})
    # Wait until it runs.
    while True:
        msg = w.recv_one(20)
        if msg["k"] == "ev" and msg["event"] == "progress":
            break
    srv.process.send_signal(signal.SIGTERM)
    reply, _ = w.collect(rid, timeout=15)
    assert reply["k"] == "err" and reply["error"]["type"] == "CallCancelled"
    assert srv.process.wait(15) == 0
    w.close()


def test_new_requests_during_shutdown_get_server_shutting_down(launch, long_X):
    srv = launch("--grace", "2")
    w = Wire(srv.endpoint, srv.token)
    w.init("km", **LONG_FIT)
    rid = w.send("call", id="km", method="fit", args={"X": long_X})
    while w.recv_one(20).get("event") != "progress":
        pass
    srv.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 5
    while True:  # the signal and the ping race: ping until the signal has landed
        reply, _ = w.request("ping", timeout=5)
        if reply["k"] == "err" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert reply["error"]["type"] == "ServerShuttingDown"
    assert "RuntimeError" in reply["error"]["bases"]
    reply, _ = w.collect(rid, timeout=15)
    assert reply["error"]["type"] == "CallCancelled"
    assert srv.process.wait(15) == 0
    w.close()


def test_idle_server_stops_at_once(launch):
    srv = launch()
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 3


def test_ipc_endpoint(launch, tmp_path):
    srv = launch(bind=f"ipc://{tmp_path}/skbridge.sock")
    assert srv.endpoint == f"ipc://{tmp_path}/skbridge.sock"
    with Wire(srv.endpoint, srv.token) as w:
        w.init("km", n_clusters=2)
        assert w.call("km", "fit", X=small_X()) is None


def test_non_loopback_bind_is_refused_without_allow_remote():
    result = run_cli("--bind", "tcp://0.0.0.0:0", env={"SKBRIDGE_TOKEN": "t"})
    assert result.returncode == 2
    assert "--allow-remote" in result.stderr
    assert "SKBRIDGE-READY" not in result.stdout


@contextlib.contextmanager
def raw_server(
    *args: str, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], dict, list]]:
    """``python -m bridge_server ARGS`` with piped output, SIGTERMed (exit 0) at the end.

    Yields the process, its ready line's JSON, and a list that receives the
    process's whole stderr once it has exited.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge_server", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    err: list[str] = []
    try:
        line = proc.stdout.readline()
        assert line.startswith("SKBRIDGE-READY ")
        yield proc, json.loads(line[len("SKBRIDGE-READY ") :]), err
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        proc.stdout.close()
        err.append(proc.stderr.read())
        proc.stderr.close()


def test_generated_token_goes_to_an_owner_only_connection_file(tmp_path):
    conn_file = tmp_path / "conn.json"
    env = {k: v for k, v in os.environ.items() if k != "SKBRIDGE_TOKEN"}
    args = ("--bind", "tcp://127.0.0.1:0", "--connection-file", str(conn_file))
    with raw_server(*args, env=env) as (proc, ready, err):
        assert ready["pid"] == proc.pid
        assert stat.S_IMODE(conn_file.stat().st_mode) == 0o600
        info = json.loads(conn_file.read_text())
        assert info["endpoint"] == ready["endpoint"] and info["epoch"] == ready["epoch"]
        with Wire(info["endpoint"], info["token"]) as w:
            assert w.ok("ping")["time"] > 0
    assert str(conn_file) in err[0]  # where the token went is printed
    assert not conn_file.exists()  # removed at exit


def test_exits_when_the_parent_is_gone():
    # A short-lived parent starts the server with --parent-pid pointing at itself.
    code = (
        "import sys, subprocess, os\n"
        "p = subprocess.Popen([sys.executable, '-m', 'bridge_server', '--bind',"
        " 'tcp://127.0.0.1:0', '--parent-pid', str(os.getpid())],"
        " stdout=subprocess.PIPE, text=True, env={**os.environ, 'SKBRIDGE_TOKEN': 't'})\n"
        "print(p.pid, flush=True)\n"
        "p.stdout.readline()\n"
    )
    parent = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    child = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the server outlived its parent")


def test_console_script_subcommands():
    from bridge_server import cli

    try:
        code = cli.main(["bench", "--help"])  # 2 while the bench module does not exist
    except SystemExit as exc:  # once it does, its own --help exits
        code = exc.code
    assert code in (0, 2)
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--help"])
    assert info.value.code == 0


def test_launcher_contract_token_from_environment():
    srv = launch_server(token="from-the-environment")
    try:
        with Wire(srv.endpoint, "from-the-environment") as w:
            assert w.hello_result["epoch"] == srv.epoch
    finally:
        srv.stop()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="SIGUSR1 is POSIX-only")
def test_sigusr1_prints_every_thread_stack_and_the_server_goes_on():
    env = {**os.environ, "SKBRIDGE_TOKEN": "t"}
    with raw_server("--bind", "tcp://127.0.0.1:0", env=env) as (proc, ready, err):
        with Wire(ready["endpoint"], "t") as w:
            assert w.ok("ping")["time"] > 0  # the loop is in serve_forever now
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            assert w.ok("ping")["time"] > 0  # and still serving
    assert "serve_forever" in err[0]  # the loop thread's stack
    assert "Current thread 0x" in err[0]  # the all-threads format ("Stack" for one thread)
