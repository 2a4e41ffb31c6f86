"""Profiles: one word in config.yaml (`profile: eco`) that tunes the daemon for a kind of board.

`default` is the daemon as measured on a desk machine: inference on every physical core, the
service's STATUS line refreshed every couple of seconds.

`eco` is for boards on a battery or without a fan (a Pi Zero 2 W in a case, a solar sensor
node), where each busy core and each wake-up of an idle CPU costs charge and heat:

- **One inference thread** (`voices.threads` 0 resolves to 1, not one per core): the same
  speech costs less CPU in all (no thread pool to feed and join on every operator) and never
  heats more than one core; it is slower per sentence, which a board that speaks prompts
  affords (bench/bench_eco.py measures both).
- **Pre-warming only when idle, at the lowest priority.** The warming thread always waits while
  a live request is queued, synthesized or speaking, and runs SCHED_IDLE at nice 19; with one
  inference thread there is no intra-op pool at normal priority beside it, so the whole render
  runs at that priority (with more threads, the live voice's pool threads do the work).
- **No spinning.** ONNX Runtime's idle pool threads never spin in either profile (the session
  option `session.intra_op.allow_spinning` is "0", models/engine/ort_session.py); with one
  thread there is no pool at all. OpenVINO compiles with the LATENCY hint and one stream.
- **No periodic wake-up without a reason.** The socket loop and the player's supervisor sleep
  until they have work (both profiles). In eco the watchdog thread refreshes STATUS only as often as systemd's
  watchdog needs a ping, and at most every `ECO_STATUS_PERIOD_S` without one; the fault poll
  (a few stat calls on the voice files) runs every `ECO_FAULT_POLL_S`.

A key set explicitly keeps its value: `voices.threads: 2` with `profile: eco` runs two threads.
The profile is applied once, where config.yaml is validated (daemon/config.py), so every part
reads the resolved settings and none needs to know the profile's rules.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from utterd.daemon.faults import DEFAULT_POLL_INTERVAL_S
from utterd.daemon.settings import Settings

__all__ = [
    "DEFAULT",
    "DEFAULT_STATUS_PERIOD_S",
    "ECO",
    "ECO_FAULT_POLL_S",
    "ECO_STATUS_PERIOD_S",
    "ECO_THREADS",
    "PROFILES",
    "apply_profile",
    "fault_poll_interval_s",
    "status_period_s",
]

DEFAULT: Final = "default"
"""The profile for machines with power and cooling to spare."""

ECO: Final = "eco"
"""The profile for battery- or thermally-limited boards."""

PROFILES: Final[tuple[str, ...]] = (DEFAULT, ECO)
"""Values of the `profile` key."""

ECO_THREADS: Final = 1
"""Inference threads in eco when `voices.threads` is 0 (auto)."""

DEFAULT_STATUS_PERIOD_S: Final = 2.0
"""How often the watchdog thread refreshes STATUS in the default profile."""

ECO_STATUS_PERIOD_S: Final = 30.0
"""The longest the eco watchdog thread sleeps when systemd wants no watchdog ping: STATUS may
lag that long in `systemctl status`, which is read by people, rarely and by hand."""

ECO_FAULT_POLL_S: Final = 10.0
"""How often eco looks for deleted voice files (default: every second). A deleted file is
reported that much later; a loaded voice keeps speaking from memory meanwhile either way."""


def apply_profile(settings: Settings) -> Settings:
    """`settings` with the profile's choices filled in where the file left them to it."""
    if settings.profile != ECO or settings.voices.threads != 0:
        return settings
    voices = dataclasses.replace(settings.voices, threads=ECO_THREADS)
    return dataclasses.replace(settings, voices=voices)


def status_period_s(profile: str) -> float:
    """The longest the watchdog thread waits between two looks (daemon/watchdog.py)."""
    return ECO_STATUS_PERIOD_S if profile == ECO else DEFAULT_STATUS_PERIOD_S


def fault_poll_interval_s(profile: str) -> float:
    """How often the fault registry runs its watched checks (daemon/faults.py)."""
    return ECO_FAULT_POLL_S if profile == ECO else DEFAULT_POLL_INTERVAL_S
