"""skbridge's asynchronous Python client: scikit-learn-ts's API, spoken over ZeroMQ.

Quick start::

    import asyncio
    from client_py import MiniBatchKMeans, create_python_bridge

    async def main() -> None:
        py = await create_python_bridge()          # starts a private server
        model = MiniBatchKMeans({"n_clusters": 2, "random_state": 0})
        await model.init(py)
        labels = await model.fit_predict({"X": [[1, 2], [1, 4], [10, 2], [10, 4]]})
        centers = await model.cluster_centers_
        await model.dispose()
        await py.disconnect()

    asyncio.run(main())

This package knows only :mod:`protocol`; it never imports the server.
"""

from protocol import DataRef, Limits, Table

from .bridge import DEFAULT, ProgressCallback, PythonBridge, create_python_bridge
from .errors import (
    AttributeNotAllowed,
    AuthenticationFailed,
    BridgeConnectionError,
    BridgeError,
    CallCancelled,
    CallTimeout,
    ConvergenceWarning,
    DataConversionWarning,
    DataRefError,
    DTypeNotAllowed,
    IncompatibleServer,
    InstanceExists,
    InvalidArguments,
    InvalidParameterError,
    LifecycleError,
    LimitExceeded,
    MalformedMessage,
    MethodNotAllowed,
    NotFittedError,
    RemoteError,
    RemoteLimitExceeded,
    ServerShuttingDown,
    ShapeMismatch,
    UnknownEstimator,
    UnknownInstance,
    UnknownOperation,
    UnsupportedVersion,
)
from .estimator import MISSING, Estimator, Missing
from .launcher import LaunchError, ServerProcess, launch_server
from .minibatch_kmeans import MiniBatchKMeans, MiniBatchKMeansOptions

__all__ = [
    "DEFAULT",
    "MISSING",
    "AttributeNotAllowed",
    "AuthenticationFailed",
    "BridgeConnectionError",
    "BridgeError",
    "CallCancelled",
    "CallTimeout",
    "ConvergenceWarning",
    "DTypeNotAllowed",
    "DataConversionWarning",
    "DataRef",
    "DataRefError",
    "Estimator",
    "IncompatibleServer",
    "InstanceExists",
    "InvalidArguments",
    "InvalidParameterError",
    "LaunchError",
    "LifecycleError",
    "LimitExceeded",
    "Limits",
    "MalformedMessage",
    "MethodNotAllowed",
    "MiniBatchKMeans",
    "MiniBatchKMeansOptions",
    "Missing",
    "NotFittedError",
    "ProgressCallback",
    "PythonBridge",
    "RemoteError",
    "RemoteLimitExceeded",
    "ServerProcess",
    "ServerShuttingDown",
    "ShapeMismatch",
    "Table",
    "UnknownEstimator",
    "UnknownInstance",
    "UnknownOperation",
    "UnsupportedVersion",
    "create_python_bridge",
    "launch_server",
]
