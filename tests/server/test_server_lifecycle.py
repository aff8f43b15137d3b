"""init / call / get / dispose, and every way a request can be refused."""

from __future__ import annotations

import numpy as np
import pytest
from server_testdata import small_X
from server_wire import RemoteErr
from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans


def expect_error(fn, type_: str, *bases: str, match: str | None = None) -> RemoteErr:
    with pytest.raises(RemoteErr) as info:
        fn()
    err = info.value
    assert err.type == type_, err
    for base in bases:
        assert base in err.bases, err.bases
    if match is not None:
        assert match in err.message, err.message
    return err


def test_describe_comes_from_the_core_schema(wire):
    from bridge_server.core import ESTIMATORS

    result = wire.ok("describe")
    assert result["protocol"] == 1
    assert result["server"]["name"] == "bridge_server"
    schema = result["estimators"]["MiniBatchKMeans"]
    assert schema == ESTIMATORS["MiniBatchKMeans"]._schema.describe()
    assert schema["params"]["max_no_improvement"] == 10
    assert schema["methods"]["fit"]["long_running"] is True


def test_init_fit_get_predict_dispose_matches_scikit_learn(wire):
    X = small_X()
    wire.init("km", n_clusters=4, random_state=0, n_init=1)
    assert wire.call("km", "fit", X=X) is None  # "self" travels as nil
    centers = wire.get("km", "cluster_centers_")
    labels = wire.get("km", "labels_")
    ref = SkMiniBatchKMeans(n_clusters=4, random_state=0, n_init=1).fit(X)
    np.testing.assert_allclose(centers, ref.cluster_centers_, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(labels, ref.labels_)
    np.testing.assert_array_equal(wire.call("km", "predict", X=X[:20]), ref.predict(X[:20]))
    assert wire.get("km", "n_features_in_") == 2
    assert wire.call("km", "score", X=X) == pytest.approx(ref.score(X))
    assert wire.call("km", "get_params")["n_clusters"] == 4
    assert wire.ok("dispose", id="km") is None
    expect_error(lambda: wire.get("km", "labels_"), "UnknownInstance", "LookupError")
    expect_error(lambda: wire.ok("dispose", id="km"), "UnknownInstance", "LookupError")


def test_missing_vs_nil_options(wire):
    wire.init("a")
    wire.init("b", max_no_improvement=None, random_state=None)
    assert wire.call("a", "get_params")["max_no_improvement"] == 10
    assert wire.call("b", "get_params")["max_no_improvement"] is None


def test_init_errors(wire):
    wire.init("km")
    expect_error(lambda: wire.init("km"), "InstanceExists", "ValueError")
    expect_error(
        lambda: wire.init("x", cls="KMeans"), "UnknownEstimator", "LookupError", match="KMeans"
    )
    expect_error(
        lambda: wire.init("y", bogus=1),
        "TypeError",
        "TypeError",
        match="MiniBatchKMeans.__init__() got an unexpected keyword argument 'bogus'",
    )
    # Option values are checked when a method needs them, as scikit-learn does.
    wire.init("z", n_clusters=-3)
    expect_error(lambda: wire.call("z", "fit", X=small_X()), "InvalidParameterError", "ValueError")


@pytest.mark.parametrize(
    "name", ["__class__", "__init__", "__dict__", "__reduce__", "_validate_data", "fitx", ""]
)
def test_methods_outside_the_schema_are_refused(wire, name):
    wire.init("km")
    expect_error(lambda: wire.call("km", name), "MethodNotAllowed", "AttributeError")


@pytest.mark.parametrize(
    "name", ["__dict__", "__class__", "_schema", "n_clusters", "fit", "_tol", "__weakref__"]
)
def test_attributes_outside_the_schema_are_refused(wire, name):
    wire.init("km")
    expect_error(lambda: wire.get("km", name), "AttributeNotAllowed", "AttributeError")


def test_invalid_arguments(wire):
    wire.init("km", n_clusters=2)
    expect_error(
        lambda: wire.call("km", "fit", X=small_X(), bogus=1),
        "InvalidArguments",
        "TypeError",
        match="bogus",
    )
    expect_error(lambda: wire.call("km", "fit"), "InvalidArguments", "TypeError", match="'X'")


def test_estimator_errors_travel_with_their_type_and_message(wire):
    wire.init("km", n_clusters=2)
    err = expect_error(
        lambda: wire.call("km", "predict", X=small_X()), "NotFittedError", "ValueError"
    )
    assert "AttributeError" in err.bases
    expect_error(lambda: wire.get("km", "cluster_centers_"), "AttributeError", "AttributeError")
    bad = small_X()
    bad[3, 1] = np.nan
    expect_error(lambda: wire.call("km", "fit", X=bad), "ValueError", "ValueError", match="NaN")


def test_unknown_instance_everywhere(wire):
    expect_error(lambda: wire.call("nope", "fit", X=small_X()), "UnknownInstance", "LookupError")
    expect_error(lambda: wire.get("nope", "labels_"), "UnknownInstance")
    expect_error(lambda: wire.ok("dispose", id="nope"), "UnknownInstance")


def test_set_request_needs_metadata_routing_then_works_after_configure(wire):
    wire.init("km", n_clusters=2)
    err = expect_error(
        lambda: wire.call("km", "set_fit_request", sample_weight=True), "RuntimeError"
    )
    assert "enable_metadata_routing" in err.message
    settings = wire.ok("configure", settings={"enable_metadata_routing": True})
    assert settings == {"enable_metadata_routing": True}
    assert wire.call("km", "set_fit_request", sample_weight=True) is None
    routing = wire.call("km", "get_metadata_routing")
    assert routing["fit"]["sample_weight"] is True
    expect_error(lambda: wire.ok("configure", settings={"bogus": 1}), "InvalidArguments")


def test_metadata_routing_is_per_session(connect):
    a, b = connect(), connect()
    a.ok("configure", settings={"enable_metadata_routing": True})
    a.init("km")
    b.init("km")
    assert a.call("km", "set_fit_request", sample_weight=True) is None
    expect_error(lambda: b.call("km", "set_fit_request", sample_weight=True), "RuntimeError")


def test_fit_predict_and_fit_transform_return_arrays(wire):
    X = small_X()
    wire.init("km", n_clusters=3, random_state=1)
    labels = wire.call("km", "fit_predict", X=X)
    np.testing.assert_array_equal(labels, wire.get("km", "labels_"))
    dist = wire.call("km", "fit_transform", X=X)
    assert dist.shape == (len(X), 3)
    names = wire.call("km", "get_feature_names_out")
    assert list(names) == ["minibatchkmeans0", "minibatchkmeans1", "minibatchkmeans2"]


def test_warnings_arrive_as_events_with_their_category(wire):
    wire.init("km", n_clusters=5, init_size=2, random_state=0)
    reply, events = wire.request("call", id="km", method="fit", args={"X": small_X()})
    assert reply["k"] == "ok"
    warnings = [e["data"] for e in events if e["event"] == "warning"]
    assert warnings, events
    assert warnings[0]["category"] == "RuntimeWarning"
    assert "Warning" in warnings[0]["bases"]
    assert "init_size=2 should be larger than n_clusters=5" in warnings[0]["message"]


def test_progress_events_end_with_the_final_one(wire):
    wire.init("km", n_clusters=3, random_state=0, max_iter=5, max_no_improvement=None)
    reply, events = wire.request("call", id="km", method="fit", args={"X": small_X(n=5000)})
    assert reply["k"] == "ok"
    progress = [e["data"] for e in events if e["event"] == "progress"]
    assert progress
    assert progress[-1]["done"] == progress[-1]["total"] > 0
    fit = [p for p in progress if p["phase"] == "fit"]
    assert fit and fit[-1]["done"] == fit[-1]["total"] > 0
