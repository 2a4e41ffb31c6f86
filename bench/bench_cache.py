"""Phrase cache benchmark on a real daemon: cache-hit time to first audio, and pre-warming impact.

    python bench/bench_cache.py [--prompts 60] [--rounds 3] [--warm-entries 1000] [--quick]
                                [--voices hibari-heart,en_US-joe-medium] [--threads 2] [--out FILE]

One run starts a private PulseAudio server with a null sink paced in real time (like a sound
card; see tests/audio_sinks.py) and a real `utterd serve` process on it (tests/daemon_harness.py),
then measures, always against a baseline taken in the same run and the same daemon:

1. **Cache hits** (issue 5 target: p50 <= 5 ms, p99 <= 15 ms). For each voice, every prompt of a
   kiosk/IVR set (written here, not bench/text) is spoken once with ``cache: "auto"`` (a miss that
   stores it), then in ``--rounds`` rounds, in a fresh shuffled order each round, each prompt is
   spoken once as a hit (``"auto"``) and once uncached (``"off"``), the two in alternating order.
   One job at a time, like a kiosk: each waits for the job's ``end`` event, then ``--gap-s`` of
   silence, so the device stream is idle when the next request arrives, as it is between prompts
   in real use. The figure is the daemon's own ``first_audio_ms`` (request received -> first
   sample handed to the device by the PortAudio callback) from each ``end`` event.
2. **Pre-warming** (target: no live request waits more than its usual time to first audio).
   Live uncached ``speak`` requests of short prompts (default voice, ``"off"``), each sent
   ``--live-gap-s`` after the previous one ended, are measured with no warming (before and
   after), and while ``cache-warm`` renders ``--warm-entries`` distinct prompts. Reports how long
   warming took, the ``describe`` -> ``cache.prewarm`` counters, and a check that every warmed
   prompt is now a hit (each is requested once more with ``synthesize``, which needs no device,
   and the cache's hit/miss counters must move by exactly that many hits).
3. **Where the milliseconds go.** The daemon of parts 1-2 runs with a probe: a sitecustomize on
   its PYTHONPATH that wraps a few daemon methods (daemon code unchanged) and stamps
   ``time.monotonic()`` at each step of every job: request received, speech worker picks the
   job, first chunk in hand (cache lookup or synthesis done), stream start asked, first
   PortAudio callback, first sample copied. Each sample gets its steps (``stages_ms``); the
   slowest hits are listed with theirs, so the high percentiles are explained by the same run.
   The probe only appends to a deque on the daemon's threads (a writer thread does the I/O); a
   smaller **control** run of part 1 on a daemon without it (``--control-prompts``) shows
   whether it moved the figures (``--no-probe`` runs the main daemon unprobed as well).

No figure is asserted: the machine is shared. Prints a table, writes JSON to bench/results/
(or ``--out``) with the CPU model, load averages, the exact command and the git state.
Percentiles are numpy's default (linear interpolation between closest ranks).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
TESTS_DIR: Final = REPO_DIR / "tests"
RESULTS_DIR: Final = BENCH_DIR / "results"

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from audio_sinks import NULL_SINK_RATE_HZ, PulseNullSink
from daemon_harness import RunningDaemon, clean_env, next_event
from utterd.daemon.client import Client, RequestFailed

DEFAULT_VOICE: Final = "hibari-heart"
"""The daemon's default voice (config.yaml voices.default), used for warming and live requests."""

OTHER_VOICE: Final = "en_US-joe-medium"
"""The Piper voice measured beside the default one."""

HIT_P50_TARGET_MS: Final = 5.0
"""Issue 5: cache-hit time to first audio, median."""

HIT_P99_TARGET_MS: Final = 15.0
"""Issue 5: cache-hit time to first audio, 99th percentile."""

PROBE_ENV: Final = "UTTERD_BENCH_PROBE"
"""Environment variable naming the probe's output file in the profiled daemon."""

PROBE_BENCH_DIR_ENV: Final = "UTTERD_BENCH_DIR"
"""Environment variable telling the profiled daemon's sitecustomize where this module lives."""

DEFAULT_MAX_TEXT_CHARS: Final = 20000
"""config.yaml limits.max_text_chars default."""
BENCH_REQUESTS_PER_S: Final = 10_000.0
BENCH_BURST: Final = 10_000
"""limits.requests_per_s / request_burst of the benchmark daemon (defaults 100 and 200)."""

_JOB_TIMEOUT_S: Final = 120.0
_PROBE_FLUSH_S: Final = 0.1
_WARM_POLL_S: Final = 0.1

