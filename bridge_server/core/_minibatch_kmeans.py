"""MiniBatchKMeans in NumPy, seed for seed equal to scikit-learn 1.5.2's.

The estimator surface and the control flow (initialisation, the minibatch
loop, early stopping, ``partial_fit``) live here; the arithmetic of each step
is in :mod:`._kmeans_steps`, input and parameter checks in :mod:`._validation`,
and the ``get_params``/metadata-request plumbing in :mod:`._base`.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from . import _argmin, _blas, _early_stop, _openmp, _row_norms, _screen
from . import _kmeans_steps as steps
from ._base import UNCHANGED, BaseEstimator
from ._context import (
    allocate_output,
    check_cancelled,
    emit_verbose,
    outputs_wrapped,
    report_progress,
    warn,
)
from ._early_stop import Bounded
from ._schema import EstimatorSchema, MethodSpec
from ._validation import (
    ArrayLikes,
    Callables,
    Constraint,
    Interval,
    NoneValue,
    StrOptions,
    assert_all_finite,
    booleans,
    check_array,
    check_is_fitted,
    check_random_state,
    check_sample_weight,
    feature_name_mismatch_message,
    feature_names_of,
    is_arraylike_not_scalar,
    is_pandas_dataframe,
    random_states,
    seeds_without_error,
    validate_params,
    verbose_levels,
)

_FIT_ARGS = ("X", "y", "sample_weight")

_SCHEMA = EstimatorSchema(
    name="MiniBatchKMeans",
    doc="Mini-batch k-means clustering (scikit-learn 1.5.2 semantics, NumPy core).",
    params={
        "n_clusters": 8,
        "init": "k-means++",
        "max_iter": 100,
        "batch_size": 1024,
        "verbose": 0,
        "compute_labels": True,
        "random_state": None,
        "tol": 0.0,
        "max_no_improvement": 10,
        "init_size": None,
        "n_init": "auto",
        "reassignment_ratio": 0.01,
    },
    methods={
        spec.name: spec
        for spec in (
            MethodSpec("fit", _FIT_ARGS, ("X",), "self", long_running=True),
            MethodSpec("partial_fit", _FIT_ARGS, ("X",), "self", long_running=True),
            MethodSpec("predict", ("X",), ("X",), "array", per_sample_output=True),
            MethodSpec(
                "fit_predict",
                _FIT_ARGS,
                ("X",),
                "array",
                per_sample_output=True,
                long_running=True,
            ),
            MethodSpec("transform", ("X",), ("X",), "array", per_sample_output=True),
            MethodSpec(
                "fit_transform",
                _FIT_ARGS,
                ("X",),
                "array",
                per_sample_output=True,
                long_running=True,
            ),
            MethodSpec("score", _FIT_ARGS, ("X",), "scalar"),
            MethodSpec("get_feature_names_out", ("input_features",), (), "array"),
            MethodSpec("get_metadata_routing", ("routing",), (), "dict"),
            MethodSpec("set_output", ("transform",), (), "self"),
            MethodSpec("set_fit_request", ("sample_weight",), (), "self"),
            MethodSpec("set_partial_fit_request", ("sample_weight",), (), "self"),
            MethodSpec("set_score_request", ("sample_weight",), (), "self"),
            MethodSpec("get_params", ("deep",), (), "dict"),
        )
    },
    attributes=(
        "cluster_centers_",
        "labels_",
        "inertia_",
        "n_iter_",
        "n_steps_",
        "n_features_in_",
        "feature_names_in_",
    ),
    per_sample_attributes=("labels_",),
)

_OUTPUT_CONTAINERS = ("default", "pandas", "polars")


def _compiled() -> contextlib.AbstractContextManager[None]:
    """Floating-point error settings for what scikit-learn does in compiled code.

    Its labelling, inertia and center updates are Cython loops, which raise
    no NumPy warnings (nor errors under ``np.errstate(all="raise")``) on
    values that overflow; ours are NumPy operations, which would. Code that
    scikit-learn runs in NumPy (k-means++, ``transform``, the tolerance and
    the centers' squared change) stays under the caller's settings, so the
    warnings are the same as scikit-learn's.
    """
    return _argmin.recording()  # (invalid operations recorded: see _argmin)


def _error_settings() -> dict[str, Any]:
    """The caller's floating-point error settings, its handler included, for ``np.errstate``.

    ``np.geterr()`` leaves out the handler of the "call" and "log" modes,
    which :func:`_compiled` replaces: restoring without it would hand the
    caller's errors to the core's recorder.
    """
    return {**np.geterr(), "call": np.geterrcall()}


class MiniBatchKMeans(BaseEstimator):
    """Mini-batch k-means clustering, a NumPy reimplementation of scikit-learn 1.5.2's.

    Same constructor, methods, fitted attributes, validation messages and
    warnings as ``sklearn.cluster.MiniBatchKMeans``; with an int
    ``random_state`` the centers, labels, ``n_steps_`` and ``n_iter_`` equal
    scikit-learn's (same BLAS, same draws from ``numpy.random.RandomState``).

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (centers).
    init : {'k-means++', 'random'}, callable or array-like of shape (n_clusters, n_features)
        Initialisation: greedy k-means++, random rows, explicit centers, or
        ``init(X, n_clusters, random_state=rs)`` returning centers.
    max_iter : int, default=100
        Passes over the data (in minibatches) before stopping regardless of
        early stopping.
    batch_size : int, default=1024
        Rows per minibatch (capped at ``n_samples``).
    verbose : int, default=0
        Emit scikit-learn's progress lines (through the call context).
    compute_labels : bool, default=True
        Compute ``labels_`` and ``inertia_`` over all of X after fitting.
    random_state : int, RandomState instance or None, default=None
        Seed of every random choice.
    tol : float, default=0.0
        Stop when the squared center movement of a step falls to
        ``tol * mean(var(X))``; 0 disables.
    max_no_improvement : int or None, default=10
        Stop after this many steps without improving the smoothed batch
        inertia; ``None`` disables.
    init_size : int or None, default=None
        Rows sampled for initialisation (default ``3 * batch_size``, at least
        ``3 * n_clusters``).
    n_init : 'auto' or int, default='auto'
        Initialisations tried (best on a validation subset); 'auto' means 1
        for k-means++ and arrays, 3 for 'random' and callables.
    reassignment_ratio : float, default=0.01
        Centers lighter than this fraction of the heaviest are moved to random
        minibatch rows.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centers, in the training data's float dtype.
    labels_ : ndarray of shape (n_samples,), int32
        Label of each training row (when ``compute_labels``).
    inertia_ : float
        Weighted sum of squared distances to the assigned centers (with
        ``compute_labels=False``: the smoothed batch estimate).
    n_iter_ : int
        Passes over the data (``ceil(n_steps_ * batch_size / n_samples)``).
    n_steps_ : int
        Minibatches processed.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when fitted on a DataFrame with string column names.

    Notes
    -----
    Differences from scikit-learn, all where scikit-learn fails or has no
    counterpart:

    * Data whose float dtype differs from the fitted centers' (float64 data for
      a float32 fit, or the reverse) is cast, block by block, to the centers'
      dtype in ``predict``, ``score`` and ``partial_fit``; scikit-learn 1.5.2
      raises "Buffer dtype mismatch" there.
    * scipy.sparse input is refused with a TypeError: only dense arrays are
      supported.
    * With ``compute_labels=False`` and a fit of a single step (no smoothed
      inertia yet) ``inertia_`` is that step's batch estimate scaled to the
      data; scikit-learn raises a TypeError.
    * Inertia is summed in one thread, sequentially, so ``inertia_`` and
      ``score`` can differ from scikit-learn's (which depends on its OpenMP
      thread count) in the last digits; from 8 features on, each row's
      squares are also summed in NumPy's ``einsum`` order. The inertias that
      steer the fit (early stopping, the choice of init) keep scikit-learn's
      order.
    * Verbose lines, warnings, progress and per-sample outputs go through the
      per-call context (:mod:`._context`); in plain in-process use they are
      printed, warned and allocated exactly as scikit-learn does.
    """

    _schema: ClassVar[EstimatorSchema] = _SCHEMA

    #: Every parameter's acceptable values, checked in one place (``_validate_params``).
    _parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "n_clusters": [Interval(numbers.Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), Callables(), ArrayLikes()],
        "n_init": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": [verbose_levels()],
        "random_state": [random_states()],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "compute_labels": [booleans()],
        "max_no_improvement": [Interval(numbers.Integral, 0, None, closed="left"), NoneValue()],
        "init_size": [Interval(numbers.Integral, 1, None, closed="left"), NoneValue()],
        "reassignment_ratio": [Interval(numbers.Real, 0, None, closed="left")],
    }

    _metadata_methods: ClassVar[dict[str, tuple[str, ...]]] = {
        "fit": ("sample_weight",),
        "partial_fit": ("sample_weight",),
        "score": ("sample_weight",),
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: str | Callable[..., Any] | Any = "k-means++",
        max_iter: int = 100,
        batch_size: int = 1024,
        verbose: int = 0,
        compute_labels: bool = True,
        random_state: int | np.random.RandomState | None = None,
        tol: float = 0.0,
        max_no_improvement: int | None = 10,
        init_size: int | None = None,
        n_init: str | int = "auto",
        reassignment_ratio: float = 0.01,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio

    # ------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        validate_params(
            self._parameter_constraints, self.get_params(deep=False), type(self).__name__
        )

    def _check_feature_names(self, X: Any, *, reset: bool) -> None:
        name = type(self).__name__
        if reset:
            names = feature_names_of(X)
            if names is not None:
                self.feature_names_in_ = names
            elif "feature_names_in_" in self.__dict__:
                del self.feature_names_in_
            return
        fitted = getattr(self, "feature_names_in_", None)
        given = feature_names_of(X)
        if fitted is None and given is None:
            return
        if given is not None and fitted is None:
            warn(f"X has feature names, but {name} was fitted without feature names", UserWarning)
            return
        if given is None:
            warn(
                f"X does not have valid feature names, but {name} was fitted with feature names",
                UserWarning,
            )
            return
        message = feature_name_mismatch_message(fitted, given)
        if message is not None:
            raise ValueError(message)

    def _validate_data(
        self, X: Any, *, reset: bool, dtype: np.dtype | None = None, check_finite: bool = True
    ) -> np.ndarray:
        """Names, then array checks, then the feature count (scikit-learn's order).

        With ``check_finite=False`` the NaN/infinity check is left to the
        caller (see :meth:`_finite_check`), except before the feature-count
        error, which it must precede.
        """
        return self._validated(X, reset=reset, dtype=dtype, check_finite=check_finite)[0]

    def _validate_train_data(
        self, X: Any, *, reset: bool, dtype: np.dtype | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`_validate_data` for rows to train on, and their squared norms (or None).

        Where the float32 screen will label the rows, the look for NaN and
        infinity is the total of the rows' squared norms, which the screen
        then uses (:func:`._row_norms.finite_sq_norms`); where that total
        proves nothing, or elsewhere, the usual check. Returns
        ``(X, sq_norms)``, ``sq_norms`` of shape (n_samples,) float32 or None.
        """
        return self._validated(X, reset=reset, dtype=dtype, sq_norms=True)

    def _validated(
        self,
        X: Any,
        *,
        reset: bool,
        dtype: np.dtype | None,
        check_finite: bool = True,
        sq_norms: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`_validate_data`, and with ``sq_norms`` :meth:`_validate_train_data`."""
        self._check_feature_names(X, reset=reset)
        name = type(self).__name__
        array = check_array(
            X,
            estimator_name=name,
            input_name="X",
            dtype=dtype,
            check_finite=check_finite and not sq_norms,
        )
        norms = None
        if sq_norms:
            # (check_array's own errors after its finite check are for empty
            # arrays only, which hold no NaN: the order is unchanged.)
            # A fitted model's own center count (partial_fit does not check
            # n_clusters again after the first call, nor does scikit-learn).
            centers = getattr(self, "cluster_centers_", None)
            n_clusters = self.n_clusters if centers is None else centers.shape[0]
            screened = isinstance(n_clusters, numbers.Integral) and _screen.screens(
                array.shape[1], n_clusters, array.dtype
            )
            if _row_norms.wanted(array, screened):
                norms = _row_norms.finite_sq_norms(array)
            if norms is None:
                assert_all_finite(array, input_name="X", estimator_name=name)
        n_features = array.shape[1]
        if reset:
            self.n_features_in_ = n_features
        elif hasattr(self, "n_features_in_") and n_features != self.n_features_in_:
            if not check_finite:
                self._finite_check(array)()
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} "
                f"is expecting {self.n_features_in_} features as input."
            )
        return array, norms

    def _finite_check(self, X: np.ndarray) -> Callable[[], None]:
        """The NaN/infinity check of ``X`` that validation left undone, as a callable."""
        name = type(self).__name__
        caller = _error_settings()  # labelling runs with errors ignored; the check did not

        def check() -> None:
            with np.errstate(**caller):
                assert_all_finite(X, input_name="X", estimator_name=name)

        return check

    def _validate_test_data(self, X: Any, *, check_finite: bool = True) -> np.ndarray:
        check_is_fitted(self)
        return self._validate_data(X, reset=False, check_finite=check_finite)

    def _check_params_vs_input(self, X: np.ndarray) -> None:
        n_samples = X.shape[0]
        if n_samples < self.n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}.")
        self._tol = steps.tolerance(X, self.tol)
        # The thread count of scikit-learn's OpenMP loops here: its inertias are
        # summed in their blocks, and so are the core's (see _openmp).
        self._n_threads = _openmp.sklearn_threads()

        if self.n_init == "auto":
            if isinstance(self.init, str) and self.init == "k-means++":
                self._n_init = 1
            elif isinstance(self.init, str) or callable(self.init):
                self._n_init = 3
            else:
                self._n_init = 1
        else:
            self._n_init = self.n_init
        if is_arraylike_not_scalar(self.init) and self._n_init != 1:
            warn(
                "Explicit initial center position passed: performing only"
                f" one init in {type(self).__name__} instead of "
                f"n_init={self._n_init}.",
                RuntimeWarning,
            )
            self._n_init = 1

        self._batch_size = min(self.batch_size, n_samples)
        init_size = self.init_size
        if init_size is None:
            init_size = 3 * self._batch_size
            if init_size < self.n_clusters:
                init_size = 3 * self.n_clusters
        elif init_size < self.n_clusters:
            warn(
                f"init_size={init_size} should be larger than "
                f"n_clusters={self.n_clusters}. Setting it to "
                "min(3*n_clusters, n_samples)",
                RuntimeWarning,
            )
            init_size = 3 * self.n_clusters
        self._init_size = min(init_size, n_samples)

        if self.reassignment_ratio < 0:
            raise ValueError(
                f"reassignment_ratio should be >= 0, got {self.reassignment_ratio} instead."
            )

    def _validate_center_shape(self, X: np.ndarray, centers: np.ndarray) -> None:
        if centers.shape[0] != self.n_clusters:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not "
                f"match the number of clusters {self.n_clusters}."
            )
        if centers.shape[1] != X.shape[1]:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not "
                f"match the number of features of the data {X.shape[1]}."
            )

    def _checked_init(self, X: np.ndarray) -> Any:
        """``self.init``, with an explicit array validated and copied to X's dtype."""
        init = self.init
        if is_arraylike_not_scalar(init) and not isinstance(init, str):
            init = check_array(init, dtype=X.dtype, copy=True)
            self._validate_center_shape(X, init)
        return init

    # -------------------------------------------------------- initialisation
    def _init_centroids(
        self,
        X: np.ndarray,
        init: Any,
        random_state: np.random.RandomState,
        sample_weight: np.ndarray | None,
        init_size: int | None,
    ) -> np.ndarray:
        """Initial centers from (a random subset of) X.

        Returns
        -------
        ndarray of shape (n_clusters, n_features), X's dtype, C-contiguous, owned.
        """
        n_samples = X.shape[0]
        if init_size is not None and init_size < n_samples:
            subset = random_state.randint(0, n_samples, init_size)
            X = X[subset]
            sample_weight = None if sample_weight is None else sample_weight[subset]
        if sample_weight is None:
            sample_weight = np.ones(X.shape[0], dtype=X.dtype)

        if isinstance(init, str) and init == "k-means++":
            centers = steps.kmeans_plusplus(
                X, self.n_clusters, steps.row_sq_norms(X), sample_weight, random_state
            )
        elif isinstance(init, str) and init == "random":
            centers = steps.random_init(X, self.n_clusters, sample_weight, random_state)
        elif is_arraylike_not_scalar(self.init):
            centers = init
        else:
            centers = init(X, self.n_clusters, random_state=random_state)
            centers = check_array(centers, dtype=X.dtype)
            self._validate_center_shape(X, centers)
        return np.array(centers, dtype=X.dtype, order="C", copy=True)

    # ------------------------------------------------------ early stopping
    def _random_reassign(self) -> bool:
        """Whether this step reassigns light centers: every ``10 * n_clusters`` samples,
        or at once while some center has never received weight."""
        self._n_since_last_reassign += self._batch_size
        # The count test first: it is true every step when 10 * n_clusters <= batch_size.
        if self._n_since_last_reassign >= 10 * self.n_clusters or (self._counts == 0).any():
            self._n_since_last_reassign = 0
            return True
        return False

    def _mini_batch_convergence(
        self,
        step: int,
        n_steps: int,
        n_samples: int,
        centers_squared_diff: float,
        batch_inertia: Bounded,
    ) -> bool:
        """Update the smoothed (EWA) inertia; return whether to stop after this step.

        ``batch_inertia`` carries a bound on its distance from scikit-learn's
        value (0 when summed in its order); a comparison the bounds cannot
        decide raises :class:`_early_stop.Undecided` (see :mod:`._early_stop`).
        """
        batch = batch_inertia.divided(self._batch_size)
        step += 1
        # Step 1's inertia measures the initialisation, not the algorithm.
        if step == 1:
            if self.verbose:
                emit_verbose(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch.value}")
            return False

        if self._ewa is None:
            self._ewa = batch
        else:
            alpha = min(self._batch_size * 2.0 / (n_samples + 1), 1)
            self._ewa = self._ewa.smoothed(batch, alpha)

        if self.verbose:
            emit_verbose(
                f"Minibatch step {step}/{n_steps}: mean batch inertia: "
                f"{batch.value}, ewa inertia: {self._ewa.value}"
            )

        if self._tol > 0.0 and centers_squared_diff <= self._tol:
            if self.verbose:
                emit_verbose(f"Converged (small centers change) at step {step}/{n_steps}")
            return True

        if self._ewa_min is None or _early_stop.less(self._ewa, self._ewa_min):
            self._no_improvement = 0
            self._ewa_min = self._ewa
        else:
            self._no_improvement += 1

        if self.max_no_improvement is not None and self._no_improvement >= self.max_no_improvement:
            if self.verbose:
                emit_verbose(f"Converged (lack of improvement in inertia) at step {step}/{n_steps}")
            return True
        return False

    # --------------------------------------------------------------- fitting
    def fit(self, X: Any, y: object = None, sample_weight: Any = None) -> MiniBatchKMeans:
        """Compute the centers on X by minibatches.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (float32 kept, anything else converted to float64).
        y : ignored
        sample_weight : array-like of shape (n_samples,) or None
            Weight of each row (not used by an explicit or callable init).

        Returns
        -------
        self
        """
        self._fit(X, sample_weight)
        return self

    def _fit(self, X: Any, sample_weight: Any) -> np.ndarray:
        """Body of :meth:`fit`; returns the validated X (for ``fit_transform``)."""
        self._validate_params()
        X, sq_norms = self._validate_train_data(X, reset=True)
        self._check_params_vs_input(X)
        random_state = check_random_state(self.random_state)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        n_samples, n_features = X.shape
        init = self._checked_init(X)

        valid_idx = random_state.randint(0, n_samples, self._init_size)
        # The validation inertia only chooses between inits (and is printed):
        # with one init and no verbose lines nothing needs it.
        validate = self._n_init > 1 or bool(self.verbose)
        X_valid = X[valid_idx] if validate else X[:0]
        sw_valid = None if sample_weight is None or not validate else sample_weight[valid_idx]
        norms_valid = None if sq_norms is None or not validate else sq_norms[valid_idx]

        best_inertia = None
        best_centers = None
        for init_idx in range(self._n_init):
            if self.verbose:
                emit_verbose(f"Init {init_idx + 1}/{self._n_init} with method {init}")
            centers = self._init_centroids(
                X, init, random_state, sample_weight, init_size=self._init_size
            )
            # In scikit-learn's order (the default): the best init is chosen on it.
            inertia = 0.0
            if validate:
                with _compiled():
                    inertia = steps.labels_inertia(
                        X_valid,
                        sw_valid,
                        centers,
                        sum_threads=self._n_threads,
                        sq_norms=norms_valid,
                    )
            if self.verbose:
                emit_verbose(f"Inertia for init {init_idx + 1}/{self._n_init}: {inertia}")
            if best_inertia is None or inertia < best_inertia:
                best_centers, best_inertia = centers, inertia
            check_cancelled()
        assert best_centers is not None

        # The batch inertias only steer early stopping (and verbose lines, and
        # ``inertia_`` without labels). Where nothing else shows them they are
        # summed in the fastest order, and a stop the bounds cannot decide
        # reruns the steps in scikit-learn's order (see _early_stop).
        inertia_mode: steps.InertiaMode = "exact"
        if not self.verbose and self.compute_labels and X.dtype == np.float64:
            inertia_mode = "bounded" if self.max_no_improvement is not None else "none"
        # (With random_state=None the random state is NumPy's global one: a rerun
        # rewinds it, as a fit that had summed in scikit-learn's order would have
        # drawn from there.)
        rerun = (
            (random_state.get_state(), best_centers.copy()) if inertia_mode == "bounded" else None
        )
        self._steps_reported = 0
        try:
            centers, step, batch_inertia = self._minibatch_steps(
                X, sample_weight, best_centers, random_state, inertia_mode, sq_norms
            )
        except _early_stop.Undecided:
            if rerun is None:  # only the bounded mode can leave a comparison undecided
                raise
            random_state.set_state(rerun[0])
            centers, step, batch_inertia = self._minibatch_steps(
                X, sample_weight, rerun[1], random_state, "exact", sq_norms
            )
        batch_size = self._batch_size
        n_steps = (self.max_iter * n_samples) // batch_size

        self.cluster_centers_ = centers
        self._n_features_out = self.cluster_centers_.shape[0]
        self.n_steps_ = step + 1
        self.n_iter_ = int(np.ceil(((step + 1) * batch_size) / n_samples))

        if self.compute_labels:
            labels = allocate_output("labels_", (n_samples,), np.int32)
            self.labels_ = labels
            with _compiled():
                self.inertia_ = steps.labels_inertia(
                    X,
                    sample_weight,
                    centers,
                    labels,
                    on_block=self._block_done("labels"),
                    sklearn_order=False,
                    sum_threads=self._n_threads,
                    sq_norms=sq_norms,
                )
        elif self._ewa is not None:
            self.inertia_ = self._ewa.value * n_samples
        else:
            # A single step leaves no smoothed value (scikit-learn raises a
            # TypeError here); that step's mean batch inertia is the estimate.
            self.inertia_ = batch_inertia.value / batch_size * n_samples
        report_progress(n_steps, n_steps, "fit")
        return X

    def _minibatch_steps(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray | None,
        centers: np.ndarray,
        random_state: np.random.RandomState,
        inertia: steps.InertiaMode,
        sq_norms: np.ndarray | None = None,
    ) -> tuple[np.ndarray, int, Bounded]:
        """The minibatch loop from initial ``centers`` (overwritten).

        Returns the final centers, the last step's index and its batch
        inertia. ``sq_norms`` are X's rows' squared norms for the screen, or
        None. ``inertia`` is :func:`._kmeans_steps.mini_batch_step`'s; with
        "bounded", :class:`_early_stop.Undecided` may interrupt the loop
        (progress already reported is not reported again by a rerun).
        """
        n_samples, n_features = X.shape
        centers_new = np.empty_like(centers)
        self._counts = np.zeros(self.n_clusters, dtype=X.dtype)
        self._ewa: Bounded | None = None
        self._ewa_min: Bounded | None = None
        self._no_improvement = 0
        self._n_since_last_reassign = 0
        signed = sample_weight is not None and bool((sample_weight < 0).any())

        batch_size = self._batch_size
        n_steps = (self.max_iter * n_samples) // batch_size
        workspace = steps.StepWorkspace(
            batch_size, self.n_clusters, n_features, X.dtype, sum_threads=self._n_threads
        )
        verbose = bool(self.verbose)
        step = 0
        batch_inertia = Bounded(0.0, 0.0)
        blas = _blas.held(1)
        caller = _error_settings()
        with workspace, blas, _compiled():
            for step in range(n_steps):
                blas.breathe()
                batch_idx = random_state.randint(0, n_samples, batch_size)
                batch_inertia = steps.mini_batch_step(
                    X,
                    sample_weight,
                    centers,
                    centers_new,
                    self._counts,
                    random_state,
                    workspace,
                    random_reassign=self._random_reassign(),
                    reassignment_ratio=self.reassignment_ratio,
                    verbose=verbose,
                    rows=batch_idx,
                    inertia=inertia,
                    signed_weights=signed,
                    sq_norms=sq_norms,
                )
                if self._tol > 0.0:
                    with np.errstate(**caller):  # NumPy in scikit-learn's loop too
                        centers_squared_diff = np.sum((centers_new - centers) ** 2)
                else:
                    centers_squared_diff = 0
                centers, centers_new = centers_new, centers
                if self._mini_batch_convergence(
                    step, n_steps, n_samples, centers_squared_diff, batch_inertia
                ):
                    break
                if step + 1 > self._steps_reported:  # (a rerun reports only new steps)
                    self._steps_reported = step + 1
                    report_progress(step + 1, n_steps, "fit")
                check_cancelled()
        return centers, step, batch_inertia

    def partial_fit(self, X: Any, y: object = None, sample_weight: Any = None) -> MiniBatchKMeans:
        """Update the centers with one minibatch (the whole of X).

        The first call initialises the centers from X (no validation subset,
        a single init); ``n_iter_`` is never set by ``partial_fit``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,) or None

        Returns
        -------
        self
        """
        has_centers = hasattr(self, "cluster_centers_")
        if not any(k.endswith("_") and not k.startswith("__") for k in vars(self)):
            self._validate_params()
        dtype = self.cluster_centers_.dtype if has_centers else None
        X, sq_norms = self._validate_train_data(X, reset=not has_centers, dtype=dtype)
        # scikit-learn seeds a fresh RandomState on every call and keeps the
        # first call's; later calls only need its error, if any.
        if not (hasattr(self, "_random_state") and seeds_without_error(self.random_state)):
            fresh_state = check_random_state(self.random_state)
            self._random_state = getattr(self, "_random_state", fresh_state)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        self.n_steps_ = getattr(self, "n_steps_", 0)

        if not has_centers:
            self._check_params_vs_input(X)
            init = self._checked_init(X)
            self.cluster_centers_ = self._init_centroids(
                X, init, self._random_state, sample_weight, init_size=self._init_size
            )
            self._counts = np.zeros(self.n_clusters, dtype=X.dtype)
            self._n_since_last_reassign = 0

        with _compiled():
            known = steps.large_batch_step(
                X,
                sample_weight,
                self.cluster_centers_,
                self._counts,
                self._random_state,
                random_reassign=self._random_reassign(),
                reassignment_ratio=self.reassignment_ratio,
                verbose=bool(self.verbose),
                relabel=self.compute_labels,
                sq_norms=sq_norms,
            )
            if self.compute_labels:
                labels = allocate_output("labels_", (X.shape[0],), np.int32)
                self.labels_ = labels
                self.inertia_ = steps.labels_inertia(
                    X,
                    sample_weight,
                    self.cluster_centers_,
                    labels,
                    on_block=self._block_done("labels"),
                    sklearn_order=False,
                    sum_threads=self._n_threads,
                    known=known,  # the first labels that still hold
                    sq_norms=sq_norms,
                )
        self.n_steps_ += 1
        self._n_features_out = self.cluster_centers_.shape[0]
        report_progress(1, 1, "partial_fit")
        return self

    # ------------------------------------------------------------- inference
    @staticmethod
    def _block_done(phase: str) -> Callable[[int, int], None]:
        def done(rows: int, total: int) -> None:
            report_progress(rows, total, phase)
            check_cancelled()

        return done

    def predict(self, X: Any) -> np.ndarray:
        """Index of the nearest center for each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), int32
        """
        # NaN and infinity are looked for block by block while labelling, on
        # the labelling threads, mostly for free (see steps.labels_inertia).
        X = self._validate_test_data(X, check_finite=False)
        labels = allocate_output("predict", (X.shape[0],), np.int32)
        steps.labels_inertia(
            X,
            None,
            self.cluster_centers_,
            labels,
            with_inertia=False,
            on_block=self._block_done("predict"),
            finite_check=self._finite_check(X),
        )
        return labels

    def fit_predict(self, X: Any, y: object = None, sample_weight: Any = None) -> np.ndarray:
        """``fit(X, sample_weight=sample_weight).labels_``.

        Returns
        -------
        ndarray of shape (n_samples,), int32
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    def _distances(self, X: np.ndarray) -> np.ndarray:
        """Euclidean distances to every center, into the output (as scikit-learn's products)."""
        centers = self.cluster_centers_
        dtype = np.result_type(X.dtype, centers.dtype)
        out = allocate_output("transform", (X.shape[0], centers.shape[0]), dtype)
        steps.euclidean_distances(X, centers.astype(dtype), out, self._block_done("transform"))
        return out

    def _wrap_output(self, data: np.ndarray, original: Any) -> Any:
        config = getattr(self, "_output_config", {}).get("transform", "default")
        if config not in _OUTPUT_CONTAINERS:
            raise ValueError(f"output config must be in {sorted(_OUTPUT_CONTAINERS)}, got {config}")
        if config == "default" or not outputs_wrapped():
            return data
        try:
            columns = self.get_feature_names_out()
        except Exception:
            columns = None
        if config == "pandas":
            try:
                import pandas as pd
            except ImportError as exc:
                raise ImportError(
                    "Setting output container to 'pandas' requires pandas to be installed"
                ) from exc
            index = original.index if is_pandas_dataframe(original) else None
            frame = pd.DataFrame(data, index=index, copy=False)
            if columns is not None:
                frame.columns = columns
            return frame
        try:
            import polars as pl
        except ImportError as exc:
            raise ImportError(
                "Setting output container to 'polars' requires polars to be installed"
            ) from exc
        names = columns.tolist() if columns is not None else None
        return pl.DataFrame(data, schema=names, orient="row")

    def transform(self, X: Any) -> Any:
        """Distances from each row to every center.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_clusters)
            Or a DataFrame, after ``set_output(transform="pandas")``.
        """
        original = X
        X = self._validate_test_data(X)
        return self._wrap_output(self._distances(X), original)

    def fit_transform(self, X: Any, y: object = None, sample_weight: Any = None) -> Any:
        """``fit`` then ``transform`` on the same (already validated) rows.

        Returns
        -------
        ndarray of shape (n_samples, n_clusters)
        """
        original = X
        X = self._fit(X, sample_weight)
        return self._wrap_output(self._distances(X), original)

    def score(self, X: Any, y: object = None, sample_weight: Any = None) -> float:
        """Opposite of the (weighted) k-means objective on X.

        Returns
        -------
        float
            ``-sum_i w_i |x_i - c(x_i)|^2``.
        """
        # As in predict, NaN and infinity in X are looked for while labelling.
        X = self._validate_test_data(X, check_finite=False)
        finite_check = self._finite_check(X)
        try:
            sample_weight = check_sample_weight(
                sample_weight, X.shape[0], self.cluster_centers_.dtype
            )
        except Exception:
            finite_check()  # scikit-learn reports X's NaN or infinity first
            raise
        with _compiled():
            inertia = steps.labels_inertia(
                X,
                sample_weight,
                self.cluster_centers_,
                on_block=self._block_done("score"),
                sklearn_order=False,
                finite_check=finite_check,
                sum_threads=self._n_threads,
            )
        return -inertia

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names of ``transform``: ``minibatchkmeans0``, ... .

        Parameters
        ----------
        input_features : array-like of str or None
            Only checked against the names seen in fit.

        Returns
        -------
        ndarray of str objects, shape (n_clusters,)
        """
        check_is_fitted(self, "_n_features_out")
        if input_features is not None:
            given = np.asarray(input_features, dtype=object)
            fitted = getattr(self, "feature_names_in_", None)
            if fitted is not None and not np.array_equal(fitted, given):
                raise ValueError("input_features is not equal to feature_names_in_")
            n_in = getattr(self, "n_features_in_", None)
            if n_in is not None and len(given) != n_in:
                raise ValueError(
                    "input_features should have length equal to number of "
                    f"features ({n_in}), got {len(given)}"
                )
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self._n_features_out)], dtype=object)

    # ---------------------------------------------------- metadata requests
    def set_fit_request(self, *, sample_weight: Any = UNCHANGED) -> MiniBatchKMeans:
        """Set how ``fit`` requests ``sample_weight``: True, False, None or an alias.

        Only with metadata routing enabled. Leaving the argument out keeps the
        current request.

        Returns
        -------
        self
        """
        self._set_request("fit", sample_weight=sample_weight)
        return self

    def set_partial_fit_request(self, *, sample_weight: Any = UNCHANGED) -> MiniBatchKMeans:
        """As :meth:`set_fit_request`, for ``partial_fit``.

        Returns
        -------
        self
        """
        self._set_request("partial_fit", sample_weight=sample_weight)
        return self

    def set_score_request(self, *, sample_weight: Any = UNCHANGED) -> MiniBatchKMeans:
        """As :meth:`set_fit_request`, for ``score``.

        Returns
        -------
        self
        """
        self._set_request("score", sample_weight=sample_weight)
        return self
