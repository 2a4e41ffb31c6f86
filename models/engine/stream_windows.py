"""How a sentence's frames are cut into windows for streaming: small first, then doubling.

Shared by the Piper VITS decoder (`piper/vits_stream.py`) and hibari's signal stage (`hibari/stream.py`):
the first window is small so the first piece leaves early; each later window doubles up to a
largest size, so that every window is computed well within the playing time of those before it
while the fixed cost per window (a model call, the context at each seam) stays small.
"""

from __future__ import annotations

from utterd.models.errors import InvalidParameter


def window_plan(frames: int, first_window_frames: int, window_frames: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges covering `frames`: first window small, then doubling.

    A remainder shorter than half the first window is merged into the window before it, since a
    call on a sliver costs the same fixed overhead as a full window.
    """
    if first_window_frames < 1 or window_frames < first_window_frames:
        raise InvalidParameter(
            f"need 1 <= first_window_frames <= window_frames, got {first_window_frames} and "
            f"{window_frames}"
        )
    plan: list[tuple[int, int]] = []
    start, size = 0, first_window_frames
    min_tail = max(1, first_window_frames // 2)
    while start < frames:
        end = min(frames, start + size)
        if frames - end < min_tail:
            end = frames
        plan.append((start, end))
        start, size = end, min(window_frames, size * 2)
    return plan
