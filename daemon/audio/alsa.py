"""Give back what PortAudio's device listing loaded from ALSA and the stream does not use.

PortAudio lists devices by opening every PCM that ALSA's configuration defines, plugins
included. Where `libasound2-plugins` is installed (any Debian or Raspberry Pi OS with PulseAudio
or PipeWire), that opens `a52`, `jack`, `pulse`, `upmix`, `vdownmix`, `speex`, `usb_stream`
…, and loads their libraries: the `a52` encoder alone brings libavcodec with its video codecs,
librsvg, glib and ICU. ALSA keeps every loaded plugin, and the parsed configuration, until
`snd_config_update_free_global()`: 23 MiB of resident memory on this kind of machine for the
listing, of which this call gives back 11 MiB (measured on a process that opened one file-sink
stream; libraries marked not to unload, and those PortAudio itself links such as libjack, stay).

What the call does (alsa-lib 1.2, `conf.c` and `dlmisc.c`): it frees the global configuration
tree and then closes the cached plugin libraries whose reference count is 0, i.e. that no open
PCM uses; a later `snd_pcm_open` (a device rescan, a reopen, a format check) reads the
configuration again and loads what it needs. PortAudio reads the global configuration only
while it lists devices, and finds it again itself if it was freed. Call it from the thread that
opens streams, after the open, when no other thread is opening an ALSA device.

On a system without ALSA (no libasound), or if the symbol is missing, nothing happens.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

_LOGGER = logging.getLogger(__name__)

_LIBRARY = "libasound.so.2"
"""The soname PortAudio's ALSA host API links: opening it again gives the loaded instance."""


def _free_global() -> Any:
    try:
        library = ctypes.CDLL(_LIBRARY, mode=os.RTLD_NOLOAD)
    except (OSError, AttributeError):  # AttributeError: no RTLD_NOLOAD (not Linux/glibc)
        return None  # not loaded: PortAudio runs on another host API, or without ALSA
    return getattr(library, "snd_config_update_free_global", None)


def release_unused_plugins() -> bool:
    """Free ALSA's parsed configuration and close the plugin libraries no open PCM uses.

    True when ALSA was there and the call succeeded."""
    call = _free_global()
    if call is None:
        return False
    result = int(call())
    _LOGGER.debug("event=alsa-config-freed result=%d", result)
    return result == 0
