"""Which calls the server answers on its loop thread, and which go to a worker."""

from __future__ import annotations

import numpy as np

from bridge_server import dispatch
from bridge_server.core import MiniBatchKMeans
from protocol import DataRef, Table

SPECS = MiniBatchKMeans._schema.methods


def test_calls_that_carry_data_never_run_on_the_loop_thread() -> None:
    score = SPECS["score"]
    for X in (
        np.zeros((3, 2)),
        [[0.0, 1.0], [2.0, 3.0]],  # an array that came as msgpack lists
        DataRef("x.npy"),
        Table(columns=["a", "b"], data=np.zeros((3, 2)), index=None),
    ):
        assert not dispatch.is_cheap(score, {"X": X}), type(X)


def test_calls_without_data_are_answered_inline() -> None:
    assert dispatch.is_cheap(SPECS["get_params"], {"deep": True})
    assert dispatch.is_cheap(SPECS["set_fit_request"], {"sample_weight": True})
    assert not dispatch.is_cheap(SPECS["fit"], {})  # long-running, whatever its arguments
