"""The core in this checkout against the core at another commit, alternated in one process.

On a noisy host (a virtual machine whose neighbours come and go) the ratio of
the core to scikit-learn drifts by tens of percent from one run to the next,
which hides what a change itself did. This script loads two versions of
``bridge_server.core`` side by side: this checkout's, and the one at ``BASE``
exported from git under another package name. For each case of
``core_vs_sklearn.py`` it times fit, predict (held-out rows) and the
``partial_fit`` stream of 10 chunks on both, alternating them round by round,
and asserts the same centers and labels. It prints, per row, both sides'
fastest run and the ratio of the two (noise only ever adds time, so the
minima are the steadiest figures), and the median of each round's ratio.

``--small-predicts`` times predicts of 10,000 to 100,000 rows instead
(labelled on two threads, where a thread start per call showed), 300
alternated calls each, and prints both sides' medians and the median ratio.

Usage::

    python benchmarks/core_vs_commit.py fea4f43 --case float32 --rounds 7
    python benchmarks/core_vs_commit.py e064dd2 --small-predicts
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core_vs_sklearn import CASES, stream  # noqa: E402
from harness import compare  # noqa: E402

from bridge_server.core import MiniBatchKMeans  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_base(commit: str, into: Path) -> type:
    """``MiniBatchKMeans`` of ``bridge_server/core`` at ``commit``, as package ``base_core``."""
    archive = into / "core.tar"
    with archive.open("wb") as fh:
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "bridge_server/core"], stdout=fh, check=True
        )
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 on
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)
    (into / "bridge_server" / "core").rename(into / "base_core")
    sys.path.insert(0, str(into))
    return importlib.import_module("base_core").MiniBatchKMeans


def run(base_cls: type, rounds: int, only: str | None) -> None:
    rows: list[tuple[str, list[float], list[float]]] = []
    for name, make in CASES.items():
        if only and only not in name:
            continue
        X, X_new, params = make()
        new, old = MiniBatchKMeans(**params).fit(X), base_cls(**params).fit(X)
        assert new.n_steps_ == old.n_steps_, name
        assert np.array_equal(new.cluster_centers_, old.cluster_centers_), name
        assert np.array_equal(new.predict(X_new), old.predict(X_new)), name
        a, b = stream(MiniBatchKMeans, X, params), stream(base_cls, X, params)
        assert np.array_equal(a.cluster_centers_, b.cluster_centers_), name
        jobs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "fit": (
                lambda X=X, p=params: MiniBatchKMeans(**p).fit(X),
                lambda X=X, p=params: base_cls(**p).fit(X),
            ),
            "predict": (
                lambda X_new=X_new, est=new: est.predict(X_new),
                lambda X_new=X_new, est=old: est.predict(X_new),
            ),
            "partial_fit x10": (
                lambda X=X, p=params: stream(MiniBatchKMeans, X, p),
                lambda X=X, p=params: stream(base_cls, X, p),
            ),
        }
        for job, (this, base) in jobs.items():
            repeats = 5 * rounds if job == "predict" else rounds
            times = compare({"this": this, "base": base}, repeats=repeats, warmup=1, rewarm=True)
            rows.append((f"{job} {name}", times["this"], times["base"]))
        print(f"done: {name}", flush=True)
    print()
    width = max(len(case) for case, _, _ in rows)
    print(f"{'case':{width}}  this min [ms]  base min [ms]  min/min  median of ratios")
    for case, this, base in rows:
        ratios = [t / b for t, b in zip(this, base)]
        print(
            f"{case:{width}}  {min(this) * 1e3:13.1f}  {min(base) * 1e3:13.1f}"
            f"  {min(this) / min(base):6.3f}x  {statistics.median(ratios):15.3f}x"
        )


#: (rows, features) of the ``--small-predicts`` inputs (50 centers each).
SMALL_PREDICTS = ((10_000, 50), (20_000, 50), (50_000, 50), (100_000, 2))


def small_predicts(base_cls: type, calls: int = 300) -> None:
    """Median predict time of each side on :data:`SMALL_PREDICTS`, alternated call by call."""
    rng = np.random.RandomState(0)
    for n_rows, n_features in SMALL_PREDICTS:
        X = rng.normal(size=(n_rows, n_features)) + rng.randint(0, 10, size=(n_rows, 1)) * 3.0
        params = dict(n_clusters=50, random_state=0)
        new, old = MiniBatchKMeans(**params).fit(X[:5000]), base_cls(**params).fit(X[:5000])
        assert np.array_equal(new.predict(X), old.predict(X))
        this, base = [], []
        for _ in range(calls):
            for side, est in ((this, new), (base, old)):
                start = time.perf_counter()
                est.predict(X)
                side.append(time.perf_counter() - start)
        ratio = statistics.median(t / b for t, b in zip(this, base, strict=True))
        print(
            f"predict {n_rows:,} x {n_features}: this {statistics.median(this) * 1e3:.2f} ms,"
            f" base {statistics.median(base) * 1e3:.2f} ms, median ratio {ratio:.3f}x"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the commit to compare with (any git revision)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--case", default=None, help="run only cases whose name contains this")
    parser.add_argument(
        "--small-predicts",
        action="store_true",
        help="time predicts of 10,000 to 100,000 rows instead of the cases",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(args.base, Path(tmp))
        if args.small_predicts:
            small_predicts(base)
        else:
            run(base, args.rounds, args.case)


if __name__ == "__main__":
    main()
