"""The math of skbridge: NumPy estimators with scikit-learn 1.5.2 semantics.

Importable and usable in-process with no sockets::

    from bridge_server.core import MiniBatchKMeans
    km = MiniBatchKMeans(n_clusters=3, random_state=0).fit(X)

This package never imports anything network-related; the server reaches it
only through each class's :class:`~._schema.EstimatorSchema` (``ESTIMATORS``).
"""

from ._config import config_context, get_config, set_config
from ._context import (
    CallContext,
    allocate_output,
    call_context,
    check_cancelled,
    current_context,
    emit_verbose,
    metadata_routing_enabled,
    outputs_wrapped,
    report_progress,
    route_warnings_to_callers,
    warn,
)
from ._errors import (
    CallCancelled,
    ConvergenceWarning,
    DataConversionWarning,
    InvalidParameterError,
    NotFittedError,
)
from ._minibatch_kmeans import MiniBatchKMeans
from ._schema import EstimatorSchema, MethodSpec

#: Every estimator class the server may instantiate, by schema name.
ESTIMATORS: dict[str, type] = {MiniBatchKMeans._schema.name: MiniBatchKMeans}

__all__ = [
    "ESTIMATORS",
    "CallCancelled",
    "CallContext",
    "ConvergenceWarning",
    "DataConversionWarning",
    "EstimatorSchema",
    "InvalidParameterError",
    "MethodSpec",
    "MiniBatchKMeans",
    "NotFittedError",
    "allocate_output",
    "call_context",
    "check_cancelled",
    "config_context",
    "current_context",
    "emit_verbose",
    "get_config",
    "metadata_routing_enabled",
    "outputs_wrapped",
    "report_progress",
    "route_warnings_to_callers",
    "set_config",
    "warn",
]
