"""Every method and accessor of MiniBatchKMeans, through a real server."""

from __future__ import annotations

import numpy as np
import pytest
from client_testdata import SMALL_X

from client_py import (
    MiniBatchKMeans,
    NotFittedError,
    PythonBridge,
    RemoteError,
    create_python_bridge,
)


async def test_scikit_learn_ts_kmeans_test_ported() -> None:
    """scikit-learn-ts's test/KMeans.ts, with MiniBatchKMeans, on an embedded server."""
    py = await create_python_bridge()
    try:
        model = MiniBatchKMeans({"n_clusters": 2, "random_state": 0})
        assert model.id.startswith("MiniBatchKMeans")
        await model.init(py)
        labels = await model.fit_predict({"X": SMALL_X.tolist()})
        assert isinstance(labels, np.ndarray) and labels.shape == (6,)
        # The TypeScript test's expectations, with scikit-learn 1.5.2's MiniBatchKMeans
        # as the oracle (its centers are minibatch averages, not exact means).
        np.testing.assert_array_equal(labels, [1, 1, 1, 0, 0, 0])
        centers = await model.cluster_centers_
        assert isinstance(centers, np.ndarray) and centers.shape == (2, 2)
        np.testing.assert_allclose(centers, [[10.0, 24 / 11], [1.0, 54 / 23]])
        np.testing.assert_array_equal(await model.predict([[0, 0], [12, 3]]), [1, 0])
        await model.dispose()
    finally:
        await py.disconnect()
    assert py.server is None


async def test_every_method_and_accessor(py: PythonBridge) -> None:
    model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
    await model.init(py)
    assert await model.fit({"X": SMALL_X}) is model
    assert await model.partial_fit(X=SMALL_X) is model
    predicted = await model.predict(SMALL_X)
    assert predicted.shape == (6,) and predicted.dtype.kind == "i"
    assert (await model.fit_predict({"X": SMALL_X})).shape == (6,)
    distances = await model.transform({"X": SMALL_X})
    assert distances.shape == (6, 2) and distances.dtype == np.float64
    assert (await model.fit_transform(X=SMALL_X)).shape == (6, 2)
    score = await model.score({"X": SMALL_X})
    assert isinstance(score, float) and score <= 0
    names = await model.get_feature_names_out({})
    assert names.tolist() == ["minibatchkmeans0", "minibatchkmeans1"]
    routing = await model.get_metadata_routing({})
    assert isinstance(routing, dict)
    assert await model.set_output({"transform": "default"}) is model
    with pytest.raises(RuntimeError, match="only available when metadata routing is enabled"):
        await model.set_fit_request({"sample_weight": True})
    await py.configure(enable_metadata_routing=True)
    assert await model.set_fit_request({"sample_weight": True}) is model
    assert await model.set_partial_fit_request(sample_weight=False) is model
    assert await model.set_score_request({"sample_weight": "weights"}) is model

    assert (await model.cluster_centers_).shape == (2, 2)
    labels = await model.labels_
    assert labels.shape == (6,)
    inertia = await model.inertia_
    assert isinstance(inertia, float) and inertia >= 0
    assert isinstance(await model.n_iter_, int)
    assert isinstance(await model.n_steps_, int) and await model.n_steps_ >= 1
    assert await model.n_features_in_ == 2
    with pytest.raises(AttributeError):
        await model.feature_names_in_  # fitted on an array: no feature names
    await model.dispose()


async def test_results_match_in_process_core(py: PythonBridge, blobs: np.ndarray) -> None:
    from bridge_server.core import MiniBatchKMeans as CoreMiniBatchKMeans

    opts = {"n_clusters": 3, "random_state": 42, "batch_size": 64, "max_iter": 20}
    local = CoreMiniBatchKMeans(**opts).fit(blobs)
    model = MiniBatchKMeans(opts)
    await model.init(py)
    await model.fit(blobs)
    np.testing.assert_array_equal(await model.labels_, local.labels_)
    np.testing.assert_allclose(await model.cluster_centers_, local.cluster_centers_)
    assert await model.inertia_ == pytest.approx(local.inertia_)
    assert await model.n_steps_ == local.n_steps_
    np.testing.assert_array_equal(await model.predict(blobs[:50]), local.predict(blobs[:50]))
    np.testing.assert_allclose(await model.transform(blobs[:5]), local.transform(blobs[:5]))
    assert await model.score(blobs) == pytest.approx(local.score(blobs))
    await model.dispose()


async def test_input_forms(py: PythonBridge) -> None:
    """Lists, any numeric dtype, Fortran order, big endian, __array__, all give one answer."""
    model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
    await model.init(py)
    await model.fit(SMALL_X)
    expected = await model.predict(SMALL_X)

    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return SMALL_X

    for form in (
        SMALL_X.tolist(),
        tuple(map(tuple, SMALL_X.tolist())),
        SMALL_X.astype(np.int32),
        SMALL_X.astype(np.float32),
        SMALL_X.astype(np.float16),
        SMALL_X.astype(np.uint8),
        np.asfortranarray(SMALL_X),
        SMALL_X.astype(">f8"),
        SMALL_X[:, ::-1][:, ::-1],
        ArrayLike(),
    ):
        np.testing.assert_array_equal(await model.predict(form), expected)
    await model.dispose()


