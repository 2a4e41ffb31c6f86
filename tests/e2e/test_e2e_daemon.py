"""End to end: a real `utterd serve` process, real voices, real ZeroMQ, real PortAudio into the
ALSA file sink (what was played, byte-exact)."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr
import zmq
from audio_sinks import file_sink_env, read_s16, strip_start_silences
from daemon_harness import RunningDaemon, clean_env, next_event, rms, wav_samples
from utterd.daemon.client import RequestFailed
from utterd.models.voice import float_to_pcm16

pytestmark = pytest.mark.e2e

JOE = "en_US-joe-medium"
SEAM_MIN_SNR_DB = 60.0
"""Streamed vs one-shot audio with the default window contexts (tests/test_vits_stream.py)."""
HIBARI = "hibari-heart"
SHORT = "The front door is open."
LONG = " ".join(
    [
        "Welcome to the city library.",
        "Our opening hours are nine in the morning to six in the evening, Monday to Saturday.",
        "Books may be borrowed for three weeks and renewed twice, online or at the front desk.",
        "The reading room on the second floor is quiet at all times.",
        "Please keep your library card with you, and ask a member of staff if you need help.",
    ]
    * 3
)


@pytest.fixture(scope="module")
def sink_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningDaemon, Path]]:
    tmp = tmp_path_factory.mktemp("sinkd")
    env, sink = file_sink_env(tmp)
    # The device runs at the default voice's rate (hibari, 24 kHz), so hibari plays unresampled.
    with RunningDaemon(tmp, clean_env(env), {"limits": {"max_text_chars": 5000}}) as d:
        yield d, sink


def _synth(d: RunningDaemon, text: str, **data: object) -> tuple[dict[str, object], bytes]:
    with d.client() as c:
        header, payload = c.request("synthesize", {"text": text, **data}, timeout_s=120)
    assert payload is not None
    return header["data"], payload


@pytest.mark.parametrize(("voice", "rate_hz"), [(HIBARI, 24000), (JOE, 22050)])
def test_synthesize_each_voice_gives_plausible_speech(
    sink_daemon: tuple[RunningDaemon, Path], voice: str, rate_hz: int
) -> None:
    d, _ = sink_daemon
    text = "Battery low. Please connect the charger within ten minutes."
    info, payload = _synth(d, text, voice=voice)
    samples, rate = wav_samples(payload)
    assert rate == rate_hz == info["sample_rate_hz"]
    duration_s = len(samples) / rate
    assert abs(duration_s - info["duration_s"]) < 0.01
    # About 60 characters of English: a couple of seconds, not a blip and not a minute.
    assert 1.5 < duration_s < 8.0, duration_s
    assert rms(samples) > 300, "speech should not be near-silent"
    # Speech has pauses: some 50 ms windows are much quieter than the loudest ones.
    win = rate // 20
    energies = [rms(samples[i : i + win]) for i in range(0, len(samples) - win, win)]
    assert min(energies) < 0.2 * max(energies)


def test_pcm_equals_the_wav_and_streamed_synthesis_matches_it(
    sink_daemon: tuple[RunningDaemon, Path],
) -> None:
    """A WAV or PCM reply is rendered for throughput (one decoder call per sentence); a streamed
    reply in windows for latency. Same samples count; they differ only at the window seams,
    where the documented bound is the streaming seam SNR (tests/test_vits_stream.py)."""
    d, _ = sink_daemon
    text = "First sentence here. And a second one."
    _, wav = _synth(d, text, voice=JOE, deterministic=True)
    expected, _ = wav_samples(wav)
    info, pcm = _synth(d, text, voice=JOE, deterministic=True, format="pcm")
    assert info["format"] == "pcm" and np.array_equal(np.frombuffer(pcm, "<i2"), expected)
    with d.client() as c:
        rid = c.send(
            "synthesize", {"text": text, "voice": JOE, "deterministic": True, "stream": True}
        )
        kinds, chunks, sentences = [], [], []
        while not kinds or kinds[-1] != "audio-stop":
            header, payload = c.receive(120)
            assert header["id"] == rid
            kinds.append(header["type"])
            if header["type"] == "audio-chunk":
                chunks.append(np.frombuffer(payload or b"", "<i2"))
                sentences.append(header["data"]["sentence"])
    assert kinds[0] == "audio-start" and kinds.count("audio-chunk") >= 2
    assert sentences == sorted(sentences) and set(sentences) == {0, 1}
    streamed = np.concatenate(chunks)
    assert len(streamed) == len(expected)
    error = (streamed.astype(np.float64) - expected) ** 2
    snr_db = 10 * np.log10(np.sum(expected.astype(np.float64) ** 2) / max(np.sum(error), 1.0))
    assert snr_db >= SEAM_MIN_SNR_DB, snr_db


def test_speak_plays_exactly_the_synthesized_samples(
    sink_daemon: tuple[RunningDaemon, Path],
) -> None:
    d, sink = sink_daemon
    _, wav = _synth(d, SHORT, voice=HIBARI, deterministic=True)
    expected, _ = wav_samples(wav)
    before = sink.stat().st_size if sink.exists() else 0
    with d.client() as c:
        header, _ = c.request("speak", {"text": SHORT, "voice": HIBARI, "deterministic": True})
    assert header["type"] == "queued"
    assert d.wait_job(header["data"]["job"])["state"] == "done"
    # PortAudio's ALSA host writes one device buffer of zeros whenever a stream starts.
    played = strip_start_silences(read_s16(sink)[before // 2 :], expected)
    assert len(played) >= len(expected)
    assert np.array_equal(played[: len(expected)], expected)
    assert not played[len(expected) :].any(), "only zero padding may follow the speech"


def test_the_daemon_keeps_no_alsa_plugin_its_device_does_not_use(
    sink_daemon: tuple[RunningDaemon, Path],
) -> None:
    """PortAudio's device listing loads every ALSA plugin the configuration names (a52 brings
    libavcodec); the player closes them once its stream is open (daemon/audio/alsa.py). The file
    sink is built into libasound, so none may stay, and the daemon still plays."""
    d, sink = sink_daemon
    assert d.proc is not None
    before = sink.stat().st_size if sink.exists() else 0
    with d.client() as c:
        header, _ = c.request("speak", {"text": SHORT, "voice": HIBARI})
    assert d.wait_job(header["data"]["job"])["state"] == "done"
    assert rms(read_s16(sink)[before // 2 :]) > 300
    maps = Path(f"/proc/{d.proc.pid}/maps").read_text()
    assert "libasound.so" in maps, "the daemon plays through PortAudio's ALSA host API"
    assert "libasound_module_pcm_" not in maps
    assert "libavcodec" not in maps


def test_speak_resamples_another_voice_to_the_device_rate(
    sink_daemon: tuple[RunningDaemon, Path],
) -> None:
    d, sink = sink_daemon
    _, wav = _synth(d, SHORT, voice=JOE, deterministic=True)
    expected, _ = wav_samples(wav)
    before = sink.stat().st_size if sink.exists() else 0
    with d.client() as c:
        header, _ = c.request("speak", {"text": SHORT, "voice": JOE, "deterministic": True})
    assert d.wait_job(header["data"]["job"])["state"] == "done"
    # The reference: the same samples resampled to the device rate on this side.
    resampled = float_to_pcm16(soxr.resample(expected.astype(np.float32) / 32767.0, 22050, 24000))
    played = strip_start_silences(read_s16(sink)[before // 2 :], resampled, atol=4)
    assert len(played) >= len(resampled)
    assert np.allclose(played[: len(resampled)], resampled, atol=4, rtol=0)
    assert not played[len(resampled) :].any(), "only zero padding may follow the speech"


def test_events_carry_the_job_id(sink_daemon: tuple[RunningDaemon, Path]) -> None:
    d, _ = sink_daemon
    sub = d.subscribe()
    try:
        with d.client() as c:
            job = c.request("speak", {"text": SHORT})[0]["data"]["job"]
        begin = next_event(sub, {"begin"}, job, 60)
        end = next_event(sub, {"end", "failed", "stopped"}, job, 60)
    finally:
        sub.close(linger=0)
    assert begin["data"]["voice"] == HIBARI
    assert end["type"] == "end"


BAD_REQUESTS: list[tuple[list[bytes], str]] = [
    ([b'{"type": "ping"}', b"payload", b"extra"], "malformed-frames"),
    ([b'{"type": "speak", "data": {"text": "\xff\xfe"}}'], "invalid-utf8"),
    ([b'{"type": "speak", "data": {"text": '], "invalid-json"),
    ([b'["speak"]'], "invalid-header"),
    ([b'{"type": "sing"}'], "unknown-type"),
    ([b'{"type": "speak", "data": {}}'], "missing-field"),
    ([b'{"type": "speak", "data": {"text": 42}}'], "wrong-type"),
    ([b'{"type": "speak", "data": {"text": "hi", "rate": "fast"}}'], "wrong-type"),
    ([b'{"type": "speak", "data": {"text": "hi", "rate": 100}}'], "invalid-value"),
    ([b'{"type": "speak", "data": {"text": "hi", "voise": "x"}}'], "unknown-field"),
    ([b'{"type": "speak", "data": {"text": "   "}}'], "empty-text"),
    ([json.dumps({"type": "speak", "data": {"text": "a" * 5001}}).encode()], "text-too-long"),
    ([b'{"type": "speak", "data": {"text": "hi", "voice": "nobody"}}'], "unknown-voice"),
    ([b'{"type": "speak", "data": {"text": "hi", "voice": "../../etc/passwd"}}'], "unknown-voice"),
    ([b'{"type": "speak", "data": {"text": "hi", "speaker": "alice"}}'], "unknown-speaker"),
    ([b'{"type": "job", "data": {"job": "no-such-job"}}'], "unknown-job"),
    ([b'{"type": "stop", "data": {"job": "no-such-job"}}'], "unknown-job"),
]


def test_bad_requests_get_their_error_codes_and_lose_nothing(
    sink_daemon: tuple[RunningDaemon, Path],
) -> None:
    d, _ = sink_daemon
    with d.client() as c:
        job = c.request("speak", {"text": LONG[:1500]})[0]["data"]["job"]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(d.endpoint)
    try:
        for frames, code in BAD_REQUESTS:
            sock.send_multipart(frames)
            assert sock.poll(10_000), f"no reply for {frames!r}"
            reply = json.loads(sock.recv_multipart()[0])
            assert reply["type"] == "error", reply
            assert reply["data"]["code"] == code, (frames, reply)
            assert reply["data"]["message"], "an error names the problem"
    finally:
        sock.close(linger=0)
    assert d.alive()
    assert d.wait_job(job)["state"] == "done", "the queued job survived the bad requests"
    with d.client() as c:
        assert c.request("ping")[0]["type"] == "pong"


def test_describe_answers_while_a_long_text_is_synthesized(
    sink_daemon: tuple[RunningDaemon, Path],
) -> None:
    d, _ = sink_daemon
    with d.client() as c:
        c.send("synthesize", {"text": LONG, "voice": JOE})
        time.sleep(0.2)  # synthesis of ~90 s of speech is now under way
        t0 = time.monotonic()
        describe_id = c.send("describe")
        header, _ = c.receive(60)
        describe_s = time.monotonic() - t0
        assert header["id"] == describe_id and header["type"] == "info", (
            "describe came after the audio"
        )
        audio, _ = c.receive(300)
        assert audio["type"] == "audio"
        synth_s = time.monotonic() - t0
    # Ordering is the behaviour under test; the ratio only guards against a blocked loop.
    assert describe_s < synth_s / 5, (describe_s, synth_s)
    info = header["data"]
    assert {v["id"] for v in info["voices"]} >= {HIBARI, JOE}
    assert info["device"]["available"] is True
    assert isinstance(info["backend"]["cpu_features"], list) and info["backend"]["threads"] >= 1
    joe = next(v for v in info["voices"] if v["id"] == JOE)
    assert joe["loaded"] and joe["runtime"]["backend"] in ("onnxruntime", "openvino")
    assert joe["runtime"]["precision"] in ("fp32", "int8")


def test_ipc_sockets_are_owner_only(sink_daemon: tuple[RunningDaemon, Path]) -> None:
    d, _ = sink_daemon
    assert stat.S_IMODE(d.runtime_dir.stat().st_mode) == 0o700
    for name in ("utterd.sock", "utterd-events.sock"):
        assert stat.S_IMODE((d.runtime_dir / name).stat().st_mode) & 0o077 == 0


def test_cli_say_synth_status_and_stop(
    sink_daemon: tuple[RunningDaemon, Path], tmp_path: Path
) -> None:
    d, _ = sink_daemon
    r = d.cli("say", "--wait", "Door open.")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "x.wav"
    r = d.cli("synth", "-", "-o", str(out), "--voice", JOE, input_text="Battery low.")
    assert r.returncode == 0, r.stderr
    samples, rate = wav_samples(out.read_bytes())
    assert rate == 22050 and rms(samples) > 300
    r = d.cli("status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["default_voice"] == HIBARI
    r = d.cli("voices")
    assert JOE in r.stdout and HIBARI in r.stdout
    r = d.cli("stop")
    assert r.returncode == 0 and "stopped" in r.stdout
    r = d.cli("say", "--voice", "nobody", "hi")
    assert r.returncode == 1 and "unknown-voice" in r.stderr


def test_cli_says_clearly_when_no_daemon_runs(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"server:\n  runtime_dir: {tmp_path / 'none'}\n")
    d = RunningDaemon(tmp_path, clean_env({}))
    r = d.cli("--config", str(cfg), "--timeout", "0.5", "status")
    assert r.returncode == 3
    assert "not answering" in r.stderr and "utterd serve" in r.stderr


def test_missing_device_is_reported_and_synthesis_still_works(tmp_path: Path) -> None:
    env, _ = file_sink_env(tmp_path)
    cfg = {"audio": {"device": "no-such-sound-card", "retry_interval_s": 0.5}}
    with RunningDaemon(tmp_path, clean_env(env), cfg) as d, d.client() as c:
        device = c.request("describe")[0]["data"]["device"]
        assert device["available"] is False
        assert "no-such-sound-card" in (device["error"] or "")
        with pytest.raises(RequestFailed) as err:
            c.request("speak", {"text": SHORT})
        assert err.value.code == "device-unavailable"
        _, payload = c.request("synthesize", {"text": SHORT}, timeout_s=60)
        samples, _ = wav_samples(payload or b"")
        assert rms(samples) > 300
        assert d.alive()


def test_sigterm_exits_cleanly_and_removes_sockets(tmp_path: Path) -> None:
    env, _ = file_sink_env(tmp_path)
    d = RunningDaemon(tmp_path, clean_env(env))
    d.start()
    assert d.terminate() == 0
    assert not (d.runtime_dir / "utterd.sock").exists()
    assert "event=stopped" in d.log()


def test_second_daemon_on_the_same_socket_refuses_to_start(
    sink_daemon: tuple[RunningDaemon, Path], tmp_path: Path
) -> None:
    d, _ = sink_daemon
    env, _ = file_sink_env(tmp_path)
    other = RunningDaemon(tmp_path, clean_env(env), {"server": {"runtime_dir": str(d.runtime_dir)}})
    with pytest.raises(RuntimeError, match="already"):
        other.start()
    with d.client() as c:
        assert c.request("ping")[0]["type"] == "pong"


def test_describe_shows_each_voices_own_backend(tmp_path: Path) -> None:
    """`voices.backends` overrides `voices.backend` for the voices it lists, and only those."""
    env, _ = file_sink_env(tmp_path)
    nobody = "xx_XX-nobody-low"  # not installed: a warning, not an error
    backends = {HIBARI: "onnxruntime", nobody: "auto"}
    cfg = {"voices": {"backend": "openvino", "backends": backends}}
    with RunningDaemon(tmp_path, clean_env(env), cfg) as d, d.client() as c:
        info = c.request("describe")[0]["data"]
        assert info["backend"]["name"] == "openvino"  # the default
        voices = {v["id"]: v for v in info["voices"]}
        assert nobody not in voices
        # The default voice, loaded at start-up, on its own backend.
        assert voices[HIBARI]["backend"] == "onnxruntime"
        assert voices[HIBARI]["runtime"]["backend"] == "onnxruntime"
        # Joe is not listed: the default, once its first use loads it.
        assert voices[JOE]["backend"] == "openvino"
        assert not voices[JOE]["loaded"] and voices[JOE]["runtime"] == {}
        _, payload = c.request("synthesize", {"text": SHORT, "voice": JOE}, timeout_s=120)
        assert rms(wav_samples(payload or b"")[0]) > 300
        joe = next(v for v in c.request("describe")[0]["data"]["voices"] if v["id"] == JOE)
        assert joe["loaded"] and joe["runtime"]["backend"] == "openvino"
    log = d.log()
    assert log.count(f"event=backend-for-unknown-voice voice={nobody} backend=auto") == 1
    assert "backend-for-unknown-voice voice=hibari-heart" not in log


def test_jobs_on_the_file_sink_report_no_underruns(sink_daemon: tuple[RunningDaemon, Path]) -> None:
    """The file sink is faster than real time: a job streamed into it runs dry between pieces,
    but no gap is heard, so none is logged at INFO or counted in `status` (issue 16, finding 9)."""
    d, _ = sink_daemon
    text = "Welcome to the city library. Our opening hours are nine to six, Monday to Saturday."
    with d.client() as c:
        job = c.request("speak", {"text": text, "voice": JOE, "cache": "off"})[0]["data"]["job"]
    assert d.wait_job(job)["state"] == "done"
    with d.client() as c:
        assert c.request("describe")[0]["data"]["device"]["underruns"] == 0
    log = d.log()
    assert "event=device-not-real-time" in log
    assert not [line for line in log.splitlines() if " INFO " in line and "event=underrun" in line]
    r = d.cli("status")
    assert r.returncode == 0 and "underrun" not in r.stdout
