"""Validation: the same exception types and messages as scikit-learn 1.5.2, taken from it."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans, record_warnings, sklearn_error

from bridge_server.core import InvalidParameterError, MiniBatchKMeans, NotFittedError

X_OK = np.random.RandomState(0).normal(size=(60, 3))


def _same_error(make_call, exc_type=None):
    """Our call raises the type (or given type) and exact message that scikit-learn's does."""
    expected = sklearn_error(lambda: make_call(SkMiniBatchKMeans))
    kind = exc_type or type(expected)
    if exc_type is None:
        kind = {
            "InvalidParameterError": InvalidParameterError,
            "NotFittedError": NotFittedError,
        }.get(type(expected).__name__, type(expected))
    with pytest.raises(kind, match=re.escape(str(expected))) as info:
        make_call(MiniBatchKMeans)
    assert str(info.value) == str(expected)


BAD_PARAMS = [
    {"n_clusters": 0},
    {"n_clusters": 2.5},
    {"n_clusters": "3"},
    {"init": "kmeans"},
    {"init": 3},
    {"n_init": 0},
    {"n_init": "many"},
    {"max_iter": 0},
    {"tol": -1.0},
    {"tol": float("nan")},
    {"verbose": -1},
    {"verbose": "yes"},
    {"random_state": -1},
    {"random_state": "seed"},
    {"random_state": 2**32},
    {"batch_size": 0},
    {"compute_labels": 1},
    {"max_no_improvement": -1},
    {"max_no_improvement": 1.5},
    {"init_size": 0},
    {"reassignment_ratio": -0.1},
    {"reassignment_ratio": "big"},
    {"n_clusters": 0, "batch_size": 0},  # the first in sorted order wins
]


@pytest.mark.parametrize("params", BAD_PARAMS, ids=repr)
def test_invalid_parameters_raise_sklearns_message_at_fit(params):
    MiniBatchKMeans(**params)  # never at construction
    _same_error(lambda cls: cls(**params).fit(X_OK))
    _same_error(lambda cls: cls(**params).partial_fit(X_OK))


def test_invalid_parameter_error_is_value_and_type_error():
    with pytest.raises(ValueError):
        MiniBatchKMeans(n_clusters=0).fit(X_OK)
    with pytest.raises(TypeError):
        MiniBatchKMeans(n_clusters=0).fit(X_OK)


