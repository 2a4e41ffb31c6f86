"""End to end on the real-time PulseAudio null sink: `stop` silences a long text early, and the
next `speak` plays normally. What actually played is recorded from the sink's monitor."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from audio_sinks import PulseNullSink, read_s16
from daemon_harness import RunningDaemon, clean_env, next_event

pytestmark = [pytest.mark.e2e, pytest.mark.audio]

LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 12)


def _audible_s(samples: np.ndarray, rate_hz: int = 22050, threshold: int = 200) -> float:
    """Seconds of 20 ms windows whose peak is above the threshold."""
    win = rate_hz // 50
    n = len(samples) // win
    frames = np.abs(samples[: n * win].astype(np.int32)).reshape(n, win)
    return float((frames.max(axis=1) > threshold).sum() * win / rate_hz)


def test_stop_during_a_long_text_ends_playback_and_next_speak_plays(tmp_path: Path) -> None:
    with PulseNullSink(tmp_path / "pulse") as sink:
        cfg = {"audio": {"sample_rate_hz": 22050}, "voices": {"preload": ["en_US-joe-medium"]}}
        with RunningDaemon(tmp_path, clean_env(sink.env), cfg) as d:
            recording = tmp_path / "played.raw"
            sub = d.subscribe()
            try:
                with sink.record(recording), d.client() as c:
                    job = c.request("speak", {"text": LONG, "voice": "en_US-joe-medium"})[0][
                        "data"
                    ]["job"]
                    next_event(sub, {"begin"}, job, 60)
                    time.sleep(2.5)  # let it speak for a while
                    stopped = c.request("stop")[0]["data"]["jobs"]
                    assert job in stopped
                    ev = next_event(sub, {"stopped", "end", "failed"}, job, 10)
                    assert ev["type"] == "stopped"
                    time.sleep(1.5)  # silence expected here
                    second = c.request("speak", {"text": "Goodbye.", "voice": "en_US-joe-medium"})[
                        0
                    ]["data"]["job"]
                    assert (
                        next_event(sub, {"end", "failed", "stopped"}, second, 60)["type"] == "end"
                    )
                    time.sleep(0.5)
            finally:
                sub.close(linger=0)
            played = read_s16(recording)
            info = d.cli("status", "--json")
            assert info.returncode == 0
    full_s = len(LONG) * 0.06  # well over 40 s of speech if it had not been stopped
    audible = _audible_s(played)
    # What played: ~2.5 s of the long text, then "Goodbye." (~0.7 s), nothing like the whole text.
    assert 1.0 < audible < 6.0, (audible, full_s)
    # The gap after the stop is silent for well over a second, then the second job is heard.
    win = 22050 // 50
    n = len(played) // win
    loud = np.abs(played[: n * win].astype(np.int32)).reshape(n, win).max(axis=1) > 200
    runs = np.flatnonzero(np.diff(loud.astype(np.int8)) == -1)  # audible -> silent transitions
    gaps = []
    for end in runs:
        nxt = np.flatnonzero(loud[end + 1 :])
        if len(nxt):
            gaps.append(nxt[0] * win / 22050)
    assert max(gaps) > 1.0, gaps
