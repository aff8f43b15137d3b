"""The fast paths give the same numbers as the plain ones: folded norms, threaded labelling."""

from __future__ import annotations

import functools
import math
import threading
import time

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans
from sklearn.datasets import make_blobs

from bridge_server.core import MiniBatchKMeans, _blas, _kmeans_steps, _prune, _scratch, _twin


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_features", [1, 2, 3])
@pytest.mark.parametrize("n_clusters", [37, 196, 199, 255, 300])
def test_folded_scores_equal_separate_add(dtype, n_features, n_clusters):
    # Whether folding is exact depends on the product's width (at 2 float64
    # features it was not for 196 to 199 centers, 204 to 207, ...): the
    # probe runs per shape, and the partial last chunk is never folded.
    rng = np.random.RandomState(n_features)
    k = n_clusters
    for X, C in [
        (rng.randint(-5, 5, size=(700, n_features)), rng.randint(-5, 5, size=(k, n_features))),
        (np.round(rng.normal(size=(700, n_features)) * 10, 1), rng.normal(size=(k, n_features))),
        (rng.normal(size=(700, n_features)) * 1e3 + 1e4, rng.normal(size=(k, n_features)) * 1e3),
        (rng.normal(size=(700, n_features)) * 1e-3 + 1e6, rng.normal(size=(k, n_features)) + 1e6),
    ]:
        X, C = X.astype(dtype), C.astype(dtype)
        plain = _kmeans_steps.Scorer(k, n_features, dtype, fold=False)
        auto = _kmeans_steps.Scorer(k, n_features, dtype)
        plain.set_centers(C)
        auto.set_centers(C)
        with _blas.section(1):
            a = plain.scores(X, plain.row_buffer(700), np.empty((700, k), dtype))
            b = auto.scores(X, auto.row_buffer(700), np.empty((700, k), dtype))
            # Plain is the reference arithmetic: product of 256-row chunks, then + |c|^2.
            ref = np.concatenate([X[i : i + 256] @ (-2 * C).T for i in range(0, 700, 256)])
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, ref + np.einsum("ij,ij->i", C, C))


@pytest.mark.parametrize("n_clusters", [196, 300])
def test_wide_two_feature_fits_on_near_ties_match_sklearn(n_clusters):
    # 2 features near 1e6 with a spread of 1e-3: the scores of all centers
    # agree to within their rounding, so the labels are decided by the last
    # bit of each product. Folded norms gave other bits at these widths.
    X = 1e6 + np.random.RandomState(0).normal(size=(3000, 2)) * 1e-3
    params = dict(n_clusters=n_clusters, random_state=0, max_iter=2, batch_size=1024)
    ours = MiniBatchKMeans(**params).fit(X)
    ref = SkMiniBatchKMeans(**params).fit(X)
    assert ours.n_steps_ == ref.n_steps_
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_array_equal(ours.predict(X[:1000]), ref.predict(X[:1000]))


@pytest.mark.parametrize(
    ("grid", "n_features"), [(False, 2), (True, 2), (False, 10)]
)  # 10 features: rows summed by einsum
@pytest.mark.parametrize("with_weights", [False, True])
def test_threaded_labels_and_inertia_equal_one_thread(monkeypatch, with_weights, grid, n_features):
    rng = np.random.RandomState(0)
    X = np.round(rng.normal(size=(20_000, n_features)) * 5, 1)
    sw = rng.uniform(0.5, 2, size=20_000) if with_weights else None
    centers = X[rng.choice(20_000, 30, replace=False)]
    monkeypatch.setattr(_kmeans_steps, "BLOCK_BYTES", 1)  # one 256-row chunk per block
    monkeypatch.setattr(_prune, "BLOCK_ROWS", 1000)  # grid blocks: 1000 rows
    if not grid:
        monkeypatch.setattr(_prune, "MIN_ROWS", 10**9)
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 1)
    labels_one = np.empty(20_000, np.int32)
    inertia_one = _kmeans_steps.labels_inertia(X, sw, centers, labels_one)
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 3)
    labels_many = np.empty(20_000, np.int32)
    seen: list[int] = []
    inertia_many = _kmeans_steps.labels_inertia(
        X, sw, centers, labels_many, on_block=lambda done, total: seen.append(done)
    )
    np.testing.assert_array_equal(labels_one, labels_many)
    assert inertia_one == inertia_many  # summed in row order whichever thread did a block
    assert seen == sorted(seen) and seen[-1] == 20_000
    only_labels = np.empty(20_000, np.int32)
    assert _kmeans_steps.labels_inertia(X, sw, centers, only_labels, with_inertia=False) == 0.0
    np.testing.assert_array_equal(labels_one, only_labels)


