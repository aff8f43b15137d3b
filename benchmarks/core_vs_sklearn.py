"""Time the NumPy core's MiniBatchKMeans against scikit-learn 1.5.2's, and check they agree.

Cases:
  seed   25,000 x 2 blobs on a 10 x 10 grid of centers, k=100, batch 256*cpus,
         n_init=10 (scikit-learn's plot_birch_vs_minibatchkmeans example)
  big2d  1,000,000 x 2, k=100, batch 1024, n_init=3
  wide   200,000 x 50, k=50
  wide32 the same in float32 (embeddings' usual dtype; no float32 first pass)
  emb    100,000 x 128 float32, k=100 (embedding-like: wide, many centers)

For each case: median fit and predict (held-out rows) time per side, the ratios
core/sklearn, the inertia ratio; asserts the same ``n_steps_`` and identical
labels. Each timed run follows an untimed run of the same side
(``harness.compare(rewarm=True)``): scikit-learn's OpenMP workers spin for
milliseconds after each call, and would otherwise share the cores with the
core's next run; ``--back-to-back`` times without it. "predict" repeats a
fitted model's predict (the core reuses its grid of certain cells for
unchanged centers); "predict, cold" rebuilds it per call. "partial_fit x10"
streams the data through ``partial_fit`` in 10 equal chunks (the same
centers asserted).
Run ``python benchmarks/core_vs_sklearn.py [--quick] [--repeats N]``;
``--stops`` times nothing and reports how close each case's early-stopping
comparisons came to the bounds they are decided with (seeds 0-4);
``--exact-stops`` also times the core's fit with every batch inertia summed
in scikit-learn's order (what the bounds save); ``--phases`` times only the
fits, split into their phases (validation, initialisation, the minibatch loop,
the final labelling) for both libraries.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import compare, print_table, summarise  # noqa: E402
from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans  # noqa: E402
from sklearn.cluster import _kmeans as _sk_kmeans  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402

from bridge_server.core import MiniBatchKMeans, _early_stop, _minibatch_kmeans, _prune  # noqa: E402


def seed_case() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    xx = np.linspace(-22, 22, 10)
    xx, yy = np.meshgrid(xx, xx)
    grid = np.hstack((np.ravel(xx)[:, np.newaxis], np.ravel(yy)[:, np.newaxis]))
    X, _ = make_blobs(n_samples=25000, centers=grid, random_state=42)
    X_new, _ = make_blobs(n_samples=25000, centers=grid, random_state=43)
    params = dict(
        init="k-means++",
        n_clusters=100,
        batch_size=256 * (os.cpu_count() or 1),
        n_init=10,
        max_no_improvement=10,
        verbose=0,
        random_state=0,
    )
    return X, X_new, params


def big2d_case() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    X, _ = make_blobs(n_samples=1_000_000, n_features=2, centers=100, random_state=0)
    X_new, _ = make_blobs(n_samples=200_000, n_features=2, centers=100, random_state=1)
    return X, X_new, dict(n_clusters=100, batch_size=1024, n_init=3, random_state=0)


def wide_case() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    X, _ = make_blobs(n_samples=200_000, n_features=50, centers=50, random_state=0)
    X_new, _ = make_blobs(n_samples=50_000, n_features=50, centers=50, random_state=1)
    return X, X_new, dict(n_clusters=50, batch_size=1024, random_state=0)


def wide32_case() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    X, X_new, params = wide_case()
    return X.astype(np.float32), X_new.astype(np.float32), params


def embedding_case() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    X, _ = make_blobs(n_samples=100_000, n_features=128, centers=100, random_state=0)
    X_new, _ = make_blobs(n_samples=20_000, n_features=128, centers=100, random_state=1)
    params = dict(n_clusters=100, batch_size=1024, random_state=0)
    return X.astype(np.float32), X_new.astype(np.float32), params


CASES: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, dict[str, Any]]]] = {
    "seed 25k x 2, k=100": seed_case,
    "1M x 2, k=100": big2d_case,
    "200k x 50, k=50": wide_case,
    "200k x 50 float32, k=50": wide32_case,
    "100k x 128 float32, k=100": embedding_case,
}


#: Chunks each case's data is streamed in for the partial_fit row.
STREAM_CHUNKS = 10


def stream(cls: type, X: np.ndarray, params: dict[str, Any]) -> Any:
    """``cls(**params)`` after ``partial_fit`` on X in :data:`STREAM_CHUNKS` equal chunks."""
    est = cls(**params)
    chunk = -(-X.shape[0] // STREAM_CHUNKS)
    for start in range(0, X.shape[0], chunk):
        est.partial_fit(X[start : start + chunk])
    return est


def cold_predict(est: MiniBatchKMeans, X: np.ndarray) -> np.ndarray:
    """``est.predict(X)`` with no grid kept from an earlier call."""
    _prune.clear_cache()
    return est.predict(X)


@contextlib.contextmanager
def exact_stops() -> Iterator[None]:
    """Inside: the core's fits sum every batch inertia in scikit-learn's order.

    As the core did before early stopping was decided from bounds (see
    ``_early_stop``); the results are the same, so this times what the
    bounds save. Wraps one function of the core while active.
    """
    steps_loop = MiniBatchKMeans._minibatch_steps

    def exact(self: MiniBatchKMeans, *args: Any) -> Any:
        return steps_loop(self, *args[:-1], "exact")

    MiniBatchKMeans._minibatch_steps = exact  # type: ignore[method-assign]
    try:
        yield
    finally:
        MiniBatchKMeans._minibatch_steps = steps_loop  # type: ignore[method-assign]


def fit_exact_stops(X: np.ndarray, params: dict[str, Any]) -> MiniBatchKMeans:
    """A core fit with every batch inertia summed in scikit-learn's order."""
    with exact_stops():
        return MiniBatchKMeans(**params).fit(X)


