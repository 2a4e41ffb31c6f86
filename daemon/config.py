"""Load and validate config.yaml into the frozen `Settings` dataclasses.

Validation happens here, once: the loader walks the dataclass fields and their type hints, so a
new setting in `settings.py` is validated without touching this file (a range check, if it needs
one, is a line in `_CHECKS`). Every error is a `ConfigError` that names the file, the dotted key
and the offending value.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args, get_origin

import yaml
from utterd.daemon.access import is_z85_key
from utterd.daemon.profile import PROFILES, apply_profile
from utterd.daemon.settings import (
    DATE_ORDERS,
    DETERMINISTIC_POLICIES,
    EMOJI_POLICIES,
    PREWARM_SESSIONS,
    SHUTDOWN_MODES,
    Settings,
    WyomingSettings,
)
from utterd.daemon.validation import NONE_TYPE, field_specs, is_union, matches_scalar
from utterd.models.errors import UtterdError

__all__ = [
    "BACKENDS",
    "CONFIG_ENV",
    "LOG_LEVELS",
    "ConfigError",
    "apply_overrides",
    "config_search_paths",
    "find_config_file",
    "load_settings",
    "settings_from_mapping",
]

BACKENDS: Final[tuple[str, ...]] = ("auto", "onnxruntime", "openvino")
"""Inference backends `voices.backend` and the values of `voices.backends` accept."""

LOG_LEVELS: Final[tuple[str, ...]] = ("DEBUG", "INFO", "WARNING", "ERROR")
"""Values `log_level` accepts."""

CONFIG_ENV: Final = "UTTERD_CONFIG"
"""Environment variable naming the config file; it wins over the search paths."""

OVERRIDE_SOURCE: Final = "command line"
"""What `ConfigError` names as the file for values given by `apply_overrides`."""


class ConfigError(UtterdError):
    """The configuration is unreadable or invalid; the message names file, key and value."""

    code = "invalid-config"

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        """The file (or `command line`) the bad value came from."""
        self.key = key
        """Dotted path of the bad key (`audio.latency_ms`, `voices.folders[1]`), if any."""


# ---------------------------------------------------------------------------------------------
# Range checks: keyed by dotted path, applied after the type check; for a mapping (voice id ->
# value), to each of its values.


@dataclass(frozen=True)
class _Range:
    """A numeric bound; `low_open` makes the lower bound exclusive (`> 0` rather than `>= 0`)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    note: str = ""

    def accepts(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return True  # Not a number: the type check has already judged it.
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"in {_num(self.low)}..{_num(self.high)}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
        else:
            text = f"<= {_num(self.high if self.high is not None else 0)}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class _OneOf:
    """A string from a fixed set."""

    choices: tuple[str, ...]

    def accepts(self, value: object) -> bool:
        return not isinstance(value, str) or value in self.choices

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)


_Check = _Range | _OneOf

_CHECKS: Final[Mapping[str, _Check]] = types.MappingProxyType(
    {
        # Events are served on tcp_port + 1, so the last usable request port is 65534.
        "server.tcp_port": _Range(1, 65534, note="events use tcp_port + 1"),
        "server.max_message_bytes": _Range(1024),
        "server.synth_workers": _Range(1, 16),
        "server.on_shutdown": _OneOf(SHUTDOWN_MODES),
        "server.shutdown_finish_s": _Range(0, 600, low_open=True),
        "voices.backend": _OneOf(BACKENDS),
        "voices.backends": _OneOf(BACKENDS),
        "voices.threads": _Range(0),
        "voices.idle_unload_s": _Range(0, low_open=True),
        "audio.device": _Range(0),
        "audio.sample_rate_hz": _Range(8000, 384_000),
        "audio.latency_ms": _Range(0, low_open=True),
        "audio.block_frames": _Range(16, 8192),
        "audio.retry_interval_s": _Range(0, low_open=True),
        "limits.max_text_chars": _Range(1),
        "limits.max_queue": _Range(1),
        "limits.max_queue_per_client": _Range(1),
        "limits.requests_per_s": _Range(0, low_open=True),
        "limits.request_burst": _Range(1),
        "limits.stream_idle_s": _Range(0, low_open=True),
        "cache.ram_budget_bytes": _Range(0),
        "cache.disk_budget_bytes": _Range(0),
        "cache.deterministic": _OneOf(DETERMINISTIC_POLICIES),
        "cache.max_text_chars": _Range(1),
        "cache.write_retry_s": _Range(0, low_open=True),
        "cache.prewarm_sessions": _OneOf(PREWARM_SESSIONS),
        "text.date_order": _OneOf(DATE_ORDERS),
        "text.emoji": _OneOf(EMOJI_POLICIES),
        "wyoming.max_clients": _Range(1, 1024),
        "memory.mmap_threshold_bytes": _Range(4096, 32 * 1024 * 1024, note="glibc's limits"),
        "log_level": _OneOf(LOG_LEVELS),
        "profile": _OneOf(PROFILES),
    }
)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ---------------------------------------------------------------------------------------------
# Generic conversion from YAML values to the types of the settings dataclasses.


