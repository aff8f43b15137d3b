"""Parameter constraints and input validation with scikit-learn 1.5.2's semantics.

Two ideas live here, both about refusing bad input the way scikit-learn does
(same exception types, same messages, verbatim, because clients match on them):

* a small constraint vocabulary (:class:`Interval`, :class:`StrOptions`, ...)
  and :func:`validate_params`, which checks a table of constraints in one place;
* :func:`check_array` and friends, which turn user input into a C-contiguous
  float array without copying arrays that are already fine (read-only buffers
  and memory maps included) and check finiteness in bounded memory.

Nothing here imports scipy or pandas at module import; both are recognised by
duck typing, and pandas is imported lazily only when a DataFrame is given.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import InvalidParameterError, NotFittedError
from ._split_sum import SPLIT_MIN_VALUES, split_sum, tree_matches, usable_cores

#: Rows per block when scanning a large array for NaN/inf (bounded temporaries).
FINITE_CHECK_ROWS = 1 << 16


# --------------------------------------------------------------------------- #
# Constraint vocabulary
# --------------------------------------------------------------------------- #


def _type_name(t: type) -> str:
    """Human-readable type name, spelled as scikit-learn spells it in messages."""
    module = t.__module__
    qualname = t.__qualname__
    if module == "builtins":
        return qualname
    if t == numbers.Real:
        return "float"
    if t == numbers.Integral:
        return "int"
    return f"{module}.{qualname}"


class Constraint:
    """One acceptable kind of value for a parameter."""

    def is_satisfied_by(self, val: object) -> bool:  # pragma: no cover - abstract
        """Whether ``val`` satisfies the constraint."""
        raise NotImplementedError

    def __str__(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class Interval(Constraint):
    """Numbers of ``kind`` (``numbers.Integral`` or ``numbers.Real``) within bounds.

    ``closed`` is one of ``"left"``, ``"right"``, ``"both"``, ``"neither"``;
    a bound of ``None`` is infinite.
    """

    def __init__(self, kind: type, left: float | None, right: float | None, *, closed: str) -> None:
        self.kind = kind
        self.left = left
        self.right = right
        self.closed = closed

    def __contains__(self, val: Any) -> bool:
        if not isinstance(val, numbers.Integral) and np.isnan(val):
            return False
        left_fails = operator.lt if self.closed in ("left", "both") else operator.le
        right_fails = operator.gt if self.closed in ("right", "both") else operator.ge
        left = -np.inf if self.left is None else self.left
        right = np.inf if self.right is None else self.right
        return not (left_fails(val, left) or right_fails(val, right))

    def is_satisfied_by(self, val: object) -> bool:
        return isinstance(val, self.kind) and val in self

    def __str__(self) -> str:
        kind = "an int" if self.kind is numbers.Integral else "a float"
        lb = "[" if self.closed in ("left", "both") else "("
        rb = "]" if self.closed in ("right", "both") else ")"
        left: Any = "-inf" if self.left is None else self.left
        right: Any = "inf" if self.right is None else self.right
        if self.kind is not numbers.Integral:
            # Real bounds given as ints still print as floats ("[0.0, inf)").
            left = float(left) if isinstance(self.left, numbers.Real) else left
            right = float(right) if isinstance(self.right, numbers.Real) else right
        return f"{kind} in the range {lb}{left}, {right}{rb}"


class StrOptions(Constraint):
    """One of a set of strings.

    The options are kept as a ``set`` on purpose: scikit-learn prints them in
    set iteration order, and a set built from the same literal iterates in the
    same order within one process, so messages stay verbatim.
    """

    def __init__(self, options: set[str]) -> None:
        self.options = options

    def is_satisfied_by(self, val: object) -> bool:
        return isinstance(val, str) and val in self.options

    def __str__(self) -> str:
        return f"a str among {{{', '.join(repr(o) for o in self.options)}}}"


class InstancesOf(Constraint):
    """Instances of one type."""

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def is_satisfied_by(self, val: object) -> bool:
        return isinstance(val, self.kind)

    def __str__(self) -> str:
        return f"an instance of {_type_name(self.kind)!r}"


class NoneValue(Constraint):
    """The value ``None``."""

    def is_satisfied_by(self, val: object) -> bool:
        return val is None

    def __str__(self) -> str:
        return "None"


class Callables(Constraint):
    """Any callable."""

    def is_satisfied_by(self, val: object) -> bool:
        return callable(val)

    def __str__(self) -> str:
        return "a callable"


class ArrayLikes(Constraint):
    """Array-likes that are not scalars (lists, arrays, DataFrames, ...)."""

    def is_satisfied_by(self, val: object) -> bool:
        return is_arraylike_not_scalar(val)

    def __str__(self) -> str:
        return "an array-like"


class AnyOf(Constraint):
    """A named bundle of constraints that prints as one phrase ("random_state", ...)."""

    def __init__(self, *parts: Constraint) -> None:
        self.parts = parts

    def is_satisfied_by(self, val: object) -> bool:
        return any(p.is_satisfied_by(val) for p in self.parts)

    def __str__(self) -> str:
        return _join_alternatives(self.parts)


def random_states() -> AnyOf:
    """Seeds accepted by :func:`check_random_state`: int, RandomState or None."""
    return AnyOf(
        Interval(numbers.Integral, 0, 2**32 - 1, closed="both"),
        InstancesOf(np.random.RandomState),
        NoneValue(),
    )


def booleans() -> AnyOf:
    """Python and NumPy booleans."""
    return AnyOf(InstancesOf(bool), InstancesOf(np.bool_))


def verbose_levels() -> AnyOf:
    """Non-negative ints and booleans."""
    return AnyOf(
        Interval(numbers.Integral, 0, None, closed="left"),
        InstancesOf(bool),
        InstancesOf(np.bool_),
    )


def _join_alternatives(constraints: Sequence[Constraint]) -> str:
    if len(constraints) == 1:
        return str(constraints[0])
    return f"{', '.join(str(c) for c in constraints[:-1])} or {constraints[-1]}"


def validate_params(
    constraints: dict[str, list[Constraint]], params: dict[str, Any], caller: str
) -> None:
    """Check every parameter against its constraints; raise on the first failure.

    Parameters
    ----------
    constraints : dict of str to list of Constraint
        For each parameter, the alternatives that make a value acceptable.
    params : dict
        Parameter values, checked in the dict's order (scikit-learn checks in
        ``get_params`` order, i.e. sorted by name).
    caller : str
        Name used in the message (the estimator's class name).

    Raises
    ------
    InvalidParameterError
        With scikit-learn's message, e.g. ``The 'n_clusters' parameter of
        MiniBatchKMeans must be an int in the range [1, inf). Got 0 instead.``
    """
    for name, value in params.items():
        alternatives = constraints.get(name)
        if alternatives is None:
            continue
        if any(c.is_satisfied_by(value) for c in alternatives):
            continue
        raise InvalidParameterError(
            f"The {name!r} parameter of {caller} must be"
            f" {_join_alternatives(alternatives)}. Got {value!r} instead."
        )


# --------------------------------------------------------------------------- #
# Small predicates
# --------------------------------------------------------------------------- #


def is_sparse(x: object) -> bool:
    """Whether ``x`` is a scipy.sparse matrix or array (without importing scipy)."""
    module = type(x).__module__ or ""
    return module.startswith("scipy.sparse") or (
        hasattr(x, "tocsr") and hasattr(x, "nnz") and hasattr(x, "format")
    )


def is_arraylike_not_scalar(x: object) -> bool:
    """Array-like in scikit-learn's sense (has len, shape or __array__), not a scalar."""
    if is_sparse(x):
        return False
    arraylike = hasattr(x, "__len__") or hasattr(x, "shape") or hasattr(x, "__array__")
    return arraylike and not np.isscalar(x)


def is_pandas_dataframe(x: object) -> bool:
    """Whether ``x`` is a pandas DataFrame (pandas is only looked up, never imported)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.DataFrame)


def check_random_state(seed: object) -> np.random.RandomState:
    """Turn ``seed`` into a RandomState exactly as scikit-learn does.

    ``None`` gives NumPy's global RandomState, an int a new one seeded with it,
    and a RandomState instance is returned as is (and so is consumed in place).
    """
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")


def seeds_without_error(seed: object) -> bool:
    """Whether :func:`check_random_state` takes ``seed`` without raising (without calling it).

    Seeding a new RandomState costs about 0.1 ms, which scikit-learn's
    ``partial_fit`` spends on every call only to drop the result after the
    first; the error it would raise must still come.
    """
    if seed is None or seed is np.random or isinstance(seed, np.random.RandomState):
        return True
    return isinstance(seed, numbers.Integral) and 0 <= int(seed) < 2**32


def check_is_fitted(estimator: object, attribute: str | None = None) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` looks fitted.

    Without ``attribute`` an estimator is fitted once it has any public
    attribute ending in ``_`` (scikit-learn's rule, including its quirk that a
    fit failing after input validation leaves ``n_features_in_`` behind).
    """
    if attribute is not None:
        fitted = hasattr(estimator, attribute)
    else:
        fitted = any(k.endswith("_") and not k.startswith("__") for k in vars(estimator))
    if not fitted:
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator."
        )


