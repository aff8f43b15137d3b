"""The loop never blocks on compute; per-instance order; cancel and dispose stop fits."""

from __future__ import annotations

import time

import numpy as np
from server_testdata import LONG_FIT, small_X

from bridge_server.core import CallContext, MiniBatchKMeans, call_context


def wait_for_progress(w, rid, timeout=20.0):
    """Read messages until ``rid`` has sent a progress event (the fit is really running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = w.recv_one(deadline - time.monotonic())
        w._inbox[msg["rid"]].append(msg)
        if msg["rid"] == rid and msg["k"] == "ev" and msg["event"] == "progress":
            return
        assert not (msg["rid"] == rid and msg["k"] != "ev"), msg
    raise TimeoutError("the fit never reported progress")


def test_ping_is_answered_while_a_long_fit_runs(wire, long_X):
    wire.init("km", **LONG_FIT)
    rid = wire.send("call", id="km", method="fit", args={"X": long_X})
    wait_for_progress(wire, rid)
    # The fit never ends by itself, so a loop blocked on it would never answer.
    for _ in range(5):
        assert wire.ok("ping", timeout=2)["time"] > 0
    # Other instances are served meanwhile (on other workers, or inline for a get).
    wire.init("other", n_clusters=2, random_state=0)
    wire.call("other", "fit", X=small_X(), timeout=5)
    assert wire.ok("get", id="other", attr="cluster_centers_", timeout=2).shape == (2, 2)
    assert wire.ok("cancel", target=rid) == {"found": True}
    reply, _ = wire.collect(rid, timeout=20)
    assert reply["error"]["type"] == "CallCancelled"


def test_cancel_a_long_fit(wire, long_X):
    wire.init("km", **LONG_FIT)
    rid = wire.send("call", id="km", method="fit", args={"X": long_X})
    wait_for_progress(wire, rid)
    t0 = time.monotonic()
    assert wire.ok("cancel", target=rid) == {"found": True}
    reply, events = wire.collect(rid, timeout=20)
    assert time.monotonic() - t0 < 5
    assert reply["k"] == "err"
    assert reply["error"]["type"] == "CallCancelled"
    assert reply["error"]["bases"] == ["Exception"]
    assert all(e["rid"] == rid for e in events)
    # Cancel of a finished request finds nothing; the instance takes new work.
    assert wire.ok("cancel", target=rid) == {"found": False}
    assert wire.ok("cancel", target=987654) == {"found": False}
    assert wire.call("km", "partial_fit", X=small_X()) is None


def test_cancel_a_queued_call(wire, long_X):
    wire.init("km", **LONG_FIT)
    running = wire.send("call", id="km", method="fit", args={"X": long_X})
    queued = wire.send("call", id="km", method="fit", args={"X": small_X()})
    wait_for_progress(wire, running)
    assert wire.ok("cancel", target=queued) == {"found": True}
    reply, events = wire.collect(queued, timeout=5)
    assert reply["error"]["type"] == "CallCancelled" and events == []
    wire.ok("cancel", target=running)
    reply, _ = wire.collect(running, timeout=20)
    assert reply["error"]["type"] == "CallCancelled"


def test_dispose_during_a_fit_cancels_it(wire, long_X):
    wire.init("km", **LONG_FIT)
    rid = wire.send("call", id="km", method="fit", args={"X": long_X})
    queued_get = wire.send("get", id="km", attr="cluster_centers_")
    wait_for_progress(wire, rid)
    assert wire.ok("dispose", id="km") is None
    reply, _ = wire.collect(rid, timeout=20)
    assert reply["error"]["type"] == "CallCancelled"
    reply, _ = wire.collect(queued_get, timeout=5)
    assert reply["error"]["type"] == "CallCancelled"
    # The id is free again.
    wire.init("km", n_clusters=2)


def test_calls_on_one_instance_run_in_arrival_order(wire):
    X1, X2 = small_X(1), small_X(2) + 100.0
    wire.init("km", n_clusters=3, random_state=0)
    rids = [
        wire.send("call", id="km", method="fit", args={"X": X1}),
        wire.send("get", id="km", attr="cluster_centers_"),
        wire.send("call", id="km", method="fit", args={"X": X2}),
        wire.send("get", id="km", attr="cluster_centers_"),
    ]
    replies = [wire.collect(rid)[0] for rid in rids]
    assert all(r["k"] == "ok" for r in replies), replies
    first, second = replies[1]["result"], replies[3]["result"]
    assert first.max() < 50 < second.min()  # each get saw the fit queued before it


def reference_verbose_lines(opts, X):
    """The verbose lines the core prints for this fit, captured in-process."""
    lines: list[str] = []
    with call_context(CallContext(on_verbose=lines.append, on_warning=lambda m, c: None)):
        MiniBatchKMeans(**opts).fit(X)
    return lines


def test_concurrent_verbose_fits_each_reach_their_own_caller(connect):
    a, b = connect(), connect()
    jobs = []
    for k, w in enumerate([a, b, a, b, a, b]):
        opts = {
            "n_clusters": 2 + k,
            "random_state": k,
            "verbose": 1,
            "max_iter": 3 + k,
            "init_size": 1 + k,  # < n_clusters: a warning naming this instance's values
        }
        X = small_X(k, n=3000 + 500 * k)
        w.init(f"km{k}", **opts)
        jobs.append((w, k, opts, X))
    rids = [
        (w, w.send("call", id=f"km{k}", method="fit", args={"X": X}), k, opts, X)
        for w, k, opts, X in jobs
    ]
    for w, rid, k, opts, X in rids:
        reply, events = w.collect(rid, timeout=30)
        assert reply["k"] == "ok", reply
        assert reply.get("dropped", 0) == 0
        lines = [e["data"]["line"] for e in events if e["event"] == "verbose"]
        assert lines == reference_verbose_lines(opts, X)
        warnings = [e["data"]["message"] for e in events if e["event"] == "warning"]
        assert len(warnings) == 1
        assert f"init_size={1 + k} should be larger than n_clusters={2 + k}" in warnings[0]


def test_parallel_fits_on_many_instances(connect):
    conns = [connect() for _ in range(3)]
    sent = []
    for i in range(12):
        w = conns[i % 3]
        w.init(f"m{i}", n_clusters=3, random_state=i, n_init=1)
        sent.append(
            (w, i, w.send("call", id=f"m{i}", method="fit_predict", args={"X": small_X(i)}))
        )
    for w, i, rid in sent:
        reply, _ = w.collect(rid, timeout=30)
        ref = MiniBatchKMeans(n_clusters=3, random_state=i, n_init=1).fit_predict(small_X(i))
        np.testing.assert_array_equal(reply["result"], ref)
