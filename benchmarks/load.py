"""Load test: many clients, many instances each, fitting and predicting at once.

``python benchmarks/load.py [--clients 32] [--instances 4] [--duration 10]``

Each client is a thread with its own event loop and its own
:class:`~client_py.PythonBridge` (its own DEALER connection and session). Each
of its instances gets data that identifies it: instance ``k`` fits two tight
blobs centred at ``(10 k, 0)`` and ``(10 k, 50)`` and predicts ``3 + k`` probe
points, so a reply routed to the wrong request is caught by its content (wrong
centres, wrong length or wrong labels), not just by its arrival. Every client
loops ``fit -> predict -> get cluster_centers_`` on all of its instances
concurrently until the time is up, then the run prints requests/s, latency
percentiles, errors and misrouted replies. Loopback only; stops by itself.

``--noisy N`` adds N connections that each run one endless verbose fit with
64-row batches and read every event: thousands of events a second, from a
worker that holds the GIL almost all the time. The figures then show what
such a neighbour costs everyone else.

With no ``--endpoint`` it starts a private server (``client_py.launcher``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from client_py import MiniBatchKMeans, PythonBridge, create_python_bridge
from client_py.launcher import launch_server
from protocol import decode, encode, request

#: Points per blob in an instance's training data.
_BLOB_POINTS = 30
#: Distance between two instances' blobs along x (their centres identify them).
_SPACING = 10.0


def instance_data(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training data, probe points and the true centres of instance ``k``.

    Returns
    -------
    X : ndarray of shape (60, 2)
        Two tight blobs at ``(10 k, 0)`` and ``(10 k, 50)``.
    probes : ndarray of shape (3 + k, 2)
        Points on the two centres, alternating (first centre first).
    centres : ndarray of shape (2, 2)
        The blobs' centres.
    """
    rng = np.random.RandomState(k)
    centres = np.array([[_SPACING * k, 0.0], [_SPACING * k, 50.0]])
    X = np.concatenate([c + 0.1 * rng.randn(_BLOB_POINTS, 2) for c in centres])
    probes = centres[np.arange(3 + k) % 2]
    return X, probes, centres


@dataclass
class ClientStats:
    """What one client saw."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    misrouted: list[str] = field(default_factory=list)


@dataclass
class LoadResult:
    """The outcome of a run."""

    clients: int
    instances: int
    duration: float
    requests: int
    errors: int
    misrouted: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    first_errors: list[str]
    noisy: int = 0
    noisy_messages: int = 0

    @property
    def requests_per_s(self) -> float:
        """Requests answered per second over the whole run."""
        return self.requests / self.duration if self.duration > 0 else 0.0

    def report(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"load: {self.clients} clients x {self.instances} instances, {self.duration:.1f} s",
            f"  requests   {self.requests}  ({self.requests_per_s:.0f}/s)",
            f"  latency    p50 {self.p50_ms:.2f} ms   p99 {self.p99_ms:.2f} ms   "
            f"max {self.max_ms:.2f} ms",
            f"  errors     {self.errors}",
            f"  misrouted  {self.misrouted}",
        ]
        if self.noisy:
            lines.append(
                f"  noisy      {self.noisy} endless verbose fits, "
                f"{self.noisy_messages / self.duration:.0f} events/s read"
            )
        lines += [f"  ! {e}" for e in self.first_errors]
        return "\n".join(lines)


async def _timed(stats: ClientStats, coro: Any) -> Any:
    t0 = time.perf_counter()
    result = await coro
    stats.latencies.append(time.perf_counter() - t0)
    return result


def _check(k: int, labels: Any, centres_got: Any, truth: np.ndarray, stats: ClientStats) -> None:
    """Record a misrouted reply when a result is not instance ``k``'s."""
    centres_got = np.asarray(centres_got)
    if centres_got.shape != (2, 2) or not np.allclose(
        np.sort(centres_got[:, 1]), truth[:, 1], atol=1.0
    ):
        stats.misrouted.append(f"instance {k}: centres {centres_got.tolist()}")
        return
    if not np.allclose(centres_got[:, 0], truth[0, 0], atol=1.0):
        stats.misrouted.append(f"instance {k}: centres {centres_got.tolist()}")
        return
    first = int(np.argmin(np.abs(centres_got[:, 1] - truth[0, 1])))
    expected = np.where(np.arange(3 + k) % 2 == 0, first, 1 - first)
    labels = np.asarray(labels)
    if labels.shape != expected.shape or not np.array_equal(labels, expected):
        stats.misrouted.append(f"instance {k}: labels {labels.tolist()[:8]}...")


