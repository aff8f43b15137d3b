"""NumPy's sum of a large contiguous array, taken on several threads with the same bits.

Validation's first look for NaN and infinity is one sum of the whole input,
as scikit-learn's: a memory-bound pass that one core reads at about 8 GB/s
(10 ms for 200,000 x 50 float64 values). Two threads read it in about 6.

Since NumPy 2.3, NumPy sums an aligned contiguous run of ``n > 128`` values
pairwise: the sum of the first ``h = n // 2 - (n // 2) % 8`` values plus
the sum of the rest, each split the same way down to blocks of 128. (Earlier
versions summed 8,192-value buffers one after another.) :func:`split_sum`
sums the halves (or quarters) with ``np.add.reduce`` on their own threads
and adds them as that tree does, so its result is the whole sum's, bit for
bit: :func:`tree_matches` checks this once per dtype on the NumPy in use,
and the tests against ``ndarray.sum`` for both float dtypes. The threads'
sums run with floating-point errors ignored; a caller that must warn as
NumPy's sum warns (on overflow to infinities of both signs, say) can use a
finite result and repeat the sum itself otherwise: every intermediate value
of a finite pairwise sum is finite, so the same sum raised no flag.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from ._openmp import _cgroup_cpus
from ._twin import run_parts

#: Fewest values whose sum is split between threads: below, starting a
#: thread (about 100 us) costs more than the half pass saves.
SPLIT_MIN_VALUES = 1 << 20

#: Most threads used (as for labelling).
MAX_THREADS = 4

#: Values :func:`tree_matches` probes with.
_PROBE_VALUES = 3 * 8192 + 5

#: NumPy's pairwise block: runs this long or shorter are summed in one piece.
_PAIRWISE_BLOCK = 128


def usable_cores() -> int:
    """The cores this process may run on (its affinity and any cgroup CPU quota), at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores, _quota_cpus()))


@functools.cache
def _quota_cpus() -> int:
    """CPUs a cgroup CPU bandwidth quota allows (read once), or a large number without one."""
    return _cgroup_cpus(1 << 30)


@functools.cache
def tree_matches(dtype: np.dtype) -> bool:
    """Whether this NumPy sums ``dtype`` values in the tree :func:`split_sum` follows.

    Compares a four-leaf split with ``ndarray.sum`` once per dtype, on
    values of both signs over 40 binary orders of magnitude (so nearly every
    addition rounds), three of NumPy's old 8,192-value buffers and more: NumPy
    before 2.3, which summed those buffers in turn, fails it.
    """
    index = np.arange(_PROBE_VALUES, dtype=np.float64)
    exponents = (index * 7 % 41 - 20).astype(np.int64)
    values = np.ldexp(np.sin(index), exponents).astype(dtype)
    sums = {leaf: np.add.reduce(values[leaf[0] : leaf[1]]) for leaf in _leaves(0, values.size, 2)}
    with np.errstate(all="ignore"):
        return bool(_combine(0, values.size, 2, sums).tobytes() == values.sum().tobytes())


def _halve(start: int, stop: int) -> int:
    """Where NumPy's pairwise sum splits the run ``start:stop`` (more than 128 values)."""
    half = (stop - start) // 2
    return start + half - half % 8


def _leaves(start: int, stop: int, depth: int) -> list[tuple[int, int]]:
    """The runs of a pairwise split ``depth`` levels deep, left to right."""
    if depth == 0 or stop - start <= _PAIRWISE_BLOCK:
        return [(start, stop)]
    middle = _halve(start, stop)
    return _leaves(start, middle, depth - 1) + _leaves(middle, stop, depth - 1)


def _combine(
    start: int, stop: int, depth: int, sums: dict[tuple[int, int], np.generic]
) -> np.generic:
    """The pairwise sum of ``start:stop`` from its leaves' sums (as :func:`_leaves` splits)."""
    if depth == 0 or stop - start <= _PAIRWISE_BLOCK:
        return sums[start, stop]
    middle = _halve(start, stop)
    return _combine(start, middle, depth - 1, sums) + _combine(middle, stop, depth - 1, sums)


def split_sum(flat: np.ndarray, threads: int) -> np.generic:
    """``flat.sum()`` (1-D, contiguous, float32 or float64) taken on up to ``threads`` threads.

    The same value as NumPy's, bit for bit, where :func:`tree_matches`
    holds, with floating-point errors ignored (no warning, whatever the
    caller's settings). One thread, or fewer than :data:`SPLIT_MIN_VALUES`
    values: one ``np.add.reduce``. The helpers come from
    :data:`._twin.HELPERS`; a leaf for which no thread can be started is
    summed on the calling thread.
    """
    depth = 0
    while 2 ** (depth + 1) <= threads and flat.size >> depth >= SPLIT_MIN_VALUES:
        depth += 1
    leaves = _leaves(0, flat.size, depth)
    sums: dict[tuple[int, int], np.generic] = {}

    def run(leaf: tuple[int, int]) -> None:
        with np.errstate(all="ignore"):
            sums[leaf] = np.add.reduce(flat[leaf[0] : leaf[1]])

    run_parts([functools.partial(run, leaf) for leaf in leaves])
    with np.errstate(all="ignore"):
        return _combine(0, flat.size, depth, sums)
