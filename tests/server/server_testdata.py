"""Data and options shared by the server tests (importable, unlike conftest)."""

from __future__ import annotations

import numpy as np

#: Options of a fit that runs far longer than any test waits.
LONG_FIT = {"n_clusters": 8, "max_iter": 100_000, "max_no_improvement": None, "random_state": 0}


def small_X(seed: int = 0, n: int = 500) -> np.ndarray:
    """Small blobs-like data."""
    rng = np.random.RandomState(seed)
    centers = rng.rand(4, 2) * 10
    return centers[rng.randint(4, size=n)] + rng.randn(n, 2) * 0.3
