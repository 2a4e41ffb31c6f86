"""espeak-ng, the Piper voices' phonemizer, in a supervised helper process.

espeak-ng (inside piper-tts) has memory-safety bugs that ordinary text reaches: `"a."*98`
overflows the fixed buffer of its dotted-abbreviation check and `"s'"*220` its suffix buffer,
each a segfault that used to end the whole daemon. Two defences:

1. `espeak_safe_text` keeps the text away from the known triggers (dotted-letter runs are cut
   into short groups; the shared guard already caps word length) — the common case costs
   nothing.
2. Whatever is left runs in `espeak_worker.py`, a process of its own started on first use:
   a native crash or a hang ends that process only. The request that met it fails with
   `PhonemizerFailed` (code `phonemizer-failed`), the helper is started again for the next
   request, and every other job goes on.

Measured cost (docs/benchmarks.md): a round trip of well under a millisecond per piece, and one
small Python process holding espeak-ng's data (that memory left the daemon's process with it).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from utterd.models.errors import PhonemizerFailed, VoiceLoadError

_LOGGER = logging.getLogger(__name__)

CALL_TIMEOUT_S: Final = 10.0
"""Longest one phonemizer call may take (a guarded piece takes milliseconds); past it the
helper is taken to hang, killed, and the request fails."""

START_TIMEOUT_S: Final = 15.0
"""Longest the helper may take to load espeak-ng's data and say it is ready."""

MAX_DOTTED_LETTERS: Final = 6
"""Letters of a dotted abbreviation (`U.S.A.`) kept in one group; a longer run is cut into groups
on lines of their own, which espeak-ng reads as separate clauses (it copies a whole run into a
fixed buffer; a comma or a period between groups did not stop the overflow, measured)."""

_DOTTED_RUN: Final = re.compile(
    r"(?:(?<![^\W\d_])[^\W\d_]\.[ ]?){" + str(MAX_DOTTED_LETTERS + 1) + ",}"
)
_DOTTED_LETTER: Final = re.compile(r"[^\W\d_]\.[ ]?")
_DOTS: Final = re.compile(r"\.{2,}")
_LANGUAGE_FLAG: Final = re.compile(r"\([^)]*\)")
_CLAUSE_TERMINATORS: Final = (",", ":", ";")


def _cut_dotted(match: re.Match[str]) -> str:
    letters = _DOTTED_LETTER.findall(match.group(0))
    groups = (
        "".join(letters[i : i + MAX_DOTTED_LETTERS]).strip()
        for i in range(0, len(letters), MAX_DOTTED_LETTERS)
    )
    tail = " " if match.group(0).endswith(" ") else ""
    return "\n".join(groups) + tail


def espeak_safe_text(text: str) -> str:
    """The text with espeak-ng's known crash triggers defused (a linear pass or two).

    Dotted-letter runs longer than `MAX_DOTTED_LETTERS` are cut into groups, one a line; a
    run of dots becomes one ellipsis character (espeak-ng reads memory past the text after a
    word ending in `..`).
    """
    text = _DOTS.sub("\u2026", text)
    return _DOTTED_RUN.sub(_cut_dotted, text)


def _bridge_paths() -> tuple[str, str]:
    """piper-tts's espeakbridge extension and espeak-ng data folder, found without importing it."""
    spec = importlib.util.find_spec("piper")
    if spec is None or not spec.submodule_search_locations:
        raise VoiceLoadError("piper-tts is not installed: Piper voices need its espeak-ng")
    folder = Path(next(iter(spec.submodule_search_locations)))
    bridges = sorted(folder.glob("espeakbridge*.so")) + sorted(folder.glob("espeakbridge*.pyd"))
    data = folder / "espeak-ng-data"
    if not bridges or not data.is_dir():
        raise VoiceLoadError(f"piper-tts at {folder} has no espeakbridge or espeak-ng-data")
    return str(bridges[0]), str(data)


Clause = tuple[str, str, bool]
"""(phonemes, terminator, end_of_sentence), as espeak-ng's clause loop gives them."""