KIOSK_PROMPTS: Final[tuple[str, ...]] = (
    "Welcome. Please touch the screen to begin.",
    "Please insert your card.",
    "Please remove your card.",
    "Enter your PIN, then press OK.",
    "Incorrect PIN. Please try again.",
    "Your transaction is being processed.",
    "Please take your receipt.",
    "Thank you for your purchase.",
    "Please scan your ticket.",
    "Ticket accepted. The gate will open.",
    "Ticket not valid. Please ask for help.",
    "For sales, press one.",
    "For support, press two.",
    "To hear these options again, press nine.",
    "Please hold while we connect you.",
    "All our agents are busy right now.",
    "Thank you for waiting. We will be with you shortly.",
    "Please say or enter your account number.",
    "Sorry, I did not catch that.",
    "Please choose a language.",
    "Place the item in the bagging area.",
    "Unexpected item in the bagging area.",
    "Please wait for assistance.",
    "Scan your loyalty card now.",
    "Would you like a bag?",
    "Payment approved.",
    "Payment declined. Please use another card.",
    "Tap your phone on the reader.",
    "Please collect your change.",
    "Your order number will be called shortly.",
    "Doors closing. Please stand clear.",
    "This train terminates here.",
    "Mind the gap between the train and the platform.",
    "The next stop is Riverside.",
    "Please check in at the front desk.",
    "Your room key is ready.",
    "Battery low. Please connect the charger.",
    "Charging complete.",
    "Door open.",
    "Door locked.",
    "Someone is at the front door.",
    "The washing cycle has finished.",
    "Water tank empty.",
    "Please take a number and wait to be called.",
    "Now serving the next customer.",
    "Please proceed to window three.",
    "Your session will end in one minute.",
    "Session ended. Goodbye.",
    "Press the green button to confirm.",
    "Press the red button to cancel.",
    "Please stand on the yellow line.",
    "Look at the camera, please.",
    "Photo taken.",
    "Your boarding pass is printing.",
    "Please put your bag on the scale.",
    "Your bag is over the weight limit.",
    "Printer out of paper. Please ask a member of staff.",
    "The system is restarting. Please wait.",
    "Emergency exits are on both sides.",
    "Thank you for calling. Goodbye.",
)
"""Distinct short prompts of kiosks and phone menus, written for this benchmark."""

LIVE_PROMPTS: Final[tuple[str, ...]] = (
    "Next, please.",
    "Thank you.",
    "One moment.",
    "Please wait.",
    "Accepted.",
    "Try again.",
    "Welcome back.",
    "Goodbye.",
)
"""Short prompts of the live requests sent while warming (and without warming)."""

_WARM_SUBJECTS: Final = (
    "Your order",
    "Your parcel",
    "Your prescription",
    "Your table",
    "Your repair",
    "Your room",
    "Your rental car",
    "Your replacement card",
    "Your laundry",
    "Your coffee",
)
_WARM_STATES: Final = (
    "is ready",
    "is delayed",
    "has been cancelled",
    "will be ready soon",
    "is waiting for you",
    "has been moved",
    "needs a signature",
    "was confirmed",
    "is on its way",
    "has arrived",
)
_WARM_PLACES: Final = (
    "at counter one.",
    "at counter two.",
    "at the front desk.",
    "at the main entrance.",
    "at gate four.",
    "on the second floor.",
    "by the lifts.",
    "at the pharmacy window.",
    "in the pick-up area.",
    "at the service desk.",
)


def warm_prompts(count: int) -> list[str]:
    """`count` distinct pre-warm prompts (at most 1,000), e.g. "Your order is ready at gate four."."""
    prompts = [
        f"{subject} {state} {place}"
        for subject in _WARM_SUBJECTS
        for state in _WARM_STATES
        for place in _WARM_PLACES
    ]
    if count > len(prompts):
        raise ValueError(f"at most {len(prompts)} distinct warm prompts, asked for {count}")
    return prompts[:count]


# -- machine and run facts ---------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: context for every figure)."""
    return [round(x, 2) for x in os.getloadavg()]


def git_state() -> dict[str, Any]:
    """HEAD commit and the files changed in the work tree (the daemon runs from the work tree)."""

    def git(*args: str) -> str:
        completed = subprocess.run(
            ["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, check=False
        )
        return completed.stdout

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "HEAD").strip() or "unknown", "dirty_files": dirty}


def run_facts(
    benchmark: str, raw_argv: Sequence[str], threads: int, started: datetime
) -> dict[str, Any]:
    """What a benchmark report starts with: its name, date, exact command, machine, git state."""
    return {
        "benchmark": benchmark,
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", f"bench/{benchmark}.py", *raw_argv]),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "load_average_start": load_average(),
        "git": git_state(),
        "python": sys.version.split()[0],
    }


def snapshot_head(dest: Path) -> str:
    """Export HEAD's daemon/, models/ and quantize/ as dest/utterd/...; returns the commit.

    The checkout is shared and edited while a long run goes on: a daemon started from the work
    tree would run whatever is on disk at its start. Put `dest` first on the daemon's PYTHONPATH
    and it imports this snapshot instead (the editable install's finder comes after PathFinder).
    """
    commit = str(git_state()["commit"])
    package = dest / "utterd"
    package.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_DIR), "archive", commit, "daemon", "models", "quantize"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(package)], input=archive.stdout, check=True)
    return commit


def add_daemon_options(parser: argparse.ArgumentParser) -> None:
    """`--code` (which daemon code runs; see `daemon_code`) and `--threads`."""
    parser.add_argument(
        "--code",
        choices=("head", "worktree"),
        default="head",
        help="daemon code: a snapshot of the committed HEAD (default; immune to edits during the "
        "run) or the work tree as it is",
    )
    parser.add_argument("--threads", type=int, default=2, help="voices.threads of the daemon")


def daemon_code(tmp: Path, code: str) -> tuple[Path | None, str]:
    """The folder of the daemon code for `--code` (`head`: a snapshot of HEAD in tmp/code;
    `worktree`: None, the work tree) and how the report names it."""
    if code == "head":
        code_dir = tmp / "code"
        return code_dir, f"snapshot of HEAD {snapshot_head(code_dir)}"
    return None, "work tree (as on disk when each daemon started)"


# -- statistics ---------------------------------------------------------------------------------


