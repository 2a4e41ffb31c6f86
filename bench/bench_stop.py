"""Stop latency and underruns on a real daemon playing through the real-time PulseAudio null sink.

    python bench/bench_stop.py [--stops 200] [--voices en_US-joe-medium,hibari-heart]
                               [--threads 2] [--max-delay-s 3] [--seed 1] [--out FILE]

One run starts a private PulseAudio server with a null sink paced in real time (tests/audio_sinks.py)
and a real `utterd serve` process on it (tests/daemon_harness.py), records everything the sink
plays from its monitor with parec, and measures:

1. **Stop latency** (issue 4 target: p99 <= 30 ms over 200 stops at random moments). A long text
   (the bench/text set joined) is spoken with the first voice; once its first sample is on the
   device (its `sentence` 0 event), the bench waits a random time, uniform in
   [0, --max-delay-s], and sends `stop`; after the job's `stopped` event and a little silence the
   next round starts. Latency is from the daemon receiving the `stop` (its `event=stop-request
   received_s=` log line, on the system-wide monotonic clock) to the last sample of speech the
   sink rendered (the last non-zero sample of the recording before the next job; an aborted
   stream leaves exact zeros). A recorded sample's time comes from when parec's data arrived:
   the tightest bound over the arrivals of the 2 s after it (local, because the sink's sample
   clock drifts against the system clock by ~100 ppm: 45 ms over a run, which a single bound for
   the whole recording turned into a bogus -45..0 ms trend). The sink renders in blocks of a few
   ms, so a sample's time is known to about one block and a stop that took effect at once can
   come out a few ms negative: the percentiles count negative figures as 0 ms, and the raw
   minimum is reported. A stop that lands where the speech is already silent (more than
   20 ms before the stop) is counted apart (`in_silence`) and also kept as 0 ms. The client-side
   figure (request sent -> last sample) is reported beside it.
2. **Underruns** during real-time playback of bench/text/prompts_en.txt on `--threads` threads:
   for each voice, every line as its own `speak` job, one after another, then the whole set as
   one job (a say-all), all with the phrase cache off so that everything is synthesized live.
   The figure is the daemon's underrun count (`describe` -> `device.underruns`: more audio of a
   job arrived after the device had run dry inside it) and the `event=underrun` log lines per
   job, against the seconds of speech played.

No figure is asserted: the machine is shared. Prints a table and writes JSON to bench/results/
(or --out) with the CPU model, load averages, the exact command and the git state.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
TESTS_DIR: Final = REPO_DIR / "tests"
RESULTS_DIR: Final = BENCH_DIR / "results"
TEXT_SET: Final = BENCH_DIR / "text" / "prompts_en.txt"

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from audio_sinks import NULL_SINK_RATE_HZ, PulseNullSink, Recording
from daemon_harness import RunningDaemon, clean_env, next_event
from utterd.models.engine.cpu_features import cpu_features

STOP_P99_TARGET_MS: Final = 30.0
"""Issue 4: stop request arriving -> last sample leaving the device, p99."""

_RECEIVED: Final = re.compile(r"event=stop-request received_s=([0-9.]+)")
_UNDERRUN: Final = re.compile(r"event=underrun job=(\S+)")
_JOB_TIMEOUT_S: Final = 300.0
_SILENT_BEFORE_MS: Final = -20.0
"""A last sample this long before the stop means the speech was silent there already."""


def git_state() -> dict[str, Any]:
    """HEAD commit and the files changed in the work tree (the daemon runs from the work tree)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, check=False
        ).stdout

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "HEAD").strip() or "unknown", "dirty_files": dirty}


def summarize(values_ms: Sequence[float]) -> dict[str, Any]:
    """n, p50, p90, p99, max and mean (numpy's linear-interpolation percentiles)."""
    if not values_ms:
        return {"n": 0}
    arr = np.asarray(values_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "n": int(arr.size),
        "p50_ms": round(float(p50), 2),
        "p90_ms": round(float(p90), 2),
        "p99_ms": round(float(p99), 2),
        "max_ms": round(float(arr.max()), 2),
        "mean_ms": round(float(arr.mean()), 2),
    }


def text_set() -> list[str]:
    lines = TEXT_SET.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# -- part 1: stop latency ---------------------------------------------------------------------------


