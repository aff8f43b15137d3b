"""Strict value comparison for protocol tests (``True != 1``, NaN == NaN, dtypes exact)."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from protocol import DataRef


def canonical(value: Any) -> Any:
    """What ``decode(encode(value))`` should give: tuples as lists, NumPy scalars as Python."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OU":
            out = np.empty(value.size, dtype=object)
            out[:] = [str(s) for s in value.reshape(-1).tolist()]
            return out.reshape(value.shape)
        return value.copy(order="C")
    if isinstance(value, np.generic):
        return canonical(value.item())
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    return value


def assert_same(got: Any, want: Any, path: str = "$") -> None:
    """Assert ``got`` and ``want`` are the same wire value, strictly."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), path
        assert got.shape == want.shape, path
        if want.dtype == object:
            assert got.dtype == object, path
            assert got.reshape(-1).tolist() == want.reshape(-1).tolist(), path
            return
        assert got.dtype.str == want.dtype.str, (path, got.dtype.str, want.dtype.str)
        assert got.tobytes() == want.tobytes(), path
        return
    assert type(got) is type(want), (path, type(got), type(want))
    if isinstance(want, float):
        if math.isnan(want):
            assert math.isnan(got), path
        else:
            assert struct.pack("<d", got) == struct.pack("<d", want), (path, got, want)
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, dict):
        assert list(got) == sorted(want), path
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}")
    else:
        assert got == want or (isinstance(want, DataRef) and got.path == want.path), path
