"""Sessions: who a connection speaks for, how long it lives, what it owns.

A session is opened by ``hello`` and identified by an unguessable token; any
number of connections (ZeroMQ routing identities) may be bound to it. Every
request renews its lease; when the lease runs out, or on ``bye``, the server
closes it and disposes its instances, so a client that crashed leaks nothing.
Owned by the loop thread: no locking.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .registry import Instance, Job

#: The settings a session starts with (``configure`` changes them).
DEFAULT_SETTINGS: dict[str, Any] = {"enable_metadata_routing": False}

_labels = itertools.count(1)


@dataclass(eq=False)
class Session:
    """One client's state on the server.

    Attributes
    ----------
    token : str
        The secret that resumes it (never logged).
    label : str
        A short name for log lines (``s12``).
    expires : float
        ``time.monotonic()`` at which the lease runs out.
    settings : dict
        ``enable_metadata_routing``.
    instances : dict of str to Instance
        Its estimators by id.
    jobs : dict
        Its calls and gets in flight, by ``(connection, rid)``.
    conns : set of bytes
        Connections bound to it.
    """

    token: str
    label: str
    lease_s: float
    created: float = field(default_factory=time.monotonic)
    expires: float = 0.0
    settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    instances: dict[str, Instance] = field(default_factory=dict)
    jobs: dict[tuple[bytes, int], Job] = field(default_factory=dict)
    conns: set[bytes] = field(default_factory=set)
    requests: int = 0
    instances_created: int = 0
    closed: bool = False

    def touch(self, now: float) -> None:
        """Renew the lease."""
        self.expires = now + self.lease_s


class SessionTable:
    """All live sessions, by token and by connection."""

    def __init__(self, lease_s: float) -> None:
        self.lease_s = lease_s
        self.by_token: dict[str, Session] = {}
        self.by_conn: dict[bytes, Session] = {}

    def __len__(self) -> int:
        return len(self.by_token)

    def open(self, conn: bytes) -> Session:
        """A new session bound to ``conn``."""
        session = Session(
            token=secrets.token_urlsafe(32), label=f"s{next(_labels)}", lease_s=self.lease_s
        )
        session.touch(time.monotonic())
        self.by_token[session.token] = session
        self.bind(conn, session)
        return session

    def find(self, token: str) -> Session | None:
        """The live session with this token, if any."""
        return self.by_token.get(token)

    def bind(self, conn: bytes, session: Session) -> None:
        """Make ``conn`` speak for ``session`` (leaving any session it spoke for)."""
        previous = self.by_conn.get(conn)
        if previous is not None and previous is not session:
            previous.conns.discard(conn)
        self.by_conn[conn] = session
        session.conns.add(conn)

    def for_conn(self, conn: bytes) -> Session | None:
        """The session ``conn`` is bound to, or ``None`` before a successful ``hello``."""
        return self.by_conn.get(conn)

    def forget_conn(self, conn: bytes) -> None:
        """Unbind a connection whose peer is gone (the session lives on)."""
        session = self.by_conn.pop(conn, None)
        if session is not None:
            session.conns.discard(conn)

    def remove(self, session: Session) -> None:
        """Drop a session and unbind its connections (the caller disposes its instances)."""
        session.closed = True
        self.by_token.pop(session.token, None)
        for conn in session.conns:
            if self.by_conn.get(conn) is session:
                del self.by_conn[conn]
        session.conns.clear()

    def expired(self, now: float) -> list[Session]:
        """Sessions whose lease has run out."""
        return [s for s in self.by_token.values() if s.expires <= now]

    def all(self) -> list[Session]:
        """Every live session."""
        return list(self.by_token.values())
