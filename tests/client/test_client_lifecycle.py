"""scikit-learn-ts's lifecycle, message for message."""

from __future__ import annotations

import pytest
from client_testdata import SMALL_X

from client_py import LifecycleError, MiniBatchKMeans, PythonBridge

DISPOSED = "This MiniBatchKMeans instance has already been disposed"
NO_BRIDGE = "MiniBatchKMeans.init requires a PythonBridge instance"

METHOD_CALLS = {
    "fit": lambda m: m.fit({"X": SMALL_X}),
    "partial_fit": lambda m: m.partial_fit({"X": SMALL_X}),
    "predict": lambda m: m.predict({"X": SMALL_X}),
    "fit_predict": lambda m: m.fit_predict({"X": SMALL_X}),
    "transform": lambda m: m.transform({"X": SMALL_X}),
    "fit_transform": lambda m: m.fit_transform({"X": SMALL_X}),
    "score": lambda m: m.score({"X": SMALL_X}),
    "get_feature_names_out": lambda m: m.get_feature_names_out({}),
    "get_metadata_routing": lambda m: m.get_metadata_routing({}),
    "set_output": lambda m: m.set_output({"transform": "default"}),
    "set_fit_request": lambda m: m.set_fit_request({"sample_weight": True}),
    "set_partial_fit_request": lambda m: m.set_partial_fit_request({"sample_weight": True}),
    "set_score_request": lambda m: m.set_score_request({"sample_weight": True}),
}
ACCESSORS = [
    "cluster_centers_",
    "labels_",
    "inertia_",
    "n_iter_",
    "n_steps_",
    "n_features_in_",
    "feature_names_in_",
]


def test_fields_mirror_scikit_learn_ts() -> None:
    model = MiniBatchKMeans({"n_clusters": 3}, random_state=1)
    assert model.id.startswith("MiniBatchKMeans")
    suffix = model.id.removeprefix("MiniBatchKMeans")
    assert len(suffix) == 8 and int(suffix, 16) >= 0
    assert model.opts == {"n_clusters": 3, "random_state": 1}
    assert model._py is None and model.py is None
    assert model._isInitialized is False and model._isDisposed is False
    assert MiniBatchKMeans().id != MiniBatchKMeans().id
    assert MiniBatchKMeans(n_clusters=2).opts == {"n_clusters": 2}


@pytest.mark.parametrize("method", sorted(METHOD_CALLS))
async def test_method_before_init(method: str) -> None:
    model = MiniBatchKMeans()
    with pytest.raises(LifecycleError) as info:
        await METHOD_CALLS[method](model)
    assert str(info.value) == f"MiniBatchKMeans must call init() before {method}()"
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("name", ACCESSORS)
def test_accessor_before_init_raises_at_access(name: str) -> None:
    model = MiniBatchKMeans()
    with pytest.raises(RuntimeError) as info:
        getattr(model, name)  # nothing awaited: raised at attribute access
    assert str(info.value) == f"MiniBatchKMeans must call init() before accessing {name}"


@pytest.mark.parametrize("bad", [None, "not a bridge", object()])
async def test_init_requires_a_bridge(bad: object) -> None:
    model = MiniBatchKMeans()
    with pytest.raises(RuntimeError) as info:
        await model.init(bad)  # type: ignore[arg-type]
    assert str(info.value) == NO_BRIDGE
    assert not model._isInitialized


async def test_dispose_before_init_is_a_noop() -> None:
    model = MiniBatchKMeans()
    await model.dispose()
    await model.dispose()
    assert not model._isDisposed and not model._isInitialized


async def test_full_lifecycle(py: PythonBridge) -> None:
    model = MiniBatchKMeans(n_clusters=2, random_state=0)
    await model.init(py)
    assert model._isInitialized and model.py is py and model._py is py
    await model.init(py)  # second init: a no-op that sends nothing
    sent = next(py._rids)
    await model.init(py)
    assert next(py._rids) == sent + 1  # no request id was used in between
    await model.fit(X=SMALL_X)
    await model.dispose()
    assert model._isDisposed
    await model.dispose()  # twice: no-op

    with pytest.raises(RuntimeError) as info:
        await model.init(py)
    assert str(info.value) == DISPOSED
    for method, call in METHOD_CALLS.items():
        with pytest.raises(LifecycleError) as info:
            await call(model)
        assert str(info.value) == DISPOSED, method
    for name in ACCESSORS:
        with pytest.raises(LifecycleError) as info:
            getattr(model, name)
        assert str(info.value) == DISPOSED, name


async def test_concurrent_inits_send_one_request(py: PythonBridge) -> None:
    import asyncio

    model = MiniBatchKMeans(n_clusters=2)
    await asyncio.gather(model.init(py), model.init(py), model.init(py))
    assert model._isInitialized
    await model.dispose()


async def test_py_property_get_and_set(py: PythonBridge) -> None:
    model = MiniBatchKMeans()
    model.py = py
    assert model.py is py and model._py is py
    assert isinstance(model.py, PythonBridge)


async def test_dispose_on_a_closed_bridge_is_quiet(py: PythonBridge) -> None:
    model = MiniBatchKMeans(n_clusters=2)
    await model.init(py)
    await py.disconnect()
    await model.dispose()
    assert model._isDisposed
