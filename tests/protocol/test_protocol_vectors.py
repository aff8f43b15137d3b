"""Golden vectors: each decodes to its described value and re-encodes byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from protocol_test_helpers import assert_same

import protocol
from protocol.golden import from_json, invalid_vectors, read_frames, to_json, valid_vectors

VALID = valid_vectors()
INVALID = invalid_vectors()


def _described(directory: Path) -> object:
    return json.loads((directory / "decoded.json").read_text(encoding="utf-8"))


def test_vectors_exist():
    assert len(VALID) >= 60 and len(INVALID) >= 25


@pytest.mark.parametrize("directory", VALID, ids=lambda p: p.name)
def test_decodes_to_described_value(directory: Path):
    header = protocol.decode(read_frames(directory))
    assert to_json(header) == _described(directory)
    assert_same(header, from_json(_described(directory)))


@pytest.mark.parametrize("directory", VALID, ids=lambda p: p.name)
def test_encodes_canonically(directory: Path):
    frames = protocol.encode(from_json(_described(directory)))
    assert [memoryview(f).tobytes() for f in frames] == read_frames(directory)


@pytest.mark.parametrize("directory", VALID, ids=lambda p: p.name)
def test_each_vector_is_a_valid_message(directory: Path):
    header = protocol.decode(read_frames(directory))
    if "op" in header:
        assert protocol.validate_request(header) == header["op"]
    else:
        assert protocol.reply_kind(header) == header["k"]


@pytest.mark.parametrize("directory", INVALID, ids=lambda p: p.name)
def test_invalid_vector_is_refused_with_its_error(directory: Path):
    expect = json.loads((directory / "expect.json").read_text(encoding="utf-8"))
    error = getattr(protocol, expect["error"])
    frames = read_frames(directory)
    if expect["stage"] == "decode":
        with pytest.raises(error):
            protocol.decode(frames)
    else:
        header = protocol.decode(frames)
        with pytest.raises(error):
            protocol.validate_request(header)


def test_index_lists_every_vector():
    index = json.loads((protocol.golden.VECTORS_DIR / "index.json").read_text())
    assert sorted(index["valid"]) == [p.name for p in VALID]
    assert sorted(index["invalid"]) == [p.name for p in INVALID]
