"""A SIGHUP reload reports the config file it actually read (issue 16, finding 6): a daemon
started with no file, then given one at $XDG_CONFIG_HOME/utterd/config.yaml, reads it at the
next reload and must say so in `config-reloaded` and in `describe`'s `config.file`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from utterd.daemon.config import find_config_file, load_settings
from utterd.daemon.protocol.events import ConfigReloadedEvent, Event
from utterd.daemon.service import Daemon
from utterd.daemon.settings import Settings


@dataclass
class _Source:
    settings: Any = None


@dataclass
class _Access:
    allow_list: Any = None


@dataclass
class _FakeServer:
    """What `Daemon._reload` uses of the server."""

    settings: Settings = field(default_factory=Settings)
    source: _Source = field(default_factory=_Source)
    access: _Access = field(default_factory=_Access)

    def start_warming(self, specs: Any) -> None:
        pass


@dataclass
class _Publisher:
    events: list[Event] = field(default_factory=list)

    def publish(self, body: Event) -> None:
        self.events.append(body)


def _reload(daemon: Daemon) -> Event:
    """Reload with a stand-in server; the event the reload published."""
    publisher = _Publisher()
    daemon._server = _FakeServer()  # type: ignore[assignment]
    daemon._publisher = publisher  # type: ignore[assignment]
    daemon._reload()
    assert len(publisher.events) == 1, publisher.events
    return publisher.events[0]


def test_a_reload_names_the_file_it_read_when_started_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("UTTERD_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    started_with = find_config_file()
    if started_with is not None:
        pytest.skip(f"this machine has a config file at {started_with}")
    # As `utterd serve` does: the loader searches again at each reload.
    daemon = Daemon(
        load_settings(started_with),
        "test",
        reload_settings=lambda: load_settings(started_with),
        config_file=started_with,
    )
    written = tmp_path / "utterd" / "config.yaml"
    written.parent.mkdir()
    written.write_text("limits:\n  max_text_chars: 50\n", encoding="utf-8")
    reloaded = _reload(daemon)
    assert isinstance(reloaded, ConfigReloadedEvent), reloaded
    assert reloaded.changed == ["limits.max_text_chars"]
    assert reloaded.file == str(written)
    assert daemon._config.as_dict()["file"] == str(written)  # describe's config.file


def test_a_reload_keeps_naming_the_file_given_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = tmp_path / "named.yaml"
    named.write_text("log_level: INFO\n", encoding="utf-8")
    other = tmp_path / "xdg" / "utterd" / "config.yaml"
    other.parent.mkdir(parents=True)
    other.write_text("log_level: DEBUG\n", encoding="utf-8")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    daemon = Daemon(
        load_settings(named),
        "test",
        reload_settings=lambda: load_settings(named),
        config_file=named,
    )
    reloaded = _reload(daemon)
    assert isinstance(reloaded, ConfigReloadedEvent) and reloaded.file == str(named)