class EspeakProcess:
    """A supervised espeak-ng helper: one at a time, restarted after a crash or a hang."""

    def __init__(self, call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._call_timeout_s = call_timeout_s
        self.restarts = 0
        """Helpers started after the first (each after a crash or a hang)."""

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def clauses(self, espeak_voice: str, text: str) -> list[Clause]:
        """espeak-ng's clauses for `text`; PhonemizerFailed if the helper crashes or hangs."""
        request = (json.dumps({"voice": espeak_voice, "text": text}) + "\n").encode()
        with self._lock:
            proc = self._running()
            try:
                assert proc.stdin is not None
                proc.stdin.write(request)
                proc.stdin.flush()
                line = self._read_line(proc, self._call_timeout_s)
            except (OSError, _HelperGone) as err:
                self._reap(proc, f"{err}")
                raise PhonemizerFailed(
                    f"espeak-ng failed on this text ({err}); the phonemizer was restarted "
                    f"({len(text)} characters)"
                ) from err
        answer = json.loads(line)
        if "error" in answer:
            raise PhonemizerFailed(f"espeak-ng refused the text: {answer['error']}")
        return [(str(p), str(t), bool(e)) for p, t, e in answer["clauses"]]

    def _running(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        if proc is not None:
            self._reap(proc, f"exited with {proc.returncode}")
        bridge, data = _bridge_paths()
        worker = Path(__file__).with_name("espeak_worker.py")
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(worker), bridge, data],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self._buffer = b""
        try:
            ready = self._read_line(proc, START_TIMEOUT_S)
        except _HelperGone as err:
            self._reap(proc, str(err))
            raise PhonemizerFailed(f"the espeak-ng helper did not start: {err}") from err
        if json.loads(ready) != {"ready": True}:
            self._reap(proc, "bad handshake")
            raise PhonemizerFailed(f"the espeak-ng helper answered {ready!r} at start")
        _LOGGER.info(
            "event=phonemizer-started pid=%d start_ms=%.1f restarts=%d",
            proc.pid,
            (time.perf_counter() - started) * 1e3,
            self.restarts,
        )
        self._proc = proc
        return proc

    def _read_line(self, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _HelperGone(f"no answer within {timeout_s:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                code = proc.wait(timeout=1.0)
                raise _HelperGone(f"helper exited with {_describe_exit(code)}")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def _reap(self, proc: subprocess.Popen[bytes], reason: str) -> None:
        """Make sure a failed helper is gone; the next call starts a new one."""
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        _LOGGER.warning("event=phonemizer-failed pid=%d reason=%r", proc.pid, reason)
        if self._proc is proc:
            self._proc = None
        self.restarts += 1
        self._buffer = b""

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _HelperGone(Exception):
    """The helper exited, or did not answer in time."""


def _describe_exit(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"status {code}"


def group_sentences(
    clauses: Sequence[Clause], vowel_clusters: set[tuple[str, ...]] | None
) -> list[list[str]]:
    """espeak-ng clauses → phonemes grouped by sentence, as Piper voices were trained.

    Language-switch flags (`(fr)`) are dropped, each clause keeps its terminator (a clause mark
    followed by a space), phonemes are split into code points after NFD, and known vowel
    clusters are merged back into one phoneme.
    """
    sentences: list[list[str]] = []
    current: list[str] = []
    for phonemes, terminator, end_of_sentence in clauses:
        clause = _LANGUAGE_FLAG.sub("", phonemes) + terminator
        if terminator in _CLAUSE_TERMINATORS:
            clause += " "
        current.extend(unicodedata.normalize("NFD", clause))
        if end_of_sentence:
            sentences.append(_merge_clusters(current, vowel_clusters))
            current = []
    if current:
        sentences.append(_merge_clusters(current, vowel_clusters))
    return sentences


def _merge_clusters(phonemes: list[str], clusters: set[tuple[str, ...]] | None) -> list[str]:
    if not clusters:
        return phonemes
    longest = max(len(c) for c in clusters)
    merged: list[str] = []
    i = 0
    while i < len(phonemes):
        for size in range(min(longest, len(phonemes) - i), 1, -1):
            if tuple(phonemes[i : i + size]) in clusters:
                merged.append("".join(phonemes[i : i + size]))
                i += size
                break
        else:
            merged.append(phonemes[i])
            i += 1
    return merged


_SHARED: EspeakProcess | None = None
_SHARED_LOCK: Final = threading.Lock()


def shared() -> EspeakProcess:
    """The process-wide helper (espeak-ng calls are serialized anyway)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = EspeakProcess()
        return _SHARED