def summarize(values_ms: Sequence[float]) -> dict[str, Any]:
    """n, p50, p90, p99, min, max and mean of a list of milliseconds (None when empty)."""
    if not values_ms:
        return {
            "n": 0,
            **{k: None for k in ("p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "mean_ms")},
        }
    arr = np.asarray(values_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "n": int(arr.size),
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
        "min_ms": round(float(arr.min()), 3),
        "max_ms": round(float(arr.max()), 3),
        "mean_ms": round(float(arr.mean()), 3),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator rounded to 4 places; None if either is missing or zero."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


# -- talking to the daemon ------------------------------------------------------------------------


class Speaker:
    """One client and one event subscription on a daemon; speaks one job at a time."""

    def __init__(self, daemon: RunningDaemon) -> None:
        self.daemon = daemon
        self.client: Client = daemon.client(timeout_s=60.0)
        self.events = daemon.subscribe()

    def close(self) -> None:
        """Close the request and event sockets."""
        self.events.close(linger=0)
        self.client.close()

    def speak(self, text: str, voice: str, cache: str) -> dict[str, Any]:
        """Speak `text` and wait for the job's terminal event.

        Returns {"job", "first_audio_ms", "error"}: first_audio_ms from the `end` event, or None
        with `error` (code: message) when the request was refused or the job did not end well.
        A device fault is a result too (it is what a kiosk would have heard): after one, this
        waits for the daemon to reopen the device so that the run goes on.
        """
        try:
            header, _ = self.client.request("speak", {"text": text, "voice": voice, "cache": cache})
        except RequestFailed as exc:
            self.wait_for_device()
            return {"job": None, "first_audio_ms": None, "error": f"{exc.code}: {exc.message}"}
        job = str(header["data"]["job"])
        event = next_event(self.events, {"end", "stopped", "failed"}, job, _JOB_TIMEOUT_S)
        first_audio_ms = event["data"].get("first_audio_ms")
        if event["type"] == "end" and first_audio_ms is not None:
            return {"job": job, "first_audio_ms": float(first_audio_ms), "error": None}
        data = event["data"]
        error = f"{event['type']} {data.get('code', '')}: {data.get('message', data)}"
        print(f"job {job} ({text!r}, {voice}, cache {cache}): {error}", file=sys.stderr)
        self.wait_for_device()
        return {"job": job, "first_audio_ms": None, "error": error}

    def wait_for_device(self, timeout_s: float = 60.0) -> None:
        """Return once `describe` says the sound device is available (the daemon retries it)."""
        deadline = time.monotonic() + timeout_s
        while not self.describe()["device"]["available"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sound device stayed unavailable for {timeout_s} s")
            time.sleep(0.2)

    def describe(self) -> dict[str, Any]:
        """The daemon's `info` reply."""
        return dict(self.client.request("describe")[0]["data"])

    def cache_stats(self) -> dict[str, Any]:
        """`describe` -> `cache` once nothing is being stored (an entry lands just after its audio)."""
        deadline = time.monotonic() + 30.0
        while True:
            stats = dict(self.describe()["cache"])
            if stats.get("in_flight", 0) == 0 or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)


def device_open_line(log: str) -> str | None:
    """The daemon's `event=device-open` log line (device, rate, PortAudio latency, block frames)."""
    for line in log.splitlines():
        if "event=device-open" in line:
            return line.split("event=device-open", 1)[1].strip()
    return None


def daemon_config(
    tmp: Path, voices: Sequence[str], threads: int, log_level: str, warm_entries: int = 0
) -> dict[str, Any]:
    """The benchmark daemon's config: defaults, except a private cache folder and preloads, and
    limits.max_text_chars raised when the warm list needs it (see warm_chars_needed)."""
    config: dict[str, Any] = {
        "cache": {"dir": str(tmp / "phrases")},
        "voices": {"preload": [v for v in voices if v != DEFAULT_VOICE], "threads": threads},
        "log_level": log_level,
    }
    # One benchmark client sends everything (the 1,000-prompt check back to back): the
    # per-client rate limit is not what is measured here.
    config["limits"] = {"requests_per_s": BENCH_REQUESTS_PER_S, "request_burst": BENCH_BURST}
    needed = warm_chars_needed(warm_entries)
    if needed > DEFAULT_MAX_TEXT_CHARS:
        config["limits"]["max_text_chars"] = needed
    return config


def warm_chars_needed(entries: int) -> int:
    """limits.max_text_chars that one `cache-warm` of `entries` prompts needs.

    The daemon counts all entries of a `cache-warm` together against limits.max_text_chars (1,000
    prompts are ~46,500 characters); the list is sent as one request, as a deployment's list would
    be, so the limit is raised (later requests would queue behind it on the same warming thread).
    """
    return sum(len(prompt) for prompt in warm_prompts(entries)) if entries else 0


# -- part 1: hits against uncached ------------------------------------------------------------------


def measure_hits(
    speaker: Speaker,
    voice: str,
    prompts: Sequence[str],
    rounds: int,
    gap_s: float,
    rng: random.Random,
) -> dict[str, Any]:
    """Cold misses, then `rounds` of (hit, uncached) per prompt; figures and cache counters."""
    samples: list[dict[str, Any]] = []

    def one(index: int, kind: str, cache: str, round_index: int) -> None:
        outcome = speaker.speak(prompts[index], voice, cache)
        sample = {"voice": voice, "kind": kind, "prompt": index, "round": round_index, **outcome}
        samples.append(sample)
        time.sleep(gap_s)

    before_cold = speaker.cache_stats()
    load_before = load_average()
    for index in range(len(prompts)):
        one(index, "cold", "auto", -1)
    before_hits = speaker.cache_stats()
    for round_index in range(rounds):
        order = list(range(len(prompts)))
        rng.shuffle(order)
        for position, index in enumerate(order):
            pair = [("hit", "auto"), ("uncached", "off")]
            if (position + round_index) % 2:
                pair.reverse()
            for kind, cache in pair:
                one(index, kind, cache, round_index)
    after = speaker.cache_stats()

    def values(kind: str) -> list[float]:
        return [s["first_audio_ms"] for s in samples if s["kind"] == kind and s["error"] is None]

    hit, uncached = summarize(values("hit")), summarize(values("uncached"))
    return {
        "voice": voice,
        "prompts": len(prompts),
        "rounds": rounds,
        "cold": summarize(values("cold")),
        "hit": hit,
        "uncached": uncached,
        "hit_over_uncached": {
            "p50": ratio(hit["p50_ms"], uncached["p50_ms"]),
            "p99": ratio(hit["p99_ms"], uncached["p99_ms"]),
        },
        "target": {
            "hit_p50_ms": HIT_P50_TARGET_MS,
            "hit_p99_ms": HIT_P99_TARGET_MS,
            "p50_met": hit["p50_ms"] is not None and hit["p50_ms"] <= HIT_P50_TARGET_MS,
            "p99_met": hit["p99_ms"] is not None and hit["p99_ms"] <= HIT_P99_TARGET_MS,
        },
        "cache_counters": {
            "cold_misses": before_hits["misses"] - before_cold["misses"],
            "cold_expected_misses": len(prompts),
            "hits": after["hits"] - before_hits["hits"],
            "expected_hits": rounds * len(prompts),
            "misses_during_hit_rounds": after["misses"] - before_hits["misses"],
        },
        "failures": [
            {k: s[k] for k in ("kind", "prompt", "round", "job", "error")}
            for s in samples
            if s["error"] is not None
        ],
        "load_average": {"before": load_before, "after": load_average()},
        "samples": samples,
    }


# -- part 2: live requests while warming ----------------------------------------------------------


class WarmWatcher:
    """Polls `describe` on its own socket until pre-warming is done; notes when that was."""

    def __init__(self, daemon: RunningDaemon, started_s: float, target_entries: int) -> None:
        self._daemon = daemon
        self._started_s = started_s
        self._target = target_entries
        self.done = threading.Event()
        self.done_s: float | None = None
        self.progress: dict[str, Any] = {}
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="warm-watcher", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        """Wait for the poller to end."""
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            with self._daemon.client(timeout_s=30.0) as client:
                while True:
                    progress = dict(client.request("describe")[0]["data"]["cache"]["prewarm"])
                    now_s = time.monotonic()
                    self.progress = progress
                    if (
                        progress.get("entries", 0) >= self._target
                        and progress.get("remaining") == 0
                    ):
                        self.done_s = now_s
                        return
                    time.sleep(_WARM_POLL_S)
        except Exception as exc:  # noqa: BLE001  # reported in the result, never hangs the run
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()


def measure_warming(
    speaker: Speaker,
    entries: int,
    baseline_requests: int,
    live_gap_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    """Live uncached requests without warming, while warming `entries` prompts, and after."""
    prompts = warm_prompts(entries)
    live_index = 0
    starts: list[float] = []

    def live(phase: str, out: list[dict[str, Any]]) -> None:
        nonlocal live_index
        text = LIVE_PROMPTS[live_index % len(LIVE_PROMPTS)]
        live_index += 1
        starts.append(time.monotonic())
        outcome = speaker.speak(text, DEFAULT_VOICE, "off")
        out.append({"phase": phase, "text": text, **outcome})
        time.sleep(live_gap_s)

    before: list[dict[str, Any]] = []
    during: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    load_before = load_average()
    for _ in range(baseline_requests):
        live("before", before)
    stats_before = speaker.cache_stats()

    sent_s = time.monotonic()
    reply = speaker.client.request("cache-warm", {"entries": prompts})[0]["data"]
    watcher = WarmWatcher(speaker.daemon, sent_s, entries)
    watcher.start()
    load_during_start = load_average()
    deadline_s = sent_s + timeout_s
    while not watcher.done.is_set() and time.monotonic() < deadline_s:
        live("during", during)
    watcher.join(30.0)
    load_during_end = load_average()
    timed_out = watcher.done_s is None

    for _ in range(baseline_requests):
        live("after", after)
    stats_after_live = speaker.cache_stats()

    # Every warmed prompt must now be a hit: ask for each once more (synthesize needs no device),
    # as a well-behaved client: hits answer in ~2 ms, faster than limits.requests_per_s allows.
    for text in prompts:
        while True:
            try:
                speaker.client.request(
                    "synthesize", {"text": text, "format": "pcm"}, timeout_s=60.0
                )
                break
            except RequestFailed as err:
                if err.code != "rate-limited":
                    raise
                time.sleep(0.05)
    stats_verified = speaker.cache_stats()
    verified_hits = stats_verified["hits"] - stats_after_live["hits"]
    verify_misses = stats_verified["misses"] - stats_after_live["misses"]

    def ms(rows: list[dict[str, Any]]) -> list[float]:
        return [r["first_audio_ms"] for r in rows if r["error"] is None]

    baseline = summarize(ms(before) + ms(after))
    while_warming = summarize(ms(during))
    intervals = np.diff(np.asarray(starts)) if len(starts) > 1 else np.zeros(0)
    progress = watcher.progress
    return {
        "entries": entries,
        "reply_entries": reply.get("entries"),
        "duration_s": None if watcher.done_s is None else round(watcher.done_s - sent_s, 3),
        "timed_out": timed_out,
        "watch_error": watcher.error,
        "prewarm": progress,
        "all_cached": (
            not timed_out
            and progress.get("remaining") == 0
            and progress.get("failed", 0) == 0
            and verified_hits == entries
            and verify_misses == 0
        ),
        "verify": {"hits": verified_hits, "misses": verify_misses, "expected_hits": entries},
        "cache_entries_added": {
            tier: stats_after_live[tier]["entries"] - stats_before[tier]["entries"]
            for tier in ("ram", "disk")
        },
        "live": {
            "voice": DEFAULT_VOICE,
            "cache": "off",
            "gap_s": live_gap_s,
            "start_interval_s_p50": (
                round(float(np.median(intervals)), 3) if intervals.size else None
            ),
            "baseline": baseline,
            "baseline_before": summarize(ms(before)),
            "baseline_after": summarize(ms(after)),
            "during_warming": while_warming,
            "during_over_baseline": {
                "p50": ratio(while_warming["p50_ms"], baseline["p50_ms"]),
                "p99": ratio(while_warming["p99_ms"], baseline["p99_ms"]),
            },
        },
        "load_average": {
            "before": load_before,
            "warming_start": load_during_start,
            "warming_end": load_during_end,
            "after": load_average(),
        },
        "failures": [
            {k: r[k] for k in ("phase", "job", "error")}
            for r in before + during + after
            if r["error"] is not None
        ],
        "samples": before + during + after,
    }


# -- part 3: where a job's milliseconds go (probe in the daemon) ------------------------------------------

STAGES: Final = (
    ("queue", "received", "worker"),
    ("lookup_or_synth", "worker", "chunk_ready"),
    ("handoff_to_stream_start", "chunk_ready", "stream_start_call"),
    ("stream_start_to_first_callback", "stream_start_call", "first_callback"),
    ("first_callback_to_first_sample", "first_callback", "first_sample"),
)
"""(name, from mark, to mark): consecutive steps whose sum is first_audio_ms when the stream was
started for the job (the usual case between kiosk prompts)."""

EXTRA_SPANS: Final = (
    ("stream_start_call_returns", "stream_start_call", "stream_start_return"),
    ("chunk_ready_to_enqueued", "chunk_ready", "enqueued"),
    ("first_sample_to_started_event", "first_sample", "started_event"),
)
"""Spans that overlap the stages: how long Pa_StartStream blocks, the resample + ring write of the
first chunk, and how late the player's events thread hears of the first sample."""


def install_probe(out_path: str) -> None:
    """Inside the profiled daemon: stamp time.monotonic() at each step of a job's way to the device.

    Wraps Scheduler.submit/_speak/on_started, Player.play/_callback/_open_device and the opened
    stream's start(); writes JSON lines (kind, job, value) from a background thread so that the
    PortAudio callback only appends to a deque. Called by the sitecustomize that
    `profile_sitecustomize` writes; never imported by the daemon otherwise.
    """
    from utterd.daemon.audio import player as player_mod
    from utterd.daemon.speech import scheduler as scheduler_mod

    # Which code this daemon imported (a HEAD snapshot or the work tree), for the report.
    Path(out_path + ".code").write_text(str(player_mod.__file__), encoding="utf-8")
    records: deque[tuple[str, str | None, float]] = deque()
    state: dict[str, Any] = {"job": None, "await_callback": False}
    seen_jobs: set[str] = set()
    out = open(out_path, "a", encoding="utf-8")  # noqa: SIM115  # lives as long as the process

    def flush() -> None:
        while records:
            kind, job, value = records.popleft()
            out.write(json.dumps({"kind": kind, "job": job, "value": value}) + "\n")
        out.flush()

    def writer() -> None:
        while True:
            time.sleep(_PROBE_FLUSH_S)
            flush()

    threading.Thread(target=writer, name="bench-probe-writer", daemon=True).start()
    atexit.register(flush)

    scheduler_cls: Any = scheduler_mod.Scheduler
    player_cls: Any = player_mod.Player
    orig_submit = scheduler_cls.submit
    orig_speak = scheduler_cls._speak
    orig_started = scheduler_cls.on_started
    orig_play = player_cls.play
    orig_callback = player_cls._callback
    orig_open = player_cls._open_device

    def submit(self: Any, job: Any) -> None:
        records.append(("received", job.job_id, job.created_s))
        orig_submit(self, job)

    def speak(self: Any, job: Any) -> None:
        records.append(("worker", job.job_id, time.monotonic()))
        orig_speak(self, job)

    def on_started(self: Any, job_id: str | None, at_s: float | None) -> None:
        records.append(("started_event", job_id, time.monotonic()))
        if at_s is not None:
            records.append(("first_sample", job_id, at_s))
        orig_started(self, job_id, at_s)

    def play(self: Any, job_id: str, chunk: Any, cancel: Any = None) -> None:
        first = job_id not in seen_jobs
        if first:
            seen_jobs.add(job_id)
            state["job"] = job_id
            records.append(("chunk_ready", job_id, time.monotonic()))
        orig_play(self, job_id, chunk, cancel)
        if first:
            records.append(("enqueued", job_id, time.monotonic()))

    def callback(self: Any, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        if state["await_callback"]:
            state["await_callback"] = False
            job = state["job"]
            records.append(("first_callback", job, time.monotonic()))
            ahead_ms = (time_info.outputBufferDacTime - time_info.currentTime) * 1000.0
            records.append(("first_callback_dac_ahead_ms", job, ahead_ms))
        orig_callback(self, outdata, frames, time_info, status)

    def open_device(self: Any, rescan: bool) -> tuple[Any, str, int]:
        stream, name, rate_hz = orig_open(self, rescan)
        stream_cls: Any = type(stream)
        if not getattr(stream_cls, "_bench_probe", False):
            orig_start = stream_cls.start

            def start(stream_self: Any) -> None:
                records.append(("stream_start_call", state["job"], time.monotonic()))
                state["await_callback"] = True  # before start(): the callback may run within it
                orig_start(stream_self)
                records.append(("stream_start_return", state["job"], time.monotonic()))

            stream_cls.start = start
            stream_cls._bench_probe = True
        return stream, name, rate_hz

    scheduler_cls.submit = submit
    scheduler_cls._speak = speak
    scheduler_cls.on_started = on_started
    player_cls.play = play
    player_cls._callback = callback
    player_cls._open_device = open_device


def profile_sitecustomize(folder: Path) -> Path:
    """Write a sitecustomize.py into `folder` that installs the probe when PROBE_ENV is set."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import os, sys\n"
        f"if os.environ.get({PROBE_ENV!r}):\n"
        f"    sys.path.insert(0, os.environ[{PROBE_BENCH_DIR_ENV!r}])\n"
        "    import bench_cache\n"
        f"    bench_cache.install_probe(os.environ[{PROBE_ENV!r}])\n",
        encoding="utf-8",
    )
    return folder


def read_probe(path: Path) -> dict[str, dict[str, float]]:
    """Probe lines grouped by job: {job: {mark: value}} (first value of each mark kept)."""
    marks: dict[str, dict[str, float]] = {}
    if not path.exists():
        return marks
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["job"] is None:
            continue
        marks.setdefault(row["job"], {}).setdefault(row["kind"], float(row["value"]))
    return marks


def stages_of(marks: dict[str, float]) -> dict[str, float] | None:
    """A job's STAGES and EXTRA_SPANS in ms; None unless the stream was started for the job."""
    if not all(mark in marks for _, start, end in STAGES for mark in (start, end)):
        return None
    spans = {
        name: round((marks[end] - marks[start]) * 1000.0, 3)
        for name, start, end in (*STAGES, *EXTRA_SPANS)
        if start in marks and end in marks
    }
    if "first_callback_dac_ahead_ms" in marks:
        spans["dac_ahead_at_first_callback"] = round(marks["first_callback_dac_ahead_ms"], 3)
    return spans


def attach_stages(samples: Sequence[dict[str, Any]], marks: dict[str, dict[str, float]]) -> None:
    """Add each sample's `stages_ms` (None when the probe saw no stream start for its job)."""
    for sample in samples:
        sample["stages_ms"] = stages_of(marks.get(sample["job"] or "", {}))


def breakdown(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Percentiles of each stage over samples that carry `stages_ms`, and how many do."""
    with_stages = [s["stages_ms"] for s in samples if s.get("stages_ms")]
    names = [name for name, _, _ in (*STAGES, *EXTRA_SPANS)] + ["dac_ahead_at_first_callback"]
    return {
        "jobs": len(samples),
        "jobs_with_stream_start": len(with_stages),
        "spans": {n: summarize([st[n] for st in with_stages if n in st]) for n in names},
    }


def slowest(samples: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The `count` slowest samples with their stages: what the high percentiles are made of."""
    done = [s for s in samples if s["first_audio_ms"] is not None]
    ranked = sorted(done, key=lambda s: s["first_audio_ms"], reverse=True)[:count]
    return [
        {
            k: s.get(k)
            for k in ("job", "prompt", "text", "round", "first_audio_ms", "stages_ms")
            if k in s
        }
        for s in ranked
    ]


def start_daemon(
    tmp: Path,
    sink_env: dict[str, str],
    voices: Sequence[str],
    threads: int,
    probe: bool,
    code_dir: Path | None,
    warm_entries: int = 0,
) -> tuple[RunningDaemon, Path | None]:
    """A daemon on the null sink at log level INFO, running the code in `code_dir` (None: the
    work tree); with `probe`, the probe is installed in it."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = clean_env(sink_env)
    paths = [str(code_dir)] if code_dir is not None else []
    probe_out: Path | None = None
    if probe:
        probe_out = tmp / "probe.jsonl"
        paths.insert(0, str(profile_sitecustomize(tmp / "site")))
        env[PROBE_ENV] = str(probe_out)
        env[PROBE_BENCH_DIR_ENV] = str(BENCH_DIR)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    config = daemon_config(tmp, voices, threads, "INFO", warm_entries)
    return RunningDaemon(tmp, env, config), probe_out


def daemon_facts(speaker: Speaker) -> dict[str, Any]:
    """Version, default voice, device and backend as the daemon reports them."""
    info = speaker.describe()
    return {
        "version": info["version"],
        "default_voice": info["default_voice"],
        "device": info["device"],
        "backend": info["backend"],
        "device_open_log": device_open_line(speaker.daemon.log()),
        "log_level": "INFO",
    }


def run_main(
    tmp: Path,
    sink_env: dict[str, str],
    args: argparse.Namespace,
    voices: Sequence[str],
    rng: random.Random,
    code_dir: Path | None,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Parts 1 and 2 on one probed daemon; every sample gets its stage breakdown afterwards."""
    daemon, probe_out = start_daemon(
        tmp,
        sink_env,
        voices,
        args.threads,
        probe=not args.no_probe,
        code_dir=code_dir,
        warm_entries=args.warm_entries,
    )
    prompts = list(KIOSK_PROMPTS[: args.prompts])
    result: dict[str, Any] = {"hits": {}}
    with daemon:
        speaker = Speaker(daemon)
        try:
            result["daemon"] = daemon_facts(speaker)
            for voice in voices:
                print(f"hits: {voice} ...", file=sys.stderr, flush=True)
                result["hits"][voice] = measure_hits(
                    speaker, voice, prompts, args.rounds, args.gap_s, rng
                )
                save(result)
            if args.warm_entries > 0:
                print(f"warming {args.warm_entries} ...", file=sys.stderr, flush=True)
                result["warming"] = measure_warming(
                    speaker,
                    args.warm_entries,
                    args.live_baseline,
                    args.live_gap_s,
                    args.warm_timeout_s,
                )
                save(result)
        finally:
            speaker.close()
        time.sleep(3 * _PROBE_FLUSH_S)
    result["probe"] = probe_out is not None
    if probe_out is None:
        return result
    code_file = probe_out.with_name(probe_out.name + ".code")
    result["daemon"]["player_module"] = (
        code_file.read_text(encoding="utf-8") if code_file.exists() else None
    )
    marks = read_probe(probe_out)
    if not marks:
        raise RuntimeError(f"the probe wrote nothing to {probe_out}; log:\n{daemon.log()[-3000:]}")
    for part in result["hits"].values():
        attach_stages(part["samples"], marks)
        part["breakdown"] = {
            kind: breakdown([s for s in part["samples"] if s["kind"] == kind])
            for kind in ("cold", "hit", "uncached")
        }
        part["slowest_hits"] = slowest([s for s in part["samples"] if s["kind"] == "hit"], 5)
    warming = result.get("warming")
    if warming:
        attach_stages(warming["samples"], marks)
        warming["breakdown"] = {
            "baseline": breakdown([s for s in warming["samples"] if s["phase"] != "during"]),
            "during_warming": breakdown([s for s in warming["samples"] if s["phase"] == "during"]),
        }
        warming["slowest_live"] = slowest(warming["samples"], 5)
    return result


def run_control(
    tmp: Path,
    sink_env: dict[str, str],
    args: argparse.Namespace,
    voices: Sequence[str],
    rng: random.Random,
    code_dir: Path | None,
) -> dict[str, Any]:
    """Part 1 again, smaller, on a daemon without the probe: shows the probe moved no figure."""
    daemon, _ = start_daemon(tmp, sink_env, voices, args.threads, probe=False, code_dir=code_dir)
    prompts = list(KIOSK_PROMPTS[: args.control_prompts])
    result: dict[str, Any] = {}
    with daemon:
        speaker = Speaker(daemon)
        try:
            for voice in voices:
                print(f"control (no probe): {voice} ...", file=sys.stderr, flush=True)
                measured = measure_hits(
                    speaker, voice, prompts, args.control_rounds, args.gap_s, rng
                )
                result[voice] = {
                    k: measured[k]
                    for k in (
                        "prompts",
                        "rounds",
                        "cold",
                        "hit",
                        "uncached",
                        "hit_over_uncached",
                        "cache_counters",
                    )
                }
        finally:
            speaker.close()
    return result


# -- report -------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(label: str, s: dict[str, Any], width: int = 38) -> str:
    return (
        f"{label:<{width}} {s['n']:>4} {_fmt(s['p50_ms']):>8} {_fmt(s['p90_ms']):>8} "
        f"{_fmt(s['p99_ms']):>8} {_fmt(s['max_ms']):>8}"
    )


def format_table(report: dict[str, Any]) -> str:
    """The human-readable summary printed at the end of a run."""
    header = f"{'':<38} {'n':>4} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"
    lines = [
        (
            f"CPU: {report['cpu_model']} ({report['cpu_count']} logical CPUs), voices.threads "
            f"{report['threads']}, load average at start {report['load_average_start']}"
        ),
        f"device: {report['daemon']['device_open_log']}",
        "",
        "Time to first audio, first_audio_ms (ms), one job at a time, device stream idle",
        header,
    ]
    for voice, part in report["hits"].items():
        for kind in ("cold", "hit", "uncached"):
            lines.append(_row(f"{voice} {kind}", part[kind]))
        r, t = part["hit_over_uncached"], part["target"]
        c = part["cache_counters"]
        lines.append(
            f"  hit/uncached p50 {_fmt(r['p50'], 3)}, p99 {_fmt(r['p99'], 3)}; target "
            f"p50<={t['hit_p50_ms']:g} {'met' if t['p50_met'] else 'MISSED'}, "
            f"p99<={t['hit_p99_ms']:g} {'met' if t['p99_met'] else 'MISSED'}; "
            f"cache hits counted {c['hits']}/{c['expected_hits']}; "
            f"failed jobs {len(part['failures'])}"
        )
        for failure in part["failures"]:
            lines.append(
                f"  FAILED {failure['kind']} prompt {failure['prompt']}: {failure['error']}"
            )
    for voice, part in report.get("control", {}).items():
        for kind in ("hit", "uncached"):
            lines.append(_row(f"{voice} {kind} (no probe)", part[kind]))
    warm = report.get("warming")
    if warm:
        live = warm["live"]
        lines += [
            "",
            f"Live uncached {DEFAULT_VOICE} requests vs pre-warming {warm['entries']} prompts",
            header,
        ]
        for name in ("baseline_before", "baseline_after", "baseline", "during_warming"):
            lines.append(_row(name, live[name]))
        r = live["during_over_baseline"]
        lines.append(
            f"  during/baseline p50 {_fmt(r['p50'], 3)}, p99 {_fmt(r['p99'], 3)}; warming took "
            f"{_fmt(warm['duration_s'])} s; prewarm {warm['prewarm']}; verified hits "
            f"{warm['verify']['hits']}/{warm['verify']['expected_hits']}; all cached: "
            f"{warm['all_cached']}; failed live jobs {len(warm['failures'])}"
        )
        for failure in warm["failures"]:
            lines.append(f"  FAILED live {failure['phase']}: {failure['error']}")
    if report["hits"] and any("breakdown" in p for p in report["hits"].values()):
        lines += [
            "",
            "Where the milliseconds go (probe, median ms per step; jobs with a stream start)",
        ]
        names = [name for name, _, _ in STAGES] + ["stream_start_call_returns"]
        groups: list[tuple[str, dict[str, Any]]] = []
        for voice, part in report["hits"].items():
            groups += [(f"{voice} {kind}", part["breakdown"][kind]) for kind in ("hit", "uncached")]
        if warm and "breakdown" in warm:
            groups += [(f"live {phase}", warm["breakdown"][phase]) for phase in warm["breakdown"]]
        for label, b in groups:
            steps = ", ".join(f"{n} {_fmt(b['spans'][n]['p50_ms'], 2)}" for n in names)
            lines.append(f"{label} ({b['jobs_with_stream_start']}/{b['jobs']}): {steps}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; --quick shrinks every size for a smoke run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument(
        "--voices",
        default=f"{DEFAULT_VOICE},{OTHER_VOICE}",
        help="comma-separated voices for the hit measurement",
    )
    parser.add_argument(
        "--prompts",
        type=int,
        default=len(KIOSK_PROMPTS),
        help=f"distinct prompts per voice (1..{len(KIOSK_PROMPTS)})",
    )
    parser.add_argument("--rounds", type=int, default=3, help="hit + uncached rounds per prompt")
    parser.add_argument(
        "--gap-s",
        type=float,
        default=0.3,
        help="silence after each job's end before the next request",
    )
    parser.add_argument(
        "--warm-entries", type=int, default=1000, help="prompts to pre-warm (0: skip)"
    )
    parser.add_argument(
        "--live-baseline",
        type=int,
        default=40,
        help="live requests without warming, before and again after warming",
    )
    parser.add_argument(
        "--live-gap-s",
        type=float,
        default=0.5,
        help="silence between live requests (one at a time)",
    )
    parser.add_argument("--warm-timeout-s", type=float, default=1800.0)
    parser.add_argument(
        "--control-prompts",
        type=int,
        default=10,
        help="prompts per voice measured again on a daemon without the probe (0: skip)",
    )
    parser.add_argument("--control-rounds", type=int, default=2)
    parser.add_argument("--no-probe", action="store_true", help="run the main daemon unprobed")
    add_daemon_options(parser)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes: 3 prompts, 1 round, 20 warm entries, 3 baseline and 2 control requests",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: bench/results/)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.prompts, args.rounds, args.warm_entries = 3, 1, 20
        args.live_baseline, args.control_prompts, args.control_rounds = 3, 2, 1
    if not 1 <= args.prompts <= len(KIOSK_PROMPTS):
        parser.error(f"--prompts must be 1..{len(KIOSK_PROMPTS)}")
    if not 0 <= args.control_prompts <= len(KIOSK_PROMPTS):
        parser.error(f"--control-prompts must be 0..{len(KIOSK_PROMPTS)}")
    if not 0 <= args.warm_entries <= len(warm_prompts(1000)):
        parser.error("--warm-entries must be 0..1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probed daemon (parts 1-2) and the unprobed control, print the table, write JSON."""
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    rng = random.Random(args.seed)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        **run_facts("bench_cache", raw_argv, args.threads, started),
        "quick": args.quick,
        "sizes": {
            "voices": voices,
            "prompts": args.prompts,
            "rounds": args.rounds,
            "gap_s": args.gap_s,
            "warm_entries": args.warm_entries,
            "live_baseline": args.live_baseline,
            "live_gap_s": args.live_gap_s,
            "control_prompts": args.control_prompts,
            "control_rounds": args.control_rounds,
            "seed": args.seed,
        },
        "config_overrides": {
            "limits.requests_per_s": BENCH_REQUESTS_PER_S,
            "limits.request_burst": BENCH_BURST,
            "limits.max_text_chars": (
                warm_chars_needed(args.warm_entries)
                if warm_chars_needed(args.warm_entries) > DEFAULT_MAX_TEXT_CHARS
                else None
            ),
        },
        "sink": {"kind": "pulseaudio-null-sink", "rate_hz": NULL_SINK_RATE_HZ, "real_time": True},
        "definition": "first_audio_ms: daemon received the speak request -> the PortAudio callback "
        "copied the job's first sample into the device buffer (daemon-measured, from `end` events)",
        "percentiles": "numpy.percentile, linear interpolation",
    }
    out = args.out or RESULTS_DIR / f"bench_cache-{started.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(data: dict[str, Any]) -> None:
        out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def checkpoint(part: dict[str, Any]) -> None:
        # A long run on a shared machine can die late: keep what was measured so far.
        write({**report, **part, "complete": False})

    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp_name:
        tmp = Path(tmp_name)
        code_dir, report["daemon_code"] = daemon_code(tmp, args.code)
        with PulseNullSink(tmp / "pulse") as sink:
            report.update(run_main(tmp / "main", sink.env, args, voices, rng, code_dir, checkpoint))
            if args.control_prompts > 0:
                report["control"] = run_control(
                    tmp / "control", sink.env, args, voices, rng, code_dir
                )
    report["load_average_end"] = load_average()
    report["duration_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    report["complete"] = True
    write(report)
    print(format_table(report))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