def measure_stops(
    d: RunningDaemon, sink: PulseNullSink, tmp: Path, args: argparse.Namespace, voice: str
) -> dict[str, Any]:
    rng = random.Random(args.seed)
    long_text = " ".join(text_set())
    sub = d.subscribe()
    rounds: list[dict[str, float]] = []
    try:
        with sink.record(tmp / "stops.raw") as rec, d.client(timeout_s=60) as c:
            for _ in range(args.stops):
                sent_speak_s = time.monotonic()
                header, _ = c.request("speak", {"text": long_text, "voice": voice, "cache": "off"})
                job = header["data"]["job"]
                next_event(sub, {"sentence"}, job, _JOB_TIMEOUT_S)
                time.sleep(rng.uniform(0.0, args.max_delay_s))
                sent_stop_s = time.monotonic()
                c.request("stop", {"job": job})
                ev = next_event(sub, {"stopped", "end", "failed"}, job, 30)
                if ev["type"] != "stopped":
                    raise RuntimeError(f"job {job} ended as {ev}")
                time.sleep(0.3)  # the silence after the stop belongs to this round
                rounds.append({"speak_s": sent_speak_s, "stop_sent_s": sent_stop_s})
            time.sleep(0.3)
            samples = rec.samples()
            latencies = _latencies(rec, samples, rounds, d.log())
    finally:
        sub.close(linger=0)
    daemon_ms = [max(0.0, r["latency_ms"]) for r in latencies]
    client_ms = [max(0.0, r["client_latency_ms"]) for r in latencies]
    return {
        "voice": voice,
        "stops": len(latencies),
        "in_silence": sum(1 for r in latencies if r["latency_ms"] < _SILENT_BEFORE_MS),
        "raw_min_ms": min((r["latency_ms"] for r in latencies), default=None),
        "latency": summarize(daemon_ms),
        "client_latency": summarize(client_ms),
        "target_p99_ms": STOP_P99_TARGET_MS,
        "rounds": latencies,
    }


def _latencies(
    rec: Recording, samples: np.ndarray, rounds: list[dict[str, float]], log: str
) -> list[dict[str, float]]:
    """Per stop: daemon-received -> last non-zero sample before the next job, in ms."""
    received = [float(m.group(1)) for m in _RECEIVED.finditer(log)]
    if len(received) != len(rounds):
        raise RuntimeError(f"{len(received)} stop-request log lines for {len(rounds)} stops")
    start_s = rec.sample_time_s(0)
    clock = _LocalClock(rec)
    out = []
    for i, (r, received_s) in enumerate(zip(rounds, received, strict=True)):
        end_s = rounds[i + 1]["speak_s"] if i + 1 < len(rounds) else received_s + 1.0
        lo = max(0, int((r["speak_s"] - start_s) * NULL_SINK_RATE_HZ))
        hi = min(len(samples), int((end_s - start_s) * NULL_SINK_RATE_HZ))
        loud = np.flatnonzero(samples[lo:hi] != 0)
        if not len(loud):
            continue  # nothing of this job reached the sink (cannot happen after `sentence`)
        last_s = clock.sample_time_s(lo + int(loud[-1]))
        out.append(
            {
                "received_s": received_s,
                "latency_ms": round((last_s - received_s) * 1000.0, 3),
                "client_latency_ms": round((last_s - r["stop_sent_s"]) * 1000.0, 3),
            }
        )
    return out


class _LocalClock:
    """time.monotonic() at which the sink rendered a recorded sample, from nearby arrivals."""

    _WINDOW: Final = 400
    """Arrivals looked at after the sample's (about 2 s of 5 ms blocks)."""

    def __init__(self, rec: Recording) -> None:
        arrivals = np.asarray(rec.arrivals, dtype=np.float64)
        self._times_s = arrivals[:, 0]
        self._counts = arrivals[:, 1]

    def sample_time_s(self, index: int) -> float:
        first = int(np.searchsorted(self._counts, index, side="right"))  # arrivals holding it
        t = self._times_s[first : first + self._WINDOW]
        n = self._counts[first : first + self._WINDOW]
        # Each arrival bounds the sample's render time from above: it came (n - index) samples
        # later, or more.
        return float(np.min(t - (n - index) / NULL_SINK_RATE_HZ))


# -- part 2: underruns --------------------------------------------------------------------------------


