"""`sd_utterd`: a speech-dispatcher output module that speaks through a running utterd daemon.

speech-dispatcher starts it (`AddModule "utterd" "sd_utterd" "utterd.conf"` in speechd.conf,
docs/operations.md "Orca and speech-dispatcher") with the module config file as its argument,
and talks to it over stdin and stdout (`speechd_module`); the module relays each message to the
daemon over ZeroMQ (`speechd_link`) and the daemon's events back.

One thread: a poll over stdin, the daemon's event socket and the connection monitor, so the
order of what speech-dispatcher sends and what the daemon reports is kept without locks, and a
`STOP` is read the moment it arrives. Logs go to stderr, which speech-dispatcher writes to the
module's log file; what is spoken is never logged.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import zmq
from utterd.daemon.bridges.speechd_config import ModuleConfig, endpoints, load_config
from utterd.daemon.bridges.speechd_link import ZmqLink
from utterd.daemon.bridges.speechd_module import DaemonLink, ModuleSession
from utterd.models.errors import UtterdError

_LOGGER = logging.getLogger("sd_utterd")

POLL_MS = 250
"""Poll timeout while a message speaks, so its job is looked up when its events stop coming."""


class _DebugFile:
    """speech-dispatcher's `DEBUG ON FILE`: everything at DEBUG into that file, until `OFF`."""

    def __init__(self) -> None:
        self._handler: logging.Handler | None = None
        self._level = logging.WARNING

    def set_file(self, path: str | None) -> None:
        root = logging.getLogger()
        if self._handler is not None:
            root.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
            root.setLevel(self._level)
        if path is not None:
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter(_FORMAT))
            self._handler = handler
            self._level = root.level
            root.addHandler(handler)
            root.setLevel(logging.DEBUG)


_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _Relay:
    """Owns the link once INIT made it, for the poll loop to watch its sockets."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self.link: ZmqLink | None = None

    def start(self) -> tuple[DaemonLink, ModuleConfig, str]:
        config = load_config(self.config_path)
        endpoint, events_endpoint = endpoints(config)
        self.link = ZmqLink(endpoint, events_endpoint, config.reply_timeout_s)
        try:
            info = self.link.describe()
        except UtterdError as exc:
            return self.link, config, f"utterd not answering yet ({exc.message}); speaks once it is"
        voices = len(info.get("voices", []))
        return self.link, config, f"utterd {info.get('version')} at {endpoint}, {voices} voices"


def _write(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


def run(config_path: Path | None) -> int:
    """The module's life, from INIT to QUIT (or until speech-dispatcher goes away)."""
    relay = _Relay(config_path)
    debug = _DebugFile()
    session = ModuleSession(relay.start, _write, set_debug_file=debug.set_file)
    stdin = sys.stdin.fileno()
    poller = zmq.Poller()
    poller.register(stdin, zmq.POLLIN)
    watched: ZmqLink | None = None
    pending = b""
    try:
        while not session.finished:
            if relay.link is not None and watched is None:
                watched = relay.link
                poller.register(watched.events, zmq.POLLIN)
                poller.register(watched.monitor, zmq.POLLIN)
            ready = dict(poller.poll(POLL_MS if session.speaking else None))
            if watched is not None:
                while (connected := watched.next_connection_change()) is not None:
                    session.on_connection(connected)
                while (event := watched.next_event()) is not None:
                    session.on_event(*event)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if not data:
                    _LOGGER.info("event=speechd-gone")
                    session.close()
                    return 2
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    session.feed(line.decode("utf-8", errors="replace"))
                    if session.finished:
                        break
            session.tick()
        return session.exit_code
    finally:
        if relay.link is not None:
            relay.link.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sd_utterd [MODULE_CONFIG]`."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format=_FORMAT)
    if args and args[0] in ("-h", "--help"):
        sys.stderr.write(
            "usage: sd_utterd [MODULE_CONFIG]\n"
            "A speech-dispatcher output module: speech-dispatcher starts it (see utterd's\n"
            "docs/operations.md, 'Orca and speech-dispatcher') and talks to it on stdin/stdout.\n"
        )
        return 0
    try:
        return run(Path(args[0]).expanduser() if args and args[0] else None)
    except (KeyboardInterrupt, BrokenPipeError):
        return 2


if __name__ == "__main__":
    sys.exit(main())
