"""`utterd` command line: `serve` runs the daemon; the other subcommands are clients of it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from utterd.daemon.access import CurveClientKeys, new_key_pair, server_public_key, write_key_pair
from utterd.daemon.client import Client, NotRunning, RequestFailed
from utterd.daemon.config import apply_overrides, find_config_file, load_settings
from utterd.daemon.settings import Settings
from utterd.models.errors import UtterdError

_TERMINAL = ("done", "stopped", "failed")


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
    return sys.stdin.read() if arg == "-" else arg


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
                raise SystemExit(f"utterd: --slot takes NAME=VALUE, got {item!r}")
            slots[name] = value
        data["slots"] = slots
    return data


def cmd_serve(args: argparse.Namespace) -> int:
    from utterd.daemon.memory import limit_arenas
    from utterd.daemon.sdnotify import Notifier
    from utterd.daemon.service import Daemon

    limit_arenas()  # before any worker thread allocates: see daemon/memory.py

    # Found once: SIGHUP re-reads this same file, with the same command-line overrides.
    path = _config_path(args)
    settings = _settings(args, path)
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


def cmd_quantize(args: argparse.Namespace) -> int:
    from utterd.quantize import cli as quantize_cli

    settings = _settings(args)
    logging.basicConfig(level=settings.log_level, stream=sys.stderr, format="%(levelname)s %(message)s")
    if args.voices_folder is None:
        args.voices_folder = [p.expanduser() for p in settings.voices.folders]
    if args.model_store is None:
        args.model_store = settings.voices.resolved_model_store()
    return quantize_cli.run(args)


def cmd_say(args: argparse.Namespace, client: Client) -> int:
    if args.stream:
        if args.text != "-" or args.slot:
            raise SystemExit("utterd: --stream reads standard input: give '-' as TEXT, no --slot")
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
    for line in sys.stdin:
        client.request("speak-chunk", {"job": job, "text": line})
    client.request("speak-stop", {"job": job})
    return job


def cmd_synth(args: argparse.Namespace, client: Client) -> int:
    data = _synth_data(args)
    data["format"] = args.format
    header, payload = client.request("synthesize", data, timeout_s=max(client.timeout_s, 300.0))
    out = payload or b""
    if args.output == "-":
        sys.stdout.buffer.write(out)
    else:
        Path(args.output).write_bytes(out)
        info = header["data"]
        print(f"{args.output}: {info['duration_s']:.2f} s at {info['sample_rate_hz']} Hz ({info['voice']})")
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
    header, _ = client.request("describe")
    info = header["data"]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    dev = info["device"]
    print(f"utterd {info['version']} ({info['state']}), up {info['uptime_s']:.0f} s")
    print(f"default voice: {info['default_voice']}; backend {info['backend']['name']}")
    device = "ok" if dev.get("available") else f"UNAVAILABLE: {dev.get('error')}"
    print(f"device: {dev.get('device_name')} @ {dev.get('sample_rate_hz')} Hz, {device}")
    print(f"queue: {info['queue']['length']} (max {info['queue']['max']})")
    print("counters: " + ", ".join(f"{k}={v}" for k, v in info["counters"].items()))
    return 0


def cmd_voices(args: argparse.Namespace, client: Client) -> int:
    header, _ = client.request("describe")
    voices = header["data"]["voices"]
    if args.json:
        print(json.dumps(voices, indent=2))
        return 0
    for v in voices:
        speakers = f", {len(v['speakers'])} speakers" if v["speakers"] else ""
        state = "loaded" if v["loaded"] else ("FAILED: " + v["load_error"] if v["load_error"] else "")
        print(f"{v['id']:<24} {v['family']:<7} {v['language']:<6} {v['sample_rate_hz']} Hz{speakers} {state}")
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
            t = cache[tier]
            print(
                f"{tier:<5} {t['entries']:>6} entries {t['size_bytes'] / 1e6:>9.1f} MB of "
                f"{t['budget_bytes'] / 1e6:.0f} MB, hit rate {t['hit_rate']:.1%}"
            )
        warm = cache["prewarm"]
        if warm["entries"]:
            print(f"pre-warm: {warm['entries'] - warm['remaining']}/{warm['entries']} done")
        return 0
    if args.cache_command == "clear":
        header, _ = client.request("cache-clear", {"voice": args.voice} if args.voice else {})
        print(f"removed {header['data']['removed']} entries")
        return 0
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    entries = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    header, _ = client.request("cache-warm", {"entries": entries})
    print(f"warming {header['data']['entries']} prompts in the background (`utterd cache stats`)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """CurveZMQ keys: print the daemon's public key, or make a client key pair."""
    if args.keys_command == "server":
        print(server_public_key(_settings(args).server.resolved_curve_dir()).decode("ascii"))
        return 0
    folder = Path(args.dir)
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
        raise SystemExit("utterd: --server-key and --client-key go together")
    return CurveClientKeys.load(args.server_key, args.client_key)


