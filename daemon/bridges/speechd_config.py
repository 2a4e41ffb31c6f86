"""The module config file of `sd_utterd` (`speechd/utterd.conf`), and where the daemon listens.

speech-dispatcher hands every output module the path of its config file as the first argument
(the third field of `AddModule`). Its C modules read it with dotconf; this one reads the same
shape, `Key value...` per line with `#` comments and double-quoted values, through `shlex`, so a
file written in the style of speech-dispatcher's own module configs is read as expected. Unknown
keys are errors naming the file and line: a typo must not silently fall back to a default.

The daemon's endpoints come from `UtterdEndpoint` (and `UtterdEventsEndpoint`), else from the
utterd config file that `utterd` itself would read (`UtterdConfig`, else `$UTTERD_CONFIG`, the
user's and then the system's config.yaml), so `sd_utterd` finds the daemon exactly where the
`utterd` command line does.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from utterd.models.errors import UtterdError

_LOGGER = logging.getLogger(__name__)

VOICE_TYPES: Final = (
    "male1",
    "male2",
    "male3",
    "female1",
    "female2",
    "female3",
    "child_male",
    "child_female",
)
"""speech-dispatcher's voice types, as its SET command spells them."""

CACHE_POLICIES: Final = ("none", "keys", "all")
"""`UtterdCache` values: which messages may use utterd's phrase cache (see ModuleConfig.cache)."""


class ModuleConfigError(UtterdError):
    """The module config file is unreadable or invalid; the message names the file and line."""

    code = "invalid-config"


@dataclass(frozen=True)
class VoiceChoice:
    """One `AddVoice "LANGUAGE" "TYPE" "VOICE"` line: which utterd voice a voice type means."""

    language: str
    """A language tag as speech-dispatcher sends it (`en`, `en-US`); matched case-blind, a
    primary language (`en`) also matching its regional tags."""

    voice_type: str
    """One of VOICE_TYPES (written in any case in the file, as speech-dispatcher's are)."""

    voice: str
    """The utterd voice id (`utterd voices` lists them)."""


@dataclass(frozen=True)
class ModuleConfig:
    """Everything `utterd.conf` may set; the defaults are those of the shipped file."""

    endpoint: str | None = None
    """`UtterdEndpoint`: the daemon's request endpoint (`ipc:///run/utterd/utterd.sock`,
    `tcp://127.0.0.1:5555`); None: the utterd config file's."""

    events_endpoint: str | None = None
    """`UtterdEventsEndpoint`: the daemon's event endpoint; None: derived from `endpoint` as the
    daemon binds it (`utterd-events.sock` beside `utterd.sock`, or the TCP port + 1)."""

    utterd_config: Path | None = None
    """`UtterdConfig`: the utterd config file to take the endpoints from; None: the one the
    `utterd` command would find."""

    reply_timeout_s: float = 3.0
    """`UtterdTimeout`: longest wait for the daemon's answer to a request, in seconds."""

    max_volume: float = 1.5
    """`UtterdMaxVolume`: utterd's volume (linear gain) at speech-dispatcher's volume +100."""

    cache: str = "keys"
    """`UtterdCache`: `none`, `keys` (characters, keys and sound icons only: a screen reader's
    text stays off the disk cache) or `all`."""

    sound_icon_ms: int = 100
    """`UtterdSoundIconMs`: a sound icon is this long a silence; 0 reports it done at once."""

    voices: tuple[VoiceChoice, ...] = field(default_factory=tuple)
    """`AddVoice` lines, in file order (the first that fits wins)."""

    default_voice: str | None = None
    """`UtterdDefaultVoice`: the voice when no setting picks one; None: the daemon's default."""


def _number(key: str, value: str, low: float, high: float, where: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ModuleConfigError(f"{where}: {key} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise ModuleConfigError(f"{where}: {key} must be in {low:g}..{high:g}, got {value}")
    return number


def parse_config(text: str, source: str) -> ModuleConfig:
    """Read a module config file's text; `source` names it in errors."""
    values: dict[str, object] = {}
    voices: list[VoiceChoice] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source}, line {number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ModuleConfigError(f"{where}: {exc}") from None
        if not words:
            continue
        key, args = words[0], words[1:]
        if key == "AddVoice":
            if len(args) != 3:
                raise ModuleConfigError(f'{where}: AddVoice takes "LANGUAGE" "TYPE" "VOICE"')
            language, voice_type, voice = args
            if voice_type.lower() not in VOICE_TYPES:
                raise ModuleConfigError(
                    f"{where}: AddVoice type {voice_type!r} is none of {', '.join(VOICE_TYPES)}"
                )
            voices.append(VoiceChoice(language, voice_type.lower(), voice))
            continue
        if len(args) != 1:
            raise ModuleConfigError(f"{where}: {key} takes one value, got {len(args)}")
        value = args[0]
        if key == "UtterdEndpoint":
            values["endpoint"] = value
        elif key == "UtterdEventsEndpoint":
            values["events_endpoint"] = value
        elif key == "UtterdConfig":
            values["utterd_config"] = Path(value).expanduser()
        elif key == "UtterdTimeout":
            values["reply_timeout_s"] = _number(key, value, 0.1, 60.0, where)
        elif key == "UtterdMaxVolume":
            values["max_volume"] = _number(key, value, 1.0, 4.0, where)
        elif key == "UtterdSoundIconMs":
            values["sound_icon_ms"] = int(_number(key, value, 0, 2000, where))
        elif key == "UtterdDefaultVoice":
            values["default_voice"] = value
        elif key == "UtterdCache":
            if value not in CACHE_POLICIES:
                raise ModuleConfigError(
                    f"{where}: UtterdCache must be one of {', '.join(CACHE_POLICIES)}, "
                    f"got {value!r}"
                )
            values["cache"] = value
        else:
            raise ModuleConfigError(f"{where}: unknown key {key!r}")
    return ModuleConfig(voices=tuple(voices), **values)  # type: ignore[arg-type]


def load_config(path: Path | None) -> ModuleConfig:
    """The config file at `path`; every default when there is none (speech-dispatcher names
    `utterd.conf` in its modules folder even when no such file was installed)."""
    if path is None:
        return ModuleConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        _LOGGER.info("event=no-module-config path=%s", path)
        return ModuleConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModuleConfigError(f"{path}: cannot read the module config: {exc}") from None
    return parse_config(text, str(path))


def events_endpoint_for(endpoint: str) -> str:
    """The event endpoint a daemon binds beside `endpoint` (docs/protocol.md, Endpoints)."""
    if endpoint.startswith("ipc://") and endpoint.endswith("utterd.sock"):
        return endpoint[: -len("utterd.sock")] + "utterd-events.sock"
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://") :].rpartition(":")
        if port.isdigit():
            return f"tcp://{host}:{int(port) + 1}"
    raise ModuleConfigError(
        f"cannot tell the event endpoint of {endpoint!r}: set UtterdEventsEndpoint"
    )


def endpoints(config: ModuleConfig) -> tuple[str, str]:
    """(request endpoint, event endpoint) of the daemon to relay to."""
    if config.endpoint is not None:
        return config.endpoint, config.events_endpoint or events_endpoint_for(config.endpoint)
    # Imported here: reading utterd's config pulls in most of the daemon's modules, which a
    # module config that names its endpoint never needs.
    from utterd.daemon.config import ConfigError, load_settings

    try:
        server = load_settings(config.utterd_config).server
    except ConfigError as exc:
        raise ModuleConfigError(f"utterd's config: {exc.message}") from None
    events = config.events_endpoint or server.event_endpoints()[0]
    return server.request_endpoints()[0], events