BAD_INPUTS = {
    "nan": np.array([[1.0, np.nan], [2.0, 3.0], [4.0, 5.0]]),
    "inf": np.array([[1.0, 2.0], [np.inf, 3.0], [4.0, 5.0]]),
    "inf_then_nan": np.array([[np.inf, np.nan], [1.0, 2.0]]),
    "neg_inf32": np.array([[1.0, -np.inf], [2.0, 3.0]], dtype=np.float32),
    "one_d": np.arange(5.0),
    "scalar": np.float64(3.0),
    "empty_rows": np.empty((0, 3)),
    "empty_features": np.empty((4, 0)),
    "three_d": np.zeros((2, 2, 2)),
    "strings": np.array([["a", "b"], ["c", "d"]]),
    "complex": np.array([[1 + 1j, 2], [3, 4]]),
    "list_one_d": [1.0, 2.0, 3.0],
}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    BAD_INPUTS["matrix"] = np.matrix([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_sklearns_message(name):
    X = BAD_INPUTS[name]
    _same_error(lambda cls: cls(n_clusters=1).fit(X))


@pytest.mark.parametrize("name", ["nan", "inf", "one_d", "empty_rows", "strings"])
def test_bad_input_to_predict_transform_score(name):
    X = BAD_INPUTS[name]
    for method in ("predict", "transform", "score"):

        def call(cls, method=method):
            est = cls(n_clusters=2, random_state=0).fit(np.random.RandomState(0).rand(30, 2))
            return getattr(est, method)(X)

        _same_error(call)


def test_too_few_samples():
    _same_error(lambda cls: cls(n_clusters=10).fit(X_OK[:5]))
    _same_error(lambda cls: cls(n_clusters=10).partial_fit(X_OK[:5]))


@pytest.mark.parametrize(
    "init",
    [np.zeros((2, 3)), np.zeros((3, 2)), np.zeros(3), np.array([[np.nan, 0, 0]] * 3)],
    ids=["too_few_centers", "too_few_features", "one_d", "nan"],
)
def test_bad_init_array(init):
    _same_error(lambda cls: cls(n_clusters=3, init=init).fit(X_OK))


def test_bad_callable_init_shape():
    def init(X, k, random_state):
        return X[: k - 1]

    _same_error(lambda cls: cls(n_clusters=3, init=init).fit(X_OK))


def test_feature_count_mismatch():
    def call(cls):
        return cls(n_clusters=2, random_state=0).fit(X_OK).predict(X_OK[:, :2])

    _same_error(call)
    _same_error(lambda cls: cls(n_clusters=2).fit(X_OK).partial_fit(X_OK[:, :2]))


@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_not_fitted(method):
    _same_error(lambda cls: getattr(cls(), method)(X_OK))
    with pytest.raises(ValueError):
        getattr(MiniBatchKMeans(), method)(X_OK)
    with pytest.raises(AttributeError):
        getattr(MiniBatchKMeans(), method)(X_OK)


def test_get_feature_names_out_not_fitted():
    _same_error(lambda cls: cls().get_feature_names_out())


@pytest.mark.parametrize(
    "name",
    [
        "cluster_centers_",
        "labels_",
        "inertia_",
        "n_iter_",
        "n_steps_",
        "n_features_in_",
        "feature_names_in_",
    ],
)
def test_fitted_attribute_before_fit_is_plain_attribute_error(name):
    with pytest.raises(AttributeError) as info:
        getattr(MiniBatchKMeans(), name)
    assert not isinstance(info.value, NotFittedError)


@pytest.mark.parametrize(
    "sample_weight",
    [
        np.ones(10),
        np.ones((60, 2)),
        np.array([np.nan] + [1.0] * 59),
        np.array([np.inf] * 60),
        np.ones(0),
        np.array(2.0),
        np.array(np.nan),
        "1",
        np.ones((2, 2, 15)),
    ],
    ids=["short", "two_d", "nan", "inf", "empty", "zero_d", "zero_d_nan", "string", "three_d"],
)
def test_bad_sample_weight(sample_weight):
    _same_error(lambda cls: cls(n_clusters=2).fit(X_OK, sample_weight=sample_weight))
    _same_error(lambda cls: cls(n_clusters=2).partial_fit(X_OK, sample_weight=sample_weight))

    def score(cls):
        return cls(n_clusters=2, random_state=0).fit(X_OK).score(X_OK, sample_weight=sample_weight)

    _same_error(score)


def test_scalar_sample_weight_is_broadcast():
    ours = MiniBatchKMeans(n_clusters=2, random_state=0).fit(X_OK, sample_weight=2.0)
    ref = SkMiniBatchKMeans(n_clusters=2, random_state=0).fit(X_OK, sample_weight=2.0)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-12)


def test_sparse_input_is_refused_with_type_error():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="only supports dense input"):
        MiniBatchKMeans(n_clusters=2).fit(sparse.csr_matrix(X_OK))
    fitted = MiniBatchKMeans(n_clusters=2, random_state=0).fit(X_OK)
    with pytest.raises(TypeError, match="only supports dense input"):
        fitted.predict(sparse.csr_array(X_OK))


def test_set_params_unknown():
    expected = sklearn_error(lambda: SkMiniBatchKMeans(n_clusters=3).set_params(foo=1))
    with pytest.raises(ValueError) as info:
        MiniBatchKMeans(n_clusters=3).set_params(foo=1)
    assert str(info.value) == str(expected)


# ----------------------------------------------------------------- warnings


def _same_warnings(make_call):
    expected = record_warnings(lambda: make_call(SkMiniBatchKMeans))
    got = record_warnings(lambda: make_call(MiniBatchKMeans))
    assert got == expected
    assert expected  # the scenario does warn
    return got


def test_explicit_init_with_n_init_warns():
    init = X_OK[:3].copy()
    got = _same_warnings(lambda cls: cls(n_clusters=3, init=init, n_init=5).fit(X_OK))
    assert got[0][0] is RuntimeWarning


def test_small_init_size_warns():
    _same_warnings(lambda cls: cls(n_clusters=5, init_size=3, random_state=0).fit(X_OK))


