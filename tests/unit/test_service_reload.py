"""Which keys a SIGHUP reload applies at once, and that the rest keep their running values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from utterd.daemon.config import settings_from_mapping
from utterd.daemon.service import LIVE_KEYS, flatten, merge_live
from utterd.daemon.settings import Settings


def test_live_keys_are_real_keys() -> None:
    assert LIVE_KEYS <= set(flatten(Settings()))


def test_flatten_names_leaves_by_dotted_key() -> None:
    flat = flatten(Settings())
    assert flat["limits.max_text_chars"] == 20_000
    assert flat["voices.folders"] == Settings().voices.folders
    assert "limits" not in flat and "log_level" in flat


def test_unchanged_config_changes_nothing() -> None:
    merged, changed, restart = merge_live(Settings(), Settings())
    assert merged == Settings() and changed == [] and restart == []


def test_live_keys_apply_and_the_others_wait_for_a_restart() -> None:
    running = settings_from_mapping({"server": {"runtime_dir": "/run/a"}}, "config.yaml")
    new = settings_from_mapping(
        {
            "server": {"runtime_dir": "/run/b", "on_shutdown": "finish"},
            "limits": {"max_text_chars": 50, "max_queue": 3},
            "cache": {"prewarm": ["Battery low."]},
            "audio": {"latency_ms": 40.0},
            "log_level": "DEBUG",
        },
        "config.yaml",
    )
    merged, changed, restart = merge_live(running, new)
    assert changed == [
        "cache.prewarm",
        "limits.max_text_chars",
        "log_level",
        "server.on_shutdown",
    ]
    assert restart == ["audio.latency_ms", "limits.max_queue", "server.runtime_dir"]
    assert merged.limits.max_text_chars == 50 and merged.log_level == "DEBUG"
    assert merged.cache.prewarm == ("Battery low.",)
    assert merged.server.on_shutdown == "finish"
    # What needs a restart keeps the running value, so `describe` shows what is in force.
    assert merged.server.runtime_dir == Path("/run/a")
    assert merged.limits.max_queue == running.limits.max_queue
    assert merged.audio == running.audio
    assert (
        dataclasses.replace(
            merged,
            limits=running.limits,
            log_level="INFO",
            cache=running.cache,
            server=running.server,
        )
        == running
    )


def test_a_changed_voice_backend_waits_for_a_restart() -> None:
    # Voices are loaded on their backend once; a reload does not load them again.
    running = settings_from_mapping(
        {"voices": {"backends": {"hibari-heart": "onnxruntime"}}}, "config.yaml"
    )
    new = settings_from_mapping(
        {"voices": {"backends": {"hibari-heart": "openvino", "en_US-joe-medium": "auto"}}},
        "config.yaml",
    )
    assert flatten(new)["voices.backends"] == {
        "hibari-heart": "openvino",
        "en_US-joe-medium": "auto",
    }
    merged, changed, restart = merge_live(running, new)
    assert changed == [] and restart == ["voices.backends"]
    assert merged == running
    assert merged.voices.backend_for("hibari-heart") == "onnxruntime"