def test_threaded_labels_stop_on_error(monkeypatch):
    X = np.random.RandomState(1).normal(size=(20_000, 2))
    monkeypatch.setattr(_kmeans_steps, "BLOCK_BYTES", 1)
    monkeypatch.setattr(_prune, "BLOCK_ROWS", 1000)
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 2)
    _kmeans_steps.labels_inertia(X, None, X[:5], np.empty(20_000, np.int32))  # pools a helper
    before, idle = threading.active_count(), _twin.HELPERS.idle
    assert idle >= 1

    def cancel(done: int, total: int) -> None:
        if done > 2_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _kmeans_steps.labels_inertia(X, None, X[:5], np.empty(20_000, np.int32), on_block=cancel)
    # The helper joined and back in the pool: no thread more, none running.
    assert threading.active_count() == before and _twin.HELPERS.idle == idle

    real_run = _kmeans_steps._BlockLabeller.run

    def failing_run(self, start, stop):
        if threading.current_thread() is not threading.main_thread():
            raise MemoryError("helper failed")
        time.sleep(0.001)  # leave the helper blocks to fail on
        return real_run(self, start, stop)

    monkeypatch.setattr(_kmeans_steps._BlockLabeller, "run", failing_run)
    with pytest.raises(MemoryError, match="helper failed"):
        _kmeans_steps.labels_inertia(X, None, X[:5], np.empty(20_000, np.int32))
    assert threading.active_count() == before and _twin.HELPERS.idle == idle


def test_threaded_predict_matches_sklearn(monkeypatch):
    rng = np.random.RandomState(3)
    X = np.round(rng.normal(size=(30_000, 2)) * 3, 1)
    ours = MiniBatchKMeans(n_clusters=20, random_state=0).fit(X)
    ref = SkMiniBatchKMeans(n_clusters=20, random_state=0).fit(X)
    monkeypatch.setattr(_kmeans_steps, "BLOCK_BYTES", 1)
    monkeypatch.setattr(_prune, "BLOCK_ROWS", 1000)
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 2)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_allclose(ours.score(X), ref.score(X), rtol=1e-10)


def test_wide_threaded_predict_in_long_screened_blocks_matches_sklearn(monkeypatch):
    # 50 features: float32-screened blocks of up to SCREEN_BLOCK_ROWS rows on
    # two threads; held-out rows from other blobs leave a few rows per block
    # to the float64 pass.
    X, _ = make_blobs(n_samples=6000, n_features=50, centers=20, random_state=0)
    Y, _ = make_blobs(n_samples=30_000, n_features=50, centers=20, random_state=1)
    ours = MiniBatchKMeans(n_clusters=20, random_state=0).fit(X)
    ref = SkMiniBatchKMeans(n_clusters=20, random_state=0).fit(X)
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 2)
    block = _kmeans_steps._screen_block(30_000, 5120)
    assert block % _kmeans_steps.ROW_CHUNK == 0 and 5120 <= block <= 30_000 / 4 + 256
    np.testing.assert_array_equal(ours.predict(Y), ref.predict(Y))
    np.testing.assert_allclose(ours.score(Y), ref.score(Y), rtol=1e-10)
    assert _kmeans_steps._screen_block(10**7, 5120) == _kmeans_steps.SCREEN_BLOCK_ROWS
    assert _kmeans_steps._screen_block(1000, 5120) == 1000


