"""pytest plugin for the part of the suite that runs on emulated arm64 (.ci/arm64/run.sh).

Loaded with `-p pytest_arm64` (run.sh puts this folder on PYTHONPATH); the tests themselves are
unchanged. Under qemu, Python runs 10-40 times slower than on the host, so Hypothesis's
per-example deadline (200 ms) and its too-slow health check would measure the emulator, not the
code: both are off. Everything the tests assert stays as it is.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "arm64-emulated", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("arm64-emulated")
