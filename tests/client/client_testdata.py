"""Data shared by the client tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

import numpy as np

#: scikit-learn-ts's own KMeans test data.
SMALL_X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]], dtype=np.float64)

#: Options that make fit run for many seconds: no early stopping, many steps.
LONG_FIT = {
    "n_clusters": 20,
    "batch_size": 256,
    "max_iter": 10_000,
    "max_no_improvement": None,
    "random_state": 0,
    "n_init": 1,
}


def long_fit_data() -> np.ndarray:
    """Data for :data:`LONG_FIT`: 20,000 points in 8-D."""
    return np.random.RandomState(0).randn(20_000, 8)
