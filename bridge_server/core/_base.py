"""Estimator plumbing shared by core classes: parameters, repr, metadata requests, set_output.

This is the scikit-learn ``BaseEstimator`` surface without scikit-learn:
``get_params``/``set_params`` over the constructor's parameters, a repr that
lists the parameters changed from their defaults, the ``set_{method}_request``
bookkeeping of metadata routing (kept as plain dicts, since that is what
crosses the wire) and the ``set_output`` switch.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any, ClassVar, Final

from ._context import metadata_routing_enabled

#: Marks a ``set_*_request`` argument that was not given (leave the request as it is).
UNCHANGED: Final = object()

# scikit-learn's own spelling of "unchanged", accepted too so that values copied
# from a scikit-learn signature behave the same here.
_SKLEARN_UNCHANGED = "$UNCHANGED$"
_UNUSED = "$UNUSED$"
_WARN = "$WARN$"
_VALID_REQUEST_VALUES = [False, True, None, _UNUSED, _WARN]

#: Methods in the order scikit-learn serialises metadata requests.
_REQUEST_METHOD_ORDER = (
    "fit",
    "partial_fit",
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "score",
    "split",
    "transform",
    "inverse_transform",
)


def _request_is_valid(alias: object) -> bool:
    # List membership (==), as scikit-learn: 1 and 0 count as True and False.
    try:
        if alias in _VALID_REQUEST_VALUES:
            return True
    except (TypeError, ValueError):
        return False
    return isinstance(alias, str) and alias.isidentifier()


class BaseEstimator:
    """Parameters, repr, metadata requests and output configuration.

    Subclasses define their constructor (keyword parameters stored verbatim as
    attributes) and ``_metadata_methods``: for each method, the metadata it
    consumes (``{"fit": ("sample_weight",), ...}``).
    """

    _metadata_methods: ClassVar[dict[str, tuple[str, ...]]] = {}

    # ------------------------------------------------------------------ params
    @classmethod
    def _param_names(cls) -> list[str]:
        """Constructor parameter names, sorted (scikit-learn's ``get_params`` order)."""
        signature = inspect.signature(cls.__init__)
        return sorted(
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind != p.VAR_KEYWORD
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters and their current values.

        Parameters
        ----------
        deep : bool, default=True
            Also return ``<param>__<sub>`` entries of parameters that are
            themselves estimators.

        Returns
        -------
        dict
        """
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> BaseEstimator:
        """Set constructor parameters; unknown names raise scikit-learn's ValueError.

        Returns
        -------
        self
        """
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, delim, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {self}. "
                    f"Valid parameters are: {self._param_names()!r}."
                )
            if delim:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if name != "self"
        }
        changed = []
        for name in defaults:
            value = getattr(self, name, defaults[name])
            default = defaults[name]
            if repr(value) == repr(default):
                continue
            if (
                isinstance(value, float)
                and isinstance(default, float)
                and math.isnan(value)
                and math.isnan(default)
            ):
                continue
            changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    # -------------------------------------------------------- metadata routing
    def _metadata_requests(self) -> dict[str, dict[str, Any]]:
        """The current requests (a private copy), defaults being ``None`` for each metadata."""
        stored = self.__dict__.get("_metadata_request")
        if stored is not None:
            return copy.deepcopy(stored)
        return {method: dict.fromkeys(keys) for method, keys in self._metadata_methods.items()}

    def _set_request(self, method: str, **requests: Any) -> BaseEstimator:
        """Shared body of the ``set_{method}_request`` methods."""
        if not metadata_routing_enabled():
            raise RuntimeError(
                "This method is only available when metadata routing is enabled."
                " You can enable it using"
                " sklearn.set_config(enable_metadata_routing=True)."
            )
        keys = self._metadata_methods[method]
        unexpected = set(requests) - set(keys)
        if unexpected:
            raise TypeError(
                f"Unexpected args: {unexpected} in {method}. Accepted arguments are: {set(keys)}"
            )
        current = self._metadata_requests()
        method_requests = current.setdefault(method, {})
        for param, alias in requests.items():
            if alias is UNCHANGED or (isinstance(alias, str) and alias == _SKLEARN_UNCHANGED):
                continue
            if not _request_is_valid(alias):
                raise ValueError(
                    f"The alias you're setting for `{param}` should be either a "
                    "valid identifier or one of {None, True, False}, but given "
                    f"value is: `{alias}`"
                )
            if isinstance(alias, str) and alias == param:
                alias = True
            if isinstance(alias, str) and alias == _UNUSED:
                if param not in method_requests:
                    raise ValueError(
                        f"Trying to remove parameter {param} with UNUSED which doesn't exist."
                    )
                del method_requests[param]
            else:
                method_requests[param] = alias
        self._metadata_request = current
        return self

    def get_metadata_routing(self, routing: object = None) -> dict[str, dict[str, Any]]:
        """The metadata requests as a plain dict (scikit-learn's serialised ``MetadataRequest``).

        Parameters
        ----------
        routing : ignored
            Accepted because the scikit-learn-ts API passes it.

        Returns
        -------
        dict
            ``{method: {metadata: request}}`` for methods with at least one
            request, e.g. ``{"fit": {"sample_weight": None}, ...}``.
        """
        current = self._metadata_requests()
        return {m: dict(current[m]) for m in _REQUEST_METHOD_ORDER if current.get(m)}

    # ---------------------------------------------------------------- set_output
    def set_output(self, *, transform: str | None = None) -> BaseEstimator:
        """Choose the container of ``transform``/``fit_transform`` output.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None
            ``None`` leaves the configuration unchanged. The value is checked
            when ``transform`` runs, as in scikit-learn.

        Returns
        -------
        self
        """
        if transform is None:
            return self
        if "_output_config" not in self.__dict__:
            self._output_config: dict[str, str] = {}
        self._output_config["transform"] = transform
        return self
