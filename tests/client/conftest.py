"""Fixtures of the client tests: bridges to the shared server of ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
from client_testdata import SMALL_X

from client_py import MiniBatchKMeans, PythonBridge, create_python_bridge
from client_py.launcher import ServerProcess


@pytest.fixture
async def py(server: ServerProcess) -> AsyncIterator[PythonBridge]:
    """A bridge to the shared server, disconnected after the test."""
    bridge = await create_python_bridge(address=server.endpoint, token=server.token)
    yield bridge
    await bridge.disconnect()


@pytest.fixture
async def fitted(py: PythonBridge) -> AsyncIterator[MiniBatchKMeans]:
    """A MiniBatchKMeans fitted on :data:`SMALL_X` (2 clusters, seed 0)."""
    model = MiniBatchKMeans({"n_clusters": 2, "random_state": 0, "n_init": 1})
    await model.init(py)
    await model.fit(SMALL_X)
    yield model
    await model.dispose()


@pytest.fixture
def blobs() -> np.ndarray:
    """3 well-separated blobs, 300 points in 2-D."""
    rng = np.random.RandomState(0)
    centers = np.array([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
    return np.concatenate([c + rng.randn(100, 2) for c in centers])
