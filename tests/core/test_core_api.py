"""The estimator surface: params, repr, schema, metadata requests, set_output, feature names."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
from core_oracle import SkMiniBatchKMeans, sklearn_error

from bridge_server.core import ESTIMATORS, MiniBatchKMeans, config_context

X = np.random.RandomState(0).normal(size=(80, 3))


def test_constructor_defaults_and_get_params_match_sklearn():
    assert MiniBatchKMeans().get_params() == SkMiniBatchKMeans().get_params()
    assert list(MiniBatchKMeans().get_params()) == list(SkMiniBatchKMeans().get_params())
    params = dict(n_clusters=3, init="random", max_no_improvement=None, tol=0.5, verbose=1)
    assert MiniBatchKMeans(**params).get_params() == SkMiniBatchKMeans(**params).get_params()


def test_set_params_and_repr():
    est = MiniBatchKMeans().set_params(n_clusters=4, random_state=1)
    assert est.n_clusters == 4 and est.random_state == 1
    assert repr(est) == repr(SkMiniBatchKMeans(n_clusters=4, random_state=1))
    assert repr(MiniBatchKMeans()) == "MiniBatchKMeans()"
    assert est.set_params() is est


def test_schema_declares_the_surface():
    schema = MiniBatchKMeans._schema
    assert ESTIMATORS["MiniBatchKMeans"] is MiniBatchKMeans
    assert schema.params == SkMiniBatchKMeans().get_params() | {}
    assert list(schema.params) == [
        "n_clusters", "init", "max_iter", "batch_size", "verbose", "compute_labels",
        "random_state", "tol", "max_no_improvement", "init_size", "n_init",
        "reassignment_ratio",
    ]  # fmt: skip
    for name in schema.methods:
        assert callable(getattr(MiniBatchKMeans, name)), name
    assert "set_params" not in schema.methods
    assert schema.methods["fit"].required == ("X",)
    assert schema.methods["predict"].per_sample_output
    assert schema.methods["fit"].long_running
    assert schema.per_sample_attributes == ("labels_",)
    described = schema.describe()
    assert described["name"] == "MiniBatchKMeans"


def _sk_routing():
    return SkMiniBatchKMeans().get_metadata_routing()._serialize()


def test_metadata_routing_default_is_plain_dict():
    routing = MiniBatchKMeans().get_metadata_routing()
    assert type(routing) is dict
    assert routing == _sk_routing()
    assert list(routing) == list(_sk_routing())
    assert MiniBatchKMeans().get_metadata_routing(routing={"anything": 1}) == routing


@pytest.mark.parametrize(
    "method", ["set_fit_request", "set_partial_fit_request", "set_score_request"]
)
def test_set_request_requires_routing(method):
    expected = sklearn_error(lambda: getattr(SkMiniBatchKMeans(), method)(sample_weight=True))
    with pytest.raises(RuntimeError) as info:
        getattr(MiniBatchKMeans(), method)(sample_weight=True)
    assert str(info.value) == str(expected)
    assert "sklearn.set_config(enable_metadata_routing=True)" in str(info.value)


def test_set_requests_follow_sklearn():
    steps = [
        ("set_fit_request", {"sample_weight": "weights"}),
        ("set_score_request", {"sample_weight": True}),
        ("set_fit_request", {}),  # argument left out: unchanged
        ("set_partial_fit_request", {"sample_weight": False}),
        ("set_score_request", {"sample_weight": None}),  # None is a value: reset
        ("set_fit_request", {"sample_weight": "sample_weight"}),  # own name means True
    ]
    ours, ref = MiniBatchKMeans(), SkMiniBatchKMeans()
    with (
        config_context(enable_metadata_routing=True),
        sklearn.config_context(enable_metadata_routing=True),
    ):
        for method, kwargs in steps:
            assert getattr(ours, method)(**kwargs) is ours
            getattr(ref, method)(**kwargs)
            assert ours.get_metadata_routing() == ref.get_metadata_routing()._serialize()
        for bad in (3, "not an identifier"):
            expected = sklearn_error(lambda bad=bad: ref.set_fit_request(sample_weight=bad))
            with pytest.raises(ValueError) as info:
                ours.set_fit_request(sample_weight=bad)
            assert str(info.value) == str(expected)
    # the request survives and does not leak into get_params
    assert ours.get_metadata_routing()["fit"] == {"sample_weight": True}
    assert "_metadata_request" not in ours.get_params()
    assert MiniBatchKMeans().get_metadata_routing() == _sk_routing()


def test_fitted_attributes_and_feature_names_out():
    est = MiniBatchKMeans(n_clusters=3, random_state=0).fit(X)
    ref = SkMiniBatchKMeans(n_clusters=3, random_state=0).fit(X)
    assert est.n_features_in_ == 3
    assert not hasattr(est, "feature_names_in_")
    np.testing.assert_array_equal(est.get_feature_names_out(), ref.get_feature_names_out())
    assert est.get_feature_names_out().dtype == object
    np.testing.assert_array_equal(
        est.get_feature_names_out(["x0", "x1", "x2"]), ref.get_feature_names_out(["x0", "x1", "x2"])
    )


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    est = MiniBatchKMeans(n_clusters=3, random_state=0).fit(df)
    ref = SkMiniBatchKMeans(n_clusters=3, random_state=0).fit(df)
    np.testing.assert_array_equal(est.feature_names_in_, ref.feature_names_in_)
    assert est.feature_names_in_.dtype == object
    np.testing.assert_array_equal(est.labels_, ref.labels_)
    # refit on an array drops the names, as scikit-learn does
    est.fit(X)
    assert not hasattr(est, "feature_names_in_")
    # non-string names are not stored
    est.fit(pd.DataFrame(X))
    assert not hasattr(est, "feature_names_in_")


def test_set_output_pandas():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b", "c"], index=np.arange(100, 180))
    est = MiniBatchKMeans(n_clusters=3, random_state=0).set_output(transform="pandas")
    ref = SkMiniBatchKMeans(n_clusters=3, random_state=0).set_output(transform="pandas")
    ours_out, ref_out = est.fit_transform(df), ref.fit_transform(df)
    assert isinstance(ours_out, pd.DataFrame)
    pd.testing.assert_frame_equal(ours_out, ref_out, rtol=1e-10)
    pd.testing.assert_frame_equal(est.transform(df), ref.transform(df), rtol=1e-10)
    assert est.set_output() is est
    assert isinstance(est.set_output(transform="default").transform(df), np.ndarray)


def test_set_output_is_not_applied_when_the_context_says_so():
    pytest.importorskip("pandas")
    from bridge_server.core import CallContext, call_context

    est = MiniBatchKMeans(n_clusters=3, random_state=0).fit(X).set_output(transform="pandas")
    with call_context(CallContext(wrap_outputs=False)):
        assert isinstance(est.transform(X), np.ndarray)


def test_fit_predict_without_labels_is_attribute_error():
    est = MiniBatchKMeans(n_clusters=2, compute_labels=False, random_state=0)
    with pytest.raises(AttributeError):
        est.fit_predict(X)


def test_returns_self():
    est = MiniBatchKMeans(n_clusters=2, random_state=0)
    assert est.fit(X) is est
    assert est.partial_fit(X) is est
    assert est.set_output(transform="default") is est
    assert isinstance(est.score(X), float)
    assert isinstance(est.inertia_, float)
    assert isinstance(est.n_iter_, int) and isinstance(est.n_steps_, int)
