"""The benchmark harness's run order: warm-ups, alternation, re-warming."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from bridge_server import bench


def _harness() -> ModuleType:
    where = bench.find_benchmarks()
    assert where is not None
    spec = importlib.util.spec_from_file_location("skbridge_bench_harness", where / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _recorded(**options: object) -> tuple[list[str], dict[str, list[float]]]:
    calls: list[str] = []
    ticks = iter(range(1000))
    times = _harness().compare(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        repeats=2,
        warmup=1,
        clock=lambda: float(next(ticks)),
        **options,
    )
    return calls, times


def test_sides_alternate_and_rotate_after_the_warm_ups() -> None:
    calls, times = _recorded()
    assert calls == ["a", "b", "a", "b", "b", "a"]
    assert times == {"a": [1.0, 1.0], "b": [1.0, 1.0]}


def test_rewarm_runs_each_side_untimed_right_before_its_timed_run() -> None:
    calls, times = _recorded(rewarm=True)
    assert calls == ["a", "b", "a", "a", "b", "b", "b", "b", "a", "a"]
    # Only the second of each pair is between the clock's two readings.
    assert times == {"a": [1.0, 1.0], "b": [1.0, 1.0]}
