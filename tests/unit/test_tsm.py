"""WSOLA time-scale modification (models/tsm.py): length, pitch, level, seams, streaming."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from utterd.models.errors import InvalidParameter
from utterd.models.tsm import Wsola, WsolaSettings, input_needed, time_scaled

RATE_HZ = 22050
PERIOD = 147
"""Samples per period of the test tone: 150 Hz at 22050 Hz, a whole number of samples."""

FloatArray = npt.NDArray[np.float32]


def tone(seconds: float, period: int = PERIOD, harmonics: int = 8) -> FloatArray:
    """A periodic, speech-like tone: decaying harmonics, random phases (fixed seed)."""
    n = np.arange(int(seconds * RATE_HZ))
    phases = np.random.default_rng(7).uniform(0, 2 * np.pi, harmonics)
    x = sum(
        np.cos(2 * np.pi * (h + 1) * n / period + phases[h]) / (h + 1) for h in range(harmonics)
    )
    return (0.3 * np.asarray(x) / np.abs(x).max()).astype(np.float32)


def one_shot(x: FloatArray, speed: float, settings: WsolaSettings | None = None) -> FloatArray:
    wsola = Wsola(speed, RATE_HZ, settings)
    return np.concatenate((wsola.process(x), wsola.flush()))


def chunked(x: FloatArray, speed: float, sizes: list[int]) -> FloatArray:
    wsola = Wsola(speed, RATE_HZ)
    out, start = [], 0
    for size in sizes:
        out.append(wsola.process(x[start : start + size]))
        start += size
    out.append(wsola.process(x[start:]))
    out.append(wsola.flush())
    return np.concatenate(out)


def dominant_hz(y: FloatArray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spectrum) * RATE_HZ / len(y))


def snr_db(y: FloatArray, reference: FloatArray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((y - reference) ** 2)))


@pytest.mark.parametrize("speed", [0.25, 0.5, 1.0, 1.3, 2.0, 2.7, 4.0, 8.0])
@pytest.mark.parametrize("length", [0, 1, 100, 441, 5000, 22050])
def test_output_is_input_over_speed_long(speed: float, length: int) -> None:
    x = np.random.default_rng(length).standard_normal(length).astype(np.float32) * 0.1
    assert len(one_shot(x, speed)) == int(np.floor(length / speed + 0.5))


@pytest.mark.parametrize("speed", [0.5, 1.7, 2.0, 3.0, 4.0])
def test_streamed_output_equals_one_shot_bit_for_bit(speed: float) -> None:
    x = tone(1.5) + np.random.default_rng(1).standard_normal(int(1.5 * RATE_HZ)).astype(
        np.float32
    ) * np.float32(0.01)
    whole = one_shot(x, speed)
    rng = np.random.default_rng(int(speed * 10))
    for sizes in ([1] * 300, [2048] * 10, list(rng.integers(0, 3000, 40))):
        assert np.array_equal(chunked(x, speed, [int(s) for s in sizes]), whole)


@pytest.mark.parametrize("speed", [0.5, 2.0, 3.0, 4.0])
def test_pitch_and_level_are_kept(speed: float) -> None:
    x = (0.5 * np.sin(2 * np.pi * 220 * np.arange(2 * RATE_HZ) / RATE_HZ)).astype(np.float32)
    y = one_shot(x, speed)[500:-500]
    assert dominant_hz(y) == pytest.approx(220, abs=2)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("speed", [1.5, 2.0, 2.7, 4.0])
def test_frames_join_in_phase(speed: float) -> None:
    """On a periodic signal each frame lands on a whole number of periods, so the output is
    the signal itself, seamless; without the search (plain overlap-add) the seams would show."""
    x = tone(3.0)
    end = 4 * Wsola(speed, RATE_HZ).hop  # the last frames read silence after the signal
    y = one_shot(x, speed)[:-end]
    # The output starts at sample 0 of x, and each frame moves by whole periods: y == x.
    assert snr_db(y, x[: len(y)]) > 60
    unsearched = one_shot(x, speed, WsolaSettings(search_ms=0.05))[:-end]
    assert snr_db(unsearched, x[: len(unsearched)]) < 10


def test_speed_one_passes_the_input_through() -> None:
    x = tone(0.5)
    wsola = Wsola(1.0, RATE_HZ)
    assert np.array_equal(wsola.process(x), x)
    assert len(wsola.flush()) == 0


def test_silence_stays_silent() -> None:
    y = one_shot(np.zeros(RATE_HZ, np.float32), 3.0)
    assert len(y) == RATE_HZ // 3 and not y.any()


@pytest.mark.parametrize("speed", [0.5, 2.0, 4.0])
def test_lookahead_is_bounded(speed: float) -> None:
    """Output leaves as input arrives: at most one hop behind what the input allows."""
    wsola = Wsola(speed, RATE_HZ)
    lookahead = speed * wsola.hop + wsola.search + wsola.hop
    x, received, emitted = tone(2.0), 0, 0
    for start in range(0, len(x), 256):
        emitted += len(wsola.process(x[start : start + 256]))
        received = min(len(x), start + 256)
        assert emitted >= (received - lookahead) / speed - 2 * wsola.hop


def test_the_object_takes_a_new_signal_after_flush() -> None:
    first, second = tone(0.7), tone(0.4, period=100)
    wsola = Wsola(2.5, RATE_HZ)
    wsola.process(first)
    wsola.flush()
    again = np.concatenate((wsola.process(second), wsola.flush()))
    assert np.array_equal(again, one_shot(second, 2.5))


@pytest.mark.parametrize("speed", [0.0, 0.2, 8.5, float("nan")])
def test_speeds_out_of_range_are_refused(speed: float) -> None:
    with pytest.raises(InvalidParameter, match="speed"):
        Wsola(speed, RATE_HZ)


def test_settings_below_one_sample_are_refused() -> None:
    with pytest.raises(InvalidParameter, match="hop"):
        Wsola(2.0, RATE_HZ, WsolaSettings(hop_ms=0.01))


def test_time_scaled_pieces() -> None:
    x = tone(1.0)
    pieces = [(x[:300], False), (x[300:5000], False), (x[5000:], True)]
    out = list(time_scaled(pieces, 3.0, RATE_HZ))
    # The first piece is too short to finish a frame: nothing is yielded for it.
    assert [last for _, last in out] == [False, True]
    assert np.array_equal(np.concatenate([s for s, _ in out]), one_shot(x, 3.0))
    assert list(time_scaled(pieces, 1.0, RATE_HZ)) == pieces


@pytest.mark.parametrize("speed", [1.0, 1.3, 2.0, 4.0])
@pytest.mark.parametrize("wanted", [1, 2048, 2205])
def test_input_needed_is_what_the_first_output_takes(speed: float, wanted: int) -> None:
    x = tone(1.0)
    needed = input_needed(wanted, speed, RATE_HZ)
    assert len(Wsola(speed, RATE_HZ).process(x[:needed])) >= wanted
    if speed != 1.0:  # one sample less, and that frame is not made yet
        assert len(Wsola(speed, RATE_HZ).process(x[: needed - 1])) < wanted
