"""Speed and memory of utterd's voice engines against their baselines, measured in the same run.

    python bench/bench_voices.py [--threads 2] [--repeats 3] [--quick] [--out FILE]

Pairs (see `engines.py`): utterd's Piper engine vs piper-tts's `PiperVoice` on joe's files, and
utterd's hibari family vs the hibari package's `Hibari`. Each engine runs in its own fresh
subprocess (so imports, load and peak RSS are its own), engines are alternated in every repeat
(order reversed on odd repeats) so machine noise spreads over all of them.

Figures per engine (lower is better for every one):

- ``import_s``: importing the engine's modules (numpy, onnxruntime, the package) in a new process;
- ``load_s``: loading the model plus one warm-up synthesis of "Ready." (utterd's `VoiceStore.get`
  does both in one call, so the baselines get the same warm-up); ``ready_s = import_s + load_s``;
- ``ttfa_ms_p50``: time to first audio, request → first chunk in hand, for one short sentence,
  median over ``--ttfa-reps`` tries after the warm-up, pooled over repeats (``ttfa_ms_min``: the
  fastest try);
- ``rtf``: real-time factor = wall seconds spent synthesizing the whole text set / seconds of audio
  produced (0.1 = ten times faster than real time), ``--passes`` passes over the set pooled;
  utterd runs its throughput path (``low_latency=False``: what a `synthesize` request for a WAV
  and the phrase cache's rendering use); its streaming path's first-audio figures are
  ``ttfa_ms_*`` here and bench_streaming.py's;
- ``cpu_rtf``: CPU seconds (user + system, all threads) / seconds of audio, less noisy than ``rtf``
  on a shared machine and shows how many cores an engine really keeps busy;
- ``rtf_floor`` / ``cpu_rtf_floor``: the same over the whole set, but each line counted by its
  fastest pass only: other jobs on a shared machine only ever add time, so this filters bursts;
- ``peak_rss_mib``: the subprocess's peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``).

Each figure is given as the median over repeats and as the best (lowest) repeat; a pair's ratios
are utterd / baseline (below 1: utterd is faster or smaller) of the medians, of the bests, and
"paired": the median of the per-repeat ratios, the two engines of a pair having run back to
back. Writes JSON to ``bench/results/`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import engines as eng

BENCH_DIR: Final = Path(__file__).resolve().parent
DEFAULT_TEXT: Final = BENCH_DIR / "text" / "prompts_en.txt"
RESULTS_DIR: Final = BENCH_DIR / "results"
TTFA_TEXT: Final = "Motion detected at the back door."
QUICK_LINES: Final = 2

METRICS: Final = (
    "import_s",
    "load_s",
    "ready_s",
    "ttfa_ms_p50",
    "ttfa_ms_min",
    "rtf",
    "rtf_floor",
    "cpu_rtf",
    "cpu_rtf_floor",
    "peak_rss_mib",
)
"""Summary figures per engine; the smoke test checks every one is present and positive."""

METRIC_LABELS: Final = {
    "import_s": "import (s)",
    "load_s": "load + warm-up (s)",
    "ready_s": "import + load (s)",
    "ttfa_ms_p50": "time to first audio p50 (ms)",
    "ttfa_ms_min": "time to first audio min (ms)",
    "rtf": "real-time factor (wall)",
    "rtf_floor": "RTF, best pass per line",
    "cpu_rtf": "real-time factor (CPU)",
    "cpu_rtf_floor": "CPU RTF, best pass per line",
    "peak_rss_mib": "peak RSS (MiB)",
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_worker(
    name: str, threads: int, text_path: Path, limit: int | None, ttfa_reps: int, passes: int
) -> dict[str, Any]:
    """Measure one engine in this (fresh) process; returns the raw figures of one run."""
    engine = eng.make_engine(name)

    start = time.perf_counter()
    engine.import_modules()
    import_s = time.perf_counter() - start

    start = time.perf_counter()
    engine.load(threads)
    load_s = time.perf_counter() - start
    rss_after_load_mib = _peak_rss_mib()

    ttfa_ms: list[float] = []
    for _ in range(ttfa_reps):
        start = time.perf_counter()
        pieces = engine.stream(TTFA_TEXT)
        next(pieces)
        ttfa_ms.append((time.perf_counter() - start) * 1000.0)
        for _ in pieces:  # finish the request so the next one starts from an idle engine
            pass

    lines = eng.read_text_set(text_path, limit)
    rate = engine.sample_rate_hz
    # tries[i] holds (wall s, CPU s, audio s) of line i, one per pass; passes are the outer
    # loop so each line's tries are spread over time rather than caught by one noise burst.
    tries: list[list[tuple[float, float, float]]] = [[] for _ in lines]
    for _ in range(passes):
        for index, line in enumerate(lines):
            cpu_start, start = _cpu_seconds(), time.perf_counter()
            samples = sum(len(piece) for piece in engine.synthesize(line))
            elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
            tries[index].append((elapsed, cpu, samples / rate))
    peak_rss_mib = _peak_rss_mib()  # before the extra pass: the figure the baselines also get
    # utterd's streaming path over the same set, one pass: the extra CPU its windows cost.
    stream_cpu_s = stream_audio_s = 0.0
    if engine.synthesize.__func__ is not eng.Engine.synthesize:  # type: ignore[attr-defined]
        for line in lines:
            cpu_start = _cpu_seconds()
            samples = sum(len(piece) for piece in engine.stream(line))
            stream_cpu_s += _cpu_seconds() - cpu_start
            stream_audio_s += samples / rate
    flat = [t for line_tries in tries for t in line_tries]
    synth_s, cpu_s, audio_s = (sum(t[k] for t in flat) for k in range(3))
    best_wall = [min(line_tries, key=lambda t: t[0] / t[2]) for line_tries in tries]
    best_cpu = [min(line_tries, key=lambda t: t[1] / t[2]) for line_tries in tries]
    per_line = [
        {"synth_s": [t[0] for t in ts], "cpu_s": [t[1] for t in ts], "audio_s": [t[2] for t in ts]}
        for ts in tries
    ]

    return {
        "engine": name,
        "threads": threads,
        "import_s": import_s,
        "load_s": load_s,
        "ready_s": import_s + load_s,
        "ttfa_ms": ttfa_ms,
        "ttfa_ms_p50": statistics.median(ttfa_ms),
        "ttfa_ms_min": min(ttfa_ms),
        "passes": passes,
        "synth_s": synth_s,
        "cpu_s": cpu_s,
        "audio_s": audio_s,
        "rtf": synth_s / audio_s,
        "cpu_rtf": cpu_s / audio_s,
        "rtf_floor": sum(t[0] for t in best_wall) / sum(t[2] for t in best_wall),
        "cpu_rtf_floor": sum(t[1] for t in best_cpu) / sum(t[2] for t in best_cpu),
        "stream_cpu_rtf": stream_cpu_s / stream_audio_s if stream_audio_s else None,
        "sample_rate_hz": engine.sample_rate_hz,
        "lines": len(lines),
        "per_line": per_line,
        "rss_after_load_mib": rss_after_load_mib,
        "peak_rss_mib": peak_rss_mib,
        "peak_rss_with_stream_pass_mib": _peak_rss_mib(),
        "extra": engine.extra(),
    }


def spawn_worker(name: str, args: argparse.Namespace, limit: int | None) -> dict[str, Any]:
    """Run one engine's measurement in a fresh interpreter and return its figures."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--threads",
        str(args.threads),
        "--text",
        str(args.text),
        "--ttfa-reps",
        str(args.ttfa_reps),
        "--passes",
        str(args.passes),
    ]
    if limit is not None:
        command += ["--limit", str(limit)]
    env = dict(os.environ)
    # Keep OpenMP/BLAS pools from adding threads beyond the ones the benchmark sets.
    env.setdefault("OMP_NUM_THREADS", str(args.threads))
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall_s = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(
            f"worker {name} failed with exit code {completed.returncode}:\n{completed.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall_s
    return result


def run_order(names: list[str], repeat: int) -> list[str]:
    """Engines in the order of one repeat: as given on even repeats, reversed on odd ones."""
    return names if repeat % 2 == 0 else list(reversed(names))


def summarize(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per figure: the median over an engine's runs and, as `<figure>_best`, the lowest run.

    TTFA's median pools every try of every run. On a shared machine other processes only ever
    add time, so the best run is the closest to the engine's own speed; the median shows what a
    busy machine gives.
    """
    summary: dict[str, float] = {}
    for metric in METRICS:
        values = [float(run[metric]) for run in runs]
        summary[metric] = statistics.median(values)
        summary[f"{metric}_best"] = min(values)
    summary["ttfa_ms_p50"] = statistics.median(t for run in runs for t in run["ttfa_ms"])
    summary["audio_s"] = statistics.median(float(run["audio_s"]) for run in runs)
    return summary


def paired_ratios(
    utterd_runs: list[dict[str, Any]], baseline_runs: list[dict[str, Any]]
) -> dict[str, float]:
    """Median over repeats of utterd's figure / the baseline's figure in the same repeat.

    The two engines of a pair run back to back in every repeat, so they mostly share the
    machine's noise; the ratio within a repeat cancels much of it.
    """
    return {
        metric: statistics.median(
            float(u[metric]) / float(b[metric]) for u, b in zip(utterd_runs, baseline_runs)
        )
        for metric in METRICS
    }


def cpu_times() -> list[int]:
    """The aggregate `cpu` line of /proc/stat (user nice system idle iowait irq softirq steal ...)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            return [int(field) for field in stat.readline().split()[1:]]
    except OSError:
        return []


def steal_percent(before: list[int], after: list[int]) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two `cpu_times` readings."""
    if len(before) < 8 or len(after) < 8:
        return None
    deltas = [b - a for a, b in zip(before, after)]
    total = sum(deltas[:8])
    return 100.0 * deltas[7] / total if total else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def format_table(report: dict[str, Any]) -> str:
    """The human-readable table: per pair, utterd vs baseline and their ratio."""
    out = [
        (
            f"CPU: {report['cpu_model']} ({report['cpu_count']} logical CPUs), "
            f"threads: {report['threads']}, repeats: {report['repeats']}, "
            f"text: {report['text_set']['lines']} lines"
        ),
        (
            f"machine noise: CPU steal {_fmt(report['machine']['cpu_steal_percent'])}%, "
            f"1-min load {report['machine']['loadavg_1m_before']:.2f} before, "
            f"{report['machine']['loadavg_1m_after']:.2f} after"
        ),
    ]
    out.append("")
    out.append(
        "median = median over repeats; best = lowest repeat; paired = median of the per-repeat "
        "ratios; ratio = utterd / baseline (below 1: utterd better)"
    )
    for pair, info in report["pairs"].items():
        utterd, baseline = info["utterd"], info["baseline"]
        out.append("")
        out.append(f"[{pair}] {utterd} (utterd) vs {baseline} (baseline)")
        out.append(
            f"{'':<30}{'utterd':>10}{'baseline':>10}{'ratio':>8}"
            f"{'utterd':>10}{'baseline':>10}{'ratio':>8}{'paired':>8}"
        )
        out.append(f"{'':<30}{'--------- median ---------':>28}{'---------- best ----------':>28}")
        us, bs = report["engines"][utterd]["summary"], report["engines"][baseline]["summary"]
        for metric in METRICS:
            best = f"{metric}_best"
            out.append(
                f"{METRIC_LABELS[metric]:<30}"
                f"{us[metric]:>10.4g}{bs[metric]:>10.4g}{info['ratios'][metric]:>8.3f}"
                f"{us[best]:>10.4g}{bs[best]:>10.4g}{info['ratios_best'][metric]:>8.3f}"
                f"{info['ratios_paired'][metric]:>8.3f}"
            )
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the hidden `--worker` runs one engine and prints its JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every engine")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per engine")
    parser.add_argument(
        "--ttfa-reps", type=int, default=10, help="time-to-first-audio tries per run"
    )
    parser.add_argument("--passes", type=int, default=2, help="passes over the text set per run")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="text-set file")
    parser.add_argument(
        "--engines",
        default=",".join(s.name for s in eng.ENGINES),
        help="comma-separated engine names (whole pairs are needed for ratios)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_LINES} lines, 1 repeat, 1 pass, 3 TTFA tries"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: bench/results/)"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.ttfa_reps, args.passes = 1, 3, 1
    if min(args.threads, args.repeats, args.ttfa_reps, args.passes) < 1:
        parser.error("--threads, --repeats, --ttfa-reps and --passes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --worker, one engine's measurement)."""
    args = parse_args(argv)
    if args.worker:
        print(
            json.dumps(
                run_worker(
                    args.worker, args.threads, args.text, args.limit, args.ttfa_reps, args.passes
                )
            )
        )
        return 0

    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in eng.ENGINES_BY_NAME]
    if unknown:
        raise SystemExit(f"unknown engine(s) {unknown}; known: {list(eng.ENGINES_BY_NAME)}")
    limit = QUICK_LINES if args.quick else None

    bytecode = eng.compile_utterd()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    started_utc, commit = eng.utc_now_iso(), eng.git_commit()
    load_before, stat_before = os.getloadavg(), cpu_times()
    for repeat in range(args.repeats):
        for name in run_order(names, repeat):
            print(f"repeat {repeat + 1}/{args.repeats}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(spawn_worker(name, args, limit))

    machine = {
        "loadavg_1m_before": load_before[0],
        "loadavg_1m_after": os.getloadavg()[0],
        "cpu_steal_percent": steal_percent(stat_before, cpu_times()),
    }
    lines = eng.read_text_set(args.text, limit)
    report: dict[str, Any] = {
        "benchmark": "bench_voices",
        "date_utc": eng.utc_now_iso(),
        "started_utc": started_utc,
        "command": " ".join(
            ["python", "bench/bench_voices.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "git_commit": commit,
        "cpu_model": eng.cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "threads": args.threads,
        "repeats": args.repeats,
        "ttfa_reps": args.ttfa_reps,
        "passes": args.passes,
        "ttfa_text": TTFA_TEXT,
        "quick": bool(args.quick),
        "text_set": {"path": str(args.text), "lines": len(lines)},
        "bytecode": bytecode,
        "machine": machine,
        "versions": eng.package_versions(),
        "params": {
            "utterd": "SynthesisParams() defaults: rate 1.0, volume 1.0, random noise "
            "(Piper noise scales from the voice JSON)",
            "piper-joe": "piper.SynthesisConfig() defaults: scales from the voice JSON, "
            "normalize_audio=True (per-sentence peak normalization), volume 1.0",
            "hibari-pkg": "Hibari.stream(text): speed 1.0, unseeded noise",
        },
        "definitions": {
            "rtf": "wall seconds synthesizing the text set / seconds of audio produced, "
            "all passes pooled",
            "rtf_floor": "the same with, for each line, only its fastest pass (per audio second)",
            "cpu_rtf": "user+system CPU seconds synthesizing the text set / seconds of audio, "
            "all passes pooled",
            "cpu_rtf_floor": "the same with, for each line, only its lowest-CPU pass",
            "stream_cpu_rtf": "utterd only: CPU RTF of its low-latency streaming path over the "
            "set, one pass (the other figures use its throughput path)",
            "ttfa_ms_min": "fastest of the tries",
            "ttfa_ms_p50": "request to first chunk in hand, median of all tries after warm-up",
            "load_s": "model load + one warm-up synthesis of 'Ready.' in a fresh process",
            "import_s": "importing the engine's modules in a fresh process",
            "peak_rss_mib": "getrusage(RUSAGE_SELF).ru_maxrss of the engine's subprocess",
            "ratio": "utterd median / baseline median (below 1: utterd better)",
            "ratio_best": "utterd's lowest repeat / the baseline's lowest repeat",
            "ratio_paired": "median over repeats of utterd / baseline within the same repeat",
        },
        "engines": {
            name: {
                "pair": eng.ENGINES_BY_NAME[name].pair,
                "role": eng.ENGINES_BY_NAME[name].role,
                "description": eng.ENGINES_BY_NAME[name].description,
                "summary": summarize(runs[name]),
                "runs": runs[name],
            }
            for name in names
        },
        "pairs": {},
    }
    for pair in eng.PAIRS:
        utterd, baseline = eng.pair_members(pair)
        if utterd.name in runs and baseline.name in runs:
            us = report["engines"][utterd.name]["summary"]
            bs = report["engines"][baseline.name]["summary"]
            report["pairs"][pair] = {
                "utterd": utterd.name,
                "baseline": baseline.name,
                "ratios": {m: us[m] / bs[m] for m in METRICS},
                "ratios_best": {m: us[f"{m}_best"] / bs[f"{m}_best"] for m in METRICS},
                "ratios_paired": paired_ratios(runs[utterd.name], runs[baseline.name]),
            }

    out = args.out or RESULTS_DIR / f"bench_voices-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(format_table(report))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
