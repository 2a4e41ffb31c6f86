"""`utterd` command line: `serve` runs the daemon; the other subcommands are clients of it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

import zmq
from utterd.daemon.access import CurveClientKeys, new_key_pair, server_public_key, write_key_pair
from utterd.daemon.client import Client, NotRunning, RequestFailed
from utterd.daemon.config import apply_overrides, find_config_file, load_settings
from utterd.daemon.settings import Settings
from utterd.models.errors import UtterdError

_LOGGER = logging.getLogger(__name__)

_TERMINAL = ("done", "stopped", "failed")

REPLY_TIMEOUT_S: Final = 5.0
"""How long a client command waits for the daemon's reply unless --timeout says otherwise."""

SYNTH_TIMEOUT_S: Final = 300.0
"""How long `synth` waits for its audio, once the daemon has answered, unless --timeout says."""

EXIT_FAILED: Final = 1
"""The daemon answered with an error (or synthesis outran its time)."""

EXIT_INPUT: Final = 2
"""Bad input on this side: config file, arguments, files to read or write."""

EXIT_NOT_RUNNING: Final = 3
"""No daemon answered."""

EXIT_INTERRUPTED: Final = 130
"""Ctrl-C."""


class CliError(Exception):
    """A problem found on the client's side, reported as one line (exit EXIT_INPUT)."""


def utterd_version() -> str:
    try:
        return version("utterd")
    except PackageNotFoundError:
        return "0+unknown"


def _config_path(args: argparse.Namespace) -> Path | None:
    return Path(args.config) if args.config else find_config_file()


def _settings(args: argparse.Namespace, path: Path | None = None) -> Settings:
    """The config file's settings (`path`, else the one `--config` or the search finds) with the
    command line's overrides."""
    if path is None:
        path = _config_path(args)
    settings = load_settings(path)
    overrides: dict[str, Any] = {}
    if getattr(args, "voice_default", None):
        overrides["voices.default"] = args.voice_default
    if getattr(args, "tcp_port", None) is not None:
        overrides["server.tcp_port"] = args.tcp_port
    if getattr(args, "log_level", None):
        overrides["log_level"] = args.log_level
    if getattr(args, "greeting", None) is not None:
        overrides["greeting"] = args.greeting or None
    if getattr(args, "device", None) is not None:
        overrides["audio.device"] = args.device
    return apply_overrides(settings, **overrides) if overrides else settings


def _endpoint(args: argparse.Namespace) -> str:
    if args.endpoint:
        return str(args.endpoint)
    return _settings(args).server.request_endpoints()[0]


def _text(arg: str) -> str:
    if arg != "-":
        return arg
    return _utf8(sys.stdin.buffer.read())


