"""Data references (SPEC 5.5/5.6) and the limits checked before sending."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client_py import (
    DataRef,
    DataRefError,
    LimitExceeded,
    MiniBatchKMeans,
    PythonBridge,
    RemoteError,
    create_python_bridge,
)
from client_py.launcher import launch_server


async def test_fit_and_predict_through_data_references(
    py: PythonBridge, data_dir: Path, blobs: np.ndarray
) -> None:
    np.save(data_dir / "client_blobs.npy", blobs)
    model = MiniBatchKMeans(n_clusters=3, random_state=0)
    await model.init(py)
    assert await model.fit(X=DataRef("client_blobs.npy")) is model
    ref = await model.predict(X=DataRef("client_blobs.npy"), out=DataRef("client_labels.npy"))
    assert ref == DataRef("client_labels.npy")
    on_disk = np.load(data_dir / "client_labels.npy")
    np.testing.assert_array_equal(on_disk, await model.predict(blobs))
    np.testing.assert_array_equal(on_disk, await model.labels_)
    dist_ref = await model.transform(
        {"X": DataRef("client_blobs.npy")}, out=DataRef("client_d.npy")
    )
    assert isinstance(dist_ref, DataRef)
    assert np.load(data_dir / "client_d.npy").shape == (len(blobs), 3)
    attr_ref = await model.get_attribute("labels_", out=DataRef("client_train_labels.npy"))
    assert isinstance(attr_ref, DataRef)
    np.testing.assert_array_equal(np.load(data_dir / "client_train_labels.npy"), on_disk)
    await model.dispose()


async def test_fit_writes_labels_to_a_data_reference(
    py: PythonBridge, data_dir: Path, blobs: np.ndarray
) -> None:
    np.save(data_dir / "client_fit_blobs.npy", blobs)
    in_memory = MiniBatchKMeans(n_clusters=3, random_state=0)
    await in_memory.init(py)
    await in_memory.fit(blobs)
    model = MiniBatchKMeans(n_clusters=3, random_state=0)
    await model.init(py)
    out = {"labels_": DataRef("client_fit_labels.npy")}
    assert await model.fit(X=DataRef("client_fit_blobs.npy"), out=out) is model
    # The labels stay on the server's disk; reading the attribute names the file.
    assert await model.labels_ == DataRef("client_fit_labels.npy")
    np.testing.assert_array_equal(
        np.load(data_dir / "client_fit_labels.npy"), await in_memory.labels_
    )
    np.testing.assert_array_equal(await model.cluster_centers_, await in_memory.cluster_centers_)
    await model.dispose()
    await in_memory.dispose()


async def test_refused_data_reference(py: PythonBridge) -> None:
    model = MiniBatchKMeans(n_clusters=2)
    await model.init(py)
    with pytest.raises(DataRefError) as info:
        await model.fit(X=DataRef("../outside.npy"))
    assert isinstance(info.value, ValueError) and isinstance(info.value, RemoteError)
    await model.dispose()


async def test_limits_checked_before_sending(tmp_path: Path) -> None:
    server = launch_server(
        data_dir=tmp_path,
        extra_args=["--max-array-bytes", "1000", "--max-frames", "3", "--max-header-bytes", "4096"],
    )
    try:
        py = await create_python_bridge(address=server.endpoint, token=server.token)
        try:
            assert py.limits.max_array_bytes == 1000 and py.limits.max_frames == 3
            model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
            await model.init(py)
            # Raised here, not by the server: the local class, not RemoteLimitExceeded.
            with pytest.raises(LimitExceeded, match="max_array_bytes=1000") as info:
                await model.fit(np.zeros((200, 2)))  # 3,200 bytes
            assert type(info.value) is LimitExceeded
            with pytest.raises(LimitExceeded, match="max_frames=3") as info:
                await model.fit(np.zeros((4, 2)), sample_weight=np.ones(4), y=np.ones(4))
            assert type(info.value) is LimitExceeded
            with pytest.raises(LimitExceeded, match="max_header_bytes=4096") as info:
                await model.get_feature_names_out(input_features=["x" * 5000, "y"])
            assert type(info.value) is LimitExceeded
            assert isinstance(LimitExceeded("x"), ValueError)
            await model.fit(np.zeros((10, 2)) + np.arange(10)[:, None])  # within limits
            await model.dispose()
        finally:
            await py.disconnect()
    finally:
        server.stop()
