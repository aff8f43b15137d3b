"""The ``skbridge`` command: ``serve`` (the server), ``demo`` and ``bench``.

``python -m bridge_server [options]`` is ``skbridge serve [options]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocol import Limits

from . import __version__
from .config import (
    DEFAULT_BIND,
    DEFAULT_GRACE_S,
    DEFAULT_HEARTBEAT_S,
    DEFAULT_LEASE_S,
    TOKEN_ENV,
    ConfigError,
    ServerConfig,
    check_curve_available,
    default_workers,
    is_loopback_endpoint,
    read_curve_secret_key,
)

_LIMIT_HELP = {
    "max_header_bytes": "largest header frame, in bytes",
    "max_frames": "most frames in one message",
    "max_array_bytes": "largest array buffer, in bytes",
    "max_message_bytes": "largest message (all frames), in bytes",
    "max_instances_per_session": "most live instances per session",
    "max_sessions": "most live sessions",
    "max_inflight_per_session": "most requests in flight per session",
}

#: Where the ``demo`` and ``bench`` subcommands may live, first found wins.
_SUBCOMMAND_MODULES = {
    "demo": ("bridge_server.demo", "client_py.demo"),
    "bench": ("bridge_server.bench", "client_py.bench", "benchmarks.bench"),
}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``skbridge serve`` / ``python -m bridge_server``."""
    net = parser.add_argument_group("network and authentication")
    net.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        help=f"ZeroMQ endpoint to bind: tcp://HOST:PORT (port 0 picks a free one) or "
        f"ipc://PATH (default {DEFAULT_BIND})",
    )
    net.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding an address other machines can reach (default: loopback only)",
    )
    net.add_argument(
        "--token",
        help=f"shared secret clients must present (visible to other users in the process "
        f"list: prefer the {TOKEN_ENV} environment variable); when neither is given a token "
        "is generated and written to the connection file",
    )
    net.add_argument(
        "--connection-file",
        type=Path,
        help="where to write {endpoint, token, epoch, pid} (mode 0600) when the token is "
        "generated (default: $XDG_RUNTIME_DIR/skbridge/skbridge-PID.json or "
        "~/.skbridge/skbridge-PID.json)",
    )
    curve = net.add_mutually_exclusive_group()
    curve.add_argument(
        "--curve",
        action="store_true",
        help="encrypt every connection with CURVE, using a key pair generated at start; its "
        "public key is printed, and written to the ready line and the connection file "
        "(clients pass it as server_public_key)",
    )
    curve.add_argument(
        "--curve-secret-key-file",
        type=Path,
        metavar="PATH",
        help="encrypt every connection with CURVE, using the secret key in PATH (a ZeroMQ "
        "certificate's .key_secret file, or the bare 40-character Z85 key)",
    )
    work = parser.add_argument_group("work")
    work.add_argument(
        "--data-dir", type=Path, help="directory of the .npy files data references may name"
    )
    work.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="threads that run calls (default %(default)s)",
    )
    work.add_argument(
        "--lease",
        type=float,
        default=DEFAULT_LEASE_S,
        help="seconds a session lives without any request (default %(default)s)",
    )
    work.add_argument(
        "--heartbeat",
        type=float,
        default=DEFAULT_HEARTBEAT_S,
        help="heartbeat interval advertised to clients, in seconds (default %(default)s; "
        "never more than a third of the lease)",
    )
    work.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        help="seconds calls in flight get at shutdown before they are cancelled "
        "(default %(default)s)",
    )
    limits = parser.add_argument_group("limits (advertised in hello)")
    for f in dataclasses.fields(Limits):
        limits.add_argument(
            "--" + f.name.replace("_", "-"),
            type=int,
            default=f.default,
            help=f"{_LIMIT_HELP.get(f.name, f.name)} (default %(default)s)",
        )
    proc = parser.add_argument_group("process")
    proc.add_argument("--parent-pid", type=int, help="exit when the process with this id is gone")
    proc.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="level of the bridge_server logger, on stderr (default %(default)s)",
    )
    proc.add_argument(
        "--debug",
        action="store_true",
        help="send tracebacks of estimator errors in the error's detail",
    )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Build the server's configuration from parsed options and the environment."""
    token = args.token or os.environ.get(TOKEN_ENV) or ""
    generated = not token
    if generated:
        token = secrets.token_urlsafe(32)
    limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    curve_key: bytes | None = None
    curve_generated = False
    if getattr(args, "curve_secret_key_file", None) is not None:
        curve_key = read_curve_secret_key(args.curve_secret_key_file)
    elif getattr(args, "curve", False):
        check_curve_available()
        import zmq

        curve_key = zmq.curve_keypair()[1]
        curve_generated = True
    heartbeat = min(args.heartbeat, args.lease / 3) if args.lease > 0 else args.heartbeat
    return ServerConfig(
        bind=args.bind,
        token=token,
        token_generated=generated,
        connection_file=args.connection_file,
        data_dir=args.data_dir,
        limits=limits,
        lease_s=args.lease,
        heartbeat_s=heartbeat,
        workers=args.workers,
        grace_s=args.grace,
        log_level=args.log_level,
        allow_remote=args.allow_remote,
        parent_pid=args.parent_pid,
        debug=args.debug,
        curve_secret_key=curve_key,
        curve_generated=curve_generated,
    )


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    )
    logger = logging.getLogger("bridge_server")
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def serve(args: argparse.Namespace) -> int:
    """Run the server with parsed options; returns the exit code."""
    try:
        config = config_from_args(args)
        config.check()
    except ConfigError as exc:
        print(f"skbridge serve: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config.log_level)
    if args.token:
        logging.getLogger("bridge_server").warning(
            "the token was given on the command line, where other users can read it; "
            "prefer the %s environment variable",
            TOKEN_ENV,
        )
    if config.curve_secret_key is None and not is_loopback_endpoint(config.bind):
        logging.getLogger("bridge_server").warning(
            "serving %s without CURVE: requests, results and the token cross the network "
            "unencrypted; pass --curve or --curve-secret-key-file",
            config.bind,
        )
    from .server import run

    return run(config)


def serve_main(argv: Sequence[str] | None = None, prog: str = "python -m bridge_server") -> int:
    """``python -m bridge_server``: parse the serve options and run."""
    parser = argparse.ArgumentParser(prog=prog, description="Run the skbridge server.")
    add_serve_arguments(parser)
    return serve(parser.parse_args(argv))


def _delegate(command: str, argv: Sequence[str]) -> int:
    for name in _SUBCOMMAND_MODULES[command]:
        try:
            module: Any = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only "this module does not exist" moves on; a broken module is an error.
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        return int(module.main(list(argv)) or 0)
    print(f"skbridge {command}: not available yet in this installation", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """The ``skbridge`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="skbridge", description="scikit-learn estimators behind a ZeroMQ bridge."
    )
    parser.add_argument("--version", action="version", version=f"skbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve_parser = sub.add_parser("serve", help="run the server", description="Run the server.")
    add_serve_arguments(serve_parser)
    for command, text in (("demo", "run the out-of-core demo"), ("bench", "run the benchmarks")):
        # Their options are their own: everything after the name is passed on.
        sub.add_parser(command, help=text, add_help=False)
    if argv and argv[0] in _SUBCOMMAND_MODULES:
        return _delegate(argv[0], argv[1:])
    args = parser.parse_args(argv)
    return serve(args)
