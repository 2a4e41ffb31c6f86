"""The CPU features that decide how fast (and whether) INT8 and reduced-precision inference run.

Read once from /proc/cpuinfo (Linux). Reported by `describe` and stored in every quantization
manifest, because a variant measured on one CPU says little about another: INT8 only pays off
with integer dot-product instructions (VNNI, AMX on x86; dotprod on ARM), and bf16 changes results.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CPUINFO_PATH: Final = Path("/proc/cpuinfo")

# /proc/cpuinfo flag → the name we report. Order is the order of the report.
_X86_FLAGS: Final[tuple[tuple[str, str], ...]] = (
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512_bf16", "AVX-512 BF16"),
    ("avx512_fp16", "AVX-512 FP16"),
    ("amx_tile", "AMX"),
    ("amx_int8", "AMX INT8"),
    ("amx_bf16", "AMX BF16"),
)
_ARM_FLAGS: Final[tuple[tuple[str, str], ...]] = (
    ("asimd", "NEON"),
    ("asimddp", "dotprod"),
    ("i8mm", "I8MM"),
    ("bf16", "BF16"),
    ("sve", "SVE"),
)


@dataclass(frozen=True)
class CpuFeatures:
    """What this machine's CPU offers for neural-network inference."""

    model_name: str
    """The CPU's model name (`AMD EPYC 7B13`), or the machine type when the kernel names none."""

    architecture: str
    """`x86_64`, `aarch64`, ... (from `platform.machine()`)."""

    features: tuple[str, ...]
    """The features that matter for inference, by their usual names (`AVX2`, `AVX-512 VNNI`)."""

    logical_cpus: int
    """CPUs the kernel lists (all of them, not only those this process may use)."""

    @property
    def int8_dot_product(self) -> bool:
        """True when the CPU has an integer dot-product instruction INT8 kernels are built on."""
        return any(
            name in self.features
            for name in ("AVX-512 VNNI", "AVX-VNNI", "AMX INT8", "dotprod", "I8MM")
        )

    @property
    def native_bf16(self) -> bool:
        """True when the CPU computes in bf16, which OpenVINO then uses unless told f32."""
        return any(name in self.features for name in ("AVX-512 BF16", "AMX BF16", "BF16"))

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (for `describe` and manifests)."""
        return {
            "model_name": self.model_name,
            "architecture": self.architecture,
            "features": list(self.features),
            "logical_cpus": self.logical_cpus,
            "int8_dot_product": self.int8_dot_product,
        }


def parse_cpuinfo(text: str, architecture: str) -> CpuFeatures:
    """Features from the text of /proc/cpuinfo (the first processor's block is enough)."""
    model_name = ""
    flags: set[str] = set()
    logical_cpus = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "processor":
            logical_cpus += 1
        elif key in ("model name", "cpu model", "hardware") and not model_name:
            model_name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    is_arm = architecture.lower() in ("aarch64", "arm64") or architecture.lower().startswith("arm")
    table = _ARM_FLAGS if is_arm else _X86_FLAGS
    return CpuFeatures(
        model_name=model_name or architecture or "unknown",
        architecture=architecture,
        features=_named(flags, table),
        logical_cpus=max(1, logical_cpus),
    )


def _named(flags: Iterable[str], table: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    present = set(flags)
    return tuple(name for flag, name in table if flag in present)


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's CPU features (read once per process)."""
    architecture = platform.machine() or "unknown"
    try:
        text = CPUINFO_PATH.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text, architecture)
