"""``skbridge demo``: cluster a dataset larger than memory through the bridge.

The phases, each timed and summarised:

1. **write** -- a synthetic blobs dataset is written to an ``.npy`` file chunk
   by chunk (never whole in memory); skipped with ``--input``.
2. **stream** -- the file is streamed through ``partial_fit`` over the bridge.
   Two reusable buffers alternate: while the server computes on one chunk, the
   next is read into the other and already in flight. A buffer is refilled
   only after the reply for the call that sent it has arrived, so ZeroMQ has
   long finished with it.
3. **predict** -- every label is predicted chunk by chunk, the same way, into
   an on-disk ``labels.npy``; inertia and cluster sizes are accumulated as the
   labels come back.
4. **dataref fit** (embedded server only) -- a full ``fit`` on the same file,
   named by a server-side data reference: the server memory-maps it, so the
   data never crosses the wire, and ``labels_`` is written to a file there.

Peak memory (``RssAnon + RssShmem``; pages of memory-mapped files are page
cache and do not count) of this process and of an embedded server is sampled
throughout and reported.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .progress import ProgressLine

MB = 1e6
#: Default bytes of rows per streamed chunk (262,144 rows of 2 float64 features).
CHUNK_BYTES = 4 * 2**20


@dataclass
class PhaseResult:
    """Timing of one phase."""

    name: str
    rows: int
    nbytes: int
    seconds: float

    def line(self) -> str:
        """One summary line: rows, MB, time, rows/s, MB/s."""
        secs = max(self.seconds, 1e-9)
        return (
            f"  {self.name:<12} {self.rows:>13,d} rows  {self.nbytes / MB:>9.1f} MB  "
            f"{self.seconds:>7.2f} s  {self.rows / secs / 1e6:>7.2f} M rows/s  "
            f"{self.nbytes / MB / secs:>8.1f} MB/s"
        )


@dataclass
class MemorySampler:
    """Samples ``RssAnon + RssShmem`` of some processes in a background thread (Linux).

    Attributes
    ----------
    pids : dict of str to int
        Label -> process id to watch.
    peaks : dict of str to int
        Label -> highest value seen, in bytes.
    """

    pids: dict[str, int]
    interval: float = 0.05
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @staticmethod
    def anon_bytes(pid: int) -> int | None:
        """``RssAnon + RssShmem`` of ``pid`` in bytes, or None if unreadable."""
        try:
            with open(f"/proc/{pid}/status") as fh:
                text = fh.read()
        except OSError:
            return None
        total = 0
        for line in text.splitlines():
            if line.startswith(("RssAnon:", "RssShmem:")):
                total += int(line.split()[1]) * 1024
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Take one sample of every process."""
        for label, pid in self.pids.items():
            value = self.anon_bytes(pid)
            if value is not None and value > self.peaks.get(label, 0):
                self.peaks[label] = value

    def start(self) -> MemorySampler:
        """Start sampling."""
        if sys.platform.startswith("linux"):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> dict[str, int]:
        """Stop sampling; returns the peaks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.sample()
        return self.peaks


def default_centers(n_clusters: int, n_features: int, seed: int) -> np.ndarray:
    """Blob centers, shape (n_clusters, n_features): a jittered grid in 2-D, uniform beyond."""
    rng = np.random.default_rng(seed)
    if n_features == 2:
        side = int(np.ceil(np.sqrt(n_clusters)))
        grid = np.linspace(-22.0, 22.0, side)
        xx, yy = np.meshgrid(grid, grid)
        centers = np.column_stack([xx.ravel(), yy.ravel()])[:n_clusters]
        return centers + rng.uniform(-1.0, 1.0, size=centers.shape)
    return rng.uniform(-20.0, 20.0, size=(n_clusters, n_features))


def write_blobs(
    path: Path,
    n_samples: int,
    n_features: int,
    n_clusters: int,
    chunk_rows: int,
    seed: int = 0,
    dtype: np.dtype | type = np.float64,
) -> PhaseResult:
    """Write an isotropic-blobs dataset of shape (n_samples, n_features) to ``path``, by chunks."""
    centers = default_centers(n_clusters, n_features, seed)
    rng = np.random.default_rng(seed + 1)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n_samples, n_features))
    bar = ProgressLine("write", n_samples)
    for start in range(0, n_samples, chunk_rows):
        stop = min(start + chunk_rows, n_samples)
        which = rng.integers(0, n_clusters, size=stop - start)
        block = rng.standard_normal((stop - start, n_features))
        block += centers[which]
        out[start:stop] = block
        bar.update(stop - start)
    out.flush()
    nbytes = out.nbytes
    del out
    return PhaseResult("write", n_samples, nbytes, bar.close())


async def pipelined(
    data: np.ndarray,
    chunk_rows: int,
    send: Callable[[np.ndarray], Awaitable[Any]],
    receive: Callable[[int, int, Any], None],
    label: str,
    depth: int = 2,
) -> PhaseResult:
    """Send ``data`` in chunks through ``send`` with ``depth`` calls in flight.

    Each chunk is copied from ``data`` (which may be a memory map) into one of
    ``depth`` reusable buffers. A buffer is refilled only once the call that
    sent it has completed, so ZeroMQ has finished with its bytes.
    ``receive(start, stop, result)`` is called in order for every chunk.
    """
    n_samples = data.shape[0]
    buffers = [np.empty((chunk_rows, *data.shape[1:]), dtype=data.dtype) for _ in range(depth)]
    pending: collections.deque[tuple[int, int, asyncio.Task[Any]]] = collections.deque()
    bar = ProgressLine(label, n_samples)

    async def settle_oldest() -> None:
        start, stop, task = pending.popleft()
        receive(start, stop, await task)
        bar.update(stop - start)

    try:
        for i, start in enumerate(range(0, n_samples, chunk_rows)):
            stop = min(start + chunk_rows, n_samples)
            if len(pending) == depth:
                await settle_oldest()
            view = buffers[i % depth][: stop - start]
            np.copyto(view, data[start:stop])
            pending.append((start, stop, asyncio.ensure_future(send(view))))
        while pending:
            await settle_oldest()
    finally:
        for _, _, task in pending:
            task.cancel()
    return PhaseResult(label, n_samples, data.nbytes, bar.close())


def chunk_rows_for(n_features: int, itemsize: int) -> int:
    """Default rows per streamed chunk: :data:`CHUNK_BYTES` of rows (at least one).

    A byte budget, not a row count, keeps the client's buffers (two chunks in
    flight, one being read) and the server's per-call memory the same for
    wide data as for the 2-feature default.
    """
    return max(1, CHUNK_BYTES // (n_features * itemsize))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options of ``skbridge demo``."""
    p = argparse.ArgumentParser(
        prog="skbridge demo",
        description="Cluster a dataset larger than memory through the bridge: stream it "
        "through partial_fit, predict every label to disk, summarise.",
    )
    p.add_argument("--input", type=Path, help="your own 2-D .npy file (C order) instead of blobs")
    p.add_argument("--samples", type=int, default=32_000_000, help="rows of the synthetic dataset")
    p.add_argument("--features", type=int, default=2, help="columns of the synthetic dataset")
    p.add_argument("--clusters", type=int, default=8, help="n_clusters")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows per streamed chunk (each partial_fit call is one minibatch step over it); "
        "default: 4 MiB of rows, 262,144 rows of 2 float64 features",
    )
    p.add_argument("--address", help="use a running server at this endpoint")
    p.add_argument("--token", help="token of the running server (or env SKBRIDGE_TOKEN)")
    p.add_argument("--out", type=Path, help="keep the data, labels and plot in this directory")
    p.add_argument("--plot", action="store_true", help="save a PNG of a sample (needs matplotlib)")
    p.add_argument("--no-dataref", action="store_true", help="skip the server-side data-ref fit")
    p.add_argument("--seed", type=int, default=0, help="random seed of data and model")
    args = p.parse_args(argv)
    for name in ("samples", "features", "clusters", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.input is not None and not args.input.is_file():
        p.error(f"--input {args.input}: no such file")
    return args


async def run_demo(args: argparse.Namespace, workdir: Path) -> int:
    """The demo's phases; returns the exit code."""
    from . import DataRef, MiniBatchKMeans, create_python_bridge

    phases: list[PhaseResult] = []
    if args.input is not None:
        data_path = args.input.resolve()
    else:
        if args.batch_size is None:
            args.batch_size = chunk_rows_for(args.features, 8)
        data_path = workdir / "blobs.npy"
        size_mb = args.samples * args.features * 8 / MB
        print(
            f"writing {args.samples:,d} x {args.features} blobs ({size_mb:,.0f} MB) to {data_path}"
        )
        phases.append(
            write_blobs(
                data_path,
                args.samples,
                args.features,
                args.clusters,
                args.batch_size,
                seed=args.seed,
            )
        )
    try:
        data = np.load(data_path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        print(f"error: {data_path} is not a readable .npy array ({exc})", file=sys.stderr)
        return 2
    if not isinstance(data, np.ndarray) or data.ndim != 2 or not data.flags.c_contiguous:
        print(f"error: {data_path} must hold a C-ordered 2-D array", file=sys.stderr)
        return 2
    n_samples, n_features = data.shape
    if args.batch_size is None:
        args.batch_size = chunk_rows_for(n_features, data.dtype.itemsize)
    if n_samples < args.clusters:
        print(
            f"error: {data_path} has {n_samples} rows, fewer than --clusters {args.clusters}",
            file=sys.stderr,
        )
        return 2

    if args.address:
        token = args.token or os.environ.get("SKBRIDGE_TOKEN")
        if not token:
            print("error: --address needs --token (or SKBRIDGE_TOKEN)", file=sys.stderr)
            return 2
        py = await create_python_bridge(address=args.address, token=token)
    else:
        # The embedded server; the bridge stops it on disconnect (and at exit).
        py = await create_python_bridge(data_dir=data_path.parent)
    server = py.server
    pids = {"client": os.getpid()}
    if server is not None:
        pids["server"] = server.pid
    sampler = MemorySampler(pids).start()
    try:
        model = MiniBatchKMeans(
            n_clusters=args.clusters, random_state=args.seed, compute_labels=False, n_init=3
        )
        await model.init(py)
        print(f"streaming {data_path.name} through partial_fit in chunks of {args.batch_size:,d}")
        phases.append(
            await pipelined(
                data, args.batch_size, lambda X: model.partial_fit(X=X), lambda *_: None, "stream"
            )
        )
        centers = np.asarray(await model.cluster_centers_)

        labels_path = workdir / "labels.npy"
        labels = np.lib.format.open_memmap(
            labels_path, mode="w+", dtype=np.int32, shape=(n_samples,)
        )
        sizes = np.zeros(args.clusters, dtype=np.int64)
        inertia = [0.0]

        def take_labels(start: int, stop: int, chunk_labels: Any) -> None:
            chunk_labels = np.asarray(chunk_labels)
            labels[start:stop] = chunk_labels
            sizes[:] += np.bincount(chunk_labels, minlength=args.clusters)
            diff = np.asarray(data[start:stop], dtype=np.float64) - centers[chunk_labels]
            inertia[0] += float(np.einsum("ij,ij->", diff, diff))

        phases.append(
            await pipelined(
                data, args.batch_size, lambda X: model.predict(X=X), take_labels, "predict"
            )
        )
        labels.flush()
        await model.dispose()

        dataref_inertia = None
        if server is not None and not args.no_dataref:
            ref_model = MiniBatchKMeans(
                n_clusters=args.clusters, random_state=args.seed, batch_size=4096
            )
            await ref_model.init(py)
            print(f"fitting on the server from a data reference to {data_path.name}")
            t0 = time.perf_counter()
            out_name = f"labels-dataref-{os.getpid()}.npy"
            await ref_model.fit(X=DataRef(data_path.name), out={"labels_": DataRef(out_name)})
            phases.append(
                PhaseResult("dataref fit", n_samples, data.nbytes, time.perf_counter() - t0)
            )
            dataref_inertia = float(await ref_model.inertia_)
            await ref_model.dispose()
            (data_path.parent / out_name).unlink(missing_ok=True)
    finally:
        peaks = sampler.stop()
        await py.disconnect()

    print(
        f"\n{n_samples:,d} x {n_features} rows ({data.nbytes / MB:,.1f} MB), "
        f"{args.clusters} clusters"
    )
    for phase in phases:
        print(phase.line())
    print(f"  final inertia (streamed model): {inertia[0]:.6g}")
    if dataref_inertia is not None:
        print(f"  final inertia (dataref fit):    {dataref_inertia:.6g}")
    print("  cluster sizes: " + ", ".join(f"{int(s):,d}" for s in sizes))
    if peaks:
        print(
            "  peak RssAnon+RssShmem: "
            + ", ".join(f"{k} {v / MB:.0f} MB" for k, v in sorted(peaks.items()))
        )
    print(
        f"  labels: {labels_path}"
        if args.out
        else "  (temporary files removed; keep them with --out DIR)"
    )
    if args.plot:
        plot_dir = args.out.resolve() if args.out else Path.cwd()
        save_plot(data, labels_path, centers, plot_dir / "skbridge-demo.png")
    return 0


def save_plot(data: np.ndarray, labels_path: Path, centers: np.ndarray, path: Path) -> None:
    """A sample of the points coloured by cluster, each center marked ``+`` (first 2 features)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  --plot needs matplotlib: pip install 'skbridge[plot]'", file=sys.stderr)
        return
    labels = np.load(labels_path, mmap_mode="r")
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(data.shape[0], size=min(20_000, data.shape[0]), replace=False))
    pts, lab = np.asarray(data[idx, :2]), np.asarray(labels[idx])
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(pts[:, 0], pts[:, 1], c=lab, cmap="tab20", marker=".", s=4, alpha=0.5)
    ax.scatter(centers[:, 0], centers[:, 1], marker="+", c="k", s=60)
    ax.set_title("MiniBatchKMeans through skbridge")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"  plot: {path}")


def _terminate_like_interrupt(signum: int, frame: object) -> None:
    # SIGTERM takes the same clean path as Ctrl-C: stop the server, remove temporary data.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``skbridge demo``."""
    args = parse_args(argv)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        workdir, temporary = args.out.resolve(), False
    else:
        workdir, temporary = Path(tempfile.mkdtemp(prefix="skbridge-demo-")), True
    signal.signal(signal.SIGTERM, _terminate_like_interrupt)
    from .errors import BridgeError

    try:
        return asyncio.run(run_demo(args, workdir))
    except BridgeError as exc:
        # The server's or the connection's own message says what was wrong.
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; the server was stopped", file=sys.stderr)
        return 130
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
