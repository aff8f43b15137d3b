"""The generic client estimator: lifecycle, method calls and awaited accessors.

A concrete estimator (``MiniBatchKMeans``) is a thin subclass: it names its
server-side class and writes out each method and accessor with its signature
and docstring, delegating to :meth:`Estimator._call` and
:meth:`Estimator._attribute`. The lifecycle mirrors scikit-learn-ts word for
word: ``init(py)`` creates the instance on the server, ``dispose()`` drops it,
and using the object out of order raises :class:`~client_py.errors.LifecycleError`
(a ``RuntimeError``) with scikit-learn-ts's messages.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar, Final

import numpy as np

from protocol import DataRef

from .bridge import DEFAULT, ProgressCallback, PythonBridge, _Default
from .errors import BridgeConnectionError, LifecycleError, UnknownInstance
from .values import check_container, frame_index, to_wire_value, wrap_output

__all__ = ["MISSING", "Estimator", "Missing"]


class Missing(enum.Enum):
    """Type of :data:`MISSING`: an argument not given (as opposed to ``None``)."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


#: An argument left out: the server uses scikit-learn's default. ``None`` is sent as nil.
MISSING: Final = Missing.MISSING

#: ``timeout=`` and ``progress=`` may say "the bridge's default".
Timeout = float | None | _Default
Progress = ProgressCallback | None | _Default


