"""The ZeroMQ server: one loop thread owns the ROUTER socket; a thread pool computes.

Threading model
---------------
* The **loop thread** (the main thread, in :func:`run`) is the only one that
  touches the ROUTER socket, the session table and the per-instance queues. It
  answers cheap operations inline (``hello``, ``ping``, ``describe``,
  ``configure``, ``init``, ``dispose``, ``cancel``, ``bye``, a ``get`` on an
  idle instance, and argument-free calls such as ``get_params``), so they cost
  one decode and one encode and never a thread hand-off.
* **Workers** (a :class:`~concurrent.futures.ThreadPoolExecutor`) run calls
  that take data. A worker runs its job inside the job's own
  :class:`~bridge_server.core.CallContext`, so the core's verbose lines,
  warnings and progress reach that job's caller only.
* Workers never touch the socket: they append ``("ev", job, name, data)`` and
  ``("done", job, ok, value)`` items to :attr:`Server._outbox` (a deque, safe
  across threads) and wake the loop through a pipe the poller watches. The
  loop encodes and sends. An event is dropped by the worker when the loop is
  far behind or the peer's replies already wait, and by the loop when the
  peer's pipe is full; both counts (the worker's under a lock: a call's helper
  threads post too) make the reply's ``dropped``, which is exact. When the
  outbox is long, finished calls are answered first (each after its own
  earlier events), and other calls' events get a bounded time per pass.

The server process runs with a 0.5 ms GIL switch interval
(:data:`GIL_SWITCH_INTERVAL_S`), and 0.1 ms while a call has run for 0.2 s
(:data:`GIL_SWITCH_INTERVAL_LONG_CALL_S`), so a call that keeps the GIL busy
cannot hold the loop thread and other workers up for long.

Replies are never dropped: the socket is ``ROUTER_MANDATORY`` and sends are
non-blocking; a reply that meets a full pipe waits in a per-peer backlog and is
retried, and a peer that is gone (``EHOSTUNREACH``) is logged and forgotten.
Events meeting back-pressure are dropped and counted.
"""

from __future__ import annotations

import errno
import faulthandler
import hmac
import logging
import os
import secrets
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack
import numpy as np
import zmq

from bridge_server.core import (
    CallCancelled,
    CallContext,
    call_context,
    route_warnings_to_callers,
)
from protocol import (
    SUPPORTED_VERSIONS,
    AuthenticationFailed,
    DataRef,
    LimitExceeded,
    MalformedMessage,
    ProtocolError,
    UnsupportedVersion,
    builtin_bases,
    decode,
    encode,
    error_reply,
    error_to_wire,
    event,
    ok_reply,
    request_id,
    validate_request,
)

from . import dispatch
from .config import ServerConfig
from .datarefs import DataDir, OutputSet
from .errors import (
    InstanceExists,
    InvalidArguments,
    ServerError,
    ServerShuttingDown,
    UnknownInstance,
)
from .registry import Instance, Job
from .sessions import DEFAULT_SETTINGS, Session, SessionTable

log = logging.getLogger("bridge_server")

#: Messages taken from the socket per poll before the outbox gets a turn.
_RECV_BATCH = 256
#: Minimum seconds between two progress events of one call (the last always goes).
_PROGRESS_INTERVAL = 0.05
#: Events waiting in the outbox beyond which workers drop new ones at the source
#: (a reply queued behind them waits for at most that many sends).
_OUTBOX_EVENT_CAP = 10_000
#: Retry period for replies held back by a full peer pipe.
_BACKLOG_RETRY_S = 0.005
#: Outbox items beyond which a pass answers finished calls first (each after
#: its own earlier events), then sends other calls' events for at most
#: :data:`_EVENT_BUDGET_S` before the loop reads requests again.
_OUTBOX_SHORT = 64
#: Seconds of other calls' events one outbox pass sends under back-pressure.
_EVENT_BUDGET_S = 0.01
#: Replies a connection may have waiting beyond max_inflight_per_session before the
#: server decides it does not read (room for cancels and pings of a fair client).
_BACKLOG_SLACK = 64

#: The server process's GIL switch interval, in seconds (CPython's default is
#: 0.005). A call that keeps the GIL busy with short NumPy operations (a fit
#: with a tiny batch) hands it over only at forced switches, and the loop thread
#: or another worker needs it hundreds of times per request (every socket call
#: and every BLAS product gives it away and then waits up to an interval to
#: get it back): at 5 ms other clients waited seconds. A thread alone is never
#: interrupted by it.
GIL_SWITCH_INTERVAL_S = 0.0005
#: The interval while a call has run for :data:`_LONG_CALL_S` or more. With one
#: endless verbose fit of 64-row batches, 0.5 ms still let other clients'
#: requests wait over a second (p99) and 0.1 ms kept them under 0.3 s; but
#: among many short calls 0.1 ms cost a quarter of the throughput (each forced
#: switch wakes another thread, dear on a VM), so it applies only while
#: someone holds a worker for long.
GIL_SWITCH_INTERVAL_LONG_CALL_S = 0.0001
#: Seconds a call must have run for the shorter switch interval.
_LONG_CALL_S = 0.2

#: Seconds a call cancelled at shutdown has to stop before it is answered for.
_CANCEL_WAIT_S = 3.0
#: Socket linger at close: time to deliver the last replies.
_LINGER_MS = 2000

#: Operations still served while stopping.
_SERVED_WHILE_STOPPING = frozenset({"cancel", "bye"})