async def _instance_loop(py: PythonBridge, k: int, deadline: float, stats: ClientStats) -> None:
    X, probes, truth = instance_data(k)
    model = MiniBatchKMeans({"n_clusters": 2, "random_state": k, "n_init": 1, "max_iter": 20})
    await _timed(stats, model.init(py))
    try:
        while time.monotonic() < deadline:
            try:
                await _timed(stats, model.fit(X))
                labels = await _timed(stats, model.predict(probes))
                centres = await _timed(stats, model.cluster_centers_)
            except Exception as exc:  # every failure is counted, none stops the run
                stats.errors.append(f"instance {k}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.01)
                continue
            _check(k, labels, centres, truth, stats)
    finally:
        try:
            await model.dispose()
        except Exception as exc:
            stats.errors.append(f"instance {k} dispose: {type(exc).__name__}: {exc}")


async def _client(
    endpoint: str, token: str, c: int, instances: int, deadline: float, stats: ClientStats
) -> None:
    try:
        py = await create_python_bridge(endpoint, token, connect_timeout=30.0)
    except Exception as exc:
        stats.errors.append(f"client {c} connect: {type(exc).__name__}: {exc}")
        return
    try:
        await asyncio.gather(
            *(_instance_loop(py, c * instances + i, deadline, stats) for i in range(instances))
        )
    finally:
        await py.disconnect()


def _noisy_fit(
    endpoint: str, token: str, stop: threading.Event, received: list[int], errors: list[str]
) -> None:
    """One connection running an endless verbose fit, reading every message until ``stop``.

    Speaks the protocol directly (a fast reader in any language): ``hello``,
    ``init``, a ``fit`` with 64-row batches and no early stop, then ``cancel``
    and ``bye``. Appends the number of the fit's events it read to
    ``received``; an error reply, a fit that ends, or no answer goes to
    ``errors``.
    """
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    count = 0

    def reply() -> dict[str, Any]:
        if not sock.poll(30_000):
            raise RuntimeError("no reply from the server within 30 s")
        return decode(sock.recv_multipart())

    try:
        sock.send_multipart(encode(request("hello", 1, token=token, versions=[1])))
        if (hello := reply())["k"] != "ok":
            raise RuntimeError(f"hello refused: {hello.get('error')}")
        opts = {
            "n_clusters": 5,
            "batch_size": 64,
            "max_iter": 10**9,
            "max_no_improvement": None,
            "verbose": 1,
            "random_state": 0,
        }
        X = np.random.RandomState(0).rand(20_000, 2)
        init = request("init", 2, cls="MiniBatchKMeans", id="noisy", opts=opts)
        sock.send_multipart(encode(init))
        if (inited := reply())["k"] != "ok":
            raise RuntimeError(f"init refused: {inited.get('error')}")
        sock.send_multipart(encode(request("call", 3, id="noisy", method="fit", args={"X": X})))
        while not stop.is_set():
            if sock.poll(50):
                msg = decode(sock.recv_multipart())
                if msg["k"] != "ev":
                    raise RuntimeError(f"the endless fit ended: {msg.get('error', msg['k'])}")
                count += 1
        sock.send_multipart(encode(request("cancel", 4, target=3)))
        sock.send_multipart(encode(request("bye", 5)))
    except Exception as exc:  # counted as the run's error, never a silent thread death
        errors.append(f"noisy fit: {type(exc).__name__}: {exc}")
    finally:
        sock.close()
        received.append(count)


def run_load(
    endpoint: str,
    token: str,
    *,
    clients: int = 32,
    instances: int = 4,
    duration: float = 10.0,
    noisy: int = 0,
) -> LoadResult:
    """Run ``clients`` threads, each with its own bridge and ``instances`` estimators.

    Parameters
    ----------
    endpoint, token : str
        The server (loopback).
    clients : int
        Concurrent clients, each a thread with its own connection and session.
    instances : int
        Estimators per client, driven concurrently.
    duration : float
        Seconds each client keeps starting new rounds.
    noisy : int
        Extra connections, each running an endless verbose fit and reading
        its events (:func:`_noisy_fit`) for the whole run.
    """
    stats = [ClientStats() for _ in range(clients)]
    stop_noise = threading.Event()
    noise_counts: list[int] = []
    noise_errors: list[str] = []
    noise = [
        threading.Thread(
            target=_noisy_fit,
            args=(endpoint, token, stop_noise, noise_counts, noise_errors),
            name=f"load-noisy-{n}",
            daemon=True,
        )
        for n in range(noisy)
    ]
    for t in noise:
        t.start()
    if noisy:
        time.sleep(1.0)  # the noisy fits are running before the clients start
    start = time.monotonic()
    deadline = start + duration

    def client_thread(c: int) -> None:
        asyncio.run(_client(endpoint, token, c, instances, deadline, stats[c]))

    threads = [
        threading.Thread(target=client_thread, args=(c,), name=f"load-client-{c}", daemon=True)
        for c in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120.0)
    elapsed = time.monotonic() - start
    stop_noise.set()
    for t in noise:
        t.join(10.0)
    hung = sum(t.is_alive() for t in threads)
    latencies = np.array([x for s in stats for x in s.latencies]) * 1e3
    errors = [e for s in stats for e in s.errors] + ["client thread hung"] * hung + noise_errors
    misrouted = [m for s in stats for m in s.misrouted]
    pct = np.percentile(latencies, [50, 99]) if latencies.size else np.zeros(2)
    return LoadResult(
        clients=clients,
        instances=instances,
        duration=elapsed,
        requests=int(latencies.size),
        errors=len(errors),
        misrouted=len(misrouted),
        p50_ms=float(pct[0]),
        p99_ms=float(pct[1]),
        max_ms=float(latencies.max()) if latencies.size else 0.0,
        first_errors=(errors + misrouted)[:5],
        noisy=noisy,
        noisy_messages=sum(noise_counts),
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: run the load test and print its figures; exit 1 on any error."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--instances", type=int, default=4, help="instances per client (4)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (10)")
    parser.add_argument(
        "--noisy", type=int, default=0, help="extra connections running endless verbose fits (0)"
    )
    parser.add_argument("--endpoint", help="a running server (default: start one)")
    parser.add_argument("--token", default=os.environ.get("SKBRIDGE_TOKEN"))
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra option for the started server"
    )
    args = parser.parse_args(argv)
    if args.noisy < 0:
        parser.error("--noisy must be 0 or more")
    server = None
    endpoint, token = args.endpoint, args.token
    if endpoint is None:
        server = launch_server(extra_args=args.server_arg)
        endpoint, token = server.endpoint, server.token
    elif not token:
        parser.error("--endpoint needs --token (or SKBRIDGE_TOKEN)")
    try:
        result = run_load(
            endpoint,
            token,
            clients=args.clients,
            instances=args.instances,
            duration=args.duration,
            noisy=args.noisy,
        )
    finally:
        if server is not None:
            server.stop()
    print(result.report())
    return 1 if result.errors or result.misrouted else 0


if __name__ == "__main__":
    sys.exit(main())
