"""Cases 1 and 3: fit + predict of 1,000,000 x 2 end to end, and predict's transport share.

(1) ``fit`` on 1,000,000 x 2 blobs then ``predict`` on 1,000,000 held-out rows
    (k=100, batch 1024, n_init=3, random_state=0): through an embedded bridge
    server (tcp loopback), scikit-learn 1.5.2 in-process, and
    ``bridge_server.core`` in-process. Targets: bridge <= 1.0x scikit-learn;
    bridge - core <= 10% of core.
(3) ``predict`` alone (16 MB of float64 out, 4 MB of int32 labels back): the
    bridge, the core in-process, and a raw ``zmq.asyncio`` DEALER -> ROUTER
    exchange of the same bytes with a server process that answers 4 MB.
    Target: bridge - core <= 1.5x the raw exchange.

All sides alternate in one process after a discarded warm-up; medians.
"bridge - core" is given two ways: against the in-process core (a different
process from the server's, so under machine load it is noisy), and per call
against the time the same call ran on the server (read from the server's debug
log): that difference is only the socket, the codec and the client.
Run ``python benchmarks/bench_e2e.py [--quick | --smoke] [--markdown]``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
from common import EchoPeer, banner, blobs, logged_bridge, params_for, parse
from harness import Row, acompare, median, print_table

from bridge_server.core import MiniBatchKMeans as CoreKMeans
from client_py import MiniBatchKMeans


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:+.1f}%"


async def fit_predict(
    X: np.ndarray, X_new: np.ndarray, params: dict[str, Any], repeats: int, warmup: int
) -> tuple[Row, Row]:
    """Case 1 and case 3 on one server; returns the rows of both tables."""
    from sklearn.cluster import MiniBatchKMeans as SkKMeans

    async with logged_bridge() as (py, server_log):
        model = MiniBatchKMeans(**params)
        await model.init(py)
        core = CoreKMeans(**params)

        async def bridge_side() -> None:
            await model.fit(X)
            labels = await model.predict(X_new)
            assert labels.dtype == np.int32 and labels.shape == (X_new.shape[0],)

        async def core_side() -> None:
            core.fit(X).predict(X_new)

        async def sklearn_side() -> None:
            SkKMeans(**params).fit(X).predict(X_new)

        e2e = await acompare(
            {"bridge": bridge_side, "core": core_side, "sklearn": sklearn_side},
            repeats=repeats,
            warmup=warmup,
        )
        rounds = warmup + repeats
        fit_ran = server_log.take("fit", rounds)[warmup:]
        predict_ran = server_log.take("predict", rounds)[warmup:]
        server_e2e = [f + p for f, p in zip(fit_ran, predict_ran)]
        # Same seed, same data: the server's model is the in-process core's.
        expected = core.predict(X_new)
        got = await model.predict(X_new)
        assert np.array_equal(got, expected), "bridge labels differ from the core's"
        server_log.take("predict", 1)

        reply_bytes = expected.nbytes
        async with EchoPeer("tcp", reply_bytes=reply_bytes) as echo:

            async def bridge_predict() -> None:
                await model.predict(X_new)

            async def core_predict() -> None:
                core.predict(X_new)

            async def raw() -> None:
                frames = await echo.roundtrip([X_new])
                assert len(frames[0]) == reply_bytes

            pred_repeats = max(repeats * 3, 3)
            pred = await acompare(
                {"bridge": bridge_predict, "core": core_predict, "raw echo": raw},
                repeats=pred_repeats,
                warmup=warmup,
            )
            server_pred = server_log.take("predict", warmup + pred_repeats)[warmup:]
        await model.dispose()

    n = X.shape[0]
    m = {k: median(v) for k, v in e2e.items()}
    m["core in server"] = median(server_e2e)
    same_call = median([b - s for b, s in zip(e2e["bridge"], server_e2e)])
    row1 = Row(
        f"fit {n:,} x 2 + predict {X_new.shape[0]:,}",
        m,
        baseline="sklearn",
        extra={
            "bridge-core": _pct(m["bridge"] - m["core"], m["core"]),
            "bridge-core, same call": f"{same_call * 1e3:.1f} ms = "
            + _pct(same_call, m["core in server"]),
        },
    )
    p = {k: median(v) for k, v in pred.items()}
    p["core in server"] = median(server_pred)
    transport = median([b - s for b, s in zip(pred["bridge"], server_pred)])
    row3 = Row(
        f"predict {X_new.shape[0]:,} x 2 ({X_new.nbytes / 1e6:.0f} MB out, "
        f"{reply_bytes / 1e6:.0f} MB back)",
        p,
        baseline=None,
        extra={
            "bridge-core": f"{(p['bridge'] - p['core']) * 1e3:.1f} ms",
            "transport (same call)": f"{transport * 1e3:.1f} ms",
            "transport/raw": f"{transport / p['raw echo']:.2f}x",
        },
    )
    return row1, row3


async def run(n_samples: int, repeats: int, warmup: int, markdown: bool) -> None:
    """Both cases, two tables."""
    X = blobs(n_samples, seed=0)
    X_new = blobs(n_samples, seed=1)
    params = params_for(n_samples)
    row1, row3 = await fit_predict(X, X_new, params, repeats, warmup)
    print(
        "(1) fit + predict, bridge vs in-process (target: bridge/sklearn <= 1.00x, "
        "bridge-core <= +10% of core)\n"
    )
    print_table([row1], unit="ms", markdown=markdown)
    print(
        "\n(3) predict's transport share: bridge minus the same call's time on the server "
        "(target: transport/raw <= 1.50x)\n"
    )
    print_table([row3], unit="ms", markdown=markdown)


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run."""
    plan = parse(__doc__.splitlines()[0], argv, full=7, quick=3, smoke=1)
    banner("End to end: fit + predict, and predict's transport share")
    print(
        f"params: {params_for(plan.n_samples)}; OMP/BLAS threads: "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')}\n"
    )
    asyncio.run(run(plan.n_samples, plan.repeats, plan.warmup, plan.markdown))


if __name__ == "__main__":
    main()