_PENDING = object()  # a handler's "the reply comes later" marker

# pyzmq's constants are enum members: every ``flags | SNDMORE`` or ``events & POLLIN``
# with them goes through Python-level enum arithmetic, several per message. The
# loop uses plain ints.
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_SNDMORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class _Progress:
    """Throttles one call's progress events; the final one always goes out."""

    __slots__ = ("emit", "last", "pending")

    def __init__(self, emit: Callable[[str, dict[str, Any]], None]) -> None:
        self.emit = emit
        self.last = 0.0
        self.pending: dict[str, Any] | None = None

    def __call__(self, done: int, total: int, phase: str) -> None:
        data = {"done": int(done), "total": int(total), "phase": str(phase)}
        now = time.monotonic()
        if (total > 0 and done >= total) or now - self.last >= _PROGRESS_INTERVAL:
            self.last = now
            self.pending = None
            self.emit("progress", data)
        else:
            self.pending = data

    def flush(self) -> None:
        if self.pending is not None:
            data, self.pending = self.pending, None
            self.emit("progress", data)


class Server:
    """One bridge server: sessions, instances, a socket loop and a thread pool.

    Parameters
    ----------
    config : ServerConfig
        Checked configuration.
    estimators : mapping of str to type, optional
        Classes ``init`` may instantiate; the core's ``ESTIMATORS`` by default.
    context : zmq.Context, optional
        The ZeroMQ context to use (an embedding process may share its own, for
        ``inproc://`` endpoints); a private one by default.
    manage_gil : bool
        Set the process's GIL switch interval while serving
        (:data:`GIL_SWITCH_INTERVAL_S`, or :data:`GIL_SWITCH_INTERVAL_LONG_CALL_S`
        while a call has run long), and restore it when the loop ends. For a
        process the server owns (:func:`run` passes True); an embedding process
        keeps its own setting. The interval is process-wide: at most one
        serving server per process should manage it.
    """

    def __init__(
        self,
        config: ServerConfig,
        estimators: Mapping[str, type] | None = None,
        context: zmq.Context | None = None,
        *,
        manage_gil: bool = False,
    ) -> None:
        if estimators is None:
            from bridge_server.core import ESTIMATORS

            estimators = ESTIMATORS
        self.config = config
        self.limits = config.limits
        self.estimators = dict(estimators)
        self.epoch = secrets.token_hex(8)
        self.data = DataDir(config.data_dir)
        self.sessions = SessionTable(config.lease_s)
        self.endpoint = ""
        self._token = config.token.encode()
        self._describe = dispatch.describe(self.estimators)
        self._own_context = context is None
        self._zctx = zmq.Context() if context is None else context
        self._router = self._zctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.LINGER, _LINGER_MS)
        # Last guard under the protocol's own checks: a frame this big is never
        # read into memory (the peer is disconnected instead).
        guard = max(self.limits.max_array_bytes, self.limits.max_header_bytes) + (1 << 20)
        self._router.setsockopt(zmq.MAXMSGSIZE, min(guard, 2**63 - 1))
        #: The Z85 public key clients need when the server encrypts with CURVE.
        self.curve_public_key: str | None = None
        if config.curve_secret_key is not None:
            # No ZAP handler: any client key may connect; the token in hello still
            # decides who gets a session. CURVE adds encryption and server identity.
            self._router.curve_server = True
            self._router.curve_secretkey = config.curve_secret_key
            self.curve_public_key = zmq.curve_public(config.curve_secret_key).decode("ascii")
        self._pool = ThreadPoolExecutor(config.workers, thread_name_prefix="skbridge-worker")
        self._outbox: deque[tuple[Any, ...]] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False
        self._backlog: dict[bytes, deque[list[Any]]] = {}
        # A fair client has at most max_inflight_per_session requests unanswered, so
        # at most that many replies can wait for it; one that floods requests and
        # never reads would make the backlog grow without bound. Past the cap its
        # replies are discarded and its messages ignored until it is quiet for a lease.
        self._backlog_cap = self.limits.max_inflight_per_session + _BACKLOG_SLACK
        self._overrun: dict[bytes, float] = {}
        #: Outbox items a long pass holds out of the deque (workers' cap counts them).
        self._outbox_held = 0
        #: Guards Job.dropped_early: a call's helper threads post its events too.
        self._drop_lock = threading.Lock()
        #: Guards the wake-up pipe's write end against its closing (re-entrant:
        #: request_stop may run in a signal handler on the loop thread).
        self._wake_lock = threading.RLock()
        self._jobs: set[Job] = set()
        #: Jobs a worker thread is executing, and since when (monotonic seconds):
        #: written by workers, read by the loop (each operation atomic under the GIL).
        self._executing: dict[Job, float] = {}
        self._manage_gil = manage_gil
        self._switch_interval = 0.0  # what this server last set (0: nothing yet)
        self._switch_interval_before = sys.getswitchinterval()
        #: When the oldest executing call turns long (monotonic), if it has not yet.
        self._gil_recheck: float | None = None
        self._loop_ident = 0
        self._stop_reason: str | None = None
        self._stopping = False
        self._grace_deadline = 0.0
        self._cancel_sent = False
        self._cancel_deadline = 0.0
        self._abandoned = False
        self._force_grace: float | None = None
        self._parent_is_ppid = False
        self._housekeeping_s = max(0.05, min(1.0, config.lease_s / 4))
        self._log_requests = log.isEnabledFor(logging.DEBUG)
        self._ops: dict[str, Callable[[bytes, int, Session, dict[str, Any]], Any]] = {
            "describe": self._op_describe,
            "configure": self._op_configure,
            "init": self._op_init,
            "call": self._op_call,
            "get": self._op_get,
            "dispose": self._op_dispose,
            "cancel": self._op_cancel,
            "ping": self._op_ping,
            "bye": self._op_bye,
        }

    # ------------------------------------------------------------------ setup

    def bind(self) -> str:
        """Bind the socket; returns the actual endpoint (with the real port for port 0)."""
        endpoint = self.config.bind
        if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
            endpoint = endpoint[:-2] + ":*"
        if endpoint.startswith("tcp://["):
            self._router.setsockopt(zmq.IPV6, 1)
        self._router.bind(endpoint)
        self.endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.config.parent_pid is not None:
            self._parent_is_ppid = os.getppid() == self.config.parent_pid
        return self.endpoint

    def request_stop(self, reason: str, grace: float | None = None) -> None:
        """Ask the loop to shut down (safe from a signal handler or another thread)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if grace is not None:
            self._force_grace = grace
        self._wake()

    # ------------------------------------------------------------------- loop

    def serve_forever(self) -> None:
        """Run the loop until a stop is requested and the work in flight is done."""
        self._loop_ident = threading.get_ident()
        self._switch_interval_before = sys.getswitchinterval()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_housekeeping = time.monotonic() + self._housekeeping_s
        try:
            while True:
                if self._manage_gil:
                    self._tune_switch_interval(time.monotonic())
                ready = dict(poller.poll(self._poll_timeout_ms(next_housekeeping)))
                if self._wake_r in ready:
                    self._drain_wake()
                if ready.get(self._router):
                    self._receive_batch()
                self._process_outbox()
                if self._backlog:
                    self._retry_backlog()
                now = time.monotonic()
                if now >= next_housekeeping:
                    self._housekeeping(now)
                    next_housekeeping = now + self._housekeeping_s
                if self._stop_reason is not None and not self._stopping:
                    self._begin_stop(now)
                if self._stopping and self._stop_step(time.monotonic()):
                    break
        finally:
            if self._switch_interval:  # this server changed it: the process's own again
                sys.setswitchinterval(self._switch_interval_before)
                self._switch_interval = 0.0
        self._close()

    def _poll_timeout_ms(self, next_housekeeping: float) -> int:
        now = time.monotonic()
        deadline = next_housekeeping
        if self._backlog:
            deadline = min(deadline, now + _BACKLOG_RETRY_S)
        if self._stopping:
            deadline = min(deadline, now + 0.02)
        if self._gil_recheck is not None:
            deadline = min(deadline, self._gil_recheck)
        if self._outbox:
            return 0
        return max(0, int((deadline - now) * 1000) + 1)

    def _tune_switch_interval(self, now: float) -> None:
        """The short switch interval while some call has run long, the usual one otherwise."""
        starts = self._executing.copy()  # one atomic copy; workers add and remove
        oldest = min(starts.values()) if starts else None
        long_call = oldest is not None and now - oldest >= _LONG_CALL_S
        self._gil_recheck = oldest + _LONG_CALL_S if oldest is not None and not long_call else None
        wanted = GIL_SWITCH_INTERVAL_LONG_CALL_S if long_call else GIL_SWITCH_INTERVAL_S
        if wanted != self._switch_interval:
            sys.setswitchinterval(wanted)
            self._switch_interval = wanted

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            with self._wake_lock:
                if self._wake_w < 0:
                    return  # stopped: a late stop request, or a call that ignored its cancel
                try:
                    os.write(self._wake_w, b"x")
                except BlockingIOError:
                    pass  # the pipe is full of wake-ups already

    def _drain_wake(self) -> None:
        # Empty the pipe first, then clear the flag, and only then (the caller)
        # drain the outbox. Clearing first loses wake-ups: a worker could write
        # its byte between the two steps, the read would swallow it, and the
        # flag would stay set, so no worker would ever write again and every
        # reply would wait for the housekeeping timeout. In this order a worker
        # that saw the flag set has its item drained by the outbox pass that
        # follows, and one that comes later writes a fresh byte.
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        self._wake_pending = False

    def _receive_batch(self) -> None:
        router = self._router
        for _ in range(_RECV_BATCH):
            # Ask ZMQ_EVENTS rather than end each batch on a failed recv: raising
            # zmq.Again costs more than the whole small request it follows.
            if not router.get(_EVENTS) & _POLLIN:
                return
            try:
                frames = [router.recv(_NOBLOCK, copy=False)]
                while frames[-1].more:
                    frames.append(router.recv(_NOBLOCK, copy=False))
            except zmq.Again:
                return
            try:
                self._on_message(frames)
            except Exception:  # never let one message take the server down
                log.exception("internal error while handling a message")

    # --------------------------------------------------------------- requests

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        conn = frames[0].bytes
        if self._overrun and conn in self._overrun:
            self._overrun[conn] = time.monotonic() + self.config.lease_s
            return
        msg = frames[1:]
        t0 = time.perf_counter()
        rid = 0
        op = "?"
        header: dict[str, Any] | None = None
        if not msg:
            self._send_error(conn, 0, MalformedMessage("a message needs a header frame"))
            return
        try:
            try:
                header = decode(msg, self.limits)
            except ProtocolError:
                rid = self._salvage_rid(msg)
                raise
            rid = request_id(header)
            is_hello = isinstance(header.get("op"), str) and header["op"] == "hello"
            if is_hello and not isinstance(header.get("token"), str):
                # SPEC 5.1: a missing token is an authentication failure, not a format error.
                self.sessions.forget_conn(conn)
                raise AuthenticationFailed("authentication failed: hello carries no token")
            op = validate_request(header)
            result = self._handle(conn, rid, op, header)
        except Exception as exc:
            self._log_error(conn, rid, op, exc)
            self._send_error(conn, rid, exc)
            self._log_request(conn, rid, op, header, t0)
            return
        if result is not _PENDING:
            self._send_reply(conn, ok_reply(rid, self.epoch, result))
        self._log_request(conn, rid, op, header, t0)

    def _salvage_rid(self, msg: list[Any]) -> int:
        """The ``rid`` of a message the codec refused, when its header can still be read."""
        try:
            head = memoryview(msg[0])
            if head.nbytes > self.limits.max_header_bytes:
                return 0
            header = msgpack.unpackb(head, raw=False, ext_hook=lambda code, data: None)
        except Exception:
            return 0
        return request_id(header) if isinstance(header, dict) else 0

    def _handle(self, conn: bytes, rid: int, op: str, header: dict[str, Any]) -> Any:
        if op == "hello":
            return self._op_hello(conn, header)
        session = self.sessions.for_conn(conn)
        if session is None:
            raise AuthenticationFailed(
                "this connection has not authenticated: send hello with the server's token first"
            )
        session.touch(time.monotonic())
        session.requests += 1
        if self._stopping and op not in _SERVED_WHILE_STOPPING:
            raise ServerShuttingDown("the server is shutting down and takes no new work")
        return self._ops[op](conn, rid, session, header)

    def _op_hello(self, conn: bytes, header: dict[str, Any]) -> dict[str, Any]:
        token = header["token"].encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(token, self._token):
            # A failed re-authentication leaves the connection unauthenticated.
            self.sessions.forget_conn(conn)
            raise AuthenticationFailed("authentication failed: wrong token")
        common = [v for v in header["versions"] if v in SUPPORTED_VERSIONS]
        if not common:
            raise UnsupportedVersion(
                f"no common protocol version: client speaks {header['versions']}, "
                f"server speaks {list(SUPPORTED_VERSIONS)}"
            )
        if self._stopping:
            raise ServerShuttingDown("the server is shutting down and takes no new sessions")
        wanted = header.get("session")
        session = self.sessions.find(wanted) if isinstance(wanted, str) else None
        resumed = session is not None
        if session is not None:
            self.sessions.bind(conn, session)
        else:
            if len(self.sessions) >= self.limits.max_sessions:
                raise LimitExceeded(
                    f"the server has {len(self.sessions)} sessions, "
                    f"max_sessions={self.limits.max_sessions}"
                )
            session = self.sessions.open(conn)
            log.info("session %s opened", session.label)
        session.touch(time.monotonic())
        session.requests += 1
        return {
            "version": max(common),
            "server": dispatch.server_info(),
            "epoch": self.epoch,
            "session": session.token,
            "resumed": resumed,
            "limits": self.limits.to_wire(),
            "lease_s": float(self.config.lease_s),
            "heartbeat_s": float(self.config.heartbeat_s),
            "settings": dict(session.settings),
        }

    def _op_describe(self, conn: bytes, rid: int, session: Session, h: dict[str, Any]) -> Any:
        return self._describe

    def _op_ping(self, conn: bytes, rid: int, session: Session, h: dict[str, Any]) -> Any:
        return {"time": time.time()}

    def _op_configure(self, conn: bytes, rid: int, session: Session, h: dict[str, Any]) -> Any:
        settings = h["settings"]
        for name, value in settings.items():
            if name not in DEFAULT_SETTINGS:
                raise InvalidArguments(
                    f"unknown setting {name!r}; known settings: {sorted(DEFAULT_SETTINGS)}"
                )
            if not isinstance(value, bool):
                raise InvalidArguments(f"setting {name!r} must be a boolean")
        session.settings.update(settings)
        return dict(session.settings)

    def _op_init(self, conn: bytes, rid: int, session: Session, h: dict[str, Any]) -> Any:
        cls = dispatch.estimator_class(self.estimators, h["cls"])
        iid = h["id"]
        if not 1 <= len(iid) <= 128:
            raise MalformedMessage("field 'id' must have 1 to 128 characters")
        if iid in session.instances:
            raise InstanceExists(f"an instance with id {iid!r} already exists in this session")
        if len(session.instances) >= self.limits.max_instances_per_session:
            raise LimitExceeded(
                f"this session has {len(session.instances)} instances, "
                f"max_instances_per_session={self.limits.max_instances_per_session}"
            )
        opts = h["opts"]
        dispatch.check_options(cls, opts)
        if any(isinstance(v, DataRef) for v in opts.values()):
            opts = self.data.resolve_args(opts)
        obj = cls(**opts)
        session.instances[iid] = Instance(iid, dispatch.schema_of(cls), obj)
        session.instances_created += 1
        return None

    def _instance(self, session: Session, iid: str) -> Instance:
        inst = session.instances.get(iid)
        if inst is None:
            raise UnknownInstance(f"no instance with id {iid!r} in this session")
        return inst

    def _op_call(self, conn: bytes, rid: int, session: Session, h: dict[str, Any]) -> Any:
        inst = self._instance(session, h["id"])
        spec = dispatch.method_spec(inst, h["method"])
        args = h["args"]
        dispatch.check_args(inst, spec, args)
        outputs = None
        if h.get("out"):
            out = dispatch.check_outputs(inst, spec, h["out"])
            outputs = OutputSet(self.data, out, dispatch.result_names(spec))
            outputs.check()
        inline = outputs is None and dispatch.is_cheap(spec, args)
        job = Job(session, conn, rid, "call", inst, spec.name, args, spec, outputs, inline)
        self._submit(job)
        return _PENDING

    def _op_get(self, conn: bytes, rid: int, session: Session, h: dict[str, Any]) -> Any:
        inst = self._instance(session, h["id"])
        attr = h["attr"]
        dispatch.check_attribute(inst, attr)
        ref = h.get("out")
        if ref is None and inst.idle():
            # The fast path: no queue, no job, no thread.
            return self._read_attribute(inst, attr)
        outputs = None
        if ref is not None:
            if not isinstance(ref, DataRef):
                raise InvalidArguments("field 'out' of get must be a data reference")
            if attr not in inst.schema.per_sample_attributes:
                raise InvalidArguments(f"{attr!r} is not a per-sample attribute")
            outputs = OutputSet(self.data, {"result": ref}, ())
            outputs.check()
        job = Job(session, conn, rid, "get", inst, attr, outputs=outputs, inline=ref is None)
        self._submit(job)
        return _PENDING

    def _op_dispose(self, conn: bytes, rid: int, session: Session, h: dict[str, Any]) -> Any:
        inst = self._instance(session, h["id"])
        self._dispose(session, inst)
        return None

    def _op_cancel(self, conn: bytes, rid: int, session: Session, h: dict[str, Any]) -> Any:
        job = session.jobs.get((conn, h["target"]))
        if job is None or job.answered:
            return {"found": False}
        if job.started is None:
            job.instance.queue.remove(job)
            self._answer_cancelled(job)
        else:
            job.cancel_event.set()
        return {"found": True}

    def _op_bye(self, conn: bytes, rid: int, session: Session, h: dict[str, Any]) -> Any:
        self._close_session(session, "bye")
        return None

    # ------------------------------------------------------------------- jobs

    def _submit(self, job: Job) -> None:
        session = job.session
        if job.key in session.jobs:
            raise MalformedMessage(f"request id {job.rid} is already in flight on this connection")
        if len(session.jobs) >= self.limits.max_inflight_per_session:
            raise LimitExceeded(
                f"this session has {len(session.jobs)} requests in flight, "
                f"max_inflight_per_session={self.limits.max_inflight_per_session}"
            )
        session.jobs[job.key] = job
        self._jobs.add(job)
        job.instance.queue.append(job)
        self._advance(job.instance)

    def _advance(self, inst: Instance) -> None:
        """Start the instance's next jobs: inline ones at once, up to the first threaded one."""
        while not inst.disposed and inst.running is None and inst.queue:
            job = inst.queue.popleft()
            if self._cancel_sent:
                self._answer_cancelled(job)
                continue
            inst.running = job
            job.started = time.monotonic()
            if job.inline:
                ok, value = self._execute(job)
                self._complete(job, ok, value)
            else:
                self._pool.submit(self._work, job)

    def _work(self, job: Job) -> None:
        """Worker-thread body: run the job, then hand the outcome to the loop."""
        ok: bool = False
        value: Any = None
        self._executing[job] = time.monotonic()
        try:
            ok, value = self._execute(job)
        except BaseException as exc:  # _execute catches Exception; be sure to answer anyway
            ok, value = False, exc
        finally:
            self._executing.pop(job, None)
            self._post(("done", job, ok, value))

    def _execute(self, job: Job) -> tuple[bool, Any]:
        """Run one job in its own call context; returns ``(ok, result or exception)``."""
        emit = self._emitter(job)
        progress = _Progress(emit)
        ctx = CallContext(
            on_verbose=lambda line: emit("verbose", {"line": str(line)}),
            on_warning=lambda message, category: emit(
                "warning",
                {
                    "category": getattr(category, "__name__", "UserWarning"),
                    "bases": builtin_bases(category) if isinstance(category, type) else [],
                    "message": str(message),
                },
            ),
            on_progress=progress,
            cancel_event=job.cancel_event,
            metadata_routing=bool(job.session.settings["enable_metadata_routing"]),
            allocate=job.outputs.allocate if job.outputs is not None else None,
            wrap_outputs=False,
        )
        try:
            with call_context(ctx):
                if job.op == "get":
                    value = self._read_attribute(job.instance, job.name, job.outputs)
                else:
                    value = self._run_call(job)
        except Exception as exc:
            progress.flush()
            if job.outputs is not None:
                try:
                    job.outputs.discard()
                except OSError as cleanup_error:
                    log.warning("cannot remove an output file: %s", cleanup_error)
            return False, exc
        progress.flush()
        return True, value

    def _run_call(self, job: Job) -> Any:
        inst = job.instance
        spec = job.spec
        assert spec is not None
        args = job.args
        if any(isinstance(v, DataRef) for v in args.values()):
            args = self.data.resolve_args(args)
        # The name comes from the schema (checked on arrival), never from the wire alone.
        method = getattr(inst.obj, spec.name)
        value = method(**args)
        if job.outputs is not None:
            # Only per-sample attribute names reach getattr (check_outputs vetted them).
            attributes = {
                name: getattr(inst.obj, name, None)
                for name in job.outputs.outputs
                if name in inst.schema.per_sample_attributes
            }
            value = job.outputs.finish(value, attributes)
        return dispatch.call_result(spec, value, inst)

    def _read_attribute(self, inst: Instance, attr: str, outputs: OutputSet | None = None) -> Any:
        value = getattr(inst.obj, attr)
        if outputs is not None:
            if not isinstance(value, np.ndarray):
                raise InvalidArguments(f"{attr!r} is not an array and cannot go to a file")
            return self.data.write_output(outputs.outputs["result"], value)
        ref = self.data.ref_for(value)
        if ref is not None:
            return ref
        return dispatch.detach(value)

    def _emitter(self, job: Job) -> Callable[[str, dict[str, Any]], None]:
        if job.inline:
            # Inline jobs run on the loop thread: send directly, in order.
            return lambda name, data: self._send_event(job, name, data)

        conn = job.conn

        def post(name: str, data: dict[str, Any]) -> None:
            # Dropped at the source when the loop is far behind, or when the
            # loop would drop it anyway. The loop's dicts are read from this
            # thread: a lookup is atomic under the GIL, and a stale answer only
            # moves the drop to the loop.
            far_behind = len(self._outbox) + self._outbox_held >= _OUTBOX_EVENT_CAP
            if far_behind or self._drops_events(conn):
                with self._drop_lock:
                    job.dropped_early += 1
                return
            self._post(("ev", job, name, data))

        return post

    def _post(self, item: tuple[Any, ...]) -> None:
        self._outbox.append(item)
        self._wake()

    def _process_outbox(self) -> None:
        """Send what workers posted, up to what was there when the pass began.

        Workers may post events faster than the loop sends them; draining
        until empty would then never end, and no request would be read. A
        short outbox goes in order. A long one means some call emits events
        faster than they go out: its finished calls are answered first (each
        after its own earlier events: per request, events stay in order and
        precede the reply), then other calls' events are sent for at most
        :data:`_EVENT_BUDGET_S`; the rest wait, in order, for the next pass.
        So a reply never waits behind thousands of another call's events.
        """
        outbox = self._outbox
        n = len(outbox)
        if n <= _OUTBOX_SHORT:
            for _ in range(n):
                self._handle_posted(outbox.popleft())
            return
        # Counted against the workers' cap from before the first pop: while the
        # deque drains, it alone would look short and let the cap be passed.
        self._outbox_held = n
        try:
            items = [outbox.popleft() for _ in range(n)]
            finished = {item[1] for item in items if item[0] == "done"}
            later = []
            for item in items:
                if item[1] in finished:
                    self._handle_posted(item)
                else:
                    later.append(item)
            self._outbox_held = len(later)
            deadline = time.monotonic() + _EVENT_BUDGET_S
            for i, item in enumerate(later):
                if i and time.monotonic() >= deadline:
                    # Ahead of whatever workers posted meanwhile (appended on the right).
                    outbox.extendleft(reversed(later[i:]))
                    return
                self._handle_posted(item)
        finally:
            self._outbox_held = 0

    def _handle_posted(self, item: tuple[Any, ...]) -> None:
        """Send one outbox item: an event of a running call, or a finished call's reply."""
        try:
            if item[0] == "ev":
                _, job, name, data = item
                if not job.answered:
                    self._send_event(job, name, data)
            else:
                _, job, ok, value = item
                self._complete(job, ok, value)
                self._advance(job.instance)
        except Exception:
            log.exception("internal error while sending a worker's message")

    def _complete(self, job: Job, ok: bool, value: Any) -> None:
        """A job has finished: free its instance, answer it (unless already answered)."""
        inst = job.instance
        if inst.running is job:
            inst.running = None
        self._forget(job)
        if job.answered:
            return
        job.answered = True
        dropped = job.dropped + job.dropped_early
        if ok:
            self._send_reply(job.conn, ok_reply(job.rid, self.epoch, value, dropped))
        else:
            if not isinstance(value, CallCancelled):
                self._log_error(job.conn, job.rid, f"{job.op} {job.describe()}", value)
            self._send_error(job.conn, job.rid, value, dropped)
        if self._log_requests:
            started = job.started or job.received
            log.debug(
                "%s rid=%d %s %s ok=%s queued=%.1fms ran=%.1fms",
                job.session.label,
                job.rid,
                job.op,
                job.describe(),
                ok,
                (started - job.received) * 1e3,
                (time.monotonic() - started) * 1e3,
            )

    def _forget(self, job: Job) -> None:
        self._jobs.discard(job)
        if job.session.jobs.get(job.key) is job:
            del job.session.jobs[job.key]

    def _answer_cancelled(self, job: Job, why: str = "The call was cancelled") -> None:
        """Answer a job with ``CallCancelled`` now (queued, or abandoned at shutdown)."""
        if job.answered:
            return
        job.answered = True
        self._forget(job)
        self._send_error(job.conn, job.rid, CallCancelled(why), job.dropped + job.dropped_early)

    def _dispose(self, session: Session, inst: Instance) -> None:
        inst.disposed = True
        session.instances.pop(inst.id, None)
        while inst.queue:
            self._answer_cancelled(inst.queue.popleft())
        if inst.running is not None:
            inst.running.cancel_event.set()

    def _close_session(self, session: Session, why: str) -> None:
        n_instances = len(session.instances)
        for inst in list(session.instances.values()):
            self._dispose(session, inst)
        self.sessions.remove(session)
        log.info(
            "session %s closed (%s): %d requests, %d instances created, %d live at close, %.1f s",
            session.label,
            why,
            session.requests,
            session.instances_created,
            n_instances,
            time.monotonic() - session.created,
        )

    # ---------------------------------------------------------------- sending

    def _send_reply(self, conn: bytes, header: dict[str, Any]) -> None:
        try:
            frames = encode(header)
        except Exception as exc:
            err = error_reply(header["rid"], self.epoch, error_to_wire(exc))
            if header.get("dropped"):
                err["dropped"] = header["dropped"]
            frames = encode(err)
        self._send_frames(conn, frames, None)

    def _send_error(self, conn: bytes, rid: int, exc: BaseException, dropped: int = 0) -> None:
        detail = None
        if self.config.debug and not isinstance(exc, (ServerError, ProtocolError)):
            detail = "".join(traceback.format_exception(exc))
        header = error_reply(rid, self.epoch, error_to_wire(exc, detail))
        if dropped:
            header["dropped"] = dropped
        self._send_frames(conn, encode(header), None)

    def _drops_events(self, conn: bytes) -> bool:
        """Whether events to ``conn`` are dropped unsent: its replies wait, or it does not read."""
        return conn in self._backlog or conn in self._overrun

    def _send_event(self, job: Job, name: str, data: dict[str, Any]) -> None:
        if self._drops_events(job.conn):  # drop before encoding
            job.dropped += 1
            return
        try:
            frames = encode(event(job.rid, self.epoch, name, data))
        except Exception:
            job.dropped += 1
            return
        self._send_frames(job.conn, frames, job)

    def _send_frames(self, conn: bytes, frames: list[Any], job: Job | None) -> None:
        """Send a reply (``job`` None: never dropped) or an event of ``job`` (may be dropped).

        Events reach here only for a connection with no backlog and no overrun
        (:meth:`_send_event` drops the others before encoding them).
        """
        backlog = self._backlog.get(conn)
        if backlog is not None:
            assert job is None
            if len(backlog) >= self._backlog_cap:
                self._overran(conn)
            else:
                backlog.append(frames)
            return
        if self._overrun and conn in self._overrun:
            return
        try:
            _send_routed(self._router, conn, frames)
        except zmq.Again:
            if job is None:
                self._backlog[conn] = deque([frames])
            else:
                job.dropped += 1
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self._peer_gone(conn)
            else:
                log.error("cannot send to a peer: %s", exc)

    def _retry_backlog(self) -> None:
        for conn in list(self._backlog):
            queue = self._backlog[conn]
            while queue:
                try:
                    _send_routed(self._router, conn, queue[0])
                except zmq.Again:
                    break
                except zmq.ZMQError as exc:
                    if exc.errno != errno.EHOSTUNREACH:
                        log.error("cannot send to a peer: %s", exc)
                    queue.clear()
                    self._peer_gone(conn)
                    break
                queue.popleft()
            if not queue:
                self._backlog.pop(conn, None)

    def _overran(self, conn: bytes) -> None:
        """A connection that floods requests without reading replies: stop serving it."""
        session = self.sessions.for_conn(conn)
        log.warning(
            "%s: a connection has %d replies waiting and does not read them; they are "
            "discarded and its requests ignored until it has been quiet for %.0f s",
            session.label if session else "-",
            len(self._backlog.get(conn, ())),
            self.config.lease_s,
        )
        self._backlog.pop(conn, None)
        self.sessions.forget_conn(conn)
        self._overrun[conn] = time.monotonic() + self.config.lease_s

    def _peer_gone(self, conn: bytes) -> None:
        log.info("a connection went away; its replies are discarded")
        self._backlog.pop(conn, None)
        self.sessions.forget_conn(conn)

    # ----------------------------------------------------------- housekeeping

    def _housekeeping(self, now: float) -> None:
        for session in self.sessions.expired(now):
            self._close_session(session, "lease expired")
        if self._overrun:
            for conn in [c for c, until in self._overrun.items() if until <= now]:
                del self._overrun[conn]
        if self.config.parent_pid is not None and self._stop_reason is None:
            if not self._parent_alive():
                log.warning("parent process %d is gone; stopping", self.config.parent_pid)
                self.request_stop("parent process exited", grace=0.0)

    def _parent_alive(self) -> bool:
        pid = self.config.parent_pid
        assert pid is not None
        if self._parent_is_ppid:
            return os.getppid() == pid
        return _pid_alive(pid)

    # --------------------------------------------------------------- shutdown

    def _begin_stop(self, now: float) -> None:
        self._stopping = True
        grace = self._force_grace if self._force_grace is not None else self.config.grace_s
        self._grace_deadline = now + grace
        log.info(
            "stopping (%s): %d calls in flight, %.1f s grace",
            self._stop_reason,
            len(self._jobs),
            grace,
        )

    def _stop_step(self, now: float) -> bool:
        """One step of the shutdown; True once nothing is left to wait for."""
        if self._force_grace is not None and not self._cancel_sent:
            self._grace_deadline = min(self._grace_deadline, now + self._force_grace)
        if not self._jobs:
            return True
        if not self._cancel_sent and now >= self._grace_deadline:
            self._cancel_sent = True
            self._cancel_deadline = now + _CANCEL_WAIT_S
            for job in list(self._jobs):
                if job.started is None:
                    job.instance.queue.remove(job)
                    self._answer_cancelled(
                        job, "The call was cancelled: the server is shutting down"
                    )
                else:
                    job.cancel_event.set()
        if self._cancel_sent and now >= self._cancel_deadline:
            for job in list(self._jobs):
                self._answer_cancelled(job, "The call was cancelled: the server is shutting down")
                self._abandoned = True
            return True
        return not self._jobs

    def _close(self) -> None:
        for session in self.sessions.all():
            self._close_session(session, "server stopped")
        deadline = time.monotonic() + 1.0
        while self._backlog and time.monotonic() < deadline:
            self._retry_backlog()
            time.sleep(_BACKLOG_RETRY_S)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._router.close(linger=_LINGER_MS)
        if self._own_context:
            self._zctx.term()
        # A late stop request, or the "done" of a call that ignored its cancel,
        # must not write to a closed (or reused) descriptor: _wake writes under
        # the same lock, and only while the descriptor is not marked closed.
        with self._wake_lock:
            wake_r, wake_w = self._wake_r, self._wake_w
            self._wake_r = self._wake_w = -1
            os.close(wake_r)
            os.close(wake_w)
        log.info("stopped (%s)", self._stop_reason)

    @property
    def abandoned_work(self) -> bool:
        """Whether calls were still running when the server stopped (their threads linger)."""
        return self._abandoned

    # ---------------------------------------------------------------- logging

    def _log_error(self, conn: bytes, rid: int, what: str, exc: BaseException) -> None:
        """One line per error reply, with its request id (the traceback at debug level)."""
        session = self.sessions.for_conn(conn)
        log.info(
            "%s rid=%d %s failed: %s: %s",
            session.label if session else "-",
            rid,
            what,
            type(exc).__name__,
            exc,
            exc_info=exc if self._log_requests and not isinstance(exc, ServerError) else None,
        )

    def _log_request(
        self, conn: bytes, rid: int, op: str, header: dict[str, Any] | None, t0: float
    ) -> None:
        if not self._log_requests:
            return
        session = self.sessions.for_conn(conn)
        what = ""
        if header is not None:
            what = " ".join(str(header[k]) for k in ("cls", "id", "method", "attr") if k in header)
        log.debug(
            "%s rid=%d %s %s %.3fms",
            session.label if session else "-",
            rid,
            op,
            what,
            (time.perf_counter() - t0) * 1e3,
        )


