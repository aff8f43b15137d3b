"""The finiteness check's sum on several threads: NumPy's bits, and scikit-learn's warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from core_oracle import record_warnings
from sklearn.utils import check_array as sk_check_array

from bridge_server.core import _split_sum, _twin, _validation
from bridge_server.core._split_sum import SPLIT_MIN_VALUES, split_sum, usable_cores

#: NumPy 2.3 and later sum in the tree split_sum follows; on earlier ones
#: validation keeps the one sum (test_a_numpy_summing_in_another_tree_keeps_the_one_sum),
#: and the split's bits are not promised there.
TREE = pytest.mark.skipif(
    not _split_sum.tree_matches(np.dtype(np.float64)),
    reason="this NumPy (before 2.3) sums in another order; the split is not used",
)

SIZES = [
    1000,
    SPLIT_MIN_VALUES - 1,
    SPLIT_MIN_VALUES,
    SPLIT_MIN_VALUES + 13,
    2 * SPLIT_MIN_VALUES + 7,
    4 * SPLIT_MIN_VALUES + 1001,
]


def _wild(n: int, dtype: type, seed: int = 0) -> np.ndarray:
    """Values over many magnitudes and both signs: every addition rounds differently."""
    rs = np.random.RandomState(seed)
    return (rs.standard_normal(n) * np.exp(rs.uniform(-20, 20, n))).astype(dtype)


@TREE
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", [1, 2, 3, 4, 8])
def test_split_sum_has_numpys_bits(dtype, n, threads):
    values = _wild(n, dtype, seed=n % 97)
    got = split_sum(values, threads)
    expected = values.sum()
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()


@TREE
def test_split_sum_of_a_2d_array_is_its_sum():
    X = _wild(62_915 * 50, np.float64, seed=3).reshape(-1, 50)  # 3,145,750 values
    assert split_sum(X.reshape(-1), 4).tobytes() == X.sum().tobytes()


def test_split_sum_splits_where_numpy_does():
    # A run of n values splits after n // 2 less (n // 2) % 8: 4,000,006 at
    # 2,000,000, and its halves at 1,000,000 and 3,000,000.
    assert _split_sum._leaves(0, 4_000_006, 2) == [
        (0, 1_000_000),
        (1_000_000, 2_000_000),
        (2_000_000, 3_000_000),
        (3_000_000, 4_000_006),
    ]
    assert _split_sum._leaves(0, 4_000_006, 1) == [(0, 2_000_000), (2_000_000, 4_000_006)]


@pytest.mark.parametrize(
    "where", [0, SPLIT_MIN_VALUES + 5, 2 * SPLIT_MIN_VALUES + 5, 4 * SPLIT_MIN_VALUES - 1]
)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_split_sum_is_not_finite_where_numpys_is_not(where, bad):
    values = _wild(4 * SPLIT_MIN_VALUES, np.float64, seed=5) / 1e10
    values[where] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the threads' sums never warn
        got = split_sum(values, 4)
    expected = values.sum()
    assert np.isnan(got) == np.isnan(expected)
    assert np.isinf(got) == np.isinf(expected) and (not np.isinf(got) or got == expected)


def test_usable_cores_follow_the_affinity_and_the_cpu_quota(monkeypatch):
    monkeypatch.setattr(_split_sum, "_quota_cpus", lambda: 1 << 30)  # no quota
    monkeypatch.setattr(_split_sum.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert usable_cores() == _split_sum.MAX_THREADS
    monkeypatch.setattr(_split_sum.os, "sched_getaffinity", lambda pid: {3})
    assert usable_cores() == 1
    monkeypatch.setattr(_split_sum.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(_split_sum, "_quota_cpus", lambda: 2)  # a container's 2 CPUs
    assert usable_cores() == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_this_numpy_sums_in_the_tree_split_sum_follows(dtype):
    # NumPy 2.3 and later; earlier ones summed 8,192-value buffers in turn,
    # and validation then keeps the one sum.
    recent = np.lib.NumpyVersion(np.__version__) >= "2.3.0"
    assert _split_sum.tree_matches(np.dtype(dtype)) == recent


@TREE
def test_a_helper_thread_that_cannot_start_leaves_its_leaf_to_the_caller(monkeypatch):
    real_take = _twin.HELPERS.take
    taken: list[int] = []

    def take() -> object:
        if taken:
            raise RuntimeError("can't start new thread")
        taken.append(1)
        return real_take()

    monkeypatch.setattr(_twin.HELPERS, "take", take)
    values = _wild(4 * SPLIT_MIN_VALUES + 3, np.float64, seed=11)
    assert split_sum(values, 4).tobytes() == values.sum().tobytes()
    assert taken == [1]  # one helper ran; the caller summed the other leaves


def _outcome(call) -> tuple[str | None, list]:
    """The ValueError message ``call`` raises (None if none), and its warnings."""
    error: list[str | None] = [None]

    def run() -> None:
        try:
            call()
        except ValueError as exc:
            error[0] = str(exc)

    caught = record_warnings(run)
    return error[0], caught


@pytest.fixture
def counted_splits(monkeypatch):
    """Four usable cores for validation, and a count of its split sums."""
    calls: list[int] = []

    def counted(flat: np.ndarray, threads: int) -> np.generic:
        calls.append(flat.size)
        return split_sum(flat, threads)

    monkeypatch.setattr(_validation, "usable_cores", lambda: 4)
    monkeypatch.setattr(_validation, "split_sum", counted)
    return calls


@TREE
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bad", ["nan", "inf", "both", "none"])
def test_check_array_on_threads_errs_and_warns_as_sklearn(counted_splits, dtype, bad):
    # Over 2**21 values: split in quarters on four cores.
    X = np.random.RandomState(0).normal(size=(2 * SPLIT_MIN_VALUES // 9 + 3, 9)).astype(dtype)
    if bad in ("nan", "both"):
        X[-1, -1] = np.nan
    if bad in ("inf", "both"):
        X[0, 0], X[-2, 4] = np.inf, -np.inf

    expected = _outcome(lambda: sk_check_array(X, input_name="X"))
    got = _outcome(lambda: _validation.check_array(X, input_name="X"))
    assert got == expected
    assert (expected[0] is None) == (bad == "none")
    assert counted_splits == [X.size]


@TREE
def test_an_overflowing_sum_warns_as_sklearn_and_passes(counted_splits):
    # Finite values whose halves sum to +inf and -inf: scikit-learn's one sum
    # warns "invalid value encountered in reduce", then finds every value
    # finite. The split sum is not finite either, so the sum is taken again
    # for the same warning.
    X = np.full((SPLIT_MIN_VALUES // 4, 8), 1e308)
    X[X.shape[0] // 2 :] = -1e308
    expected = _outcome(lambda: sk_check_array(X))
    got = _outcome(lambda: _validation.check_array(X))
    assert got == expected
    assert expected[0] is None and expected[1]  # it passed, and warned
    assert counted_splits == [X.size]


def test_an_unaligned_array_is_summed_whole(counted_splits):
    # NumPy sums unaligned data through buffers, in another tree: such input
    # keeps the one sum (and scikit-learn's outcome).
    values = np.random.RandomState(2).normal(size=(SPLIT_MIN_VALUES // 8 + 1) * 8)
    raw = bytearray(values.nbytes + 1)
    X = np.frombuffer(raw, dtype=np.float64, offset=1, count=values.size).reshape(-1, 8)
    X[...] = values.reshape(-1, 8)
    X[5, 5] = np.nan
    assert not X.flags.aligned
    expected = _outcome(lambda: sk_check_array(X, input_name="X"))
    assert _outcome(lambda: _validation.assert_all_finite(X, input_name="X")) == expected
    assert counted_splits == []


def test_a_numpy_summing_in_another_tree_keeps_the_one_sum(counted_splits, monkeypatch):
    monkeypatch.setattr(_validation, "tree_matches", lambda dtype: False)
    X = np.random.RandomState(3).normal(size=(SPLIT_MIN_VALUES // 4, 4))
    X[-1, -1] = np.inf
    expected = _outcome(lambda: sk_check_array(X, input_name="X"))
    assert _outcome(lambda: _validation.check_array(X, input_name="X")) == expected
    assert counted_splits == []


@TREE
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_a_matrix_is_checked_as_its_array(counted_splits):
    # assert_all_finite is public in the module: an np.matrix (2-D even when
    # reshaped) is split as the plain array it holds.
    X = np.asmatrix(np.ones((SPLIT_MIN_VALUES // 4, 4)))
    _validation.assert_all_finite(X, input_name="X")
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        _validation.assert_all_finite(X, input_name="X")
    assert counted_splits == [X.size, X.size]