def stops(only: str | None, seeds: range = range(5)) -> None:
    """How close the early-stopping comparisons of the core's fits came to their bounds.

    For each case and ``random_state`` in ``seeds``: the number of "did the
    smoothed inertia improve" comparisons, the smallest gap between the two
    values compared and the largest bound carried (both relative to the
    values), and how many fits reran their steps in scikit-learn's order
    because a comparison fell inside the bounds (see ``_early_stop``).
    Observes the core by wrapping two of its functions; times nothing.
    """
    gaps: list[float] = []
    bounds: list[float] = []
    runs: list[str] = []
    less = _early_stop.less
    steps_loop = MiniBatchKMeans._minibatch_steps

    def observed_less(a: _early_stop.Bounded, b: _early_stop.Bounded) -> bool:
        scale = max(abs(a.value), abs(b.value)) or 1.0
        gaps.append(abs(a.value - b.value) / scale)
        bounds.append(max(a.error, b.error) / scale)
        return less(a, b)

    def observed_steps(self: MiniBatchKMeans, *args: Any) -> Any:
        runs.append(args[-1])
        return steps_loop(self, *args)

    _early_stop.less = observed_less  # type: ignore[assignment]
    MiniBatchKMeans._minibatch_steps = observed_steps  # type: ignore[method-assign]
    try:
        for name, make in CASES.items():
            if only and only not in name:
                continue
            X, _, params = make()
            for seed in seeds:
                gaps.clear(), bounds.clear(), runs.clear()
                est = MiniBatchKMeans(**dict(params, random_state=seed)).fit(X)
                print(
                    f"{name}, random_state={seed}: {len(gaps)} comparisons, "
                    f"closest {min(gaps, default=float('nan')):.1e}, "
                    f"largest bound {max(bounds, default=float('nan')):.1e}, "
                    f"modes {'+'.join(runs)}, n_steps_ {est.n_steps_}",
                    flush=True,
                )
    finally:
        _early_stop.less = less  # type: ignore[assignment]
        MiniBatchKMeans._minibatch_steps = steps_loop  # type: ignore[method-assign]


