"""A dependency-free progress line for long client-side jobs.

On a terminal it redraws one line on stderr (rows done, rate, ETA); elsewhere
it stays silent, and the caller prints a summary at the end instead.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class ProgressLine:
    """Progress of one phase, counted in rows.

    Parameters
    ----------
    label : str
        Phase name shown at the start of the line.
    total : int
        Rows in all (0 when unknown: no ETA is shown).
    stream : text stream, optional
        Where to draw; ``sys.stderr`` by default.
    enabled : bool, optional
        Force drawing on or off; by default only when ``stream`` is a terminal.
    min_interval : float
        Seconds between redraws.
    """

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval: float = 0.1,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.min_interval = min_interval
        self.done = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since the phase started."""
        return time.perf_counter() - self.started

    def update(self, rows: int) -> None:
        """Count ``rows`` more rows done; redraw if it is time."""
        self.done += rows
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw >= self.min_interval or self.done >= self.total):
            self._last_draw = now
            self._draw()

    def _draw(self) -> None:
        elapsed = max(self.elapsed, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.label:<10}", f"{_si(self.done)} rows"]
        if self.total:
            frac = min(1.0, self.done / self.total)
            width = 24
            fill = int(frac * width)
            parts.insert(1, f"[{'#' * fill}{'.' * (width - fill)}] {frac:6.1%}")
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            parts.append(f"{_si(rate)} rows/s  ETA {_clock(eta)}")
        else:
            parts.append(f"{_si(rate)} rows/s")
        self.stream.write("\r" + "  ".join(parts) + "\x1b[K")
        self.stream.flush()

    def close(self) -> float:
        """Finish the line; returns the phase's elapsed seconds."""
        elapsed = self.elapsed
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        return elapsed