@pytest.mark.parametrize(
    ("n_features", "n_clusters", "dtype", "weighted", "how"),
    [
        (2, 100, np.float64, False, "twin"),  # 1024 x 100 x 3: halves on two threads
        (2, 100, np.float32, False, "twin"),  # float32 with folded norms, column-major rows
        (3, 70, np.float32, True, "twin"),
        (20, 60, np.float64, True, "twin"),  # many features: rows gathered on both threads
        (20, 60, np.float32, False, "twin"),
        (2, 20, np.float64, True, "one"),  # 1024 x 20 x 3: too little to share
    ],
)
def test_split_steps_match_sklearn(monkeypatch, n_features, n_clusters, dtype, weighted, how):
    # A fresh history of trials (not what earlier fits in this process found):
    # the fit's own first trial shares half of its first 32 steps.
    monkeypatch.setattr(_twin, "_HISTORIES", {})
    taken: list[bool] = []
    real_next = _twin.SplitChooser.next

    def recorded(self: _twin.SplitChooser) -> bool:
        taken.append(real_next(self))
        return taken[-1]

    monkeypatch.setattr(_twin.SplitChooser, "next", recorded)
    rng = np.random.RandomState(n_features)
    X = np.round(rng.normal(size=(30_000, n_features)) * 4, 1).astype(dtype)
    sample_weight = rng.uniform(0.5, 2, size=X.shape[0]) if weighted else None
    ws = _kmeans_steps.StepWorkspace(1024, n_clusters, n_features, np.dtype(dtype))
    with ws:
        if _kmeans_steps._n_threads() > 1:
            assert (ws.split > 0) == (how == "twin")
    params = dict(n_clusters=n_clusters, batch_size=1024, max_iter=3, random_state=0)
    ours = MiniBatchKMeans(**params).fit(X, sample_weight=sample_weight)
    ref = SkMiniBatchKMeans(**params).fit(X, sample_weight=sample_weight)
    assert ours.n_steps_ == ref.n_steps_
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(
        ours.cluster_centers_, ref.cluster_centers_, rtol=1e-6 if dtype == np.float32 else 1e-12
    )
    assert not any(t.name == "skbridge-twin" for t in threading.enumerate())
    if _kmeans_steps._n_threads() > 1:
        assert any(taken) == (how == "twin")


@pytest.mark.parametrize("n_threads", [1, 2])
def test_labels_pass_lets_another_call_in(monkeypatch, n_threads):
    # A long predict must not keep a section at another BLAS thread count
    # waiting to its end: it steps aside between blocks or rounds of blocks.
    X = np.random.RandomState(4).normal(size=(20_000, 2))
    monkeypatch.setattr(_kmeans_steps, "BLOCK_BYTES", 1)
    monkeypatch.setattr(_kmeans_steps, "ROUND_BLOCKS", 1)
    monkeypatch.setattr(_prune, "MIN_ROWS", 10**9)
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: n_threads)
    progress: list[int] = []
    entered_at: list[int] = []

    def other() -> None:
        # Another count: a section at the same count would not have to wait at all.
        with _kmeans_steps._blas.section(2):
            entered_at.append(progress[-1])

    waiter = threading.Thread(target=other)

    def on_block(done: int, total: int) -> None:
        progress.append(done)
        if len(progress) == 1:
            waiter.start()
            time.sleep(0.05)  # the other call is waiting for the section by now

    _kmeans_steps.labels_inertia(X, None, X[:30], np.empty(20_000, np.int32), on_block=on_block)
    waiter.join(5)
    assert entered_at and entered_at[0] < 20_000 // 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_reported_inertia_may_sum_wide_rows_by_einsum(dtype):
    rng = np.random.RandomState(7)
    # Far from the origin and wide: the two orders give different totals here.
    X = (rng.normal(size=(5_000, 33)) * 3 + 1000).astype(dtype)
    sw = rng.uniform(0.5, 2, size=X.shape[0]).astype(dtype)
    C = X[rng.choice(X.shape[0], 40, replace=False)]
    labels = np.empty(X.shape[0], np.int32)
    ordered = _kmeans_steps.labels_inertia(X, sw, C, labels)  # the default
    fast = _kmeans_steps.labels_inertia(X, sw, C, labels, sklearn_order=False)
    diff = X - C[labels]
    sq_ordered = _kmeans_steps._sample_sq_distances(X, C, labels, np.empty_like(X)) * sw
    sq_fast = np.einsum("ij,ij->i", diff, diff) * sw
    # Each is its rows' values added in row order, in the data's dtype.
    assert ordered == float(np.cumsum(sq_ordered, dtype=dtype)[-1])
    assert fast == float(np.cumsum(sq_fast, dtype=dtype)[-1])
    assert fast == pytest.approx(ordered, rel=1e-12 if dtype == np.float64 else 1e-4)