@pytest.mark.parametrize(
    ("dtype", "scale", "params"),
    [
        (np.float64, 3e152, dict(n_clusters=3, n_init=1)),
        (np.float64, 1e153, dict(n_clusters=3, n_init=3, batch_size=64, tol=1e-3)),
        (np.float32, 1e18, dict(n_clusters=3, n_init=1)),
        (np.float32, 3e18, dict(n_clusters=3, n_init=3, batch_size=64, tol=1e-3)),
    ],
)
def test_overflowing_values_warn_as_scikit_learn(dtype, scale, params):
    # Squares of these values are finite, but sums of them overflow. scikit-learn
    # warns where it computes in NumPy (k-means++, transform, the tolerance, the
    # centers' change) and is silent in its compiled labelling, inertia and
    # updates; the core's NumPy versions of those must be silent too. Its
    # k-means++ cumulative sums reach infinity without the "unstable" warning.
    X = (np.random.RandomState(3).normal(size=(300, 10)) * scale).astype(dtype)
    weights = np.random.RandomState(4).uniform(0.5, 2, 300)

    def run(cls):
        model = cls(random_state=0, **params)
        streamed = cls(random_state=0, **params)
        warned = {
            "fit": record_warnings(lambda: model.fit(X, sample_weight=weights)),
            "predict": record_warnings(lambda: model.predict(X)),
            "score": record_warnings(lambda: model.score(X)),
            "transform": record_warnings(lambda: model.transform(X)),
            "partial_fit": record_warnings(lambda: streamed.partial_fit(X).partial_fit(X)),
        }
        return model, streamed, warned

    ref, ref_streamed, expected = run(SkMiniBatchKMeans)
    ours, streamed, got = run(MiniBatchKMeans)
    assert got == expected
    assert expected["fit"] and expected["partial_fit"]  # the scenario does warn
    assert ours.n_steps_ == ref.n_steps_  # and the results are still scikit-learn's
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_array_equal(streamed.cluster_centers_, ref_streamed.cluster_centers_)


def test_overflowing_center_change_warns_as_scikit_learn():
    # With tol > 0, scikit-learn sums the centers' squared change in NumPy inside
    # its loop: 49 centers reassigned across the data overflow that sum (each
    # square and every distance stays finite), and it warns; so must the core.
    k = 50
    X = np.random.RandomState(3).uniform(-2e153, 2e153, size=(2000, 1))
    init = (2e153 - np.arange(k) * 1e140).reshape(-1, 1)  # one center takes every row
    params = dict(n_clusters=k, init=init, n_init=1, batch_size=1000, tol=1e-3, max_iter=3)
    ref = SkMiniBatchKMeans(random_state=0, **params)
    ours = MiniBatchKMeans(random_state=0, **params)
    expected = record_warnings(lambda: ref.fit(X))
    assert record_warnings(lambda: ours.fit(X)) == expected
    assert "overflow encountered in reduce" in str(expected)
    assert ours.n_steps_ == ref.n_steps_
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)


def test_is_close_treats_infinities_as_numpy_does():
    from bridge_server.core._validation import is_close

    inf, nan = float("inf"), float("nan")
    pairs = [(inf, inf), (-inf, -inf), (inf, -inf), (inf, 1e308), (1e308, inf), (nan, nan)]
    pairs += [(nan, 1.0), (1.0, nan), (nan, inf), (1.0, 1.0 + 1e-9), (1.0, 1.1), (0.0, 1e-9)]
    for a, b in pairs:
        assert is_close(a, b) == bool(np.allclose(a, b, equal_nan=True)), (a, b)


def test_feature_name_warnings():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X_OK, columns=["a", "b", "c"])
    _same_warnings(lambda cls: cls(n_clusters=2, random_state=0).fit(df).predict(X_OK))
    _same_warnings(lambda cls: cls(n_clusters=2, random_state=0).fit(X_OK).predict(df))


def test_feature_name_errors():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X_OK, columns=["a", "b", "c"])
    for columns in (["a", "c", "b"], ["a", "b", "z"], ["x", "y", "z"]):
        other = pd.DataFrame(X_OK, columns=columns)
        _same_error(
            lambda cls, other=other: cls(n_clusters=2, random_state=0).fit(df).predict(other)
        )
    mixed = pd.DataFrame(X_OK, columns=["a", 1, "c"])
    _same_error(lambda cls: cls(n_clusters=2).fit(mixed))


def test_get_feature_names_out_errors():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X_OK, columns=["a", "b", "c"])
    _same_error(
        lambda cls: cls(n_clusters=2, random_state=0).fit(df).get_feature_names_out(["x", "y", "z"])
    )
    _same_error(
        lambda cls: cls(n_clusters=2, random_state=0).fit(X_OK).get_feature_names_out(["x"])
    )


def test_set_output_bad_value():
    def call(cls):
        return (
            cls(n_clusters=2, random_state=0).fit(X_OK).set_output(transform="nope").transform(X_OK)
        )

    _same_error(call)


