"""Authentication: the token first, every time; a refusal opens nothing; CURVE for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from reliability_helpers import REF_X, reference_centers
from server_wire import Wire

from bridge_server.config import ConfigError, ServerConfig
from client_py import (
    AuthenticationFailed,
    BridgeConnectionError,
    create_python_bridge,
)
from protocol import OPERATIONS, encode, request

_OP_FIELDS = {
    "configure": {"settings": {}},
    "init": {"cls": "MiniBatchKMeans", "id": "km", "opts": {}},
    "call": {"id": "km", "method": "fit", "args": {"X": np.zeros((4, 2))}},
    "get": {"id": "km", "attr": "cluster_centers_"},
    "dispose": {"id": "km"},
    "cancel": {"target": 1},
}


def _err(reply: dict) -> str:
    assert reply["k"] == "err", reply
    return reply["error"]["type"]


@pytest.mark.parametrize("op", sorted(set(OPERATIONS) - {"hello"}))
def test_every_operation_before_hello_is_refused(server, op):
    with Wire(server.endpoint) as w:
        reply, _ = w.request(op, **_OP_FIELDS.get(op, {}))
        assert _err(reply) == "AuthenticationFailed"
        assert "PermissionError" in reply["error"]["bases"]
        w.hello(server.token)  # the connection can still authenticate
        assert w.ok("ping")["time"] > 0
        w.ok("bye")


def _wrong_tokens(token: str) -> list[object]:
    return [
        "",
        token[:-1],  # all but the last character: a prefix match must not pass
        token[:-1] + chr(ord(token[-1]) ^ 1),
        token + "x",
        token.upper() if token.upper() != token else token.lower() + "!",
        "x" * 100_000,
        "\u00e9" * len(token),
    ]


def test_wrong_or_missing_token_is_refused_and_opens_no_session(launch):
    srv = launch("--max-sessions", "1")
    with Wire(srv.endpoint) as w:
        for bad in _wrong_tokens(srv.token):
            reply, _ = w.request("hello", token=bad, versions=[1])
            assert _err(reply) == "AuthenticationFailed", bad
        # A token that is not UTF-8 (a lone surrogate's bytes) is refused by the codec.
        frame = encode(request("hello", 99, token="@@@", versions=[1]))[0]
        w.send_frames([frame.replace(b"@@@", b"\xed\xa0\x80")])
        assert _err(w.recv_one()) == "MalformedMessage"
        for fields in ({"versions": [1]}, {"token": None, "versions": [1]}, {"token": 7}):
            reply, _ = w.request("hello", **fields)
            assert _err(reply) == "AuthenticationFailed", fields
        reply, _ = w.request("ping")
        assert _err(reply) == "AuthenticationFailed"
    # With max_sessions=1, none of the refusals above took the only slot.
    with Wire(srv.endpoint, srv.token) as w:
        assert w.ok("ping")["time"] > 0


def test_failed_rehello_unbinds_the_connection_and_no_session_is_hijacked(launch):
    srv = launch()
    with Wire(srv.endpoint, srv.token) as owner, Wire(srv.endpoint) as thief:
        owner.init("km", n_clusters=2)
        session = owner.hello_result["session"]
        # Knowing a session token is not enough: the server token comes first.
        reply, _ = thief.request("hello", token="guess", versions=[1], session=session)
        assert _err(reply) == "AuthenticationFailed"
        reply, _ = thief.request("get", id="km", attr="n_features_in_")
        assert _err(reply) == "AuthenticationFailed"
        # A failed second hello leaves the owner's connection unauthenticated...
        reply, _ = owner.request("hello", token="wrong", versions=[1])
        assert _err(reply) == "AuthenticationFailed"
        reply, _ = owner.request("ping")
        assert _err(reply) == "AuthenticationFailed"
        # ...and the right token resumes the session with its instance.
        assert owner.hello(srv.token, session)["resumed"] is True
        assert owner.ok("call", id="km", method="get_params", args={})["n_clusters"] == 2
        owner.ok("bye")


async def test_client_wrong_token_gets_authentication_failed(server):
    with pytest.raises(AuthenticationFailed) as info:
        await create_python_bridge(server.endpoint, server.token + "x", connect_timeout=5)
    assert isinstance(info.value, PermissionError)


# -- CURVE ----------------------------------------------------------------------------


async def test_curve_server_right_key_works_wrong_or_no_key_fails_fast(launch):
    srv = launch("--curve")
    assert srv.curve_public_key is not None and len(srv.curve_public_key) == 40
    async with await create_python_bridge(
        srv.endpoint, srv.token, server_public_key=srv.curve_public_key
    ) as py:
        centers = await reference_centers(py)
        assert centers.shape == (3, 2)
        for key in (zmq.curve_keypair()[0].decode(), None):
            started = time.monotonic()
            with pytest.raises(BridgeConnectionError, match="handshake"):
                await create_python_bridge(
                    srv.endpoint, srv.token, server_public_key=key, connect_timeout=20
                )
            assert time.monotonic() - started < 3  # the handshake failure, not the timeout
        assert await py.ping() > 0  # the good client was not disturbed
    # A raw peer without CURVE never gets a byte of protocol back.
    with Wire(srv.endpoint) as w:
        w.send("hello", token=srv.token, versions=[1])
        assert not w.sock.poll(500)


async def test_curve_client_against_a_plain_server_fails_fast(server):
    with pytest.raises(BridgeConnectionError, match="CURVE handshake"):
        await create_python_bridge(
            server.endpoint,
            server.token,
            server_public_key=zmq.curve_keypair()[0],
            connect_timeout=20,
        )


@pytest.mark.parametrize("form", ["certificate", "bare"])
async def test_curve_secret_key_file(launch, tmp_path, form):
    import zmq.auth

    if form == "certificate":
        public_file, secret_file = zmq.auth.create_certificates(tmp_path, "server")
        public, _ = zmq.auth.load_certificate(public_file)
    else:
        public, secret = zmq.curve_keypair()
        secret_file = tmp_path / "server.secret"
        secret_file.write_bytes(secret + b"\n")
        os.chmod(secret_file, 0o600)
    srv = launch("--curve-secret-key-file", str(secret_file))
    assert srv.curve_public_key == public.decode()
    async with await create_python_bridge(srv.endpoint, srv.token, server_public_key=public) as py:
        model_centers = await reference_centers(py)
        assert np.all(np.isfinite(model_centers)) and len(REF_X) == 120


def test_generated_keys_go_to_the_connection_file(tmp_path):
    conn_file = tmp_path / "conn.json"
    env = {k: v for k, v in os.environ.items() if k != "SKBRIDGE_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge_server", "--bind", "tcp://127.0.0.1:0", "--curve",
         "--connection-file", str(conn_file), "--parent-pid", str(os.getpid())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        ready = json.loads(proc.stdout.readline().decode().split(" ", 1)[1])
        doc = json.loads(conn_file.read_text())
        assert doc["curve_public_key"] == ready["curve_public_key"]
        assert (conn_file.stat().st_mode & 0o777) == 0o600
        with Wire(doc["endpoint"]) as w:
            pub, sec = zmq.curve_keypair()
            w.sock.close()
            w.sock = zmq.Context.instance().socket(zmq.DEALER)
            w.sock.setsockopt(zmq.LINGER, 0)
            w.sock.curve_serverkey = doc["curve_public_key"].encode()
            w.sock.curve_publickey, w.sock.curve_secretkey = pub, sec
            w.sock.connect(doc["endpoint"])
            assert w.hello(doc["token"])["session"]
    finally:
        proc.terminate()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            stream.close()


def test_bad_or_unavailable_curve_key_is_a_clear_config_error(monkeypatch, tmp_path):
    from bridge_server.config import read_curve_secret_key

    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    with pytest.raises(ConfigError, match="no CURVE secret key"):
        read_curve_secret_key(bad)
    with pytest.raises(ConfigError, match="valid CURVE secret key|40 characters"):
        ServerConfig(token="t", curve_secret_key=b"!" * 39).check()
    monkeypatch.setattr(zmq, "has", lambda capability: False)
    with pytest.raises(ConfigError, match="without it"):
        ServerConfig(token="t", curve_secret_key=zmq.curve_keypair()[1]).check()
