"""A folder of cached files (a model's split parts and their info), published all at once.

The files are written into a temporary sibling folder, synced, and the folder is renamed into
place, so a reader sees the whole folder or none of it; the last file (the info file) is written
last, so a folder without it is never taken for complete. Used by `piper/vits_split.py` and
`hibari/split.py`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path


def publish_folder(folder: Path, files: Sequence[tuple[str, bytes]]) -> None:
    """Write `files` (name, payload) as `folder`, replacing what was there; OSError if it
    cannot be written (nothing is left behind then)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for name, payload in files:
            with (staging / name).open("wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
        if folder.exists():
            # A stale or broken entry (its reader refused it before we got here).
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
