"""The player on real PortAudio devices without a sound card: the ALSA file sink (what was
played, byte-exact) and the PulseAudio null sink (when it was heard). Each case runs the player in
a subprocess (tests/player_driver.py), because ALSA reads ~/.asoundrc when PortAudio starts.

Start-up silence: PortAudio's ALSA host API writes one device buffer of zeros each time a
callback stream starts (768 frames at 20 ms / 256-frame blocks); the file sink records it before
the audio of every (re)start. Checks below allow exactly that and nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from audio_sinks import (
    PulseNullSink,
    file_sink_env,
    nonsilent_bounds,
    read_s16,
    strip_start_silences,
)
from fakes import FakeSoundDevice, fake_sd_fixture  # noqa: F401  # the fixture fake_sd
from fakes import PlayerEvents as Events
from fakes import noise_chunk as _noise
from fakes import noise_pcm as _pcm
from fakes import start_player as _player
from fakes import wait_until as _wait
from player_driver import nonzero_signal, run_driver
from utterd.daemon.audio.player import DeviceUnavailable, Player, PlayerEvent
from utterd.daemon.settings import AudioSettings
from utterd.models.voice import AudioChunk, CancelToken, float_to_pcm16

BLOCK_FRAMES = 256
START_SILENCE_MAX_FRAMES = 4 * BLOCK_FRAMES
"""Upper bound of PortAudio's start-up silence for the driver's 20 ms latency."""

RATE_HZ = 22050


def _zero_runs(samples: npt.NDArray[np.int16]) -> list[tuple[int, int]]:
    """(start, length) of every run of zero samples."""
    zero = np.concatenate([[0], (samples == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _expected_noise(sizes: list[int]) -> npt.NDArray[np.int16]:
    return np.concatenate([float_to_pcm16(nonzero_signal(n, seed=i)) for i, n in enumerate(sizes)])


def _assert_exact_with_start_silences(
    played: npt.NDArray[np.int16], expected: npt.NDArray[np.int16], restarts: int
) -> None:
    """`played` is `expected` with only start-up silences and a final partial-block padding."""
    assert not (expected == 0).any()
    np.testing.assert_array_equal(played[played != 0], expected)
    stripped = strip_start_silences(played, expected, BLOCK_FRAMES)
    np.testing.assert_array_equal(stripped[: len(expected)], expected)
    runs = _zero_runs(played)
    trailing = runs.pop() if runs and runs[-1][0] + runs[-1][1] == len(played) else (0, 0)
    assert trailing[1] < BLOCK_FRAMES, f"more than one partial block of padding: {trailing}"
    assert runs and runs[0][0] == 0, "a stream start writes silence first"
    assert len(runs) <= 1 + restarts, f"silence inside the audio beyond restarts: {runs}"
    assert all(length <= START_SILENCE_MAX_FRAMES for _, length in runs), runs


def _events(result: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in result["events"] if e["kind"] == kind]


# -- ALSA file sink --------------------------------------------------------------------------------


@pytest.mark.audio
@pytest.mark.parametrize("sizes", [[10000, 7777], [1024, 512]])
def test_file_sink_holds_exactly_the_samples_in_order(tmp_path: Path, sizes: list[int]) -> None:
    env, sink = file_sink_env(tmp_path)
    result, stderr = run_driver(env, "chunks", "--sizes", *map(str, sizes))
    assert result["played"]
    assert [
        (e["kind"], e["job_id"])
        for e in result["events"]
        if e["kind"] not in ("underrun", "started")
    ] == [
        ("played", "job-1"),
        ("played", "job-empty"),  # a job without audio still gets its "played", in order
    ]
    assert {e["thread"] for e in result["events"]} == {"utterd-player-events"}
    assert result["state"]["sample_rate_hz"] == RATE_HZ
    _assert_exact_with_start_silences(
        read_s16(sink), _expected_noise(sizes), result["stream_starts"] - 1
    )
    assert result["threads_after_close"] == []
    assert "Traceback" not in stderr


SLOW_SIZES = [3000, 4410, 2000]
"""Chunks 0.3 s apart, each running dry before the next comes (what is left of a partial block
is held back until more of the job comes)."""


@pytest.mark.audio
def test_file_sink_slow_synthesis_counts_no_underruns_and_inserts_no_silence(
    tmp_path: Path,
) -> None:
    """The file sink takes audio faster than real time: it runs dry after every chunk of a job
    still being synthesized, and nobody hears a gap. Counting those made every job on it look
    faulty in `status` and the INFO log (issue 16, finding 9)."""
    env, sink = file_sink_env(tmp_path)
    result, stderr = run_driver(env, "slow", "--sizes", *map(str, SLOW_SIZES), "--pause-s", "0.3")
    assert result["played"]
    assert result["state"]["underruns"] == 0
    assert not _events(result, "underrun")
    restarts = result["stream_starts"] - 1
    assert restarts == len(SLOW_SIZES), "the stream ran dry after each chunk and started again"
    _assert_exact_with_start_silences(read_s16(sink), _expected_noise(SLOW_SIZES), restarts)
    assert "Traceback" not in stderr


@pytest.mark.audio
def test_file_sink_resamples_24k_to_the_22k_device(tmp_path: Path) -> None:
    env, sink = file_sink_env(tmp_path)
    freq_hz, duration_s, in_rate_hz = 1000.0, 2.0, 24000
    result, _ = run_driver(
        env,
        "resample",
        "--chunk-rate",
        str(in_rate_hz),
        "--freq-hz",
        str(freq_hz),
        "--duration-s",
        str(duration_s),
    )
    assert result["played"]
    assert result["state"]["sample_rate_hz"] == RATE_HZ
    played = read_s16(sink)
    keep = np.ones(len(played), dtype=bool)
    for start, length in _zero_runs(played):
        if length >= 16:  # start-up silences and padding; a sine has no such runs
            keep[start : start + length] = False
    signal = played[keep].astype(np.float64)
    ratio = len(signal) / result["input_frames"]
    assert ratio == pytest.approx(RATE_HZ / in_rate_hz, rel=2e-3)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    peak_hz = np.argmax(spectrum) * RATE_HZ / len(signal)
    assert peak_hz == pytest.approx(freq_hz, abs=1.0)
    assert np.abs(signal).max() == pytest.approx(0.5 * 32767, rel=0.03)


# -- no device ----------------------------------------------------------------------------------


@pytest.mark.audio
def test_missing_device_is_reported_and_play_raises(tmp_path: Path) -> None:
    env, _ = file_sink_env(tmp_path)
    result, stderr = run_driver(
        env,
        "no-device",
        "--device",
        "no-such-device-xyz",
        "--retry-interval-s",
        "0.2",
        "--linger-s",
        "0.7",
    )
    state = result["state_at_start"]
    assert state["available"] is False
    assert state["sample_rate_hz"] is None
    assert "no-such-device-xyz" in state["error"]
    devices = _events(result, "device")
    assert len(devices) == 1, "retries that fail the same way are not re-announced"
    assert devices[0]["available"] is False and "no-such-device-xyz" in devices[0]["error"]
    assert result["play_raised"]["code"] == "device-unavailable"
    assert "no-such-device-xyz" in result["play_raised"]["message"]
    assert result["job_flushed"], "end_job while unavailable still ends the job"
    assert result["threads_after_close"] == []
    assert "Traceback" not in stderr


@pytest.mark.audio
def test_missing_portaudio_names_the_package(tmp_path: Path) -> None:
    env, _ = file_sink_env(tmp_path)
    result, stderr = run_driver(env, "no-device", "--no-portaudio")
    assert result["state"]["available"] is False
    assert "libportaudio2" in result["state"]["error"]
    assert "libportaudio2" in _events(result, "device")[0]["error"]
    assert result["play_raised"]["code"] == "device-unavailable"
    assert "Traceback" not in stderr


# -- PulseAudio null sink (real time) -------------------------------------------------------------


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseNullSink]:
    with PulseNullSink(tmp_path_factory.mktemp("pulse")) as sink:
        yield sink


def _loud_spans(samples: npt.NDArray[np.int16], min_gap_s: float = 0.1) -> list[tuple[int, int]]:
    """(start, end) of the audible stretches separated by at least min_gap_s of quiet."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 100)
    if len(loud) == 0:
        return []
    breaks = np.flatnonzero(np.diff(loud) > min_gap_s * RATE_HZ)
    starts = [loud[0], *loud[breaks + 1]]
    ends = [*(loud[breaks] + 1), loud[-1] + 1]
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


