"""``skbridge bench``: run the benchmark suite of a source checkout.

The benchmarks live in the checkout's ``benchmarks/`` directory, next to this
package; they are not installed (they need scikit-learn, the test oracle, and
they are measurements of this checkout, not part of the runtime). This module
only finds that directory and runs each script in a fresh Python process, one
after the other, so that one benchmark's servers, threads and memory never
colour the next one's figures. From an installation without a checkout it
says so and exits with status 2 (set ``SKBRIDGE_BENCHMARKS`` to point at a
``benchmarks/`` directory to run one anyway).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

#: The suite, in run order: name -> (script, what it measures).
SUITE: dict[str, tuple[str, str]] = {
    "e2e": ("bench_e2e.py", "fit + predict 1M x 2 vs scikit-learn and the core; predict transport"),
    "roundtrip": ("bench_roundtrip.py", "small-call round trip vs a raw zmq.asyncio echo"),
    "stream": ("bench_stream.py", "partial_fit streaming throughput vs the core"),
    "json": ("bench_json_baseline.py", "a JSON-over-pipes bridge (scikit-learn-ts style)"),
    "codec": ("protocol_bench.py", "the protocol codec alone, and 16 MiB each way vs raw pyzmq"),
}

ENV_DIR = "SKBRIDGE_BENCHMARKS"


def find_benchmarks() -> Path | None:
    """The ``benchmarks/`` directory: ``$SKBRIDGE_BENCHMARKS``, else the checkout's, else None."""
    given = os.environ.get(ENV_DIR)
    candidates = [Path(given)] if given else []
    candidates.append(Path(__file__).resolve().parent.parent / "benchmarks")
    for path in candidates:
        if (path / "harness.py").is_file():
            return path
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options of ``skbridge bench``."""
    parser = argparse.ArgumentParser(
        prog="skbridge bench",
        description="Run the benchmark suite (from a source checkout): "
        + "; ".join(f"{name}: {text}" for name, (_, text) in SUITE.items()),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="all repeats (several minutes)")
    mode.add_argument(
        "--quick", action="store_true", help="fewer repeats, same sizes (the default)"
    )
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SUITE), metavar="NAME", help="run only these"
    )
    parser.add_argument("--markdown", action="store_true", help="print pipe tables")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; returns 0 if all succeeded, 1 if one failed, 2 if none found."""
    args = parse_args(argv)
    where = find_benchmarks()
    if where is None:
        print(
            "skbridge bench: no benchmarks/ directory found. The benchmarks ship with the "
            "source checkout, not the installed package: run this from an editable install "
            f"of a checkout (pip install -e .), or set {ENV_DIR}=/path/to/benchmarks.",
            file=sys.stderr,
        )
        return 2
    flags = [] if args.full else ["--smoke"] if args.smoke else ["--quick"]
    if args.markdown:
        flags.append("--markdown")
    failed = []
    for name in args.only or list(SUITE):
        script = where / SUITE[name][0]
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *flags], cwd=where)
        print(f"\n[{name}: {time.perf_counter() - start:.0f} s, exit {code}]\n", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"skbridge bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
