"""The player's pause, resume and marks, on the fake PortAudio of tests/fakes.py (no sound device):
a pause holds at the next piece (chunk) boundary and drops nothing; marks come back when their
chunk starts to play."""

from __future__ import annotations

import time

import numpy as np
from fakes import FAKE_BLOCK_FRAMES as BLOCK_FRAMES
from fakes import FakeSoundDevice, fake_sd_fixture  # noqa: F401  # the fixture fake_sd
from fakes import PlayerEvents as Events
from fakes import noise_chunk as _noise
from fakes import noise_pcm as _pcm
from fakes import start_player as _player
from fakes import wait_until as _wait


def test_fake_pause_holds_at_the_next_piece_and_resume_loses_nothing(
    fake_sd: FakeSoundDevice,
) -> None:
    events = Events()
    player = _player(events)
    try:
        player.mark_next("a", "first")
        player.play("a", _noise(1000, 1))
        player.mark_next("a", "second")
        player.play("a", _noise(700, 2))
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)
        stream.pump(max_blocks=1)  # 256 frames of the first piece are out
        player.pause("a")
        stream.pump()  # the rest of the first piece, silence while the device drains, then stop
        _wait(lambda: ("paused", "a") in events.kinds())
        assert not stream.active, "a held stream stops"
        heard = stream.output()
        np.testing.assert_array_equal(heard[:1000], _pcm(1000, 1))
        assert not heard[1000:].any(), "nothing of the second piece plays while paused"
        marks = [e.mark for e in events.items if e.kind == "mark"]
        assert marks == ["first"], "the second piece's mark waits for its audio"
        player.play("a", _noise(300, 3))  # synthesis goes on into the ring while paused
        player.end_job("a")
        time.sleep(0.05)
        assert not stream.active, "audio arriving during a pause does not restart the stream"
        player.resume("a")
        _wait(lambda: stream.active)
        stream.pump()
        _wait(lambda: ("played", "a") in events.kinds())
        kinds = events.kinds()
        assert kinds.index(("paused", "a")) < kinds.index(("resumed", "a"))
        assert kinds.index(("resumed", "a")) < kinds.index(("played", "a"))
        assert [e.mark for e in events.items if e.kind == "mark"] == ["first", "second"]
        out = stream.output()
        expected = np.concatenate([_pcm(1000, 1), _pcm(700, 2), _pcm(300, 3)])
        np.testing.assert_array_equal(out[out != 0], expected)
        assert player.state.underruns == 0, "a pause is not an underrun"
    finally:
        player.close()


def test_fake_pause_of_a_job_that_ends_first_has_no_effect(
    fake_sd: FakeSoundDevice,
) -> None:
    events = Events()
    player = _player(events)
    try:
        player.play("a", _noise(600, 1))
        player.end_job("a")
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)
        stream.pump(max_blocks=1)
        player.pause("a")  # no piece of "a" is left: the job simply ends
        stream.pump()
        _wait(lambda: ("played", "a") in events.kinds())
        player.play("b", _noise(400, 2))
        player.end_job("b")
        _wait(lambda: stream.active)
        stream.pump()
        _wait(lambda: ("played", "b") in events.kinds())
        assert ("paused", "a") not in events.kinds()
    finally:
        player.close()


def test_fake_flush_while_paused_drops_the_rest_and_the_next_job_plays(
    fake_sd: FakeSoundDevice,
) -> None:
    events = Events()
    player = _player(events)
    try:
        player.pause("a")  # before any audio: holds before the first piece
        player.play("a", _noise(2000, 1))
        stream = fake_sd.streams[-1]
        _wait(lambda: ("paused", "a") in events.kinds() or stream.active)
        stream.pump()
        _wait(lambda: ("paused", "a") in events.kinds())
        assert not stream.output().any(), "nothing of a job paused before its first piece plays"
        player.flush()
        _wait(lambda: ("flushed", "a") in events.kinds())
        player.play("b", _noise(BLOCK_FRAMES * 2, 2))
        player.end_job("b")
        _wait(lambda: stream.active)
        stream.pump()
        _wait(lambda: ("played", "b") in events.kinds())
        out = stream.output()
        np.testing.assert_array_equal(out[out != 0], _pcm(BLOCK_FRAMES * 2, 2))
        assert ("resumed", "a") not in events.kinds()
    finally:
        player.close()