def _wide_predict_input(case: str) -> tuple[np.ndarray, np.ndarray]:
    """(training data, predict input) for a case of NaN/infinity found while labelling."""
    rng = np.random.RandomState(5)
    n_features = 2 if case.startswith("narrow") else 12
    X = rng.normal(size=(3000, n_features)) * 3
    if case.startswith("huge_centers"):
        X *= 1e30  # beyond float32: the screen cannot run, blocks are checked by sum
    if case.startswith("zero_column"):
        X[:, 3] = 0.0  # every center's coordinate 3 is 0: infinity times 0 in the product
    dtype = np.float32 if case.startswith("float32") else np.float64
    # 5000 rows: enough for the grid of certain cells at 2 features.
    Y = rng.normal(size=(5000, n_features)).astype(dtype) * X.std()
    X = X.astype(dtype)
    where = case.rsplit("-", 1)[-1]
    if where == "first":
        Y[0, 1] = np.nan
    elif where == "last":
        Y[-1, -1] = -np.inf
    elif where == "inf_in_zero_column":
        Y[1, 3] = np.inf
        Y[2, 0], Y[2, 1] = np.inf, -np.inf
    elif where == "inf_then_nan":
        Y[700, 0] = np.inf
        Y[3900, 1] = np.nan  # in a later block, on whichever thread: NaN still wins
    elif where == "overflowing_sum":
        Y[1000:1600] = 1e305  # finite, but a block's sum is not (nor a float32 row)
    return X, Y


@pytest.mark.parametrize(
    "case",
    [
        "wide-first",
        "wide-last",
        "wide-inf_then_nan",
        "wide-overflowing_sum",
        "float32-inf_then_nan",
        "narrow-inf_then_nan",
        "narrow-first",
        "zero_column-inf_in_zero_column",
        "huge_centers-inf_then_nan",
        "huge_centers-last",
    ],
)
@pytest.mark.parametrize("method", ["predict", "score"])
def test_predict_finds_nan_and_infinity_while_labelling(monkeypatch, case, method):
    # predict and score leave the NaN/infinity check to the labelling threads
    # (free where the float32 screen labels a block): many small blocks on
    # two threads. Under the strictest settings NumPy must not warn or raise
    # about the bad values before scikit-learn's ValueError.
    from bridge_server.core import _kmeans_steps

    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 2)
    monkeypatch.setattr(_kmeans_steps, "SCREEN_BLOCK_ROWS", 512)
    monkeypatch.setattr(_kmeans_steps, "BLOCK_BYTES", 1)
    X, Y = _wide_predict_input(case)
    if case.endswith("overflowing_sum"):
        ours = MiniBatchKMeans(n_clusters=4, random_state=0).fit(X)
        ref = SkMiniBatchKMeans(n_clusters=4, random_state=0).fit(X)
        np.testing.assert_array_equal(ours.predict(Y), ref.predict(Y))
        assert np.isclose(ours.score(Y), ref.score(Y), rtol=1e-12)
        return
    n_clusters = 30 if case.startswith("narrow") else 4  # 30: the grid is built at once
    reference = SkMiniBatchKMeans(n_clusters=n_clusters, random_state=0).fit(X)
    ours = MiniBatchKMeans(n_clusters=n_clusters, random_state=0).fit(X)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        # scikit-learn's ValueError; or, for inf and -inf together, the
        # FloatingPointError of its own first sum (which the core's check repeats).
        expected = sklearn_error(lambda: getattr(reference, method)(Y))
        with pytest.raises(type(expected)) as info:
            getattr(ours, method)(Y)
    assert str(info.value) == str(expected)
    assert isinstance(expected, (ValueError, FloatingPointError))


def test_predict_reports_nan_before_a_wrong_feature_count():
    X = np.random.RandomState(0).normal(size=(100, 12))
    Y = np.ones((50, 5))
    _same_error(lambda cls: cls(n_clusters=3, random_state=0).fit(X).predict(Y))
    Y[49, 4] = np.nan
    _same_error(lambda cls: cls(n_clusters=3, random_state=0).fit(X).predict(Y))


