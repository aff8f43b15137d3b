"""Hostile input: every defect is a typed ProtocolError, nothing else escapes, nothing crashes."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol
from protocol import (
    DTypeNotAllowed,
    EncodeError,
    LimitExceeded,
    Limits,
    MalformedMessage,
    ProtocolError,
    ShapeMismatch,
    UnknownOperation,
    UnsupportedVersion,
)
from protocol.golden import read_frames, valid_vectors

F8 = np.arange(4.0).tobytes()


def _with_array(payload: list, frames: tuple = (F8,)) -> list:
    head = msgpack.packb({"X": msgpack.ExtType(1, msgpack.packb(payload))})
    return [head, *frames]


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        ([], MalformedMessage),
        ([b""], MalformedMessage),
        ([b"\xc1"], MalformedMessage),
        ([msgpack.packb("just a string")], MalformedMessage),
        ([msgpack.packb({"a": 1}) + b"\x00"], MalformedMessage),
        (["not bytes"], MalformedMessage),
        ([msgpack.packb({1: 2})], MalformedMessage),
        ([msgpack.packb({(1, 2): 2})], MalformedMessage),
        ([msgpack.packb({b"k": 2}, use_bin_type=True)], MalformedMessage),
        ([b"\x82\xa1k\x01\xa1k\x02"], MalformedMessage),
        ([b"\x91" * 70 + b"\xc0"], LimitExceeded),
        ([b"\x91" * 5000 + b"\xc0"], MalformedMessage),  # past msgpack's own stack
        ([b"\xdd\xff\xff\xff\xff"], MalformedMessage),  # declares 4G items, has none
        ([b"\xc6\x7f\xff\xff\xff"], MalformedMessage),  # declares a 2 GiB bin
        (_with_array([1, "<f8", [2, 2]], (F8, F8)), MalformedMessage),
        (_with_array([1, "<f8", [2, 2]], ()), MalformedMessage),
        (_with_array([2, "<f8", [2, 2]]), MalformedMessage),
        (_with_array([-1, "<f8", [2, 2]]), MalformedMessage),
        (_with_array([2**64 - 1, "<f8", [2, 2]]), MalformedMessage),
        (_with_array([True, "<f8", [2, 2]]), MalformedMessage),
        (_with_array([1, "<f8", [True, 4]]), MalformedMessage),
        (_with_array([1, "<f8", [2.0, 2]]), MalformedMessage),
        (_with_array([1, "<f8", "22"]), MalformedMessage),
        (_with_array([1, "<f8", [1] * 33]), MalformedMessage),
        (_with_array([1, "<f8"]), MalformedMessage),
        (_with_array([1, 8, [4]]), DTypeNotAllowed),
        (_with_array([1, "<c16", [2]]), DTypeNotAllowed),
        (_with_array([1, "=f8", [4]]), DTypeNotAllowed),
        (_with_array([1, "O", [4]]), DTypeNotAllowed),
        (_with_array([1, "<f8", [5]]), ShapeMismatch),
        (_with_array([1, "<f8", [2**62, 2**62]]), LimitExceeded),
        (_with_array([1, "<f8", [0, 2**64 - 1]]), LimitExceeded),
        (_with_array([1, "<f8", [2**63] * 32]), LimitExceeded),
    ],
)
def test_bad_frames(frames, error):
    with pytest.raises(error):
        protocol.decode(frames)


@pytest.mark.parametrize(
    "ext",
    [
        msgpack.ExtType(1, b""),
        msgpack.ExtType(1, b"\xc1"),
        msgpack.ExtType(1, b"\x93\x01"),
        msgpack.ExtType(2, msgpack.packb({"path": 3})),
        msgpack.ExtType(2, msgpack.packb([1])),
        msgpack.ExtType(3, msgpack.packb([[2], ["a", 1]])),
        msgpack.ExtType(3, msgpack.packb([[2**63, 0], []])),
        msgpack.ExtType(3, msgpack.packb([[3], ["a"]])),
        msgpack.ExtType(4, b"\xc1"),
        msgpack.ExtType(4, msgpack.packb({"columns": ["a"]})),
        msgpack.ExtType(4, msgpack.packb({"columns": [1], "data": 2})),
        msgpack.ExtType(98, b"\x00" * 12),
        msgpack.ExtType(99, b""),
    ],
)
def test_bad_extension_payloads(ext):
    with pytest.raises(ProtocolError):
        protocol.decode([msgpack.packb({"x": ext})])


@pytest.mark.parametrize("raw", [b"\xd6\xff" + b"\x00" * 4, b"\xd7\xff" + b"\x00" * 8])
def test_msgpack_timestamps_are_refused(raw):
    with pytest.raises(MalformedMessage):
        protocol.decode([b"\x81\xa1x" + raw])
    with pytest.raises(MalformedMessage):
        protocol.decode([b"\x81\xa1x\x91" + raw])


@pytest.mark.parametrize("levels", [1, 20_000])
def test_table_inside_table_is_refused_without_recursing(levels):
    # 20,000 levels fit in a 400 KB header; recursing through msgpack's C
    # unpacker once per level used to overflow the C stack (segfault).
    inner = msgpack.packb({"columns": [], "data": None})
    for _ in range(levels):
        inner = msgpack.packb({"columns": [], "data": msgpack.ExtType(4, inner)})
    with pytest.raises(MalformedMessage):
        protocol.decode([msgpack.packb({"x": msgpack.ExtType(4, inner)})])


def test_limits_on_frames():
    limits = Limits(max_frames=3, max_header_bytes=64, max_array_bytes=16, max_message_bytes=100)
    with pytest.raises(LimitExceeded):
        protocol.decode([b"\x80"] * 4, limits)
    with pytest.raises(LimitExceeded):
        protocol.decode([msgpack.packb({"s": "x" * 100})], limits)
    with pytest.raises(LimitExceeded):
        protocol.decode(protocol.encode({"X": np.zeros(3)}), limits)
    with pytest.raises(LimitExceeded):
        protocol.decode([b"\x80", b"\x00" * 101], limits)
    protocol.decode(protocol.encode({"X": np.zeros(2)}), limits)


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ({"op": "ping", "rid": 1}, MalformedMessage),
        ({"v": True, "op": "ping", "rid": 1}, MalformedMessage),
        ({"v": 2, "op": "ping", "rid": 1}, UnsupportedVersion),
        ({"v": 1, "op": "ping"}, MalformedMessage),
        ({"v": 1, "op": "ping", "rid": 2**63}, MalformedMessage),
        ({"v": 1, "op": "ping", "rid": -1}, MalformedMessage),
        ({"v": 1, "op": "ping", "rid": 1.0}, MalformedMessage),
        ({"v": 1, "op": 7, "rid": 1}, MalformedMessage),
        ({"v": 1, "op": "exec", "rid": 1}, UnknownOperation),
        ({"v": 1, "op": "hello", "rid": 1, "token": "t", "versions": [True]}, MalformedMessage),
        ({"v": 1, "op": "hello", "rid": 1, "token": "t", "versions": "1"}, MalformedMessage),
        ({"v": 0, "op": "hello", "rid": 1, "token": "t", "versions": [1]}, MalformedMessage),
        ({"v": 1, "op": "hello", "rid": 1, "token": 5, "versions": [1]}, MalformedMessage),
        ({"v": 1, "op": "dispose", "rid": 1, "id": ""}, MalformedMessage),
        ({"v": 1, "op": "dispose", "rid": 1, "id": "x" * 129}, MalformedMessage),
        ({"v": 1, "op": "cancel", "rid": 1, "target": 0}, MalformedMessage),
        (
            {"v": 1, "op": "call", "rid": 1, "id": "a", "method": "fit", "args": []},
            MalformedMessage,
        ),
        (
            {"v": 1, "op": "call", "rid": 1, "id": "a", "method": "f", "args": {}, "out": {"a": 1}},
            MalformedMessage,
        ),
        ({"v": 1, "op": "get", "rid": 1, "id": "a", "attr": "x", "out": {}}, MalformedMessage),
    ],
)
def test_bad_requests(header, error):
    with pytest.raises(error):
        protocol.validate_request(header)


def test_hello_is_accepted_in_any_version_and_negotiated():
    header = protocol.request("hello", 1, token="t", versions=[3, 1, 2])
    header["v"] = 3
    assert protocol.validate_request(header) == "hello"
    assert protocol.negotiate_version(header["versions"]) == 1
    with pytest.raises(UnsupportedVersion):
        protocol.negotiate_version([2, 3])


@pytest.mark.parametrize(
    "value",
    [
        {1: "x"},
        {"a": 1, 2: 3},
        {"s": "\udc80"},
        {"o": object()},
        {"c": 1j},
        {"set": {1}},
        {"ref": protocol.DataRef(3)},
        {"big": 2**64},
        {"f2": np.zeros(2, dtype=np.float16)},
        {"dt": np.zeros(2, dtype="datetime64[s]")},
        {"s": np.array([b"x"])},
        {"mixed": np.array(["a", 1], dtype=object)},
    ],
)
def test_unencodable_values_raise_typed_errors(value):
    with pytest.raises((EncodeError, DTypeNotAllowed)):
        protocol.encode(value)


def test_too_deep_to_encode():
    value: list = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(EncodeError):
        protocol.encode({"x": value})


def _decode_and_validate(frames: list) -> None:
    try:
        header = protocol.decode(frames)
        protocol.validate_request(header)
    except ProtocolError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_random_bytes_only_raise_protocol_errors(frames):
    _decode_and_validate(frames)


VECTOR_FRAMES = [read_frames(d) for d in valid_vectors()]


@st.composite
def mutated(draw: st.DrawFn) -> list[bytes]:
    frames = [bytearray(f) for f in draw(st.sampled_from(VECTOR_FRAMES))]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(frames) - 1))
        frame = frames[i]
        action = draw(st.sampled_from(["flip", "set", "cut", "insert", "drop", "dup"]))
        pos = draw(st.integers(0, max(len(frame) - 1, 0)))
        if action == "flip" and frame:
            frame[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and frame:
            frame[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC1, 0xC7, 0xD4, 0xDD, 0xFF]))
        elif action == "cut":
            del frame[pos:]
        elif action == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif action == "drop" and len(frames) > 1:
            frames.pop(i)
        elif action == "dup":
            frames.append(bytearray(frame))
    return [bytes(f) for f in frames]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_vectors_only_raise_protocol_errors(frames):
    _decode_and_validate(frames)
