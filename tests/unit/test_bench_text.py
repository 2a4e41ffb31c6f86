"""bench/bench_text.py: token-set parsing, scoring and comparisons (no ASR), and a quick cost run.

The ASR part needs Whisper and both voices (minutes); here its scoring helpers get made-up
transcripts, and the script itself runs in `--cost-only --quick` mode (about a second).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("num2words") is None, reason="bench/wer.py needs num2words"
)


@pytest.fixture(scope="module")
def bt() -> ModuleType:
    """bench/bench_text.py as a module (it imports its neighbours from bench/)."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_text
    finally:
        sys.path.remove(str(BENCH))
    return bench_text


def _write_set(path: Path, *rows: str) -> Path:
    path.write_text("# a comment\n\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _item(line: int, category: str, errors: int, words: int, spoken: int = 0) -> dict[str, Any]:
    return {
        "line": line,
        "category": category,
        "input": f"input {line}",
        "expected": "x",
        "spoken": f"spoken {line}",
        "transcript": f"heard {line}",
        "errors": errors,
        "errors_spoken": spoken,
        "words": words,
        "audio_s": 1.0,
    }


def test_options_column(bt: ModuleType) -> None:
    options = bt.parse_options("date_order=dmy; emoji=name; lexicon=Xfinity:Ex finity,Nguyen:Win")
    assert options.date_order == "dmy" and options.emoji == "name"
    assert dict(options.lexicon) == {"Xfinity": "Ex finity", "Nguyen": "Win"}
    default = bt.parse_options("")
    assert (default.date_order, default.emoji, dict(default.lexicon)) == ("mdy", "skip", {})
    for bad in ("date_order", "colour=red", "lexicon=Xfinity", "date_order=ymd"):
        with pytest.raises(ValueError):
            bt.parse_options(bad)


def test_token_set_file(bt: ModuleType, tmp_path: Path) -> None:
    path = _write_set(
        tmp_path / "set.tsv",
        "Press 1.\tpress one\tcardinal",
        "Due 10/04/2026.\tdue the tenth of april twenty twenty six\tdate\tdate_order=dmy",
    )
    lines = bt.read_token_set(path)
    assert [(line.number, line.category) for line in lines] == [(3, "cardinal"), (4, "date")]
    assert lines[1].options.date_order == "dmy" and lines[1].options_field == "date_order=dmy"
    assert [line.number for line in bt.read_token_set(path, 1)] == [3]
    # The normalized configuration reads the line with its own options; the raw one does not.
    joe_raw, joe_utterd = bt.CONFIGS[0], bt.CONFIGS[1]
    assert bt.spoken_text(lines[1], joe_raw) == "Due 10/04/2026."
    assert "april" in bt.spoken_text(lines[1], joe_utterd).lower()
    broken = _write_set(tmp_path / "broken.tsv", "Press 1.\tpress one")
    with pytest.raises(ValueError, match=r"broken\.tsv:3"):
        bt.read_token_set(broken)


def test_the_token_set_parses(bt: ModuleType) -> None:
    lines = bt.read_token_set(bt.TOKEN_SET)
    assert len(lines) >= 150
    assert all(line.text and line.expected and line.category for line in lines)
    assert any(line.options.lexicon for line in lines)


def test_score_reads_both_sides_alike(bt: ModuleType) -> None:
    assert bt.score("press one for billing", "Press 1 for billing.") == {
        "errors": 0,
        "errors_spoken": 0,
        "words": 4,
    }
    assert bt.score("you have twelve new messages", "You have new messages")["errors"] == 1
    # Written forms wer.normalize reads its own way: only the spoken scoring hears them right.
    for expected, transcript in (
        ("in business since nineteen ninety eight", "In business since 1998."),
        ("the f b i has been notified", "The FBI has been notified."),
        ("we are closed on december twenty fifth", "We are closed on December 25th."),
    ):
        scored = bt.score(expected, transcript)
        assert scored["errors"] > 0, transcript
        assert scored["errors_spoken"] == 0, transcript
    # A wrong word stays wrong under both.
    wrong = bt.score("the f b i has been notified", "The FDI has been notified.")
    assert wrong["errors"] > 0 and wrong["errors_spoken"] > 0


def test_compare_lists_worse_lines_and_bounds_the_difference(bt: ModuleType) -> None:
    baseline = [_item(n, "a", e, 4) for n, e in ((1, 2), (2, 0), (3, 1), (4, 0))]
    candidate = [
        _item(n, "a", e, 4, spoken) for n, e, spoken in ((1, 0, 0), (2, 1, 0), (3, 1, 0), (4, 0, 2))
    ]
    result = bt.compare(baseline, candidate)
    plain, spoken = result["wer"], result["wer_spoken"]
    assert plain["difference"] == pytest.approx((0 - 2 + 1 + 0 + 0) / 16)
    assert (plain["lines_better"], plain["lines_worse"], plain["lines_equal"]) == (1, 1, 2)
    assert spoken["difference"] == pytest.approx(2 / 16) and spoken["lines_worse"] == 1
    # Line 2 is worse under `wer`, line 4 under `wer_spoken`.
    assert [item["line"] for item in result["worse_lines"]] == [2, 4]
    assert result["worse_lines"][0]["baseline_errors"] == 0
    assert result["worse_lines"][1]["errors_spoken"] == 2
    low, high = plain["difference_ci95"]
    assert low <= plain["difference"] <= high and low < high
    same = bt.compare(baseline, baseline)
    assert same["wer"]["difference_ci95"] == [0.0, 0.0] and same["worse_lines"] == []
    with pytest.raises(ValueError):
        bt.compare(baseline, candidate[:3])


def test_set_report_wer_categories_and_target(bt: ModuleType, tmp_path: Path) -> None:
    lines = bt.read_token_set(
        _write_set(
            tmp_path / "set.tsv",
            "Press 1.\tpress one\tcardinal",
            "Gate 12.\tgate twelve\tcode",
        )
    )
    runs = {
        "joe-raw": [_item(3, "cardinal", 1, 2, 1), _item(4, "code", 2, 2, 2)],
        "joe-utterd": [_item(3, "cardinal", 0, 2), _item(4, "code", 1, 2)],
        "hibari-raw": [_item(3, "cardinal", 0, 2, 1), _item(4, "code", 0, 2, 1)],
        "hibari-utterd": [_item(3, "cardinal", 0, 2), _item(4, "code", 1, 2)],
    }
    report = bt.set_report(lines, runs)
    joe = report["configs"]["joe-utterd"]
    assert (joe["wer"], joe["errors"], joe["words"], joe["wer_spoken"]) == (0.25, 1, 4, 0.0)
    assert report["configs"]["joe-raw"]["categories"]["code"]["wer"] == 1.0
    assert report["target"]["wer"]["met"] is False  # 0.25 > hibari-raw's 0.0
    assert report["target"]["wer_spoken"]["met"] is True  # 0.0 <= 0.5
    hibari = report["comparisons"]["hibari-utterd vs hibari-raw"]
    assert [item["line"] for item in hibari["worse_lines"]] == [4]
    assert report["front_end_match"]["lines"] == 2
    summary = bt.summary_of({"sets": {"s": report}})["sets"]["s"]
    assert "items" not in summary["configs"]["joe-raw"]
    assert summary["comparisons"]["hibari-utterd vs hibari-raw"]["worse_lines"] == [4]


def test_helpers(bt: ModuleType) -> None:
    assert bt.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert bt.percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    text = bt.mixed_text(["abc", "de"], 20)
    assert text == "abc de abc de abc de"[:20] and len(text) == 20
    assert bt.set_names([Path("a/x.tsv"), Path("b/x.tsv")]) == {
        "x": Path("a/x.tsv"),
        "x-2": Path("b/x.tsv"),
    }


def test_cost_only_quick_run(bt: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "text.json"
    completed = subprocess.run(
        [sys.executable, str(BENCH / "bench_text.py"), "--cost-only", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["git"]["commit"] and data["sets"] == {}
    cost = data["cost"]
    assert cost["first_call_ms"] > 0
    every = cost["per_sentence"]["all"]
    assert every["sentences"] > 0
    assert 0 < every["fastest_run"]["median_ms"] <= every["fastest_run"]["max_ms"]
    slowest = [item["fastest_ms"] for item in every["slowest"]]
    assert 0 < len(slowest) <= 5 and slowest == sorted(slowest, reverse=True)
    assert slowest[0] == pytest.approx(every["fastest_run"]["max_ms"])
    assert [int(k) for k in cost["mixed_text"]] == [2_000, 20_000] == list(bt.MIXED_CHARS)
    assert all(v["chars"] == int(k) for k, v in cost["mixed_text"].items())
    linearity = cost["linearity"]
    assert linearity["chars_ratio"] == 10.0
    assert linearity["time_ratio_fastest"] > 0 and linearity["long_over_its_slices"] > 0