@pytest.mark.parametrize(
    ("bad_x", "weights"),
    [
        ("nan", np.ones(49)),  # wrong length
        ("nan", np.full(50, np.nan)),
        ("both_infinities", np.full(50, np.inf)),
        ("both_infinities", "text"),
        ("none", np.full(50, np.nan)),
        ("none", np.ones((50, 2, 2))),
    ],
)
def test_score_reports_x_before_its_sample_weight(bad_x, weights):
    # score checks X for NaN and infinity while labelling, after validating
    # sample_weight: when the weights are bad too, X's error (and the warning
    # of its first sum) must still come first, as in scikit-learn.
    X = np.random.RandomState(0).normal(size=(100, 12))
    Y = np.random.RandomState(1).normal(size=(50, 12))
    if bad_x == "nan":
        Y[40, 3] = np.nan
    elif bad_x == "both_infinities":
        Y[1, 0], Y[-1, -1] = np.inf, -np.inf

    def call(cls):
        return cls(n_clusters=3, random_state=0).fit(X).score(Y, sample_weight=weights)

    expected = record_warnings(lambda: sklearn_error(lambda: call(SkMiniBatchKMeans)))
    assert record_warnings(lambda: sklearn_error(lambda: call(MiniBatchKMeans))) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (recorded above)
        _same_error(call)


@pytest.mark.parametrize("method", ["predict", "score"])
def test_threads_finding_bad_blocks_at_once_warn_once(monkeypatch, method):
    # Every block holds +inf and -inf, so both labelling threads find one in
    # their first block: the check (whose first sum warns) must run once.
    from bridge_server.core import _kmeans_steps

    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 2)
    monkeypatch.setattr(_kmeans_steps, "SCREEN_BLOCK_ROWS", 512)
    X = np.random.RandomState(0).normal(size=(2000, 12))
    Y = np.random.RandomState(1).normal(size=(400_000, 12))
    Y[::512, 0], Y[1::512, 1] = np.inf, -np.inf

    def call(cls):
        return getattr(cls(n_clusters=3, random_state=0).fit(X), method)(Y)

    expected = record_warnings(lambda: sklearn_error(lambda: call(SkMiniBatchKMeans)))
    for _ in range(5):
        assert record_warnings(lambda: sklearn_error(lambda: call(MiniBatchKMeans))) == expected
    assert len(expected) == 1


def _both_infinities(n_rows: int, n_features: int) -> np.ndarray:
    X = np.random.RandomState(1).normal(size=(n_rows, n_features))
    X[1, 0], X[-1, -1] = np.inf, -np.inf  # rows apart (different blocks when long)
    return X


@pytest.mark.parametrize(
    "call",
    [
        lambda cls, X: cls(n_clusters=2, random_state=0).fit(X),
        lambda cls, X: cls(n_clusters=2, random_state=0).fit(X_OK[:, :1]).predict(X),
        lambda cls, X: cls(n_clusters=2, random_state=0).fit(X_OK[:, :1]).score(X),
        lambda cls, X: cls(n_clusters=2, random_state=0).fit(X_OK[:, :1]).transform(X),
        lambda cls, X: cls(n_clusters=2, init=X[[1, -1]], random_state=0).fit(X_OK[:, :1]),
        lambda cls, X: cls(n_clusters=2, random_state=0).fit(
            np.arange(X.shape[0], dtype=float)[:, np.newaxis], sample_weight=X[:, 0]
        ),
    ],
    ids=["fit", "predict", "score", "transform", "init", "sample_weight"],
)
@pytest.mark.parametrize("n_rows", [8, 200_000])
def test_both_infinities_warn_and_raise_as_sklearn(call, n_rows):
    # scikit-learn's finiteness check starts with one sum of everything, with
    # only overflow ignored: +inf and -inf warn "invalid value encountered in
    # reduce" before the ValueError, wherever they are (predict's check, done
    # while labelling with errors ignored, too).
    X = _both_infinities(n_rows, 1)
    expected = record_warnings(lambda: sklearn_error(lambda: call(SkMiniBatchKMeans, X)))
    got = record_warnings(lambda: sklearn_error(lambda: call(MiniBatchKMeans, X)))
    assert got == expected and expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (recorded above)
        _same_error(lambda cls: call(cls, X))
    with np.errstate(invalid="raise"):  # then NumPy's error comes first, in both
        _same_error(lambda cls: call(cls, X))


@pytest.mark.parametrize("seed", ["bad", -1, 2**32, 1.5])
def test_later_partial_fit_still_checks_its_random_state(seed):
    # scikit-learn seeds a fresh RandomState on every partial_fit (keeping the
    # first call's); the core skips that work after the first call, but a
    # seed set since then must still raise scikit-learn's error.
    def call(cls):
        model = cls(n_clusters=2, random_state=0).partial_fit(X_OK)
        model.set_params(random_state=seed)
        return model.partial_fit(X_OK)

    _same_error(call)
