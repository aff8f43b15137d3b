"""The connection to a bridge server: one DEALER socket, many calls in flight.

A :class:`PythonBridge` sends each request with a fresh ``rid`` and awaits a
future that one reader task resolves when the matching reply arrives; events
(progress, verbose lines, warnings) for a request are handled as they come.
Three things watch the server so that no call ever hangs on a dead one:

* a ZeroMQ socket monitor on the main socket (``EVENT_DISCONNECTED``: the
  server process died or the network dropped; ZMTP heartbeats turn a silent
  peer into a disconnect);
* the epoch in every reply (a change means the server restarted and forgot
  this session);
* a heartbeat thread with a DEALER of its own that joins the same session and
  pings every ``heartbeat_s``: it keeps the session's lease alive while user
  code blocks the event loop, and marks the bridge broken (thread-safely) when
  the server stops answering or its epoch changes.

Once broken, every pending and later call fails with
:class:`~client_py.errors.BridgeConnectionError`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Final

import zmq
from zmq.utils.monitor import parse_monitor_message

import protocol
from protocol import Limits

from .errors import (
    AuthenticationFailed,
    BridgeConnectionError,
    CallTimeout,
    IncompatibleServer,
    LimitExceeded,
    UnsupportedVersion,
    remote_error,
    warning_class,
)
from .launcher import ServerProcess, launch_server_async

__all__ = ["ProgressCallback", "PythonBridge", "create_python_bridge"]

logger = logging.getLogger("client_py")

#: ``progress(done, total, phase)``: ``total`` is 0 when unknown.
ProgressCallback = Callable[[int, int, str], None]

CLIENT_NAME: Final = "skbridge-client_py"
CLIENT_VERSION: Final = "0.1.0"
TOKEN_ENV: Final = "SKBRIDGE_TOKEN"


class _Default:
    """Marks "use the bridge's default" for a per-call timeout or progress callback."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = _Default()

# Replies come from the server this bridge chose to trust: decode them with no
# size limits beyond the protocol's structural checks.
_REPLY_LIMITS = Limits(
    max_header_bytes=1 << 62,
    max_frames=1 << 31,
    max_array_bytes=1 << 62,
    max_message_bytes=1 << 62,
)

_ZMTP_HEARTBEAT_IVL_MS = 2000

# pyzmq's constants are enum members: ``events & zmq.POLLIN``, and the
# ``SNDMORE | flags`` inside pyzmq's send_multipart, run Python-level enum
# arithmetic, a dozen times per call on the reply path. That path uses ints.
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_SNDMORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)


def _send_nowait(sock: zmq.Socket[Any], frames: list[Any]) -> None:
    """``send_multipart(frames, NOBLOCK, copy=False)`` with int flags.

    ``zmq.Again`` can only come from the first frame: once a DEALER takes a
    message's first part it takes the rest.
    """
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        sock.send(frame, _NOBLOCK if i == last else _NOBLOCK_SNDMORE, copy=False)


def _recv_nowait(sock: zmq.Socket[Any]) -> list[Any]:
    """``recv_multipart(NOBLOCK, copy=False)``, reading ``Frame.more`` rather than RCVMORE."""
    frames = [sock.recv(_NOBLOCK, copy=False)]
    while frames[-1].more:
        frames.append(sock.recv(_NOBLOCK, copy=False))
    return frames


class _Call:
    """One request in flight: the future its reply resolves, and its event sinks."""

    __slots__ = ("future", "progress", "warnings")

    def __init__(self, future: asyncio.Future[dict[str, Any]], progress: Any) -> None:
        self.future = future
        self.progress: ProgressCallback | None = progress
        self.warnings: list[dict[str, Any]] | None = None


