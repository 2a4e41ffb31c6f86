"""speech-dispatcher's message settings (its `SET` block) and what they mean in utterd.

speech-dispatcher sends the settings of each message before it (`rate=20`, `voice=male1`,
`language=en`, ...). They are kept as one frozen `MessageSettings`, checked as speech-dispatcher's
own modules check them (a value out of range or unknown is refused, the others still apply), and
mapped onto a `speak` request:

- **rate** −100..100 → utterd's 0.25..4.0 as `4 ** (rate / 100)`: 0 is the voice's own pace,
  +100 four times as fast, −100 a quarter, and each step of 50 doubles or halves it, so the
  scale is even in the way a listener hears speed;
- **volume** −100..100 → utterd's linear gain: −100..0 rises in a line from 0 (silent) to 1.0
  (the voice as it is); 0..+100 from 1.0 to `UtterdMaxVolume` (1.5 by default, at most 4.0).
  Debian's speechd.conf sets `DefaultVolume 100`, so most messages carry +100: 1.5 keeps both
  shipped voices' loudest peaks (0.61 and 0.33 of full scale) below clipping;
- **pitch** and **pitch_range** are accepted and not honoured: utterd's voices have no pitch
  control yet;
- **voice** type, **language** and **synthesis_voice** choose the utterd voice (`choose_voice`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from utterd.daemon.bridges.speechd_config import VOICE_TYPES, VoiceChoice

PUNCTUATION_MODES: Final = ("none", "some", "most", "all")
SPELLING_MODES: Final = ("on", "off")
CAPITAL_MODES: Final = ("none", "spell", "icon")

MIN_RATE: Final = 0.25
MAX_RATE: Final = 4.0


class BadSetting(ValueError):
    """A `SET` line names no setting, or a value the setting does not take."""


@dataclass(frozen=True)
class MessageSettings:
    """The settings speech-dispatcher sent for the next message; defaults as its own."""

    rate: int = 0
    """−100..100; 0 is the voice's own pace."""

    pitch: int = 0
    """−100..100; accepted, not honoured (utterd's voices have no pitch control)."""

    pitch_range: int = 0
    """−100..100; accepted, not honoured."""

    volume: int = 0
    """−100..100; 0 leaves the voice's level as it is."""

    punctuation_mode: str = "none"
    """One of PUNCTUATION_MODES: which punctuation is read by name. speech-dispatcher names
    punctuation itself when its `SymbolsPreproc` covers the level, and then sends `none`."""

    spelling_mode: str = "off"
    """`on`: text messages are spelled letter by letter."""

    cap_let_recogn: str = "none"
    """One of CAPITAL_MODES: `spell` says "capital" before a capital letter that is spelled;
    `icon` asks for a sound icon, which utterd has no sound for: read as `none`."""

    voice_type: str | None = None
    """One of VOICE_TYPES (`male1`, ...), or None when speech-dispatcher sent none."""

    language: str | None = None
    """A language tag (`en`, `en-US`), or None."""

    synthesis_voice: str | None = None
    """A voice by name, as `LIST VOICES` gave it, or None."""


_NUMBERS: Final = ("rate", "pitch", "pitch_range", "volume")
_CHOICES: Final[Mapping[str, Sequence[str]]] = {
    "punctuation_mode": PUNCTUATION_MODES,
    "spelling_mode": SPELLING_MODES,
    "cap_let_recogn": CAPITAL_MODES,
}


def apply_setting(settings: MessageSettings, name: str, value: str) -> MessageSettings:
    """`settings` with one `SET` line's `name=value` applied; BadSetting if it is not valid."""
    return dataclasses.replace(settings, **_change(name, value))


def _change(name: str, value: str) -> dict[str, Any]:
    """The field and value one `SET` line means."""
    if name in _NUMBERS:
        try:
            number = int(value)
        except ValueError:
            raise BadSetting(f"{name} must be an integer, got {value!r}") from None
        if not -100 <= number <= 100:
            raise BadSetting(f"{name} must be in -100..100, got {number}")
        return {name: number}
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise BadSetting(f"{name} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
        return {name: value}
    if name == "voice":
        if value not in VOICE_TYPES:
            raise BadSetting(f"voice must be one of {', '.join(VOICE_TYPES)}, got {value!r}")
        return {"voice_type": value}
    if name in ("language", "synthesis_voice"):
        return {name: None if value == "NULL" else value}
    raise BadSetting(f"unknown setting {name!r}")


def utterd_rate(rate: int) -> float:
    """speech-dispatcher's −100..100 rate as utterd's 0.25..4.0 (see the module docstring)."""
    return min(MAX_RATE, max(MIN_RATE, float(4.0 ** (rate / 100))))


def utterd_volume(volume: int, max_volume: float) -> float:
    """speech-dispatcher's −100..100 volume as utterd's gain (see the module docstring)."""
    if volume <= 0:
        return max(0.0, 1.0 + volume / 100)
    return 1.0 + (max_volume - 1.0) * volume / 100


@dataclass(frozen=True)
class VoiceEntry:
    """A voice the daemon offers, as `describe` lists it."""

    id: str
    """The voice id."""

    language: str
    """Its language tag (`en-US`)."""


def language_fits(wanted: str, offered: str) -> bool:
    """`en` fits `en-US`, `en-us` fits `en-US`; `en-GB` does not fit `en-US`."""
    wanted, offered = wanted.lower().replace("_", "-"), offered.lower().replace("_", "-")
    return offered == wanted or offered.split("-")[0] == wanted


def choose_voice(
    settings: MessageSettings,
    voices: Sequence[VoiceEntry],
    choices: Sequence[VoiceChoice],
    default: str | None,
) -> str | None:
    """The utterd voice for a message, or None for the daemon's default.

    In order: `synthesis_voice` when the daemon has it; the first `AddVoice` line whose type
    and language fit (and whose voice the daemon has); for a language, `default` if it speaks
    it, else the first voice that does; `default` (`UtterdDefaultVoice`, else the daemon's
    default voice). A language no voice speaks gets the default.
    """
    by_id = {v.id: v for v in voices}
    if settings.synthesis_voice in by_id:
        return settings.synthesis_voice
    language = settings.language
    if settings.voice_type is not None:
        for choice in choices:
            if (
                choice.voice_type == settings.voice_type
                and choice.voice in by_id
                and (language is None or language_fits(language, choice.language))
            ):
                return choice.voice
    if language is not None:
        fitting = [v.id for v in voices if language_fits(language, v.language)]
        if fitting:
            return default if default in fitting else fitting[0]
    return default if default in by_id else None
