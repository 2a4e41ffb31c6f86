"""Progress reporting for the long steps of quantization (calibration, gates, timing)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

_LOGGER = logging.getLogger(__name__)


class Progress(Protocol):
    """Receives the quantizer's progress; the CLI draws a bar, the library only logs."""

    def stage(self, name: str, total: int | None) -> None:
        """A new step starts; `total` units of work (None when unknown)."""

    def advance(self, units: int = 1) -> None:
        """Some units of the current step are done."""

    def close(self) -> None:
        """No more steps."""


class LogProgress:
    """Logs each step's start; the default when nobody watches."""

    def stage(self, name: str, total: int | None) -> None:
        _LOGGER.info("quantize_stage name=%s total=%s", name, total)

    def advance(self, units: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress:
    """A tqdm progress bar per step, on stderr; falls back to log lines without tqdm."""

    def __init__(self) -> None:
        self._bar: Any = None
        try:
            from tqdm import tqdm
        except ImportError:
            self._tqdm: Any = None
        else:
            self._tqdm = tqdm

    def stage(self, name: str, total: int | None) -> None:
        self.close()
        if self._tqdm is None:
            _LOGGER.warning("quantize_stage name=%s total=%s", name, total)
            return
        self._bar = self._tqdm(total=total, desc=name, unit="step", dynamic_ncols=True)

    def advance(self, units: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(units)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