def run(
    repeats: int, warmup: int, only: str | None, rewarm: bool = True, with_exact: bool = False
) -> None:
    rows = []
    for name, make in CASES.items():
        if only and only not in name:
            continue
        X, X_new, params = make()
        ours = MiniBatchKMeans(**params).fit(X)
        ref = SkMiniBatchKMeans(**params).fit(X)
        assert ours.n_steps_ == ref.n_steps_, (name, ours.n_steps_, ref.n_steps_)
        assert np.array_equal(ours.labels_, ref.labels_), name
        assert np.array_equal(ours.predict(X_new), ref.predict(X_new)), name
        inertia_ratio = ours.inertia_ / ref.inertia_

        fit_sides: dict[str, Callable[[], object]] = {
            "core": lambda X=X, p=params: MiniBatchKMeans(**p).fit(X),
            "sklearn": lambda X=X, p=params: SkMiniBatchKMeans(**p).fit(X),
        }
        if with_exact:
            exact = fit_exact_stops(X, params)
            assert exact.n_steps_ == ours.n_steps_, name
            assert np.array_equal(exact.cluster_centers_, ours.cluster_centers_), name
            fit_sides["core, exact stops"] = lambda X=X, p=params: fit_exact_stops(X, p)
        fit_times = compare(
            fit_sides,
            repeats=repeats,
            warmup=warmup,
            rewarm=rewarm,
        )
        # Predict is short, so it gets more rounds. The core keeps its grid of
        # certain cells per set of centers (a fitted model's repeated predicts
        # build one); "predict, cold" drops it before every call.
        predict_times = compare(
            {
                "core": lambda X_new=X_new, est=ours: est.predict(X_new),
                "sklearn": lambda X_new=X_new, est=ref: est.predict(X_new),
            },
            repeats=max(5 * repeats, 15),
            warmup=1,
            rewarm=rewarm,
        )
        cold_times = compare(
            {
                "core": lambda X_new=X_new, est=ours: cold_predict(est, X_new),
                "sklearn": lambda X_new=X_new, est=ref: est.predict(X_new),
            },
            repeats=max(5 * repeats, 15),
            warmup=1,
            rewarm=rewarm,
        )
        streamed = stream(MiniBatchKMeans, X, params)
        assert np.array_equal(
            streamed.cluster_centers_, stream(SkMiniBatchKMeans, X, params).cluster_centers_
        ), name
        stream_times = compare(
            {
                "core": lambda X=X, p=params: stream(MiniBatchKMeans, X, p),
                "sklearn": lambda X=X, p=params: stream(SkMiniBatchKMeans, X, p),
            },
            repeats=repeats,
            warmup=warmup,
            rewarm=rewarm,
        )
        extra = dict(n_steps=str(ours.n_steps_), inertia=f"{inertia_ratio:.12f}")
        rows.append(summarise(f"fit     {name}", fit_times, baseline="sklearn", **extra))
        rows.append(summarise(f"predict {name}", predict_times, baseline="sklearn"))
        rows.append(summarise(f"predict, cold {name}", cold_times, baseline="sklearn"))
        rows.append(
            summarise(f"partial_fit x{STREAM_CHUNKS} {name}", stream_times, baseline="sklearn")
        )
        print(f"done: {name}", flush=True)
    print()
    print_table(rows)


