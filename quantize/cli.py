"""`utterd quantize VOICE`: the command's logic, for the daemon's CLI to dispatch to.

    utterd quantize en_US-joe-medium [--calibration-sentences N] [--wer] [--backends ...]
    utterd quantize zh_CN-baker-fastspeech2 [--threads N] [--speed-rounds N]

Prints a progress bar while it works, then a table of the variants with their quality and
speed figures, which one each backend setting will use, and why any variant was refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from utterd.models.errors import UtterdError
from utterd.models.model_store import ModelStore, default_model_store_dir
from utterd.models.piper.family import PiperFamily
from utterd.models.zh.family import VOICE_ID as ZH_VOICE_ID
from utterd.quantize.logs import setup_logging
from utterd.quantize.pipeline import BACKENDS, QuantizeOptions, QuantizeReport, quantize_voice
from utterd.quantize.progress import BarProgress
from utterd.quantize.quality import QualityThresholds
from utterd.quantize.scope import DEFAULT_SCOPES, SCOPES
from utterd.quantize.texts import CALIBRATION_FILE, INTELLIGIBILITY_FILE, VALIDATION_FILE

DEFAULT_VOICE_FOLDERS: Final = ("~/.local/share/utterd/voices", "/var/lib/utterd/voices")
"""The voice folders of the default configuration (config.yaml `voices.folders`)."""

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2


def build_parser(prog: str = "utterd quantize") -> argparse.ArgumentParser:
    """The command's options (also usable as a subparser's template)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Make INT8 variants of a Piper voice, gate them on this machine "
        "(quality against FP32, speed against FP32) and record them in the model store.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to `parser` (for a `quantize` subparser)."""
    parser.add_argument("voice", help="voice id, e.g. en_US-joe-medium")
    parser.add_argument(
        "--voices-folder",
        action="append",
        type=Path,
        default=None,
        help="folder searched for Piper voices (repeatable; default: the configured defaults)",
    )
    parser.add_argument(
        "--model-store",
        type=Path,
        default=None,
        help=f"where variants and the manifest go (default: {default_model_store_dir()})",
    )
    parser.add_argument(
        "--calibration",
        default=CALIBRATION_FILE,
        help="calibration text file, one utterance a line (default: the shipped set)",
    )
    parser.add_argument(
        "--calibration-sentences",
        type=int,
        default=None,
        help="use only the first N calibration lines (default: all; more is slower)",
    )
    parser.add_argument(
        "--validation",
        default=VALIDATION_FILE,
        help="held-out validation text for the gates (default: the shipped set)",
    )
    parser.add_argument(
        "--validation-sentences", type=int, default=None, help="use only the first N lines"
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated backends to make variants for (default: %(default)s)",
    )
    parser.add_argument(
        "--scope",
        choices=sorted(SCOPES),
        default=None,
        help="layers quantized statically, for every backend (default: per backend, "
        + ", ".join(f"{b} {s}" for b, s in DEFAULT_SCOPES.items())
        + "; see docs/quantization.md)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="intra-op threads (default: physical cores)"
    )
    parser.add_argument(
        "--speed-rounds", type=int, default=3, help="interleaved timing rounds (default: 3)"
    )
    parser.add_argument(
        "--wer",
        action="store_true",
        help="also gate on Whisper tiny.en word error rate (needs utterd[eval])",
    )
    parser.add_argument(
        "--wer-text",
        default=INTELLIGIBILITY_FILE,
        help="text the word error rates are measured on (default: the shipped set, 60 lines)",
    )
    parser.add_argument(
        "--wer-sentences", type=int, default=None, help="use only the first N --wer-text lines"
    )


def options_from_args(args: argparse.Namespace) -> QuantizeOptions:
    """QuantizeOptions from parsed arguments."""
    backends = tuple(b.strip() for b in str(args.backends).split(",") if b.strip())
    return QuantizeOptions(
        calibration=args.calibration,
        calibration_sentences=args.calibration_sentences,
        validation=args.validation,
        validation_sentences=args.validation_sentences,
        scope=args.scope,
        backends=backends,
        threads=args.threads,
        speed_rounds=args.speed_rounds,
        wer=args.wer,
        wer_text=args.wer_text,
        wer_sentences=args.wer_sentences,
        thresholds=QualityThresholds(),
    )