class _Invalid(Exception):
    """Raised inside the walk; turned into a ConfigError once the source is known."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def _show(value: object) -> str:
    """The value as the user would recognise it, cut short so a pasted blob stays readable."""
    text = repr(str(value)) if isinstance(value, Path) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return _show(value)


def _describe(hint: object, check: _Check | None) -> str:
    """What a key expects, in words: `a number > 0`, `an integer in 1..65534 or null`."""
    if is_union(hint):
        args = get_args(hint)
        parts = [_describe(arg, check) for arg in args if arg is not NONE_TYPE]
        if NONE_TYPE in args:
            parts.append("null")
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]
    if hint is bool:
        return "true or false"
    if hint is int or hint is float:
        text = "an integer" if hint is int else "a number"
        return f"{text} {check.describe()}" if isinstance(check, _Range) else text
    if hint is str:
        return check.describe() if isinstance(check, _OneOf) else "a non-empty string"
    if hint is Path:
        return "a path"
    if get_origin(hint) is tuple:
        item = get_args(hint)[0]
        return "a list of " + ("paths" if item is Path else "strings" if item is str else "items")
    if get_origin(hint) is Mapping:
        return "a mapping of names to " + _describe(get_args(hint)[1], check)
    if dataclasses.is_dataclass(hint):
        return "a mapping of settings"
    return str(hint)


def _matches(hint: object, value: object) -> bool:
    """Whether `value` has the YAML shape of `hint` (ranges are checked later)."""
    scalar = matches_scalar(hint, value)
    if scalar is not None:
        return scalar
    if hint is Path:
        return isinstance(value, str | os.PathLike)
    if get_origin(hint) is tuple:
        return isinstance(value, list | tuple)
    if get_origin(hint) is Mapping:
        # Null reads as empty, as a section does: `backends:` with every entry commented out.
        return value is None or isinstance(value, Mapping)
    if dataclasses.is_dataclass(hint):
        # An empty section (`audio:` with every key commented out) reads as null.
        return value is None or isinstance(value, Mapping)
    return False


def _convert(hint: object, value: object, key: str, check: _Check | None) -> object:
    expected = _describe(hint, check)

    def invalid() -> _Invalid:
        return _Invalid(key, f"expected {expected}, got {_type_of(value)}")

    if is_union(hint):
        for arg in get_args(hint):
            if _matches(arg, value):
                if arg is NONE_TYPE:
                    return None
                # The range is checked below, so that its error describes the whole union.
                result = _convert(arg, value, key, None)
                break
        else:
            raise invalid()
    elif not _matches(hint, value):
        raise invalid()
    elif hint is float:
        assert isinstance(value, int | float)
        result = float(value)
        if not math.isfinite(result):
            raise invalid()
    elif hint is str or hint is Path:
        # An empty name or path is always a slip (it would mean "here" for a path); null says
        # "not set" where a key allows that.
        if not str(value).strip():
            raise invalid()
        result = Path(value) if hint is Path else value  # type: ignore[arg-type]
    elif get_origin(hint) is tuple:
        assert isinstance(value, list | tuple)
        item = get_args(hint)[0]
        return tuple(_convert(item, v, f"{key}[{i}]", None) for i, v in enumerate(value))
    elif get_origin(hint) is Mapping:
        return _convert_mapping(get_args(hint)[1], value, key, check)
    elif dataclasses.is_dataclass(hint):
        assert isinstance(hint, type)
        return _build(hint, value if isinstance(value, Mapping) else {}, key + ".")
    else:
        result = value
    if check is not None and not check.accepts(result):
        raise invalid()
    return result


def _convert_mapping(
    item: object, value: object, key: str, check: _Check | None
) -> dict[str, object]:
    """A mapping of names to values of type `item`, `check` applied to each value."""
    converted: dict[str, object] = {}
    for name, entry in (value if isinstance(value, Mapping) else {}).items():
        entry_key = f"{key}.{name}"
        if not isinstance(name, str) or not name.strip():
            raise _Invalid(
                entry_key, f"expected a non-empty string as the name, got {_type_of(name)}"
            )
        converted[name] = _convert(item, entry, entry_key, check)
    return converted


def _build(cls: type[Any], data: Mapping[Any, object], prefix: str) -> Any:
    """One dataclass from one mapping; keys absent from `data` keep their defaults."""
    hints = {spec.name: spec.hint for spec in field_specs(cls)}
    for key in data:
        if not isinstance(key, str) or key not in hints:
            raise _Invalid(f"{prefix}{key}", _unknown_key_hint(str(key), sorted(hints), prefix))
    kwargs = {
        name: _convert(hints[name], value, prefix + name, _CHECKS.get(prefix + name))
        for name, value in data.items()
    }
    return cls(**kwargs)


def _unknown_key_hint(key: str, known: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    section = prefix.rstrip(".") or "the top level"
    return f"unknown key; {guess}{section} has: {', '.join(known)}"


def _check_cross_fields(settings: Settings) -> None:
    """Rules that involve more than one key."""
    server = settings.server
    if not server.allow_non_loopback and not _is_loopback(server.tcp_host):
        raise _Invalid(
            "server.tcp_host",
            f"{server.tcp_host!r} is not a loopback address; anyone who can reach it could make "
            "the daemon speak, so set server.allow_non_loopback: true to allow it",
        )
    if not server.curve and not _is_loopback(server.tcp_host):
        raise _Invalid(
            "server.curve",
            f"tcp_host {server.tcp_host!r} is not a loopback address, so the TCP endpoints must "
            "use CurveZMQ: set server.curve: true and allow client keys (docs/protocol.md, "
            "Security)",
        )
    _check_wyoming(settings.wyoming)
    for word in settings.text.lexicon:
        if not word.strip():
            raise _Invalid("text.lexicon", f"{_show(word)} is not a word")
    for index, key in enumerate(server.curve_clients):
        if not is_z85_key(key):
            raise _Invalid(
                f"server.curve_clients[{index}]",
                f"expected a Z85 Curve public key (40 characters), got {_show(key)}",
            )


def _check_wyoming(wyoming: WyomingSettings) -> None:
    """The Wyoming bridge's address: TCP, loopback unless allowed, announced only if reachable."""
    try:
        endpoint = wyoming.endpoint()
    except ValueError as exc:
        raise _Invalid("wyoming.uri", f"{_show(wyoming.uri)}: {exc}") from None
    if endpoint is None:
        return
    host, _ = endpoint
    if not _is_loopback(host) and not wyoming.allow_non_loopback:
        raise _Invalid(
            "wyoming.uri",
            f"{host!r} is not a loopback address, and Wyoming has no authentication: anyone who "
            "can reach it could use the daemon, so set wyoming.allow_non_loopback: true to allow "
            "it",
        )
    if wyoming.zeroconf and _is_loopback(host):
        raise _Invalid(
            "wyoming.zeroconf",
            f"the server listens on loopback ({host!r}), which no other machine can reach: "
            "announcing it is of no use; listen on the LAN address (or 0.0.0.0) first",
        )


