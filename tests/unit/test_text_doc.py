"""docs/text.md shows what is said for what is written: every example row is checked against the
front end, so the page cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from utterd.models.text.normalize_en import EnglishOptions, normalize
from utterd.models.text.say_as_en import say_as
from utterd.models.text.segments import SayAs

DOC = Path(__file__).resolve().parents[2] / "docs" / "text.md"
_CELL = re.compile(r"(?<!\\)\|")


def _rows(header: str) -> list[list[str]]:
    """The body rows of every table whose header row is `header`."""
    rows: list[list[str]] = []
    inside = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.strip() == header:
            inside = True
            continue
        if not line.startswith("|"):
            inside = False
        elif inside and not line.startswith("|---"):
            cells = [c.strip().replace("\\|", "|") for c in _CELL.split(line.strip())[1:-1]]
            rows.append(cells)
    return rows


def _code(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


def _options(cell: str) -> EnglishOptions:
    values: dict[str, str] = {}
    lexicon: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in cell.split(";"))):
        key, _, value = part.partition(":")
        if key == "lexicon":
            for entry in value.strip().strip("{}").split(","):
                word, _, spoken = entry.partition(":")
                lexicon[word.strip()] = spoken.strip()
        else:
            values[key.strip()] = value.strip()
    return EnglishOptions(
        date_order="dmy" if values.get("date_order") == "dmy" else "mdy",
        emoji="name" if values.get("emoji") == "name" else "skip",
        lexicon=lexicon,
    )


PLAIN = _rows("| Written | Options | Said |")
SAY_AS = _rows("| interpret-as | format | Written | Said |")


def test_the_page_has_examples_of_every_kind() -> None:
    kinds = re.findall(r"^### (.+)$", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(kinds) >= 23 and len(PLAIN) >= 3 * 23
    assert len({row[0] for row in SAY_AS}) >= 9


@pytest.mark.parametrize(("written", "options", "said"), PLAIN)
def test_plain_text_example(written: str, options: str, said: str) -> None:
    assert normalize(_code(written), _options(options)) == said


@pytest.mark.parametrize(("interpret_as", "format_", "written", "said"), SAY_AS)
def test_say_as_example(interpret_as: str, format_: str, written: str, said: str) -> None:
    hint = SayAs(_code(interpret_as), _code(format_) if format_ else None)
    assert say_as(_code(written), hint) == said
