"""docs/operations.md as a user follows it: the files it names are in the repository, and its
ALSA file-sink configuration, copied from the page into ~/.asoundrc, works (issue 16, finding 10:
the page pointed at a shared/audio/ file that is not shipped)."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from audio_sinks import ASOUNDRC_FILE_SINK, read_s16
from player_driver import nonzero_signal, run_driver
from utterd.models.voice import float_to_pcm16

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"

_REPO_PATH = re.compile(
    r"`((?:shared|tests|docs|systemd|daemon|models|quantize|bench)/[A-Za-z0-9_./-]+)`"
)
_CODE_BLOCK = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)


def _file_sink_snippet() -> str:
    section = DOC.read_text(encoding="utf-8").split("### No sound card", 1)[1]
    blocks = [textwrap.dedent(b) for b in _CODE_BLOCK.findall(section)]
    snippets = [b for b in blocks if "pcm.!default" in b and "type file" in b]
    assert snippets, "the page shows the file sink's configuration"
    return snippets[0]


def _alsa_tokens(config: str) -> list[str]:
    """The configuration without comments and layout (ALSA ignores both)."""
    return " ".join(line.split("#", 1)[0] for line in config.splitlines()).split()


def test_every_repository_path_the_page_names_exists() -> None:
    named = set(_REPO_PATH.findall(DOC.read_text(encoding="utf-8")))
    assert named, "the pattern finds the page's paths"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, missing


def test_the_pages_file_sink_is_the_one_the_tests_use() -> None:
    assert _alsa_tokens(_file_sink_snippet()) == _alsa_tokens(ASOUNDRC_FILE_SINK)


@pytest.mark.audio
def test_the_pages_file_sink_records_what_is_played(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(_file_sink_snippet())
    sink = tmp_path / "played.raw"
    env = {**os.environ, "HOME": str(home), "UTTERD_ALSA_SINK": str(sink)}
    result, stderr = run_driver(env, "chunks", "--sizes", "3000")
    assert result["played"], stderr
    played = read_s16(sink)
    np.testing.assert_array_equal(played[played != 0], float_to_pcm16(nonzero_signal(3000, 0)))
