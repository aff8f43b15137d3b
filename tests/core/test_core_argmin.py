"""Labels where scores are NaN: scikit-learn's loop skips NaN unless it is center 0's."""

from __future__ import annotations

import contextvars
import threading
import warnings

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans, sklearn_loop_labels

from bridge_server.core import MiniBatchKMeans, _argmin, _kmeans_steps


def _scores(rng: np.random.RandomState, n: int, k: int) -> np.ndarray:
    """(n, k) scores with ties, infinities of both signs and NaN in every position."""
    scores = rng.randint(-3, 3, size=(n, k)).astype(float)
    for value in (np.nan, np.inf, -np.inf):
        scores[rng.randint(0, n, n // 3), rng.randint(0, k, n // 3)] = value
    scores[:5, 0] = np.nan  # a NaN first score keeps center 0
    scores[5, :] = np.nan
    scores[6, :] = np.inf
    return scores


@pytest.mark.parametrize("k", [1, 2, 7, 64])
def test_argmin_is_sklearns_loop(k):
    rng = np.random.RandomState(k)
    scores = _scores(rng, 3000, k)
    expected = sklearn_loop_labels(scores, axis=1)
    np.testing.assert_array_equal(_argmin.argmin(scores, axis=1), expected)
    np.testing.assert_array_equal(_argmin.argmin(scores.T, axis=0), expected)
    # fix_rows: NumPy's labels, corrected on the rows that hold NaN only.
    labels = np.argmin(scores, axis=1)
    clean = ~np.isnan(scores).any(axis=1)
    before = labels.copy()
    _argmin.fix_rows(scores, labels)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(labels[clean], before[clean])


def test_watch_sees_operations_that_make_nan_on_its_own_thread():
    inf = np.full(4, np.inf)
    with _argmin.watch():
        np.add(inf, 1.0)
        np.multiply(inf, 2.0)  # overflow and infinities: no NaN made
        assert not _argmin.seen()
        np.subtract(inf, inf)
        assert _argmin.seen()
    with _argmin.watch():
        np.add(np.full(4, np.nan), 1.0)  # NaN carried in: not an invalid operation
        assert not _argmin.seen()
        theirs: list[bool] = []

        def other_thread() -> None:
            with _argmin.watch():
                np.subtract(inf, inf)
                theirs.append(_argmin.seen())

        other = threading.Thread(target=other_thread)
        other.start()
        other.join()
        assert theirs == [True] and not _argmin.seen()  # another thread's NaN is its own
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(invalid="warn"):
            with _argmin.watch():  # no warning inside: recorded instead
                np.subtract(inf, inf)
            with pytest.warns(RuntimeWarning, match="invalid value"):
                np.subtract(inf, inf)  # the caller's setting again after


def _finite_centers(norms: list[float]) -> bool:
    """A scorer's ``finite_centers`` for one-feature centers of squared norms ``norms``."""
    scorer = _kmeans_steps.Scorer(len(norms), 1, np.dtype(np.float64))
    scorer.set_centers(np.sqrt(np.array(norms))[:, np.newaxis])
    return scorer.finite_centers


def test_centers_are_finite_by_their_largest_squared_norm():
    assert _finite_centers([1.0, 2.0])
    for bad in (np.nan, np.inf):
        assert not _finite_centers([1.0, bad])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _finite_centers([1e308, 1e308])  # no sum to overflow


def test_recording_blocks_record_on_every_thread_and_never_warn():
    inf = np.full(4, np.inf)
    assert not _argmin.records()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"), _argmin.recording():
            assert _argmin.records()
            _argmin.clear()
            np.multiply(inf, 1e308)  # overflow: ignored, as in compiled code
            assert not _argmin.seen()
            np.subtract(inf, inf)
            assert _argmin.seen()
            # A helper runs in a copy of this context (as labelling's do).
            theirs: list[bool] = []
            context = contextvars.copy_context()

            def helper() -> None:
                _argmin.clear()
                np.subtract(inf, inf)
                theirs.append(_argmin.records() and _argmin.seen())

            other = threading.Thread(target=lambda: context.run(helper))
            other.start()
            other.join()
            assert theirs == [True]
        assert not _argmin.records()


@pytest.mark.parametrize(
    ("dtype", "n_features", "n_clusters"),
    [
        (np.float64, 12, 4),  # (k, n) scores, NaN columns left to the fallback
        (np.float64, 50, 60),  # (n, k) scores
        (np.float64, 2, 5),  # few features: the grid's leftover rows
        (np.float32, 12, 40),
        (np.float32, 50, 60),
    ],
)
@pytest.mark.parametrize("seed", [0, 3])
def test_fits_whose_products_overflow_match_sklearn(dtype, n_features, n_clusters, seed):
    # One row far out: its products with the centers overflow, infinities
    # meet and some scores are NaN. scikit-learn skips those; so must the core.
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(400, n_features)) * np.exp(rng.uniform(-5, 5, (400, 1)))
    X = X.astype(dtype)
    X[7] *= dtype(1e160 if dtype == np.float64 else 1e25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (the same ones: see test_validation)
        ours = MiniBatchKMeans(n_clusters=n_clusters, random_state=0, n_init=1).fit(X)
        ref = SkMiniBatchKMeans(n_clusters=n_clusters, random_state=0, n_init=1).fit(X)
        assert ours.n_steps_ == ref.n_steps_
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
        np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


class _Log:
    """A "log" mode handler: NumPy writes each error's message to it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, message: str) -> None:
        self.lines.append(message)


@pytest.mark.parametrize("mode", ["log", "call"])
def test_the_callers_error_handler_gets_what_sklearns_gets(mode):
    # The core records invalid operations with a handler of its own while it
    # labels; where it hands errors back to the caller (predict's NaN check,
    # the tolerance's sum) the caller's handler must be back, as in scikit-learn.
    def run(cls):
        log, calls = _Log(), []
        handler = log if mode == "log" else (lambda kind, flag: calls.append(kind))
        model = cls(n_clusters=2, random_state=0, n_init=1)
        model.fit(np.random.RandomState(0).normal(size=(50, 2)))
        X = np.zeros((4, 2))
        X[0, 0], X[1, 0] = np.inf, -np.inf  # the check's sum warns "invalid value"
        errors = []
        for method in (model.predict, model.score):
            with np.errstate(invalid=mode, call=handler):
                try:
                    method(X)
                except ValueError as exc:
                    errors.append(str(exc))
        far = np.random.RandomState(0).normal(size=(300, 3)) * 1e160  # squares overflow
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with np.errstate(all="ignore", over=mode, call=handler):
                cls(n_clusters=3, tol=1e-4, max_iter=5, random_state=0, n_init=1).fit(far)
                assert np.geterrcall() is handler
        return errors, log.lines, calls

    expected = run(SkMiniBatchKMeans)
    assert run(MiniBatchKMeans) == expected
    assert expected[1] or expected[2]  # the handler did hear of errors
