"""The text sets shipped with the quantizer: calibration and (held-out) validation sentences."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

CALIBRATION_FILE: Final = "calibration_en.txt"
VALIDATION_FILE: Final = "validation_en.txt"
INTELLIGIBILITY_FILE: Final = "intelligibility_en.txt"


@dataclass(frozen=True)
class TextSet:
    """Utterances read from a text-set file."""

    name: str
    """File name (the shipped sets) or path (a user's file)."""

    lines: tuple[str, ...]
    """The utterances used, in file order."""

    @property
    def sha256(self) -> str:
        """Hash of the utterances used (one per line), for the manifest."""
        return hashlib.sha256("\n".join(self.lines).encode("utf-8")).hexdigest()

    def record(self) -> dict[str, Any]:
        """What the manifest says of the set: file, lines used and their hash."""
        return {"file": self.name, "sentences": len(self.lines), "sha256": self.sha256}


def parse_text_set(text: str) -> list[str]:
    """Utterances: one a line; blank lines and lines starting with '#' are skipped."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def read_text_set(source: str | Path, limit: int | None = None) -> TextSet:
    """A shipped set by file name (`calibration_en.txt`), or any file by path; first `limit` lines."""
    if isinstance(source, Path) or "/" in source:
        path = Path(source)
        lines = parse_text_set(path.read_text(encoding="utf-8"))
        name = str(path)
    else:
        lines = parse_text_set(
            resources.files(__package__).joinpath(source).read_text(encoding="utf-8")
        )
        name = source
    if limit is not None:
        if limit < 1:
            raise ValueError(f"a text set needs at least one line, got limit {limit}")
        lines = lines[:limit]
    if not lines:
        raise ValueError(f"text set {name} has no utterances")
    return TextSet(name=name, lines=tuple(lines))
