"""Replies and events as dataclasses encode byte-for-byte as the dict literals the server and the
service built before them (issue 16): one example of each, compared frame by frame."""

from __future__ import annotations

import dataclasses

import pytest
from utterd.daemon import protocol
from utterd.daemon.protocol import events, replies
from utterd.daemon.protocol.events import Event
from utterd.daemon.protocol.replies import Reply

FMT = {"sample_rate_hz": 24000, "sample_width": 2, "channels": 1, "voice": "hibari-heart"}
DURATION = {"duration_s": 1.2345, "samples": 29628, "job": "j7"}

REPLY_CASES: list[tuple[Reply, str, dict[str, object]]] = [
    (replies.Pong("0.1.0"), "pong", {"version": "0.1.0"}),
    (
        replies.Info(
            name="utterd",
            version="0.1.0",
            state="started",
            uptime_s=3.5,
            default_voice="hibari-heart",
            voices=[{"id": "hibari-heart", "loaded": True}],
            backend={"name": "auto", "threads": 2},
            device={"available": True, "error": None},
            queue={"length": 0, "max": 256, "current": None},
            counters={"requests": 1, "errors": 0},
            cache={"enabled": True, "hit_rate": None},
            sections={"config": {"file": None, "generation": 1}, "faults": []},
        ),
        "info",
        {
            "name": "utterd",
            "version": "0.1.0",
            "state": "started",
            "uptime_s": 3.5,
            "default_voice": "hibari-heart",
            "voices": [{"id": "hibari-heart", "loaded": True}],
            "backend": {"name": "auto", "threads": 2},
            "device": {"available": True, "error": None},
            "queue": {"length": 0, "max": 256, "current": None},
            "counters": {"requests": 1, "errors": 0},
            "cache": {"enabled": True, "hit_rate": None},
            "config": {"file": None, "generation": 1},
            "faults": [],
        },
    ),
    (
        replies.Queued("j1", "hibari-heart", "text"),
        "queued",
        {"job": "j1", "voice": "hibari-heart", "priority": "text"},
    ),
    (replies.ChunkQueued("j1"), "chunk-queued", {"job": "j1"}),
    (replies.TextClosed("j1"), "text-closed", {"job": "j1"}),
    (replies.Stopped(["j1", "j2"]), "stopped", {"jobs": ["j1", "j2"]}),
    (replies.Cancelled([]), "cancelled", {"jobs": []}),
    (replies.Paused(["j1"]), "paused", {"jobs": ["j1"]}),
    (replies.Resumed(["j1"]), "resumed", {"jobs": ["j1"]}),
    (
        replies.JobStatus("j1", "done", None, 123.4, "important", False),
        "job",
        {
            "job": "j1",
            "state": "done",
            "error": None,
            "first_audio_ms": 123.4,
            "priority": "important",
            "paused": False,
        },
    ),
    (replies.CacheCleared(3), "cache-cleared", {"removed": 3}),
    (replies.CacheWarming(2), "cache-warming", {"entries": 2}),
    # `format` is new in audio-start (issue 16, finding 7); the rest is as before.
    (
        replies.AudioStart(24000, 2, 1, "hibari-heart", "j7", format="pcm"),
        "audio-start",
        {**FMT, "job": "j7", "format": "pcm"},
    ),
    (replies.AudioChunk(0), "audio-chunk", {"sentence": 0}),
    (replies.AudioStop(1.2345, 29628, "j7"), "audio-stop", DURATION),
    (
        replies.Audio(24000, 2, 1, "hibari-heart", 1.2345, 29628, "j7", format="wav"),
        "audio",
        {**FMT, **DURATION, "format": "wav"},
    ),
    (
        replies.AudioStop(1.2345, 29628, "j7", [{"name": "m", "offset_samples": 5}]),
        "audio-stop",
        {**DURATION, "marks": [{"name": "m", "offset_samples": 5}]},
    ),
    (replies.Error("busy", "full"), "error", {"code": "busy", "message": "full"}),
    (
        replies.Error("rate-limited", "slow down", retry_after_s=0.25),
        "error",
        {"code": "rate-limited", "message": "slow down", "retry_after_s": 0.25},
    ),
    (
        replies.Error("cancelled", "cut", job="j7"),
        "error",
        {"code": "cancelled", "message": "cut", "job": "j7"},
    ),
]