def test_a_reported_unweighted_float64_inertia_is_summed_by_chunks(monkeypatch):
    # One dot product per 256-row chunk, the chunks' totals added left to
    # right: the same bits on every call and for any number of threads (which
    # changes how rows are split into blocks), and within rounding of the
    # exact total.
    rng = np.random.RandomState(8)
    X = rng.normal(size=(60_000, 20)) * 3 + 1000  # far from the origin: orders differ
    C = X[rng.choice(X.shape[0], 30, replace=False)]
    labels = np.empty(X.shape[0], np.int32)
    model = MiniBatchKMeans(n_clusters=30, random_state=0).fit(X[:5000])
    totals, scores = set(), set()
    for n_threads in (1, 2, 3, 4, 1):
        monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda n=n_threads: n)
        totals.add(_kmeans_steps.labels_inertia(X, None, C, labels, sklearn_order=False))
        scores.add(model.score(X))
    assert len(scores) == 1
    diff = X - C[labels]
    flat = [diff[a : a + 256].reshape(-1) for a in range(0, len(X), 256)]
    by_chunks = 0.0
    for chunk in flat:
        by_chunks += float(np.dot(chunk, chunk))
    assert len(totals) == 1
    if hasattr(np, "vecdot"):  # a BLAS dot per chunk, as np.dot's (NumPy 1: einsum's order)
        assert totals == {by_chunks}
    exact = math.fsum(np.einsum("ij,ij->i", diff, diff))
    assert by_chunks == pytest.approx(exact, rel=1e-13)
    assert _kmeans_steps._chunk_totals(X, None, np.dtype(np.float64), sklearn_order=False)
    # Weighted, float32, narrow rows or scikit-learn's order: row by row.
    assert not _kmeans_steps._chunk_totals(X, X[:, 0], np.dtype(np.float64), sklearn_order=False)
    assert not _kmeans_steps._chunk_totals(X, None, np.dtype(np.float32), sklearn_order=False)
    assert not _kmeans_steps._chunk_totals(X[:, :2], None, np.dtype(np.float64), False)
    assert not _kmeans_steps._chunk_totals(X, None, np.dtype(np.float64), sklearn_order=True)


@pytest.mark.parametrize("n_features", [3, 20])
def test_unit_weights_give_the_unweighted_results(n_features):
    # As in scikit-learn, where sample_weight=None means ones: the same bits
    # for inertia_, score and the centers, however the weights are given.
    rng = np.random.RandomState(n_features)
    X = rng.normal(size=(20_000, n_features)) * 3 + 100
    ref = MiniBatchKMeans(n_clusters=30, random_state=0).fit(X)
    for weights in (np.ones(len(X)), np.ones(len(X), np.float32), 1, 1.0, True):
        model = MiniBatchKMeans(n_clusters=30, random_state=0).fit(X, sample_weight=weights)
        assert model.inertia_ == ref.inertia_
        np.testing.assert_array_equal(model.cluster_centers_, ref.cluster_centers_)
        assert ref.score(X, sample_weight=weights) == ref.score(X)
    assert ref.score(X, sample_weight=np.full(len(X), 2.0)) == pytest.approx(2 * ref.score(X))


