"""Case 4: ``partial_fit`` streaming throughput, through the bridge vs the core alone.

The dataset (4,000,000 x 2 float64 blobs by default) goes through
``partial_fit`` in chunks of 262,144 rows (``skbridge demo``'s default), k=100.
The bridge side streams with :func:`client_py.demo.pipelined` (two reusable
buffers, the next chunk in flight while the server computes: exactly what the
demo does); the core side calls ``partial_fit`` on the same chunks in-process.
Reported: median seconds per pass, rows/s and MB/s.

Run ``python benchmarks/bench_stream.py [--quick | --smoke] [--markdown]``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from common import banner, blobs, bridge_on, parse
from harness import Row, acompare, median, print_table

from bridge_server.core import MiniBatchKMeans as CoreKMeans
from client_py import MiniBatchKMeans
from client_py.demo import pipelined

CHUNK_ROWS = 262_144


def _rate(n_rows: int, nbytes: int, seconds: float) -> str:
    return f"{n_rows / seconds / 1e6:.2f} M rows/s, {nbytes / seconds / 1e6:.0f} MB/s"


async def run(n_samples: int, repeats: int, warmup: int, markdown: bool) -> None:
    """One pass of the whole dataset per timed run, each side."""
    X = blobs(n_samples, seed=0)
    chunk = min(CHUNK_ROWS, max(1, n_samples // 4))
    params: dict[str, Any] = dict(n_clusters=min(100, chunk // 4), random_state=0)
    async with bridge_on("tcp") as py:
        model = MiniBatchKMeans(**params)
        await model.init(py)
        core = CoreKMeans(**params)

        async def bridge_side() -> None:
            await pipelined(X, chunk, lambda c: model.partial_fit(X=c), lambda *_: None, "stream")

        async def core_side() -> None:
            for start in range(0, n_samples, chunk):
                core.partial_fit(X[start : start + chunk])

        times = await acompare(
            {"bridge": bridge_side, "core": core_side}, repeats=repeats, warmup=warmup
        )
        # Same chunks, same seed, same number of passes: same centers.
        centers = np.asarray(await model.cluster_centers_)
        assert np.allclose(centers, core.cluster_centers_), "bridge and core diverged"
        await model.dispose()
    m = {k: median(v) for k, v in times.items()}
    row = Row(
        f"partial_fit {n_samples:,} x 2 in chunks of {chunk:,}",
        m,
        baseline="core",
        extra={
            "bridge rate": _rate(n_samples, X.nbytes, m["bridge"]),
            "core rate": _rate(n_samples, X.nbytes, m["core"]),
        },
    )
    print(f"params: {params}\n")
    print_table([row], unit="ms", markdown=markdown)


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run."""
    plan = parse(__doc__.splitlines()[0], argv, full=5, quick=2, smoke=1, default_samples=4_000_000)
    banner("Streaming partial_fit")
    asyncio.run(run(plan.n_samples, plan.repeats, plan.warmup, plan.markdown))


if __name__ == "__main__":
    main()
