"""A `synthesize` WAV's header is written by hand (the audio grows in place): it must be the one
the `wave` module writes and reads."""

from __future__ import annotations

import io
import wave

import pytest
from utterd.daemon.server import WAV_HEADER_BYTES, wav_header


@pytest.mark.parametrize(("samples", "rate_hz"), [(0, 24000), (1, 22050), (48_000, 8000)])
def test_wav_header_is_the_wave_modules(samples: int, rate_hz: int) -> None:
    pcm = bytes(range(256)) * (2 * samples // 256) + bytes(2 * samples % 256)
    expected = io.BytesIO()
    with wave.open(expected, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm)
    ours = wav_header(len(pcm), rate_hz) + pcm
    assert len(wav_header(len(pcm), rate_hz)) == WAV_HEADER_BYTES
    assert ours == expected.getvalue()
    with wave.open(io.BytesIO(ours)) as r:
        assert (r.getnchannels(), r.getsampwidth(), r.getframerate()) == (1, 2, rate_hz)
        assert r.readframes(r.getnframes()) == pcm