async def test_missing_versus_none(py: PythonBridge, blobs: np.ndarray) -> None:
    """max_no_improvement=None disables early stopping; left out it is 10."""
    common = {"n_clusters": 3, "random_state": 0, "batch_size": 30, "max_iter": 30}
    early = MiniBatchKMeans(common)
    never = MiniBatchKMeans(common, max_no_improvement=None)
    await early.init(py)
    await never.init(py)
    await early.fit(blobs)
    await never.fit(blobs)
    steps_early, steps_never = await early.n_steps_, await never.n_steps_
    assert steps_never == 30 * len(blobs) // 30
    assert steps_early < steps_never
    await early.dispose()
    await never.dispose()


async def test_errors_are_catchable_as_scikit_learn_s(py: PythonBridge) -> None:
    model = MiniBatchKMeans(n_clusters=2)
    await model.init(py)
    with pytest.raises(NotFittedError) as info:
        await model.predict(SMALL_X)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, AttributeError)
    assert isinstance(err, RemoteError) and err.remote_type == "NotFittedError"
    assert "This MiniBatchKMeans instance is not fitted yet" in str(err)
    with pytest.raises(AttributeError):
        await model.labels_
    with pytest.raises(ValueError):
        await model.fit(np.array([[1.0, np.nan], [2.0, 3.0], [4.0, 5.0]]))
    bad = MiniBatchKMeans(n_clusters=-1)
    await bad.init(py)
    with pytest.raises(ValueError) as info:
        await bad.fit(SMALL_X)
    assert "n_clusters" in str(info.value)
    assert isinstance(info.value, TypeError)  # InvalidParameterError
    await model.dispose()
    await bad.dispose()


async def test_unknown_option_is_a_type_error(py: PythonBridge) -> None:
    model = MiniBatchKMeans(n_cluster=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        await model.init(py)
    assert not model._isInitialized


async def test_dataframe_feature_names(py: PythonBridge) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(SMALL_X, columns=["height", "width"])
    model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
    await model.init(py)
    await model.fit(frame)
    names = await model.feature_names_in_
    assert isinstance(names, np.ndarray) and names.tolist() == ["height", "width"]
    assert (await model.predict(frame)).shape == (6,)
    # Non-string column names: no feature names, as in scikit-learn.
    plain = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
    await plain.init(py)
    await plain.fit(pd.DataFrame(SMALL_X))
    with pytest.raises(AttributeError):
        await plain.feature_names_in_
    await model.dispose()
    await plain.dispose()


async def test_set_output_pandas(py: PythonBridge) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(SMALL_X, columns=["a", "b"], index=[f"r{i}" for i in range(6)])
    model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
    await model.init(py)
    assert await model.set_output(transform="pandas") is model
    out = await model.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["minibatchkmeans0", "minibatchkmeans1"]
    assert list(out.index) == list(frame.index)
    plain = await model.transform(frame.reset_index(drop=True))
    assert isinstance(plain, pd.DataFrame) and list(plain.index) == list(range(6))
    np.testing.assert_allclose(plain.to_numpy(), out.to_numpy())
    await model.set_output({"transform": "default"})
    assert isinstance(await model.transform(frame), np.ndarray)
    await model.dispose()


async def test_set_output_polars_without_polars(py: PythonBridge) -> None:
    try:
        import polars  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("polars is installed")
    model = MiniBatchKMeans(n_clusters=2)
    await model.init(py)
    with pytest.raises(ImportError, match="requires polars to be installed"):
        await model.set_output(transform="polars")
    await model.dispose()


async def test_configure_describe_ping(py: PythonBridge) -> None:
    assert py.epoch and py.session and py.limits.max_frames > 0
    assert py.version == 1
    described = await py.describe()
    assert "MiniBatchKMeans" in described["estimators"]
    schema = described["estimators"]["MiniBatchKMeans"]
    assert "fit" in schema["methods"] and "labels_" in schema["attributes"]
    assert isinstance(await py.ping(), float)
    settings = await py.configure(enable_metadata_routing=True)
    assert settings["enable_metadata_routing"] is True
    model = MiniBatchKMeans(n_clusters=2, random_state=0, n_init=1)
    await model.init(py)
    await model.set_fit_request(sample_weight=True)
    routing = await model.get_metadata_routing()
    assert "fit" in str(routing)
    weights = np.ones(len(SMALL_X))
    await model.fit(X=SMALL_X, sample_weight=weights)
    await model.dispose()
    assert (await py.configure({"enable_metadata_routing": False}))[
        "enable_metadata_routing"
    ] is False
