"""speech-dispatcher's output-module protocol, as a state machine over lines and daemon events.

speech-dispatcher starts its output module as a child process and talks to it over the
module's stdin and stdout, one command per line (its `src/modules/module_process.c` and
`src/server/output.c` are the reference; the `Output Modules` chapter of its manual describes
the design). The module answers with numbered lines: `2xx` success, `3xx` a bad request,
`4xx` a module fault; a final line has a space after the code, earlier lines of the same answer
a `-`. What this module understands:

| command | data | answer |
|---|---|---|
| `INIT` | | `299-message` / `299 OK LOADED SUCCESSFULLY` (or `399` and exit) |
| `SPEAK`, `CHAR`, `KEY`, `SOUND_ICON` | lines up to `.` (a leading `.` doubled) | `202 OK RECEIVING MESSAGE`, then `200 OK SPEAKING` (`301 ERROR CANT SPEAK` if empty) |
| `SET`, `AUDIO`, `LOGLEVEL` | `name=value` lines up to `.` | `203`/`207 OK RECEIVING ...`, then `203 OK ...` or the first error |
| `STOP`, `PAUSE` | | none |
| `LIST VOICES [LANG [VARIANT]]` | | `200-name<TAB>language<TAB>variant` lines, `200 OK VOICE LIST SENT` |
| `DEBUG ON FILE`, `DEBUG OFF` | | `200 OK DEBUGGING ON` |
| `QUIT` | | `210 OK QUIT` |

While a message is spoken the module reports, unasked: `701 BEGIN`, `700-NAME` / `700 INDEX MARK`
for each SSML mark reached, and exactly one of `702 END`, `703 STOP`, `704 PAUSE`; speech-
dispatcher sends the next message only after that.

Each message becomes one utterd `speak` job of priority `text` (speech-dispatcher has already
applied its own priorities; it stops a message before sending a more urgent one). The events of
that job (`begin`, `mark`, `end`, `stopped`, `failed`, `paused`) become the module's events.
`STOP` cancels this client's jobs in the daemon (`cancel` with `client: self`), which cuts the
sound device's buffer at once; `703 STOP` goes back when the daemon confirms the job stopped.
`PAUSE` pauses the job at its next piece of audio (`pause`); once the daemon reports it
`paused`, `704 PAUSE` goes back and the held job is cancelled, because speech-dispatcher resumes
a paused message itself, by sending its text again from the last index mark reported.

The daemon may be absent or restart at any time. A message it cannot take (not running, or an
error such as `busy`) is answered `200 OK SPEAKING` and at once `703 STOP`, and the reason goes
to the module's log: speech-dispatcher drops a message answered `301` without telling its client,
whose wait for the message's end would then never end. A message speaking when the daemon's
connection drops ends with `703 STOP`; while a message speaks its job is looked up every second,
so a lost event cannot leave speech-dispatcher waiting either. ZeroMQ reconnects when the daemon
is back, and the next message speaks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from utterd.daemon.bridges import speechd_text as ssml
from utterd.daemon.bridges.speechd_config import ModuleConfig
from utterd.daemon.bridges.speechd_link import DaemonRefused, DaemonUnreachable
from utterd.daemon.bridges.speechd_settings import (
    BadSetting,
    MessageSettings,
    VoiceEntry,
    apply_setting,
    choose_voice,
    language_fits,
    utterd_rate,
    utterd_volume,
)
from utterd.models.errors import UtterdError

_LOGGER = logging.getLogger(__name__)

BAD_SYNTAX: Final = "302 ERROR BAD SYNTAX"
BAD_PARAM: Final = "303 ERROR INVALID PARAMETER OR VALUE"
CANT_SPEAK: Final = "301 ERROR CANT SPEAK"

JOB_CHECK_S: Final = 1.0
"""While a message speaks and no event came for this long, its job is looked up."""


def logging_level(speechd_level: int) -> int:
    """speech-dispatcher's log level (0 nothing .. 5 everything) as logging's."""
    levels = (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO)
    return levels[max(speechd_level, 0)] if speechd_level < len(levels) else logging.DEBUG


_MESSAGE_KINDS: Final = ("SPEAK", "CHAR", "KEY", "SOUND_ICON")


class DaemonLink(Protocol):
    """What the module asks of the daemon (`speechd_link.ZmqLink`; a fake in the tests).
    Each call raises DaemonUnreachable or DaemonRefused."""

    def speak(self, request: Mapping[str, object]) -> str:
        """Queue a `speak` request; its job id."""
        ...

    def cancel(self) -> list[str]:
        """`cancel` this client's jobs; the jobs stopped or dropped."""
        ...

    def pause(self, job: str) -> list[str]:
        """`pause` one job; the jobs now held."""
        ...

    def job(self, job: str) -> dict[str, Any]:
        """A job's status (`state`, `paused`, ...)."""
        ...

    def describe(self) -> dict[str, Any]:
        """The daemon's `info`."""
        ...