def _utf8(data: bytes) -> str:
    """Standard input's bytes as text: strictly UTF-8, whatever the locale says (a C locale
    would let other bytes through as lone surrogates, which the daemon refuses less clearly)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"standard input is not UTF-8 text (byte {exc.start})") from None


def _read_text_file(name: str, what: str) -> str:
    """A UTF-8 text file's content ('-': standard input), or CliError naming the file."""
    if name == "-":
        return _text(name)
    path = Path(name)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except IsADirectoryError:
        raise CliError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _check_output_file(name: str) -> None:
    """Fail before any work when `name` cannot be written (a folder, no folder, not writable)."""
    if name == "-":
        return
    path = Path(name)
    folder = path.parent
    if path.is_dir():
        raise CliError(f"{path} is a folder: give a file name, e.g. {path / 'speech.wav'}")
    if not folder.is_dir():
        raise CliError(f"cannot write {path}: there is no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"cannot write {path}: permission denied")


def _synth_data(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {"text": _text(args.text)}
    for key in ("voice", "speaker", "rate", "volume"):
        value = getattr(args, key)
        if value is not None:
            data[key] = int(value) if key == "speaker" and str(value).isdigit() else value
    if args.deterministic:
        data["deterministic"] = True
    if args.cache:
        data["cache"] = args.cache
    if args.slot:
        slots: dict[str, str] = {}
        for item in args.slot:
            name, sep, value = item.partition("=")
            if not sep:
                raise CliError(f"--slot takes NAME=VALUE, got {item!r}")
            slots[name] = value
        data["slots"] = slots
    return data


def cmd_serve(args: argparse.Namespace) -> int:
    from utterd.daemon.memory import fix_mmap_threshold, limit_arenas
    from utterd.daemon.sdnotify import Notifier
    from utterd.daemon.service import Daemon

    limit_arenas()  # before any worker thread allocates: see daemon/memory.py

    # Found once: SIGHUP re-reads this same file, with the same command-line overrides.
    path = _config_path(args)
    settings = _settings(args, path)
    if settings.memory.mmap_threshold_bytes is not None:
        fix_mmap_threshold(settings.memory.mmap_threshold_bytes)
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    daemon = Daemon(
        settings,
        utterd_version(),
        reload_settings=lambda: _settings(args, path),
        config_file=path,
        notifier=Notifier.from_environ(),
    )
    return daemon.run()


def cmd_wyoming(args: argparse.Namespace) -> int:
    """Serve Wyoming for a running daemon, relayed over ZeroMQ (daemon/bridges/wyoming_relay.py)."""
    import signal
    import threading

    from utterd.daemon.bridges.wyoming import WyomingBridge
    from utterd.daemon.bridges.wyoming_relay import RelaySynthesizer

    overrides: dict[str, Any] = {
        "wyoming.uri": args.uri,
        "wyoming.allow_non_loopback": True if args.allow_non_loopback else None,
        "wyoming.zeroconf": True if args.zeroconf is not None else None,
        "wyoming.zeroconf_name": args.zeroconf or None,
        "wyoming.max_clients": args.max_clients,
    }
    settings = apply_overrides(_settings(args), **overrides)
    if settings.wyoming.uri is None:
        raise CliError("give --uri tcp://HOST:PORT (or wyoming.uri in the config file)")
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    synth = RelaySynthesizer(
        _endpoint(args), _curve_keys(args), settings.limits, settings.wyoming.max_clients
    )
    synth.start()  # NotRunning: no daemon to relay to
    bridge = WyomingBridge(settings.wyoming, synth, utterd_version())
    try:
        bridge.start()
        _LOGGER.info("event=relay-ready uri=%s daemon=%s", settings.wyoming.uri, synth.endpoint)
        while not stop.wait(0.5):
            pass
    finally:
        bridge.stop()
        synth.close()
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from utterd.quantize import cli as quantize_cli
    from utterd.quantize.logs import setup_logging

    settings = _settings(args)
    setup_logging(settings.log_level)
    if args.voices_folder is None:
        args.voices_folder = [p.expanduser() for p in settings.voices.folders]
    if args.model_store is None:
        args.model_store = settings.voices.resolved_model_store()
    return quantize_cli.run(args)


def cmd_say(args: argparse.Namespace, client: Client) -> int:
    if args.stream:
        if args.text != "-" or args.slot:
            raise CliError("--stream reads standard input: give '-' as TEXT, no --slot")
        args.text = ""  # read line by line below, not all at once
    data = _synth_data(args)
    if args.priority:
        data["priority"] = args.priority
    if args.stream:
        job = _say_streamed(client, data)
    else:
        header, _ = client.request("speak", data)
        job = header["data"]["job"]
    if not args.wait:
        print(job)
        return 0
    while True:
        status, _ = client.request("job", {"job": job})
        state = status["data"]["state"]
        if state in _TERMINAL:
            if state != "done":
                print(f"job {job} {state}: {status['data'].get('error')}", file=sys.stderr)
                return 1
            return 0
        time.sleep(0.05)


def _say_streamed(client: Client, data: dict[str, Any]) -> str:
    """speak-start, then standard input line by line as speak-chunks, then speak-stop."""
    data.pop("text")
    header, _ = client.request("speak-start", data)
    job = str(header["data"]["job"])
    try:
        for line in sys.stdin.buffer:
            client.request("speak-chunk", {"job": job, "text": _utf8(line)})
    except CliError:
        client.request("stop", {"job": job})  # not left waiting for text that never comes
        raise
    client.request("speak-stop", {"job": job})
    return job


def cmd_synth(args: argparse.Namespace, client: Client) -> int:
    data = _synth_data(args)
    data["format"] = args.format
    # A daemon that is not there is known in --timeout (default 5 s); only then is a long wait
    # for the audio worth it.
    client.request("ping")
    wait_s = SYNTH_TIMEOUT_S if args.timeout is None else args.timeout
    try:
        header, payload = client.request("synthesize", data, timeout_s=wait_s)
    except NotRunning:
        print(
            f"utterd: no audio within {wait_s:g} s, although the daemon answers "
            "(a long text takes longer: raise --timeout)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    out = payload or b""
    if args.output == "-":
        sys.stdout.buffer.write(out)
        return 0
    try:
        Path(args.output).write_bytes(out)
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    info = header["data"]
    print(
        f"{args.output}: {info['duration_s']:.2f} s at {info['sample_rate_hz']} Hz ({info['voice']})"
    )
    return 0


def cmd_stop(args: argparse.Namespace, client: Client) -> int:
    # Without --job: silence everything and empty the queue (the protocol's `cancel`).
    kind, data = ("stop", {"job": args.job}) if args.job else ("cancel", {})
    header, _ = client.request(kind, data)
    jobs = header["data"]["jobs"]
    print("stopped: " + (", ".join(jobs) if jobs else "nothing was speaking"))
    return 0


def cmd_pause(args: argparse.Namespace, client: Client) -> int:
    header, _ = client.request(args.command, {"job": args.job} if args.job else {})
    jobs = header["data"]["jobs"]
    print(f"{args.command}d: " + (", ".join(jobs) if jobs else "no job now"))
    return 0


def cmd_describe(args: argparse.Namespace, client: Client) -> int:
    """Everything the daemon says about itself: the `describe` reply, as JSON."""
    header, _ = client.request("describe")
    print(json.dumps(header["data"], indent=2))
    return 0


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    """A few lines for a person: voices, backend, device, queue, cache, faults."""
    header, _ = client.request("describe")
    info = header["data"]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("\n".join(status_lines(info)))
    return 0


def status_lines(info: dict[str, Any]) -> list[str]:
    """The `status` summary of a `describe` reply (docs/protocol.md, `info`)."""
    lines = [
        f"utterd {info.get('version')} {info.get('state')}, up {_duration(info.get('uptime_s'))}"
    ]
    default = info.get("default_voice")
    voices = [_voice_summary(v, v.get("id") == default) for v in info.get("voices", [])]
    lines.append("voices: " + (", ".join(voices) or "none"))
    backend = info.get("backend", {})
    features = ", ".join(backend.get("cpu_features") or []) or "no SIMD features listed"
    lines.append(
        f"backend: {backend.get('name')}, {backend.get('threads')} threads; "
        f"CPU {backend.get('cpu_model')} ({features})"
    )
    lines.append("device: " + _device_summary(info.get("device", {})))
    lines.append("queue: " + _queue_summary(info.get("queue", {})))
    lines.append("cache: " + _cache_summary(info.get("cache", {})))
    counters = info.get("counters", {})
    lines.append(
        f"jobs: {counters.get('accepted', 0)} spoken ({counters.get('done', 0)} done, "
        f"{counters.get('stopped', 0)} stopped, {counters.get('failed', 0)} failed), "
        f"{counters.get('synthesized', 0)} synthesized; {counters.get('errors', 0)} error replies"
    )
    faults = info.get("faults") or []
    lines.append(
        "faults: "
        + (
            "; ".join(f"{f.get('code')} ({f.get('subject')}): {f.get('message')}" for f in faults)
            or "none"
        )
    )
    problem = (info.get("watchdog") or {}).get("problem")
    if problem:
        lines.append(f"watchdog: {problem}")
    restart = (info.get("config") or {}).get("restart_required") or []
    if restart:
        lines.append("waiting for a restart: " + ", ".join(restart))
    return lines


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _voice_summary(voice: dict[str, Any], is_default: bool) -> str:
    notes = ["default"] if is_default else []
    runtime = voice.get("runtime") or {}
    if voice.get("loaded"):
        how = " ".join(str(runtime[k]) for k in ("backend", "precision") if runtime.get(k))
        notes.append(f"loaded, {how}" if how else "loaded")
    elif voice.get("load_error"):
        notes.append(f"FAILED: {voice['load_error']}")
    else:
        notes.append("not loaded yet")
    if voice.get("licence"):
        notes.append(f"licence: {voice['licence']}")
    return f"{voice.get('id')} ({'; '.join(notes)})"


def _device_summary(dev: dict[str, Any]) -> str:
    if not dev.get("available"):
        return f"{dev.get('device_name')} UNAVAILABLE: {dev.get('error')}"
    text = f"{dev.get('device_name')} @ {dev.get('sample_rate_hz')} Hz, ok"
    underruns = dev.get("underruns") or 0
    if underruns:
        text += f"; {underruns} underruns (gaps heard in speech: see docs/operations.md)"
    return text


def _queue_summary(queue: dict[str, Any]) -> str:
    text = f"{_plural(int(queue.get('length', 0)), 'job', 'jobs')} (max {queue.get('max')})"
    if queue.get("current"):
        text += f"; speaking {queue['current']} ({queue.get('current_priority')})"
    paused = queue.get("paused") or {}
    held = (["everything"] if paused.get("all") else []) + [
        *(f"client {c}" for c in paused.get("clients", [])),
        *(f"job {j}" for j in paused.get("jobs", [])),
    ]
    if held:
        text += "; paused: " + ", ".join(held)
    return text


def _hit_rate(stats: dict[str, Any]) -> str:
    rate = stats.get("hit_rate")
    if rate is None:
        return "no lookups yet"
    lookups = int(stats.get("hits", 0)) + int(stats.get("misses", 0))
    return f"hit rate {rate:.1%} of {lookups} lookups"


_MIB: Final = 1024 * 1024


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _tier_summary(tier: dict[str, Any]) -> str:
    entries = _plural(int(tier.get("entries", 0)), "entry", "entries")
    return (
        f"{entries}, {tier.get('size_bytes', 0) / _MIB:.1f} of "
        f"{tier.get('budget_bytes', 0) / _MIB:.0f} MiB"
    )


def _cache_summary(cache: dict[str, Any]) -> str:
    if not cache.get("enabled"):
        return "disabled"
    text = (
        f"RAM {_tier_summary(cache.get('ram', {}))}; disk {_tier_summary(cache.get('disk', {}))}; "
        f"{_hit_rate(cache)}"
    )
    if cache.get("disk_state", "ok") != "ok":
        text += f"; disk {cache['disk_state']}: {cache.get('disk_reason')}"
    return text


def cmd_voices(args: argparse.Namespace, client: Client) -> int:
    header, _ = client.request("describe")
    voices = header["data"]["voices"]
    if args.json:
        print(json.dumps(voices, indent=2))
        return 0
    for v in voices:
        speakers = f", {len(v['speakers'])} speakers" if v["speakers"] else ""
        state = (
            "loaded" if v["loaded"] else ("FAILED: " + v["load_error"] if v["load_error"] else "")
        )
        print(
            f"{v['id']:<24} {v['family']:<7} {v['language']:<6} {v['sample_rate_hz']} Hz{speakers} {state}"
        )
    return 0


def cmd_cache(args: argparse.Namespace, client: Client) -> int:
    if args.cache_command == "stats":
        header, _ = client.request("describe")
        cache = header["data"]["cache"]
        if args.json:
            print(json.dumps(cache, indent=2))
            return 0
        if not cache.get("enabled"):
            print("phrase cache: disabled")
            return 0
        for tier in ("ram", "disk"):
            t = cache.get(tier, {})
            print(
                f"{tier:<5} {t.get('entries', 0):>6} entries {t.get('size_bytes', 0) / _MIB:>9.1f} "
                f"MiB of {t.get('budget_bytes', 0) / _MIB:.0f} MiB, {_hit_rate(t)}"
            )
        print(f"all   {_hit_rate(cache)}")
        if cache.get("disk_state", "ok") != "ok":
            print(f"disk tier {cache['disk_state']}: {cache.get('disk_reason')}")
        warm = cache.get("prewarm") or {"entries": 0}
        if warm["entries"]:
            print(f"pre-warm: {warm['entries'] - warm['remaining']}/{warm['entries']} done")
        return 0
    if args.cache_command == "clear":
        header, _ = client.request("cache-clear", {"voice": args.voice} if args.voice else {})
        print(f"removed {header['data']['removed']} entries")
        return 0
    header, _ = client.request("cache-warm", {"entries": args.entries})
    print(f"warming {header['data']['entries']} prompts in the background (`utterd cache stats`)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """CurveZMQ keys: print the daemon's public key, or make a client key pair."""
    if args.keys_command == "server":
        print(server_public_key(_settings(args).server.resolved_curve_dir()).decode("ascii"))
        return 0
    folder = Path(args.dir)
    if not folder.is_dir():
        raise CliError(f"there is no folder {folder} to write the keys in")
    pair = new_key_pair()
    public_path, secret_path = write_key_pair(folder, args.name, pair)
    clients_dir = _settings(args).server.resolved_curve_clients_dir()
    print(pair.public.decode("ascii"))
    print(
        f"wrote {public_path} (public: copy it into the daemon's {clients_dir}, or list the key "
        f"above in server.curve_clients) and {secret_path} (secret, mode 0600: use it with "
        f"`utterd --client-key {secret_path} --server-key KEY`)",
        file=sys.stderr,
    )
    return 0


def _curve_keys(args: argparse.Namespace) -> CurveClientKeys | None:
    if args.server_key is None and args.client_key is None:
        return None
    if args.server_key is None or args.client_key is None:
        raise CliError("--server-key and --client-key go together")
    return CurveClientKeys.load(args.server_key, args.client_key)


def _add_synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="what to say; '-' reads standard input")
    p.add_argument("--voice", help="voice id (see `utterd voices`)")
    p.add_argument("--speaker", help="speaker name or id, for multi-speaker voices")
    p.add_argument("--rate", type=float, help="speaking rate, 1.0 = the voice's own pace")
    p.add_argument("--volume", type=float, help="linear gain, 1.0 = unchanged")
    p.add_argument(
        "--deterministic", action="store_true", help="no random noise: same text, same audio"
    )
    p.add_argument(
        "--cache", choices=["auto", "refresh", "off"], help="phrase cache use (default auto)"
    )
    p.add_argument(
        "--slot",
        action="append",
        metavar="NAME=VALUE",
        help="fill a template slot: TEXT is then a template like 'Your balance is {amount}.'",
    )


def build_parser(*, quantize_arguments: bool = True) -> argparse.ArgumentParser:
    """The command line. `quantize_arguments` False leaves `quantize`'s own arguments out
    (it is still listed): they import the quantizer (40-100 ms), which `serve` and the client
    commands never use; `main` asks for them only when the command line names quantize."""
    parser = argparse.ArgumentParser(
        prog="utterd",
        description="Offline voice daemon: `utterd serve` runs it; the other commands talk to it.",
        epilog="Exit status: 0 ok; 1 the daemon answered with an error; 2 bad input on this side "
        "(config file, arguments, files); 3 no daemon answered.",
    )
    parser.add_argument(
        "--config",
        help="config file (default: $UTTERD_CONFIG, else the first that exists of "
        "${XDG_CONFIG_HOME:-~/.config}/utterd/config.yaml and /etc/utterd/config.yaml); "
        "clients find the daemon's socket from it",
    )
    parser.add_argument(
        "--endpoint",
        help="request endpoint, e.g. ipc:///run/utterd/utterd.sock (overrides --config)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help=f"seconds to wait for the daemon's reply (default {REPLY_TIMEOUT_S:g}); `synth` "
        f"waits this long for its audio too (default {SYNTH_TIMEOUT_S:g}). A missing socket "
        "is reported at once",
    )
    parser.add_argument(
        "--server-key",
        metavar="KEY",
        help="CurveZMQ: the daemon's public key, Z85 text or a .key file (`utterd keys server`)",
    )
    parser.add_argument(
        "--client-key",
        metavar="FILE",
        help="CurveZMQ: this client's .key_secret file (`utterd keys client NAME`)",
    )
    parser.add_argument("--version", action="version", version=f"utterd {utterd_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument(
        "--voice", dest="voice_default", help="default voice (overrides voices.default)"
    )
    serve.add_argument("--tcp-port", type=int, help="also listen on tcp://127.0.0.1:PORT")
    serve.add_argument("--device", help="output device name or index (overrides audio.device)")
    serve.add_argument("--greeting", help="say this once ready ('' for nothing)")
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    say = sub.add_parser("say", help="speak text on the daemon's sound device")
    _add_synth_args(say)
    say.add_argument("--wait", action="store_true", help="return when the speech has finished")
    say.add_argument(
        "--priority",
        choices=["important", "message", "text", "notification", "progress"],
        help="how it competes with other speech (default text; see docs/protocol.md)",
    )
    say.add_argument(
        "--stream",
        action="store_true",
        help="with TEXT '-': speak standard input sentence by sentence as lines arrive",
    )

    synth = sub.add_parser("synth", help="synthesize to a file (WAV or raw PCM), no playback")
    _add_synth_args(synth)
    synth.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file, in an existing folder ('-' for stdout); checked before synthesizing",
    )
    synth.add_argument(
        "--format",
        choices=["wav", "pcm"],
        default="wav",
        help="wav (default) or pcm: raw 16-bit little-endian mono at the voice's rate",
    )

    stop = sub.add_parser("stop", help="silence now and drop the queue (--job: only that job)")
    stop.add_argument("--job", help="stop only this job")
    for name, what in (("pause", "pause speech at the next piece"), ("resume", "end a pause")):
        cmd = sub.add_parser(name, help=what + " (everything, or --job)")
        cmd.add_argument("--job", help="only this job")

    status = sub.add_parser(
        "status", help="a short summary: state, voices, backend, device, queue, cache, faults"
    )
    status.add_argument("--json", action="store_true", help="the full `describe` reply instead")
    describe = sub.add_parser(
        "describe", help="everything the daemon reports about itself, as JSON (all of `status`)"
    )
    describe.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the default
    voices = sub.add_parser("voices", help="list the voices")
    voices.add_argument("--json", action="store_true", help="as JSON")

    quantize = sub.add_parser(
        "quantize", help="make and gate INT8 variants of a Piper voice on this machine"
    )
    if quantize_arguments:
        from utterd.quantize.cli import add_arguments as add_quantize_arguments

        add_quantize_arguments(quantize)

    cache = sub.add_parser("cache", help="the phrase cache")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    warm = cache_sub.add_parser(
        "warm", help="render prompts from FILE into the cache in the background"
    )
    warm.add_argument(
        "file", help="one prompt a line, pre-warm syntax of config.yaml; '-' for stdin"
    )
    stats = cache_sub.add_parser("stats", help="entries, bytes and hit rate per tier")
    stats.add_argument("--json", action="store_true", help="as JSON")
    clear = cache_sub.add_parser("clear", help="remove cached phrases")
    clear.add_argument("--voice", help="only this voice's entries")

    wyoming = sub.add_parser(
        "wyoming",
        help="serve Home Assistant's Wyoming protocol for a running daemon, relayed over ZeroMQ "
        "(the daemon's own server: wyoming.uri; docs/home-assistant.md)",
    )
    wyoming.add_argument(
        "--uri", help="where to listen, tcp://HOST:PORT (default: wyoming.uri of the config)"
    )
    wyoming.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow a HOST that is not loopback (Wyoming has no authentication)",
    )
    wyoming.add_argument(
        "--zeroconf",
        nargs="?",
        const="",
        metavar="NAME",
        help="announce over mDNS, as NAME (default utterd-<host name>); needs utterd[zeroconf]",
    )
    wyoming.add_argument("--max-clients", type=int, help="connections at once (default 16)")

    keys = sub.add_parser("keys", help="CurveZMQ keys for TCP clients (server.curve)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("server", help="print the daemon's public key (made by its first start)")
    client_keys = keys_sub.add_parser(
        "client", help="make a client key pair NAME.key, NAME.key_secret"
    )
    client_keys.add_argument("name", help="file name stem, e.g. the client's host name")
    client_keys.add_argument("--dir", default=".", help="folder to write them in (default: here)")
    return parser


_CLIENT_COMMANDS = {
    "say": cmd_say,
    "synth": cmd_synth,
    "stop": cmd_stop,
    "pause": cmd_pause,
    "resume": cmd_pause,
    "describe": cmd_describe,
    "status": cmd_status,
    "voices": cmd_voices,
    "cache": cmd_cache,
}


def _prepare_local_inputs(args: argparse.Namespace) -> None:
    """Read and check what this side supplies before the daemon is asked anything."""
    if args.command == "synth":
        _check_output_file(args.output)
    elif args.command == "cache" and args.cache_command == "warm":
        text = _read_text_file(args.file, "prompt file")
        args.entries = [
            line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]


def _run_client_command(args: argparse.Namespace) -> int:
    _prepare_local_inputs(args)
    endpoint = _endpoint(args)
    timeout_s = REPLY_TIMEOUT_S if args.timeout is None else args.timeout
    try:
        client = Client(endpoint, timeout_s=timeout_s, curve=_curve_keys(args))
    except zmq.ZMQError as exc:
        raise CliError(f"cannot use the endpoint {endpoint!r}: {exc}") from None
    with client:
        client.check_socket()
        return _CLIENT_COMMANDS[args.command](args, client)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure is one line on standard error and a non-zero status."""
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(quantize_arguments="quantize" in words).parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "quantize":
            return cmd_quantize(args)
        if args.command == "keys":
            return cmd_keys(args)
        if args.command == "wyoming":
            return cmd_wyoming(args)
        return _run_client_command(args)
    except NotRunning as exc:
        print(f"utterd: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except RequestFailed as exc:
        print(f"utterd: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except UtterdError as exc:
        print(f"utterd: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_INPUT
    except CliError as exc:
        print(f"utterd: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("utterd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a file or stream this side uses: standard output closed, disk full
        where = f": {exc.filename}" if exc.filename else ""
        print(f"utterd: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # a bug, still one line (serve logs its own)
        if args.command == "serve":
            raise
        _LOGGER.debug("event=cli-internal-error", exc_info=True)  # quantize's log at DEBUG
        print(
            f"utterd: internal error: {type(exc).__name__}: {exc} (a bug: please report it)",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
