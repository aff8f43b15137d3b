"""Arrays cross the codec without a copy, both ways, including through real ZeroMQ."""

from __future__ import annotations

import numpy as np
import zmq

import protocol


def test_encode_puts_the_array_itself_in_the_frames():
    arr = np.arange(12.0).reshape(3, 4)
    frames = protocol.encode(protocol.request("call", 1, id="x", method="fit", args={"X": arr}))
    assert frames[1] is arr


def test_encode_copies_only_non_contiguous_input():
    arr = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    frames = protocol.encode({"X": arr})
    assert frames[1] is not arr and frames[1].flags.c_contiguous
    assert not np.shares_memory(frames[1], arr)


def test_decode_views_the_frame_buffer():
    frame = bytearray(np.arange(6.0).tobytes())
    head = protocol.encode({"X": np.zeros(6)})[0]
    got = protocol.decode([head, frame])["X"]
    assert np.shares_memory(got, np.frombuffer(frame, dtype=np.uint8))
    frame[:8] = np.float64(42.0).tobytes()
    assert got[0] == 42.0  # the very same memory


def test_decoded_arrays_of_bytes_frames_are_read_only():
    frames = [memoryview(f).tobytes() for f in protocol.encode({"X": np.arange(3.0)})]
    got = protocol.decode(frames)["X"]
    assert not got.flags.writeable


def test_zero_copy_through_zmq():
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://protocol-zero-copy")
        b.connect("inproc://protocol-zero-copy")
        arr = np.arange(100_000, dtype="<f8").reshape(50_000, 2)
        tracker = a.send_multipart(protocol.encode({"X": arr}), copy=False, track=True)
        frames = b.recv_multipart(copy=False)
        got = protocol.decode(frames)["X"]
        np.testing.assert_array_equal(got, arr)
        assert np.shares_memory(got, np.frombuffer(frames[1].buffer, dtype=np.uint8))
        # Over inproc the receiver views the sender's memory: ZeroMQ is done with
        # ``arr`` only once the received frame is gone (why senders must not mutate).
        assert not tracker.done
        del got, frames
        tracker.wait(5)
    finally:
        a.close(0)
        b.close(0)