def test_only_reported_inertias_leave_sklearns_order(monkeypatch):
    # The validation inertia picks the best init: it must keep scikit-learn's
    # order. inertia_ and score only report a total.
    calls: list[tuple[int, bool]] = []
    real = _kmeans_steps.labels_inertia

    def spy(X, *args, **kwargs):
        calls.append((X.shape[0], kwargs.get("sklearn_order", True)))
        return real(X, *args, **kwargs)

    monkeypatch.setattr(_kmeans_steps, "labels_inertia", spy)
    X = np.random.RandomState(1).normal(size=(6_000, 12))
    est = MiniBatchKMeans(n_clusters=5, n_init=3, batch_size=256, random_state=0).fit(X)
    est.score(X)
    validation = [order for rows, order in calls if rows == 3 * 256]  # init_size rows
    assert validation == [True, True, True]
    assert [order for rows, order in calls if rows == X.shape[0]] == [False, False]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_shared_and_unshared_steps_give_identical_fits(monkeypatch, dtype, weighted):
    # Whether a step is shared with the twin thread is decided by timing; the
    # fit must not depend on it, bit for bit.
    rng = np.random.RandomState(11)
    X = np.round(rng.normal(size=(20_000, 20)) * 4, 1).astype(dtype)
    sw = rng.uniform(0.5, 2, size=X.shape[0]).astype(dtype) if weighted else None
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 2)
    fits = {}
    for shared in (True, False):
        monkeypatch.setattr(_twin.SplitChooser, "next", lambda self, shared=shared: shared)
        est = MiniBatchKMeans(n_clusters=60, batch_size=1024, max_iter=4, random_state=0)
        fits[shared] = est.fit(X, sample_weight=sw)
    a, b = fits[True], fits[False]
    assert a.n_steps_ == b.n_steps_
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a._counts, b._counts)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.inertia_ == b.inertia_


def test_a_step_takes_a_gathered_batch_or_rows_of_the_data_alike():
    rng = np.random.RandomState(12)
    X = rng.normal(size=(5_000, 6))
    rows = rng.randint(0, X.shape[0], 512)
    results = []
    for data, given_rows in ((X, rows), (X[rows], None), (X, np.zeros(513, np.intp))):
        centers, centers_new = X[:30].copy(), np.empty((30, 6))
        weight_sums = np.zeros(30)
        with _kmeans_steps.StepWorkspace(512, 30, 6, X.dtype) as ws, _kmeans_steps._blas.section(1):
            step = functools.partial(
                _kmeans_steps.mini_batch_step,
                *(data, None, centers, centers_new, weight_sums, np.random.RandomState(0), ws),
                random_reassign=True,
                reassignment_ratio=0.01,
                verbose=False,
                rows=given_rows,
            )
            if given_rows is not None and len(given_rows) > 512:
                with pytest.raises(ValueError, match="exceeds the workspace"):
                    step()
                continue
            results.append((step(), centers_new.copy(), weight_sums.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][2], results[1][2])


def test_scratch_pool_reuses_by_key_and_keeps_at_most_its_bytes():
    pool = _scratch.ScratchPool(max_bytes=100)
    a, b, c = object(), object(), object()
    assert pool.take("k") is None
    pool.give("k", a, 40)
    pool.give("k", b, 40)
    assert pool.nbytes == 80
    pool.give("other", c, 40)  # over the cap: the oldest item goes
    assert pool.nbytes == 80
    assert pool.take("k") is b
    assert pool.take("k") is None
    assert pool.take("other") is c
    pool.give("huge", object(), 101)  # never kept
    assert pool.take("huge") is None and pool.nbytes == 0


