"""The core tests run scikit-learn's OpenMP loops, and the core's sums, on two threads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from core_oracle import openmp_threads


@pytest.fixture(autouse=True, scope="module")
def _two_openmp_threads() -> Iterator[None]:
    # scikit-learn's inertias, and the near-ties they decide, depend on its
    # OpenMP thread count; the core follows the count scikit-learn would use.
    # Two threads on every machine: the comparisons are the same everywhere,
    # and they exercise the split sums (one thread would be a plain sum).
    with openmp_threads(2):
        yield
