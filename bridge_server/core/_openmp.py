"""scikit-learn's OpenMP thread count, and the order its parallel sums take.

scikit-learn sums a batch's inertia, and the validation inertia that picks the
best of several inits, in a Cython ``prange`` loop over the rows with a ``+``
reduction, on ``_openmp_effective_n_threads()`` threads. The loop's schedule
is static: thread ``t`` gets one contiguous block of rows (libgomp's split,
:func:`static_blocks`), sums it in order starting from zero, and the blocks'
sums are added to the result (initially zero) as the threads finish. With two
threads that order does not matter (``a + b == b + a``); with more it is the
order of arrival, which the core takes to be the threads' order.

Which blocks depends on the thread count, so the last bits of the sum do too,
and with them a near-tie that the sum decides: two inits whose validation
inertias differ only by rounding, a verbose line, an early stop. The core
therefore sums these inertias in the same blocks (:class:`PrangeSum`), on the
thread count scikit-learn would use in this process (:func:`sklearn_threads`),
so that it matches scikit-learn run with default settings on the same machine.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys

import numpy as np


def sklearn_threads() -> int:
    """The thread count of scikit-learn's OpenMP loops in this process, by default.

    As scikit-learn 1.5.2 finds it: with ``OMP_NUM_THREADS`` set, OpenMP's own
    count (the variable's first entry); otherwise the smaller of OpenMP's
    default (the CPUs this process may run on) and joblib's count of usable
    physical cores (CPU affinity, a cgroup CPU quota and ``LOKY_MAX_CPU_COUNT``
    limit it; physical cores are counted only when none of those does).
    A limit set at run time (``threadpoolctl``) is not seen.
    """
    env = os.environ.get("OMP_NUM_THREADS")
    if env:  # OpenMP ignores an entry that is not a positive count
        return _omp_num_threads_env(env) or _affinity_count()
    return max(1, min(_affinity_count(), _usable_cores()))


def _omp_num_threads_env(value: str) -> int:
    """The first entry of an ``OMP_NUM_THREADS`` list (``"4,2"``), or 0 if it is not one."""
    first = value.split(",", 1)[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else 0


def _affinity_count() -> int:
    """CPUs this process may run on (OpenMP's default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.cache
def _usable_cores() -> int:
    """joblib's ``cpu_count(only_physical_cores=True)``, computed once per process."""
    logical = os.cpu_count() or 1
    limit = min(_affinity_count(), _cgroup_cpus(logical), _loky_max(logical))
    if limit < logical:
        return max(limit, 1)
    physical = _physical_cores()
    return physical if physical > 0 else max(min(logical, limit), 1)


def _loky_max(logical: int) -> int:
    value = os.environ.get("LOKY_MAX_CPU_COUNT")
    try:
        return int(value) if value is not None else logical
    except ValueError:
        return logical


def _cgroup_cpus(logical: int) -> int:
    """CPUs allowed by a cgroup CPU bandwidth quota (v2, else v1), rounded up."""
    quota = period = None
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            parts = fh.read().split()
        if len(parts) == 2:
            quota, period = parts
    except OSError:
        pass
    if quota is None:
        try:
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:
                quota = fh.read().strip()
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
                period = fh.read().strip()
        except OSError:
            return logical
    if quota == "max":
        return logical
    try:
        q, p = int(quota), int(period or 0)
    except ValueError:
        return logical
    return math.ceil(q / p) if q > 0 and p > 0 else logical


def _physical_cores() -> int:
    """Physical cores as joblib counts them, or 0 where it finds none."""
    try:
        if sys.platform == "linux":
            try:
                lines = _run(["lscpu", "--parse=core"])
            except OSError:  # no lscpu: distinct "core id" lines of /proc/cpuinfo
                with open("/proc/cpuinfo") as fh:
                    cores = {line for line in fh.read().splitlines() if line.startswith("core id")}
                return len(cores)
            return len({line for line in lines if not line.startswith("#")})
        if sys.platform == "darwin":
            return int(_run(["sysctl", "-n", "hw.physicalcpu"])[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return 0
    return 0


def _run(command: list[str]) -> list[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    return done.stdout.splitlines()


def static_blocks(n_rows: int, n_threads: int) -> list[tuple[int, int]]:
    """Rows ``(start, stop)`` of each thread in an OpenMP ``schedule(static)`` loop.

    libgomp's split: ``n_rows // n_threads`` rows each, and one more for each
    of the first ``n_rows % n_threads`` threads. Threads may get no rows.
    """
    size, extra = divmod(n_rows, n_threads)
    blocks = []
    start = 0
    for thread in range(n_threads):
        stop = start + size + (1 if thread < extra else 0)
        blocks.append((start, stop))
        start = stop
    return blocks


class PrangeSum:
    """The sum of ``n_rows`` values as scikit-learn's ``prange`` ``+`` reduction forms it.

    Feed the values in row order, in pieces of any length (:meth:`add`); each
    thread's block is summed left to right from zero in the values' dtype,
    and the blocks' sums are added to zero in thread order (:attr:`total`).
    With one thread this is the plain left-to-right sum.

    Parameters
    ----------
    n_rows : int
        Values to be added in all.
    n_threads : int
        scikit-learn's thread count (:func:`sklearn_threads`).
    dtype : numpy dtype
        The dtype the sums are taken in (X's).
    """

    def __init__(self, n_rows: int, n_threads: int, dtype: np.dtype) -> None:
        self.n_threads = max(1, n_threads)
        self._zero = np.dtype(dtype).type(0)
        self._scratch = np.empty(0, dtype=dtype)
        self._zeros = np.empty(0, dtype=np.intp)
        self.restart(n_rows)

    def restart(self, n_rows: int) -> None:
        """Start a new sum of ``n_rows`` values (the scratch is kept)."""
        # Where each thread's block ends (threads without rows are skipped).
        blocks = static_blocks(n_rows, self.n_threads)
        self._ends = [stop for start, stop in blocks if stop > start]
        self._end = 0  # index into _ends of the block being summed
        self._done = 0
        self._block: np.generic | None = None  # None: the block has no values yet
        self._total = self._zero

    def add(self, values: np.ndarray) -> None:
        """Add the next ``len(values)`` values (1-D, in the dtype given)."""
        first = 0
        while first < values.shape[0]:
            end = self._ends[self._end]
            last = min(values.shape[0], first + end - self._done)
            self._block = self._sequential(values[first:last], self._block)
            self._done += last - first
            first = last
            if self._done == end:
                self._total = self._total + self._block
                self._block = None
                self._end += 1

    @property
    def total(self) -> np.generic:
        """The sum, once all ``n_rows`` values have been added."""
        return self._total

    def _sequential(self, values: np.ndarray, start: np.generic | None) -> np.generic:
        """``start + v0 + v1 + ...`` left to right, from zero when ``start`` is None."""
        n = values.shape[0]
        if start is None and values.dtype == np.float64:
            # bincount's weights are summed in float64, in order, from zero:
            # the same sum without cumsum's full-length output.
            if self._zeros.shape[0] < n:
                self._zeros = np.zeros(n, dtype=np.intp)
            return np.bincount(self._zeros[:n], weights=values, minlength=1)[0]
        if self._scratch.shape[0] < n + 1:
            self._scratch = np.empty(n + 1, dtype=self._scratch.dtype)
        buf = self._scratch[: n + 1]
        buf[0] = self._zero if start is None else start
        buf[1:] = values
        np.cumsum(buf, out=buf)
        return buf[n]
