"""docs/text.md's Chinese section: every example row is checked against the Chinese front end,
so the page cannot drift from the code (as tests/unit/test_text_doc.py does for English)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from utterd.models.text.g2p_zh import syllables
from utterd.models.text.normalize_zh import normalize_zh

DOC = Path(__file__).resolve().parents[2] / "docs" / "text.md"


def _rows(header: str) -> list[tuple[str, str]]:
    """(written, said) of every body row of the tables whose header row is `header`."""
    rows: list[tuple[str, str]] = []
    inside = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.strip() == header:
            inside = True
        elif not line.startswith("|"):
            inside = False
        elif inside and not line.startswith("|---"):
            written, said = (c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1])
            assert written.startswith("`") and written.endswith("`"), line
            rows.append((written[1:-1], said))
    return rows


WRITTEN = _rows("| Written (zh) | Said (zh) |")
TONES = _rows("| Written (zh) | Pinyin |")


def test_the_section_has_examples() -> None:
    assert len(WRITTEN) >= 20 and len(TONES) >= 10


@pytest.mark.parametrize(("written", "said"), WRITTEN)
def test_written_form_example(written: str, said: str) -> None:
    assert normalize_zh(written) == said


@pytest.mark.parametrize(("written", "pinyin"), TONES)
def test_tone_example(written: str, pinyin: str) -> None:
    assert " ".join(syllables(written)) == pinyin