@pytest.mark.parametrize("n_features", [2, 10, 50])  # grid + folded norms, screened, screened
def test_labelling_with_reused_scratch_equals_fresh_scratch(monkeypatch, n_features):
    rng = np.random.RandomState(n_features)
    C = rng.normal(size=(30, n_features)) * 4
    batches = [C[rng.randint(0, 30, 40_000)] + rng.normal(size=(40_000, n_features)) for _ in "ab"]

    def run(X):
        labels = np.empty(len(X), np.int32)
        return labels, _kmeans_steps.labels_inertia(X, None, C, labels, sklearn_order=False)

    pool = _scratch.ScratchPool()
    reused = []
    take = pool.take
    monkeypatch.setattr(pool, "take", lambda key: reused.append(take(key)) or reused[-1])
    monkeypatch.setattr(_scratch, "POOL", pool)
    first = [run(X) for X in batches]  # the second call reuses the first's buffers
    assert sum(item is not None for item in reused) >= 1
    for X, (labels, inertia) in zip(batches, first):
        monkeypatch.setattr(_scratch, "POOL", _scratch.ScratchPool())  # fresh buffers
        fresh_labels, fresh_inertia = run(X)
        np.testing.assert_array_equal(labels, fresh_labels)
        assert inertia == fresh_inertia


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [1, 2, 3, 8, 50])
@pytest.mark.parametrize("order", ["C", "F"])
def test_rows_added_in_pairs_equal_one_by_one_in_order(dtype, n_features, order):
    # The center update's scatter adds pairs of values as complex numbers
    # where the number of features is even: every center's sums must be the
    # bits of adding its rows one at a time in batch order, also for signed
    # zeros, infinities, NaN and values whose order of addition matters.
    rng = np.random.RandomState(n_features)
    n_clusters, n_rows = 7, 300
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 1e-30, 3.0], dtype)
    scales = 10.0 ** rng.randint(-8, 9, (n_rows, 1))
    rows = (rng.normal(size=(n_rows, n_features)) * scales).astype(dtype)
    labels = rng.randint(0, n_clusters, n_rows)
    labels[:20] = 3  # one center gets a long run
    # Special values for centers 0-2 only: the others' sums stay finite.
    mask = (rng.rand(n_rows, n_features) < 0.05) & (labels[:, np.newaxis] < 3)
    rows[mask] = rng.choice(specials, mask.sum())
    rows = np.asarray(rows, order=order)
    acc = (rng.normal(size=(n_clusters, n_features)) * 1e6).astype(dtype)
    acc[6] = -0.0  # and center 6 gets only negative zeros: its sums stay -0.0
    rows[labels == 6] = -0.0
    table = _kmeans_steps.scatter_table(n_clusters, n_features)
    assert table.shape[1] == (n_features // 2 if n_features % 2 == 0 else n_features)
    index = np.empty((n_rows, table.shape[1]), dtype=np.intp)
    expected = acc.copy()
    with np.errstate(all="ignore"):  # inf - inf, and overflow in float32
        for row, label in zip(rows, labels):
            expected[label] += row
        _kmeans_steps._add_rows(acc, rows, labels, table, index)

    # Bit for bit, signed zeros included; where both operands of an addition
    # are NaN, which one's sign survives is up to the instruction (as in
    # scikit-learn's compiled loop), so NaN compares as NaN.
    def bits(a: np.ndarray) -> bytes:
        return np.where(np.isnan(a), dtype(np.nan), a).tobytes()

    assert bits(acc) == bits(expected)
    assert (~np.isfinite(expected[:3])).any() and np.isfinite(expected[3:]).all()
    assert np.signbit(expected[6]).all() and (expected[6] == 0).all()


def _sklearn_row_sq(x: np.ndarray, c: np.ndarray) -> np.generic:
    """One row's squared distance in scikit-learn's order, scalar by scalar in x's dtype."""
    total = x.dtype.type(0)
    n_blocks = x.size // 4
    for j in range(n_blocks):
        d = [x[4 * j + i] - c[4 * j + i] for i in range(4)]
        total += ((d[0] * d[0] + d[1] * d[1]) + d[2] * d[2]) + d[3] * d[3]
    for j in range(4 * n_blocks, x.size):
        total += (x[j] - c[j]) * (x[j] - c[j])
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [1, 3, 4, 5, 8, 36, 50, 129])
def test_squared_distances_are_summed_in_sklearns_order(dtype, n_features):
    # Blocks of four features, then the blocks in order, then the rest: the
    # blocks' sums are added by one reduction down (block, row) rows, which
    # must stay element-wise (never pairwise) for every number of rows,
    # with or without a scratch wider than the rows.
    rng = np.random.RandomState(n_features)
    for n_rows in (1, 2, 3, 7, 300):
        scales = 10.0 ** rng.randint(-6, 7, size=(n_rows, n_features))
        X = (rng.normal(size=(n_rows, n_features)) * scales).astype(dtype)
        C = rng.normal(size=(5, n_features)) * 10.0 ** rng.randint(-6, 7, n_features)
        C = C.astype(dtype)
        labels = rng.randint(0, 5, n_rows)
        expected = np.array([_sklearn_row_sq(x, C[k]) for x, k in zip(X, labels)], dtype)
        for blocks in (None, np.empty((n_features // 4 + 1, n_rows + 5), dtype)):
            got = _kmeans_steps._sample_sq_distances(X, C, labels, np.empty_like(X), blocks=blocks)
            assert got.tobytes() == expected.tobytes()
