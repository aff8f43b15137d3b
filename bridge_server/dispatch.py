"""Schema-driven dispatch: what may be created, called and read, and how results travel.

Everything reachable is declared by a core class's ``_schema``
(:class:`~bridge_server.core.EstimatorSchema`). Names are looked up in the
schema first and only then on the object, so a dunder or any undeclared name
never reaches ``getattr``. There is no eval and no pickle anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from protocol import DataRef, Table

from . import __version__
from .errors import (
    AttributeNotAllowed,
    InvalidArguments,
    MethodNotAllowed,
    UnknownEstimator,
)

if TYPE_CHECKING:
    from bridge_server.core import EstimatorSchema, MethodSpec

    from .registry import Instance

SERVER_NAME = "bridge_server"

#: Allocation names (see ``core.allocate_output``) that stand for a method's result.
_RESULT_NAMES: dict[str, tuple[str, ...]] = {
    "predict": ("predict",),
    "transform": ("transform",),
    "fit_predict": ("labels_", "predict"),
    "fit_transform": ("transform",),
}


def schema_of(cls: type) -> EstimatorSchema:
    """The schema a core class declares."""
    return cls._schema  # type: ignore[attr-defined, no-any-return]


def server_info() -> dict[str, str]:
    """``{name, version}`` as sent in ``hello`` and ``describe``."""
    return {"name": SERVER_NAME, "version": __version__}


def describe(estimators: Mapping[str, type]) -> dict[str, Any]:
    """The ``describe`` result, generated from each class's own schema."""
    return {
        "protocol": 1,
        "server": server_info(),
        "estimators": {name: schema_of(cls).describe() for name, cls in estimators.items()},
    }


def estimator_class(estimators: Mapping[str, type], name: str) -> type:
    """The class ``init`` names; :class:`UnknownEstimator` if ``describe`` does not list it."""
    cls = estimators.get(name)
    if cls is None:
        raise UnknownEstimator(
            f"unknown estimator class {name!r}; this server offers {sorted(estimators)}"
        )
    return cls


def check_options(cls: type, opts: Mapping[str, Any]) -> None:
    """Refuse an option name the constructor does not have, as Python itself would.

    Option *values* are left to the estimator, which checks them when a method
    first needs them (scikit-learn's behaviour).
    """
    schema = schema_of(cls)
    for name in opts:
        if name not in schema.params:
            raise TypeError(f"{schema.name}.__init__() got an unexpected keyword argument {name!r}")


def method_spec(instance: Instance, name: str) -> MethodSpec:
    """The declaration of a callable method; :class:`MethodNotAllowed` for anything else."""
    spec = instance.schema.methods.get(name)
    if spec is None:
        raise MethodNotAllowed(
            f"{instance.schema.name!r} has no method {name!r} that can be called remotely; "
            f"allowed: {sorted(instance.schema.methods)}"
        )
    return spec


def check_args(instance: Instance, spec: MethodSpec, args: Mapping[str, Any]) -> None:
    """:class:`InvalidArguments` for a name the method does not take, or a missing required one."""
    where = f"{instance.schema.name}.{spec.name}()"
    for name in args:
        if name not in spec.args:
            raise InvalidArguments(f"{where} got an unexpected keyword argument {name!r}")
    missing = [name for name in spec.required if name not in args]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise InvalidArguments(f"{where} missing required argument(s): {names}")


def check_attribute(instance: Instance, name: str) -> None:
    """:class:`AttributeNotAllowed` unless ``name`` is a declared attribute."""
    if name not in instance.schema.attributes:
        raise AttributeNotAllowed(
            f"{instance.schema.name!r} has no attribute {name!r} that can be read remotely; "
            f"allowed: {list(instance.schema.attributes)}"
        )


def fits(spec: MethodSpec) -> bool:
    """Whether the method fits the estimator (so may write per-sample attributes)."""
    return spec.name.startswith("fit") or spec.name == "partial_fit"


def check_outputs(
    instance: Instance, spec: MethodSpec, out: Mapping[str, Any]
) -> dict[str, DataRef]:
    """The ``out`` map of a ``call``, checked: names this method can produce, refs as values."""
    outputs: dict[str, DataRef] = {}
    for name, ref in out.items():
        if not isinstance(ref, DataRef):
            raise InvalidArguments(f"out[{name!r}] must be a data reference")
        if name == "result":
            if not spec.per_sample_output:
                raise InvalidArguments(
                    f"{instance.schema.name}.{spec.name}() has no per-sample result to write "
                    "to a file"
                )
        elif name in instance.schema.per_sample_attributes:
            if not fits(spec):
                raise InvalidArguments(
                    f"{instance.schema.name}.{spec.name}() does not compute {name!r}"
                )
        else:
            raise InvalidArguments(
                f"out may name 'result' or a per-sample attribute "
                f"{list(instance.schema.per_sample_attributes)}, not {name!r}"
            )
        outputs[name] = ref
    return outputs


def result_names(spec: MethodSpec) -> tuple[str, ...]:
    """The core's allocation names that stand for this method's result."""
    return _RESULT_NAMES.get(spec.name, (spec.name,))


#: Argument values that carry data: a call given any of them runs on a worker.
#: Lists count too (a nested list is an array that came as msgpack, and a
#: score over one must not hold up the loop), at the price of a hand-off for
#: a list of feature names.
_DATA_VALUES: tuple[type, ...] = (np.ndarray, DataRef, Table, list)


def is_cheap(spec: MethodSpec, args: Mapping[str, Any]) -> bool:
    """Whether a call can run on the loop thread: no data, no long computation."""
    if spec.long_running or spec.per_sample_output:
        return False
    return not any(isinstance(v, _DATA_VALUES) for v in args.values())


def detach(value: Any) -> Any:
    """``value`` with every array copied: estimator state must not be sent while it may change.

    ZeroMQ sends buffers from its I/O thread after ``send`` returns; a later fit
    on the same instance could mutate a live array meanwhile.
    """
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True, order="C")
    if isinstance(value, dict):
        return {k: detach(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [detach(v) for v in value]
    return value


def _shares_state(arr: np.ndarray, obj: Any, names: tuple[str, ...]) -> bool:
    for name in names:
        state = getattr(obj, name, None)
        if isinstance(state, np.ndarray) and np.may_share_memory(arr, state):
            return True
    return False


def call_result(spec: MethodSpec, value: Any, instance: Instance) -> Any:
    """What a ``call`` replies, per the method's ``returns``.

    ``self`` becomes nil (the client returns its own object). A fresh array goes
    as it is (zero-copy); one that is the estimator's own state (``fit_predict``
    returning ``labels_``) is copied first.
    """
    if spec.returns == "self":
        return None
    if isinstance(value, DataRef):
        return value
    if isinstance(value, np.ndarray):
        if _shares_state(value, instance.obj, instance.schema.attributes):
            return np.array(value, copy=True, order="C")
        return value
    if isinstance(value, (dict, list, tuple)):
        return detach(value)
    return value
