"""``MiniBatchKMeans``: the client of the server's MiniBatchKMeans (scikit-learn-ts's API).

Each method takes an options dict (``fit({"X": X})``, as in TypeScript) or
keyword arguments (``fit(X=X)``), or the main input positionally
(``fit(X)``); all are async. Accessors are properties whose value is awaited
(``await model.labels_``).
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any, Literal, Self, TypedDict, Unpack, overload

import numpy as np
import numpy.typing as npt

from protocol import DataRef

from .bridge import DEFAULT
from .estimator import MISSING, Estimator, Missing, Progress, Timeout

__all__ = ["MiniBatchKMeans", "MiniBatchKMeansOptions"]

#: What the methods take as data: arrays, nested lists, frames, or a server-side file.
ArrayLike = npt.ArrayLike | DataRef


class MiniBatchKMeansOptions(TypedDict, total=False):
    """Constructor options; any left out take scikit-learn 1.5.2's default."""

    n_clusters: int
    """Number of clusters (default 8)."""
    init: Literal["k-means++", "random"] | npt.ArrayLike
    """``'k-means++'`` (default), ``'random'``, or an array (n_clusters, n_features)."""
    max_iter: int
    """Maximum passes over the whole dataset (default 100)."""
    batch_size: int
    """Size of the mini batches (default 1024)."""
    verbose: int
    """Verbosity; > 0 prints the server's progress lines here (default 0)."""
    compute_labels: bool
    """Compute labels and inertia on the full dataset after fitting (default True)."""
    random_state: int | None
    """Seed of the random number generator (default None)."""
    tol: float
    """Early stopping on small center changes; 0.0 disables it (default 0.0)."""
    max_no_improvement: int | None
    """Early stopping after this many batches without improvement; None disables (default 10)."""
    init_size: int | None
    """Samples used for initialization (default None: a heuristic)."""
    n_init: int | Literal["auto"]
    """Number of initializations tried (default 'auto')."""
    reassignment_ratio: float
    """Fraction of the maximum count under which centers are reassigned (default 0.01)."""


class FitOptions(TypedDict, total=False):
    """Options of ``fit``, ``partial_fit``, ``fit_predict``, ``fit_transform``, ``score``."""

    X: ArrayLike
    y: Any
    sample_weight: ArrayLike | None


class XOptions(TypedDict, total=False):
    """Options of ``predict`` and ``transform``."""

    X: ArrayLike


class RequestOptions(TypedDict, total=False):
    """Options of ``set_fit_request``, ``set_partial_fit_request``, ``set_score_request``."""

    sample_weight: bool | str | None