EVENT_CASES: list[tuple[Event, str, dict[str, object]]] = [
    (
        events.BeginEvent("j1", "00ab", "hibari-heart", "text"),
        "begin",
        {"job": "j1", "client": "00ab", "voice": "hibari-heart", "priority": "text"},
    ),
    (
        events.SentenceEvent("j1", "00ab", 2, 48000, 24000),
        "sentence",
        {
            "job": "j1",
            "client": "00ab",
            "sentence": 2,
            "offset_samples": 48000,
            "sample_rate_hz": 24000,
        },
    ),
    (
        events.MarkEvent("j1", "00ab", "menu", 12000, 22050),
        "mark",
        {
            "job": "j1",
            "client": "00ab",
            "name": "menu",
            "offset_samples": 12000,
            "sample_rate_hz": 22050,
        },
    ),
    (events.PausedEvent("j1", "00ab"), "paused", {"job": "j1", "client": "00ab"}),
    (events.ResumedEvent("j1", ""), "resumed", {"job": "j1", "client": ""}),
    (
        events.EndEvent("j1", "00ab", 88.0),
        "end",
        {"job": "j1", "client": "00ab", "first_audio_ms": 88.0},
    ),
    (
        events.StoppedEvent("j1", "00ab", None, "stopped by a stop request"),
        "stopped",
        {
            "job": "j1",
            "client": "00ab",
            "first_audio_ms": None,
            "reason": "stopped by a stop request",
        },
    ),
    (
        events.FailedEvent("j1", "00ab", None, "device-unavailable", "gone"),
        "failed",
        {
            "job": "j1",
            "client": "00ab",
            "first_audio_ms": None,
            "code": "device-unavailable",
            "message": "gone",
        },
    ),
    (events.DeviceEvent(False, "no card"), "device", {"available": False, "error": "no card"}),
    (
        events.ConfigReloadedEvent("/etc/utterd/config.yaml", 2, ["log_level"], [], None),
        "config-reloaded",
        {
            "file": "/etc/utterd/config.yaml",
            "generation": 2,
            "changed": ["log_level"],
            "restart_required": [],
            "curve_clients": None,
        },
    ),
    (
        events.ConfigRejectedEvent("c.yaml", None, "c.yaml: line 1: invalid YAML", 1),
        "config-rejected",
        {"file": "c.yaml", "key": None, "reason": "c.yaml: line 1: invalid YAML", "generation": 1},
    ),
    (
        events.FaultEvent("cache-full", "cache", "full", "2025-05-01T08:00:00.000+00:00", 1.5, 1),
        "fault",
        {
            "code": "cache-full",
            "subject": "cache",
            "message": "full",
            "since": "2025-05-01T08:00:00.000+00:00",
            "active_s": 1.5,
            "reports": 1,
        },
    ),
    (
        events.FaultClearedEvent(
            "cache-full", "cache", "full", "2025-05-01T08:00:00.000+00:00", 1.5, 1, "2025-05-01"
        ),
        "fault-cleared",
        {
            "code": "cache-full",
            "subject": "cache",
            "message": "full",
            "since": "2025-05-01T08:00:00.000+00:00",
            "active_s": 1.5,
            "reports": 1,
            "cleared": "2025-05-01",
        },
    ),
]


@pytest.mark.parametrize(("body", "kind", "data"), REPLY_CASES, ids=lambda c: str(c)[:20])
@pytest.mark.parametrize("request_id", [None, "r1", 7])
def test_a_reply_encodes_as_its_dict_did(
    body: Reply, kind: str, data: dict[str, object], request_id: protocol.RequestId
) -> None:
    assert body.TYPE == kind
    assert protocol.encode_reply(request_id, body) == protocol.reply(request_id, kind, data)
    payload = b"\x00\x01"
    assert protocol.encode_reply(request_id, body, payload) == protocol.reply(
        request_id, kind, data, payload
    )


def test_an_error_encodes_as_error_reply_did() -> None:
    body = replies.Error("rate-limited", "slow down", retry_after_s=0.5)
    assert protocol.encode_reply("x", body) == protocol.error_reply(
        "x", "rate-limited", "slow down", {"retry_after_s": 0.5}
    )


@pytest.mark.parametrize(("body", "kind", "data"), EVENT_CASES, ids=lambda c: str(c)[:20])
def test_an_event_encodes_as_its_dict_did(body: Event, kind: str, data: dict[str, object]) -> None:
    assert body.TYPE == kind
    assert protocol.encode_event(body) == protocol.event(kind, data)


def _subclasses(base: type) -> set[type]:
    return {cls for cls in base.__subclasses__() if dataclasses.is_dataclass(cls)}


def test_every_reply_and_event_has_a_case() -> None:
    assert {type(body) for body, _, _ in REPLY_CASES} == _subclasses(Reply)
    assert {type(body) for body, _, _ in EVENT_CASES} == _subclasses(Event)


def test_replies_and_events_are_frozen() -> None:
    for body, _, _ in REPLY_CASES + EVENT_CASES:
        field = dataclasses.fields(body)[0]  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(body, field.name, None)
