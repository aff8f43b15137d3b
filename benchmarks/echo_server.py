"""A raw ZeroMQ ROUTER echo, run as its own process: ``echo_server.py ENDPOINT [REPLY_BYTES]``.

Prints the bound endpoint on one line, then answers every message: with the
same frames (no ``REPLY_BYTES``), or with one preallocated frame of
``REPLY_BYTES`` bytes, until it is killed.
"""

from __future__ import annotations

import sys

import zmq


def main(argv: list[str]) -> None:
    """Bind, print the endpoint, echo until killed."""
    endpoint = argv[0]
    reply = bytes(int(argv[1])) if len(argv) > 1 else None
    if endpoint.endswith(":0"):
        endpoint = endpoint[:-2] + ":*"
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.bind(endpoint)
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    while True:
        ident, *frames = sock.recv_multipart(copy=False)
        sock.send_multipart([ident, *(frames if reply is None else [reply])], copy=False)


if __name__ == "__main__":
    main(sys.argv[1:])
