"""A session that answers a request on ONNX Runtime when its primary backend fails on it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from utterd.models.engine.session import ONNXRUNTIME, Feeds, Session
from utterd.models.errors import SynthesisError, VoiceLoadError
from utterd.models.voice import CancelToken

__all__ = ["FallbackSession"]

_LOGGER = logging.getLogger(__name__)


class FallbackSession(Session):
    """Runs `primary`; when it fails on a request, runs that request on a fallback session.

    The fallback (ONNX Runtime) is opened on the first failure only, so a healthy OpenVINO voice
    does not pay its memory. A failure is an exception, an empty first output or a non-finite
    value in it (OpenVINO in the wrong precision has produced both without raising).
    """

    def __init__(self, primary: Session, open_fallback: Callable[[], Session]) -> None:
        self._primary = primary
        self._open_fallback = open_fallback
        self._fallback: Session | None = None
        self._lock = threading.Lock()
        self.label = primary.label
        self.backend = primary.backend
        self.fallbacks = 0
        """Requests the fallback answered."""

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._primary.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._primary.output_names

    @property
    def primary(self) -> Session:
        """The session tried first."""
        return self._primary

    def run(
        self,
        output_names: Sequence[str] | None,
        feeds: Feeds,
        cancel: CancelToken | None = None,
    ) -> list[npt.NDArray[Any]]:
        try:
            outputs = self._primary.run(output_names, feeds, cancel)
            problem = _output_problem(outputs)
        except SynthesisError as err:
            problem = err.message
        if problem is None:
            return outputs
        fallback = self._fallback_session(problem)
        with self._lock:
            self.fallbacks += 1
        _LOGGER.warning(
            "backend_fallback label=%s from=%s to=%s reason=%s",
            self.label,
            self._primary.backend,
            fallback.backend,
            problem,
        )
        return fallback.run(output_names, feeds, cancel)

    def _fallback_session(self, problem: str) -> Session:
        with self._lock:
            if self._fallback is None:
                try:
                    self._fallback = self._open_fallback()
                except VoiceLoadError as err:
                    raise SynthesisError(
                        f"{self.label}: {self._primary.backend} failed ({problem}) and the "
                        f"fallback could not be opened: {err.message}"
                    ) from err
            return self._fallback

    def close(self) -> None:
        self._primary.close()
        with self._lock:
            if self._fallback is not None:
                self._fallback.close()
                self._fallback = None

    def runtime_info(self) -> dict[str, Any]:
        info = self._primary.runtime_info()
        info["fallback_backend"] = ONNXRUNTIME
        info["fallbacks"] = self.fallbacks
        return info


def _output_problem(outputs: Sequence[npt.NDArray[Any]]) -> str | None:
    """Why a graph's outputs are unusable, or None when they look sane."""
    if not outputs or outputs[0].size == 0:
        return "empty output"
    first = outputs[0]
    if np.issubdtype(first.dtype, np.floating) and not np.isfinite(first).all():
        return "non-finite values in the output"
    return None
