"""Protocol codec benchmark: ``python benchmarks/protocol_bench.py [--repeats N]``.

(a) encode + decode of a 1,000,000 x 2 float64 array, no socket: the array
    goes out as a frame without a copy and comes back as a view, so this costs
    microseconds whatever the array's size (target: under 1 ms).
(b) a 16 MiB request/reply over tcp loopback (pyzmq DEALER <-> ROUTER,
    ``copy=False``): the request carries a 16 MiB array, the reply carries it
    back, both through ``protocol.encode`` / ``protocol.decode``; against a raw
    pyzmq echo of the same bytes (same socket types, no codec). Sides
    alternate, warm-ups are discarded, medians are reported (target: codec
    within 1.5x of raw).

Timed with the shared ``benchmarks/harness.py`` (warm-ups discarded, sides
alternated, medians). ``--quick`` and ``--smoke`` cut the repeats (and, for
``--smoke``, the payload); ``--markdown`` prints pipe tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Row, compare, print_table, summarise  # noqa: E402

import protocol  # noqa: E402

# ----------------------------------------------------------------- (a) no socket


def bench_codec(repeats: int) -> dict[str, list[float]]:
    """Encode and decode of a request carrying a 1e6 x 2 float64 array."""
    X = np.random.default_rng(0).standard_normal((1_000_000, 2))
    header = protocol.request("call", 1, id="MiniBatchKMeans00000000", method="fit", args={"X": X})

    def encode() -> object:
        return protocol.encode(header)

    frames = protocol.encode(header)
    assert frames[1] is X

    def decode() -> object:
        return protocol.decode(frames)

    def both() -> object:
        out = protocol.decode(protocol.encode(header))
        assert np.shares_memory(out["args"]["X"], X)
        return out

    return compare(
        {"encode": encode, "decode": decode, "encode+decode": both}, repeats=repeats, warmup=50
    )


# --------------------------------------------------------- (b) 16 MiB over tcp


def _codec_server(router: zmq.Socket, stop: threading.Event) -> None:
    epoch = "bench"
    while not stop.is_set():
        if not router.poll(50):
            continue
        ident, *msg = router.recv_multipart(copy=False)
        header = protocol.decode(msg)
        protocol.validate_request(header)
        X = header["args"]["X"]  # a view of the received frame
        reply = protocol.encode(protocol.ok_reply(header["rid"], epoch, X))
        router.send_multipart([ident, *reply], copy=False)


def _raw_server(router: zmq.Socket, stop: threading.Event) -> None:
    while not stop.is_set():
        if not router.poll(50):
            continue
        router.send_multipart(router.recv_multipart(copy=False), copy=False)


def bench_loopback(repeats: int, nbytes: int) -> dict[str, list[float]]:
    """A request and a reply of ``nbytes`` each, codec vs raw echo, tcp loopback."""
    ctx = zmq.Context()
    stop = threading.Event()
    sockets, threads = [], []
    dealers = {}
    for name, serve in (("codec", _codec_server), ("raw", _raw_server)):
        router = ctx.socket(zmq.ROUTER)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(f"tcp://127.0.0.1:{port}")
        sockets += [router, dealer]
        dealers[name] = dealer
        thread = threading.Thread(target=serve, args=(router, stop), daemon=True)
        thread.start()
        threads.append(thread)

    X = np.random.default_rng(1).standard_normal((nbytes // 16, 2))
    rid = iter(range(1, 1 << 62))

    def codec() -> None:
        header = protocol.request("call", next(rid), id="m", method="predict", args={"X": X})
        dealers["codec"].send_multipart(protocol.encode(header), copy=False)
        reply = protocol.decode(dealers["codec"].recv_multipart(copy=False))
        assert protocol.reply_kind(reply) == "ok" and reply["result"].shape == X.shape

    def raw() -> None:
        dealers["raw"].send_multipart([X], copy=False)
        frames = dealers["raw"].recv_multipart(copy=False)
        assert len(frames[0]) == X.nbytes

    try:
        return compare({"codec": codec, "raw": raw}, repeats=repeats, warmup=5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sock in sockets:
            sock.close(0)
        ctx.term()


def main(argv: list[str] | None = None) -> None:
    """Run both benchmarks and print a table of medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--mib", type=int, default=16, help="payload of (b), MiB each way")
    parser.add_argument("--quick", action="store_true", help="10 repeats")
    parser.add_argument("--smoke", action="store_true", help="2 repeats of 1 MiB")
    parser.add_argument("--markdown", action="store_true", help="print pipe tables")
    args = parser.parse_args(argv)
    repeats = 2 if args.smoke else 10 if args.quick else args.repeats
    mib = 1 if args.smoke else args.mib

    print("## Protocol codec\n")
    print(f"numpy {np.__version__}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}\n")
    codec = bench_codec(max(repeats * 10, 20))
    rows = [
        summarise(f"(a) 1,000,000 x 2 float64, no socket: {name}", {"median": times})
        for name, times in codec.items()
    ]
    print_table(rows, unit="us", markdown=args.markdown)

    loop = bench_loopback(repeats, mib << 20)
    ratio = statistics.median(loop["codec"]) / statistics.median(loop["raw"])
    print()
    row = Row(
        f"(b) {mib} MiB request + {mib} MiB reply, tcp loopback",
        {k: statistics.median(v) for k, v in loop.items()},
        baseline="raw",
        extra={"target": "<= 1.50x", "met": "yes" if ratio <= 1.5 else "no"},
    )
    print_table([row], unit="ms", markdown=args.markdown)


if __name__ == "__main__":
    main()
