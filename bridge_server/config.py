"""The server's configuration: what the command line decides, checked once."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from protocol import Limits

#: Environment variable that carries the shared token (the launcher's contract).
TOKEN_ENV = "SKBRIDGE_TOKEN"

DEFAULT_BIND = "tcp://127.0.0.1:5555"
DEFAULT_LEASE_S = 300.0
DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_GRACE_S = 5.0


class ConfigError(ValueError):
    """The command line asks for something the server refuses to do."""


def default_workers() -> int:
    """Thread-pool size when ``--workers`` is not given (as ``ThreadPoolExecutor``'s)."""
    return min(32, (os.cpu_count() or 1) + 4)


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to start.

    Attributes
    ----------
    bind : str
        ZeroMQ endpoint to bind (``tcp://HOST:PORT``, port 0 for a free one,
        or ``ipc://PATH``).
    token : str
        The shared secret clients present in ``hello``.
    token_generated : bool
        Whether the server made the token up (it is then written to
        ``connection_file``).
    connection_file : Path or None
        Where to write ``{endpoint, token, epoch, pid}`` (mode 0600) when the
        token was generated.
    data_dir : Path or None
        Root of the data references (``protocol/SPEC.md`` section 3.3).
    limits : Limits
        The limits advertised in ``hello`` and enforced.
    lease_s : float
        Seconds a session lives without any request.
    heartbeat_s : float
        The heartbeat interval advertised to clients.
    workers : int
        Size of the thread pool that runs calls.
    grace_s : float
        Seconds in-flight calls get at shutdown before they are cancelled.
    log_level : str
        Level of the ``bridge_server`` logger.
    allow_remote : bool
        Whether a non-loopback ``tcp`` bind is allowed.
    parent_pid : int or None
        Exit when this process is gone.
    debug : bool
        Put tracebacks in error replies' ``detail``.
    curve_secret_key : bytes or None
        The server's CURVE secret key (Z85, 40 bytes): when set, every
        connection is encrypted and clients must know the matching public key.
    curve_generated : bool
        Whether the key pair was generated at start (``--curve``): its public
        key is then printed and written to the connection file.
    """

    bind: str = DEFAULT_BIND
    token: str = ""
    token_generated: bool = False
    connection_file: Path | None = None
    data_dir: Path | None = None
    limits: Limits = field(default_factory=Limits)
    lease_s: float = DEFAULT_LEASE_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    workers: int = field(default_factory=default_workers)
    grace_s: float = DEFAULT_GRACE_S
    log_level: str = "WARNING"
    allow_remote: bool = False
    parent_pid: int | None = None
    debug: bool = False
    curve_secret_key: bytes | None = field(default=None, repr=False)
    curve_generated: bool = False

    def check(self) -> None:
        """Raise :class:`ConfigError` for a configuration the server refuses."""
        if not self.token:
            raise ConfigError("the token must not be empty")
        if self.lease_s <= 0:
            raise ConfigError("--lease must be positive")
        if self.heartbeat_s <= 0:
            raise ConfigError("--heartbeat must be positive")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.grace_s < 0:
            raise ConfigError("--grace must not be negative")
        for name, value in self.limits.to_wire().items():
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise ConfigError(f"--data-dir {self.data_dir} is not a directory")
        if self.curve_secret_key is not None:
            check_curve_available()
            curve_public_key(self.curve_secret_key)
        if not self.allow_remote and not is_loopback_endpoint(self.bind):
            raise ConfigError(
                f"refusing to bind {self.bind}: it is reachable from other machines; "
                "bind a loopback address (tcp://127.0.0.1:PORT) or ipc://, "
                "or pass --allow-remote if you mean it"
            )


def check_curve_available() -> None:
    """Raise :class:`ConfigError` when this libzmq was built without CURVE."""
    import zmq

    if not zmq.has("curve"):
        raise ConfigError(
            f"CURVE encryption was asked for, but this libzmq ({zmq.zmq_version()}) was built "
            "without it (zmq.has('curve') is False); install a pyzmq wheel with libsodium "
            "or a libzmq built --with-libsodium"
        )


def curve_public_key(secret_key: bytes) -> bytes:
    """The Z85 public key of a Z85 CURVE secret key; :class:`ConfigError` if it is not one."""
    import zmq

    if len(secret_key) != 40:
        raise ConfigError("a CURVE secret key is 40 characters of Z85")
    try:
        return zmq.curve_public(secret_key)
    except (zmq.ZMQError, ValueError) as exc:
        raise ConfigError(f"not a valid CURVE secret key: {exc}") from None


def read_curve_secret_key(path: Path) -> bytes:
    """The Z85 CURVE secret key stored at ``path``.

    Accepts a ZeroMQ certificate (``zmq.auth.create_certificates``'s
    ``*.key_secret`` file, ``secret-key = "..."``) or a file holding just the
    40-character key.
    """
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the CURVE secret key file {path}: {exc}") from None
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip() == "secret-key":
            return value.strip().strip('"').encode("ascii")
    bare = text.strip()
    if len(bare) == 40 and "\n" not in bare:
        return bare.encode("ascii")
    raise ConfigError(
        f"{path} holds no CURVE secret key (a 40-character Z85 key, or a ZeroMQ "
        "certificate with a secret-key line)"
    )


def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    # A host name (or a network interface name, which ZeroMQ also accepts):
    # loopback only if every address it resolves to is.
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def is_loopback_endpoint(endpoint: str) -> bool:
    """Whether binding ``endpoint`` keeps the server reachable from this machine only."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        return False
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host, _, _port = rest.rpartition(":")
    if host in ("", "*"):
        return False
    return _is_loopback_host(host)
