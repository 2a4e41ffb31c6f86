"""Sample-level check that utterd's engines say exactly what their baselines say.

    python bench/equivalence.py [--threads 2] [--quick] [--out FILE]

Intelligibility (`intelligibility.py`) compares the engines through a listener, which the voices'
random noise makes approximate. Here every line of the text set is synthesized without noise by
both engines of each pair (utterd: ``SynthesisParams(deterministic=True)``; piper-tts:
``SynthesisConfig(noise_scale=0, noise_w_scale=0, normalize_audio=False)``; hibari:
``stream(text, seed=0)``, utterd's deterministic seed) and the audio is compared sample by sample:
same length, and the largest absolute difference. Zero difference means utterd's text front end,
model run and post-processing match the baseline exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Final

import engines as eng

BENCH_DIR: Final = Path(__file__).resolve().parent
DEFAULT_TEXT: Final = BENCH_DIR / "text" / "prompts_en.txt"
RESULTS_DIR: Final = BENCH_DIR / "results"
QUICK_LINES: Final = 2

PAIR_KEYS: Final = ("lines", "length_mismatches", "max_abs_diff", "identical_lines")
"""Summary keys per pair; the smoke test checks every one is present."""


def compare_pair(pair: str, lines: list[str], threads: int) -> dict[str, Any]:
    """Synthesize every line deterministically with both engines of `pair` and compare."""
    import numpy as np

    loaded = []
    for spec in eng.pair_members(pair):
        engine = eng.make_engine(spec.name)
        engine.import_modules()
        engine.load(threads)
        loaded.append(engine)
    utterd, baseline = loaded
    if utterd.sample_rate_hz != baseline.sample_rate_hz:
        raise SystemExit(
            f"{pair}: sample rates differ ({utterd.sample_rate_hz} vs {baseline.sample_rate_hz})"
        )
    items: list[dict[str, Any]] = []
    for line in lines:
        audio = [
            np.concatenate([np.zeros(0, np.float32), *engine.stream_deterministic(line)])
            for engine in loaded
        ]
        same_length = len(audio[0]) == len(audio[1])
        diff = float(np.max(np.abs(audio[0] - audio[1]))) if same_length and len(audio[0]) else 0.0
        items.append(
            {
                "text": line,
                "samples_utterd": len(audio[0]),
                "samples_baseline": len(audio[1]),
                "max_abs_diff": diff if same_length else None,
            }
        )
    for engine in loaded:
        engine.close()
    comparable = [item for item in items if item["max_abs_diff"] is not None]
    return {
        "utterd": utterd.spec.name,
        "baseline": baseline.spec.name,
        "lines": len(items),
        "length_mismatches": len(items) - len(comparable),
        "max_abs_diff": max((float(item["max_abs_diff"]) for item in comparable), default=0.0),
        "identical_lines": sum(1 for item in comparable if item["max_abs_diff"] == 0.0),
        "items": items,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every engine")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="text-set file")
    parser.add_argument("--quick", action="store_true", help=f"only the first {QUICK_LINES} lines")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: bench/results/)"
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Compare every pair and write the JSON."""
    args = parse_args(argv)
    lines = eng.read_text_set(args.text, QUICK_LINES if args.quick else None)
    started_utc, commit = eng.utc_now_iso(), eng.git_commit()
    pairs = {}
    for pair in eng.PAIRS:
        print(f"{pair} ...", file=sys.stderr, flush=True)
        pairs[pair] = compare_pair(pair, lines, args.threads)
    report: dict[str, Any] = {
        "benchmark": "equivalence",
        "date_utc": eng.utc_now_iso(),
        "started_utc": started_utc,
        "git_commit": commit,
        "command": " ".join(
            ["python", "bench/equivalence.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "cpu_model": eng.cpu_model(),
        "threads": args.threads,
        "quick": bool(args.quick),
        "text_set": {"path": str(args.text), "lines": len(lines)},
        "versions": eng.package_versions(),
        "pairs": pairs,
    }
    out = args.out or RESULTS_DIR / f"equivalence-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    for pair, result in pairs.items():
        print(
            f"[{pair}] {result['utterd']} vs {result['baseline']}: {result['lines']} lines, "
            f"{result['identical_lines']} bit-identical, {result['length_mismatches']} of "
            f"different length, largest sample difference {result['max_abs_diff']:.3g}"
        )
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
