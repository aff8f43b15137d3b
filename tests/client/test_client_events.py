"""Warnings, verbose lines and progress events reach the caller."""

from __future__ import annotations

import numpy as np
import pytest
from client_testdata import SMALL_X

from client_py import MiniBatchKMeans, PythonBridge


async def test_warning_reemitted_with_its_category(py: PythonBridge) -> None:
    init = SMALL_X[[0, 3]]
    model = MiniBatchKMeans(n_clusters=2, init=init, n_init=3)
    await model.init(py)
    with pytest.warns(RuntimeWarning, match="Explicit initial center position passed"):
        await model.fit(SMALL_X)
    await model.dispose()


async def test_warning_points_at_the_caller(py: PythonBridge) -> None:
    import warnings

    model = MiniBatchKMeans(n_clusters=2, init=SMALL_X[[0, 3]].tolist(), n_init=3)
    await model.init(py)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await model.fit(SMALL_X)
    assert caught and caught[0].filename == __file__
    await model.dispose()


async def test_numpy_warnings_in_a_call_reach_every_caller(py: PythonBridge) -> None:
    import warnings

    # Finite, so accepted, but the squared distances overflow: NumPy warns
    # inside the server's worker thread, where the caller used not to see it.
    X = np.array([[1e200, 0.0], [0.0, 1e200], [1.0, 1.0], [2.0, 2.0]] * 10)
    model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
    await model.init(py)
    for _ in range(2):  # the second call gets its own, though raised at the same place
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await model.fit(X)
        messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
        assert any("overflow encountered" in m for m in messages), messages
    await model.dispose()


async def test_verbose_lines_printed(py: PythonBridge, capsys: pytest.CaptureFixture[str]) -> None:
    model = MiniBatchKMeans(n_clusters=2, random_state=0, verbose=1, n_init=1)
    await model.init(py)
    await model.fit(SMALL_X)
    out = capsys.readouterr().out
    assert "Minibatch step" in out or "Init" in out
    await model.dispose()


async def test_progress_callback(py: PythonBridge, blobs: np.ndarray) -> None:
    seen: list[tuple[int, int, str]] = []
    model = MiniBatchKMeans(n_clusters=3, random_state=0, batch_size=10, max_no_improvement=None)
    await model.init(py)
    await model.fit(blobs, progress=lambda done, total, phase: seen.append((done, total, phase)))
    assert seen
    assert all(isinstance(d, int) and isinstance(t, int) and isinstance(p, str) for d, t, p in seen)
    dones = [d for d, _, p in seen if p == seen[0][2]]
    assert dones == sorted(dones)
    await model.dispose()


async def test_bridge_default_progress(py: PythonBridge, blobs: np.ndarray) -> None:
    seen: list[str] = []
    py.progress = lambda done, total, phase: seen.append(phase)
    try:
        model = MiniBatchKMeans(n_clusters=3, random_state=0, batch_size=10)
        await model.init(py)
        await model.fit(blobs)
        assert seen
        seen.clear()
        await model.fit(blobs, progress=None)  # per call: off
        assert not seen
        await model.dispose()
    finally:
        py.progress = None