def _add_synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="what to say; '-' reads standard input")
    p.add_argument("--voice", help="voice id (see `utterd voices`)")
    p.add_argument("--speaker", help="speaker name or id, for multi-speaker voices")
    p.add_argument("--rate", type=float, help="speaking rate, 1.0 = the voice's own pace")
    p.add_argument("--volume", type=float, help="linear gain, 1.0 = unchanged")
    p.add_argument("--deterministic", action="store_true", help="no random noise: same text, same audio")
    p.add_argument("--cache", choices=["auto", "refresh", "off"], help="phrase cache use (default auto)")
    p.add_argument(
        "--slot",
        action="append",
        metavar="NAME=VALUE",
        help="fill a template slot: TEXT is then a template like 'Your balance is {amount}.'",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="utterd", description="Offline voice daemon")
    parser.add_argument("--config", help="config file (default: $UTTERD_CONFIG, ~/.config/utterd/config.yaml, /etc/utterd/config.yaml)")
    parser.add_argument("--endpoint", help="request endpoint, e.g. ipc:///run/utterd/utterd.sock")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the daemon")
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
    serve.add_argument("--voice", dest="voice_default", help="default voice (overrides voices.default)")
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

    synth = sub.add_parser("synth", help="synthesize to a WAV file, no playback")
    _add_synth_args(synth)
    synth.add_argument("-o", "--output", required=True, help="output file ('-' for stdout)")
    synth.add_argument("--format", choices=["wav", "pcm"], default="wav")

    stop = sub.add_parser("stop", help="silence now and drop the queue")
    stop.add_argument("--job", help="stop only this job")
    for name, what in (("pause", "pause speech at the next piece"), ("resume", "end a pause")):
        cmd = sub.add_parser(name, help=what + " (everything, or --job)")
        cmd.add_argument("--job", help="only this job")

    for name in ("describe", "status"):
        d = sub.add_parser(name, help="daemon state, voices, device, counters")
        d.add_argument("--json", action="store_true")
    voices = sub.add_parser("voices", help="list the voices")
    voices.add_argument("--json", action="store_true")

    from utterd.quantize.cli import add_arguments as add_quantize_arguments

    quantize = sub.add_parser(
        "quantize", help="make and gate INT8 variants of a Piper voice on this machine"
    )
    add_quantize_arguments(quantize)

    cache = sub.add_parser("cache", help="the phrase cache")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    warm = cache_sub.add_parser("warm", help="render prompts from FILE into the cache in the background")
    warm.add_argument("file", help="one prompt a line, pre-warm syntax of config.yaml; '-' for stdin")
    stats = cache_sub.add_parser("stats", help="entries, bytes and hit rate per tier")
    stats.add_argument("--json", action="store_true")
    clear = cache_sub.add_parser("clear", help="remove cached phrases")
    clear.add_argument("--voice", help="only this voice's entries")

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
    "status": cmd_describe,
    "voices": cmd_voices,
    "cache": cmd_cache,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "quantize":
            return cmd_quantize(args)
        if args.command == "keys":
            return cmd_keys(args)
        with Client(_endpoint(args), timeout_s=args.timeout, curve=_curve_keys(args)) as client:
            return _CLIENT_COMMANDS[args.command](args, client)
    except NotRunning as exc:
        print(f"utterd: {exc}", file=sys.stderr)
        return 3
    except RequestFailed as exc:
        print(f"utterd: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except UtterdError as exc:
        print(f"utterd: {exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
