"""Unit tests of the player's ring buffer: FIFO order, wrap-around, job end markers, bounds."""

from __future__ import annotations

import threading
import time

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from utterd.daemon.audio.ring_buffer import RingBuffer


def _frames(start: int, count: int) -> npt.NDArray[np.int16]:
    return (np.arange(start, start + count) % 30000 + 1).astype(np.int16)


def test_reads_back_in_order_across_the_wrap() -> None:
    ring = RingBuffer(10)
    assert ring.write("a", _frames(0, 7)) == 7
    out = np.zeros(5, dtype=np.int16)
    assert ring.read_into(out) == (5, ())
    assert ring.write("a", _frames(7, 8)) == 8  # wraps: 2 left + 8 new = 10
    assert ring.free_frames == 0
    got = np.zeros(10, dtype=np.int16)
    assert ring.read_into(got)[0] == 10
    np.testing.assert_array_equal(np.concatenate([out, got]), _frames(0, 15))


def test_write_takes_only_what_fits() -> None:
    ring = RingBuffer(4)
    assert ring.write("a", _frames(0, 6)) == 4
    assert ring.write("a", _frames(4, 2)) == 0
    assert ring.buffered_frames == 4


def test_end_marker_reported_with_the_last_frame() -> None:
    ring = RingBuffer(16)
    ring.write("a", _frames(0, 3))
    ring.end_job("a")
    ring.write("b", _frames(3, 3))
    out = np.zeros(2, dtype=np.int16)
    assert ring.read_into(out) == (2, ())
    assert ring.read_into(out) == (2, ("a",))
    assert ring.read_into(out) == (2, ())
    ring.end_job("b")
    assert ring.read_into(out) == (0, ("b",))


def test_job_without_audio_is_reported_by_an_empty_read() -> None:
    ring = RingBuffer(8)
    ring.end_job("silent")
    assert ring.buffered_frames == 0
    assert ring.read_into(np.zeros(0, dtype=np.int16)) == (0, ("silent",))
    assert ring.read_into(np.zeros(4, dtype=np.int16)) == (0, ())


def test_read_does_not_touch_frames_it_cannot_fill() -> None:
    ring = RingBuffer(8)
    ring.write("a", _frames(0, 2))
    out = np.full(5, -7, dtype=np.int16)
    assert ring.read_into(out)[0] == 2
    np.testing.assert_array_equal(out[2:], [-7, -7, -7])


def test_open_and_ended_frames() -> None:
    ring = RingBuffer(32)
    assert ring.snapshot() == (0, 0, None)
    ring.write("a", _frames(0, 5))
    assert ring.snapshot() == (5, 0, "a")
    ring.end_job("a")
    assert ring.snapshot() == (5, 5, None)
    ring.write("b", _frames(5, 4))
    assert ring.snapshot() == (9, 5, "b")
    ring.read_into(np.zeros(7, dtype=np.int16))
    assert ring.snapshot() == (2, 0, "b")
    ring.read_into(np.zeros(2, dtype=np.int16))
    # Dry while b is still open: the consumer can tell an underrun from the end of the audio.
    assert ring.snapshot() == (0, 0, "b")


def test_clear_drops_everything() -> None:
    ring = RingBuffer(8)
    ring.write("a", _frames(0, 6))
    ring.end_job("a")
    ring.clear()
    assert ring.snapshot() == (0, 0, None)
    assert ring.read_into(np.zeros(8, dtype=np.int16)) == (0, ())
    assert ring.write("b", _frames(0, 8)) == 8


def test_rejects_empty_capacity() -> None:
    with pytest.raises(ValueError, match="capacity_frames"):
        RingBuffer(0)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.sampled_from("abc"), st.integers(0, 40)),
        st.tuples(st.just("end"), st.sampled_from("abc"), st.just(0)),
        st.tuples(st.just("read"), st.just(""), st.integers(0, 40)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 64), ops=_ops)
def test_matches_a_list_model(capacity: int, ops: list[tuple[str, str, int]]) -> None:
    """Any interleaving of writes, ends and reads behaves like a plain list of frames and markers."""
    ring = RingBuffer(capacity)
    model: list[tuple[str, int] | tuple[str, None]] = []  # (job, sample) or (job, None) = end
    counter = 0
    for op, job, size in ops:
        if op == "write":
            frames = _frames(counter, size)
            counter += size
            taken = ring.write(job, frames)
            assert taken == min(size, capacity - sum(1 for _, v in model if v is not None))
            model.extend((job, int(v)) for v in frames[:taken])
        elif op == "end":
            ring.end_job(job)
            model.append((job, None))
        else:
            out = np.zeros(size, dtype=np.int16)
            written, finished = ring.read_into(out)
            expected: list[int] = []
            ended: list[str] = []
            while model:
                head_job, value = model[0]
                if value is None:
                    ended.append(head_job)
                    model.pop(0)
                elif len(expected) < size:
                    expected.append(value)
                    model.pop(0)
                else:
                    break
            assert written == len(expected)
            assert out[:written].tolist() == expected
            assert list(finished) == ended
        assert ring.buffered_frames == sum(1 for _, v in model if v is not None)


def test_one_producer_one_consumer_threads() -> None:
    """Frames cross between threads complete and in order, with end markers in place."""
    ring = RingBuffer(257)
    total = 50_000
    received: list[npt.NDArray[np.int16]] = []
    finished: list[str] = []

    def consume() -> None:
        out = np.zeros(100, dtype=np.int16)
        while not finished:
            written, ended = ring.read_into(out)
            received.append(out[:written].copy())
            finished.extend(ended)
            if written == 0:
                time.sleep(0.0001)  # let the producer have the GIL

    consumer = threading.Thread(target=consume)
    consumer.start()
    sent = 0
    while sent < total:
        taken = ring.write("job", _frames(sent, min(333, total - sent)))
        sent += taken
        if taken == 0:
            time.sleep(0.0001)
    ring.end_job("job")
    consumer.join(timeout=10)
    assert not consumer.is_alive()
    assert finished == ["job"]
    np.testing.assert_array_equal(np.concatenate(received), _frames(0, total))