class Estimator:
    """Base of the client estimators: a handle on an instance living in a bridge server.

    Parameters
    ----------
    opts : dict, optional
        Constructor options, JavaScript style (``MiniBatchKMeans({"n_clusters": 3})``).
    **kwargs
        The same, Python style (``MiniBatchKMeans(n_clusters=3)``); they win over
        ``opts``. A key left out takes scikit-learn's default on the server; a key
        set to ``None`` sends None.

    Attributes
    ----------
    id : str
        The instance id on the server: the class name plus 8 hex digits.
    opts : dict
        The constructor options as given.
    """

    #: The server-side class name (``describe``'s estimator name).
    _estimator_name: ClassVar[str] = ""
    #: Methods whose result may be wrapped by ``set_output`` (pandas, polars).
    _transform_methods: ClassVar[frozenset[str]] = frozenset({"transform", "fit_transform"})

    def __init__(self, opts: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        name = self._estimator_name or type(self).__name__
        self.id: str = f"{name}{secrets.token_hex(4)}"
        self.opts: dict[str, Any] = {**(opts or {}), **kwargs}
        self._py: PythonBridge | None = None
        self._isInitialized: bool = False
        self._isDisposed: bool = False
        self._init_lock: asyncio.Lock | None = None
        self._output_container: str = "default"
        self._names_out: dict[int, Any] = {}

    @property
    def _name(self) -> str:
        return self._estimator_name or type(self).__name__

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.opts.items())
        return f"{self._name}({opts})"

    # -- lifecycle ------------------------------------------------------------------

    @property
    def py(self) -> PythonBridge | None:
        """The bridge this estimator talks through (set by :meth:`init`)."""
        return self._py

    @py.setter
    def py(self, pythonBridge: PythonBridge | None) -> None:
        self._py = pythonBridge

    async def init(self, py: PythonBridge) -> None:
        """Create the instance on the server behind ``py``.

        The estimator is unusable until this returns. A second ``init`` is a
        no-op that sends nothing.

        Raises
        ------
        LifecycleError
            The instance was disposed, or ``py`` is not a :class:`PythonBridge`.
        """
        if self._isDisposed:
            raise LifecycleError(f"This {self._name} instance has already been disposed")
        if self._isInitialized:
            return
        if not isinstance(py, PythonBridge):
            raise LifecycleError(f"{self._name}.init requires a PythonBridge instance")
        if self._init_lock is None:
            self._init_lock = asyncio.Lock()
        async with self._init_lock:  # two concurrent inits send one request
            if self._isInitialized:
                return
            self._py = py
            opts = {k: to_wire_value(v) for k, v in self.opts.items()}
            await py.request("init", {"cls": self._name, "id": self.id, "opts": opts})
            self._isInitialized = True

    async def dispose(self, *, timeout: Timeout = DEFAULT) -> None:
        """Drop the instance on the server (cancelling its calls in flight).

        Once disposed, the estimator is no longer usable. Disposing before
        ``init`` or twice is a no-op; so is disposing on a bridge that is gone.
        """
        if self._isDisposed or not self._isInitialized:
            return
        self._isDisposed = True
        py = self._py
        if py is None:
            return
        try:
            await py.request("dispose", {"id": self.id}, timeout=timeout)
        except (BridgeConnectionError, UnknownInstance):
            pass  # the server has forgotten it already

    def _bridge(self, what: str) -> PythonBridge:
        """The bridge, after the lifecycle checks for using ``what``."""
        if self._isDisposed:
            raise LifecycleError(f"This {self._name} instance has already been disposed")
        if not self._isInitialized or self._py is None:
            raise LifecycleError(f"{self._name} must call init() before {what}")
        return self._py

    # -- calls ----------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        first: Any,
        first_name: str | None,
        args: dict[str, Any],
        *,
        timeout: Timeout = DEFAULT,
        progress: Progress = DEFAULT,
        out: DataRef | Mapping[str, DataRef] | None = None,
        returns_self: bool = False,
    ) -> Any:
        """Call ``method`` on the server instance.

        Parameters
        ----------
        method : str
            The method's name.
        first : dict, value or None
            The first positional argument: an options dict (JavaScript style),
            or the value of ``first_name`` (``fit(X)``).
        first_name : str or None
            Which argument a non-dict ``first`` stands for; None: only a dict.
        args : dict
            Keyword arguments; values :data:`MISSING` are left out.
        out : DataRef or dict of DataRef, optional
            Where the server writes a per-sample result (``{"result": ref}`` for
            a bare reference); the call then returns the reference.
        returns_self : bool
            Return this estimator (scikit-learn returns ``self``).
        """
        py = self._bridge(f"{method}()")
        given: dict[str, Any] = {}
        if isinstance(first, Mapping):
            given.update(first)
        elif first is not None:
            if first_name is None:
                raise TypeError(f"{method}() takes an options dict or keyword arguments")
            given[first_name] = first
        for key, value in args.items():
            if value is not MISSING:
                given[key] = value
        if method == "set_output":
            check_container(given.get("transform"))
        wrap = method in self._transform_methods and self._output_container != "default"
        index = frame_index(given.get("X")) if wrap else None
        fields: dict[str, Any] = {
            "id": self.id,
            "method": method,
            "args": {k: to_wire_value(v) for k, v in given.items()},
        }
        if out is not None:
            fields["out"] = dict(out) if isinstance(out, Mapping) else {"result": out}
        if method.startswith(("fit", "partial_fit")):
            self._names_out.clear()
        result = await py.request("call", fields, timeout=timeout, progress=progress, stacklevel=3)
        if method == "set_output" and given.get("transform") is not None:
            self._output_container = str(given["transform"])
        if returns_self:
            return self
        if wrap and isinstance(result, np.ndarray) and result.ndim == 2:
            columns = await self._feature_names_out(py, result.shape[1])
            return wrap_output(result, self._output_container, columns, index)
        return result

    async def _feature_names_out(self, py: PythonBridge, n_columns: int) -> Any:
        names = self._names_out.get(n_columns)
        if names is None:
            fields = {"id": self.id, "method": "get_feature_names_out", "args": {}}
            names = await py.request("call", fields)
            self._names_out[n_columns] = names
        return names

    def _attribute(self, name: str) -> Coroutine[Any, Any, Any]:
        """An awaitable of the fitted attribute ``name``, after the lifecycle checks.

        The checks run now, at attribute access, before anything is awaited.
        """
        py = self._bridge(f"accessing {name}")
        return self._fetch(py, name)

    async def _fetch(self, py: PythonBridge, name: str) -> Any:
        return await py.request("get", {"id": self.id, "attr": name}, stacklevel=2)

    async def get_attribute(
        self, name: str, *, out: DataRef | None = None, timeout: Timeout = DEFAULT
    ) -> Any:
        """Read a fitted attribute by name; with ``out``, write a per-sample one to a file.

        ``await model.get_attribute("labels_", out=DataRef("labels.npy"))`` has
        the server write ``labels_`` to its data directory and returns the
        reference (SPEC 5.6).
        """
        py = self._bridge(f"accessing {name}")
        fields: dict[str, Any] = {"id": self.id, "attr": name}
        if out is not None:
            fields["out"] = out
        return await py.request("get", fields, timeout=timeout, stacklevel=2)