@pytest.mark.audio
def test_pulse_flush_silences_within_50_ms_and_next_play_works(
    pulse: PulseNullSink, tmp_path: Path
) -> None:
    recording_path = tmp_path / "played.raw"
    with pulse.record(recording_path) as recording:
        result, stderr = run_driver(pulse.env, "flush", "--duration-s", "3", "--flush-after-s", "1")
    played = read_s16(recording_path)
    spans = _loud_spans(played)
    assert len(spans) == 2, spans
    (start1, end1), (start2, end2) = spans

    # flush() itself returns at once.
    assert result["t_flushed_s"] - result["t_flush_s"] < 0.05
    # As much tone was heard as time passed between play and flush, give or take 50 ms: the
    # start-up latency only makes the heard tone shorter, never longer.
    heard_s = (end1 - start1) / RATE_HZ
    elapsed_s = result["t_flush_s"] - result["t_play_s"]
    assert heard_s - elapsed_s < 0.05, (heard_s, elapsed_s)
    assert heard_s > elapsed_s - 0.1, "the tone should have played until the flush"
    # On the recording's own clock (an upper bound of when each sample was rendered), the tone
    # ended within 50 ms of the flush call.
    stop_latency_s = recording.sample_time_s(end1) - result["t_flush_s"]
    assert stop_latency_s < 0.05, stop_latency_s

    assert result["flushed_event"] and result["played2"]
    assert [e["job_id"] for e in _events(result, "flushed")] == ["job-long"]
    assert not any(e["job_id"] == "job-long" for e in _events(result, "played"))
    # The second tone is heard in full after the flush (the null sink drops ~4 ms at a start).
    assert recording.sample_time_s(start2) > result["t_play2_s"] - 0.01
    assert (end2 - start2) / RATE_HZ == pytest.approx(0.5, abs=0.02)
    assert "Traceback" not in stderr


