"""Time validation's NaN/infinity look: one sum on one thread against the split sum.

    python benchmarks/finite_check.py [--rows 200000] [--features 50] [--repeats 15]

Prints, for float64 and float32 data of the given shape, the minimum over
the repeats of: NumPy's ``ndarray.sum`` (scikit-learn's first look), the
core's :func:`split_sum` on the usable cores, and both libraries' whole
``check_array``. The two sums are asserted equal bit for bit.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge_server.core._split_sum import split_sum, usable_cores  # noqa: E402
from bridge_server.core._validation import check_array  # noqa: E402


def best_ms(call: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls (after one untimed), in milliseconds."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def time_dtype(dtype: type, rows: int, features: int, repeats: int, threads: int) -> None:
    """Print the four timings for ``rows x features`` normal values of ``dtype``."""
    from sklearn.utils import check_array as sk_check_array

    X = np.random.RandomState(0).normal(size=(rows, features)).astype(dtype)
    flat = X.reshape(-1)
    assert split_sum(flat, threads).tobytes() == X.sum().tobytes()
    calls = {
        "ndarray.sum (one thread)": lambda: X.sum(),
        f"split_sum ({threads} threads)": lambda: split_sum(flat, threads),
        "core check_array": lambda: check_array(X, input_name="X"),
        "scikit-learn check_array": lambda: sk_check_array(X, input_name="X"),
    }
    for name, call in calls.items():
        print(f"  {np.dtype(dtype).name:8s} {name:28s} {best_ms(call, repeats):7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    threads = usable_cores()
    print(f"{args.rows} x {args.features}, {threads} usable cores; minima of {args.repeats} runs")
    for dtype in (np.float64, np.float32):
        time_dtype(dtype, args.rows, args.features, args.repeats, threads)


if __name__ == "__main__":
    main()
