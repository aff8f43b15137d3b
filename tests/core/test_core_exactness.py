"""Seed-for-seed equality with scikit-learn 1.5.2's MiniBatchKMeans."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from core_oracle import SkMiniBatchKMeans, assert_same_fit
from sklearn.datasets import make_blobs

from bridge_server.core import MiniBatchKMeans


def _blobs(n: int = 3000, n_features: int = 5, centers: int = 10, seed: int = 0) -> np.ndarray:
    X, _ = make_blobs(n_samples=n, n_features=n_features, centers=centers, random_state=seed)
    return X


def _integer_grid(n: int = 2000, n_features: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 6, size=(n, n_features)).astype(np.float64)


DATASETS = {
    "blobs5": lambda: _blobs(),
    "blobs2_many": lambda: _blobs(4000, 2, 25, seed=1),
    "rounded": lambda: np.round(_blobs(2500, 10, 6, seed=2), 1),
    "grid": lambda: _integer_grid(),
    "wide": lambda: _blobs(1500, 33, 5, seed=3),
    # Screened in float32 (8+ float64 features): exact ties, and an offset
    # float32 cannot resolve, must both fall back to the exact scores.
    "grid12": lambda: _integer_grid(2000, 12, seed=4),
    "offset16": lambda: _blobs(2000, 16, 8, seed=5) + 1e6,
}

PARAMS = [
    dict(n_clusters=10, random_state=0, batch_size=256),
    dict(n_clusters=10, random_state=1),
    dict(n_clusters=25, random_state=2, batch_size=100, max_iter=5),
    dict(n_clusters=10, random_state=3, init="random"),
    dict(n_clusters=8, random_state=4, init="random", n_init=4, batch_size=300),
    dict(n_clusters=6, random_state=5, tol=1e-3, batch_size=200),
    dict(n_clusters=12, random_state=6, max_no_improvement=None, max_iter=3, batch_size=128),
    dict(n_clusters=10, random_state=7, compute_labels=False, batch_size=256),
    dict(n_clusters=30, random_state=8, reassignment_ratio=0.3, batch_size=64, max_iter=4),
    dict(n_clusters=5, random_state=9, init_size=40, n_init=3, batch_size=50),
    dict(n_clusters=10, random_state=10, max_no_improvement=0, batch_size=100),
]


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("params", PARAMS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_fit_matches_sklearn(dataset, params):
    X = DATASETS[dataset]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkMiniBatchKMeans(**params).fit(X)
        ours = MiniBatchKMeans(**params).fit(X)
    assert_same_fit(ours, ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_float32_stays_float32_and_matches(seed):
    X = _blobs(4000, 6, 8, seed=seed).astype(np.float32)
    ref = SkMiniBatchKMeans(n_clusters=8, random_state=seed, batch_size=512).fit(X)
    ours = MiniBatchKMeans(n_clusters=8, random_state=seed, batch_size=512).fit(X)
    assert ours.cluster_centers_.dtype == np.float32
    assert_same_fit(ours, ref, rtol=0, inertia_rtol=1e-5)


def test_float32_wide_rounded_matches():
    # 33 features: single-precision GEMM rounds differently per block height.
    X = np.round(_blobs(3000, 33, 5, seed=4), 1).astype(np.float32)
    ref = SkMiniBatchKMeans(n_clusters=7, random_state=0, batch_size=700).fit(X)
    ours = MiniBatchKMeans(n_clusters=7, random_state=0, batch_size=700).fit(X)
    assert_same_fit(ours, ref, rtol=0, inertia_rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sample_weight_matches(dtype):
    X = _blobs(3000, 4, 6, seed=5).astype(dtype)
    sw = np.random.RandomState(0).uniform(0.1, 3.0, size=X.shape[0])
    ref = SkMiniBatchKMeans(n_clusters=6, random_state=0, batch_size=256).fit(X, sample_weight=sw)
    ours = MiniBatchKMeans(n_clusters=6, random_state=0, batch_size=256).fit(X, sample_weight=sw)
    assert_same_fit(ours, ref, inertia_rtol=1e-5)


def test_integer_weights_and_zero_weights_match():
    X = _integer_grid(1500, 2, seed=3)
    sw = np.random.RandomState(1).randint(0, 4, size=X.shape[0]).astype(float)
    ref = SkMiniBatchKMeans(n_clusters=9, random_state=2, batch_size=128, init="random").fit(
        X, sample_weight=sw
    )
    ours = MiniBatchKMeans(n_clusters=9, random_state=2, batch_size=128, init="random").fit(
        X, sample_weight=sw
    )
    assert_same_fit(ours, ref)


def test_integer_and_fortran_input_are_converted_like_sklearn():
    X = _integer_grid(1200, 4, seed=7).astype(np.int64)
    ours = MiniBatchKMeans(n_clusters=5, random_state=0).fit(X)
    ref = SkMiniBatchKMeans(n_clusters=5, random_state=0).fit(X)
    assert ours.cluster_centers_.dtype == np.float64
    assert_same_fit(ours, ref)
    Xf = np.asfortranarray(_blobs(1000, 3, 4).astype(np.float32))
    ours = MiniBatchKMeans(n_clusters=4, random_state=0).fit(Xf)
    ref = SkMiniBatchKMeans(n_clusters=4, random_state=0).fit(Xf)
    assert_same_fit(ours, ref, inertia_rtol=1e-5)


def test_explicit_array_init_matches():
    X = _blobs(2000, 3, 5, seed=8)
    init = X[[0, 10, 20, 30, 40]].copy()
    ref = SkMiniBatchKMeans(n_clusters=5, init=init, random_state=0).fit(X)
    ours = MiniBatchKMeans(n_clusters=5, init=init, random_state=0).fit(X)
    assert_same_fit(ours, ref)
    np.testing.assert_array_equal(init, X[[0, 10, 20, 30, 40]])  # the given array is not touched


def test_callable_init_matches():
    X = _blobs(2000, 3, 5, seed=9)

    def pick(data, k, random_state):
        return data[random_state.permutation(data.shape[0])[:k]]

    ref = SkMiniBatchKMeans(n_clusters=5, init=pick, random_state=3).fit(X)
    ours = MiniBatchKMeans(n_clusters=5, init=pick, random_state=3).fit(X)
    assert_same_fit(ours, ref)


def test_random_state_instance_is_consumed_like_sklearn():
    X = _blobs(1500, 2, 4, seed=1)
    rs_ref, rs_ours = np.random.RandomState(42), np.random.RandomState(42)
    ref1 = SkMiniBatchKMeans(n_clusters=4, random_state=rs_ref).fit(X)
    ref2 = SkMiniBatchKMeans(n_clusters=4, random_state=rs_ref).fit(X)
    ours1 = MiniBatchKMeans(n_clusters=4, random_state=rs_ours).fit(X)
    ours2 = MiniBatchKMeans(n_clusters=4, random_state=rs_ours).fit(X)
    assert_same_fit(ours1, ref1)
    assert_same_fit(ours2, ref2)
    assert rs_ref.randint(1 << 30) == rs_ours.randint(1 << 30)


@pytest.mark.parametrize(
    "params",
    [
        dict(n_clusters=6, random_state=0),
        dict(n_clusters=6, random_state=1, init="random", batch_size=300),
        dict(n_clusters=40, random_state=2, reassignment_ratio=0.5),
        dict(n_clusters=6, random_state=3, compute_labels=False),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_partial_fit_stream_matches(params, dtype):
    X = _blobs(6000, 4, 6, seed=11).astype(dtype)
    sw = np.random.RandomState(5).uniform(0.5, 2.0, size=X.shape[0])
    ref, ours = SkMiniBatchKMeans(**params), MiniBatchKMeans(**params)
    for start in range(0, X.shape[0], 1000):
        chunk, w = X[start : start + 1000], sw[start : start + 1000]
        ref.partial_fit(chunk, sample_weight=w)
        ours.partial_fit(chunk, sample_weight=w)
        rtol = 0 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=rtol)
    assert ours.n_steps_ == ref.n_steps_ == 6
    assert not hasattr(ours, "n_iter_")
    assert_same_fit(ours, ref, inertia_rtol=1e-5)


@pytest.mark.parametrize("rounded", [False, True])
def test_wide_partial_fit_stream_predict_and_score_match(rounded):
    # 12 float64 features: every labelling goes through the float32 screen;
    # 8 centers on 6 blobs leave a few rows to its exact fallback (rounding
    # to 0.1 adds ties).
    X = _blobs(6000, 12, 6, seed=21)
    X_new = _blobs(3000, 12, 6, seed=22)
    if rounded:
        X, X_new = np.round(X, 1), np.round(X_new, 1)
    params = dict(n_clusters=8, random_state=0, reassignment_ratio=0.2)
    ref, ours = SkMiniBatchKMeans(**params), MiniBatchKMeans(**params)
    for start in range(0, X.shape[0], 1000):
        ref.partial_fit(X[start : start + 1000])
        ours.partial_fit(X[start : start + 1000])
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert_same_fit(ours, ref, inertia_rtol=1e-10)
    np.testing.assert_array_equal(ours.predict(X_new), ref.predict(X_new))
    np.testing.assert_allclose(ours.score(X_new), ref.score(X_new), rtol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_clusters", [8, 70])
def test_float32_partial_fit_stream_reusing_first_labels_matches(weighted, n_clusters):
    # float32 in chunks of 3,000 rows, 12 features: 8 centers label from (k, n)
    # scores, 70 from (n, k) ones; labels_ reuses the first pass's labels
    # wherever their gaps outlast the move (rounding to 0.1 adds ties, which
    # never do).
    X = np.round(_blobs(15_000, 12, n_clusters, seed=23), 1).astype(np.float32)
    sw = np.random.RandomState(6).uniform(0.5, 2.0, size=X.shape[0]) if weighted else None
    params = dict(n_clusters=n_clusters, random_state=0, reassignment_ratio=0.2)
    ref, ours = SkMiniBatchKMeans(**params), MiniBatchKMeans(**params)
    for start in range(0, X.shape[0], 3000):
        w = None if sw is None else sw[start : start + 3000]
        ref.partial_fit(X[start : start + 3000], sample_weight=w)
        ours.partial_fit(X[start : start + 3000], sample_weight=w)
        np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert_same_fit(ours, ref, inertia_rtol=1e-5)


def test_partial_fit_after_fit_continues_like_sklearn():
    X = _blobs(3000, 3, 5, seed=12)
    ref = SkMiniBatchKMeans(n_clusters=5, random_state=0).fit(X)
    ours = MiniBatchKMeans(n_clusters=5, random_state=0).fit(X)
    for start in range(0, 3000, 700):
        ref.partial_fit(X[start : start + 700])
        ours.partial_fit(X[start : start + 700])
    assert_same_fit(ours, ref)


def test_float32_unit_weights_stop_counting_at_2_to_the_24():
    # scikit-learn adds a center's unit weights one by one in float32, and that
    # sum stops growing at 2**24: a center that takes more rows in one call
    # moves by less than their mean says, and so must the core's.
    X = np.random.RandomState(0).uniform(0, 1, size=(2**24 + 2**20, 1)).astype(np.float32)
    X[:4] = 100.0
    params = dict(n_clusters=2, init=np.array([[0.5], [100.0]], np.float32), n_init=1)
    ref = SkMiniBatchKMeans(random_state=0, compute_labels=False, **params).partial_fit(X)
    ours = MiniBatchKMeans(random_state=0, compute_labels=False, **params).partial_fit(X)
    assert ref._counts[0] == 2**24  # the scenario saturates
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)


def test_first_partial_fit_without_labels_has_no_inertia():
    X = _blobs(500, 3, 3)
    ours = MiniBatchKMeans(n_clusters=3, random_state=0, compute_labels=False).partial_fit(X)
    ref = SkMiniBatchKMeans(n_clusters=3, random_state=0, compute_labels=False).partial_fit(X)
    assert_same_fit(ours, ref)
    for name in ("labels_", "inertia_", "n_iter_"):
        assert not hasattr(ours, name)


def test_predict_transform_score_match():
    X = _blobs(3000, 5, 7, seed=13)
    X_new = _blobs(1000, 5, 7, seed=14)
    ref = SkMiniBatchKMeans(n_clusters=7, random_state=0).fit(X)
    ours = MiniBatchKMeans(n_clusters=7, random_state=0).fit(X)
    np.testing.assert_array_equal(ours.predict(X_new), ref.predict(X_new))
    assert ours.predict(X_new).dtype == np.int32
    np.testing.assert_allclose(ours.transform(X_new), ref.transform(X_new), rtol=1e-10)
    sw = np.linspace(0.5, 1.5, X_new.shape[0])
    np.testing.assert_allclose(
        ours.score(X_new, sample_weight=sw), ref.score(X_new, sample_weight=sw), rtol=1e-10
    )
    np.testing.assert_allclose(ours.fit_transform(X), ref.fit_transform(X), rtol=1e-10)
    np.testing.assert_array_equal(ours.fit_predict(X), ref.fit_predict(X))


def test_float32_transform_matches():
    X = _blobs(1000, 4, 3, seed=2).astype(np.float32)
    ref = SkMiniBatchKMeans(n_clusters=3, random_state=0).fit(X)
    ours = MiniBatchKMeans(n_clusters=3, random_state=0).fit(X)
    out = ours.transform(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref.transform(X), rtol=1e-6)


def test_dtype_mismatch_is_cast_to_fitted_dtype():
    X = _blobs(1000, 4, 3, seed=2)
    ours = MiniBatchKMeans(n_clusters=3, random_state=0).fit(X.astype(np.float32))
    labels = ours.predict(X)  # scikit-learn 1.5.2 raises "Buffer dtype mismatch" here
    np.testing.assert_array_equal(labels, ours.predict(X.astype(np.float32)))
    assert np.isfinite(ours.score(X))
    ours.partial_fit(X)
    assert ours.cluster_centers_.dtype == np.float32


def test_single_step_fit_without_labels_estimates_inertia():
    X = _blobs(100, 2, 3)
    ours = MiniBatchKMeans(
        n_clusters=3, random_state=0, max_iter=1, batch_size=200, compute_labels=False
    ).fit(X)
    assert ours.n_steps_ == 1
    assert ours.inertia_ > 0


@pytest.mark.parametrize(
    ("n_features", "n_clusters", "dtype"),
    [(500, 6, np.float64), (1000, 17, np.float64), (700, 70, np.float32), (2000, 3, np.float64)],
)
def test_wide_near_ties_are_labelled_like_sklearn(n_features, n_clusters, dtype):
    # Past a few hundred features OpenBLAS adds a chunk's product to the
    # norms panel by panel (scikit-learn's GEMM starts from |c|^2): rows on
    # the bisector of two centers show whether the rounding is the same.
    # 1,600 rows: a partial last chunk of 64 rows too.
    rng = np.random.RandomState(n_features)
    X = rng.normal(size=(3000, n_features)).astype(dtype)
    ours = MiniBatchKMeans(n_clusters=n_clusters, random_state=0, n_init=1).fit(X)
    ref = SkMiniBatchKMeans(n_clusters=n_clusters, random_state=0, n_init=1).fit(X)
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    C = ref.cluster_centers_
    a, b = rng.randint(0, n_clusters, size=(2, 1600))
    t = 0.5 + rng.uniform(-1, 1, size=(1600, 1)) * 10.0 ** rng.uniform(-17, -6, size=(1600, 1))
    Y = (C[a] + t * (C[b] - C[a])).astype(dtype)
    np.testing.assert_array_equal(ours.predict(Y), ref.predict(Y))


@pytest.mark.parametrize(
    ("n_features", "dtype"),
    [(2, np.float64), (2, np.float32), (12, np.float64), (33, np.float64), (33, np.float32),
     (449, np.float64), (449, np.float32)],
)  # fmt: skip
def test_one_row_blocks_are_labelled_like_sklearn(n_features, dtype):
    # NumPy multiplies a one-row block by GEMV, which rounds differently from
    # the GEMM scikit-learn calls for it: a predict of one row, or the last
    # row of 257, broke exact ties between duplicated centers another way.
    rng = np.random.RandomState(n_features)
    P = np.round(rng.normal(size=(5, n_features)), 1).astype(dtype)
    X = np.repeat(P, 2, axis=0)
    params = dict(n_clusters=10, init=np.vstack([P, P]), n_init=1, max_iter=1, batch_size=10,
                  reassignment_ratio=0.0, random_state=0)  # fmt: skip
    ours, ref = MiniBatchKMeans(**params).fit(X), SkMiniBatchKMeans(**params).fit(X)
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    Y = np.round(rng.normal(size=(60, n_features)), 1).astype(dtype)
    for row in Y[:, np.newaxis]:
        assert ours.predict(row)[0] == ref.predict(row)[0]
    tails = np.vstack([Y] * 9)[:513]  # 2 x 256 + 1
    np.testing.assert_array_equal(ours.predict(tails), ref.predict(tails))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("n_features", "n_clusters", "n_rows"),
    [(65, 3, 9000), (449, 2, 9000), (50, 300, 20000), (4, 1200, 3000)],
)
def test_transform_is_sklearns_bit_for_bit(n_features, n_clusters, n_rows, dtype):
    # A product's rounding of a row depends on the product's size (and on how
    # BLAS splits it between threads): scikit-learn takes float32 distances in
    # float64 on chunks sized from the whole input, float64 ones in one
    # product. Other row counts differed by up to 1e-3 with an offset of 1e6.
    rng = np.random.RandomState(n_features)
    X = (rng.normal(size=(max(2 * n_clusters, 2000), n_features)) + 1e6).astype(dtype)
    Y = (rng.normal(size=(n_rows, n_features)) + 1e6).astype(dtype)
    params = dict(n_clusters=n_clusters, random_state=0, n_init=1, max_iter=1)
    ours, ref = MiniBatchKMeans(**params).fit(X), SkMiniBatchKMeans(**params).fit(X)
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    got, expected = ours.transform(Y), ref.transform(Y)
    assert got.dtype == expected.dtype == dtype
    np.testing.assert_array_equal(got, expected)