def measure_underruns(d: RunningDaemon, voice: str) -> dict[str, Any]:
    lines = text_set()
    sub = d.subscribe()
    jobs: list[tuple[str, str]] = []
    try:
        with d.client(timeout_s=60) as c:
            before = c.request("describe")[0]["data"]["device"]["underruns"]
            started_s = time.monotonic()
            for kind, texts in (("lines", lines), ("say-all", [" ".join(lines)])):
                for text in texts:
                    job = c.request("speak", {"text": text, "voice": voice, "cache": "off"})[0]
                    job_id = job["data"]["job"]
                    ev = next_event(sub, {"end", "stopped", "failed"}, job_id, _JOB_TIMEOUT_S)
                    if ev["type"] != "end":
                        raise RuntimeError(f"job {job_id} ended as {ev}")
                    jobs.append((kind, job_id))
            played_s = time.monotonic() - started_s
            after = c.request("describe")[0]["data"]["device"]["underruns"]
    finally:
        sub.close(linger=0)
    logged = [m.group(1) for m in _UNDERRUN.finditer(d.log())]
    ids = {job for _, job in jobs}
    per_kind = {
        kind: sum(1 for job in logged if job in {j for k, j in jobs if k == kind})
        for kind in ("lines", "say-all")
    }
    texts_by_job = dict(zip((job for _, job in jobs), [*lines, "(say-all)"], strict=True))
    return {
        "voice": voice,
        "jobs": len(jobs),
        "wall_s": round(played_s, 1),
        "underruns": after - before,
        "underrun_events": sum(1 for job in logged if job in ids),
        "by_kind": per_kind,
        # Which texts ran dry, in the order of the events (a text may appear more than once).
        "underrun_texts": [texts_by_job[job] for job in logged if job in ids],
    }


# -- main -----------------------------------------------------------------------------------------------


def format_table(report: dict[str, Any]) -> str:
    rows = ["", "Stop latency (daemon received stop -> last sample rendered by the sink)"]
    for s in report.get("stops", []):
        lat, cli = s["latency"], s["client_latency"]
        rows.append(
            f"  {s['voice']:<20} n={lat.get('n')}  p50={lat.get('p50_ms')} ms  "
            f"p90={lat.get('p90_ms')} ms  p99={lat.get('p99_ms')} ms  max={lat.get('max_ms')} ms"
            f"  (target p99 <= {STOP_P99_TARGET_MS:g} ms; raw min {s['raw_min_ms']} ms; "
            f"{s['in_silence']} in a pause)"
        )
        rows.append(
            f"  {'client sent -> last':<20} p50={cli.get('p50_ms')} ms  p99={cli.get('p99_ms')} ms"
        )
    rows.append("")
    rows.append("Underruns during real-time playback of bench/text (cache off)")
    for u in report.get("underruns", []):
        rows.append(
            f"  {u['voice']:<20} jobs={u['jobs']}  played={u['wall_s']} s  underruns="
            f"{u['underruns']} (lines {u['by_kind']['lines']}, say-all {u['by_kind']['say-all']})"
        )
        for text in u.get("underrun_texts", []):
            rows.append(f"    ran dry: {text[:70]!r}")
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--stops", type=int, default=200, help="stops at random moments (0: skip)")
    p.add_argument(
        "--voices",
        default="en_US-joe-medium,hibari-heart",
        help="comma-separated; stops use the first, underruns each",
    )
    p.add_argument("--threads", type=int, default=2, help="inference threads (voices.threads)")
    p.add_argument("--max-delay-s", type=float, default=3.0, help="stop moments: uniform 0..this")
    p.add_argument("--no-underruns", action="store_true", help="skip the underrun part")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "benchmark": "bench_stop",
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "bench/bench_stop.py", *raw_argv]),
        "cpu_model": cpu_features().model_name or "unknown",
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "git": git_state(),
        "sink": {"kind": "pulseaudio-null-sink", "rate_hz": NULL_SINK_RATE_HZ, "real_time": True},
    }
    with tempfile.TemporaryDirectory(prefix="bench-stop-") as tmp_name:
        tmp = Path(tmp_name)
        with PulseNullSink(tmp / "pulse") as sink:
            cfg = {
                "audio": {"sample_rate_hz": NULL_SINK_RATE_HZ},
                "voices": {"default": voices[0], "preload": voices[1:], "threads": args.threads},
                "cache": {"enabled": False},
                "log_level": "INFO",
            }
            with RunningDaemon(tmp, clean_env(sink.env), cfg) as d:
                report["device"] = d.client().request("describe")[0]["data"]["device"]
                if args.stops > 0:
                    report["stops"] = [measure_stops(d, sink, tmp, args, voices[0])]
                if not args.no_underruns:
                    report["underruns"] = [measure_underruns(d, v) for v in voices]
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["duration_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    out = args.out or RESULTS_DIR / f"bench_stop-{started.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