@pytest.mark.audio
def test_pulse_back_pressure_blocks_play_until_flush(pulse: PulseNullSink, tmp_path: Path) -> None:
    result, _ = run_driver(
        pulse.env,
        "backpressure",
        "--max-buffered-s",
        "0.5",
        "--duration-s",
        "5",
        "--flush-after-s",
        "0.8",
    )
    assert result["blocked_until_flush"], "5 s of audio into a 0.5 s buffer must wait for room"
    assert result["t_returned_s"] - result["t_flush_s"] < 0.1, "flush releases a blocked play"
    assert result["flushed_event"]


@pytest.mark.audio
def test_pulse_a_small_first_chunk_waits_for_the_next_instead_of_running_dry(
    pulse: PulseNullSink,
) -> None:
    """PortAudio fills the device buffer and a block at once when the stream starts (768 frames
    here); hibari's first window (1200 samples at 24 kHz) leaves the 22.05 kHz resampler as 734
    frames. Started on that alone, the stream ran dry at once and the next chunk, 10 ms later,
    was an underrun."""
    result, stderr = run_driver(
        pulse.env,
        "streamed",
        "--chunk-rate",
        "24000",
        "--sizes",
        "1200",
        "2400",
        "4800",
        "9600",
        "--pause-s",
        "0.01",
    )
    assert result["played"], stderr
    assert result["state"]["underruns"] == 0
    assert not _events(result, "underrun")


@pytest.mark.audio
def test_pulse_slow_synthesis_counts_each_gap_as_an_underrun(pulse: PulseNullSink) -> None:
    """On a device that plays in real time each dry spell inside a job is a gap heard."""
    result, stderr = run_driver(
        pulse.env, "slow", "--sizes", *map(str, SLOW_SIZES), "--pause-s", "0.3"
    )
    assert result["played"], stderr
    assert result["state"]["underruns"] == len(SLOW_SIZES)
    assert [e["job_id"] for e in _events(result, "underrun")] == ["job-slow"] * len(SLOW_SIZES)


