"""Smoke test of bench/bench_cache.py --quick: it runs on a real daemon and writes complete JSON.

No timing is asserted (the machine is shared and noisy): only that every figure the benchmark
reports is there, counted over the expected number of jobs, positive and self-consistent
(p50 <= p99 <= max, the probe's steps add up to the daemon's own first_audio_ms), and that the
cache counters show hits were hits and every warmed prompt ended in the cache. A job the sound
device failed (PortAudio can time out starting a stream on a loaded machine) is a reported
result, not a crash: the counts below allow for the failures the report lists.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.audio]

REPO = Path(__file__).resolve().parents[2]
VOICES = ("hibari-heart", "en_US-joe-medium")
QUICK_PROMPTS = 3
QUICK_ROUNDS = 1
QUICK_WARM = 20
QUICK_BASELINE = 3
QUICK_CONTROL_PROMPTS = 2
KINDS = ("cold", "hit", "uncached")
STAGE_NAMES = (
    "queue",
    "lookup_or_synth",
    "handoff_to_stream_start",
    "stream_start_to_first_callback",
    "first_callback_to_first_sample",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON of one quick run (shared by the checks below: a run takes a few minutes)."""
    out = tmp_path_factory.mktemp("bench-cache") / "bench_cache.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_cache.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1200,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Time to first audio" in completed.stdout
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def _check_summary(summary: dict[str, Any], n: int | None = None, at_least: int = 1) -> None:
    """A percentile summary over `n` jobs (or at least `at_least`) with sane, ordered values."""
    if n is not None:
        assert summary["n"] == n, summary
    assert summary["n"] >= at_least, summary
    assert 0 < summary["min_ms"] <= summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"]
    assert summary["mean_ms"] > 0


def test_run_facts(report: dict[str, Any]) -> None:
    assert report["benchmark"] == "bench_cache" and report["quick"] is True
    assert report["command"].startswith("python bench/bench_cache.py --quick --out ")
    assert report["cpu_model"] and report["cpu_count"] >= 1 and report["threads"] >= 1
    assert len(report["load_average_start"]) == 3 and len(report["load_average_end"]) == 3
    assert len(report["git"]["commit"]) == 40
    assert (
        report["sizes"]["prompts"] == QUICK_PROMPTS
        and report["sizes"]["warm_entries"] == QUICK_WARM
    )
    assert report["sink"]["real_time"] is True
    daemon = report["daemon"]
    assert daemon["default_voice"] == "hibari-heart" and daemon["device"]["available"] is True
    assert "rate_hz=" in daemon["device_open_log"]
    assert report["probe"] is True and report["duration_s"] > 0 and report["complete"] is True
    assert report["daemon_code"].startswith("snapshot of HEAD ")
    assert "/code/utterd/daemon/audio/player.py" in report["daemon"]["player_module"]


@pytest.mark.parametrize("voice", VOICES)
def test_hits_against_uncached(report: dict[str, Any], voice: str) -> None:
    part = report["hits"][voice]
    jobs = QUICK_PROMPTS * QUICK_ROUNDS
    failed = {kind: sum(f["kind"] == kind for f in part["failures"]) for kind in KINDS}
    assert sum(failed.values()) <= 1, part["failures"]  # more would say the sink is broken
    _check_summary(part["cold"], QUICK_PROMPTS - failed["cold"])
    _check_summary(part["hit"], jobs - failed["hit"])
    _check_summary(part["uncached"], jobs - failed["uncached"])
    assert part["hit_over_uncached"]["p50"] > 0 and part["hit_over_uncached"]["p99"] > 0
    target = part["target"]
    assert (target["hit_p50_ms"], target["hit_p99_ms"]) == (5.0, 15.0)
    assert isinstance(target["p50_met"], bool) and isinstance(target["p99_met"], bool)
    counters = part["cache_counters"]
    assert counters["cold_misses"] == counters["cold_expected_misses"] == QUICK_PROMPTS
    assert counters["hits"] == counters["expected_hits"] == jobs  # a device fault is after the hit
    assert counters["misses_during_hit_rounds"] == 0
    assert len(part["samples"]) == QUICK_PROMPTS + 2 * jobs
    assert part["breakdown"]["hit"]["jobs"] == jobs
    assert 1 <= len(part["slowest_hits"]) <= 5


@pytest.mark.parametrize("voice", VOICES)
def test_probe_steps_add_up_to_first_audio(report: dict[str, Any], voice: str) -> None:
    for sample in report["hits"][voice]["samples"]:
        stages = sample["stages_ms"]
        if stages is None:
            continue  # failed, or the stream was still running for this job: nothing to split
        assert all(stages[name] >= -0.01 for name in STAGE_NAMES), stages
        total = sum(stages[name] for name in STAGE_NAMES)
        assert total == pytest.approx(sample["first_audio_ms"], abs=0.01), (sample, total)
    hits = report["hits"][voice]["breakdown"]["hit"]
    assert hits["jobs_with_stream_start"] >= 1
    for name in STAGE_NAMES:
        assert hits["spans"][name]["n"] == hits["jobs_with_stream_start"]


def test_warming(report: dict[str, Any]) -> None:
    warm = report["warming"]
    assert warm["entries"] == warm["reply_entries"] == QUICK_WARM
    assert warm["timed_out"] is False and warm["watch_error"] is None and warm["duration_s"] > 0
    prewarm = warm["prewarm"]
    assert prewarm["entries"] == QUICK_WARM and prewarm["remaining"] == 0 and prewarm["failed"] == 0
    assert prewarm["rendered"] + prewarm["cached"] == QUICK_WARM
    assert warm["verify"] == {"hits": QUICK_WARM, "misses": 0, "expected_hits": QUICK_WARM}
    assert warm["all_cached"] is True
    live = warm["live"]
    assert live["cache"] == "off" and live["voice"] == "hibari-heart"
    failed = {p: sum(f["phase"] == p for f in warm["failures"]) for p in ("before", "after")}
    assert len(warm["failures"]) <= 1, warm["failures"]
    _check_summary(live["baseline_before"], QUICK_BASELINE - failed["before"])
    _check_summary(live["baseline_after"], QUICK_BASELINE - failed["after"])
    _check_summary(live["baseline"], 2 * QUICK_BASELINE - failed["before"] - failed["after"])
    _check_summary(live["during_warming"])
    assert live["during_over_baseline"]["p50"] > 0 and live["during_over_baseline"]["p99"] > 0
    assert live["start_interval_s_p50"] > live["gap_s"]
    assert set(warm["breakdown"]) == {"baseline", "during_warming"}


@pytest.mark.parametrize("voice", VOICES)
def test_control_without_probe(report: dict[str, Any], voice: str) -> None:
    control = report["control"][voice]
    _check_summary(control["hit"], at_least=QUICK_CONTROL_PROMPTS - 1)
    _check_summary(control["uncached"], at_least=QUICK_CONTROL_PROMPTS - 1)
    assert control["cache_counters"]["hits"] == QUICK_CONTROL_PROMPTS
