"""Case 5: a JSON-over-pipes bridge (how scikit-learn-ts moves arrays) vs skbridge.

scikit-learn-ts talks to Python through a child process and JSON text: every
array becomes nested lists of numbers, serialised, written to a pipe, parsed on
the other side, and rebuilt as an array. The baseline here does exactly that
with the same core: a child Python process reads one JSON request per line on
stdin (``{"op": "fit", "params": ..., "X": [[x, y], ...]}`` or ``{"op":
"predict", "X": ...}``) and writes one JSON result per line on stdout (labels as
a list). Timed: ``fit`` on 1,000,000 x 2 then ``predict`` on 1,000,000
held-out rows, the JSON bridge vs skbridge vs the core in-process, same
parameters (k=100, batch 1024, n_init=3, random_state=0).

Run ``python benchmarks/bench_json_baseline.py [--quick | --smoke] [--markdown]``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import numpy as np
from common import HERE, banner, blobs, bridge_on, params_for, parse
from harness import Row, acompare, median, print_table

from bridge_server.core import MiniBatchKMeans as CoreKMeans
from client_py import MiniBatchKMeans


def child() -> None:
    """The JSON side's server: one JSON request per stdin line, one JSON reply per stdout line."""
    model: Any = None
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "fit":
            model = CoreKMeans(**request["params"]).fit(np.asarray(request["X"], dtype=float))
            reply: dict[str, Any] = {"ok": True}
        else:
            reply = {"ok": True, "result": model.predict(np.asarray(request["X"])).tolist()}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class JsonBridge:
    """The parent's end of :func:`child`: arrays out as nested lists, results parsed back."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "bench_json_baseline.py"), "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, request: dict[str, Any]) -> Any:
        """Send one request, wait for its reply."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        assert reply["ok"]
        return reply.get("result")

    def fit_predict(self, params: dict[str, Any], X: np.ndarray, X_new: np.ndarray) -> np.ndarray:
        """``fit`` then ``predict``, arrays as lists both ways."""
        self.call({"op": "fit", "params": params, "X": X.tolist()})
        return np.asarray(self.call({"op": "predict", "X": X_new.tolist()}), dtype=np.int32)

    def close(self) -> None:
        """End the child."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


async def run(n_samples: int, repeats: int, warmup: int, markdown: bool) -> None:
    """Three sides, one row."""
    X = blobs(n_samples, seed=0)
    X_new = blobs(n_samples, seed=1)
    params = params_for(n_samples)
    json_bridge = JsonBridge()
    try:
        async with bridge_on("tcp") as py:
            model = MiniBatchKMeans(**params)
            await model.init(py)

            async def skbridge_side() -> None:
                await model.fit(X)
                await model.predict(X_new)

            async def json_side() -> None:
                json_bridge.fit_predict(params, X, X_new)

            async def core_side() -> None:
                CoreKMeans(**params).fit(X).predict(X_new)

            times = await acompare(
                {"skbridge": skbridge_side, "json pipes": json_side, "core": core_side},
                repeats=repeats,
                warmup=warmup,
            )
            labels = json_bridge.fit_predict(params, X, X_new)
            assert np.array_equal(labels, await model.predict(X_new)), "JSON and bridge differ"
            await model.dispose()
    finally:
        json_bridge.close()
    m = {k: median(v) for k, v in times.items()}
    row = Row(
        f"fit {n_samples:,} x 2 + predict {n_samples:,}",
        m,
        baseline="skbridge",
        extra={"json - core": f"{(m['json pipes'] - m['core']) * 1e3:.0f} ms"},
    )
    print(f"params: {params}\n")
    print_table([row], unit="ms", markdown=markdown)


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run (or serve as the JSON child with ``--child``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--child"]:
        child()
        return
    plan = parse(__doc__.splitlines()[0], argv, full=5, quick=1, smoke=1)
    banner("JSON over pipes (scikit-learn-ts style) vs skbridge")
    asyncio.run(run(plan.n_samples, plan.repeats, plan.warmup, plan.markdown))


if __name__ == "__main__":
    main()