@pytest.mark.audio
def test_pulse_tail_of_a_job_is_heard(pulse: PulseNullSink, tmp_path: Path) -> None:
    """PortAudio's drain on ALSA drops the device buffer; the player must not lose the tail."""
    recording_path = tmp_path / "played.raw"
    with pulse.record(recording_path):
        result, _ = run_driver(pulse.env, "chunks", "--sizes", "11025", "--linger-s", "0.3")
    assert result["played"]
    bounds = nonsilent_bounds(read_s16(recording_path), threshold=0)
    assert bounds is not None
    heard_s = (bounds[1] - bounds[0]) / RATE_HZ
    assert heard_s == pytest.approx(0.5, abs=0.01)


# -- the player's logic against a scripted PortAudio (in-process) ------------------------------


def test_fake_jobs_play_back_to_back_and_the_stream_stops_when_idle(
    fake_sd: FakeSoundDevice,
) -> None:
    events = Events()
    player = _player(events)
    try:
        player.play("a", _noise(1000, 1))
        player.end_job("a")
        player.play("b", _noise(300, 2))
        player.end_job("b")
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)
        stream.pump()
        _wait(lambda: len(events.kinds()) == 2)
        assert events.kinds() == [("played", "a"), ("played", "b")]
        started = [e for e in events.items if e.kind == "started"]
        assert [e.job_id for e in started] == ["a", "b"], "each job's first sample is reported"
        assert all(e.at_s is not None and e.at_s <= time.monotonic() for e in started)
        order = [(e.kind, e.job_id) for e in events.items]
        assert order.index(("started", "a")) < order.index(("played", "a"))
        out = stream.output()
        expected = np.concatenate([_pcm(1000, 1), _pcm(300, 2)])
        np.testing.assert_array_equal(out[: len(expected)], expected)
        assert len(out) - len(expected) < BLOCK_FRAMES and not out[len(expected) :].any()
        time.sleep(0.05)
        assert not stream.active and stream.pump() == 0, "an idle stream must not run"
        player.end_job("silent")  # no audio at all: played without starting the stream
        _wait(lambda: ("played", "silent") in events.kinds())
        assert stream.starts == 1
    finally:
        player.close()


def test_fake_underrun_plays_the_tail_then_resumes_without_losing_frames(
    fake_sd: FakeSoundDevice,
) -> None:
    fake_sd.delay_s = 0.03  # a device that buffers 30 ms: its drain would drop that much
    events = Events()
    player = _player(events)
    try:
        player.play("a", _noise(600, 1))  # two blocks and 88 frames held back
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)
        stream.pump()
        assert not stream.active
        out = stream.output()
        np.testing.assert_array_equal(out[:512], _pcm(600, 1)[:512])
        tail_blocks = len(out) // BLOCK_FRAMES - 2
        # Silence until the last sample's DAC time (30 ms + one block) has passed, then stop.
        assert tail_blocks == 4 and not out[512:].any()
        assert player.state.underruns == 0, "no gap yet: the job may just be ending"
        player.play("a", _noise(200, 2))
        _wait(lambda: stream.active)
        assert player.state.underruns == 1
        player.end_job("a")
        stream.pump()
        _wait(lambda: ("played", "a") in events.kinds())
        assert events.kinds() == [("underrun", "a"), ("played", "a")]
        heard = stream.output()
        np.testing.assert_array_equal(
            heard[heard != 0], np.concatenate([_pcm(600, 1), _pcm(200, 2)])
        )
    finally:
        player.close()


def _pump_back_to_back(stream: Any) -> None:
    """Run a fake stream as a device faster than real time does (the ALSA file sink): blocks
    taken one after the other while the stream clock stands still."""
    clock_s = stream.now_s
    while stream.active:
        stream.pump(max_blocks=1)
        stream.now_s = clock_s


