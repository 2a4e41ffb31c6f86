"""Smoke test of bench/bench_adversarial.py: it runs on tiny inputs and writes complete JSON.

The default voice only, two inputs of 40 characters, the ALSA file sink (faster than real time,
so a job may end before its stop: that outcome is accepted). No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "bench_adversarial.py"

pytestmark = [pytest.mark.e2e, pytest.mark.audio]


def test_bench_adversarial_tiny(tmp_path: Path) -> None:
    out = tmp_path / "adversarial.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--voices",
            "hibari-heart",
            "--inputs",
            "symbols,a-dot",
            "--sizes",
            "40",
            "--sink",
            "file",
            "--timeout-s",
            "30",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "| input | chars |" in completed.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["code"]["daemon_imports"] == str(REPO.resolve() / "daemon")
    assert data["cpu_model"] and data["git"]["commit"]
    (voice,) = data["voices"]
    assert voice["usual_first_audio"]["n"] == 3
    cases = {case["input"]: case for case in voice["cases"]}
    assert set(cases) == {"plain", "symbols", "a-dot"}
    for case in cases.values():
        assert case["chars"] == 40
        assert case["frontend"]["outcome"] in ("ok", "error")
        assert case["peak_rss_mib"] > 0
        for step in ("synthesize", "stream", "stop"):
            assert "outcome" in case[step], (case["input"], step)
    plain = cases["plain"]
    assert plain["frontend"]["ms_per_1k_chars"] > 0 and plain["frontend"]["phoneme_ids"] > 0
    assert plain["synthesize"]["audio_s"] > 0 and plain["stream"]["first_chunk_s"] > 0
    assert plain["stop"]["next"]["first_audio_ms"] > 0
