"""`utterd wyoming`: the Wyoming server as a process of its own, relaying to a running daemon.

The daemon's own Wyoming server (`wyoming.uri`, daemon/bridges/wyoming.py) is the one to use
where it can be: no extra hop, streamed SSML said sentence by sentence. The relay is for where
the Wyoming port must not be the daemon's: Home Assistant on one machine and utterd on another.
Wyoming has no authentication, but the relay can run beside Home Assistant, listen on loopback
there, and reach the daemon over ZeroMQ TCP with CurveZMQ (`--endpoint tcp://...`,
`--server-key`, `--client-key`), so what crosses the network is encrypted and only allowed keys
are answered. It serves the same events with the same connection handling (`WyomingBridge`);
this module is only its `Synthesizer`:

- voices, their load state and the default voice come from the daemon's `describe`, read at
  start and again every REFRESH_S (a daemon that stops answering keeps the last list; requests
  then fail with the daemon's absence);
- each synthesis is one ZeroMQ `synthesize` with `stream: true` on a socket of its own: its
  `audio-chunk` payloads are the Wyoming chunks, its `error` reply becomes the Wyoming `error`
  with the daemon's code. A Wyoming client that leaves closes that socket, and the daemon
  cancels a synthesis whose client is gone at its next reply;
- SSML is sent to the daemon whole (`text_format: ssml`): a streamed SSML text is said once
  `synthesize-stop` closes it, since the ZeroMQ `synthesize` takes documents, not sentences.

The text is checked by the daemon, not here (its limits are the ones that count); the relay's
own `limits.max_text_chars` (its config file) bounds what a client may send it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from utterd.daemon.access import CurveClientKeys
from utterd.daemon.bridges.wyoming import Speech
from utterd.daemon.client import Client, NotRunning
from utterd.daemon.settings import LimitsSettings
from utterd.models.errors import UtterdError
from utterd.models.voice import CancelToken, SynthesisParams, VoiceInfo

_LOGGER = logging.getLogger(__name__)

REFRESH_S: Final = 10.0
"""How often the daemon's voice list is read again."""

REPLY_TIMEOUT_S: Final = 30.0
"""Longest wait for the daemon's next reply to a synthesis before it is given up."""

_POLL_S: Final = 0.05
"""How often a synthesis waiting for the daemon looks at its cancel token."""


class DaemonUnavailable(UtterdError):
    """The daemon did not answer the relay."""

    code = "daemon-unavailable"


def relayed_error(code: str, message: str) -> UtterdError:
    """The daemon's error reply as an UtterdError with the daemon's code."""
    kind = type("RelayedError", (UtterdError,), {"code": code or UtterdError.code})
    error: UtterdError = kind(message)
    return error


def voice_info(entry: Mapping[str, Any]) -> VoiceInfo:
    """A voice of the daemon's `describe` reply, as the bridge lists and chooses voices."""
    return VoiceInfo(
        voice_id=str(entry["id"]),
        family=str(entry.get("family", "")),
        language=str(entry.get("language", "")),
        sample_rate_hz=int(entry["sample_rate_hz"]),
        speakers=tuple(str(s) for s in entry.get("speakers") or ()),
        source=str(entry.get("source", "")),
    )


class RelaySynthesizer:
    """The bridge's `Synthesizer` for a daemon reached over ZeroMQ."""

    streams_ssml = False

    def __init__(
        self,
        endpoint: str,
        curve: CurveClientKeys | None,
        limits: LimitsSettings,
        workers: int,
    ) -> None:
        self.endpoint = endpoint
        self._curve = curve
        self._limits = limits
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="utterd-relay")
        self._voices: tuple[VoiceInfo, ...] = ()
        self._installed: dict[str, bool] = {}
        self._default = ""
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def start(self) -> None:
        """Read the daemon's voices (NotRunning when it does not answer), then keep them fresh."""
        self._refresh()
        self._refresher = threading.Thread(
            target=self._keep_fresh, name="utterd-relay-describe", daemon=True
        )
        self._refresher.start()

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._refresher is not None:
            self._refresher.join(REFRESH_S)

    def _client(self, timeout_s: float) -> Client:
        return Client(self.endpoint, timeout_s=timeout_s, curve=self._curve)

    def _refresh(self) -> None:
        with self._client(5.0) as client:
            client.check_socket()
            header, _ = client.request("describe")
        info = header["data"]
        voices = info.get("voices") or []
        self._voices = tuple(voice_info(v) for v in voices)
        self._installed = {str(v["id"]): v.get("load_error") is None for v in voices}
        self._default = str(info.get("default_voice", ""))

    def _keep_fresh(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self._refresh()
            except NotRunning as exc:
                _LOGGER.warning("event=relay-describe-failed error=%r", str(exc))

    # -- Synthesizer --------------------------------------------------------------------------
    def voices(self) -> Sequence[VoiceInfo]:
        return self._voices

    def installed(self, voice_id: str) -> bool:
        return self._installed.get(voice_id, True)

    def default_voice(self) -> str:
        return self._default

    def by_language(self) -> Mapping[str, str]:
        return {}  # the daemon's config is not known here: describe's voices by language

    def limits(self) -> tuple[int, float]:
        return self._limits.max_text_chars, self._limits.stream_idle_s

    def prepare(self, text: str, info: VoiceInfo, is_ssml: bool) -> Speech:
        return Speech(text, is_ssml)  # the daemon checks it

    def pcm(
        self, speech: Speech, info: VoiceInfo, params: SynthesisParams, cancel: CancelToken
    ) -> Iterator[bytes]:
        request: dict[str, Any] = {
            "text": speech.text,
            "voice": info.voice_id,
            "stream": True,
            "format": "pcm",
        }
        if speech.ssml:
            request["text_format"] = "ssml"
        if params.speaker is not None:
            request["speaker"] = params.speaker
        with self._client(REPLY_TIMEOUT_S) as client:
            request_id = client.send("synthesize", request)
            waited_s = 0.0
            while True:
                cancel.raise_if_cancelled()  # leaving closes the socket: the daemon cancels
                try:
                    header, payload = client.receive(_POLL_S)
                except NotRunning:
                    waited_s += _POLL_S
                    if waited_s > REPLY_TIMEOUT_S:
                        raise DaemonUnavailable(
                            f"utterd at {self.endpoint} sent nothing for {REPLY_TIMEOUT_S:g} s"
                        ) from None
                    continue
                waited_s = 0.0
                if header.get("id") != request_id:
                    continue
                kind = header.get("type")
                if kind == "error":
                    data = header.get("data") or {}
                    raise relayed_error(str(data.get("code", "")), str(data.get("message", "")))
                if kind == "audio-chunk" and payload:
                    yield payload
                elif kind == "audio-stop":
                    return

    def submit(self, owner: str, work: Callable[[], None]) -> None:
        self._pool.submit(work)