def run(args: argparse.Namespace) -> int:
    """Run the command for parsed arguments; prints the report. Returns the exit code: a bad
    option or file is a usage error, a voice that cannot be quantized an error, one line each."""
    try:
        return _run(args)
    except (ValueError, OSError) as err:
        print(f"utterd quantize: {err}", file=sys.stderr)
        return EXIT_USAGE
    except UtterdError as err:
        print(f"utterd quantize: {err.message}", file=sys.stderr)
        return EXIT_ERROR


def _run(args: argparse.Namespace) -> int:
    folders = [Path(f).expanduser() for f in (args.voices_folder or DEFAULT_VOICE_FOLDERS)]
    store = ModelStore(args.model_store) if args.model_store is not None else ModelStore()
    if args.voice == ZH_VOICE_ID:
        return _run_zh(args, store)
    family = PiperFamily(model_store=store)
    voices = {info.voice_id: info for info in family.discover(folders)}
    info = voices.get(args.voice)
    if info is None:
        known = ", ".join(sorted(voices)) or "none"
        print(f"utterd quantize: no Piper voice {args.voice!r}; known: {known}", file=sys.stderr)
        return EXIT_USAGE
    report = quantize_voice(info, store, options_from_args(args), BarProgress())
    print(format_report(report))
    return EXIT_OK


def _run_zh(args: argparse.Namespace, store: ModelStore) -> int:
    """The Chinese voice: FastSpeech2's INT8 variant through the same quantizer and gates
    (`utterd.quantize.zh`; its own calibration and validation texts, so the text options of
    the Piper path do not apply)."""
    from utterd.quantize.zh import quantize_zh

    report = quantize_zh(store, threads=args.threads, speed_rounds=args.speed_rounds)
    for variant in report.manifest.variants:
        outcome = "passed" if variant.passed else "refused: " + "; ".join(variant.reasons)
        print(f"{variant.name}: {outcome}")
    print(f"manifest: {report.manifest_path} ({report.seconds:.1f} s)")
    return EXIT_OK


def format_report(report: QuantizeReport) -> str:
    """The table the command prints."""
    manifest = report.manifest
    source_bytes = manifest.source.size_bytes
    lines = [
        f"voice {manifest.voice_id}: manifest {report.manifest_path}",
        (
            f"CPU {manifest.machine['cpu']['model_name']} "
            f"({', '.join(manifest.machine['cpu']['features']) or 'no SIMD features listed'}), "
            f"{manifest.machine['threads']} threads; calibration "
            f"{manifest.calibration['sentences']} lines, validation "
            f"{manifest.validation['sentences']} lines"
        ),
        "",
        (
            f"{'variant':<18}{'size':>7}{'log-mel dB':>12}{'duration':>14}{'WER':>7}"
            f"{'rtf':>8}{'vs fp32':>9}  result"
        ),
    ]
    for variant in manifest.variants:
        size = sum(f.size_bytes for f in variant.files) or source_bytes
        quality = variant.quality
        mel = (
            f"{quality.logmel_distance_db_mean:.2f}/{quality.logmel_distance_db_max:.2f}"
            if quality
            else "-"
        )
        duration = (
            f"{quality.duration_ratio_min:.3f}..{quality.duration_ratio_max:.3f}"
            if quality
            else "-"
        )
        wer = f"{100 * quality.wer:.1f}" if quality and quality.wer is not None else "-"
        rtf = f"{variant.speed.rtf:.4f}" if variant.speed else "-"
        speedup = f"{variant.speed.speedup:.2f}x" if variant.speed else "-"
        result = "pass" if variant.passed else "FAIL: " + "; ".join(variant.reasons)
        lines.append(
            f"{variant.name:<18}{100 * size / source_bytes:>6.0f}%{mel:>12}{duration:>14}"
            f"{wer:>7}{rtf:>8}{speedup:>9}  {result}"
        )
    wer_info = manifest.validation.get("wer") or {}
    if wer_info.get("unavailable"):
        lines.append(f"\nWER check not run: {wer_info['unavailable']}")
    elif wer_info.get("run"):
        text = wer_info["text"]
        lines.append(
            f"\nWER (Whisper tiny.en) on {text['file']}: {text['sentences']} lines, "
            f"{text['words']} words; FP32 {100 * wer_info['fp32_wer']:.1f} %"
        )
    lines.append("")
    for backend, name in report.chosen.items():
        lines.append(f"backend {backend}: {name}")
    lines.append(f"\ndone in {report.wall_s:.0f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`utterd quantize ...` with `argv` the arguments after `quantize`. Returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(logging.WARNING)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
