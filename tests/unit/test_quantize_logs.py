"""`utterd quantize`'s log: utterd's own lines and the summary table stay, NNCF's per-node INFO
lines (1,446 of a 1,814-line setup log) and other libraries' INFO go.

Each case runs the real command-line entry in a subprocess (logging is process-wide), with the
quantization itself replaced by a stand-in that imports NNCF as the OpenVINO quantizer does and
logs one record of each kind; no model is quantized.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("nncf")

_STAND_IN = textwrap.dedent(
    """
    import logging, sys
    from utterd.quantize import cli as quantize_cli

    def stand_in(args):
        import nncf  # as quantize/ov_int8.py does, after logging is set up
        logging.getLogger("nncf").info("NNCF-PER-NODE-LINE")
        logging.getLogger("nncf").warning("NNCF-WARNING-LINE")
        logging.getLogger("openvino").info("OPENVINO-INFO-LINE")
        logging.info("ROOT-INFO-LINE")  # onnxruntime.quantization logs through the root logger
        logging.getLogger("utterd.quantize.pipeline").warning("UTTERD-WARNING-LINE")
        logging.getLogger("utterd.quantize.pipeline").info("UTTERD-INFO-LINE")
        print("SUMMARY-TABLE")
        return 0

    quantize_cli.run = stand_in
    entry = sys.argv[1]
    if entry == "utterd":
        from utterd.daemon.cli import main
        sys.exit(main(["--config", sys.argv[2], "quantize", "en_US-joe-medium"]))
    sys.exit(quantize_cli.main(["en_US-joe-medium"]))
    """
)


def _run(entry: str, tmp_path: Path) -> str:
    config = tmp_path / "config.yaml"
    config.write_text("log_level: INFO\n")
    r = subprocess.run(
        [sys.executable, "-c", _STAND_IN, entry, str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


@pytest.mark.parametrize("entry", ["utterd", "utterd.quantize.cli"])
def test_third_party_info_is_quiet_and_utterds_lines_stay(entry: str, tmp_path: Path) -> None:
    out = _run(entry, tmp_path)
    assert "SUMMARY-TABLE" in out
    assert "UTTERD-WARNING-LINE" in out
    assert "NNCF-WARNING-LINE" in out, "warnings of other libraries still show"
    for quiet in ("NNCF-PER-NODE-LINE", "OPENVINO-INFO-LINE", "ROOT-INFO-LINE"):
        assert quiet not in out, (quiet, out)
    if entry == "utterd":  # log_level INFO: utterd's own INFO lines show
        assert "UTTERD-INFO-LINE" in out