def _is_loopback(host: str) -> bool:
    # Names other than localhost are not resolved here: what they resolve to can change later.
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Public API.


def settings_from_mapping(data: Mapping[str, object] | None, source: str) -> Settings:
    """Validate a parsed config (the YAML document) into `Settings`.

    `None` (an empty file) gives the defaults. `source` is the file name used in error messages.
    Raises ConfigError naming `source`, the dotted key and the value.
    """
    return _settings_from_document(data, source)


def _settings_from_document(data: object, source: str) -> Settings:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, None, f"expected a mapping of settings, got {_type_of(data)}")
    try:
        settings: Settings = _build(Settings, data, "")
        _check_cross_fields(settings)
    except _Invalid as exc:
        raise ConfigError(source, exc.key, exc.problem) from None
    return apply_profile(settings)


def config_search_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where `find_config_file` looks when $UTTERD_CONFIG is not set, in order."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    config_home = Path(xdg) if os.path.isabs(xdg) else Path("~/.config").expanduser()
    return [config_home / "utterd" / "config.yaml", Path("/etc/utterd/config.yaml")]


def find_config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file to use: $UTTERD_CONFIG, else the first search path that exists, else None.

    $UTTERD_CONFIG is returned even if the file is missing, so that loading it fails loudly
    instead of silently falling back to another file.
    """
    env = os.environ if environ is None else environ
    named = env.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser()
    for candidate in config_search_paths(env):
        if candidate.is_file():
            return candidate
    return None


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate a config file; with no path, the one `find_config_file` picks.

    No file at all gives the defaults. Raises ConfigError for an unreadable file, a YAML syntax
    error (naming the line) or an invalid setting (naming the key and the value).
    """
    if path is None:
        path = find_config_file()
        if path is None:
            return Settings()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, None, f"not UTF-8 at byte {exc.start}") from None
    except OSError as exc:
        raise ConfigError(source, None, f"cannot read: {exc.strerror or exc}") from None
    return _settings_from_document(_parse_yaml(text, source), source)


