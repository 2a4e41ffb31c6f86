"""Start utterd with the default voice on the ALSA file sink, speak one sentence, and report.

The ARM step (.ci/arm64/run.sh) runs this with the Python of the virtualenv setup.sh made: once
on the host (x86-64, the reference) and once inside the arm64 root, the same request on both, so
that compare_audio.py can hold the ARM audio against the x86 audio.

It goes the way a user goes: `utterd serve` with the default voice (hibari-heart), started and
configured by tests/daemon_harness.py (a config file under OUT naming a socket folder, an
empty voice folder, DEBUG logging and 2 threads: this machine's vCPUs; ONNX Runtime's float
sums depend on the thread count, so both sides use the same), then `utterd say
--deterministic --cache off SENTENCE`, waiting for the job to end. `--deterministic` makes the
voice use a fixed noise seed, so both machines are asked for the same samples; `--cache off`
makes sure the audio is synthesized here and now. The daemon plays into the ALSA file sink of
tests/audio_sinks.py (raw int16 mono at the device's rate, faster than real time).

Then one `synthesize` of the same sentence (deterministic, cache off, raw PCM), to time
synthesis alone and to know what the sink should have received.

Writes OUT/alsa-file-sink.raw (what was played), OUT/synth.raw (what `synthesize` returned),
OUT/utterd.log and OUT/result.json: ready_s (process start to the first answered ping), say_s
(from starting `utterd say` to the job's end, the CLI process's start included),
first_audio_ms (the job's, as the daemon measured it), synth_s, synth_audio_s and
synth_rate_hz (the `synthesize`), device_rate_hz, played_samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from audio_sinks import file_sink_env, read_s16
from daemon_harness import RunningDaemon

SENTENCE = "The quick brown fox jumps over the lazy dog, and your balance is 42 dollars."
"""Words, a pause and a number for the normalizer: about 4.5 s of speech from hibari-heart."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the sink, the log and result.json")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds for start-up and for each request"
    )
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env, sink = file_sink_env(out)
    env["PYTHONUNBUFFERED"] = "1"
    daemon = RunningDaemon(out, env, start_timeout_s=args.timeout)
    result: dict[str, Any] = {}
    try:
        started = time.monotonic()
        daemon.start()
        result["ready_s"] = round(time.monotonic() - started, 3)
        said = time.monotonic()
        done = daemon.cli(
            "say", "--deterministic", "--cache", "off", SENTENCE, timeout_s=args.timeout
        )
        if done.returncode != 0 or not done.stdout.strip():
            raise SystemExit(f"utterd say failed ({done.returncode}): {done.stderr}")
        job = daemon.wait_job(done.stdout.strip(), timeout_s=args.timeout)
        result["say_s"] = round(time.monotonic() - said, 3)
        if job["state"] != "done":
            raise SystemExit(f"the spoken job ended {job}")
        result["first_audio_ms"] = job["first_audio_ms"]
        with daemon.client(timeout_s=args.timeout) as client:
            synth_started = time.monotonic()
            request = {"text": SENTENCE, "deterministic": True, "cache": "off", "format": "pcm"}
            header, payload = client.request("synthesize", request)
            result["synth_s"] = round(time.monotonic() - synth_started, 3)
            if header["type"] != "audio":
                raise SystemExit(f"synthesize answered {header}")
            result["synth_audio_s"] = header["data"]["duration_s"]
            result["synth_rate_hz"] = header["data"]["sample_rate_hz"]
            (out / "synth.raw").write_bytes(payload or b"")
            header, _ = client.request("describe")
            result["device_rate_hz"] = _device_rate(header["data"])
    finally:
        exit_code = daemon.terminate()
    if exit_code != 0:
        raise SystemExit(f"utterd exited with {exit_code}:\n{daemon.log()[-3000:]}")
    result["played_samples"] = len(read_s16(sink))
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


def _device_rate(info: dict[str, Any]) -> int:
    """The rate the sound device's stream was opened at, from `describe`."""
    return int(info["device"]["sample_rate_hz"])


if __name__ == "__main__":
    sys.exit(main())
