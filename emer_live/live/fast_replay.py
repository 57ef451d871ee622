"""Replay as fast as the CPU allows (``emer-live live --tracker replay:DIR --camera replay --speed max``).

The plain replay pushes every recorded frame through the camera device - 30 JPEG decodes and a
ring copy of 2.7 MB each per second of 720p video - although the windows read one frame per face
grid time (1 per second with 8 s windows). When nothing records the replay, the windows read the
recording directly instead (:class:`ReplayWindowSource`): only the frames the face sampler asks
for are decoded, a background thread decodes the next grid frames while the model scores (JPEG
decoding releases the GIL), and data after the replay clock is never handed out, so the windows
are the ones the device path builds. :func:`score_in_batches` scores the engine's windows a few at
a time where that is faster (the face encoder runs the batch's new frames together).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..features.windows import RecordingSource

__all__ = ["ReplayWindowSource", "fast_replay_source", "grid_frame_times", "fast_batch_size"]

#: Windows scored together by a fast replay (measured in benchmarks/bench_live.py; see docs/performance.md).
CPU_BATCH = 8
CUDA_BATCH = 32


def fast_batch_size(engine) -> int:
    """How many windows a fast replay scores at once on the engine's device."""
    return CUDA_BATCH if engine.on_gpu else CPU_BATCH


def grid_frame_times(frame_t: np.ndarray, sample_times: Sequence[int], lookback_us: int) -> List[int]:
    """The frames a face sampler reads for ``sample_times``: the latest frame at or before each
    sample time, within the look-back (as :meth:`FaceSampler.crop_at` picks them)."""
    out = []
    for ts in sample_times:
        j = int(np.searchsorted(frame_t, ts, side="right")) - 1
        if j >= 0 and frame_t[j] >= ts - lookback_us and (not out or out[-1] != int(frame_t[j])):
            out.append(int(frame_t[j]))
    return out


class ReplayWindowSource(RecordingSource):
    """A replayed recording read directly, never past the replay clock.

    Parameters
    ----------
    reader : SessionReader
    clock : ReplayClock
        The replay's clock: gaze and frames after ``clock.now_us()`` are not there yet.
    ahead : int
        Frames of :meth:`plan` decoded ahead of use by one background thread (0: none).
    """

    def __init__(self, reader, *, clock, ahead: int = 4) -> None:
        super().__init__(reader)
        self.clock = clock
        self.ahead = max(0, int(ahead))
        self.frames_decoded = 0
        self._plan: List[int] = []
        self._next = 0
        self._futures: Dict[int, Future] = {}
        self._lock = threading.Lock()
        self._pool: Optional[ThreadPoolExecutor] = None
        if self.ahead:
            import cv2

            cv2.setNumThreads(1)   # one decode at a time beside the model's threads
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-decode")

    def _now(self) -> int:
        return int(self.clock.now_us())

    def gaze(self, t0_us, t1_us):
        return super().gaze(t0_us, min(int(t1_us), self._now() + 1))

    def frame_times(self, t0_us, t1_us):
        return super().frame_times(t0_us, min(int(t1_us), self._now() + 1))

    def plan(self, frame_times: Sequence[int]) -> None:
        """The frames that will be read, in order (decoded ahead by the background thread)."""
        with self._lock:
            self._plan = [int(t) for t in frame_times]
            self._next = 0
        self._top_up()

    def _decode(self, t_us: int) -> Optional[np.ndarray]:
        img = super().frame_at(t_us)
        if img is not None:
            self.frames_decoded += 1
        return img

    def _top_up(self) -> None:
        if self._pool is None:
            return
        with self._lock:
            while self._next < len(self._plan) and len(self._futures) < self.ahead:
                t = self._plan[self._next]
                self._next += 1
                if t not in self._futures:
                    self._futures[t] = self._pool.submit(self._decode, t)

    def frame_at(self, t_us):
        t_us = int(t_us)
        if t_us > self._now():
            return None
        with self._lock:
            fut = self._futures.pop(t_us, None)
            for t in [t for t in self._futures if t < t_us]:   # planned but skipped: never read
                self._futures.pop(t).cancel()
        img = fut.result() if fut is not None else self._decode(t_us)
        self._top_up()
        return img

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures.clear()


def fast_replay_source(ds, *, origin_us: int, window_us: int, n_face: int, ahead: int = 4
                       ) -> Optional[ReplayWindowSource]:
    """The direct source for a ``--speed max`` replay of ``ds`` (None when the devices are not a
    replay of one recording, e.g. a replayed tracker with a synthetic camera): the grid frames
    from ``origin_us`` on are planned for decoding ahead."""
    from ..devices.replay import ReplayCamera, ReplayTracker

    rep = getattr(ds, "replay", None)
    if rep is None:
        return None
    cam_ok = ds.camera is None or (isinstance(ds.camera, ReplayCamera) and ds.camera.source is rep)
    trk_ok = ds.tracker is None or (isinstance(ds.tracker, ReplayTracker) and ds.tracker.source is rep)
    if not (cam_ok and trk_ok):
        return None
    src = ReplayWindowSource(rep.reader, clock=rep.clock, ahead=ahead if ds.camera is not None else 0)
    if ds.tracker is None:
        src._gaze = None
    if ds.camera is None:
        src._frame_t = np.zeros(0, np.int64)
        src._frame_loc = []
    elif len(src._frame_t):
        step = window_us // n_face
        t = np.arange(origin_us + step // 2, int(src._frame_t[-1]) + 1, step, dtype=np.int64)
        src.plan(grid_frame_times(src._frame_t, t, max(step, 200_000)))
    return src
