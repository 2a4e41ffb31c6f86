"""alsa.release_unused_plugins with the real PortAudio and ALSA, in a fresh process playing into
the ALSA file sink: the plugins the device listing loaded go, the open stream keeps playing, and
a stream opened afterwards (ALSA reads its configuration again) plays too."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from audio_sinks import file_sink_env, read_s16

_CHILD = textwrap.dedent(
    """
    import json, os, shutil
    import numpy as np
    import sounddevice as sd
    from utterd.daemon.audio.alsa import release_unused_plugins

    def plugins():
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if "libasound_module_pcm_" in line})

    def rss_kib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4

    tone = (np.sin(np.arange(4410) * 0.05) * 8000).astype(np.int16)
    stream = sd.OutputStream(samplerate=22050, channels=1, dtype="int16")
    before, rss_before = plugins(), rss_kib()
    released = release_unused_plugins()
    after, rss_after = plugins(), rss_kib()
    stream.start(); stream.write(tone); stream.stop(); stream.close()
    sink = os.environ["UTTERD_ALSA_SINK"]
    shutil.copyfile(sink, sink + ".first")  # the file sink truncates its file at every open
    again = sd.OutputStream(samplerate=22050, channels=1, dtype="int16")
    again.start(); again.write(tone[::-1].copy()); again.stop(); again.close()
    print(json.dumps({"released": released, "before": before, "after": after,
                      "freed_kib": rss_before - rss_after}))
    """
)


def test_unused_alsa_plugins_are_closed_and_playback_goes_on(tmp_path: Path) -> None:
    pytest.importorskip("sounddevice")
    env, sink = file_sink_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["released"] is True
    if not result["before"]:
        pytest.skip("no ALSA plugin library was loaded by the device listing on this machine")
    # The file sink's PCM is built into libasound: no plugin library is in use.
    assert result["after"] == [], result
    assert result["freed_kib"] > 0, result
    tone = (np.sin(np.arange(4410) * 0.05) * 8000).astype(np.int16)
    # A stream writes whole device buffers, silence first and last, the tone between.
    for played, expected in ((read_s16(Path(f"{sink}.first")), tone), (read_s16(sink), tone[::-1])):
        assert np.array_equal(played[played != 0], expected[expected != 0])


def test_without_libasound_loaded_nothing_happens() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from utterd.daemon.audio.alsa import release_unused_plugins as r; print(r())",
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
