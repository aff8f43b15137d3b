"""Authentication, sessions, leases, resume and the epoch."""

from __future__ import annotations

import time

import pytest
from server_testdata import small_X
from server_wire import RemoteErr, Wire


def test_wrong_token_is_refused_and_opens_no_session(server):
    with Wire(server.endpoint) as w:
        reply, _ = w.request("hello", token="not-the-token", versions=[1])
        assert reply["k"] == "err"
        assert reply["error"]["type"] == "AuthenticationFailed"
        assert "PermissionError" in reply["error"]["bases"]
        reply, _ = w.request("ping")
        assert reply["error"]["type"] == "AuthenticationFailed"


@pytest.mark.parametrize(
    "op,fields",
    [("ping", {}), ("describe", {}), ("init", {"cls": "MiniBatchKMeans", "id": "k", "opts": {}})],
)
def test_requests_before_hello_are_refused(server, op, fields):
    with Wire(server.endpoint) as w:
        reply, _ = w.request(op, **fields)
        assert reply["k"] == "err" and reply["error"]["type"] == "AuthenticationFailed"


def test_unsupported_version(server):
    with Wire(server.endpoint) as w:
        reply, _ = w.request("hello", token=server.token, versions=[7, 9])
        assert reply["error"]["type"] == "UnsupportedVersion"


def test_hello_reply_and_epoch_in_every_message(server, wire):
    hello = wire.hello_result
    assert hello["epoch"] == server.epoch
    assert hello["version"] == 1 and hello["resumed"] is False
    assert len(hello["session"]) >= 22  # >= 128 bits, url-safe base64
    assert hello["lease_s"] > 0 and 0 < hello["heartbeat_s"] < hello["lease_s"]
    assert hello["limits"]["max_frames"] == 64
    reply, _ = wire.request("ping")
    assert reply["ep"] == server.epoch
    assert abs(reply["result"]["time"] - time.time()) < 5


def test_sessions_are_isolated(connect):
    a, b = connect(), connect()
    a.init("km", n_clusters=2)
    a.call("km", "fit", X=small_X())
    # The same id in another session is unknown there, and free to use.
    with pytest.raises(RemoteErr) as info:
        b.get("km", "cluster_centers_")
    assert info.value.type == "UnknownInstance"
    with pytest.raises(RemoteErr):
        b.ok("dispose", id="km")
    b.init("km", n_clusters=3)
    assert a.get("km", "cluster_centers_").shape == (2, 2)
    b.call("km", "fit", X=small_X())
    assert b.get("km", "cluster_centers_").shape == (3, 2)


def test_resume_after_reconnect_and_join_from_a_second_connection(server, connect):
    first = connect()
    first.init("km", n_clusters=2, random_state=0)
    first.call("km", "fit", X=small_X())
    centers = first.get("km", "cluster_centers_")
    token = first.hello_result["session"]
    first.close()
    first.hello_result = None  # closed: no bye at teardown
    again = connect(session=token)
    assert again.hello_result["resumed"] is True
    assert again.hello_result["session"] == token
    assert (again.get("km", "cluster_centers_") == centers).all()
    # A heartbeat connection joins the same session.
    beat = connect(session=token)
    assert beat.ok("ping")["time"] > 0
    assert beat.get("km", "n_features_in_") == 2


def test_unknown_session_token_opens_a_new_session(connect):
    w = connect(session="no-such-session")
    assert w.hello_result["resumed"] is False
    assert w.hello_result["session"] != "no-such-session"


def test_bye_disposes_the_session(server, connect):
    w = connect()
    w.init("km")
    token = w.hello_result["session"]
    assert w.ok("bye") is None
    reply, _ = w.request("ping")
    assert reply["error"]["type"] == "AuthenticationFailed"
    w.hello_result = None
    again = connect(session=token)
    assert again.hello_result["resumed"] is False
    with pytest.raises(RemoteErr) as info:
        again.get("km", "labels_")
    assert info.value.type == "UnknownInstance"


def test_lease_expiry_after_a_client_dies_without_bye(launch):
    srv = launch("--lease", "1.0")
    w = Wire(srv.endpoint, srv.token)
    assert w.hello_result["lease_s"] == pytest.approx(1.0)
    assert w.hello_result["heartbeat_s"] <= 1.0 / 3 + 1e-9
    w.init("km")
    token = w.hello_result["session"]
    # Heartbeats keep it alive well past one lease...
    for _ in range(8):
        time.sleep(0.2)
        w.ok("ping")
    w.call("km", "fit", X=small_X())
    w.close()  # ...then the client "dies" without bye.
    time.sleep(2.5)
    with Wire(srv.endpoint, srv.token, session=token) as again:
        assert again.hello_result["resumed"] is False
        with pytest.raises(RemoteErr) as info:
            again.get("km", "labels_")
        assert info.value.type == "UnknownInstance"


def test_restart_is_detected_through_the_epoch(launch):
    first = launch()
    with Wire(first.endpoint, first.token) as w:
        epoch1 = w.hello_result["epoch"]
        token = w.hello_result["session"]
    endpoint = first.endpoint
    first.stop()
    second = launch(bind=endpoint, token=first.token)
    with Wire(second.endpoint, second.token, session=token) as w:
        assert w.hello_result["epoch"] != epoch1
        assert w.hello_result["resumed"] is False
        reply, _ = w.request("ping")
        assert reply["ep"] == w.hello_result["epoch"] == second.epoch