def apply_overrides(settings: Settings, /, **overrides: object) -> Settings:
    """Settings with some keys replaced, validated like the file (cross-key rules included).

    Keys are dotted paths (`voices.default`, `server.tcp_port`, `log_level`); pass them as
    `**{"server.tcp_port": 5555}`. A value of None is skipped: it stands for a command-line flag
    that was not given, which must not reset what the file says. Errors name `command line`.
    """
    merged: dict[str, Any] = dataclasses.asdict(settings)
    for key, value in overrides.items():
        if value is None:
            continue
        *sections, leaf = key.split(".")
        target = merged
        # Walked beside `merged`: a dict there is a section only if it was a dataclass here (a
        # mapping setting such as voices.backends is one value).
        section: object = settings
        for depth, name in enumerate(sections):
            child = target.get(name)
            section = getattr(section, name, None)
            if isinstance(child, dict) and not dataclasses.is_dataclass(section):
                whole = ".".join(sections[: depth + 1])
                raise ConfigError(OVERRIDE_SOURCE, key, f"{whole} is one value; override it whole")
            if not isinstance(child, dict):
                prefix = ".".join(sections[:depth])
                known = sorted(target)
                raise ConfigError(
                    OVERRIDE_SOURCE, key, _unknown_key_hint(name, known, prefix + ".")
                )
            target = child
        if leaf not in target:
            raise ConfigError(
                OVERRIDE_SOURCE, key, _unknown_key_hint(leaf, sorted(target), ".".join(sections))
            )
        if dataclasses.is_dataclass(getattr(section, leaf)):
            raise ConfigError(OVERRIDE_SOURCE, key, "is a section; override one of its keys")
        target[leaf] = value
    return settings_from_mapping(merged, OVERRIDE_SOURCE)


# ---------------------------------------------------------------------------------------------
# YAML reading.


# SafeLoader that rejects duplicate keys: YAML keeps the last silently, hiding a mistake. Made
# with type() so that it type-checks with and without PyYAML's stubs (a class statement
# subclassing an untyped base is an error under --strict).
_StrictLoader: type[yaml.SafeLoader] = type("_StrictLoader", (yaml.SafeLoader,), {})


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        # Only scalar keys can be compared; a config has no other kind.
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _parse_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            raise ConfigError(source, None, f"{where}: invalid YAML: {problem}") from None
        raise ConfigError(source, None, f"invalid YAML: {problem}") from None
