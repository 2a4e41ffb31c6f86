"""The text of a streamed `speak` (`speak-start`, `speak-chunk`s, `speak-stop`), handed to the
speech thread sentence by sentence as the pieces arrive.

Plain text: a sentence is complete where models/text/sentences.py cuts one (`.`, `!`, `?`, `…`
or `。` followed by whitespace and no lowercase word, and not after an abbreviation such as
`Sat.` or `Dr.`), at such a mark and whitespace that end the text received so far (the next
piece may be long in coming), or at `speak-stop` (whatever is left then is cut the same way and spoken). The
pieces are joined exactly as sent, so a client sends the spaces between words itself (as a
language model's tokens carry them). Each piece costs time linear in its own length: only the
new text and a short overlap are scanned again.

SSML (`text_format: "ssml"`): the pieces are one SSML document, parsed as it arrives
(`ssml.SsmlStream`); its sentences come out as the parser completes them. A malformed document
fails the piece that shows it (`invalid-ssml`, with line and column) and the job with it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Literal, TypeAlias

from utterd.models.errors import Cancelled, UtterdError
from utterd.models.text import sentences
from utterd.models.text.segments import Sentence
from utterd.models.text.ssml import InvalidSsml, SsmlLimits, SsmlStream
from utterd.models.voice import CancelToken

TextFormat: TypeAlias = Literal["text", "ssml"]
"""How a request's text is written: plain text, or an SSML document."""

_RESCAN: Final = sentences.MAX_WORD_LOOKBACK + 8
"""Characters before the end of unfinished text scanned again when more comes: a sentence end
there was undecided (it needs the character after it)."""

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

    def __init__(
        self,
        max_pending_chars: int,
        text_format: TextFormat = "text",
        ssml_limits: SsmlLimits | None = None,
    ) -> None:
        self._max_pending_chars = max_pending_chars
        self._cond = threading.Condition()
        self._pending = ""
        self._scanned = 0
        self._ready: deque[str | Sentence] = deque()
        self._ready_chars = 0
        self._ssml = SsmlStream(ssml_limits) if text_format == "ssml" else None
        self._error: InvalidSsml | None = None
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
        more than `max_pending_chars` would wait unspoken, InvalidSsml for a malformed SSML
        document (the job then fails with it too)."""
        with self._cond:
            self._check_open()
            waiting = len(self._pending) + self._ready_chars + len(text)
            if waiting > self._max_pending_chars:
                raise PendingTextTooLong(
                    f"{waiting} characters would wait unspoken; the limit is "
                    f"{self._max_pending_chars} (send less ahead, or end sentences)"
                )
            self._fed_s = time.monotonic()
            if self._ssml is not None:
                self._pending += text  # counted as waiting until the parser completes a sentence
                self._parse_ssml(lambda ssml: ssml.feed(text))
            else:
                self._pending += text
                self._cut(final=False)
            self._cond.notify_all()

    def close(self) -> None:
        """No more text: what is pending is the last sentence. StreamClosed if already closed;
        InvalidSsml when the SSML document is incomplete."""
        with self._cond:
            self._check_open()
            self._closed = True
            if self._ssml is not None:
                self._parse_ssml(lambda ssml: ssml.close())
            else:
                self._cut(final=True)
            self._cond.notify_all()

    def abort(self) -> None:
        """The job ended: refuse more text and wake the reader."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def next_sentence(self, cancel: CancelToken, idle_s: float) -> str | Sentence | None:
        """The next complete sentence (plain text, or an SSML sentence of segments), waiting
        for it; None once the text is closed and spoken.

        Raises Cancelled when `cancel` is set (or the stream aborted), StreamIdle when no text
        arrives for `idle_s` seconds while waiting, InvalidSsml when the document was malformed.
        """
        started_s = time.monotonic()
        with self._cond:
            while True:
                cancel.raise_if_cancelled()
                if self._aborted:
                    raise Cancelled("the job ended")
                if self._ready:
                    sentence = self._ready.popleft()
                    self._ready_chars -= len(sentence) if isinstance(sentence, str) else 0
                    self.sentences += 1
                    return sentence
                if self._error is not None:
                    raise self._error
                if self._closed:
                    return None
                idle_for_s = time.monotonic() - max(started_s, self._fed_s)
                if idle_for_s >= idle_s:
                    raise StreamIdle(
                        f"no text came for {idle_s:g} s (limits.stream_idle_s); send "
                        "speak-stop when the text is complete"
                    )
                self._cond.wait(min(_POLL_S, idle_s - idle_for_s))

    def _cut(self, *, final: bool) -> None:
        """Move the complete sentences of the pending text to the ready queue; lock held.
        Only text from `_scanned` on is looked at for a sentence end."""
        cuts, ends = sentences.sentence_cuts(self._pending, at_end=True, min_start=self._scanned)
        if final or (ends and self._pending[-1:].isspace()):
            # At `speak-stop`, or a sentence end and a space with nothing after them yet: the
            # next character (a lowercase word would join them) may be long in coming, and a
            # listener waits; an abbreviation (`Sat. `) still waits for it.
            cuts.append(len(self._pending))
        start = 0
        for cut in cuts:
            sentence = self._pending[start:cut].strip()
            start = cut
            if sentence:
                self._ready.append(sentence)
                self._ready_chars += len(sentence)
        self._pending = self._pending[start:]
        self._scanned = max(0, len(self._pending.rstrip()) - _RESCAN)

    def _parse_ssml(self, step: Callable[[SsmlStream], list[Sentence]]) -> None:
        """Run one parser step; its sentences become ready. Lock held."""
        assert self._ssml is not None
        try:
            done = step(self._ssml)
        except InvalidSsml as exc:
            self._error = exc
            self._closed = True
            self._cond.notify_all()
            raise
        if done:
            self._ready.extend(done)
            self._pending = ""

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._aborted:
            raise StreamClosed("the job has ended; its text is closed")
        if self._closed:
            raise StreamClosed("speak-stop already closed this job's text")
