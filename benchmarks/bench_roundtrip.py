"""Case 2: the round trip of a small call, bridge vs a raw ``zmq.asyncio`` echo.

``await model.n_features_in_`` (a ``get`` the server answers inline on its loop
thread) over tcp and over ipc, against a raw DEALER -> ROUTER echo (the ROUTER
in a separate process, the DEALER on ``zmq.asyncio``) of a message of the
request's size. Both sides run in one event loop, alternating call by call.
Target: bridge median <= 1.5x the echo's.

Run ``python benchmarks/bench_roundtrip.py [--quick | --smoke] [--markdown]``.
"""

from __future__ import annotations

import asyncio

import numpy as np
from common import EchoPeer, banner, bridge_on, parse
from harness import Row, acompare, median, print_table

import protocol
from client_py import MiniBatchKMeans

TRANSPORTS = ("tcp", "ipc")


async def one_transport(transport: str, repeats: int, warmup: int) -> Row:
    """Median round trip of the accessor and of the echo on ``transport``."""
    async with bridge_on(transport) as py:
        model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
        await model.init(py)
        await model.fit(np.arange(20.0).reshape(10, 2))
        request = protocol.encode(
            {"v": 1, "op": "get", "rid": 1 << 20, "id": model.id, "attr": "n_features_in_"}
        )
        payload = bytes(sum(len(f) for f in request))
        async with EchoPeer(transport) as echo:
            times = await acompare(
                {
                    "bridge": lambda: model.n_features_in_,
                    "zmq.asyncio echo": lambda: echo.roundtrip([payload]),
                },
                repeats=repeats,
                warmup=warmup,
            )
        await model.dispose()
    ratio = median(times["bridge"]) / median(times["zmq.asyncio echo"])
    return Row(
        f"small call, {transport} ({len(payload)} B)",
        {k: median(v) for k, v in times.items()},
        baseline="zmq.asyncio echo",
        extra={"target": "<= 1.50x", "met": "yes" if ratio <= 1.5 else "no"},
    )


async def run(repeats: int, warmup: int, markdown: bool) -> None:
    """Both transports, one table."""
    rows = [await one_transport(t, repeats, warmup) for t in TRANSPORTS]
    print_table(rows, unit="us", markdown=markdown)


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run."""
    plan = parse(__doc__.splitlines()[0], argv, full=5000, quick=1500, smoke=20)
    banner("Small-call round trip")
    asyncio.run(run(plan.repeats, 200 if not plan.smoke else 2, plan.markdown))


if __name__ == "__main__":
    main()
