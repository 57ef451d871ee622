"""Replay as fast as the CPU allows (``emer-live live --tracker replay:DIR --camera replay --speed max``).

The plain replay pushes every recorded frame through the camera device - 30 JPEG decodes and a
ring copy of 2.7 MB each per second of 720p video - although the windows read one frame per face
grid time (1 per second with 8 s windows). When nothing records the replay, the windows read the
recording directly instead (:class:`ReplayWindowSource`): only the frames the face sampler asks
for are decoded, never a sample or frame after the replay clock (so the windows are the ones the
device path builds), and a second thread makes the face grid's crops ahead (decoding and the
face pipeline, both in OpenCV, which releases the GIL) while the model scores. The runner scores
:func:`fast_batch_size` windows at a time (the face encoder runs their new frames together).
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from ..features.windows import RecordingSource, WindowSource

__all__ = ["ReplayWindowSource", "fast_replay_source", "fast_batch_size"]

#: Windows scored together by a fast replay (docs/performance.md). On 2 CPU cores 4 and 8 were
#: alike and faster than 1; 4 keeps one poll() of a GUI-driven replay short.
CPU_BATCH = 4
CUDA_BATCH = 32


def fast_batch_size(engine) -> int:
    """How many windows a fast replay scores at once on the engine's device."""
    return CUDA_BATCH if engine.on_gpu else CPU_BATCH


class _Unclamped(WindowSource):
    """The recording's frames without the replay-clock limit (for the crop-ahead thread)."""

    def __init__(self, src: RecordingSource) -> None:
        self.src = src

    def gaze(self, t0_us, t1_us):
        return None

    def frame_times(self, t0_us, t1_us):
        return RecordingSource.frame_times(self.src, t0_us, t1_us)

    def frame_at(self, t_us):
        return RecordingSource.frame_at(self.src, t_us)

    @property
    def precomputed_crops(self):
        return self.src.precomputed_crops

    def face_result_at(self, t_us):
        return RecordingSource.face_result_at(self.src, t_us)


class ReplayWindowSource(RecordingSource):
    """A replayed recording read directly, never past the replay clock.

    Parameters
    ----------
    reader : SessionReader
    clock : ReplayClock
        The replay's clock: gaze and frames after ``clock.now_us()`` are not there yet.
    gaze, video : bool
        Whether the replay has a tracker / a camera (one may be replaced by ``none``).
    """

    def __init__(self, reader, *, clock, gaze: bool = True, video: bool = True) -> None:
        super().__init__(reader)
        if not gaze:
            self._gaze = None
        if not video:
            self._frame_t = np.zeros(0, np.int64)
            self._frame_loc = []
        self.clock = clock
        self.frames_decoded = 0
        self.crops_ahead = 0
        self.ahead_error: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _now(self) -> int:
        return int(self.clock.now_us())

    def gaze(self, t0_us, t1_us):
        return super().gaze(t0_us, min(int(t1_us), self._now() + 1))

    def frame_times(self, t0_us, t1_us):
        return super().frame_times(t0_us, min(int(t1_us), self._now() + 1))

    def frame_at(self, t_us):
        if int(t_us) > self._now():
            return None
        self.frames_decoded += 1
        return super().frame_at(t_us)

    def face_result_at(self, t_us):
        if int(t_us) > self._now():
            return None
        return super().face_result_at(t_us)

    def start_faces(self, builder, *, ahead_us: int = 8_000_000) -> None:
        """Make the face grid's crops ahead of the engine in a second thread (decode + face
        pipeline; OpenCV releases the GIL, so this overlaps the model's work), at most
        ``ahead_us`` past the replay clock. The thread takes the grid times in the order the
        engine would, through the same sampler (which makes one crop at a time), so the
        sampler's stateful pipeline sees the same frames in the same order and every crop is
        the one the engine would have made; the engine finds them cached, or makes any the
        thread has not reached yet itself."""
        if not builder.use_face or builder.grid_origin_us is None or not len(self._frame_t) or self._thread:
            return
        import cv2

        cv2.setNumThreads(1)          # this thread on one core, the model on the other(s)
        times = builder.grid_times(builder.grid_origin_us, int(self._frame_t[-1]) + 1)
        plain, sampler, lookback = _Unclamped(self), builder.faces, builder.face_lookback_us()

        def run() -> None:
            for ts in times:
                while ts > self._now() + ahead_us:
                    if self._stop.wait(0.002):
                        return
                if self._stop.is_set():
                    return
                try:
                    sampler.crop_at(plain, ts, lookback_us=lookback, count_read=False)
                except Exception as exc:   # the engine makes (and reports) the rest itself
                    self.ahead_error = f"{type(exc).__name__}: {exc}"
                    return
                self.crops_ahead += 1

        self._thread = threading.Thread(target=run, name="replay-faces-ahead", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def fast_replay_source(ds) -> Optional[ReplayWindowSource]:
    """The direct source for a ``--speed max`` replay of ``ds`` (None when the devices are not a
    replay of one recording, e.g. a replayed tracker with a synthetic camera). Call its
    :meth:`~ReplayWindowSource.start_faces` with the engine's builder, and ``close()`` at the end."""
    from ..devices.replay import ReplayCamera, ReplayTracker

    rep = getattr(ds, "replay", None)
    if rep is None:
        return None
    cam_ok = ds.camera is None or (isinstance(ds.camera, ReplayCamera) and ds.camera.source is rep)
    trk_ok = ds.tracker is None or (isinstance(ds.tracker, ReplayTracker) and ds.tracker.source is rep)
    if not (cam_ok and trk_ok):
        return None
    return ReplayWindowSource(rep.reader, clock=rep.clock, gaze=ds.tracker is not None, video=ds.camera is not None)