def test_fake_device_faster_than_real_time_counts_no_underrun(
    fake_sd: FakeSoundDevice,
) -> None:
    """The dry spell of the test above on a device that is not real time: no gap is heard,
    so none is counted or reported; the next device opened is judged afresh."""
    events = Events()
    player = _player(events)
    try:
        player.play("a", _noise(600, 1))  # two blocks and 88 frames held back
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)
        _pump_back_to_back(stream)
        player.play("a", _noise(200, 2))
        player.end_job("a")
        _wait(lambda: stream.active)
        _pump_back_to_back(stream)
        _wait(lambda: ("played", "a") in events.kinds())
        assert player.state.underruns == 0
        assert events.kinds() == [("played", "a")]
        heard = stream.output()
        np.testing.assert_array_equal(
            heard[heard != 0], np.concatenate([_pcm(600, 1), _pcm(200, 2)])
        )
        player.play("b", _noise(2000, 3))
        _wait(lambda: stream.active)
        stream.die()  # lost while playing; reopened as a real-time device, whose gaps count
        _wait(lambda: len(fake_sd.streams) == 2 and player.state.available)
        stream = fake_sd.streams[-1]
        player.play("c", _noise(600, 4))
        _wait(lambda: stream.active)
        stream.pump()
        player.play("c", _noise(200, 5))
        _wait(lambda: player.state.underruns == 1)
        _wait(lambda: ("underrun", "c") in events.kinds())
    finally:
        player.close()


def test_fake_stream_starts_once_the_device_buffer_and_two_blocks_wait(
    fake_sd: FakeSoundDevice,
) -> None:
    events = Events()
    player = _player(events)  # 20 ms at 22050 Hz: 441 frames, + 2 blocks = 953 to start
    try:
        player.play("a", _noise(600, 1))
        stream = fake_sd.streams[-1]
        time.sleep(0.04)
        assert not stream.active, "600 frames are less than the device takes at a start"
        player.play("a", _noise(600, 2))
        _wait(lambda: stream.active)
        player.end_job("a")
        stream.pump()
        _wait(lambda: ("played", "a") in events.kinds())
        assert player.state.underruns == 0
        heard = stream.output()
        np.testing.assert_array_equal(
            heard[heard != 0], np.concatenate([_pcm(600, 1), _pcm(600, 2)])
        )
    finally:
        player.close()


def test_fake_first_audio_waits_at_most_a_tenth_of_a_second(fake_sd: FakeSoundDevice) -> None:
    events = Events()
    player = _player(events)
    try:
        started = time.monotonic()
        player.play("a", _noise(600, 1))  # nothing more comes for now: a slow engine
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)
        assert 0.09 < time.monotonic() - started < 0.6
        # A whole job shorter than the threshold starts at once.
        player.end_job("a")
        stream.pump()
        _wait(lambda: ("played", "a") in events.kinds())
        started = time.monotonic()
        player.play("b", _noise(300, 2))
        player.end_job("b")
        _wait(lambda: fake_sd.streams[-1].active or ("played", "b") in events.kinds())
        assert time.monotonic() - started < 0.09
    finally:
        player.close()


def test_fake_job_that_ends_when_dry_is_no_underrun(fake_sd: FakeSoundDevice) -> None:
    events = Events()
    player = _player(events)
    try:
        player.play("a", _noise(512, 1))  # exactly two blocks
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)
        stream.pump()
        player.end_job("a")
        _wait(lambda: ("played", "a") in events.kinds())
        assert player.state.underruns == 0
    finally:
        player.close()


def test_fake_flush_drops_everything_and_late_audio_of_the_job(
    fake_sd: FakeSoundDevice,
) -> None:
    events = Events()
    player = _player(events)
    try:
        player.play("a", _noise(5000, 1))
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)
        stream.pump(max_blocks=2)
        player.flush()
        assert not stream.active and stream.stopped, "flush aborts the stream"
        _wait(lambda: ("flushed", "a") in events.kinds())
        assert events.items[-1].error is None, "an explicit flush has no error"
        player.play("a", _noise(1000, 3))  # late audio of the stopped job
        player.end_job("a")
        cancel = CancelToken()
        cancel.cancel()
        player.play("c", _noise(1000, 4), cancel)  # cancelled before it was queued
        player.play("b", _noise(300, 2))
        player.end_job("b")
        _wait(lambda: stream.active)
        blocks_before = len(stream.blocks)
        stream.pump()
        _wait(lambda: ("played", "b") in events.kinds())
        fresh = np.concatenate(stream.blocks[blocks_before:])
        np.testing.assert_array_equal(fresh[fresh != 0], _pcm(300, 2))
        assert events.kinds().count(("flushed", "a")) == 1
        assert not any(job == "c" for _, job in events.kinds()), "a cancelled job is not queued"
    finally:
        player.close()


