"""hibari's DSP on pocketfft loaded alone: the same bits as scipy.fft, without importing it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.fft
from utterd.models.hibari import fft


@pytest.fixture(scope="module")
def stand_in() -> object:
    pocketfft = fft._load_pocketfft()
    assert pocketfft is not None, "scipy's pocketfft module should be found"
    return fft.stand_in(pocketfft)


@pytest.mark.parametrize("shape", [(1, 1200), (37, 1200), (560, 1200), (1200, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rfft_and_irfft_are_scipys_bit_for_bit(
    stand_in: object, shape: tuple[int, int], dtype: type
) -> None:
    rng = np.random.default_rng(sum(shape))
    frames = rng.standard_normal(shape).astype(dtype)
    axis = 1 if shape[1] == 1200 else 0
    ours = stand_in.rfft(frames.copy(), axis=axis, overwrite_x=True)  # type: ignore[attr-defined]
    theirs = scipy.fft.rfft(frames.copy(), axis=axis, overwrite_x=True)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    back = stand_in.irfft(theirs, n=1200, axis=axis)  # type: ignore[attr-defined]
    assert np.array_equal(back, scipy.fft.irfft(theirs, n=1200, axis=axis))


def test_wrong_inputs_are_refused(stand_in: object) -> None:
    with pytest.raises(TypeError):
        stand_in.rfft(np.zeros((2, 8), np.complex64), axis=1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        stand_in.irfft(np.zeros((2, 8), np.complex64), n=1200, axis=1)  # type: ignore[attr-defined]


def test_hibari_imported_without_scipy_fft_speaks_as_with_it() -> None:
    """In a fresh process: hibari imported through import_hibari leaves scipy.fft (and what it
    drags in) unimported, and its DSP gives the same audio as in this process, where hibari
    runs on the real scipy.fft."""
    code = """
import json, sys
import numpy as np
from utterd.models.hibari.fft import import_hibari
import_hibari()
import hibari.dsp
heavy = [m for m in ("scipy.fft", "scipy.special", "unittest", "numpy.f2py") if m in sys.modules]
rng = np.random.default_rng(7)
parts = list(rng.standard_normal((5, 601, 40)).astype(np.float32))
f0 = np.abs(rng.standard_normal(40)).astype(np.float32) * 200
audio = hibari.dsp.synth(*parts, f0, np.random.default_rng(0))
print(json.dumps({"heavy": heavy, "audio": audio.tobytes().hex()}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    out = json.loads(done.stdout)
    assert out["heavy"] == []
    import hibari.dsp

    rng = np.random.default_rng(7)
    parts = list(rng.standard_normal((5, 601, 40)).astype(np.float32))
    f0 = np.abs(rng.standard_normal(40)).astype(np.float32) * 200
    audio = hibari.dsp.synth(*parts, f0, np.random.default_rng(0))
    assert len(audio) > 0
    assert bytes.fromhex(out["audio"]) == audio.tobytes()


def test_an_imported_scipy_fft_is_left_alone() -> None:
    code = """
import sys
import scipy.fft
from utterd.models.hibari.fft import import_hibari
import_hibari()
import hibari.dsp
print(hibari.dsp._sf is scipy.fft)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "True"
