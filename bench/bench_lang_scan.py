"""What the mixed-language hand-over adds to an English request's path (issue 19's condition:
plain English text pays no span split, only a linear scan).

    python bench/bench_lang_scan.py [--repeats 2000] [--out FILE]

Before a plain-text job is queued, the daemon asks the renderer whether the text must be
rendered like SSML: before issue 19 that was `frontend.lexicon_sentences` (a word of the phoneme
lexicon), now it is `frontend.plain_sentences` (that, or a Han character, which sends the text to
the language-span split). The difference between the two on an English text is everything the
Chinese work adds to its time to first audio. Both run on every line of
bench/text/prompts_en.txt, alternating call by call (the order reversed every other pass) with
the default options (no lexicon), and on a Chinese-English line for scale (where the scan finds
a Han character and the text is cut into sentences). Reported: the median over lines of each
line's median per-call time, and of the paired difference, in microseconds.
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
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = PROMPTS.read_text(encoding="utf-8").splitlines()
    english = [line.strip() for line in text if line.strip() and not line.startswith("#")]
    load_start = os.getloadavg()
    result = {
        "benchmark": "bench_lang_scan",
        "command": f"python bench/bench_lang_scan.py --repeats {args.repeats}",
        "cpu_model": eng.cpu_model(),
        "load_average_start": list(load_start),
        "english_lines": len(english),
        "english_chars_median": statistics.median(len(line) for line in english),
        "english": per_call_us(english, args.repeats),
        "mixed_line": MIXED,
        "mixed": per_call_us([MIXED], args.repeats),
        "load_average_end": list(os.getloadavg()),
    }
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
