"""Helpers for the core tests: scikit-learn 1.5.2 is the oracle (imported by the test modules)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

sklearn_cluster = pytest.importorskip("sklearn.cluster")
SkMiniBatchKMeans = sklearn_cluster.MiniBatchKMeans


@contextlib.contextmanager
def openmp_threads(n: int) -> Iterator[None]:
    """scikit-learn's OpenMP loops on ``n`` threads, and the core told so.

    scikit-learn sums its inertias in one block per OpenMP thread, so their
    last bits, and the near-ties they decide (the best init, verbose lines,
    early stops), depend on the thread count; the core sums in the blocks of
    the count scikit-learn would use, which ``OMP_NUM_THREADS`` sets for both.
    Fits on either side inside this context agree whatever the machine.
    """
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        with threadpool_limits(n, user_api="openmp"):
            yield
    finally:
        if old is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = old


def sklearn_loop_labels(scores: np.ndarray, axis: int) -> np.ndarray:
    """Labels as scikit-learn's compiled loop picks them from ``scores``.

    Its ``_update_chunk_dense`` keeps center 0's score and moves to center
    ``j`` only when ``score_j < best``: the first minimum, and a NaN is
    never taken unless it is center 0's. Vectorised over the samples.
    """
    along = np.moveaxis(scores, axis, 0)
    best = along[0].copy()
    labels = np.zeros(best.shape, dtype=np.intp)
    for j in range(1, along.shape[0]):
        better = along[j] < best
        best[better] = along[j][better]
        labels[better] = j
    return labels


def sklearn_error(call: Callable[[], Any]) -> BaseException:
    """Run a scikit-learn call that must fail and return its exception."""
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("scikit-learn did not raise")


def record_warnings(call: Callable[[], Any]) -> list[tuple[type[Warning], str]]:
    """(category, message) of every warning ``call`` emits."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [(w.category, str(w.message)) for w in caught]


def capture_stdout(call: Callable[[], Any]) -> list[str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        call()
    return buf.getvalue().splitlines()


def assert_same_fit(
    ours: Any, ref: Any, *, rtol: float = 1e-10, inertia_rtol: float = 1e-6
) -> None:
    """Centers, labels, n_steps_, n_iter_ and inertia_ agree with scikit-learn's."""
    assert ours.cluster_centers_.dtype == ref.cluster_centers_.dtype
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=rtol, atol=0)
    assert ours.n_steps_ == ref.n_steps_
    assert hasattr(ours, "n_iter_") == hasattr(ref, "n_iter_")
    if hasattr(ref, "n_iter_"):
        assert ours.n_iter_ == ref.n_iter_
    assert hasattr(ours, "labels_") == hasattr(ref, "labels_")
    if hasattr(ref, "labels_"):
        assert ours.labels_.dtype == ref.labels_.dtype
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert hasattr(ours, "inertia_") == hasattr(ref, "inertia_")
    if hasattr(ref, "inertia_"):
        np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=inertia_rtol)
