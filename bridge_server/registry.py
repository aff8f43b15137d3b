"""Instances by id, and the queue of work waiting on each.

Calls to one instance run one at a time, in arrival order: each
:class:`Instance` keeps the :class:`Job` that runs now and a FIFO of those
waiting. All of this state belongs to the server's loop thread; a worker thread
only touches the estimator object of the one job it runs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge_server.core import EstimatorSchema, MethodSpec

    from .datarefs import OutputSet
    from .sessions import Session


@dataclass(eq=False)
class Instance:
    """One estimator object owned by a session.

    Attributes
    ----------
    id : str
        The client's id for it (unique within the session).
    schema : EstimatorSchema
        Its class's declaration: the only methods and attributes reachable.
    obj : object
        The core estimator.
    queue : deque of Job
        Work waiting for the running job to finish, oldest first.
    running : Job or None
        The job now executing on it.
    disposed : bool
        Set once the instance is dropped; its queued jobs are gone and the
        running one, if any, has been told to cancel.
    """

    id: str
    schema: EstimatorSchema
    obj: Any
    queue: deque[Job] = field(default_factory=deque)
    running: Job | None = None
    disposed: bool = False

    def idle(self) -> bool:
        """Whether a new job may start at once (nothing running, nothing waiting)."""
        return self.running is None and not self.queue


@dataclass(eq=False)
class Job:
    """One ``call`` or ``get`` request on an instance, from arrival to reply.

    Attributes
    ----------
    session, conn, rid
        Who asked: the session, the connection (ZeroMQ routing identity) the
        reply goes to, and the request id.
    op : {"call", "get"}
        The operation.
    instance : Instance
        The target.
    name : str
        The method (``call``) or attribute (``get``) name, already allowlisted.
    args : dict
        Keyword arguments (``call``), names already checked.
    spec : MethodSpec or None
        The method's declaration (``call``).
    outputs : OutputSet or None
        Where per-sample outputs go, when the request had an ``out`` map.
    inline : bool
        Cheap enough to run on the loop thread (no hand-off to a worker).
    cancel_event : threading.Event
        Set to ask the running call to stop at its next step.
    dropped : int
        Events of this job lost to back-pressure (reported in the reply).
    """

    session: Session
    conn: bytes
    rid: int
    op: str
    instance: Instance
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    spec: MethodSpec | None = None
    outputs: OutputSet | None = None
    inline: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event)
    dropped: int = 0
    #: Events a worker dropped before they reached the loop (the loop was far behind).
    dropped_early: int = 0
    received: float = field(default_factory=time.monotonic)
    started: float | None = None
    #: Set once a reply went out (a cancel while queued, or shutdown's last word):
    #: a worker's late result is then discarded.
    answered: bool = False

    @property
    def key(self) -> tuple[bytes, int]:
        """The ``(connection, rid)`` pair ``cancel`` finds it by."""
        return (self.conn, self.rid)

    def describe(self) -> str:
        """``id.method`` or ``id.attr`` for log lines."""
        return f"{self.instance.id}.{self.name}"
