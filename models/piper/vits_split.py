"""Cut a stock Piper VITS `.onnx` graph into an encoder part and a windowed decoder part.

The stock graph runs text encoder → stochastic duration predictor → length regulator → prior
sample `z_p` → normalizing flow → HiFi-GAN generator, all in one call, so the first sample of a
sentence exists only once the whole sentence is synthesized. The flow and the generator are stacks
of 1-D convolutions with a bounded receptive field, so they can run on a window of frames with a
little context on each side and give the same samples as the whole-sentence run. We cut:

- **encoder**: the stock inputs (`input`, `input_lengths`, `scales`, `sid` for multi-speaker
  voices) → `latent` [1, C, frames] and `durations` [1, 1, phonemes] (frames per phoneme id);
- **decoder**: a window of `latent` frames → `audio`, shaped like the stock output
  ([1, 1, 1, frames · hop] for Piper).

Where the cut lies is a choice (`flow_in_decoder`). By default the flow goes to the decoder side:
`latent` is the prior sample `z_p` and the decoder graph runs flow + generator, with a `trim` input
[left, right] that drops the flow's context frames before the generator. The flow costs about as
much as the text encoder on a whole sentence, so leaving it in the encoder would double the time to
first audio of long sentences. With `flow_in_decoder=False`, `latent` is the generator's own input
(`z` after the flow) and the decoder graph is the generator alone.

Everything is found by graph structure, not by node names (old and new Piper exports name nodes
differently): the generator starts at the convolution before its first `ConvTranspose`, the
prior sample is the sum fed by the graph's last `RandomNormalLike`, and the durations are the one
`Ceil` output (as in `piper.patch_voice_with_alignment`). The receptive fields of both windowed
stages are computed from the convolution attributes; an op that could mix frames from afar (an
attention, a reshape of the time axis, a reduction) makes the split fail with `VoiceLoadError`.

Beside the windowed decoder, the split makes a stateful one (`vits_stateful.py`: flow and
generator keep each convolution's past input between calls instead of recomputing context at
every seam), when both are plain stacks of 1-D convolutions; `stateful=True` asks for it.

Split models are cached in a folder, keyed by the source file's sha256, so the cut (about a
second of protobuf work for a 60 MB model, and the `onnx` package) happens once per model, not at
every start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from utterd.models.engine.cache_folder import publish_folder
from utterd.models.errors import VoiceLoadError
from utterd.models.piper.split_info import (
    AUDIO,
    DURATIONS,
    LATENT,
    SPEAKER_INPUT,
    SPLIT_FORMAT_VERSION,
    TRIM,
    SplitInfo,
)
from utterd.models.piper.vits_cut import cut_vits

__all__ = [
    "AUDIO",
    "DURATIONS",
    "LATENT",
    "SPEAKER_INPUT",
    "SPLIT_FORMAT_VERSION",
    "TRIM",
    "SplitInfo",
    "file_sha256",
    "split_vits",
    "split_vits_files",
]

_LOGGER = logging.getLogger(__name__)

_INFO_FILE: Final = "split.json"
_ENCODER_FILE: Final = "encoder.onnx"
_DECODER_FILE: Final = "decoder.onnx"
_STATEFUL_FILE: Final = "decoder-stateful.onnx"
_HASH_BLOCK_BYTES: Final = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as model_file:
        while block := model_file.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def split_vits(
    model: Path | str | bytes,
    cache_dir: Path | str | None = None,
    *,
    flow_in_decoder: bool = True,
    stateful: bool = False,
) -> tuple[bytes, bytes, SplitInfo]:
    """Cut a Piper VITS model (a file or its bytes) into (encoder bytes, decoder bytes, info).

    With `stateful`, the decoder is the stateful one when the split could make it
    (`info.stateful_lag_samples` is not None), else the windowed one.

    With `cache_dir`, the parts are read from `cache_dir/<sha256>/vits-split-v<N>-<cut>/` when
    they are there and written there otherwise (atomically: a temporary folder renamed into
    place). Raises VoiceLoadError naming the model and what was not found when the graph is not a
    VITS graph with the expected structure.
    """
    label, source_bytes, source_path = _source(model)
    if source_path is not None and not source_path.is_file():
        raise VoiceLoadError(f"cannot split model {source_path}: no such file")
    if source_bytes is not None:
        sha256 = hashlib.sha256(source_bytes).hexdigest()
        read_source: Callable[[], bytes] = lambda: source_bytes
    else:
        assert source_path is not None
        sha256 = (
            _known_sha256(source_path, Path(cache_dir)) if cache_dir else file_sha256(source_path)
        )
        read_source = source_path.read_bytes
    if not cache_dir:
        encoder, windowed, stateful_part, info = cut_vits(
            read_source(), label, sha256, flow_in_decoder
        )
        return encoder, stateful_part if stateful and stateful_part else windowed, info
    encoder_part, decoder_part, info = _cached_split(
        label, read_source, sha256, Path(cache_dir), flow_in_decoder, stateful
    )
    return _as_bytes(encoder_part), _as_bytes(decoder_part), info


def split_vits_files(
    model: Path | str,
    cache_dir: Path | str,
    *,
    flow_in_decoder: bool = True,
    stateful: bool = False,
) -> tuple[Path | bytes, Path | bytes, SplitInfo]:
    """Like `split_vits`, but the parts as the paths of their cached files where possible.

    For opening the parts from files: ONNX Runtime's Python session keeps the bytes it was
    given for as long as it lives (about the model's size again, per instance of the voice),
    and only a path when given one. Splits and caches the model when it is not cached yet; the
    parts come as bytes only when the cache cannot be written. Raises VoiceLoadError like
    `split_vits`.
    """
    path = Path(model)
    if not path.is_file():
        raise VoiceLoadError(f"cannot split model {path}: no such file")
    sha256 = _known_sha256(path, Path(cache_dir))
    return _cached_split(
        str(path), path.read_bytes, sha256, Path(cache_dir), flow_in_decoder, stateful
    )


def _cached_split(
    label: str,
    read_source: Callable[[], bytes],
    sha256: str,
    cache_dir: Path,
    flow_in_decoder: bool,
    stateful: bool,
) -> tuple[Path | bytes, Path | bytes, SplitInfo]:
    """The parts' cached files, made (and cached) first when missing or unusable; the parts
    as bytes when the cache cannot be written."""
    folder = _cache_folder(cache_dir, sha256, flow_in_decoder)
    found = _check_cache(folder, sha256)
    if found is None:
        encoder, windowed, stateful_part, info = cut_vits(
            read_source(), label, sha256, flow_in_decoder
        )
        _write_cache(folder, encoder, windowed, stateful_part, info)
        found = _check_cache(folder, sha256)
        if found is None:  # not written (read-only or full): the bytes, then
            return encoder, stateful_part if stateful and stateful_part else windowed, info
        del encoder, windowed, stateful_part  # read back from the files by whoever needs them
    else:
        _LOGGER.debug("vits_split_cache_hit model=%s folder=%s", label, folder)
    info, encoder_path, decoder_path = found
    if stateful and info.stateful_lag_samples is not None:
        decoder_path = folder / _STATEFUL_FILE
    return encoder_path, decoder_path, info


def _as_bytes(part: Path | bytes) -> bytes:
    return part.read_bytes() if isinstance(part, Path) else part


_HASHES_FILE: Final = "source-hashes.json"


def _known_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of `path`, remembered in `cache_dir` by the file's identity and modification.

    Hashing joe's 60 MB took ~100 ms of every start. The model store trusts size and mtime the
    same way for its manifests' sources (docs/quantization.md); any write to the file changes
    its mtime, and a new file at the same path changes its inode too.
    """
    try:
        st = path.stat()
    except OSError:
        return file_sha256(path)
    key = str(path.resolve())
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]
    memo_path = cache_dir.expanduser() / _HASHES_FILE
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        known = entry.get("sha256")
        if isinstance(known, str) and len(known) == 64:
            return known
    sha256 = file_sha256(path)
    memo[key] = {"stamp": stamp, "sha256": sha256}
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        staging = memo_path.with_name(f".{_HASHES_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
        staging.write_text(json.dumps(memo, indent=1), encoding="utf-8")
        os.replace(staging, memo_path)
    except OSError as err:  # a read-only cache: hash again next time
        _LOGGER.info("vits_split_hash_not_kept folder=%s reason=%r", memo_path.parent, err)
    return sha256


def _source(model: Path | str | bytes) -> tuple[str, bytes | None, Path | None]:
    if isinstance(model, bytes):
        return f"(in-memory model, {len(model)} bytes)", model, None
    path = Path(model)
    return str(path), None, path


def _cache_folder(cache_dir: Path, sha256: str, flow_in_decoder: bool) -> Path:
    cut = "flow-in-decoder" if flow_in_decoder else "flow-in-encoder"
    return cache_dir.expanduser() / sha256 / f"vits-split-v{SPLIT_FORMAT_VERSION}-{cut}"


def _check_cache(folder: Path, sha256: str) -> tuple[SplitInfo, Path, Path] | None:
    """The cached parts' info and files, or None when absent or unusable.

    Checks the recorded source hash, format version and file sizes (a truncated part is
    made again), without reading the parts.
    """
    encoder_path, decoder_path = folder / _ENCODER_FILE, folder / _DECODER_FILE
    stateful_path = folder / _STATEFUL_FILE
    try:
        data = json.loads((folder / _INFO_FILE).read_text(encoding="utf-8"))
        info = SplitInfo.from_json(data["info"])
        sizes = (
            encoder_path.stat().st_size,
            decoder_path.stat().st_size,
            stateful_path.stat().st_size if info.stateful_lag_samples is not None else None,
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        _LOGGER.warning("vits_split_cache_unusable folder=%s reason=%r", folder, err)
        return None
    if info.source_sha256 != sha256 or info.format_version != SPLIT_FORMAT_VERSION:
        _LOGGER.warning("vits_split_cache_stale folder=%s", folder)
        return None
    expected = (data.get("encoder_bytes"), data.get("decoder_bytes"), data.get("stateful_bytes"))
    if sizes != expected:
        _LOGGER.warning("vits_split_cache_truncated folder=%s", folder)
        return None
    return info, encoder_path, decoder_path


def _write_cache(
    folder: Path, encoder: bytes, decoder: bytes, stateful: bytes | None, info: SplitInfo
) -> None:
    """Write the parts and their info as `folder` (`cache_folder.publish_folder`).

    A failure to write is logged, not raised: the voice still works, it just splits again next time.
    """
    meta = {
        "info": info.to_json(),
        "encoder_bytes": len(encoder),
        "decoder_bytes": len(decoder),
        "stateful_bytes": None if stateful is None else len(stateful),
    }
    files = [(_ENCODER_FILE, encoder), (_DECODER_FILE, decoder)]
    if stateful is not None:
        files.append((_STATEFUL_FILE, stateful))
    try:
        publish_folder(folder, [*files, (_INFO_FILE, json.dumps(meta, indent=2).encode("utf-8"))])
    except OSError as err:
        _LOGGER.warning("vits_split_cache_write_failed folder=%s reason=%r", folder, err)
        return
    _LOGGER.info("vits_split_cached folder=%s", folder)
    _drop_older_versions(folder)


def _drop_older_versions(folder: Path) -> None:
    """Remove the same model's parts cut by older code (`vits-split-v<N>-...`, N older), with
    the optimized graphs kept in them: no code of this version reads them, and a voice's parts
    are tens of MB. Also the folder where code before format 3 kept every voice's optimized
    parts (`<cache>/optimized`): those graphs are now kept beside their parts."""
    current = f"vits-split-v{SPLIT_FORMAT_VERSION}-"
    legacy = folder.parent.parent / "optimized"
    if legacy.is_dir():
        shutil.rmtree(legacy, ignore_errors=True)
        _LOGGER.info("vits_split_cache_dropped folder=%s (older layout)", legacy)
    try:
        siblings = list(folder.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        name = sibling.name
        if name.startswith("vits-split-v") and not name.startswith(current) and sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)
            _LOGGER.info("vits_split_cache_dropped folder=%s (older format)", sibling)