class MiniBatchKMeans(Estimator):
    """Mini-Batch K-Means clustering, computed by a bridge server.

    Parameters
    ----------
    opts : dict, optional
        Constructor options (see :class:`MiniBatchKMeansOptions`), TypeScript style.
    **kwargs
        The same options as keyword arguments. A key left out takes
        scikit-learn's default; a key set to None sends None
        (``max_no_improvement=None`` disables early stopping).

    Examples
    --------
    >>> py = await create_python_bridge()
    >>> model = MiniBatchKMeans({"n_clusters": 2, "random_state": 0})
    >>> await model.init(py)
    >>> labels = await model.fit_predict({"X": [[1, 2], [1, 4], [10, 2], [10, 4]]})
    >>> centers = await model.cluster_centers_
    >>> await model.dispose()
    >>> await py.disconnect()
    """

    _estimator_name = "MiniBatchKMeans"

    def __init__(
        self,
        opts: MiniBatchKMeansOptions | None = None,
        /,
        **kwargs: Unpack[MiniBatchKMeansOptions],
    ) -> None:
        super().__init__(opts, **kwargs)

    # -- methods --------------------------------------------------------------------

    async def fit(
        self,
        opts: FitOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        y: Any = MISSING,
        sample_weight: ArrayLike | None | Missing = MISSING,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
        out: Mapping[str, DataRef] | None = None,
    ) -> Self:
        """Compute the centroids on X by chunking it into mini-batches.

        Parameters
        ----------
        opts : dict or array-like, optional
            ``{"X", "y", "sample_weight"}``, or X itself.
        X : array-like of shape (n_samples, n_features)
            Training instances to cluster.
        y : ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the observations; None gives equal weight.
        timeout : float, optional
            Seconds before the call is cancelled on the server (CallTimeout).
        progress : callable, optional
            ``progress(done, total, phase)`` for this call.
        out : dict of str to DataRef, optional
            Per-sample attributes to write to the server's data directory
            instead of keeping them in its memory, e.g.
            ``{"labels_": DataRef("labels.npy")}`` (SPEC 5.5); reading
            ``labels_`` afterwards gives that DataRef.

        Returns
        -------
        self
        """
        return await self._call(
            "fit",
            opts,
            "X",
            {"X": X, "y": y, "sample_weight": sample_weight},
            timeout=timeout,
            progress=progress,
            out=out,
            returns_self=True,
        )

    async def partial_fit(
        self,
        opts: FitOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        y: Any = MISSING,
        sample_weight: ArrayLike | None | Missing = MISSING,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
        out: Mapping[str, DataRef] | None = None,
    ) -> Self:
        """Update the k-means estimate on a single mini-batch X.

        Parameters
        ----------
        opts : dict or array-like, optional
            ``{"X", "y", "sample_weight"}``, or X itself.
        X : array-like of shape (n_samples, n_features)
            The mini-batch.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
        timeout, progress
            As for :meth:`fit`.
        out : dict, optional
            As for :meth:`fit`.

        Returns
        -------
        self
        """
        return await self._call(
            "partial_fit",
            opts,
            "X",
            {"X": X, "y": y, "sample_weight": sample_weight},
            timeout=timeout,
            progress=progress,
            out=out,
            returns_self=True,
        )

    @overload
    async def predict(
        self,
        opts: XOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        out: None = None,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
    ) -> np.ndarray: ...

    @overload
    async def predict(
        self,
        opts: XOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        out: DataRef,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
    ) -> DataRef: ...

    async def predict(
        self,
        opts: XOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        out: DataRef | None = None,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
    ) -> np.ndarray | DataRef:
        """Predict the closest cluster each sample in X belongs to.

        Parameters
        ----------
        opts : dict or array-like, optional
            ``{"X"}``, or X itself.
        X : array-like of shape (n_samples, n_features)
            New data to predict.
        out : DataRef, optional
            Have the server write the labels to this ``.npy`` file in its data
            directory and return the reference instead of the array.
        timeout, progress
            As for :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples,), or the DataRef given as ``out``.
        """
        return await self._call(
            "predict", opts, "X", {"X": X}, timeout=timeout, progress=progress, out=out
        )

    @overload
    async def fit_predict(
        self,
        opts: FitOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        y: Any = MISSING,
        sample_weight: ArrayLike | None | Missing = MISSING,
        out: None = None,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
    ) -> np.ndarray: ...

    @overload
    async def fit_predict(
        self,
        opts: FitOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        y: Any = MISSING,
        sample_weight: ArrayLike | None | Missing = MISSING,
        out: DataRef,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
    ) -> DataRef: ...

    async def fit_predict(
        self,
        opts: FitOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        y: Any = MISSING,
        sample_weight: ArrayLike | None | Missing = MISSING,
        out: DataRef | None = None,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
    ) -> np.ndarray | DataRef:
        """Compute cluster centers and predict the cluster index of each sample.

        Equivalent to ``fit(X)`` followed by ``predict(X)``.

        Parameters
        ----------
        opts : dict or array-like, optional
            ``{"X", "y", "sample_weight"}``, or X itself.
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
        out : DataRef, optional
            Write the labels to this server-side file and return the reference.
        timeout, progress
            As for :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples,), or the DataRef given as ``out``.
        """
        return await self._call(
            "fit_predict",
            opts,
            "X",
            {"X": X, "y": y, "sample_weight": sample_weight},
            timeout=timeout,
            progress=progress,
            out=out,
        )

    async def transform(
        self,
        opts: XOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        out: DataRef | None = None,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
    ) -> Any:
        """Transform X to a cluster-distance space.

        Parameters
        ----------
        opts : dict or array-like, optional
            ``{"X"}``, or X itself.
        X : array-like of shape (n_samples, n_features)
            New data to transform.
        out : DataRef, optional
            Write the distances to this server-side file and return the reference.
        timeout, progress
            As for :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples, n_clusters); a pandas or polars DataFrame
        after ``set_output(transform="pandas" | "polars")``; or the DataRef
        given as ``out``.
        """
        return await self._call(
            "transform", opts, "X", {"X": X}, timeout=timeout, progress=progress, out=out
        )

    async def fit_transform(
        self,
        opts: FitOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        y: Any = MISSING,
        sample_weight: ArrayLike | None | Missing = MISSING,
        out: DataRef | None = None,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
    ) -> Any:
        """Compute clustering and transform X to cluster-distance space.

        Equivalent to ``fit(X).transform(X)``, more efficiently.

        Parameters
        ----------
        opts : dict or array-like, optional
            ``{"X", "y", "sample_weight"}``, or X itself.
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
        out : DataRef, optional
            Write the distances to this server-side file and return the reference.
        timeout, progress
            As for :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples, n_clusters), a DataFrame after
        ``set_output``, or the DataRef given as ``out``.
        """
        return await self._call(
            "fit_transform",
            opts,
            "X",
            {"X": X, "y": y, "sample_weight": sample_weight},
            timeout=timeout,
            progress=progress,
            out=out,
        )

    async def score(
        self,
        opts: FitOptions | ArrayLike | None = None,
        /,
        *,
        X: ArrayLike | Missing = MISSING,
        y: Any = MISSING,
        sample_weight: ArrayLike | None | Missing = MISSING,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
    ) -> float:
        """Opposite of the value of X on the K-means objective.

        Parameters
        ----------
        opts : dict or array-like, optional
            ``{"X", "y", "sample_weight"}``, or X itself.
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
        timeout, progress
            As for :meth:`fit`.

        Returns
        -------
        float
        """
        return await self._call(
            "score",
            opts,
            "X",
            {"X": X, "y": y, "sample_weight": sample_weight},
            timeout=timeout,
            progress=progress,
        )

    async def get_feature_names_out(
        self,
        opts: dict[str, Any] | npt.ArrayLike | None = None,
        /,
        *,
        input_features: npt.ArrayLike | None | Missing = MISSING,
        timeout: Timeout = DEFAULT,
    ) -> np.ndarray:
        """Output feature names for transformation: ``minibatchkmeans0``, ``minibatchkmeans1``, ...

        Parameters
        ----------
        opts : dict or array-like of str, optional
            ``{"input_features"}``, or input_features itself.
        input_features : array-like of str, optional
            Only used to validate feature names with the names seen in ``fit``.

        Returns
        -------
        ndarray of str objects, shape (n_clusters,)
        """
        return await self._call(
            "get_feature_names_out",
            opts,
            "input_features",
            {"input_features": input_features},
            timeout=timeout,
        )

    async def get_metadata_routing(
        self,
        opts: dict[str, Any] | None = None,
        /,
        *,
        routing: Any = MISSING,
        timeout: Timeout = DEFAULT,
    ) -> dict[str, Any]:
        """Metadata routing of this object: the plain-dict form of scikit-learn's MetadataRequest.

        Parameters
        ----------
        opts : dict, optional
            ``{"routing"}``.
        routing : any
            Passed through to the server.
        """
        return await self._call(
            "get_metadata_routing", opts, None, {"routing": routing}, timeout=timeout
        )

    async def set_output(
        self,
        opts: dict[str, Any] | None = None,
        /,
        *,
        transform: Literal["default", "pandas", "polars"] | None | Missing = MISSING,
        timeout: Timeout = DEFAULT,
    ) -> Self:
        """Set the output container of ``transform`` and ``fit_transform``.

        ``"pandas"`` or ``"polars"`` make them return that library's DataFrame
        (columns from ``get_feature_names_out``, a pandas input's index kept);
        the wrapping happens on this side of the wire, and raises ImportError
        here when the library is not installed. ``"default"`` returns arrays;
        None leaves the setting unchanged.

        Returns
        -------
        self
        """
        return await self._call(
            "set_output", opts, None, {"transform": transform}, timeout=timeout, returns_self=True
        )

    async def set_fit_request(
        self,
        opts: RequestOptions | None = None,
        /,
        *,
        sample_weight: bool | str | None | Missing = MISSING,
        timeout: Timeout = DEFAULT,
    ) -> Self:
        """Request metadata passed to ``fit`` (with ``py.configure(enable_metadata_routing=True)``).

        Parameters
        ----------
        sample_weight : bool, str or None
            True: requested; False: not requested; None: error if passed (the
            initial state); a str: an alias. Left out: unchanged.

        Returns
        -------
        self
        """
        return await self._call(
            "set_fit_request",
            opts,
            None,
            {"sample_weight": sample_weight},
            timeout=timeout,
            returns_self=True,
        )

    async def set_partial_fit_request(
        self,
        opts: RequestOptions | None = None,
        /,
        *,
        sample_weight: bool | str | None | Missing = MISSING,
        timeout: Timeout = DEFAULT,
    ) -> Self:
        """Request metadata passed to ``partial_fit`` (see :meth:`set_fit_request`).

        Returns
        -------
        self
        """
        return await self._call(
            "set_partial_fit_request",
            opts,
            None,
            {"sample_weight": sample_weight},
            timeout=timeout,
            returns_self=True,
        )

    async def set_score_request(
        self,
        opts: RequestOptions | None = None,
        /,
        *,
        sample_weight: bool | str | None | Missing = MISSING,
        timeout: Timeout = DEFAULT,
    ) -> Self:
        """Request metadata passed to ``score`` (see :meth:`set_fit_request`).

        Returns
        -------
        self
        """
        return await self._call(
            "set_score_request",
            opts,
            None,
            {"sample_weight": sample_weight},
            timeout=timeout,
            returns_self=True,
        )

    # -- accessors (awaited) --------------------------------------------------------

    @property
    def cluster_centers_(self) -> Coroutine[Any, Any, np.ndarray]:
        """Coordinates of cluster centers, shape (n_clusters, n_features)."""
        return self._attribute("cluster_centers_")

    @property
    def labels_(self) -> Coroutine[Any, Any, np.ndarray]:
        """Labels of each training point (if compute_labels is True), shape (n_samples,)."""
        return self._attribute("labels_")

    @property
    def inertia_(self) -> Coroutine[Any, Any, float]:
        """Sum of squared distances of samples to their closest center (weighted)."""
        return self._attribute("inertia_")

    @property
    def n_iter_(self) -> Coroutine[Any, Any, int]:
        """Number of iterations over the full dataset."""
        return self._attribute("n_iter_")

    @property
    def n_steps_(self) -> Coroutine[Any, Any, int]:
        """Number of minibatches processed."""
        return self._attribute("n_steps_")

    @property
    def n_features_in_(self) -> Coroutine[Any, Any, int]:
        """Number of features seen during fit."""
        return self._attribute("n_features_in_")

    @property
    def feature_names_in_(self) -> Coroutine[Any, Any, np.ndarray]:
        """Names of features seen during fit (only when X had string column names)."""
        return self._attribute("feature_names_in_")
