"""Pre-warming: render listed prompts into the phrase cache in the background, never in the way.

The list comes from config.yaml (`cache.prewarm`, a list of entries) and/or a file
(`cache.prewarm_file`, one entry a line). Both use the same entry syntax:

    # A comment; blank lines are skipped.
    Battery low.
    voice=en_US-joe-medium rate=1.1 | Battery low.
    speaker=2 volume=0.8 | Door open.
    template=yes | Your balance is {amount}.
    | Press 1 | 2 for sales.

- An entry is a prompt, optionally preceded by options and a `|`. Everything after the first
  `|` is the prompt, spoken as written (leading and trailing spaces dropped).
- Options are `key=value` words separated by spaces: `voice` (a voice id; default: the
  configured default voice), `speaker` (name or id), `rate` (0.25..4.0), `volume` (0..4.0),
  `template` (yes/no: the prompt is a phrase template, see cache/templates.py, and its fixed
  parts are pre-warmed; its slots are filled per request). Values contain no spaces.
- A prompt that itself contains `|` needs the separator even without options: start the line
  with `| ` (last example). A line whose text before the first `|` is not all options is an
  error, not a guess, so a typo in an option never becomes a spoken prompt.
- Determinism is not an option: cached audio follows `cache.deterministic` for every entry.

Errors raise `InvalidPrewarmList` (code `invalid-prewarm`) naming the file and line, or the
config key and index. Identical entries are rendered once.

`Prewarmer` renders the entries that are not cached yet on a thread of its own, at the lowest
priority: it waits while a live request is busy before each entry, and cancels the entry it is
rendering as soon as one arrives (the entry is retried later), so a live request waits for at
most one engine step of warming. It is stoppable, and resumable: a restart builds a new
Prewarmer over the same list and the entries already cached are skipped.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from utterd.daemon.cache.templates import InvalidTemplate, parse_template
from utterd.models.errors import Cancelled, InvalidParameter, UtterdError
from utterd.models.voice import CancelToken, SynthesisParams

__all__ = [
    "InvalidPrewarmList",
    "PrewarmProgress",
    "PrewarmSpec",
    "PrewarmState",
    "Prewarmer",
    "load_prewarm_list",
    "parse_prewarm_entry",
    "parse_prewarm_file",
]

_LOGGER = logging.getLogger(__name__)

OPTION_KEYS: Final = ("voice", "speaker", "rate", "volume", "template")
"""Options an entry may set before its `|`."""

_YES: Final = frozenset({"yes", "true", "1", "on"})
_NO: Final = frozenset({"no", "false", "0", "off"})

LOWEST_NICE: Final = 19
"""Nice value of the warming thread (Linux niceness is per thread): the OS favours live work."""

BUSY_POLL_MAX_S: Final = 0.5
"""Longest wait between two looks for the end of live work. Waits start at the poll interval
and double: a long speech (minutes) would otherwise wake the warming thread 50 times a second
for nothing; warming resumes at most this long after the live work ended."""


class InvalidPrewarmList(UtterdError):
    """A pre-warm entry or file is malformed; the message names the file and line."""

    code = "invalid-prewarm"


@dataclass(frozen=True)
class PrewarmSpec:
    """One prompt to render into the cache."""

    text: str
    """What to say (a template's fixed part for template entries)."""

    voice: str | None
    """Voice id; None means the configured default voice."""

    params: SynthesisParams
    """Speaker, rate and volume (determinism is set by the cache policy when rendering)."""

    source: str
    """Where the entry was written (`prompts.txt:12`, `config cache.prewarm[3]`), for logs."""


def parse_prewarm_entry(entry: str, source: str) -> list[PrewarmSpec]:
    """Specs for one entry (several for a template, none for a blank or comment line).

    Raises InvalidPrewarmList starting with `source`.
    """
    line = entry.strip()
    if not line or line.startswith("#"):
        return []
    options: dict[str, str] = {}
    text = line
    if "|" in line:
        head, text = line.split("|", 1)
        for word in head.split():
            key, eq, value = word.partition("=")
            if not eq or key not in OPTION_KEYS:
                raise InvalidPrewarmList(
                    f"{source}: {word!r} is not an option ({', '.join(OPTION_KEYS)}: key=value); "
                    "to say a '|', start the entry with '| '"
                )
            if not value:
                raise InvalidPrewarmList(f"{source}: option {key!r} has no value")
            if key in options:
                raise InvalidPrewarmList(f"{source}: option {key!r} is given twice")
            options[key] = value
    text = text.strip()
    if not text:
        raise InvalidPrewarmList(f"{source}: no prompt after the options")
    params = _params(options, source)
    template = _flag(options.get("template", "no"), "template", source)
    texts = [text]
    if template:
        try:
            texts = list(parse_template(text).fixed_texts())
        except InvalidTemplate as exc:
            raise InvalidPrewarmList(f"{source}: {exc.message}") from None
    voice = options.get("voice")
    return [PrewarmSpec(t, voice, params, source) for t in texts]


def _params(options: dict[str, str], source: str) -> SynthesisParams:
    speaker_text = options.get("speaker")
    speaker: str | int | None = speaker_text
    # isdecimal, not isdigit: int() refuses the superscript and circled digits isdigit() takes.
    if speaker_text is not None and speaker_text.isdecimal():
        try:
            speaker = int(speaker_text)
        except ValueError:  # more digits than Python converts (4,300)
            raise InvalidPrewarmList(
                f"{source}: speaker id has {len(speaker_text)} digits"
            ) from None
    rate = _number(options, "rate", 1.0, source)
    volume = _number(options, "volume", 1.0, source)
    try:
        return SynthesisParams(speaker=speaker, rate=rate, volume=volume).validated()
    except InvalidParameter as exc:
        raise InvalidPrewarmList(f"{source}: {exc.message}") from None


def _number(options: dict[str, str], key: str, default: float, source: str) -> float:
    if key not in options:
        return default
    try:
        value = float(options[key])
    except ValueError:
        raise InvalidPrewarmList(
            f"{source}: {key} must be a number, got {options[key]!r}"
        ) from None
    if not math.isfinite(value):
        raise InvalidPrewarmList(f"{source}: {key} must be a finite number, got {options[key]!r}")
    return value


def _flag(value: str, key: str, source: str) -> bool:
    lowered = value.lower()
    if lowered in _YES:
        return True
    if lowered in _NO:
        return False
    raise InvalidPrewarmList(f"{source}: {key} must be yes or no, got {value!r}")


def parse_prewarm_file(path: Path) -> list[PrewarmSpec]:
    """Specs from a file of one entry a line (UTF-8). Errors name `path:line`."""
    try:
        content = path.expanduser().read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPrewarmList(f"{path}: not UTF-8 at byte {exc.start}") from None
    except OSError as exc:
        raise InvalidPrewarmList(f"{path}: cannot read: {exc.strerror or exc}") from None
    specs: list[PrewarmSpec] = []
    for number, line in enumerate(content.splitlines(), start=1):
        specs.extend(parse_prewarm_entry(line, f"{path}:{number}"))
    return specs


def load_prewarm_list(
    inline: Sequence[str], file: Path | None, *, config_source: str = "config"
) -> tuple[PrewarmSpec, ...]:
    """The config's inline entries, then the file's, with duplicates dropped (first kept)."""
    specs: list[PrewarmSpec] = []
    for index, entry in enumerate(inline):
        specs.extend(parse_prewarm_entry(entry, f"{config_source} cache.prewarm[{index}]"))
    if file is not None:
        specs.extend(parse_prewarm_file(file))
    return _unique(specs)


def _unique(specs: Iterable[PrewarmSpec]) -> tuple[PrewarmSpec, ...]:
    seen: set[tuple[str, str | None, SynthesisParams]] = set()
    out: list[PrewarmSpec] = []
    for spec in specs:
        identity = (" ".join(spec.text.split()), spec.voice, spec.params)
        if identity not in seen:
            seen.add(identity)
            out.append(spec)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# The background renderer.


class PrewarmState(enum.Enum):
    """Where the warming is."""

    IDLE = "idle"
    """Not started."""

    RUNNING = "running"
    """Rendering, or waiting for live requests to finish."""

    STOPPED = "stopped"
    """Stopped before the end; `start()` resumes."""

    DONE = "done"
    """Every entry was cached, rendered or failed."""


@dataclass(frozen=True)
class PrewarmProgress:
    """Counters for `describe` and logs."""

    state: PrewarmState
    """Where the warming is."""

    total: int
    """Entries in the list."""

    rendered: int
    """Entries rendered into the cache by this Prewarmer."""

    cached: int
    """Entries found already cached and skipped."""

    failed: int
    """Entries that failed (unknown voice, synthesis error); logged, not retried."""

    preempted: int
    """Renders cancelled for a live request and retried later."""

    @property
    def remaining(self) -> int:
        return self.total - self.rendered - self.cached - self.failed


RenderFn = Callable[[PrewarmSpec, CancelToken], None]
"""Renders one spec into the cache; must check the token and raise Cancelled when it is set."""


class Prewarmer:
    """Renders missing pre-warm entries on a background thread, yielding to live requests.

    `render(spec, cancel)` synthesizes one entry into the cache (typically: consume
    `PhraseCache.stream` for the spec's key with cache mode `auto`), `is_cached(spec)` says
    whether it is there already, and `is_busy()` whether a live request is queued or being
    synthesized. All three are called from the warming thread (`is_busy` also from its
    watcher) and must be thread-safe and cheap.
    """

    def __init__(
        self,
        specs: Sequence[PrewarmSpec],
        render: RenderFn,
        is_cached: Callable[[PrewarmSpec], bool],
        is_busy: Callable[[], bool],
        *,
        poll_interval_s: float = 0.02,
        nice: int | None = LOWEST_NICE,
    ) -> None:
        self._specs = tuple(specs)
        self._render = render
        self._is_cached = is_cached
        self._is_busy = is_busy
        self._poll_interval_s = poll_interval_s
        self._nice = nice
        self._pending: deque[PrewarmSpec] = deque(self._specs)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rendering = threading.Event()
        """Set while an entry renders (and when the thread ends or stops): the watcher's cue."""
        self._current: CancelToken | None = None
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._state = PrewarmState.IDLE
        self._counts = {"rendered": 0, "cached": 0, "failed": 0, "preempted": 0}

    def start(self) -> None:
        """Start (or resume after `stop`) on a background thread; no-op while running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._rendering.clear()
            self._state = PrewarmState.RUNNING
            self._thread = threading.Thread(target=self._run, name="utterd-prewarm", daemon=True)
            self._watcher = threading.Thread(
                target=self._watch, name="utterd-prewarm-watch", daemon=True
            )
            self._thread.start()
            self._watcher.start()

    def stop(self, timeout_s: float | None = 5.0) -> bool:
        """Cancel the entry being rendered and end the thread; True once it has ended."""
        self._stop.set()
        self._rendering.set()  # the watcher sleeps until a render starts: let it see the stop
        with self._lock:
            current, thread, watcher = self._current, self._thread, self._watcher
        if current is not None:
            current.cancel("pre-warm stopped")
        ended = True
        for t in (thread, watcher):
            if t is not None:
                t.join(timeout_s)
                ended = ended and not t.is_alive()
        return ended

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the thread to end (done or stopped); False on timeout."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def extend(self, specs: Sequence[PrewarmSpec]) -> bool:
        """Queue more entries behind the pending ones, for this warmer's thread to render.

        False if it is not running (not started, done or stopped): start a new Prewarmer then.
        One thread for every `cache-warm`: under steady load warming waits, and a thread per
        request would pile up.
        """
        with self._lock:
            if self._state is not PrewarmState.RUNNING:
                return False
            self._specs += tuple(specs)
            self._pending.extend(specs)
            return True

    def preempt(self) -> None:
        """A live request just arrived: cancel the entry being rendered now (it is retried once
        the live work is done). The watcher would notice within its poll interval; a live
        first audio takes about that long, so the caller says so at once."""
        with self._lock:
            current = self._current
        if current is not None and not current.cancelled:
            current.cancel("preempted by a live request")

    def progress(self) -> PrewarmProgress:
        with self._lock:
            return PrewarmProgress(self._state, len(self._specs), **self._counts)

    # -- the warming thread ---------------------------------------------------------------------
    def _lower_priority(self) -> None:
        """Lowest CPU priority for this thread and every thread it creates (the pre-warm voice
        instance's inference threads are created here, see Server._warming_instance).

        SCHED_IDLE first: such a thread runs only on a CPU nothing else wants and yields the
        moment a normal thread wakes up. Nice 19 alone still took ~1.5 % weight against live
        threads, and live first audio p99 was 1.16x its usual while 1,000 prompts warmed
        (docs/benchmarks.md). Linux applies both per thread and new threads inherit them.
        """
        if self._nice is None:
            return
        tid = threading.get_native_id()
        try:
            # On Linux the "process" priority of a thread id is that thread's own niceness.
            os.setpriority(os.PRIO_PROCESS, tid, self._nice)
        except (OSError, AttributeError) as exc:
            _LOGGER.debug("event=prewarm-nice-failed error=%r", exc)
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError) as exc:
            _LOGGER.debug("event=prewarm-sched-idle-failed error=%r", exc)

    def _wait_until_idle(self) -> bool:
        """Block while a live request is busy, looking less often the longer it lasts
        (BUSY_POLL_MAX_S); False if stopped meanwhile."""
        wait_s = self._poll_interval_s
        while self._is_busy():
            if self._stop.wait(wait_s):
                return False
            wait_s = min(2 * wait_s, max(self._poll_interval_s, BUSY_POLL_MAX_S))
        return not self._stop.is_set()

    def _watch(self) -> None:
        """Cancel the entry being rendered the moment a live request shows up (a backstop: the
        server calls `preempt` itself). Polls only while an entry renders; between entries
        (waiting for live work to end, or done) it sleeps until the next render starts."""
        while True:
            self._rendering.wait()
            if self._stop.wait(self._poll_interval_s):
                return
            with self._lock:
                current = self._current
                thread = self._thread
            if thread is None or not thread.is_alive():
                return
            if current is not None and not current.cancelled and self._is_busy():
                current.cancel("preempted by a live request")

    def _run(self) -> None:
        try:
            self._render_pending()
        finally:
            self._rendering.set()  # the watcher wakes, sees this thread end, and returns

    def _render_pending(self) -> None:
        self._lower_priority()
        started = time.monotonic()
        _LOGGER.info(
            "event=prewarm-start entries=%d pending=%d", len(self._specs), len(self._pending)
        )
        while True:
            with self._lock:
                if not self._pending:
                    self._state = PrewarmState.DONE  # under the lock: extend() now refuses
                    break
                spec = self._pending[0]
            if not self._wait_until_idle():
                break
            outcome = self._one(spec)
            if outcome == "stopped":
                break  # still first in line, so `start()` resumes with it
            with self._lock:
                if outcome == "preempted":
                    self._counts["preempted"] += 1
                    continue  # still first in line: retried once the live request is done
                self._pending.popleft()
                self._counts[outcome] += 1
        with self._lock:
            stopped = bool(self._pending)
            self._state = PrewarmState.STOPPED if stopped else PrewarmState.DONE
            counts = dict(self._counts)
        _LOGGER.info(
            "event=prewarm-%s rendered=%d cached=%d failed=%d preempted=%d elapsed_s=%.1f",
            "stopped" if stopped else "done",
            counts["rendered"],
            counts["cached"],
            counts["failed"],
            counts["preempted"],
            time.monotonic() - started,
        )

    def _one(self, spec: PrewarmSpec) -> str:
        """Render one entry: "rendered", "cached", "failed", "preempted" or "stopped"."""
        token = CancelToken()
        with self._lock:
            self._current = token
        self._rendering.set()
        started = time.perf_counter()
        try:
            if self._is_cached(spec):
                return "cached"
            self._render(spec, token)
            # A render that returned early on cancellation did not finish its entry.
            token.raise_if_cancelled()
        except Cancelled:
            return "stopped" if self._stop.is_set() else "preempted"
        except UtterdError as exc:
            _LOGGER.warning(
                "event=prewarm-failed source=%s code=%s message=%r",
                spec.source,
                exc.code,
                exc.message,
            )
            return "failed"
        except Exception:  # one bad entry must not end the warming of the others
            _LOGGER.exception("event=prewarm-crash source=%s", spec.source)
            return "failed"
        finally:
            with self._lock:
                self._current = None
            if not self._stop.is_set():
                self._rendering.clear()
        _LOGGER.debug(
            "event=prewarm-rendered source=%s ms=%.1f",
            spec.source,
            (time.perf_counter() - started) * 1e3,
        )
        return "rendered"