#: The phases ``--phases`` times: (name, owner, attribute) for each library.
#: Each library's "minibatch loop" is what its fit spends outside them (the
#: loop and the little glue around the phases), measured alike on both sides.
CORE_PHASES = (
    ("validation", MiniBatchKMeans, "_validated"),
    ("initialisation", MiniBatchKMeans, "_init_centroids"),
    ("labels and inertia", _minibatch_kmeans.steps, "labels_inertia"),
)
SKLEARN_PHASES = (
    ("validation", SkMiniBatchKMeans, "_validate_data"),
    ("initialisation", SkMiniBatchKMeans, "_init_centroids"),
    ("labels and inertia", _sk_kmeans, "_labels_inertia_threadpool_limit"),
    ("row norms", _sk_kmeans, "row_norms"),
)


@contextlib.contextmanager
def timed_phases(
    phases: tuple[tuple[str, Any, str], ...], into: dict[str, float]
) -> Iterator[None]:
    """Wrap each phase's function to add its wall time (seconds) to ``into[name]``."""
    # (An inherited method is wrapped on the subclass, and the wrapper deleted after.)
    saved = [(owner, attr, getattr(owner, attr), attr in vars(owner)) for _, owner, attr in phases]

    def timer(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                into[name] = into.get(name, 0.0) + time.perf_counter() - start

        return timed

    for (name, owner, attr), (_, _, func, _) in zip(phases, saved, strict=True):
        setattr(owner, attr, timer(name, func))
    try:
        yield
    finally:
        for owner, attr, func, own in saved:
            if own:
                setattr(owner, attr, func)
            else:
                delattr(owner, attr)


def fit_phases(only: str | None, rounds: int = 7) -> None:
    """Median per-phase times of ``rounds`` alternated fits of each library.

    Each timed fit follows an untimed one of the same library (as the
    timed comparison's re-warm). Prints, per case and library, the fit's
    median total and, for that fit, each phase; the "minibatch loop" is the
    total less the other phases.
    """
    for name, make in CASES.items():
        if only is not None and only not in name:
            continue
        X, _, params = make()
        results: dict[str, list[tuple[float, dict[str, float]]]] = {"core": [], "sklearn": []}
        sides = (
            ("core", MiniBatchKMeans, CORE_PHASES),
            ("sklearn", SkMiniBatchKMeans, SKLEARN_PHASES),
        )
        for _ in range(rounds + 1):  # the first round warms up
            for side, cls, phases in sides:
                cls(**params).fit(X)
                parts: dict[str, float] = {}
                with timed_phases(phases, parts):
                    start = time.perf_counter()
                    cls(**params).fit(X)
                    total = time.perf_counter() - start
                results[side].append((total, parts))
        print(f"\n{name}: medians of {rounds} fits per library [ms]")
        for side, _, _ in sides:
            runs = sorted(results[side][1:], key=lambda run: run[0])
            total, parts = runs[len(runs) // 2]
            parts["minibatch loop"] = total - sum(parts.values())
            shown = ", ".join(f"{phase} {seconds * 1e3:.1f}" for phase, seconds in parts.items())
            print(f"  {side:8s} total {total * 1e3:7.1f}: {shown}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 timed round, no warm-up fit")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--case", default=None, help="run only cases whose name contains this")
    parser.add_argument(
        "--back-to-back",
        action="store_true",
        help="time each run right after the other library's (no untimed re-warm run before it)",
    )
    parser.add_argument(
        "--exact-stops",
        action="store_true",
        help="also time the core's fit with every batch inertia in scikit-learn's order",
    )
    parser.add_argument(
        "--stops",
        action="store_true",
        help="time nothing; report how close early stopping came to its bounds (seeds 0-4)",
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="time only the fits, split into validation, init, the loop and the final labels",
    )
    args = parser.parse_args(argv)
    if args.phases:
        fit_phases(args.case)
        return
    if args.stops:
        stops(args.case)
        return
    repeats, warmup = (1, 0) if args.quick else (args.repeats, 1)
    run(
        repeats,
        warmup,
        args.case,
        rewarm=not (args.back_to_back or args.quick),
        with_exact=args.exact_stops,
    )


if __name__ == "__main__":
    main()
