"""`utterd status`'s summary of a `describe` reply, for the shapes a fresh, a busy and a
degraded daemon give (no daemon needed: the reply is a dict)."""

from __future__ import annotations

from typing import Any

from utterd.daemon.cli import status_lines

FRESH: dict[str, Any] = {
    "version": "0.1.0",
    "state": "started",
    "uptime_s": 3.9,
    "default_voice": "hibari-heart",
    "voices": [
        {
            "id": "hibari-heart",
            "loaded": True,
            "load_error": None,
            "runtime": {"backend": "onnxruntime", "precision": "int8"},
        },
        {"id": "en_US-joe-medium", "loaded": False, "load_error": None, "runtime": {}},
    ],
    "backend": {"name": "auto", "threads": 2, "cpu_model": "AMD EPYC", "cpu_features": ["AVX2"]},
    "device": {
        "available": True,
        "device_name": "default",
        "sample_rate_hz": 24000,
        "error": None,
        "underruns": 0,
    },
    "queue": {
        "length": 0,
        "max": 256,
        "current": None,
        "current_priority": None,
        "paused": {"all": False, "clients": [], "jobs": []},
    },
    "counters": {
        "requests": 8,
        "errors": 0,
        "synthesized": 0,
        "accepted": 0,
        "done": 0,
        "stopped": 0,
        "failed": 0,
    },
    "cache": {
        "enabled": True,
        "ram": {
            "entries": 0,
            "size_bytes": 0,
            "budget_bytes": 64 << 20,
            "hits": 0,
            "misses": 0,
            "hit_rate": None,
        },
        "disk": {
            "entries": 0,
            "size_bytes": 0,
            "budget_bytes": 512 << 20,
            "hits": 0,
            "misses": 0,
            "hit_rate": None,
        },
        "hits": 0,
        "misses": 0,
        "hit_rate": None,
        "disk_state": "ok",
        "disk_reason": None,
    },
    "config": {"file": None, "generation": 1, "restart_required": [], "last_reload": None},
    "faults": [],
    "watchdog": {"enabled": False, "stale_after_s": 2.0, "problem": None},
}


def _line(lines: list[str], heading: str) -> str:
    return next(line for line in lines if line.startswith(heading))


def test_fresh_daemon() -> None:
    lines = status_lines(FRESH)
    assert lines[0] == "utterd 0.1.0 started, up 3 s"
    assert _line(lines, "voices:") == (
        "voices: hibari-heart (default; loaded, onnxruntime int8), "
        "en_US-joe-medium (not loaded yet)"
    )
    assert _line(lines, "device:") == "device: default @ 24000 Hz, ok"
    assert _line(lines, "queue:") == "queue: 0 jobs (max 256)"
    assert _line(lines, "cache:") == (
        "cache: RAM 0 entries, 0.0 of 64 MiB; disk 0 entries, 0.0 of 512 MiB; no lookups yet"
    )
    assert _line(lines, "faults:") == "faults: none"


def test_busy_and_degraded_daemon() -> None:
    info = {
        **FRESH,
        "voices": [{"id": "x", "loaded": False, "load_error": "bad graph", "runtime": {}}],
        "device": {"available": False, "device_name": "USB", "error": "gone", "underruns": 2},
        "queue": {
            **FRESH["queue"],
            "length": 1,
            "current": "j1-1",
            "current_priority": "text",
            "paused": {"all": True, "clients": [], "jobs": ["j1-1"]},
        },
        "cache": {
            **FRESH["cache"],
            "hits": 3,
            "misses": 1,
            "hit_rate": 0.75,
            "disk_state": "read-only",
            "disk_reason": "EROFS",
        },
        "faults": [{"code": "device-unavailable", "subject": "device", "message": "gone"}],
        "watchdog": {"problem": "socket loop has not turned for 15.2 s"},
        "config": {"restart_required": ["audio.latency_ms"]},
    }
    lines = status_lines(info)
    assert _line(lines, "voices:") == "voices: x (FAILED: bad graph)"
    assert _line(lines, "device:") == "device: USB UNAVAILABLE: gone"
    assert _line(lines, "queue:") == (
        "queue: 1 job (max 256); speaking j1-1 (text); paused: everything, job j1-1"
    )
    assert "hit rate 75.0% of 4 lookups; disk read-only: EROFS" in _line(lines, "cache:")
    assert _line(lines, "faults:") == "faults: device-unavailable (device): gone"
    assert "watchdog: socket loop has not turned for 15.2 s" in lines
    assert "waiting for a restart: audio.latency_ms" in lines


def test_underruns_show_only_when_there_are_some() -> None:
    device = {**FRESH["device"], "underruns": 3}
    line = _line(status_lines({**FRESH, "device": device}), "device:")
    assert line.startswith("device: default @ 24000 Hz, ok; 3 underruns")
    assert "docs/operations.md" in line


def test_cache_disabled() -> None:
    assert _line(status_lines({**FRESH, "cache": {"enabled": False}}), "cache:") == (
        "cache: disabled"
    )
