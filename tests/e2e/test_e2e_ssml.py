"""End to end: the text front end and SSML on a real daemon with both real voices (issue 17).

Plain text reaches each voice as utterd's normalized words; SSML requests (speak, streamed
speak, synthesize) give exact breaks, prosody, marks as events and in replies, and malformed
SSML gets `invalid-ssml` while the daemon goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from audio_sinks import file_sink_env
from daemon_harness import RunningDaemon, clean_env, next_event, rms
from utterd.daemon.client import Client, RequestFailed
from utterd.models.text.normalize_en import normalize

pytestmark = pytest.mark.e2e

JOE = "en_US-joe-medium"
HEART = "hibari-heart"
VOICES = (JOE, HEART)
LEXICON = {"Nguyen": "/ŋwˈɪn/", "Acme": "Ack me"}
"""The daemon's `text.lexicon`: one word said as IPA, one as words."""
SILENCE_PCM = 10 ** (-50 / 20) * 32767
"""-50 dBFS in 16-bit samples: the level render.py trims a voice's edge silence to."""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    tmp = tmp_path_factory.mktemp("ssml")
    env, _ = file_sink_env(tmp)
    config = {"voices": {"preload": [JOE]}, "text": {"lexicon": LEXICON}}
    with RunningDaemon(tmp, clean_env(env), config) as d:
        yield d


def _pcm(
    c: Client, text: str, voice: str, **data: Any
) -> tuple[npt.NDArray[np.int16], dict[str, Any]]:
    header, payload = c.request(
        "synthesize",
        {
            "text": text,
            "voice": voice,
            "format": "pcm",
            "deterministic": True,
            "cache": "off",
            **data,
        },
        timeout_s=120,
    )
    assert payload is not None
    return np.frombuffer(payload, "<i2"), header["data"]


def _longest_gap_s(pcm: npt.NDArray[np.int16], rate_hz: int) -> float:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) >= SILENCE_PCM)
    return float(np.max(np.diff(loud)) - 1) / rate_hz


@pytest.mark.parametrize("voice", VOICES)
def test_plain_text_reaches_the_voice_as_normalized_words(
    daemon: RunningDaemon, voice: str
) -> None:
    text = "Your balance is $1,284.57 as of Sat., Oct. 4 at 1:00 PM. Call (555) 234-0198."
    words = normalize(text)
    assert not any(ch.isdigit() for ch in words), words
    with daemon.client() as c:
        written, _ = _pcm(c, text, voice)
        said, _ = _pcm(c, words, voice)
    assert np.array_equal(written, said)


@pytest.mark.parametrize("voice", VOICES)
@pytest.mark.parametrize("break_ms", [250, 500, 1200])
def test_a_break_is_its_length_of_silence(daemon: RunningDaemon, voice: str, break_ms: int) -> None:
    doc = f'<speak>Your order has shipped.<break time="{break_ms}ms"/>Press one to hear it.</speak>'
    with daemon.client() as c:
        pcm, reply = _pcm(c, doc, voice, text_format="ssml")
    gap_ms = 1000 * _longest_gap_s(pcm, reply["sample_rate_hz"])
    assert break_ms <= gap_ms <= break_ms + 10, gap_ms


@pytest.mark.parametrize("voice", VOICES)
def test_prosody_changes_duration_and_level_as_asked(daemon: RunningDaemon, voice: str) -> None:
    line = "Press one for sales, or two for support."
    with daemon.client() as c:
        plain, _ = _pcm(c, f"<speak>{line}</speak>", voice, text_format="ssml")
        fast, _ = _pcm(
            c, f'<speak><prosody rate="200%">{line}</prosody></speak>', voice, text_format="ssml"
        )
        quiet, _ = _pcm(
            c, f'<speak><prosody volume="-6dB">{line}</prosody></speak>', voice, text_format="ssml"
        )
    # Duration as issue 18 defines it (the whole audio): within 10 % of duration / rate.
    assert len(fast) / len(plain) == pytest.approx(0.5, rel=0.1)
    assert len(quiet) == len(plain)
    assert rms(quiet) / rms(plain) == pytest.approx(10 ** (-6 / 20), rel=0.02)