def test_fake_back_pressure_blocks_until_room(fake_sd: FakeSoundDevice) -> None:
    events = Events()
    player = _player(events, max_buffered_s=0.1)  # 2205 frames
    try:
        done = threading.Event()

        def produce() -> None:
            player.play("a", _noise(6000, 1))
            done.set()

        threading.Thread(target=produce, daemon=True).start()
        _wait(lambda: bool(fake_sd.streams) and fake_sd.streams[-1].active)
        assert not done.wait(0.1), "6000 frames do not fit into 2205"
        stream = fake_sd.streams[-1]
        for _ in range(200):
            stream.pump(max_blocks=4)
            if done.is_set():
                break
            time.sleep(0.03)
        assert done.is_set()
        player.end_job("a")
        _wait(lambda: stream.active or ("played", "a") in events.kinds())
        stream.pump()
        _wait(lambda: ("played", "a") in events.kinds())
        out = stream.output()
        np.testing.assert_array_equal(out[out != 0], _pcm(6000, 1))
    finally:
        player.close()


def test_fake_device_fault_flushes_jobs_and_recovers(fake_sd: FakeSoundDevice) -> None:
    events = Events()
    player = _player(events)
    try:
        player.play("a", _noise(2000, 1))
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)
        fake_sd.devices[2]["max_output_channels"] = 0  # unplugged: retries fail for now
        stream.die()
        _wait(lambda: not player.state.available)
        _wait(lambda: ("flushed", "a") in events.kinds())
        device = [e for e in events.items if e.kind == "device"]
        assert device[0].available is False and "stopped by itself" in (device[0].error or "")
        assert next(e for e in events.items if e.kind == "flushed").error, "says why"
        with pytest.raises(DeviceUnavailable) as raised:
            player.play("b", _noise(100, 2))
        assert raised.value.code == "device-unavailable"
        _wait(lambda: fake_sd.rescans >= 2)  # retried with a fresh device scan each time
        assert "USB Speaker" in (player.state.error or "") or "no default" in (
            player.state.error or ""
        )
        fake_sd.devices[2]["max_output_channels"] = 2  # plugged back in
        _wait(lambda: player.state.available)
        _wait(lambda: ("device", None) in events.kinds()[1:])
        assert [e.available for e in events.items if e.kind == "device"] == [False, True]
        assert stream.closed
        player.play("c", _noise(300, 3))
        player.end_job("c")
        new_stream = fake_sd.streams[-1]
        assert new_stream is not stream
        _wait(lambda: new_stream.active)
        new_stream.pump()
        _wait(lambda: ("played", "c") in events.kinds())
    finally:
        player.close()


def test_fake_callback_error_never_escapes(fake_sd: FakeSoundDevice) -> None:
    events = Events()
    player = _player(events)
    try:
        player.play("a", _noise(2000, 1))
        stream = fake_sd.streams[-1]
        _wait(lambda: stream.active)

        def broken(out: Any) -> Any:
            raise RuntimeError("bug in the ring")

        player._ring.read_into = broken  # type: ignore[method-assign]
        stream.pump()  # only CallbackAbort reaches PortAudio, which handles it
        assert not stream.active
        _wait(lambda: any(e.kind == "device" and e.available for e in events.items))
        failure = next(e for e in events.items if e.kind == "device")
        assert "bug in the ring" in (failure.error or "")
    finally:
        player.close()


def test_fake_start_failure_is_a_device_fault(fake_sd: FakeSoundDevice) -> None:
    fake_sd.fail_start = True
    events = Events()
    player = _player(events)
    try:
        player.play("a", _noise(1000, 1))
        _wait(lambda: not player.state.available)
        assert "Device unavailable" in (player.state.error or "")
        fake_sd.fail_start = False
        _wait(lambda: player.state.available)
    finally:
        player.close()


@pytest.mark.parametrize(
    ("device", "expected_name"),
    [(None, "USB Speaker"), ("hdmi", "HDMI 0"), (2, "USB Speaker"), ("Speaker", "USB Speaker")],
)
def test_fake_device_selection(
    fake_sd: FakeSoundDevice, device: str | int | None, expected_name: str
) -> None:
    player = _player(Events(), device=device)
    try:
        assert player.state.available and player.state.device_name == expected_name
        assert fake_sd.streams[-1].device == [d["name"] for d in fake_sd.devices].index(
            expected_name
        )
    finally:
        player.close()