def _send_routed(router: zmq.Socket, conn: bytes, frames: list[Any]) -> None:
    """Send ``frames`` to peer ``conn`` without blocking (``zmq.Again`` if its pipe is full).

    ``send_multipart`` with int flags: the routing id is copied (a few bytes),
    the rest go zero-copy (pyzmq still copies those under its copy threshold).
    With ROUTER_MANDATORY a full pipe fails on the first frame, so a message
    never goes out in part.
    """
    router.send(conn, _NOBLOCK_SNDMORE)
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        router.send(frame, _NOBLOCK if i == last else _NOBLOCK_SNDMORE, copy=False)


# ---------------------------------------------------------------------- run


def _set_parent_death_signal(parent_pid: int) -> None:
    """On Linux, have the kernel send SIGTERM when the parent dies (belt and braces)."""
    if not sys.platform.startswith("linux") or os.getppid() != parent_pid:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return


def run(config: ServerConfig, estimators: Mapping[str, type] | None = None) -> int:
    """Start a server, print the ready line, serve until signalled; returns the exit code."""
    import json

    from .connfile import remove_connection_file, write_connection_file

    if config.parent_pid is not None:
        _set_parent_death_signal(config.parent_pid)
        if not _pid_alive(config.parent_pid):
            log.error("parent process %d is already gone", config.parent_pid)
            return 1
    route_warnings_to_callers()  # NumPy's warnings in a call reach its caller, not our stderr
    server = Server(config, estimators, manage_gil=True)  # bounds GIL waits: see the constants
    try:
        endpoint = server.bind()
    except zmq.ZMQError as exc:
        print(f"skbridge: cannot bind {config.bind}: {exc}", file=sys.stderr)
        return 1
    conn_file = None
    if config.token_generated:
        conn_file = write_connection_file(
            config.connection_file,
            endpoint,
            config.token,
            server.epoch,
            curve_public_key=server.curve_public_key,
        )
        print(f"skbridge: connection file (token inside): {conn_file}", file=sys.stderr, flush=True)

    def on_signal(signum: int, frame: Any) -> None:
        server.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGUSR1"):
        # `kill -USR1 PID` prints every thread's stack to stderr: what a stuck
        # server is doing, without stopping it.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    ready: dict[str, Any] = {"endpoint": endpoint, "epoch": server.epoch, "pid": os.getpid()}
    if server.curve_public_key is not None:
        ready["curve_public_key"] = server.curve_public_key
        if config.curve_generated:
            print(
                f"skbridge: CURVE public key (clients pass it as server_public_key): "
                f"{server.curve_public_key}",
                file=sys.stderr,
                flush=True,
            )
    sys.stdout.write("SKBRIDGE-READY " + json.dumps(ready) + "\n")
    sys.stdout.flush()
    log.info("serving on %s (epoch %s)", endpoint, server.epoch)
    try:
        server.serve_forever()
    finally:
        if conn_file is not None:
            remove_connection_file(conn_file)
    if server.abandoned_work:
        # Calls that ignored cancellation still hold worker threads; do not wait for them.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
