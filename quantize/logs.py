"""Logging for `utterd quantize`: utterd's own lines at the configured level, everyone else's
warnings only.

NNCF logs a line per graph node at INFO (1,446 of a setup log's 1,814 lines), and ONNX Runtime's
quantizer logs at INFO through the root logger; the progress bar and the summary table say what a
user needs. NNCF also sets its own logger to INFO, with its own handler, when it is imported, so
it is imported here first and quietened after.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Final, TextIO

OWN_LOGGER_PREFIX: Final = "utterd"
"""Loggers under this name are utterd's own (`utterd.quantize.pipeline`, ...)."""

THIRD_PARTY_LOGGERS: Final = ("nncf", "openvino", "onnx", "onnxruntime", "whisper", "numba")
"""Libraries the quantizer drives whose loggers are set to WARNING (NNCF's own handler included)."""

_SELF_CONFIGURING: Final = ("nncf",)
"""Libraries that set their logger's level when imported: imported before they are quietened."""


class _OwnOrWarning(logging.Filter):
    """Passes utterd's records at the handler's level, others from WARNING up."""

    def __init__(self, others_level: int) -> None:
        super().__init__()
        self._others_level = others_level

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OWN_LOGGER_PREFIX or record.name.startswith(OWN_LOGGER_PREFIX + ".")
        return own or record.levelno >= self._others_level


def setup_logging(level: int | str, stream: TextIO | None = None) -> None:
    """Log utterd's records at `level` to `stream` (standard error), other libraries' from
    WARNING up (everything at DEBUG). The handler is installed only where logging is not set up
    yet (a command's process); the other libraries' loggers are quietened in any case."""
    numeric = level if isinstance(level, int) else logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    others = logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
    root = logging.getLogger()
    if not root.handlers:  # else whoever embeds the quantizer (a test run) logs its own way
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        handler.addFilter(_OwnOrWarning(others))
        root.addHandler(handler)
        root.setLevel(numeric)
    for name in _SELF_CONFIGURING:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # not installed: nothing of it will log
    for name in THIRD_PARTY_LOGGERS:
        third = logging.getLogger(name)
        third.setLevel(others)
        for own_handler in third.handlers:
            own_handler.setLevel(others)
