"""A small synchronous client for the server tests: real DEALER sockets, the real codec.

Deliberately independent of ``client_py``: these tests check the server against
``protocol/SPEC.md`` directly.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from typing import Any

import zmq

from protocol import decode, encode, request

#: One ZeroMQ context for all test connections.
CONTEXT = zmq.Context.instance()


class RemoteErr(Exception):
    """An ``err`` reply, raised by :meth:`Wire.ok`."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['type']}: {error['message']}")
        self.type: str = error["type"]
        self.bases: list[str] = error["bases"]
        self.message: str = error["message"]


class Wire:
    """One connection (a DEALER socket) to a server.

    Parameters
    ----------
    endpoint : str
        The server's endpoint.
    token : str, optional
        When given, ``hello`` is sent at once.
    """

    def __init__(
        self,
        endpoint: str,
        token: str | None = None,
        session: str | None = None,
        *,
        context: zmq.Context | None = None,
        rcvhwm: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.sock = (context or CONTEXT).socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if rcvhwm is not None:
            self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sock.connect(endpoint)
        self._rids = itertools.count(1)
        self._inbox: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.hello_result: dict[str, Any] | None = None
        if token is not None:
            self.hello(token, session)

    # -- sending -----------------------------------------------------------

    def next_rid(self) -> int:
        return next(self._rids)

    def send(self, op: str, **fields: Any) -> int:
        """Send a request; returns its rid."""
        rid = self.next_rid()
        self.sock.send_multipart(encode(request(op, rid, **fields)), copy=False)
        return rid

    def send_frames(self, frames: list[Any]) -> None:
        """Send raw frames (malformed-message tests)."""
        self.sock.send_multipart(frames)

    # -- receiving ---------------------------------------------------------

    def recv_one(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message from the server, decoded."""
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no message from the server within {timeout} s")
        frames = self.sock.recv_multipart()
        return decode(frames)

    def collect(
        self, rid: int, timeout: float = 10.0
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Wait for ``rid``'s reply; returns it and the events that came before it."""
        deadline = time.monotonic() + timeout
        while True:
            got = self._inbox.get(rid, [])
            if got and got[-1]["k"] != "ev":
                del self._inbox[rid]
                return got[-1], got[:-1]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to request {rid} within {timeout} s")
            msg = self.recv_one(left)
            self._inbox[msg["rid"]].append(msg)

    def request(self, op: str, timeout: float = 10.0, **fields: Any) -> tuple[dict[str, Any], list]:
        return self.collect(self.send(op, **fields), timeout)

    def ok(self, op: str, timeout: float = 10.0, **fields: Any) -> Any:
        """Send a request and return its result; raise :class:`RemoteErr` on an error reply."""
        reply, _ = self.request(op, timeout=timeout, **fields)
        return result_of(reply)

    # -- conveniences ------------------------------------------------------

    def hello(self, token: str, session: str | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"token": token, "versions": [1]}
        if session is not None:
            fields["session"] = session
        self.hello_result = self.ok("hello", **fields)
        return self.hello_result

    def init(self, iid: str, cls: str = "MiniBatchKMeans", **opts: Any) -> None:
        self.ok("init", cls=cls, id=iid, opts=opts)

    def call(self, iid: str, method: str, timeout: float = 10.0, **args: Any) -> Any:
        return self.ok("call", timeout=timeout, id=iid, method=method, args=args)

    def get(self, iid: str, attr: str) -> Any:
        return self.ok("get", id=iid, attr=attr)

    def close(self) -> None:
        self.sock.close(linger=0)

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def result_of(reply: dict[str, Any]) -> Any:
    """The result of a reply, or :class:`RemoteErr`."""
    if reply["k"] == "err":
        raise RemoteErr(reply["error"])
    assert reply["k"] == "ok", reply
    return reply["result"]