def test_marks_come_as_events_where_their_text_starts_and_in_the_synthesize_reply(
    daemon: RunningDaemon,
) -> None:
    doc = (
        '<speak><mark name="top"/>Welcome to the clinic.'
        '<mark name="menu"/>Press one for appointments.<mark name="done"/></speak>'
    )
    events = daemon.subscribe()
    with daemon.client() as c:
        _, reply = _pcm(c, doc, JOE, text_format="ssml")
        first, _ = _pcm(c, "<speak>Welcome to the clinic.</speak>", JOE, text_format="ssml")
        header, _ = c.request(
            "speak", {"text": doc, "text_format": "ssml", "voice": JOE, "deterministic": True}
        )
    job = header["data"]["job"]
    got = [next_event(events, {"mark"}, job, 60)["data"] for _ in range(3)]
    assert [m["name"] for m in got] == ["top", "menu", "done"]
    assert next_event(events, {"end", "failed", "stopped"}, job, 60)["type"] == "end"
    offsets = [m["offset_samples"] for m in got]
    assert offsets == [m["offset_samples"] for m in reply["marks"]]
    assert offsets[0] == 0 and offsets[1] == len(first)
    assert offsets[2] == reply["samples"]
    assert {m["sample_rate_hz"] for m in got} == {22050}


def test_a_streamed_ssml_document_is_spoken_as_it_arrives(daemon: RunningDaemon) -> None:
    events = daemon.subscribe()
    with daemon.client() as c:
        header, _ = c.request("speak-start", {"text_format": "ssml", "voice": JOE})
        job = header["data"]["job"]
        c.request("speak-chunk", {"job": job, "text": "<speak><s>Door open.</s><mark na"})
        c.request("speak-chunk", {"job": job, "text": 'me="m"/><s>Battery low.</s>'})
        next_event(events, {"mark"}, job, 60)
        c.request("speak-chunk", {"job": job, "text": "</speak>"})
        c.request("speak-stop", {"job": job})
    assert next_event(events, {"end", "failed", "stopped"}, job, 60)["type"] == "end"


def test_a_malformed_streamed_document_fails_its_chunk_and_its_job(daemon: RunningDaemon) -> None:
    events = daemon.subscribe()
    with daemon.client() as c:
        header, _ = c.request("speak-start", {"text_format": "ssml", "voice": JOE})
        job = header["data"]["job"]
        c.request("speak-chunk", {"job": job, "text": "<speak><s>Door open.</s>"})
        with pytest.raises(RequestFailed) as bad:
            c.request("speak-chunk", {"job": job, "text": "<s>x</p>"})
    assert bad.value.code == "invalid-ssml" and "line 1" in bad.value.message
    failed = next_event(events, {"end", "failed", "stopped"}, job, 60)
    assert failed["type"] == "failed" and failed["data"]["code"] == "invalid-ssml"


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ("<speak><s>x</p></speak>", "line 1"),
        ("Hello, no root.", "line 1"),
        ('<!DOCTYPE speak [<!ENTITY a "aaaa">]><speak>&a;</speak>', "DOCTYPE"),
        ('<speak><break time="fast"/>Hi.</speak>', "time"),
        ("<speak>" + "<s>" * 40 + "deep" + "</s>" * 40 + "</speak>", "deep"),
    ],
)
def test_malformed_or_hostile_ssml_is_refused_and_the_daemon_goes_on(
    daemon: RunningDaemon, doc: str, says: str
) -> None:
    with daemon.client() as c:
        for kind in ("speak", "synthesize"):
            with pytest.raises(RequestFailed) as bad:
                c.request(kind, {"text": doc, "text_format": "ssml"})
            assert bad.value.code == "invalid-ssml", bad.value
            assert says.lower() in bad.value.message.lower(), bad.value.message
        with pytest.raises(RequestFailed) as both:
            c.request(
                "speak",
                {"text": "<speak>Hi {x}</speak>", "text_format": "ssml", "slots": {"x": "1"}},
            )
        assert both.value.code == "invalid-value"
        c.request("ping")


def test_describe_lists_the_ssml_each_voice_honours(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        header, _ = c.request("describe")
    by_id = {v["id"]: v for v in header["data"]["voices"]}
    for voice in VOICES:
        honoured = set(by_id[voice]["ssml"])
        assert {"break", "mark", "prosody", "say-as", "sub", "voice", "lang"} <= honoured
        assert ("phoneme" in honoured) == by_id[voice]["loaded"]


@pytest.mark.parametrize("voice", VOICES)
def test_the_lexicon_says_words_as_written_there_and_as_phonemes(
    daemon: RunningDaemon, voice: str
) -> None:
    with daemon.client() as c:
        plain, _ = _pcm(c, "Ask for nguyen at ACME.", voice)
        same, _ = _pcm(
            c,
            '<speak>Ask for <phoneme alphabet="ipa" ph="ŋwˈɪn">Nguyen</phoneme> at Ack me.</speak>',
            voice,
            text_format="ssml",
        )
        other, _ = _pcm(
            c,
            '<speak>Ask for <phoneme alphabet="ipa" ph="wˈɪn">Nguyen</phoneme> at Ack me.</speak>',
            voice,
            text_format="ssml",
        )
    assert np.array_equal(plain, same)
    assert not np.array_equal(plain, other)  # the lexicon's IPA is what is said
