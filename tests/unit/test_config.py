"""Tests for daemon/config.py: loading, validation messages, search order and overrides."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from utterd.daemon import config
from utterd.daemon.config import (
    ConfigError,
    apply_overrides,
    find_config_file,
    load_settings,
    settings_from_mapping,
)
from utterd.daemon.settings import Settings

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


def _error(data: Any, source: str = "config.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data, source)
    assert info.value.code == "invalid-config"
    return info.value


def _leaf_keys(cls: type[Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            keys |= _leaf_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.add(prefix + f.name)
    return keys


def _yaml_leaf_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        # A mapping is a section, unless it is the value of a mapping setting (voices.backends).
        if isinstance(value, dict) and prefix + key not in _leaf_keys(Settings):
            keys |= _yaml_leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


# --- the default config.yaml ----------------------------------------------------------------


def test_repo_config_equals_defaults() -> None:
    assert load_settings(REPO_CONFIG) == Settings()


def test_repo_config_lists_every_key() -> None:
    # Equality alone would pass with keys missing (they fall back to the defaults).
    data = yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))
    assert _yaml_leaf_keys(data) == _leaf_keys(Settings)


def test_repo_config_comments_every_key() -> None:
    lines = REPO_CONFIG.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\s*[a-z_]+:", line):
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#"), f"config.yaml:{number + 1}: {line.strip()} has no comment"


def test_range_table_names_real_keys() -> None:
    # A renamed setting must not leave its range check silently unused.
    assert set(config._CHECKS) <= _leaf_keys(Settings)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    for text in ("", "# only a comment\n", "---\n"):
        path = tmp_path / "config.yaml"
        path.write_text(text, encoding="utf-8")
        assert load_settings(path) == Settings()


def test_empty_section_gives_its_defaults() -> None:
    # `audio:` with every key commented out parses as null.
    assert settings_from_mapping({"audio": None}, "c.yaml") == Settings()


def test_values_are_read() -> None:
    settings = settings_from_mapping(
        {
            "server": {"tcp_port": 5555, "runtime_dir": "~/run"},
            "voices": {"folders": ["~/v", "/opt/v"], "preload": ["a", "b"], "threads": 4},
            "audio": {"device": "USB", "latency_ms": 10, "sample_rate_hz": 48000},
            "greeting": "Hello",
            "log_level": "DEBUG",
        },
        "c.yaml",
    )
    assert settings.server.tcp_port == 5555
    assert settings.server.runtime_dir == Path("~/run")  # expanded at use, not here
    assert settings.voices.folders == (Path("~/v"), Path("/opt/v"))
    assert settings.voices.preload == ("a", "b")
    assert settings.audio.device == "USB"
    assert settings.audio.latency_ms == 10.0
    assert isinstance(settings.audio.latency_ms, float)
    assert settings.greeting == "Hello"
    assert settings_from_mapping({"audio": {"device": 3}}, "c").audio.device == 3


# --- errors name file, key and value ---------------------------------------------------------


def test_message_format() -> None:
    error = _error({"audio": {"latency_ms": "fast"}})
    assert str(error) == "config.yaml: audio.latency_ms: expected a number > 0, got 'fast'"
    assert error.key == "audio.latency_ms"
    assert error.source == "config.yaml"


def test_unknown_key_top_level() -> None:
    error = _error({"log_levle": "INFO"})
    assert error.key == "log_levle"
    assert "did you mean 'log_level'" in str(error)


def test_unknown_key_nested() -> None:
    error = _error({"audio": {"latncy_ms": 5}})
    assert error.key == "audio.latncy_ms"
    assert str(error).startswith("config.yaml: audio.latncy_ms: unknown key")
    assert "latency_ms" in str(error)


def test_non_string_key() -> None:
    assert _error({"audio": {1: 2}}).key == "audio.1"


@pytest.mark.parametrize(
    ("data", "key", "shown"),
    [
        ({"server": {"tcp_port": "80"}}, "server.tcp_port", "'80'"),  # int: no strings
        ({"server": {"tcp_port": 80.0}}, "server.tcp_port", "80.0"),  # int: no floats
        ({"server": {"tcp_port": True}}, "server.tcp_port", "True"),  # int: no bools
        ({"audio": {"latency_ms": True}}, "audio.latency_ms", "True"),  # float: no bools
        ({"audio": {"latency_ms": [1]}}, "audio.latency_ms", "a list"),
        ({"server": {"allow_non_loopback": 1}}, "server.allow_non_loopback", "1"),  # strict
        ({"server": {"allow_non_loopback": "true"}}, "server.allow_non_loopback", "'true'"),
        ({"voices": {"default": 5}}, "voices.default", "5"),
        ({"voices": {"default": ""}}, "voices.default", "''"),
        ({"voices": {"default": None}}, "voices.default", "null"),  # not optional
        ({"server": {"runtime_dir": 5}}, "server.runtime_dir", "5"),
        ({"voices": {"folders": "/x"}}, "voices.folders", "'/x'"),  # a list, not a string
        ({"voices": {"folders": ["/x", 3]}}, "voices.folders[1]", "3"),
        ({"voices": {"preload": ["a", None]}}, "voices.preload[1]", "null"),
        ({"audio": {"device": 1.5}}, "audio.device", "1.5"),
        ({"audio": {"device": False}}, "audio.device", "False"),
        ({"audio": {"device": {"name": "x"}}}, "audio.device", "a mapping"),
        ({"greeting": 3}, "greeting", "3"),
        ({"server": 5}, "server", "5"),
        ({"limits": ["a"]}, "limits", "a list"),
    ],
)
def test_wrong_types(data: Any, key: str, shown: str) -> None:
    error = _error(data)
    assert error.key == key
    assert str(error).startswith(f"config.yaml: {key}: expected ")
    assert str(error).endswith(f"got {shown}")


@pytest.mark.parametrize(
    ("key", "bad", "good"),
    [
        ("server.tcp_port", [0, 65535, -1], [1, 65534]),
        ("audio.latency_ms", [0, -1.0, float("nan"), float("inf")], [0.5, 1]),
        ("audio.block_frames", [15, 8193], [16, 8192]),
        ("audio.retry_interval_s", [0, -2], [0.1]),
        ("audio.sample_rate_hz", [0, 7999], [8000, 48000]),
        ("audio.device", [-1], [0, "hw:0"]),
        ("limits.max_text_chars", [0], [1]),
        ("limits.max_queue", [0], [1]),
        ("server.max_message_bytes", [1023], [1024]),
        ("server.synth_workers", [0, 17], [1, 16]),
        ("voices.threads", [-1], [0, 8]),
        ("log_level", ["debug", "TRACE"], ["DEBUG", "ERROR"]),
        ("voices.backend", ["tensorrt", "ONNXRUNTIME"], ["onnxruntime", "openvino", "auto"]),
    ],
)
def test_ranges(key: str, bad: list[Any], good: list[Any]) -> None:
    def nest(value: Any) -> dict[str, Any]:
        *sections, leaf = key.split(".")
        data: dict[str, Any] = {leaf: value}
        for section in reversed(sections):
            data = {section: data}
        return data

    for value in bad:
        error = _error(nest(value))
        assert error.key == key
        assert repr(value) in str(error)
    for value in good:
        settings_from_mapping(nest(value), "c.yaml")


# --- voices.backends: a backend per voice ------------------------------------------------------


def test_backends_are_read_and_the_default_covers_the_rest() -> None:
    settings = settings_from_mapping(
        {"voices": {"backend": "openvino", "backends": {"en_US-joe-medium": "onnxruntime"}}},
        "c.yaml",
    )
    assert settings.voices.backends == {"en_US-joe-medium": "onnxruntime"}
    assert settings.voices.backend_for("en_US-joe-medium") == "onnxruntime"
    assert settings.voices.backend_for("hibari-heart") == "openvino"
    assert Settings().voices.backends == {}
    # `backends:` with every entry commented out parses as null: no overrides, like a section.
    assert settings_from_mapping({"voices": {"backends": None}}, "c").voices.backends == {}


@pytest.mark.parametrize(
    ("backends", "key", "message"),
    [
        # Not a mapping.
        (
            "onnxruntime",
            "voices.backends",
            "expected a mapping of names to one of auto, onnxruntime, openvino, got 'onnxruntime'",
        ),
        (
            ["en_US-joe-medium"],
            "voices.backends",
            "expected a mapping of names to one of auto, onnxruntime, openvino, got a list",
        ),
        # A voice id that is not a string.
        ({42: "openvino"}, "voices.backends.42", "expected a non-empty string as the name, got 42"),
        (
            {None: "openvino"},
            "voices.backends.None",
            "expected a non-empty string as the name, got null",
        ),
        (
            {" ": "openvino"},
            "voices.backends. ",
            "expected a non-empty string as the name, got ' '",
        ),
        # A value outside the set.
        (
            {"en_US-joe-medium": "cuda"},
            "voices.backends.en_US-joe-medium",
            "expected one of auto, onnxruntime, openvino, got 'cuda'",
        ),
        (
            {"hibari-heart": "ONNXRUNTIME"},
            "voices.backends.hibari-heart",
            "expected one of auto, onnxruntime, openvino, got 'ONNXRUNTIME'",
        ),
        (
            {"hibari-heart": None},
            "voices.backends.hibari-heart",
            "expected one of auto, onnxruntime, openvino, got null",
        ),
        (
            {"hibari-heart": ["openvino"]},
            "voices.backends.hibari-heart",
            "expected one of auto, onnxruntime, openvino, got a list",
        ),
    ],
)
def test_bad_backends_name_key_value_and_file(backends: Any, key: str, message: str) -> None:
    error = _error({"voices": {"backends": backends}}, "/etc/utterd/config.yaml")
    assert error.key == key
    assert error.source == "/etc/utterd/config.yaml"
    assert str(error) == f"/etc/utterd/config.yaml: {key}: {message}"


def test_bad_backend_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("voices:\n  backends:\n    en_US-joe-medium: tensorrt\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"{path}: voices.backends.en_US-joe-medium: "
        "expected one of auto, onnxruntime, openvino, got 'tensorrt'"
    )


def test_a_voice_listed_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "voices:\n  backends:\n    hibari-heart: auto\n    hibari-heart: openvino\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"line 4.*duplicate key 'hibari-heart'"):
        load_settings(path)


def test_backends_override_is_one_value() -> None:
    settings = apply_overrides(Settings(), **{"voices.backends": {"hibari-heart": "openvino"}})
    assert settings.voices.backends == {"hibari-heart": "openvino"}
    with pytest.raises(ConfigError) as info:
        apply_overrides(Settings(), **{"voices.backends": {"hibari-heart": "gpu"}})
    assert info.value.source == "command line"
    assert info.value.key == "voices.backends.hibari-heart"
    # Voice ids are not keys of a section: a single entry cannot be overridden on its own.
    with pytest.raises(ConfigError) as info:
        apply_overrides(Settings(), **{"voices.backends.hibari-heart": "openvino"})
    assert info.value.key == "voices.backends.hibari-heart"
    assert "voices.backends is one value; override it whole" in str(info.value)


def test_non_loopback_needs_permission() -> None:
    error = _error({"server": {"tcp_host": "0.0.0.0", "tcp_port": 7000}})
    assert error.key == "server.tcp_host"
    assert "'0.0.0.0'" in str(error)
    assert "allow_non_loopback" in str(error)
    # Permission alone is not enough: a non-loopback address needs CurveZMQ too.
    permitted = {"server": {"tcp_host": "0.0.0.0", "tcp_port": 7000, "allow_non_loopback": True}}
    error = _error(permitted)
    assert error.key == "server.curve"
    assert "'0.0.0.0'" in str(error) and "curve: true" in str(error)
    allowed = {"server": {**permitted["server"], "curve": True}}
    assert settings_from_mapping(allowed, "c").server.tcp_host == "0.0.0.0"
    for host in ("127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"):
        settings_from_mapping({"server": {"tcp_host": host}}, "c")
    for host in ("192.168.1.2", "::", "example.org"):
        assert _error({"server": {"tcp_host": host}}).key == "server.tcp_host"


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_settings(path)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("audio:\n  latency_ms: 20\n  device: [unclosed\nlimits: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: line ")
    assert "invalid YAML" in str(info.value)


def test_yaml_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("audio:\n  latency_ms: 20\n  latency_ms: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 3.*duplicate key 'latency_ms'"):
        load_settings(path)


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=re.escape(str(missing)) + ": cannot read"):
        load_settings(missing)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"log_level: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8 at byte 11"):
        load_settings(binary)


def test_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("server:\n  synth_workers: 99\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: server.synth_workers: "):
        load_settings(path)


# --- where the file is found ------------------------------------------------------------------


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "xdg" / "utterd" / "config.yaml"
    system = tmp_path / "etc" / "config.yaml"
    named = tmp_path / "named.yaml"
    monkeypatch.setattr(config, "config_search_paths", lambda environ=None: [user, system])
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}

    assert find_config_file(env) is None
    system.parent.mkdir(parents=True)
    system.write_text("", encoding="utf-8")
    assert find_config_file(env) == system
    user.parent.mkdir(parents=True)
    user.write_text("", encoding="utf-8")
    assert find_config_file(env) == user
    # $UTTERD_CONFIG wins, and is returned even when missing so that loading fails loudly.
    assert find_config_file({**env, "UTTERD_CONFIG": str(named)}) == named


def test_search_paths_honour_xdg() -> None:
    paths = config.config_search_paths({"XDG_CONFIG_HOME": "/x"})
    assert paths == [Path("/x/utterd/config.yaml"), Path("/etc/utterd/config.yaml")]
    relative = config.config_search_paths({"XDG_CONFIG_HOME": "rel"})
    assert relative[0] == Path("~/.config/utterd/config.yaml").expanduser()


def test_load_without_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "config_search_paths", lambda environ=None: [])
    monkeypatch.delenv("UTTERD_CONFIG", raising=False)
    assert load_settings() == Settings()
    path = tmp_path / "c.yaml"
    path.write_text("log_level: DEBUG\n", encoding="utf-8")
    monkeypatch.setenv("UTTERD_CONFIG", str(path))
    assert load_settings().log_level == "DEBUG"
    monkeypatch.setenv("UTTERD_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_settings()


# --- command-line overrides ---------------------------------------------------------------------


def test_overrides() -> None:
    base = settings_from_mapping({"audio": {"latency_ms": 5}}, "c")
    settings = apply_overrides(
        base,
        **{"voices.default": "en_US-joe-medium", "server.tcp_port": 5555, "log_level": "DEBUG"},
    )
    assert settings.voices.default == "en_US-joe-medium"
    assert settings.server.tcp_port == 5555
    assert settings.log_level == "DEBUG"
    assert settings.audio.latency_ms == 5.0  # untouched keys keep the file's values
    assert apply_overrides(base) == base


def test_override_none_means_flag_not_given() -> None:
    base = settings_from_mapping({"server": {"tcp_port": 7000}}, "c")
    assert apply_overrides(base, **{"server.tcp_port": None}).server.tcp_port == 7000


def test_override_tuple_folders() -> None:
    settings = apply_overrides(Settings(), **{"voices.folders": ["/a", Path("/b")]})
    assert settings.voices.folders == (Path("/a"), Path("/b"))


@pytest.mark.parametrize(
    ("overrides", "key", "text"),
    [
        ({"voices.defualt": "x"}, "voices.defualt", "did you mean 'default'"),
        ({"voice.default": "x"}, "voice.default", "did you mean 'voices'"),
        ({"log_level.x": "x"}, "log_level.x", "unknown key"),
        ({"audio": "x"}, "audio", "is a section"),
        ({"server.tcp_port": "fast"}, "server.tcp_port", "got 'fast'"),
        ({"server.tcp_host": "10.0.0.1"}, "server.tcp_host", "allow_non_loopback"),
    ],
)
def test_bad_overrides(overrides: dict[str, Any], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(Settings(), **overrides)
    assert info.value.source == "command line"
    assert info.value.key == key
    assert text in str(info.value)


def test_override_allow_non_loopback_together() -> None:
    settings = apply_overrides(
        Settings(),
        **{
            "server.tcp_host": "0.0.0.0",
            "server.allow_non_loopback": True,
            "server.curve": True,
        },
    )
    assert settings.server.allow_non_loopback