class PythonBridge:
    """A connection to a bridge server (create one with :func:`create_python_bridge`).

    Attributes
    ----------
    endpoint : str
        The server's ZeroMQ endpoint.
    server : ServerProcess or None
        The embedded server this bridge started, if it started one.
    timeout : float or None
        Default per-call timeout in seconds (None: wait as long as it takes).
    progress : callable or None
        Default progress callback ``(done, total, phase)`` for every call.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        *,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        heartbeat: bool = True,
        ping_timeout: float = 10.0,
        server: ServerProcess | None = None,
        context: zmq.Context[Any] | None = None,
        server_public_key: str | bytes | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._curve = _curve_keys(server_public_key)
        self.server = server
        self.timeout = timeout
        self.progress = progress
        self._token = token
        self._heartbeat_enabled = heartbeat
        self._ping_timeout = ping_timeout
        self._ctx = context or zmq.Context.instance()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: zmq.Socket[Any] | None = None
        self._monitor: zmq.Socket[Any] | None = None
        self._watched: list[int] = []
        self._send_queue: collections.deque[tuple[list[Any], asyncio.Future[None]]] = (
            collections.deque()
        )
        self._drain_scheduled = False
        self._heartbeat: _Heartbeat | None = None
        self._rids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._inflight: asyncio.Semaphore | None = None
        self._broken: str | None = None
        self._closed = False
        self._epoch: str | None = None
        self._session: str | None = None
        self._limits = Limits()
        self._hello: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}

    # -- public state ---------------------------------------------------------------

    @property
    def epoch(self) -> str | None:
        """The server's epoch, fixed at connect; a change means the server restarted."""
        return self._epoch

    @property
    def session(self) -> str | None:
        """This bridge's session token (SPEC 6.1)."""
        return self._session

    @property
    def limits(self) -> Limits:
        """The limits the server advertised in ``hello``; checked before each send."""
        return self._limits

    @property
    def version(self) -> int | None:
        """The protocol version negotiated in ``hello``."""
        return self._hello.get("version")

    @property
    def server_info(self) -> dict[str, Any]:
        """The server's ``{name, version}`` from ``hello``."""
        return dict(self._hello.get("server") or {})

    @property
    def lease_s(self) -> float | None:
        """Seconds of silence after which the server closes this session."""
        return self._hello.get("lease_s")

    @property
    def heartbeat_s(self) -> float | None:
        """The ping interval the server asked for."""
        return self._hello.get("heartbeat_s")

    @property
    def connected(self) -> bool:
        """Whether calls can be made: connected, not broken, not disconnected."""
        return self._sock is not None and not self._closed and self._broken is None

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("broken" if self._broken else "closed")
        return f"<PythonBridge {self.endpoint} {state}>"

    async def __aenter__(self) -> PythonBridge:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    # -- operations -----------------------------------------------------------------

    async def ping(self, *, timeout: float | None | _Default = DEFAULT) -> float:
        """Renew the session's lease; returns the server's clock (Unix seconds)."""
        result = await self.request("ping", {}, timeout=timeout)
        return float(result["time"])

    async def describe(self, *, timeout: float | None | _Default = DEFAULT) -> dict[str, Any]:
        """The server's estimator schemas (SPEC 5.2)."""
        return await self.request("describe", {}, timeout=timeout)

    async def configure(
        self, settings: dict[str, Any] | None = None, /, **kwargs: Any
    ) -> dict[str, Any]:
        """Change session settings, e.g. ``configure(enable_metadata_routing=True)``.

        The session's equivalent of ``sklearn.set_config`` (SPEC 5.3); returns
        the settings after the change.
        """
        merged = {**(settings or {}), **kwargs}
        result = await self.request("configure", {"settings": merged})
        self.settings = dict(result or {})
        return self.settings

    async def disconnect(self) -> None:
        """Say ``bye``, close the sockets, and stop the embedded server if this bridge started it.

        Idempotent. Calls still pending fail with ``BridgeConnectionError``.
        """
        if self._closed:
            return
        if self._heartbeat is not None:
            # bye ends the session under the heartbeat's feet: a ping answered
            # after it is refused, which must not be reported as a break.
            self._heartbeat.request_stop()
        try:
            if self._sock is not None and self._broken is None:
                with contextlib.suppress(Exception):
                    await self.request("bye", {}, timeout=2.0, cancellable=False)
        finally:
            # Even when the caller is cancelled during bye: the heartbeat has
            # stopped, so a bridge left open would lose its session unnoticed.
            self._closed = True
            self._fail_pending("the bridge was disconnected")
            await self._close_sockets()
            server, self.server = self.server, None
            if server is not None:
                await asyncio.to_thread(server.stop, 5.0)

    # -- the request path -----------------------------------------------------------

    async def request(
        self,
        op: str,
        fields: dict[str, Any],
        *,
        timeout: float | None | _Default = DEFAULT,
        progress: ProgressCallback | None | _Default = DEFAULT,
        cancellable: bool = True,
        stacklevel: int = 2,
    ) -> Any:
        """Send one request and return its result (the low-level path every call takes).

        Parameters
        ----------
        op : str
            The operation (SPEC section 5).
        fields : dict
            Its fields, as wire values (arrays, :class:`~protocol.DataRef`, ...).
        timeout : float or None
            Seconds to wait; on expiry the request is cancelled on the server
            and :class:`CallTimeout` is raised. Default: the bridge's.
        progress : callable or None
            Receives this request's progress events. Default: the bridge's.
        cancellable : bool
            Whether a timeout or task cancellation sends ``cancel``.
        stacklevel : int
            Where re-emitted warnings point, counted from the caller of this method.

        Raises
        ------
        RemoteError
            The server's error, as a class that also derives from its built-in bases.
        BridgeConnectionError, CallTimeout, LimitExceeded
        """
        if self._broken is not None:
            raise BridgeConnectionError(self._broken)
        if self._closed or self._sock is None:
            raise BridgeConnectionError("the bridge is disconnected")
        rid = next(self._rids)
        header = {"v": 1, "op": op, "rid": rid, **fields}
        frames = protocol.encode(header)
        self._check_limits(frames)
        if timeout is DEFAULT:
            timeout = self.timeout
        call = _Call(
            self._loop.create_future(),  # type: ignore[union-attr]
            self.progress if progress is DEFAULT else progress,
        )
        # One deadline for the whole call: waiting for a free slot and for a queued
        # send counts, or a busy bridge would outwait any timeout.
        deadline = None if timeout is None else self._loop.time() + timeout  # type: ignore[union-attr, operator]
        semaphore = self._inflight
        if semaphore is not None:
            try:
                async with asyncio.timeout_at(deadline):
                    await semaphore.acquire()
            except TimeoutError:
                raise CallTimeout(
                    f"{op} found no free request slot within {timeout} s and was not sent"
                ) from None
            if self._broken is not None or self._closed:
                # It broke while this call waited for a slot: _fail_pending never saw it.
                semaphore.release()
                raise BridgeConnectionError(self._broken or "the bridge is disconnected")
        self._calls[rid] = call
        try:
            if deadline is None:
                queued = self._send(frames)
                if queued is not None:
                    await queued
                reply = await call.future
            else:
                async with asyncio.timeout_at(deadline):
                    queued = self._send(frames)
                    if queued is not None:
                        await queued
                    reply = await call.future
        except (asyncio.CancelledError, TimeoutError) as exc:
            answered = call.future.done() and not call.future.cancelled()
            if cancellable and not answered and self._broken is None and not self._closed:
                self._send_cancel(rid)
            if isinstance(exc, TimeoutError):
                raise CallTimeout(
                    f"{op} did not finish within {timeout} s and was cancelled"
                ) from None
            raise
        finally:
            del self._calls[rid]
            if semaphore is not None:
                semaphore.release()
        if call.warnings:
            for data in call.warnings:
                cls = warning_class(str(data.get("category")), data.get("bases") or ())
                warnings.warn(str(data.get("message", "")), cls, stacklevel=stacklevel + 1)
        if reply["k"] == "ok":
            return reply.get("result")
        error = remote_error(reply.get("error"))
        if isinstance(error, AuthenticationFailed) and op != "hello":
            # Past hello this means the server dropped the session (its lease ran out).
            self._break(
                f"the server at {self.endpoint} closed this bridge's session "
                f"(its lease ran out?): {error}"
            )
            raise BridgeConnectionError(self._broken or str(error)) from error
        raise error

    def _check_limits(self, frames: list[Any]) -> None:
        limits = self._limits
        if len(frames) > limits.max_frames:
            raise LimitExceeded(
                f"the message would have {len(frames)} frames, more than the server's "
                f"max_frames={limits.max_frames} (send fewer arrays per call)"
            )
        total = len(frames[0])
        if total > limits.max_header_bytes:
            raise LimitExceeded(
                f"the message header would be {total} bytes, more than the server's "
                f"max_header_bytes={limits.max_header_bytes}"
            )
        for buf in frames[1:]:
            nbytes = buf.nbytes
            if nbytes > limits.max_array_bytes:
                raise LimitExceeded(
                    f"an array of {nbytes} bytes exceeds the server's max_array_bytes="
                    f"{limits.max_array_bytes} (stream it with partial_fit, or use a DataRef)"
                )
            total += nbytes
        if total > limits.max_message_bytes:
            raise LimitExceeded(
                f"the message would be {total} bytes, more than the server's "
                f"max_message_bytes={limits.max_message_bytes}"
            )

    def _send_cancel(self, target: int) -> None:
        """Ask the server to stop working on ``target``; the answer is not awaited."""
        frames = protocol.encode(
            {"v": 1, "op": "cancel", "rid": next(self._rids), "target": target}
        )
        queued = self._send(frames)
        if queued is not None:
            queued.add_done_callback(_consume_exception)

    # -- reading ----------------------------------------------------------------------

    # The socket is a plain (not zmq.asyncio) DEALER driven by the loop's
    # add_reader on its ZMQ_FD: a reply wakes the loop once, is decoded and
    # resolves its call's future in the same callback, so a round trip costs
    # the caller no more loop iterations than a bare zmq.asyncio echo. ZMQ_FD is
    # edge-triggered and any send or recv may consume the edge, hence the
    # ZMQ_EVENTS checks after each operation.

    def _send(self, frames: list[Any]) -> asyncio.Future[None] | None:
        """Send ``frames`` now if the socket takes them (the usual case), else queue them.

        Returns None once sent, or a future that completes when a queued send
        went out (past the high-water mark).
        """
        sock = self._sock
        assert sock is not None and self._loop is not None
        if not self._send_queue:
            try:
                _send_nowait(sock, frames)
            except zmq.Again:
                pass
            else:
                self._check_readable()
                return None
        future: asyncio.Future[None] = self._loop.create_future()
        self._send_queue.append((frames, future))
        return future

    def _flush_sends(self) -> None:
        sock = self._sock
        assert sock is not None
        while self._send_queue:
            frames, future = self._send_queue[0]
            if future.done():  # its caller was cancelled meanwhile
                self._send_queue.popleft()
                continue
            try:
                _send_nowait(sock, frames)
            except zmq.Again:
                return
            self._send_queue.popleft()
            future.set_result(None)

    def _check_readable(self) -> None:
        """Schedule a drain if messages wait that no FD edge will announce."""
        sock = self._sock
        if self._drain_scheduled or sock is None:
            return
        if sock.get(_EVENTS) & _POLLIN:
            self._drain_scheduled = True
            self._loop.call_soon(self._on_readable)  # type: ignore[union-attr]

    def _on_readable(self) -> None:
        """Read every waiting message (and flush queued sends); runs on the event loop."""
        self._drain_scheduled = False
        sock = self._sock
        if sock is None or sock.closed:
            return
        try:
            while True:
                events = sock.get(_EVENTS)
                if events & _POLLOUT and self._send_queue:
                    self._flush_sends()
                if not events & _POLLIN:
                    return
                self._on_frames(_recv_nowait(sock))
        except zmq.Again:
            return
        except zmq.ZMQError as exc:
            if not self._closed:
                self._break(f"the connection to {self.endpoint} failed: {exc}")

    def _on_frames(self, frames: list[Any]) -> None:
        try:
            header = protocol.decode(frames, _REPLY_LIMITS)
            self._dispatch(header)
        except Exception as exc:  # a bad message must not stop the reading
            logger.warning("client_py: dropped a malformed message from the server: %s", exc)

    def _dispatch(self, header: dict[str, Any]) -> None:
        epoch = header.get("ep")
        if epoch != self._epoch:
            if self._epoch is None:
                self._epoch = epoch
            else:
                self._break(
                    f"the server at {self.endpoint} restarted (epoch {self._epoch} -> {epoch}); "
                    "its session and estimator instances are gone"
                )
                return
        call = self._calls.get(header.get("rid"))  # type: ignore[arg-type]
        if call is None:
            if header.get("rid") == 0 and header.get("k") == "err":
                logger.warning("client_py: server error for an unreadable request: %s", header)
            return  # a late answer to a cancelled or timed-out request
        kind = header.get("k")
        if kind == "ev":
            self._event(call, header.get("event"), header.get("data") or {})
        elif not call.future.done():
            call.future.set_result(header)

    def _event(self, call: _Call, name: Any, data: dict[str, Any]) -> None:
        if name == "progress":
            if call.progress is not None:
                try:
                    call.progress(
                        int(data.get("done", 0)),
                        int(data.get("total", 0)),
                        str(data.get("phase", "")),
                    )
                except Exception:
                    logger.exception("client_py: the progress callback raised")
        elif name == "verbose":
            print(data.get("line", ""))
        elif name == "warning":
            if call.warnings is None:
                call.warnings = []
            call.warnings.append(data)

    def _on_monitor_event(self) -> None:
        monitor = self._monitor
        if monitor is None or monitor.closed:
            return
        try:
            while monitor.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
                if event & _HANDSHAKE_FAILED and not self._closed:
                    self._break(self._handshake_failure())
                elif event == zmq.EVENT_DISCONNECTED and not self._closed:
                    self._break(f"lost the connection to the server at {self.endpoint}")
        except zmq.ZMQError:
            return

    def _handshake_failure(self) -> str:
        if self._curve is None:
            return (
                f"the ZeroMQ handshake with {self.endpoint} failed: the server may require "
                "CURVE encryption (pass server_public_key=...)"
            )
        return (
            f"the CURVE handshake with {self.endpoint} failed: server_public_key is not this "
            "server's key, or the server does not use CURVE"
        )

    def _break(self, reason: str) -> None:
        """Mark the bridge unusable and fail every pending call (event-loop thread only)."""
        if self._broken is not None or self._closed:
            return
        self._broken = reason
        logger.warning("client_py: %s", reason)
        self._fail_pending(reason)

    def _break_threadsafe(self, reason: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._break, reason)

    def _fail_pending(self, reason: str) -> None:
        for call in self._calls.values():
            if not call.future.done():
                call.future.set_exception(BridgeConnectionError(reason))
        while self._send_queue:
            _, future = self._send_queue.popleft()
            if not future.done():
                future.set_exception(BridgeConnectionError(reason))

    # -- connecting -----------------------------------------------------------------

    async def _connect(self, connect_timeout: float) -> None:
        self._loop = loop = asyncio.get_running_loop()
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        _apply_curve(sock, self._curve)
        sock.setsockopt(zmq.HEARTBEAT_IVL, _ZMTP_HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self._ping_timeout * 1000))
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | _HANDSHAKE_FAILED)
        self._sock = sock
        try:
            loop.add_reader(sock.getsockopt(zmq.FD), self._on_readable)
        except NotImplementedError:
            raise RuntimeError(
                "client_py needs an event loop with add_reader (a selector loop); on "
                "Windows, use asyncio.WindowsSelectorEventLoopPolicy()"
            ) from None
        self._watched.append(sock.getsockopt(zmq.FD))
        loop.add_reader(self._monitor.getsockopt(zmq.FD), self._on_monitor_event)
        # ZMQ_FD only signals after ZMQ_EVENTS has been read once: arm it now, or
        # a disconnect (or failed handshake) would never wake the loop.
        self._monitor.getsockopt(zmq.EVENTS)
        self._watched.append(self._monitor.getsockopt(zmq.FD))
        sock.connect(self.endpoint)
        hello = {
            "token": self._token,
            "versions": list(protocol.SUPPORTED_VERSIONS),
            "client": {"name": CLIENT_NAME, "version": CLIENT_VERSION},
        }
        try:
            result = await self.request("hello", hello, timeout=connect_timeout, cancellable=False)
        except CallTimeout:
            raise BridgeConnectionError(
                f"no bridge server answered at {self.endpoint} within {connect_timeout} s"
            ) from None
        except UnsupportedVersion as exc:
            raise IncompatibleServer(
                f"the server at {self.endpoint} speaks no protocol version this client "
                f"speaks ({list(protocol.SUPPORTED_VERSIONS)}): {exc}"
            ) from None
        version = result.get("version")
        if version not in protocol.SUPPORTED_VERSIONS:
            raise IncompatibleServer(
                f"the server at {self.endpoint} chose protocol version {version!r}; "
                f"this client speaks {list(protocol.SUPPORTED_VERSIONS)}"
            )
        self._hello = result
        self._epoch = str(result["epoch"])
        self._session = str(result["session"])
        self._limits = Limits.from_wire(result.get("limits") or {})
        self.settings = dict(result.get("settings") or {})
        # Keep a little room for the heartbeat's pings and for cancels.
        self._inflight = asyncio.Semaphore(max(1, self._limits.max_inflight_per_session - 4))
        if self._heartbeat_enabled:
            interval = float(result.get("heartbeat_s") or 5.0)
            lease = float(result.get("lease_s") or 3 * interval)
            self._heartbeat = _Heartbeat(
                endpoint=self.endpoint,
                token=self._token,
                session=self._session,
                epoch=self._epoch,
                interval=interval,
                reply_timeout=max(self._ping_timeout, min(lease, 3 * interval)),
                on_broken=self._break_threadsafe,
                curve=self._curve,
            )
            self._heartbeat.start()

    async def _close_sockets(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._loop is not None and not self._loop.is_closed():
            for fd in self._watched:
                self._loop.remove_reader(fd)
        self._watched = []
        if self._sock is not None:
            if self._monitor is not None and not self._monitor.closed:
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.disable_monitor()
            self._sock.close(linger=0)
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None


#: Monitor events of a failed ZMTP handshake (a CURVE key or mechanism mismatch).
_HANDSHAKE_FAILED: Final = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def _curve_keys(server_public_key: str | bytes | None) -> tuple[bytes, bytes, bytes] | None:
    """``(server key, client public, client secret)`` for CURVE, or None without a key."""
    if server_public_key is None:
        return None
    key = (
        server_public_key.encode("ascii")
        if isinstance(server_public_key, str)
        else bytes(server_public_key)
    )
    if not zmq.has("curve"):
        raise BridgeConnectionError(
            f"server_public_key was given, but this libzmq ({zmq.zmq_version()}) was built "
            "without CURVE support (zmq.has('curve') is False)"
        )
    if len(key) != 40:
        raise ValueError("server_public_key must be a 40-character Z85 CURVE public key")
    public, secret = zmq.curve_keypair()
    return key, public, secret


def _apply_curve(sock: zmq.Socket[Any], curve: tuple[bytes, bytes, bytes] | None) -> None:
    """Make ``sock`` a CURVE client of the server whose public key ``curve`` holds."""
    if curve is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _Heartbeat(threading.Thread):
    """Pings the server from a thread of its own, on a DEALER joined to the bridge's session."""

    def __init__(
        self,
        *,
        endpoint: str,
        token: str,
        session: str,
        epoch: str,
        interval: float,
        reply_timeout: float,
        on_broken: Callable[[str], None],
        curve: tuple[bytes, bytes, bytes] | None = None,
    ) -> None:
        super().__init__(name=f"skbridge-heartbeat {endpoint}", daemon=True)
        self.endpoint = endpoint
        self.token = token
        self.session = session
        self.epoch = epoch
        self.interval = interval
        self.reply_timeout = reply_timeout
        self.on_broken = on_broken
        self.curve = curve
        self._stopping = threading.Event()
        self._rids = itertools.count(1)

    def request_stop(self) -> None:
        """Ask the thread to end, without waiting; it reports nothing from now on."""
        self._stopping.set()

    def stop(self) -> None:
        """Ask the thread to end and wait for it briefly."""
        self.request_stop()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(1.0)

    def run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        _apply_curve(sock, self.curve)
        try:
            sock.connect(self.endpoint)
            hello = {
                "token": self.token,
                "versions": list(protocol.SUPPORTED_VERSIONS),
                "session": self.session,
                "client": {"name": CLIENT_NAME + "-heartbeat", "version": CLIENT_VERSION},
            }
            reply = self._exchange(sock, "hello", hello)
            if reply is None:
                return
            if reply["k"] == "ok" and not reply["result"].get("resumed"):
                # The session is gone (lease ran out, or another server): close the
                # one this hello opened and report.
                self._exchange(sock, "bye", {})
                self._report("the server no longer knows this bridge's session")
                return
            while not self._stopping.wait(self.interval):
                if self._exchange(sock, "ping", {}) is None:
                    return
        except Exception as exc:  # never let the heartbeat die silently
            if not self._stopping.is_set():
                self._report(f"the heartbeat to {self.endpoint} failed: {exc}")
        finally:
            sock.close(linger=0)

    def _report(self, reason: str) -> None:
        if not self._stopping.is_set():
            self.on_broken(reason)

    def _exchange(self, sock: zmq.Socket, op: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Send one request and wait for its reply; None (after reporting) on any failure."""
        rid = next(self._rids)
        sock.send_multipart(protocol.encode({"v": 1, "op": op, "rid": rid, **fields}))
        deadline = time.monotonic() + self.reply_timeout
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._report(
                    f"the server at {self.endpoint} did not answer a ping within "
                    f"{self.reply_timeout:g} s"
                )
                return None
            if not sock.poll(min(remaining, 0.2) * 1000):
                continue
            reply = protocol.decode(sock.recv_multipart(), _REPLY_LIMITS)
            if reply.get("ep") != self.epoch:
                self._report(
                    f"the server at {self.endpoint} restarted (epoch {self.epoch} -> "
                    f"{reply.get('ep')}); its session and estimator instances are gone"
                )
                return None
            if reply.get("rid") != rid or reply.get("k") == "ev":
                continue
            if reply.get("k") != "ok":
                error = remote_error(reply.get("error"))
                self._report(f"the server refused the heartbeat: {error}")
                return None
            return reply
        return None


async def create_python_bridge(
    address: str | None = None,
    token: str | None = None,
    *,
    timeout: float | None = None,
    connect_timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    heartbeat: bool = True,
    ping_timeout: float = 10.0,
    data_dir: str | os.PathLike[str] | None = None,
    server_args: Sequence[str] = (),
    server_public_key: str | bytes | None = None,
) -> PythonBridge:
    """Connect to a bridge server, starting a private one when no address is given.

    With no ``address`` this starts an embedded ``bridge_server`` subprocess on
    a free loopback port with a fresh token and stops it on
    :meth:`PythonBridge.disconnect`, on ``async with`` exit, and at interpreter
    exit (the server also exits by itself when this process dies).

    Parameters
    ----------
    address : str, optional
        A running server's endpoint (``tcp://host:port`` or ``ipc://path``).
    token : str, optional
        Its shared secret; default: the ``SKBRIDGE_TOKEN`` environment variable.
    timeout : float, optional
        Default per-call timeout in seconds (None: no timeout).
    connect_timeout : float
        Seconds to wait for the server's ``hello`` answer (and for an embedded
        server to start).
    progress : callable, optional
        Default ``progress(done, total, phase)`` callback for every call.
    heartbeat : bool
        Whether to run the heartbeat thread (keeps the session alive while the
        event loop is blocked, and detects a dead or restarted server).
    ping_timeout : float
        Seconds of silence after which the server is considered gone.
    data_dir : path, optional
        Embedded server only: its data directory for :class:`~protocol.DataRef`.
    server_args : sequence of str
        Embedded server only: extra command-line options.
    server_public_key : str or bytes, optional
        The server's CURVE public key (Z85, 40 characters), for a server started
        with ``--curve`` or ``--curve-secret-key-file``: the connection is then
        encrypted, with a client key pair made by ``zmq.curve_keypair()``. An
        embedded server started with ``--curve`` supplies its own.

    Raises
    ------
    BridgeConnectionError
        Nothing answered in time, or the embedded server did not start.
    AuthenticationFailed
        The token was refused (also a ``PermissionError``).
    IncompatibleServer
        No protocol version in common.
    """
    server: ServerProcess | None = None
    if address is None:
        try:
            server = await launch_server_async(
                data_dir=data_dir,
                extra_args=server_args,
                startup_timeout=connect_timeout,
            )
        except Exception as exc:
            raise BridgeConnectionError(f"could not start the embedded server: {exc}") from exc
        address, token = server.endpoint, server.token
        server_public_key = server_public_key or server.curve_public_key
    else:
        token = token or os.environ.get(TOKEN_ENV)
        if not token:
            raise ValueError(
                f"create_python_bridge(address=...) needs token=... (or ${TOKEN_ENV} set)"
            )
    bridge = PythonBridge(
        address,
        token,
        timeout=timeout,
        progress=progress,
        heartbeat=heartbeat,
        ping_timeout=ping_timeout,
        server=server,
        server_public_key=server_public_key,
    )
    try:
        await bridge._connect(connect_timeout)
    except BaseException:
        bridge._closed = True
        await bridge._close_sockets()
        if server is not None:
            await asyncio.to_thread(server.stop, 5.0)
        raise
    return bridge
