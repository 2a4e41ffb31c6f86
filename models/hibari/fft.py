"""hibari's DSP with scipy's pocketfft loaded alone, not all of `scipy.fft`.

`hibari.dsp` takes two functions from `scipy.fft` (`rfft` and `irfft`, float32, 3-5x faster than
numpy's). Importing `scipy.fft` also imports scipy.special, scipy's array-API layer and through
it numpy.testing, unittest, pydoc and numpy.f2py: 25 MiB of a daemon that has 120 MiB on a
512 MB board, and 0.25-0.4 s of its start (bench/bench_memory.py, docs/benchmarks.md "Memory and
ready time"). Both functions are one call each into scipy's compiled pocketfft module
(`scipy/fft/_pocketfft/pypocketfft*.so`), which loads on its own in a millisecond.

`import_hibari` imports hibari with a stand-in `scipy.fft` module in `sys.modules` for the
duration of that import only: `hibari.dsp` keeps the stand-in, whose `rfft` / `irfft` make
exactly the pocketfft calls scipy's own functions make for these arguments (real float32 in,
default norm, one worker), so the audio is bit for bit the same
(tests/unit/test_hibari_fft.py). Anything importing `scipy.fft` later gets the real one.
When scipy.fft is already imported, or pocketfft's file is not where scipy keeps it, hibari is
imported as it is.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import sys
import types
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

_POCKETFFT: Final = "scipy.fft._pocketfft.pypocketfft"
"""The compiled module's full name (its init function is named after the last part)."""

_NORM_BACKWARD_FORWARD: Final = 0
_NORM_BACKWARD_INVERSE: Final = 2
"""pocketfft's normalization codes for scipy's default norm ("backward"): none on the forward
transform, 1/n on the inverse."""


def _load_pocketfft() -> Any:
    """scipy's compiled pocketfft module, loaded from its file; None if it cannot be found."""
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "fft" / "_pocketfft"
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"pypocketfft{suffix}"
        if path.is_file():
            loader = importlib.machinery.ExtensionFileLoader(_POCKETFFT, str(path))
            module_spec = importlib.util.spec_from_file_location(_POCKETFFT, path, loader=loader)
            if module_spec is None:
                return None
            module = importlib.util.module_from_spec(module_spec)
            loader.exec_module(module)
            return module
    return None


def stand_in(pocketfft: Any) -> types.ModuleType:
    """A module with the `rfft` and `irfft` hibari.dsp calls, on `pocketfft`.

    Each is what `scipy.fft.rfft` / `irfft` do for a real (float32 or float64) array, the
    default norm and workers: scipy's dispatch ends in the same single pocketfft call.
    """
    module = types.ModuleType("scipy.fft", "pocketfft's rfft and irfft for hibari.dsp")

    def rfft(
        x: npt.NDArray[np.floating[Any]], axis: int = -1, overwrite_x: bool = False
    ) -> npt.NDArray[np.complexfloating[Any, Any]]:
        del overwrite_x  # scipy ignores it too
        data = np.asarray(x)
        if data.dtype.kind != "f":
            raise TypeError(f"rfft takes a real float array here, not {data.dtype}")
        data = np.array(
            data, dtype=data.dtype.newbyteorder("="), copy=None if data.flags.aligned else True
        )
        return pocketfft.r2c(data, (axis,), True, _NORM_BACKWARD_FORWARD, None, 1)  # type: ignore[no-any-return]

    def irfft(
        x: npt.NDArray[np.complexfloating[Any, Any]], n: int, axis: int = -1
    ) -> npt.NDArray[np.floating[Any]]:
        data = np.asarray(x)
        if data.dtype.kind != "c":
            raise TypeError(f"irfft takes a complex array here, not {data.dtype}")
        if n < 1 or data.shape[axis] != n // 2 + 1:
            raise ValueError(f"irfft here needs {n // 2 + 1} bins on axis {axis} for n={n}")
        data = np.array(
            data, dtype=data.dtype.newbyteorder("="), copy=None if data.flags.aligned else True
        )
        return pocketfft.c2r(data, (axis,), n, False, _NORM_BACKWARD_INVERSE, None, 1)  # type: ignore[no-any-return]

    module.rfft = rfft  # type: ignore[attr-defined]
    module.irfft = irfft  # type: ignore[attr-defined]
    return module


def import_hibari() -> None:
    """Import `hibari` (and so `hibari.dsp`) with the stand-in `scipy.fft` (see module doc)."""
    if "hibari.dsp" in sys.modules or "scipy.fft" in sys.modules:
        return
    try:
        pocketfft = _load_pocketfft()
    except ImportError as err:
        _LOGGER.debug("event=pocketfft-unavailable reason=%r", err)
        pocketfft = None
    if pocketfft is None:
        return
    module = stand_in(pocketfft)
    sys.modules["scipy.fft"] = module
    try:
        import hibari.dsp  # noqa: F401
    finally:
        if sys.modules.get("scipy.fft") is module:
            del sys.modules["scipy.fft"]
        scipy = sys.modules.get("scipy")  # its __dict__: getattr would import scipy.fft
        if scipy is not None and vars(scipy).get("fft") is module:
            delattr(scipy, "fft")
