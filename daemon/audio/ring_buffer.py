"""A bounded FIFO of int16 mono frames between synthesis and the PortAudio callback.

One producer (the player, on behalf of synthesis threads) appends audio tagged with a job id and,
when a job has no more audio, an end-of-job marker; before each piece of a job's audio it may put
a piece marker, optionally carrying a mark (a sentence start). One consumer (the PortAudio
callback) copies frames out from the head into the device buffer, learns which jobs have had
their last frame handed over and which marks it passed, and can be told to hold at the next piece
marker of a job (pause at a piece boundary, keeping everything after it). The frames live in one preallocated array, so reading never allocates sample memory;
a short lock guards the bookkeeping because `clear()` may come from a third thread.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Final

import numpy as np
import numpy.typing as npt

_NO_JOBS: Final[tuple[str, ...]] = ()


_FRAMES: Final = 0
_END: Final = 1
_PIECE: Final = 2


class _Segment:
    """A run of frames of one job in FIFO order, or a zero-length marker: a job's end, or the
    start of one of its pieces (with an optional mark)."""

    __slots__ = ("frames", "job_id", "kind", "mark")

    def __init__(self, job_id: str, frames: int, kind: int, mark: object = None) -> None:
        self.job_id = job_id
        self.frames = frames
        self.kind = kind
        self.mark = mark


class RingBuffer:
    """Bounded single-producer/single-consumer buffer of int16 mono frames tagged with job ids."""

    def __init__(self, capacity_frames: int) -> None:
        if capacity_frames <= 0:
            raise ValueError(f"capacity_frames must be positive, got {capacity_frames}")
        self._data: npt.NDArray[np.int16] = np.zeros(capacity_frames, dtype=np.int16)
        self._capacity_frames = capacity_frames
        self._lock = threading.Lock()
        self._read_pos = 0
        self._buffered_frames = 0
        self._segments: deque[_Segment] = deque()
        # The job whose audio was appended last and has not been ended: frames after its first
        # unended segment may be followed by more audio, so the consumer must not pad them.
        self._open_job_id: str | None = None
        self._open_frames = 0
        self._last_read_job_id: str | None = None
        self._marks: list[tuple[str, object]] = []
        self._held = False

    @property
    def capacity_frames(self) -> int:
        """Most frames the buffer holds."""
        return self._capacity_frames

    @property
    def buffered_frames(self) -> int:
        """Frames waiting to be read."""
        with self._lock:
            return self._buffered_frames

    @property
    def free_frames(self) -> int:
        """Frames that `write` accepts right now."""
        with self._lock:
            return self._capacity_frames - self._buffered_frames

    @property
    def open_job_id(self) -> str | None:
        """The job that was written to last and has no end marker yet, if any."""
        with self._lock:
            return self._open_job_id

    @property
    def last_read_job_id(self) -> str | None:
        """The job of the last frame `read_into` copied out (None after `clear`)."""
        with self._lock:
            return self._last_read_job_id

    @property
    def ended_frames(self) -> int:
        """Buffered frames that belong to jobs already ended (no more audio follows them)."""
        with self._lock:
            return self._buffered_frames - min(self._open_frames, self._buffered_frames)

    @property
    def held(self) -> bool:
        """The last `read_into` stopped at a piece marker of its `hold_job_id`."""
        with self._lock:
            return self._held

    def take_marks(self) -> list[tuple[str, object]]:
        """(job id, mark) of every mark `read_into` passed since the last call, in order."""
        with self._lock:
            marks, self._marks = self._marks, []
            return marks

    def snapshot(self) -> tuple[int, int, str | None]:
        """(buffered_frames, ended_frames, open_job_id), read together under the lock."""
        with self._lock:
            open_frames = min(self._open_frames, self._buffered_frames)
            return self._buffered_frames, self._buffered_frames - open_frames, self._open_job_id

    def write(self, job_id: str, frames: npt.NDArray[np.int16]) -> int:
        """Append as many of `frames` as fit; return how many were taken (never blocks)."""
        with self._lock:
            count = min(len(frames), self._capacity_frames - self._buffered_frames)
            if count <= 0:
                return 0
            start = (self._read_pos + self._buffered_frames) % self._capacity_frames
            first = min(count, self._capacity_frames - start)
            self._data[start : start + first] = frames[:first]
            if count > first:
                self._data[: count - first] = frames[first:count]
            self._buffered_frames += count
            tail = self._segments[-1] if self._segments else None
            if tail is not None and tail.kind == _FRAMES and tail.job_id == job_id:
                tail.frames += count
            else:
                self._segments.append(_Segment(job_id, count, _FRAMES))
            # Frames after the last end of the open job form the "open run"; if another job was
            # still open its frames stay in the run, as nothing may be padded until both end.
            self._open_job_id = job_id
            self._open_frames += count
            return count

    def end_job(self, job_id: str) -> None:
        """Append the end marker of `job_id`: reported by `read_into` once its frames are read."""
        with self._lock:
            self._segments.append(_Segment(job_id, 0, _END))
            if self._open_job_id == job_id:
                self._open_job_id = None
                self._open_frames = 0

    def start_piece(self, job_id: str, mark: object = None) -> None:
        """Append a piece marker of `job_id`: a place where playback may hold (pause); `mark`,
        if not None, is reported by `take_marks` once the reader passes it."""
        with self._lock:
            self._segments.append(_Segment(job_id, 0, _PIECE, mark))

    def read_into(
        self, out: npt.NDArray[np.int16], hold_job_id: str | None = None
    ) -> tuple[int, tuple[str, ...]]:
        """Fill `out` from the head; return (frames_written, ids of jobs whose end was reached).

        Never pads: frames of `out` past frames_written are left as they were. End and piece
        markers at the head are consumed even when `out` is empty, so a zero-length read reports
        jobs that ended without (more) audio. With `hold_job_id`, reading stops at that job's next
        piece marker, which stays at the head (`held` is then True).
        """
        wanted = len(out)
        written = 0
        finished: list[str] | None = None
        with self._lock:
            self._held = False
            segments = self._segments
            while segments:
                head = segments[0]
                if head.kind == _END:
                    segments.popleft()
                    if finished is None:
                        finished = []
                    finished.append(head.job_id)
                    continue
                if head.kind == _PIECE:
                    if hold_job_id is not None and head.job_id == hold_job_id:
                        self._held = True
                        break
                    segments.popleft()
                    if head.mark is not None:
                        self._marks.append((head.job_id, head.mark))
                    continue
                if written == wanted:
                    break
                count = min(head.frames, wanted - written)
                self._copy_out(out, written, count)
                self._last_read_job_id = head.job_id
                written += count
                head.frames -= count
                if head.frames == 0:
                    segments.popleft()
            self._buffered_frames -= written
            self._open_frames = min(self._open_frames, self._buffered_frames)
        return written, (_NO_JOBS if finished is None else tuple(finished))

    def clear(self) -> None:
        """Drop every frame and marker; the next write starts a fresh FIFO."""
        with self._lock:
            self._segments.clear()
            self._read_pos = 0
            self._buffered_frames = 0
            self._open_job_id = None
            self._open_frames = 0
            self._last_read_job_id = None
            self._marks = []
            self._held = False

    def _copy_out(self, out: npt.NDArray[np.int16], offset: int, count: int) -> None:
        """Copy `count` frames from the read position into out[offset:], wrapping; lock held."""
        start = self._read_pos
        first = min(count, self._capacity_frames - start)
        out[offset : offset + first] = self._data[start : start + first]
        if count > first:
            out[offset + first : offset + count] = self._data[: count - first]
        self._read_pos = (start + count) % self._capacity_frames