Starter = Callable[[], tuple[DaemonLink, ModuleConfig, str]]
"""Called at `INIT`: the link, the module config and a line for speech-dispatcher's log;
raises UtterdError if the module cannot work (bad config)."""


@dataclass
class _Message:
    """The message speaking: its utterd job and what has been reported of it."""

    job: str
    """The utterd job id."""

    checked_s: float
    """When the job was last heard of (an event) or looked up."""

    began: bool = False
    """`701 BEGIN` was sent."""

    pause_requested: bool = False
    """speech-dispatcher sent `PAUSE`; the job's end is reported as `704 PAUSE`."""


@dataclass
class _Block:
    """A command whose data lines are being read, up to the line `.`."""

    command: str
    """`SPEAK`, `CHAR`, `KEY`, `SOUND_ICON`, `SET`, `AUDIO` or `LOGLEVEL`."""

    lines: list[str]
    """The data lines so far (with a leading `.` undone)."""


class ModuleSession:
    """One module's life: feed it speech-dispatcher's lines and the daemon's events; it writes
    answers and reports through `write` (whole lines, each ending in a newline)."""

    def __init__(
        self,
        start: Starter,
        write: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        set_log_level: Callable[[int], None] | None = None,
        set_debug_file: Callable[[str | None], None] | None = None,
    ) -> None:
        self._start = start
        self._write = write
        self._clock = clock
        self._set_log_level = set_log_level or logging.getLogger().setLevel
        self._set_debug_file = set_debug_file
        self._link: DaemonLink | None = None
        self._config = ModuleConfig()
        self._settings = MessageSettings()
        self._block: _Block | None = None
        self._message: _Message | None = None
        self._voices: list[VoiceEntry] | None = None
        self._default_voice: str | None = None
        self.finished = False
        """QUIT was handled, or INIT failed: the process should exit."""
        self.exit_code = 0
        """The process's exit status once `finished`."""

    @property
    def speaking(self) -> bool:
        """A message is speaking (its end not reported yet)."""
        return self._message is not None

    # -- speech-dispatcher's side ------------------------------------------------------------

    def feed(self, line: str) -> None:
        """One line from speech-dispatcher, without its newline."""
        if self._block is not None:
            self._block_line(line)
        elif self._link is None:
            self._init(line)
        elif line in _MESSAGE_KINDS:
            self._send("202 OK RECEIVING MESSAGE")
            self._block = _Block(line, [])
        elif line == "SET":
            self._send("203 OK RECEIVING SETTINGS")
            self._block = _Block(line, [])
        elif line in ("AUDIO", "LOGLEVEL"):
            self._send(f"207 OK RECEIVING {line} SETTINGS")
            self._block = _Block(line, [])
        elif line == "STOP":
            self._stop()
        elif line == "PAUSE":
            self._pause()
        elif line.startswith("LIST VOICES"):
            self._list_voices(line.split()[2:])
        elif line.startswith("DEBUG"):
            self._debug(line.split()[1:])
        elif line == "QUIT":
            self.close()
            self._send("210 OK QUIT")
            self.finished = True
        else:
            self._send("300 ERR UNKNOWN COMMAND")

    def _send(self, *lines: str) -> None:
        self._write("".join(line + "\n" for line in lines))

    def _init(self, line: str) -> None:
        if line != "INIT":
            _LOGGER.error("event=no-init line=%r", line[:40])
            self.finished, self.exit_code = True, 3
            return
        try:
            self._link, self._config, message = self._start()
        except UtterdError as exc:
            _LOGGER.error("event=init-failed code=%s reason=%r", exc.code, exc.message)
            self._send(f"399-{exc.message}", "399 ERR CANT INIT MODULE")
            self.finished, self.exit_code = True, 1
            return
        self._send(f"299-{message}", "299 OK LOADED SUCCESSFULLY")

    def _block_line(self, line: str) -> None:
        assert self._block is not None
        if line != ".":
            self._block.lines.append(line.removeprefix("."))
            return
        block, self._block = self._block, None
        if block.command in _MESSAGE_KINDS:
            self._message_block(block.command, block.lines)
        else:
            self._params_block(block.command, block.lines)

    def _params_block(self, command: str, lines: Sequence[str]) -> None:
        error: str | None = None
        for line in lines:
            name, equals, value = line.partition("=")
            if not name or not equals or not value:
                error = error or BAD_SYNTAX
                continue
            try:
                self._apply(command, name, value)
            except BadSetting as exc:
                # The refused offer of server audio is expected at every start.
                level = logging.DEBUG if command == "AUDIO" else logging.WARNING
                _LOGGER.log(level, "event=bad-setting command=%s reason=%r", command, str(exc))
                error = error or BAD_PARAM
        if error is not None:
            self._send(error)
        elif command == "SET":
            self._send("203 OK SETTINGS RECEIVED")
        elif command == "AUDIO":
            self._send("203 OK AUDIO INITIALIZED")
        else:
            self._send("203 OK LOGLEVEL SET")

    def _apply(self, command: str, name: str, value: str) -> None:
        if command == "SET":
            self._settings = apply_setting(self._settings, name, value)
        elif command == "AUDIO":
            # utterd plays on its own sound device. Refusing speech-dispatcher's offer to play
            # the audio itself makes it send its ordinary audio settings, which need nothing.
            if name == "audio_output_method" and value == "server":
                raise BadSetting("utterd plays its audio itself")
        elif name == "log_level":
            try:
                level = int(value)
            except ValueError:
                raise BadSetting(f"log_level must be an integer, got {value!r}") from None
            self._set_log_level(logging_level(level))
        else:
            raise BadSetting(f"unknown LOGLEVEL setting {name!r}")

    def _debug(self, words: Sequence[str]) -> None:
        if not words or words[0] not in ("ON", "OFF") or (words[0] == "ON" and len(words) < 2):
            self._send(BAD_SYNTAX)
            return
        if self._set_debug_file is not None:
            try:
                self._set_debug_file(words[1] if words[0] == "ON" else None)
            except OSError as exc:
                _LOGGER.warning("event=debug-file-failed reason=%r", str(exc))
                self._send("303 CANT OPEN CUSTOM DEBUG FILE")
                return
        self._send(f"200 OK DEBUGGING {words[0]}")

    # -- messages ----------------------------------------------------------------------------

    def _message_block(self, kind: str, lines: Sequence[str]) -> None:
        data = "\n".join(lines)
        if not data:
            self._send(CANT_SPEAK)
            return
        if kind != "SPEAK" and len(lines) > 1:
            self._send("305 DATA MORE THAN ONE LINE")
            return
        if self._message is not None:
            # speech-dispatcher waits for a message's end before the next; if that order was
            # ever broken, the old job must not speak over the new one nor report into it.
            _LOGGER.warning("event=message-overlap job=%s", self._message.job)
            self._message = None
            self._cancel_quietly()
        if kind == "SOUND_ICON" and self._config.sound_icon_ms == 0:
            self._send("200 OK SPEAKING", "701 BEGIN", "702 END")
            return
        try:
            job = self._speak(self._request(kind, data))
        except DaemonRefused as exc:
            if exc.reply_code == "nothing-to-say":
                self._send("200 OK SPEAKING", "701 BEGIN", "702 END")
                return
            _LOGGER.error("event=speak-refused code=%s reason=%r", exc.reply_code, str(exc))
            self._send("200 OK SPEAKING", "703 STOP")
            return
        except DaemonUnreachable as exc:
            _LOGGER.error("event=speak-failed reason=%r", exc.message)
            self._send("200 OK SPEAKING", "703 STOP")
            return
        self._send("200 OK SPEAKING")
        self._message = _Message(job, self._clock())

    def _request(self, kind: str, data: str) -> dict[str, object]:
        """The `speak` request for one message, with the settings in force."""
        s = self._settings
        capitals = s.cap_let_recogn
        if kind == "SPEAK":
            document = ssml.ssml_document(data)
            if s.spelling_mode == "on":
                document = ssml.spelled(document, capitals == "spell")
            document = ssml.with_punctuation_names(document, s.punctuation_mode)
        elif kind == "CHAR":
            document = ssml.character_document(data, capitals)
        elif kind == "KEY":
            document = ssml.key_document(data, capitals)
        else:
            document = ssml.silence_document(self._config.sound_icon_ms)
        cached = self._config.cache == "all" or (self._config.cache == "keys" and kind != "SPEAK")
        request: dict[str, object] = {
            "text": document,
            "text_format": "ssml",
            "rate": utterd_rate(s.rate),
            "volume": utterd_volume(s.volume, self._config.max_volume),
            "priority": "text",
            "cache": "auto" if cached else "off",
        }
        voice = self._voice()
        if voice is not None:
            request["voice"] = voice
        return request

    def _speak(self, request: dict[str, object]) -> str:
        """Queue the request; a document utterd refuses as SSML is spoken as its text."""
        assert self._link is not None
        try:
            return self._link.speak(request)
        except DaemonRefused as exc:
            if exc.reply_code != "invalid-ssml":
                raise
            _LOGGER.info("event=ssml-refused reason=%r", exc.message)
        text = ssml.plain_text(str(request["text"]))
        return self._link.speak({**request, "text": text, "text_format": "text"})

    def _voice(self) -> str | None:
        if self._voices is None and self._refresh_voices() is None:
            raise DaemonUnreachable("utterd did not list its voices")
        return choose_voice(
            self._settings,
            self._voices or [],
            self._config.voices,
            self._config.default_voice or self._default_voice,
        )

    def _refresh_voices(self) -> list[VoiceEntry] | None:
        assert self._link is not None
        try:
            info = self._link.describe()
        except UtterdError as exc:
            _LOGGER.warning("event=voices-unknown reason=%r", exc.message)
            return None
        self._voices = [
            VoiceEntry(str(v["id"]), str(v.get("language") or "none"))
            for v in info.get("voices", [])
            if v.get("load_error") is None
        ]
        self._default_voice = info.get("default_voice")
        return self._voices

    def _list_voices(self, filters: Sequence[str]) -> None:
        voices = self._refresh_voices()
        language = filters[0] if filters else None
        variant = filters[1] if len(filters) > 1 else None
        lines = [
            f"200-{v.id}\t{v.language}\tnone"
            for v in voices or []
            if (language is None or language_fits(language, v.language))
            and (variant is None or variant.lower() == "none")
        ]
        if lines:
            self._send(*lines, "200 OK VOICE LIST SENT")
        else:
            self._send("304 CANT LIST VOICES")

    # -- control -----------------------------------------------------------------------------

    def _stop(self) -> None:
        message = self._message
        if message is None:
            return
        try:
            stopped = self._link.cancel() if self._link else []
        except UtterdError as exc:
            _LOGGER.warning("event=stop-failed reason=%r", exc.message)
            self._finish("703 STOP")
            return
        if message.job in stopped:
            self._finish("703 STOP")
        # else the job has just ended: its `end` event is on its way.

    def _pause(self) -> None:
        message = self._message
        if message is None or message.pause_requested:
            return
        message.pause_requested = True
        try:
            held = self._link.pause(message.job) if self._link else []
        except DaemonRefused as exc:
            _LOGGER.info("event=pause-refused reason=%r", exc.message)  # the job has ended
            return
        except DaemonUnreachable as exc:
            _LOGGER.warning("event=pause-failed reason=%r", exc.message)
            self._finish("703 STOP")
            return
        if message.job in held and not message.began:
            self._paused()  # still waiting for the device: no `paused` event will come

    def _paused(self) -> None:
        self._finish("704 PAUSE")
        # speech-dispatcher resumes by sending the rest again: the held job must not keep the
        # device, nor speak its rest later.
        self._cancel_quietly()

    def _cancel_quietly(self) -> None:
        try:
            if self._link is not None:
                self._link.cancel()
        except UtterdError as exc:
            _LOGGER.warning("event=cancel-failed reason=%r", exc.message)

    def _finish(self, report: str) -> None:
        """Report the message's end and forget it."""
        self._message = None
        self._send(report)

    def close(self) -> None:
        """speech-dispatcher is gone or quits: silence what this module made speak."""
        if self._message is not None:
            self._message = None
            self._cancel_quietly()

    # -- the daemon's side -------------------------------------------------------------------

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        """One event from the daemon's event socket."""
        message = self._message
        if message is None or data.get("job") != message.job:
            return
        message.checked_s = self._clock()
        if kind == "begin":
            self._begin(message)
        elif kind == "mark":
            self._begin(message)
            self._send(f"700-{data.get('name', '')}", "700 INDEX MARK")
        elif kind == "end":
            self._begin(message)
            self._finish("702 END")
        elif kind == "paused":
            self._paused()
        elif kind in ("stopped", "failed"):
            if kind == "failed":
                _LOGGER.warning(
                    "event=job-failed job=%s code=%s reason=%r",
                    message.job,
                    data.get("code"),
                    data.get("message"),
                )
            self._finish("704 PAUSE" if message.pause_requested else "703 STOP")

    def _begin(self, message: _Message) -> None:
        if not message.began:
            message.began = True
            self._send("701 BEGIN")

    def on_connection(self, connected: bool) -> None:
        """The daemon's connection came (True) or went (False)."""
        self._voices = None  # a restarted daemon may offer other voices
        if not connected and self._message is not None:
            _LOGGER.error("event=daemon-lost-while-speaking job=%s", self._message.job)
            self._finish("703 STOP")

    def tick(self) -> None:
        """Look up the speaking job if nothing was heard of it for JOB_CHECK_S."""
        message = self._message
        if message is None or self._link is None:
            return
        now = self._clock()
        if now - message.checked_s < JOB_CHECK_S:
            return
        message.checked_s = now
        try:
            status = self._link.job(message.job)
        except UtterdError as exc:
            _LOGGER.error("event=job-lost job=%s reason=%r", message.job, exc.message)
            self._finish("703 STOP")
            return
        state = status.get("state")
        if state == "done":
            _LOGGER.warning("event=missed-end job=%s", message.job)
            self._begin(message)
            self._finish("702 END")
        elif state in ("stopped", "failed"):
            _LOGGER.warning("event=missed-stop job=%s", message.job)
            self._finish("704 PAUSE" if message.pause_requested else "703 STOP")
        elif status.get("paused") and message.pause_requested:
            self._paused()