def test_fake_input_only_device_is_refused(fake_sd: FakeSoundDevice) -> None:
    events = Events()
    player = _player(events, device=0)
    try:
        assert not player.state.available
        assert "#0" in (player.state.error or "") and "HDMI 0" in (player.state.error or "")
    finally:
        player.close()


def test_fake_refused_rate_falls_back_to_the_device_default(fake_sd: FakeSoundDevice) -> None:
    fake_sd.rates_hz = {44100}
    events = Events()
    player = _player(events)  # asks for 22050 Hz
    try:
        assert player.state.sample_rate_hz == 44100
        player.play("a", tone_chunk(0.5))
        player.end_job("a")
        stream = fake_sd.streams[-1]
        assert stream.samplerate == 44100
        _wait(lambda: stream.active)
        stream.pump()
        _wait(lambda: ("played", "a") in events.kinds())
        bounds = nonsilent_bounds(stream.output())
        assert bounds is not None
        assert bounds[1] - bounds[0] == pytest.approx(0.5 * 44100, abs=3)
    finally:
        player.close()


def test_fake_event_handler_errors_do_not_stop_events(fake_sd: FakeSoundDevice) -> None:
    seen: list[str | None] = []

    def handler(event: PlayerEvent) -> None:
        seen.append(event.job_id)
        raise ValueError("handler bug")

    player = Player(AudioSettings(sample_rate_hz=RATE_HZ), RATE_HZ, handler)
    player.start()
    try:
        player.end_job("a")
        player.end_job("b")
        _wait(lambda: seen == ["a", "b"])
    finally:
        player.close()


def test_fake_play_before_start_and_after_close(fake_sd: FakeSoundDevice) -> None:
    player = Player(AudioSettings(), RATE_HZ, Events())
    with pytest.raises(DeviceUnavailable):
        player.play("a", _noise(10, 1))
    player.start()
    player.close()
    with pytest.raises(DeviceUnavailable, match="closed"):
        player.play("a", _noise(10, 1))
    player.close()  # idempotent


def tone_chunk(duration_s: float) -> AudioChunk:
    t = np.arange(round(duration_s * RATE_HZ)) / RATE_HZ
    return AudioChunk((0.5 * np.sin(2 * np.pi * 440.0 * t + 0.3)).astype(np.float32), RATE_HZ)


# -- the file-sink helper for other tests -----------------------------------------------------------


def test_strip_start_silences_undoes_restarts_even_with_zeros_in_the_audio() -> None:
    rng = np.random.default_rng(7)
    expected = rng.integers(-3000, 3000, 5000).astype(np.int16)
    expected[:300] = 0  # speech often starts with exact silence
    expected[1024:1536] = 0  # a silent block right where a restart happens
    silence = np.zeros(768, np.int16)
    played = np.concatenate(
        [silence, expected[:1024], silence, expected[1024:4096], silence, expected[4096:]]
    )
    played = np.concatenate([played, np.zeros(100, np.int16)])
    stripped = strip_start_silences(played, expected)
    np.testing.assert_array_equal(stripped[: len(expected)], expected)
    assert len(stripped) == len(expected) + 100


def test_strip_start_silences_leaves_a_mismatch_visible() -> None:
    expected = np.arange(1, 2001, dtype=np.int16)
    played = np.concatenate([np.zeros(768, np.int16), expected])
    played[1500] = -1
    stripped = strip_start_silences(played, expected)
    assert not np.array_equal(stripped[: len(expected)], expected)
    assert np.array_equal(stripped[:512], expected[:512]), "the matching part is aligned"


def test_strip_start_silences_with_a_tolerance_for_separately_resampled_audio() -> None:
    rng = np.random.default_rng(3)
    expected = rng.integers(-3000, 3000, 3000).astype(np.int16)
    near = (expected + rng.integers(-2, 3, len(expected))).astype(np.int16)
    near[near == 0] = 1  # keep the silence unambiguous
    played = np.concatenate([np.zeros(512, np.int16), near[:2048], np.zeros(512, np.int16)])
    played = np.concatenate([played, near[2048:]])
    assert not np.array_equal(strip_start_silences(played, expected)[:3000], near)
    np.testing.assert_array_equal(strip_start_silences(played, expected, atol=2)[:3000], near)
