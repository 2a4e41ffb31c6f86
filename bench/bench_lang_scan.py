"""What the mixed-language hand-over adds to an English request's path (issue 19's condition:
plain English text pays no span split, only a linear scan).

    python bench/bench_lang_scan.py [--repeats 2000] [--first-audio 5] [--out FILE]

Before a plain-text job is queued, the daemon asks the renderer whether the text must be
rendered like SSML: before issue 19 that was `frontend.lexicon_sentences` (a word of the phoneme
lexicon), now it is `frontend.plain_sentences` (that, or a Han character, which sends the text to
the language-span split). The difference between the two on an English text is everything the
Chinese work adds to its time to first audio. Both run on every line of
bench/text/prompts_en.txt, alternating call by call (the order reversed every other pass) with
the default options (no lexicon), and on a Chinese-English line for scale (where the scan finds
a Han character and the text is cut into sentences). Reported: the median over lines of each
line's median per-call time, and of the paired difference, in microseconds.

With `--first-audio N` (the voices loaded once through `VoiceStore`, the phrase cache off,
2 threads, deterministic, streaming as `speak` does), N tries of each mixed line in
`FIRST_AUDIO_LINES`, said for an English voice: its first chunk through the renderer as the
daemon makes it (`plain_sentences`, the span split, the Chinese voice, the resampler), paired
with the Chinese voice's own first chunk of the line's first span on the plain path. The
difference is what routing a Chinese span through an English request costs its first audio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Final

import engines as eng

PROMPTS: Final = Path(__file__).resolve().parent / "text" / "prompts_en.txt"
MIXED: Final = "请连接Wi-Fi，然后打开 Bluetooth 设置。温度25°C，湿度65%。"
FIRST_AUDIO_LINES: Final = (
    ("请连接Wi-Fi，然后重启路由器。", "请连接"),
    ("温度25°C，请打开 Bluetooth。", "温度25°C，请打开"),
    ("您的订单已发货，tracking number 在短信里。", "您的订单已发货，"),
)
"""(mixed line, its first span as the Chinese voice alone would get it)."""
ENGLISH_VOICE: Final = "en_US-joe-medium"
CHINESE_VOICE: Final = "zh_CN-baker-fastspeech2"


def first_audio_ms(tries: int) -> dict[str, float]:
    """Median first-chunk ms: mixed line for the English voice, its first span for the
    Chinese voice alone, and their paired difference (module docstring)."""
    import tempfile

    from utterd.daemon.cache.phrase_source import PhraseSource
    from utterd.daemon.settings import CacheSettings
    from utterd.daemon.speech.render import SsmlRenderer
    from utterd.models.text import frontend
    from utterd.models.text.frontend import DEFAULT_FRONT_END
    from utterd.models.voice import CancelToken, EngineSettings, SynthesisParams
    from utterd.models.voice_store import VoiceStore, default_families

    store = VoiceStore(
        default_families(Path(tempfile.gettempdir()) / "utterd-bench-lang-scan"),
        [],
        EngineSettings(backend="onnxruntime", threads=2),
    )
    source = PhraseSource(store, None, CacheSettings(enabled=False), store.engine_for)
    renderer = SsmlRenderer(source, store, DEFAULT_FRONT_END)
    for voice in (ENGLISH_VOICE, CHINESE_VOICE):
        store.get(voice)
    params = SynthesisParams(deterministic=True)

    def mixed(line: str) -> float:
        started = time.perf_counter()
        document = frontend.plain_sentences(line, DEFAULT_FRONT_END)
        assert document is not None
        cancel = CancelToken()
        chunks = renderer.render(document, ENGLISH_VOICE, params, cancel)
        next(chunk for chunk in chunks if len(chunk.samples))
        elapsed = time.perf_counter() - started
        cancel.cancel()
        chunks.close()
        return 1000 * elapsed

    def alone(span: str) -> float:
        started = time.perf_counter()
        cancel = CancelToken()
        chunks = source.stream(span, CHINESE_VOICE, params, cancel, mode="off")
        next(chunk for chunk in chunks if len(chunk.samples))
        elapsed = time.perf_counter() - started
        cancel.cancel()
        chunks.close()
        return 1000 * elapsed

    for line, span in FIRST_AUDIO_LINES:  # untimed: imports (lang_spans, pypinyin) and caches
        mixed(line)
        alone(span)
    mixed_ms: list[float] = []
    alone_ms: list[float] = []
    for attempt in range(tries):
        for line, span in FIRST_AUDIO_LINES:
            if attempt % 2:  # the order reversed every other pass
                alone_ms.append(alone(span))
                mixed_ms.append(mixed(line))
            else:
                mixed_ms.append(mixed(line))
                alone_ms.append(alone(span))
    return {
        "mixed_ms_median": statistics.median(mixed_ms),
        "chinese_alone_ms_median": statistics.median(alone_ms),
        "difference_ms_median": statistics.median(
            m - a for m, a in zip(mixed_ms, alone_ms, strict=True)
        ),
        "tries": len(mixed_ms),
    }


def per_call_us(lines: list[str], repeats: int) -> dict[str, float]:
    """Median per-call µs of both hand-overs and their paired difference, over `lines`."""
    from utterd.models.text import frontend
    from utterd.models.text.frontend import DEFAULT_FRONT_END

    before_us: list[float] = []
    after_us: list[float] = []
    for line in lines:
        times: dict[str, list[float]] = {"before": [], "after": []}
        calls = (
            ("before", frontend.lexicon_sentences),
            ("after", frontend.plain_sentences),
        )
        for index in range(repeats):
            for name, call in calls if index % 2 == 0 else calls[::-1]:
                started = time.perf_counter_ns()
                call(line, DEFAULT_FRONT_END)
                times[name].append((time.perf_counter_ns() - started) / 1000)
        before_us.append(statistics.median(times["before"]))
        after_us.append(statistics.median(times["after"]))
    return {
        "before_us_median": statistics.median(before_us),
        "after_us_median": statistics.median(after_us),
        "difference_us_median": statistics.median(
            a - b for a, b in zip(after_us, before_us, strict=True)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--first-audio", type=int, default=0, metavar="N")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = PROMPTS.read_text(encoding="utf-8").splitlines()
    english = [line.strip() for line in text if line.strip() and not line.startswith("#")]
    load_start = os.getloadavg()
    result = {
        "benchmark": "bench_lang_scan",
        "command": "python bench/bench_lang_scan.py "
        f"--repeats {args.repeats} --first-audio {args.first_audio}",
        "cpu_model": eng.cpu_model(),
        "load_average_start": list(load_start),
        "english_lines": len(english),
        "english_chars_median": statistics.median(len(line) for line in english),
        "english": per_call_us(english, args.repeats),
        "mixed_line": MIXED,
        "mixed": per_call_us([MIXED], args.repeats),
        "first_audio": first_audio_ms(args.first_audio) if args.first_audio else None,
        "load_average_end": list(os.getloadavg()),
    }
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
