"""The main job, ``skbridge demo``, run as a user runs it: a real process, real files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bridge_server.core import MiniBatchKMeans as CoreMiniBatchKMeans
from client_py import MiniBatchKMeans, create_python_bridge
from client_py.demo import chunk_rows_for, pipelined, write_blobs


def skbridge_command() -> list[str]:
    """The installed console script if there is one, else the same entry point via -m."""
    script = Path(sys.executable).with_name("skbridge")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "bridge_server.cli"]


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the fields after its closing parenthesis don't.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_demo_runs_end_to_end_and_keeps_outputs_with_out(tmp_path: Path) -> None:
    out = tmp_path / "kept"
    proc = subprocess.run(
        [
            *skbridge_command(),
            "demo",
            "--samples",
            "120000",
            "--clusters",
            "5",
            "--batch-size",
            "16384",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for phase in ("write", "stream", "predict", "dataref fit"):
        assert re.search(rf"^\s+{phase}\s+120,000 rows", text, re.M), text
    assert "final inertia (streamed model)" in text
    assert "peak RssAnon+RssShmem" in text
    labels = np.load(out / "labels.npy")
    assert labels.shape == (120_000,) and labels.dtype == np.int32
    sizes = [
        int(s.replace(",", ""))
        for s in re.search(r"cluster sizes: (.*)", text).group(1).split(", ")
    ]
    assert sizes == np.bincount(labels, minlength=5).tolist()
    # Streaming and the data-reference fit both land near the in-memory optimum.
    data = np.load(out / "blobs.npy")
    reference = CoreMiniBatchKMeans(n_clusters=5, random_state=0, n_init=3).fit(data)
    streamed = float(re.search(r"final inertia \(streamed model\): (\S+)", text).group(1))
    dataref = float(re.search(r"final inertia \(dataref fit\):\s+(\S+)", text).group(1))
    assert streamed <= reference.inertia_ * 1.01
    assert dataref <= reference.inertia_ * 1.01


def run_demo_cli(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*skbridge_command(), "demo", *argv], capture_output=True, text=True, timeout=timeout
    )


def test_demo_rejects_bad_options(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.zeros(10))
    np.save(tmp_path / "empty.npy", np.zeros((0, 2)))
    (tmp_path / "text.npy").write_text("hello")
    for argv, message in (
        (["--samples", "0"], "--samples must be at least 1"),
        (["--input", str(tmp_path / "missing.npy")], "no such file"),
        (["--input", str(tmp_path / "flat.npy")], "must hold a C-ordered 2-D array"),
        (["--input", str(tmp_path / "empty.npy")], "has 0 rows, fewer than --clusters 8"),
        (["--input", str(tmp_path / "text.npy")], "is not a readable .npy array"),
    ):
        proc = run_demo_cli(argv, timeout=60)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_demo_reports_bad_data_and_refusals_in_one_line(server, tmp_path: Path) -> None:
    data = np.random.RandomState(0).rand(1000, 2)
    data[5, 0] = np.nan
    np.save(tmp_path / "nan.npy", data)
    for argv, message in (
        (["--input", str(tmp_path / "nan.npy")], "error: ValueError: Input X contains NaN."),
        (
            ["--samples", "1000", "--address", server.endpoint, "--token", "not-the-token"],
            "error: AuthenticationFailed: ",
        ),
    ):
        proc = run_demo_cli(argv, timeout=120)
        assert proc.returncode == 1, (argv, proc.stderr)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_interrupted_demo_leaves_no_server_and_no_temporary_data() -> None:
    proc = subprocess.Popen(
        [*skbridge_command(), "demo", "--samples", "40000000", "--batch-size", "65536"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        workdir = Path(re.search(r" to (\S+)/blobs\.npy", first).group(1))
        assert workdir.exists()
        servers: list[int] = []
        deadline = time.monotonic() + 60
        while not servers and time.monotonic() < deadline:
            # The embedded server starts after the data is written; stop once it is up.
            line = proc.stdout.readline()
            if line.startswith("streaming"):
                servers = children_of(proc.pid)
        assert servers, "the demo never started its server"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(pid) for pid in servers)
    assert not workdir.exists()


async def test_stream_equals_core_partial_fit_on_the_same_chunks(server, tmp_path: Path) -> None:
    path = tmp_path / "blobs.npy"
    write_blobs(path, n_samples=50_000, n_features=3, n_clusters=6, chunk_rows=8192, seed=3)
    data = np.load(path, mmap_mode="r")
    chunk = 7_000  # not a divisor of n: the last chunk is short

    core = CoreMiniBatchKMeans(n_clusters=6, random_state=5, n_init=3)
    for start in range(0, data.shape[0], chunk):
        core.partial_fit(np.asarray(data[start : start + chunk]))

    py = await create_python_bridge(address=server.endpoint, token=server.token)
    try:
        model = MiniBatchKMeans(n_clusters=6, random_state=5, n_init=3)
        await model.init(py)
        seen: list[tuple[int, int]] = []
        await pipelined(
            data,
            chunk,
            lambda X: model.partial_fit(X=X),
            lambda start, stop, _: seen.append((start, stop)),
            "stream",
        )
        assert seen == [(s, min(s + chunk, 50_000)) for s in range(0, 50_000, chunk)]
        np.testing.assert_array_equal(await model.cluster_centers_, core.cluster_centers_)
        assert await model.n_steps_ == core.n_steps_
        await model.dispose()
    finally:
        await py.disconnect()


def test_write_blobs_never_holds_the_whole_dataset(tmp_path: Path) -> None:
    import tracemalloc

    tracemalloc.start()
    write_blobs(
        tmp_path / "b.npy", n_samples=400_000, n_features=4, n_clusters=3, chunk_rows=10_000
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 400_000 * 4 * 8 / 4  # well under a quarter of the 12.8 MB dataset
    arr = np.load(tmp_path / "b.npy", mmap_mode="r")
    assert arr.shape == (400_000, 4) and np.isfinite(arr).all()


def test_default_chunks_are_a_byte_budget_so_wide_data_stays_bounded() -> None:
    # 262,144 rows of 2 float64 features (4 MiB) as before; as many bytes, not
    # rows, for wider data, whose fixed-row chunks grew the client past 400 MB.
    assert chunk_rows_for(2, 8) == 262_144
    assert chunk_rows_for(50, 8) == 10_485
    assert chunk_rows_for(10**7, 8) == 1
    proc = run_demo_cli(["--samples", "40000", "--features", "40", "--clusters", "4"], 240)
    assert proc.returncode == 0, proc.stderr
    assert f"in chunks of {chunk_rows_for(40, 8):,d}" in proc.stdout
    assert re.search(r"^\s+predict\s+40,000 rows", proc.stdout, re.M), proc.stdout