# --------------------------------------------------------------------------- #
# Arrays
# --------------------------------------------------------------------------- #

_NAN_HELP = (
    "\n{name} does not accept missing values"
    " encoded as NaN natively. For supervised learning, you might want"
    " to consider sklearn.ensemble.HistGradientBoostingClassifier and"
    " Regressor which accept missing values encoded as NaNs natively."
    " Alternatively, it is possible to preprocess the data, for"
    " instance by using an imputer transformer in a pipeline or drop"
    " samples with missing values. See"
    " https://scikit-learn.org/stable/modules/impute.html"
    " You can find a list of all estimators that handle NaN values"
    " at the following page:"
    " https://scikit-learn.org/stable/modules/impute.html"
    "#estimators-that-handle-nan-values"
)

_RESHAPE_HINT = (
    "Reshape your data either using array.reshape(-1, 1) if "
    "your data has a single feature or array.reshape(1, -1) "
    "if it contains a single sample."
)

_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def all_finite(array: np.ndarray) -> bool:
    """Whether ``array`` holds no NaN or infinity: a cheap sum first, element-wise if needed."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(array.sum()) or np.isfinite(array).all())


def _sum_is_finite(array: np.ndarray) -> bool:
    """scikit-learn's first look for NaN and infinity: whether one sum of everything is finite.

    Taken under the caller's error settings, overflow ignored (so +inf and
    -inf warn "invalid value encountered in reduce", as there), with no
    temporaries whatever the size. A large C-contiguous array is summed on
    several threads first, with the same bits (:mod:`._split_sum`); only
    when that sum is not finite is it taken again here, for the warnings.
    """
    if (
        array.size >= SPLIT_MIN_VALUES
        and array.dtype in (np.float32, np.float64)  # (the tree tested; not complex's)
        and array.flags.c_contiguous
        and array.flags.aligned  # (NumPy sums unaligned data through buffers)
        and (threads := usable_cores()) > 1
        and tree_matches(array.dtype)
    ):
        if np.isfinite(split_sum(np.asarray(array).reshape(-1), threads)):
            return True
    with np.errstate(over="ignore"):
        return bool(np.isfinite(array.sum()))


def assert_all_finite(
    array: np.ndarray, *, input_name: str = "", estimator_name: str | None = None
) -> None:
    """Raise scikit-learn's ValueError if ``array`` holds NaN or infinity.

    A sum of everything first, as scikit-learn's; if it is not finite, blocks
    of :data:`FINITE_CHECK_ROWS` rows are looked at, so that a memory-mapped
    array of any size is checked with bounded temporaries (a cheap sum per
    block, element-wise only in a block whose sum is not finite). As in
    scikit-learn, a NaN anywhere wins over an infinity.
    """
    if array.dtype.kind not in "fc" or array.size == 0:
        return
    if _sum_is_finite(array):
        return
    rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
    found_inf = False
    for start in range(0, rows.shape[0], FINITE_CHECK_ROWS):
        block = rows[start : start + FINITE_CHECK_ROWS]
        if all_finite(block):
            continue
        if np.isnan(block).any():
            message = f"Input {input_name + ' ' if input_name else ''}contains NaN."
            if estimator_name and input_name == "X":
                message += _NAN_HELP.format(name=estimator_name)
            raise ValueError(message)
        found_inf = found_inf or bool(np.isinf(block).any())
    if found_inf:
        raise ValueError(
            f"Input {input_name + ' ' if input_name else ''}contains infinity"
            f" or a value too large for {array.dtype!r}."
        )


def _dataframe_dtype(frame: Any) -> tuple[np.dtype | None, bool]:
    """The common NumPy dtype of a DataFrame's columns and whether pandas must convert first.

    Boolean and nullable (extension) integer/float columns are converted by
    pandas itself (``astype``) so that ``pd.NA`` becomes NaN, as in scikit-learn.
    """
    dtypes = list(frame.dtypes)
    needs_conversion = False
    try:
        from pandas.api.types import (  # lazy: only reached for DataFrames
            is_bool_dtype,
            is_extension_array_dtype,
            is_float_dtype,
            is_integer_dtype,
        )

        for dt in dtypes:
            if is_bool_dtype(dt):
                needs_conversion = True
            elif is_extension_array_dtype(dt) and (is_float_dtype(dt) or is_integer_dtype(dt)):
                needs_conversion = True
    except ImportError:  # pragma: no cover - a non-pandas frame
        pass
    if all(isinstance(dt, np.dtype) for dt in dtypes):
        return np.result_type(*dtypes), needs_conversion
    if needs_conversion and any(dt == np.dtype(object) for dt in dtypes):
        return np.dtype(object), needs_conversion
    return None, needs_conversion


def check_array(
    array: Any,
    *,
    estimator_name: str | None = None,
    input_name: str = "",
    dtype: np.dtype | None = None,
    copy: bool = False,
    check_finite: bool = True,
) -> np.ndarray:
    """Validate a dense 2-D array of samples; return it as C-contiguous float.

    Parameters
    ----------
    array : array-like of shape (n_samples, n_features)
        Lists, NumPy arrays (read-only buffers and memory maps included),
        pandas DataFrames. scipy.sparse input is refused with a TypeError.
    estimator_name : str or None
        Name added to some messages (``... is required by MiniBatchKMeans.``).
    input_name : str
        ``"X"`` for the data (adds the NaN help text, as scikit-learn does).
    dtype : numpy dtype or None
        Target dtype; ``None`` keeps float32/float64 and converts anything else
        to float64.
    copy : bool
        Force a copy (used for user-given initial centers).
    check_finite : bool
        False leaves the NaN/infinity check (:func:`assert_all_finite`) to
        the caller, who must make it before any other error it raises.

    Returns
    -------
    ndarray of shape (n_samples, n_features)
        C-contiguous, float32 or float64. A C-contiguous float input is returned
        without a copy (a view, never written to).
    """
    if is_sparse(array):
        raise TypeError(
            f"{estimator_name or 'This estimator'} only supports dense input: got a "
            f"scipy.sparse {type(array).__name__}. Convert it with .toarray() first."
        )
    if isinstance(array, np.matrix):
        raise TypeError(
            "np.matrix is not supported. Please convert to a numpy array with "
            "np.asarray. For more information see: "
            "https://numpy.org/doc/stable/reference/generated/numpy.matrix.html"
        )
    dtype_orig = getattr(array, "dtype", None)
    if not hasattr(dtype_orig, "kind"):
        dtype_orig = None
    series_type = None
    if hasattr(array, "dtypes") and hasattr(array.dtypes, "__array__"):
        dtype_orig, needs_conversion = _dataframe_dtype(array)
    else:
        needs_conversion = False
        if hasattr(array, "iloc") and hasattr(array, "dtype"):
            series_type = type(array)
            if not isinstance(array.dtype, np.dtype):
                dtype_orig = None
    if dtype is None:
        dtype = dtype_orig if dtype_orig is not None and dtype_orig in _FLOATS else _FLOATS[0]
    if needs_conversion:
        array = array.astype(dtype)
    if dtype_orig is not None and dtype_orig.kind == "c":
        raise ValueError(f"Complex data not supported\n{array}\n")
    result = (
        np.array(array, dtype=dtype, order="C")
        if copy
        else np.asarray(array, dtype=dtype, order="C")
    )
    if result.ndim == 0:
        raise ValueError(
            f"Expected 2D array, got scalar array instead:\narray={result}.\n" + _RESHAPE_HINT
        )
    if result.ndim == 1:
        if series_type is not None:
            raise ValueError(
                f"Expected a 2-dimensional container but got {series_type} "
                "instead. Pass a DataFrame containing a single row (i.e. "
                "single sample) or a single column (i.e. single feature) "
                "instead."
            )
        raise ValueError(
            f"Expected 2D array, got 1D array instead:\narray={result}.\n" + _RESHAPE_HINT
        )
    if result.ndim >= 3:
        raise ValueError(f"Found array with dim {result.ndim}. {estimator_name} expected <= 2.")
    if check_finite:
        assert_all_finite(result, input_name=input_name, estimator_name=estimator_name)
    context = f" by {estimator_name}" if estimator_name is not None else ""
    if result.shape[0] < 1:
        raise ValueError(
            f"Found array with {result.shape[0]} sample(s) (shape={result.shape}) while a"
            f" minimum of 1 is required{context}."
        )
    if result.shape[1] < 1:
        raise ValueError(
            f"Found array with {result.shape[1]} feature(s) (shape={result.shape}) while"
            f" a minimum of 1 is required{context}."
        )
    return result


def check_sample_weight(sample_weight: Any, n_samples: int, dtype: np.dtype) -> np.ndarray | None:
    """Validate ``sample_weight`` for ``n_samples`` rows; ``None`` stays ``None``.

    Unit weights are left implicit (``None``) so that no length-``n_samples``
    array of ones is ever allocated, and weights that are all 1 become
    ``None`` too: scikit-learn gives both the same results, bit for bit, and
    so must the core's faster paths for unweighted rows. Any other scalar
    becomes a full array, as in scikit-learn.

    Returns
    -------
    ndarray of shape (n_samples,) in ``dtype``, or None
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        # Cast as the full array would be (one value first: ones are not kept).
        if n_samples and np.full(1, sample_weight, dtype=dtype)[0] == 1:
            return None
        return np.full(n_samples, sample_weight, dtype=dtype)
    if is_sparse(sample_weight):
        raise TypeError(
            "Sparse data was passed for sample_weight, but dense data is required. "
            "Use '.toarray()' to convert to a dense numpy array."
        )
    sw_dtype_orig = getattr(sample_weight, "dtype", None)
    if hasattr(sw_dtype_orig, "kind") and sw_dtype_orig.kind == "c":
        raise ValueError(f"Complex data not supported\n{sample_weight}\n")
    sw = np.asarray(sample_weight, dtype=dtype, order="C")
    if sw.ndim >= 3:
        raise ValueError(f"Found array with dim {sw.ndim}. None expected <= 2.")
    assert_all_finite(sw, input_name="sample_weight")
    if sw.ndim == 0:  # a 0-d array or a string: no sample count (a number is handled above)
        raise TypeError(f"Singleton array {sw!r} cannot be considered a valid collection.")
    if sw.shape[0] < 1:
        raise ValueError(
            f"Found array with {sw.shape[0]} sample(s) (shape={sw.shape}) while a"
            " minimum of 1 is required."
        )
    if sw.ndim == 2 and sw.shape[1] < 1:
        raise ValueError(
            f"Found array with {sw.shape[1]} feature(s) (shape={sw.shape}) while"
            " a minimum of 1 is required."
        )
    if sw.ndim != 1:
        raise ValueError("Sample weights must be 1D array or scalar")
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(n_samples,)}!")
    if np.minimum.reduce(sw) == 1 and np.maximum.reduce(sw) == 1:
        return None
    return sw


