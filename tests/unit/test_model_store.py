"""Model store and manifest: round trip, hash checks that name the file, variant choice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from utterd.models.errors import VoiceLoadError
from utterd.models.model_store import (
    FP32_ONNXRUNTIME,
    INT8_ORT_QDQ,
    INT8_OV_NNCF,
    FileRecord,
    Manifest,
    ModelStore,
    QualityFigures,
    SpeedFigures,
    Variant,
    best_variant,
    default_model_store_dir,
    file_sha256,
    verify_files,
    verify_source,
)

VOICE = "en_US-test-medium"


def variant(
    name: str,
    backend: str,
    rtf: float | None,
    passed: bool = True,
    files: tuple[FileRecord, ...] = (),
) -> Variant:
    return Variant(
        name=name,
        backend=backend,
        precision="int8" if "int8" in name else "fp32",
        method="test",
        files=files,
        quality=QualityFigures(1.0, 1.5, 0.99, 1.0, 4),
        speed=SpeedFigures(rtf=rtf, fp32_rtf=0.2, threads=2) if rtf is not None else None,
        passed=passed,
        reasons=() if passed else ("slower than FP32",),
    )


def manifest_for(source: FileRecord, variants: tuple[Variant, ...]) -> Manifest:
    return Manifest(
        voice_id=VOICE,
        source=source,
        created_utc="2025-01-01T00:00:00Z",
        calibration={"file": "calibration_en.txt", "sentences": 3},
        validation={"file": "validation_en.txt", "sentences": 2},
        machine={"cpu": {"model_name": "test"}, "threads": 2},
        variants=variants,
    )


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "voice.onnx"
    path.write_bytes(os.urandom(4096))
    return path


def test_default_store_honours_xdg_data_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    assert default_model_store_dir() == Path("/srv/data/utterd/models")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_model_store_dir() == Path.home() / ".local/share/utterd/models"


def test_manifest_round_trips_through_the_store(tmp_path: Path, source: Path) -> None:
    store = ModelStore(tmp_path / "store")
    manifest = manifest_for(
        FileRecord.of(source, name=str(source)),
        (variant(FP32_ONNXRUNTIME, "onnxruntime", 0.2), variant(INT8_ORT_QDQ, "onnxruntime", 0.1)),
    )
    path = store.write_manifest(manifest)
    assert path == tmp_path / "store" / VOICE / "manifest.json"
    assert store.load_manifest(VOICE) == manifest
    assert not list(path.parent.glob(".manifest.json.*")), "the temp file was renamed away"


def test_missing_manifest_is_none(tmp_path: Path) -> None:
    assert ModelStore(tmp_path).load_manifest(VOICE) is None


@pytest.mark.parametrize(
    "text", ["{not json", "[]", '{"format_version": 1}', '{"format_version": 9}']
)
def test_malformed_manifest_is_named(tmp_path: Path, text: str) -> None:
    store = ModelStore(tmp_path)
    store.manifest_path(VOICE).parent.mkdir(parents=True)
    store.manifest_path(VOICE).write_text(text)
    with pytest.raises(VoiceLoadError, match=str(store.manifest_path(VOICE))):
        store.load_manifest(VOICE)


def test_manifest_of_another_voice_is_refused(tmp_path: Path, source: Path) -> None:
    store = ModelStore(tmp_path)
    other = manifest_for(FileRecord.of(source), ())
    store.write_manifest(other)
    (tmp_path / VOICE).rename(tmp_path / "other-voice")
    with pytest.raises(VoiceLoadError, match="is for voice"):
        store.load_manifest("other-voice")


@pytest.mark.parametrize("voice_id", ["", ".", "..", "a/b", "..\\x"])
def test_path_like_voice_ids_cannot_name_a_folder(tmp_path: Path, voice_id: str) -> None:
    with pytest.raises(ValueError):
        ModelStore(tmp_path).voice_dir(voice_id)


def test_source_check_trusts_unchanged_stat_and_rehashes_otherwise(source: Path) -> None:
    record = FileRecord.of(source, name=str(source))
    manifest = manifest_for(record, ())
    verify_source(manifest, source, Path("m.json"))
    os.utime(source, ns=(record.mtime_ns + 10**9, record.mtime_ns + 10**9))
    verify_source(manifest, source, Path("m.json"))  # touched, same bytes: hashed and passes
    source.write_bytes(os.urandom(4096))  # same size, other bytes
    with pytest.raises(VoiceLoadError, match=r"m\.json.*another model") as caught:
        verify_source(manifest, source, Path("m.json"))
    assert str(source) in caught.value.message


def test_truncated_or_replaced_variant_file_is_named(tmp_path: Path) -> None:
    model = tmp_path / "v.int8.onnx"
    model.write_bytes(os.urandom(2048))
    records = (FileRecord.of(model),)
    verify_files(records, tmp_path, Path("m.json"))
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(VoiceLoadError, match=f"{model}.*truncated"):
        verify_files(records, tmp_path, Path("m.json"))
    model.write_bytes(os.urandom(2048))
    with pytest.raises(VoiceLoadError, match=f"{model}.*sha256"):
        verify_files(records, tmp_path, Path("m.json"))
    model.unlink()
    with pytest.raises(VoiceLoadError, match=str(model)):
        verify_files(records, tmp_path, Path("m.json"))


def test_best_variant_is_the_fastest_that_passed_for_the_backend(source: Path) -> None:
    manifest = manifest_for(
        FileRecord.of(source),
        (
            variant(FP32_ONNXRUNTIME, "onnxruntime", 0.20),
            variant(INT8_ORT_QDQ, "onnxruntime", 0.15),
            variant(INT8_OV_NNCF, "openvino", 0.05, passed=False),
            variant("fp32-openvino", "openvino", 0.30),
        ),
    )
    best_auto = best_variant(manifest, "auto")
    best_ov = best_variant(manifest, "openvino")
    assert best_auto is not None and best_auto.name == INT8_ORT_QDQ
    assert best_ov is not None and best_ov.name == "fp32-openvino"
    # `auto` never picks a variant that cannot stream below the sentence, however fast.
    faster_ov = manifest_for(
        FileRecord.of(source),
        (
            variant(FP32_ONNXRUNTIME, "onnxruntime", 0.20),
            variant("fp32-openvino", "openvino", 0.05),
        ),
    )
    chosen = best_variant(faster_ov, "auto")
    assert chosen is not None and chosen.name == FP32_ONNXRUNTIME
    assert best_variant(faster_ov, "openvino").name == "fp32-openvino"  # type: ignore[union-attr]
    failing_only = manifest_for(
        FileRecord.of(source), (variant(INT8_OV_NNCF, "openvino", 0.01, False),)
    )
    assert best_variant(failing_only, "openvino") is None


@given(st.binary(max_size=5000))
def test_file_hash_is_sha256_of_the_bytes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    import hashlib

    path = tmp_path_factory.mktemp("h") / "f"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
