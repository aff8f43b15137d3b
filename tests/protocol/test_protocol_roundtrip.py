"""Round trips: ``decode(encode(v))`` gives ``v`` back, canonically, for every wire value."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from protocol_test_helpers import assert_same, canonical

import protocol
from protocol import ALLOWED_DTYPES, DataRef

DTYPES = sorted(ALLOWED_DTYPES)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)

arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), SHAPES, elements=None if dt[1] != "f" else None)
)


@st.composite
def laid_out_arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays in every memory layout: C, Fortran, strided, reversed, transposed."""
    arr = draw(arrays)
    layout = draw(st.sampled_from(["c", "fortran", "transpose", "step", "reverse"]))
    if layout == "fortran":
        return np.asfortranarray(arr)
    if layout == "transpose":
        return arr.T
    if layout == "step" and arr.ndim:
        return np.repeat(arr, 2, axis=0)[::2]
    if layout == "reverse" and arr.ndim:
        return arr[::-1]
    return arr


string_arrays = hnp.arrays(np.dtype(object), SHAPES, elements=st.text(max_size=5), fill=st.just(""))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.binary(max_size=20)
    | st.builds(DataRef, st.text(min_size=1, max_size=10))
)
values = st.recursive(
    scalars | laid_out_arrays() | string_arrays,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def roundtrip(value: object) -> object:
    frames = protocol.encode({"result": value})
    assert len(frames) <= protocol.Limits().max_frames
    as_bytes = [memoryview(f).tobytes() for f in frames]
    return protocol.decode(as_bytes)["result"]


@settings(max_examples=300, deadline=None)
@given(values)
def test_roundtrip(value):
    assert_same(roundtrip(value), canonical(value))


@settings(max_examples=150, deadline=None)
@given(values)
def test_encoding_is_canonical_and_stable(value):
    once = [memoryview(f).tobytes() for f in protocol.encode({"x": value})]
    again = [memoryview(f).tobytes() for f in protocol.encode(protocol.decode(once))]
    assert once == again


@settings(max_examples=100, deadline=None)
@given(laid_out_arrays())
def test_any_layout_goes_out_c_ordered_with_equal_values(arr):
    frames = protocol.encode({"a": arr})
    assert len(frames) == 2
    sent = frames[1]
    assert sent.flags.c_contiguous
    assert sent.shape == arr.shape and sent.tobytes() == arr.tobytes(order="C")
    if arr.flags.c_contiguous:
        assert sent is arr


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.none() | st.integers(-5, 5), max_size=8))
def test_missing_and_nil_keys_survive(opts):
    got = protocol.decode(protocol.encode({"opts": opts}))["opts"]
    assert set(got) == set(opts)
    for key, value in opts.items():
        assert got[key] is None if value is None else got[key] == value


@pytest.mark.parametrize(
    "n",
    [0, 127, 128, 255, 256, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
    + [-1, -32, -33, -128, -129, -(2**15), -(2**15) - 1, -(2**31), -(2**31) - 1, -(2**63)],
)
def test_int_boundaries(n):
    assert_same(roundtrip(n), n)
    assert_same(roundtrip(np.int64(n) if -(2**63) <= n < 2**63 else n), n)


@pytest.mark.parametrize("n", [2**64, -(2**63) - 1, 10**30])
def test_ints_beyond_64_bits_refused(n):
    with pytest.raises(protocol.EncodeError):
        protocol.encode({"n": n})


def test_int_widths_are_shortest():
    import msgpack

    for n in [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32, -1, -32, -33, -129, -(2**31) - 1]:
        assert protocol.encode({"n": n})[0] == msgpack.packb({"n": n})


def test_floats_are_float64_and_nan_canonical():
    head = protocol.encode({"x": np.float32(0.5), "y": float("-nan"), "z": 2.0})[0]
    assert head.count(b"\xcb") == 3 and b"\xca" not in head
    assert b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00" in head  # -nan sent as the quiet NaN
    got = protocol.decode([head])
    assert math.isnan(got["y"]) and got["z"] == 2.0 and isinstance(got["z"], float)


def test_bool_is_not_int():
    got = protocol.decode(protocol.encode({"a": True, "b": 1, "c": np.bool_(False)}))
    assert got["a"] is True and type(got["b"]) is int and got["c"] is False


def test_keys_sorted_by_utf8_bytes():
    head = protocol.encode({"é": 1, "z": 2, "Z": 3, "": 4, "ab": 5})[0]
    keys = list(protocol.decode([head]))
    assert keys == sorted(keys, key=lambda k: k.encode())


def test_frames_numbered_depth_first_in_key_order():
    a, b, c = np.zeros(1), np.ones(2), np.full(3, 2.0)
    frames = protocol.encode({"z": a, "m": {"y": b, "b": [c]}})
    assert frames[1] is c and frames[2] is b and frames[3] is a
