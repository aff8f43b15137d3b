"""A small benchmark harness shared by every skbridge benchmark.

Each *side* is a zero-argument callable doing one unit of work. :func:`compare`
runs warm-ups (discarded), then alternates the sides in one process
(``a b a b ...``, so drift in machine load hits every side alike) and returns
the wall-clock seconds of every timed run. :func:`median` and
:func:`print_table` summarise them.

Example::

    times = compare({"ours": lambda: f(x), "theirs": lambda: g(x)}, repeats=5)
    print_table([summarise("f vs g", times, baseline="theirs")])
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field


def compare(
    sides: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    *,
    rewarm: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Time each side ``repeats`` times, alternating sides, after ``warmup`` rounds.

    Parameters
    ----------
    sides : mapping of str to callable
        Name -> zero-argument callable; its return value is discarded.
    repeats : int, default=5
        Timed rounds; in each round every side runs once, in the mapping's
        order rotated by the round number so that no side always runs first.
    warmup : int, default=1
        Untimed rounds run first (imports, caches, BLAS thread pools).
    rewarm : bool, default=False
        Run each side once more, untimed, right before each of its timed
        runs, so that every side is timed in its own steady state rather than
        in what the other side left behind. OpenMP runtimes (libgomp, which
        scikit-learn's wheels use) keep their workers spinning for several
        milliseconds after a parallel region; without this, whichever side
        runs next shares the cores with them.
    clock : callable, default=time.perf_counter
        Returns seconds.

    Returns
    -------
    dict of str to list of float
        Seconds of every timed run, per side, in run order.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if rewarm:
                sides[name]()
            start = clock()
            sides[name]()
            times[name].append(clock() - start)
    return times


async def acompare(
    sides: Mapping[str, Callable[[], Awaitable[object]]],
    repeats: int = 5,
    warmup: int = 1,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """:func:`compare` for coroutine functions, awaited in the running event loop.

    The same rules (warm-ups discarded, sides rotated each round); each timed
    run is one ``await side()``, so a side costs no extra loop start-up.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            await sides[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            await sides[name]()
            times[name].append(clock() - start)
    return times


def median(values: Sequence[float]) -> float:
    """Median of the timed runs (seconds)."""
    return float(statistics.median(values))


@dataclass
class Row:
    """One line of a results table: a case, median seconds per side, ratios to a baseline."""

    case: str
    medians: dict[str, float]
    baseline: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def ratio(self, side: str) -> float | None:
        """``median(side) / median(baseline)``, or None without a baseline."""
        if self.baseline is None or self.medians.get(self.baseline, 0.0) == 0.0:
            return None
        return self.medians[side] / self.medians[self.baseline]


def summarise(
    case: str,
    times: Mapping[str, Sequence[float]],
    baseline: str | None = None,
    **extra: str,
) -> Row:
    """Reduce :func:`compare`'s output to a :class:`Row` of medians."""
    return Row(case, {k: median(v) for k, v in times.items()}, baseline, dict(extra))


def print_table(rows: Sequence[Row], *, unit: str = "ms", markdown: bool = False) -> str:
    """Print (and return) a table of medians and ratios to each row's baseline.

    ``markdown=True`` prints a GitHub pipe table (for the README) instead of
    aligned plain text.
    """
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
    sides: list[str] = []
    extras: list[str] = []
    for row in rows:
        sides += [s for s in row.medians if s not in sides]
        extras += [e for e in row.extra if e not in extras]
    header = ["case"] + [f"{s} [{unit}]" for s in sides]
    ratio_sides = [s for s in sides if any(r.baseline not in (None, s) for r in rows)]
    header += [f"{s}/base" for s in ratio_sides] + extras
    lines = [header]
    for row in rows:
        cells = [row.case]
        cells += [f"{row.medians[s] * scale:.1f}" if s in row.medians else "" for s in sides]
        for s in ratio_sides:
            r = row.ratio(s) if s in row.medians else None
            cells.append("" if r is None or s == row.baseline else f"{r:.2f}x")
        cells += [row.extra.get(e, "") for e in extras]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    if markdown:
        rule = ["-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
        lines.insert(1, rule)
        text = "\n".join(
            "| "
            + " | ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths))
            )
            + " |"
            for line in lines
        )
        print(text)
        return text
    text = "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        )
        for line in lines
    )
    print(text)
    return text


def machine() -> str:
    """One line naming the machine: CPU model, cores, Python, NumPy and its BLAS."""
    import os

    import numpy as np

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = "?"
    try:
        config = np.show_config(mode="dicts")  # numpy >= 1.26
        info = config.get("Build Dependencies", {}).get("blas", {})
        blas = f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except TypeError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__} ({blas})"
    )
