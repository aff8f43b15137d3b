"""The connection file: where a server with a generated token tells its owner how to connect.

Written only when the token was generated (not given with ``--token`` or
``SKBRIDGE_TOKEN``): a JSON map ``{endpoint, token, epoch, pid}`` in a file
that only its owner can read (mode 0600, in a directory of mode 0700).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def default_connection_dir() -> Path:
    """``$XDG_RUNTIME_DIR/skbridge`` when set (a private tmpfs), else ``~/.skbridge``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "skbridge"
    return Path.home() / ".skbridge"


def write_connection_file(
    path: Path | None,
    endpoint: str,
    token: str,
    epoch: str,
    *,
    curve_public_key: str | None = None,
) -> Path:
    """Write the connection file (mode 0600) and return its path.

    Parameters
    ----------
    path : Path or None
        Where to write it; by default ``skbridge-<pid>.json`` in
        :func:`default_connection_dir`.
    curve_public_key : str, optional
        The server's CURVE public key (Z85), stored as ``curve_public_key``
        when the server encrypts.
    """
    if path is None:
        directory = default_connection_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / f"skbridge-{os.getpid()}.json"
        # A file left by an earlier process that had our pid is stale.
        path.unlink(missing_ok=True)
    doc: dict[str, object] = {"endpoint": endpoint, "token": token, "epoch": epoch}
    doc["pid"] = os.getpid()
    if curve_public_key is not None:
        doc["curve_public_key"] = curve_public_key
    content = json.dumps(doc)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(content + "\n")
    return path


def remove_connection_file(path: Path) -> None:
    """Remove the connection file at exit (a missing file is fine)."""
    try:
        path.unlink()
    except OSError:
        pass
