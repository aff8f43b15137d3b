"""Validation's look for NaN and infinity as squared row norms, which the screen then uses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans, assert_same_fit, record_warnings, sklearn_error

from bridge_server.core import MiniBatchKMeans, _row_norms, _screen
from bridge_server.core._split_sum import SPLIT_MIN_VALUES


def _rows(n_rows: int, n_features: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n_rows, n_features)) * np.exp(rng.uniform(-5, 5, (n_rows, 1)))


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("n_rows", [1, 999, SPLIT_MIN_VALUES // 10 + 7])
def test_norms_are_each_rows_own_on_any_number_of_threads(monkeypatch, threads, n_rows):
    monkeypatch.setattr(_row_norms, "usable_cores", lambda: threads)
    X = _rows(n_rows)
    got = _row_norms.finite_sq_norms(X)
    assert got is not None and got.dtype == np.float32 and got.shape == (n_rows,)
    # Each row's sum is NumPy's for that row, whichever thread took it.
    np.testing.assert_array_equal(got, np.einsum("ij,ij->i", X, X).astype(np.float32))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e200])
@pytest.mark.parametrize("where", [0, 1, -1])
def test_any_non_finite_value_or_overflowing_square_proves_nothing(monkeypatch, value, where):
    # 1e200 is finite, but its square is not: no proof, so the usual check runs.
    monkeypatch.setattr(_row_norms, "usable_cores", lambda: 2)
    X = _rows(SPLIT_MIN_VALUES // 10 + 7)  # big enough for two threads
    row = {0: 0, 1: len(X) // 2 + 3, -1: len(X) - 1}[where]  # the second part's first row
    X[row, 4] = value
    with np.errstate(all="raise"):  # nothing reaches the caller's error settings
        assert _row_norms.finite_sq_norms(X) is None


def test_norms_are_wanted_for_screened_float64_rows_in_one_block(monkeypatch):
    X = _rows(100)
    assert _row_norms.wanted(X, screened=True)
    assert not _row_norms.wanted(X, screened=False)
    assert not _row_norms.wanted(X.astype(np.float32), screened=True)
    assert not _row_norms.wanted(np.asfortranarray(X), screened=True)
    assert not _row_norms.wanted(X[:0], screened=True)
    monkeypatch.setattr(_row_norms, "MAX_ROWS", 99)  # a longer input is checked as usual
    assert not _row_norms.wanted(X, screened=True)


def test_training_validation_returns_the_norms_where_the_screen_labels():
    wide = _rows(200)
    model = MiniBatchKMeans(n_clusters=3)
    X, norms = model._validate_train_data(wide, reset=True)
    assert X is wide and norms is not None
    np.testing.assert_array_equal(norms, np.einsum("ij,ij->i", wide, wide).astype(np.float32))
    narrow = _rows(200, n_features=_screen.SCREEN_MIN_FEATURES - 1)
    assert model._validate_train_data(narrow, reset=True)[1] is None
    assert model._validate_train_data(wide.astype(np.float32), reset=True)[1] is None


def _bad(kind: str, n_rows: int) -> np.ndarray:
    X = _rows(n_rows, n_features=12, seed=3)
    if kind == "nan":
        X[n_rows // 2, 5] = np.nan
    elif kind == "inf":
        X[n_rows - 1, 11] = np.inf
    elif kind == "both_infinities":  # scikit-learn's sum warns "invalid value" first
        X[1, 0], X[-1, -1] = np.inf, -np.inf
    elif kind == "inf_then_nan":  # NaN wins, wherever it is
        X[0, 0], X[-1, 3] = np.inf, np.nan
    return X


def _state(model: object) -> dict[str, object]:
    """The attributes a failed call left (fitted ones included)."""
    return {k: type(v) for k, v in vars(model).items() if k.endswith("_")}


@pytest.mark.parametrize("kind", ["nan", "inf", "both_infinities", "inf_then_nan"])
@pytest.mark.parametrize("n_rows", [50, 120_000])
@pytest.mark.parametrize("method", ["fit", "partial_fit", "second_partial_fit"])
def test_bad_screened_input_fails_as_sklearn(kind, n_rows, method):
    # Wide float64 input, where the norms' total is validation's check: the
    # same warnings, the same error, and the same state left behind.
    X = _bad(kind, n_rows)
    good = _rows(n_rows, n_features=12, seed=4)

    def call(cls):
        model = cls(n_clusters=3, random_state=0)
        if method == "second_partial_fit":
            model.partial_fit(good)
        fit = model.fit if method == "fit" else model.partial_fit
        warned = record_warnings(lambda: sklearn_error(lambda: fit(X)))
        return model, warned

    ref, expected = call(SkMiniBatchKMeans)
    ours, got = call(MiniBatchKMeans)
    assert got == expected
    assert _state(ours) == _state(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (recorded above)
        error = sklearn_error(lambda: SkMiniBatchKMeans(n_clusters=3).fit(X))
        with pytest.raises(ValueError) as info:
            MiniBatchKMeans(n_clusters=3).fit(X)
    assert str(info.value) == str(error)
    if method == "second_partial_fit":  # the model kept its centers
        np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)


def test_norms_whose_total_overflows_are_checked_and_fitted_as_sklearn():
    # Each row's squared norm is finite (about 1.2e307) but their total is
    # not: no proof, the usual check finds nothing, and the fit goes on
    # (those rows' blocks unscreened) as scikit-learn's, warnings included.
    X = np.random.RandomState(5).normal(size=(400, 12))
    X[:30] *= 1e153
    assert np.isfinite(np.einsum("ij,ij->i", X, X)).all()
    assert _row_norms.finite_sq_norms(X) is None
    ours = MiniBatchKMeans(n_clusters=4, random_state=0, n_init=1)
    ref = SkMiniBatchKMeans(n_clusters=4, random_state=0, n_init=1)
    assert record_warnings(lambda: ours.fit(X)) == record_warnings(lambda: ref.fit(X))
    assert ours.n_steps_ == ref.n_steps_
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)


@pytest.mark.parametrize("stream", [False, True])
def test_fits_with_validations_norms_match_sklearn_and_fits_without(monkeypatch, stream):
    # Near-tie rows (many left to the exact scores) over many magnitudes,
    # wide enough to be screened: the labels the screen decides with the given
    # norms are scikit-learn's, and the same as with the screen's own norms.
    rng = np.random.RandomState(9)
    C = rng.normal(size=(6, 16)) * 4
    a, b = rng.randint(0, 6, size=(2, 3000))
    X = C[a] + (0.5 + rng.uniform(-1e-6, 1e-6, (3000, 1))) * (C[b] - C[a])
    X = np.concatenate([X, C[a] + rng.normal(size=(3000, 16))])
    params = dict(n_clusters=6, batch_size=256, random_state=0, n_init=2)

    def run(cls):
        model = cls(**params)
        if not stream:
            return model.fit(X)
        for chunk in np.array_split(X, 4):
            model.partial_fit(chunk)
        return model

    ours = run(MiniBatchKMeans)
    assert_same_fit(ours, run(SkMiniBatchKMeans))
    monkeypatch.setattr(_row_norms, "wanted", lambda X, screened: False)
    without = run(MiniBatchKMeans)
    np.testing.assert_array_equal(ours.cluster_centers_, without.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, without.labels_)


@pytest.mark.parametrize("n_clusters", [None, "abc", 2**30])
@pytest.mark.parametrize("kind", ["nan", "features", "clean"])
def test_a_later_partial_fit_does_not_read_an_unchecked_n_clusters(n_clusters, kind):
    # scikit-learn checks parameters on the first partial_fit only; a later
    # call validates X against the fitted model (its own center count),
    # whatever n_clusters was set to since: the same error as scikit-learn's.
    X = _rows(300, n_features=12, seed=6)
    Y = _rows(300, n_features=10 if kind == "features" else 12, seed=7)
    if kind == "nan":
        Y[5, 5] = np.nan

    def call(cls):
        model = cls(n_clusters=3, random_state=0).partial_fit(X)
        model.set_params(n_clusters=n_clusters)
        return model.partial_fit(Y)

    if kind == "clean" and n_clusters == 2**30:  # no error: both go on with three centers
        ours, ref = call(MiniBatchKMeans), call(SkMiniBatchKMeans)
        np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
        return
    expected = sklearn_error(lambda: call(SkMiniBatchKMeans))
    with pytest.raises(type(expected)) as info:
        call(MiniBatchKMeans)
    if kind != "clean":  # (the clean call's TypeError is raised elsewhere, worded by Python)
        assert str(info.value) == str(expected)