def feature_names_of(X: Any) -> np.ndarray | None:
    """String column names of a DataFrame (as an object array), else ``None``.

    Raises scikit-learn's TypeError when string and non-string names are mixed.
    """
    names = None
    if is_pandas_dataframe(X):
        names = np.asarray(X.columns, dtype=object)
    elif hasattr(X, "__dataframe__"):
        names = np.asarray(list(X.__dataframe__().column_names()), dtype=object)
    if names is None or len(names) == 0:
        return None
    types = sorted(t.__qualname__ for t in {type(v) for v in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {types} as feature name / column name types. "
            "If you want feature names to be stored and validated, you must convert "
            "them all to strings, by using X.columns = X.columns.astype(str) for "
            "example. Otherwise you can remove feature / column names from your input "
            "data, or convert them all to a non-string data type."
        )
    if len(types) == 1 and types[0] == "str":
        return names
    return None


def num_features(X: Any) -> int | None:
    """Number of columns of ``X`` without converting it, or ``None`` if unknown."""
    shape = getattr(X, "shape", None)
    if shape is not None:
        if not hasattr(shape, "__len__") or len(shape) <= 1:
            return None
        return int(shape[1])
    if not hasattr(X, "__len__"):
        return None
    try:
        first = X[0]
    except Exception:
        return None
    if isinstance(first, (str, bytes, dict)):
        return None
    try:
        return len(first)
    except Exception:
        return None


def feature_name_mismatch_message(fitted: np.ndarray, given: np.ndarray) -> str | None:
    """scikit-learn's message when ``given`` names differ from ``fitted``; else None."""
    if len(fitted) == len(given) and not np.any(fitted != given):
        return None
    message = "The feature names should match those that were passed during fit.\n"
    unexpected = sorted(set(given) - set(fitted))
    missing = sorted(set(fitted) - set(given))

    def listing(names: list[Any]) -> str:
        out = ""
        for i, name in enumerate(names):
            if i >= 5:
                out += "- ...\n"
                break
            out += f"- {name}\n"
        return out

    if unexpected:
        message += "Feature names unseen at fit time:\n" + listing(unexpected)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + listing(missing)
    if not missing and not unexpected:
        message += "Feature names must be in the same order as they were in fit.\n"
    return message


def is_close(a: float, b: float, rtol: float = 1e-05, atol: float = 1e-08) -> bool:
    """``numpy.allclose`` for two scalars, NaNs equal.

    As NumPy's: a NaN is close only to a NaN, and an infinity only to itself.
    """
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * abs(b)


__all__ = [
    "AnyOf",
    "ArrayLikes",
    "Callables",
    "Constraint",
    "InstancesOf",
    "Interval",
    "NoneValue",
    "StrOptions",
    "all_finite",
    "assert_all_finite",
    "booleans",
    "check_array",
    "check_is_fitted",
    "check_random_state",
    "check_sample_weight",
    "feature_name_mismatch_message",
    "feature_names_of",
    "is_arraylike_not_scalar",
    "is_close",
    "is_pandas_dataframe",
    "is_sparse",
    "num_features",
    "random_states",
    "validate_params",
    "verbose_levels",
]
