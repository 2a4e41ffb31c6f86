"""hibari's G2P on packed, mapped tables answers exactly as hibari's own G2P on its dicts."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import hibari.g2p
import pytest
from utterd.models.hibari import g2p_tables
from utterd.models.hibari.g2p_tables import G2pTables, load_tables, pack, packed_g2p

ASSETS = Path(hibari.g2p.ASSETS)
BENCH_TEXT = Path(__file__).resolve().parents[2] / "bench" / "text"


def _json(name: str) -> Any:
    with gzip.open(ASSETS / name, "rt", encoding="utf-8") as file:
        return json.load(file)


@pytest.fixture(scope="module")
def us_sources() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return (
        _json("lexicon_us_gold.json.gz"),
        _json("lexicon_us_silver.json.gz"),
        _json("tagger.json.gz"),
    )


@pytest.fixture(scope="module")
def us_tables(
    us_sources: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
) -> G2pTables:
    return G2pTables(pack(*us_sources, source_key="test"))


def test_every_entry_is_found_with_its_value(
    us_sources: tuple[dict[str, Any], dict[str, Any], dict[str, Any]], us_tables: G2pTables
) -> None:
    gold, silver, tagger = us_sources
    for table, source in ((us_tables.gold, gold), (us_tables.silver, silver)):
        assert len(table) == len(source)
        for word, value in source.items():
            assert table.get(word) == value, word
    for word, tag in tagger["tagdict"].items():
        assert us_tables.tagdict.get(word) == tag
    assert all(word in us_tables.vocab for word in tagger["vocab"])
    assert us_tables.tags == tagger["tags"]
    for feature, weights in tagger["weights"].items():
        # The same floats (not merely close): the tagger's sums and its argmax stay the same.
        assert us_tables.weights.get(feature) == weights, feature


def test_absent_keys_are_absent(
    us_sources: tuple[dict[str, Any], dict[str, Any], dict[str, Any]], us_tables: G2pTables
) -> None:
    gold = us_sources[0]
    first, last = min(gold), max(gold)
    for word in ("", "\x00", first[:-1] if len(first) > 1 else "", last + "z", "qzxqzx", "\ud800"):
        if word not in gold:
            assert us_tables.gold.get(word) is None and word not in us_tables.gold
    assert us_tables.weights.get("no such feature", "default") == "default"


@pytest.mark.parametrize("british", [False, True])
def test_whole_texts_read_as_hibari_reads_them(tmp_path: Path, british: bool) -> None:
    lines = [
        line.strip()
        for name in ("heldout_en.txt", "prompts_en.txt")
        for line in (BENCH_TEXT / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    lines += ["I read the record; now I'll record a live read.", "Dr. Smith paid $3.50 at 5 PM."]

    def no_oov(word: str) -> str:
        return ""  # the same for both: unknown words compare equal without the OOV net

    ours, tables = packed_g2p(no_oov, british=british, folder=tmp_path)
    reference = hibari.g2p.G2P(oov=no_oov, british=british)
    read = []
    for line in lines:
        read.append(ours(line))
        tables.drop_pages()  # as the voice does after each sentence: the same answers after
    assert read == [reference(line) for line in lines]


def resident_kib(path: Path) -> int:
    """Rss of this process's mappings of `path` (/proc/self/smaps), in KiB."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            inside = head[-1] == str(path)
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


def test_dropped_pages_leave_the_process(tmp_path: Path) -> None:
    g2p, tables = packed_g2p(lambda word: "", british=False, folder=tmp_path)
    assert tables.path is not None
    g2p("Before you leave the building tonight, please make sure every window is closed.")
    assert resident_kib(tables.path) > 0
    tables.drop_pages()
    assert resident_kib(tables.path) == 0


def test_packed_once_then_mapped(
    tmp_path: Path, us_sources: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
) -> None:
    sources = [ASSETS / "lexicon_us_gold.json.gz"]
    reads: list[int] = []

    def read() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        reads.append(1)
        return us_sources

    first = load_tables(tmp_path, "t", sources, "1.0", read)
    second = load_tables(tmp_path, "t", sources, "1.0", read)
    assert reads == [1] and first.path == second.path and second.path is not None
    assert second.gold.get("hello") == us_sources[0]["hello"]
    # Another source version: packed again under another name; the old file is removed.
    third = load_tables(tmp_path, "t", sources, "2.0", read)
    assert reads == [1, 1] and third.path != first.path
    assert sorted(p.name for p in tmp_path.iterdir()) == [third.path.name]  # type: ignore[union-attr]
    for tables in (first, second, third):
        tables.close()


def test_a_new_synthesis_revision_does_not_pack_the_tables_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packed tables depend on hibari's lexicons (its version), not on utterd's synthesis
    revision, which is in the voice's cache-key stamp: bumping it must not repack 10.6 MB at
    the next start (the start that parses the lexicons peaks at about 240 MiB)."""
    from utterd.models.hibari import family

    _, tables = packed_g2p(lambda word: "", british=False, folder=tmp_path)
    packed = tables.path
    assert packed is not None
    stamp = packed.stat().st_mtime_ns
    tables.close()
    monkeypatch.setattr(family, "SYNTHESIS_REVISION", family.SYNTHESIS_REVISION + 1)
    family.front_end_version.cache_clear()
    try:
        assert family.front_end_version().endswith(f"+synth{family.SYNTHESIS_REVISION}")
        _, again = packed_g2p(lambda word: "", british=False, folder=tmp_path)
    finally:
        family.front_end_version.cache_clear()
    assert again.path == packed and packed.stat().st_mtime_ns == stamp
    again.close()


def test_a_damaged_file_is_packed_again(
    tmp_path: Path, us_sources: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
) -> None:
    sources = [ASSETS / "tagger.json.gz"]
    tables = load_tables(tmp_path, "t", sources, "1.0", lambda: us_sources)
    assert tables.path is not None
    path = tables.path
    tables.close()
    path.write_bytes(b"garbage")
    again = load_tables(tmp_path, "t", sources, "1.0", lambda: us_sources)
    assert again.gold.get("hello") == us_sources[0]["hello"]
    assert path.read_bytes().startswith(g2p_tables.MAGIC)
    again.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_keeps_the_tables_in_memory(
    tmp_path: Path, us_sources: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        tables = load_tables(folder, "t", [ASSETS / "tagger.json.gz"], "1", lambda: us_sources)
    finally:
        folder.chmod(0o700)
    assert tables.path is None and tables.gold.get("hello") == us_sources[0]["hello"]


def test_no_folder_keeps_the_tables_in_memory(
    us_sources: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
) -> None:
    tables = load_tables(None, "t", [ASSETS / "tagger.json.gz"], "1", lambda: us_sources)
    assert tables.path is None and tables.silver.get("hello") == us_sources[1].get("hello")
