"""Many calls in flight on one bridge; timeouts and cancellation reach the server."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from client_testdata import LONG_FIT, SMALL_X, long_fit_data

from client_py import CallTimeout, MiniBatchKMeans, PythonBridge


async def test_gather_over_ten_estimators(py: PythonBridge, blobs: np.ndarray) -> None:
    models = [MiniBatchKMeans(n_clusters=3, random_state=seed, n_init=1) for seed in range(10)]
    await asyncio.gather(*(m.init(py) for m in models))
    fitted = await asyncio.gather(*(m.fit(blobs) for m in models))
    assert fitted == models
    labels = await asyncio.gather(*(m.predict(blobs) for m in models))
    centers = await asyncio.gather(*(m.cluster_centers_ for m in models))
    for model, lab, cen in zip(models, labels, centers):
        assert lab.shape == (len(blobs),) and cen.shape == (3, 2)
        np.testing.assert_array_equal(lab, await model.labels_)
    await asyncio.gather(*(m.dispose() for m in models))


async def test_many_small_calls_in_flight(py: PythonBridge) -> None:
    model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
    await model.init(py)
    await model.fit(SMALL_X)
    results = await asyncio.gather(
        *(model.predict(SMALL_X[i : i + 1]) for i in range(6) for _ in range(10))
    )
    assert len(results) == 60
    await model.dispose()


async def test_timeout_cancels_on_the_server(py: PythonBridge) -> None:
    X = long_fit_data()
    model = MiniBatchKMeans(LONG_FIT)
    await model.init(py)
    started = time.monotonic()
    with pytest.raises(CallTimeout) as info:
        await model.fit(X, timeout=0.5)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 3
    # Calls on one instance run in order: this one runs only once the fit has stopped.
    started = time.monotonic()
    await model.set_output(transform="default", timeout=10)
    assert time.monotonic() - started < 5
    await model.dispose()


async def test_task_cancellation_cancels_on_the_server(py: PythonBridge) -> None:
    X = long_fit_data()
    model = MiniBatchKMeans(LONG_FIT)
    await model.init(py)
    task = asyncio.ensure_future(model.fit(X))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    # Calls on one instance run in order: this one runs only once the fit has stopped.
    assert await model.set_output(transform="default") is model
    assert time.monotonic() - started < 5
    await model.dispose()


async def test_default_timeout_of_the_bridge(py: PythonBridge) -> None:
    X = long_fit_data()
    model = MiniBatchKMeans(LONG_FIT)
    await model.init(py)
    py.timeout = 0.3
    try:
        with pytest.raises(CallTimeout):
            await model.fit(X)
    finally:
        py.timeout = None
    await model.dispose()


async def test_dispose_during_fit(py: PythonBridge) -> None:
    from client_py import CallCancelled

    X = long_fit_data()
    model = MiniBatchKMeans(LONG_FIT)
    await model.init(py)
    task = asyncio.ensure_future(model.fit(X))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await model.dispose()
    with pytest.raises(CallCancelled):
        await task
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("heartbeat", [True, False])
async def test_heartbeat_keeps_session_while_loop_blocked(tmp_path, heartbeat: bool) -> None:
    """User code blocking the loop past the lease keeps its session only thanks to the heartbeat."""
    from client_py import BridgeConnectionError, create_python_bridge
    from client_py.launcher import launch_server

    server = launch_server(data_dir=tmp_path, extra_args=["--lease", "1", "--heartbeat", "0.2"])
    try:
        py = await create_python_bridge(
            address=server.endpoint, token=server.token, heartbeat=heartbeat
        )
        try:
            model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
            await model.init(py)
            time.sleep(2.5)  # blocks the event loop for more than the lease
            if heartbeat:
                await model.fit(SMALL_X)
                assert (await model.labels_).shape == (6,)
            else:  # the control: without the heartbeat the session is gone
                with pytest.raises(BridgeConnectionError, match="session"):
                    await model.fit(SMALL_X, timeout=5)
                assert not py.connected
        finally:
            await py.disconnect()
    finally:
        server.stop()
