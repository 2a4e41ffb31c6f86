"""The text of a streamed `speak` (`speak-start`, `speak-chunk`s, `speak-stop`), handed to the
speech thread sentence by sentence as the pieces arrive.

A sentence is complete at `.`, `!` or `?` followed by whitespace, or at `speak-stop` (whatever is
left then is the last sentence). The pieces are joined exactly as sent, so a client sends the
spaces between words itself (as a language model's tokens carry them).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Final

from utterd.models.errors import Cancelled, UtterdError
from utterd.models.voice import CancelToken

_SENTENCE_END: Final = re.compile(r"[.!?](?=\s)")
"""Where a sentence ends: its final mark, when whitespace follows it."""

_POLL_S: Final = 0.05
"""How often a waiting reader looks at its job's cancel token (a stop also wakes it)."""


class StreamClosed(UtterdError):
    """`speak-chunk` or `speak-stop` for a streamed job whose text is closed: `speak-stop` came
    already, or the job ended (stopped, failed)."""

    code = "stream-closed"


class PendingTextTooLong(UtterdError):
    """More streamed text would wait unspoken than `limits.max_text_chars` allows. The code is
    the protocol's `text-too-long`: to a client it is the same limit on the same text."""

    code = "text-too-long"


class StreamIdle(UtterdError):
    """A streamed job waited longer than `limits.stream_idle_s` for its next text."""

    code = "stream-idle"


class TextStream:
    """Text arriving in pieces; complete sentences come out in order. Thread-safe: the socket
    loop feeds and closes, the speech thread reads."""

    def __init__(self, max_pending_chars: int) -> None:
        self._max_pending_chars = max_pending_chars
        self._cond = threading.Condition()
        self._pending = ""
        self._closed = False
        self._aborted = False
        self._fed_s = time.monotonic()
        self.sentences = 0
        """Sentences handed out so far."""

    @property
    def closed(self) -> bool:
        """`speak-stop` came, or the job ended."""
        with self._cond:
            return self._closed or self._aborted

    def feed(self, text: str) -> None:
        """Append a piece; raises StreamClosed after close or abort, PendingTextTooLong when
        more than `max_pending_chars` would wait unspoken."""
        with self._cond:
            self._check_open()
            waiting = len(self._pending) + len(text)
            if waiting > self._max_pending_chars:
                raise PendingTextTooLong(
                    f"{waiting} characters would wait unspoken; the limit is "
                    f"{self._max_pending_chars} (send less ahead, or end sentences)"
                )
            self._pending += text
            self._fed_s = time.monotonic()
            self._cond.notify_all()

    def close(self) -> None:
        """No more text: what is pending is the last sentence. StreamClosed if already closed."""
        with self._cond:
            self._check_open()
            self._closed = True
            self._cond.notify_all()

    def abort(self) -> None:
        """The job ended: refuse more text and wake the reader."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def next_sentence(self, cancel: CancelToken, idle_s: float) -> str | None:
        """The next complete sentence, waiting for it; None once the text is closed and spoken.

        Raises Cancelled when `cancel` is set (or the stream aborted), StreamIdle when no text
        arrives for `idle_s` seconds while waiting.
        """
        started_s = time.monotonic()
        with self._cond:
            while True:
                cancel.raise_if_cancelled()
                if self._aborted:
                    raise Cancelled("the job ended")
                sentence = self._take()
                if sentence is not None:
                    self.sentences += 1
                    return sentence
                if self._closed:
                    return None
                idle_for_s = time.monotonic() - max(started_s, self._fed_s)
                if idle_for_s >= idle_s:
                    raise StreamIdle(
                        f"no text came for {idle_s:g} s (limits.stream_idle_s); send "
                        "speak-stop when the text is complete"
                    )
                self._cond.wait(min(_POLL_S, idle_s - idle_for_s))

    def _take(self) -> str | None:
        """Cut the next non-empty sentence off the pending text; lock held."""
        while True:
            found = _SENTENCE_END.search(self._pending)
            if found is None:
                if not self._closed:
                    return None
                rest, self._pending = self._pending.strip(), ""
                return rest or None
            sentence = self._pending[: found.end()].strip()
            self._pending = self._pending[found.end() :]
            if sentence:
                return sentence

    def _check_open(self) -> None:
        if self._aborted:
            raise StreamClosed("the job has ended; its text is closed")
        if self._closed:
            raise StreamClosed("speak-stop already closed this job's text")
