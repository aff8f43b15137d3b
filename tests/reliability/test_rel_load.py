"""Load: many clients with many instances at once; no lost or misrouted reply."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

_path = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"
_spec = importlib.util.spec_from_file_location("skbridge_load", _path)
assert _spec is not None and _spec.loader is not None
load = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = load  # dataclasses look their module up there
_spec.loader.exec_module(load)


def test_misrouted_replies_are_detected():
    _, probes, truth = load.instance_data(3)
    stats = load.ClientStats()
    good = np.array([0, 1, 0, 1, 0, 1])
    load._check(3, good, truth, truth, stats)
    assert not stats.misrouted
    load._check(3, good, load.instance_data(4)[2], truth, stats)  # another instance's centres
    load._check(3, good[:5], truth, truth, stats)  # another instance's predictions
    load._check(3, 1 - good, truth[::-1], truth, stats)  # consistent with swapped centres: fine
    assert len(stats.misrouted) == 2


def test_small_load_has_no_errors_and_no_misrouted_replies(server):
    result = load.run_load(server.endpoint, server.token, clients=8, instances=3, duration=3.0)
    print(result.report())
    assert result.errors == 0, result.first_errors
    assert result.misrouted == 0, result.first_errors
    assert result.requests > 8 * 3 * 3


def test_an_endless_verbose_fit_does_not_starve_other_clients(launch):
    # A neighbour runs an endless verbose fit of 64-row batches and reads its
    # events, thousands a second, from a worker that holds the GIL almost all
    # the time. Every other request gives the GIL away at each socket call and
    # BLAS product and waits for it back, and its reply queued behind the
    # events: requests here once took 3-9 s (p50) and up to 25 s.
    srv = launch("--workers", "2")
    result = load.run_load(srv.endpoint, srv.token, clients=4, instances=2, duration=3.0, noisy=1)
    print(result.report())
    assert result.errors == 0, result.first_errors
    assert result.misrouted == 0, result.first_errors
    assert result.noisy_messages > 0  # the neighbour ran and read its events
    assert result.max_ms < 5000  # everyone else is served meanwhile
