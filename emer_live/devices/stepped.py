"""Synthetic devices stepped on a virtual clock: faster-than-real-time synthetic sessions.

Live synthetic devices pace themselves on the wall clock. To build a training corpus quickly the
same phantom signals are generated *synchronously* while a driver moves a virtual session clock
(:class:`~emer_live.clock.ReplayClock` with ``speed=None``) forward: every tracker sample and
camera frame whose nominal time has come is generated and appended to the same streams the live
devices would fill, so recorder, controller and features cannot tell the difference - only the
wall time does.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..clock import ReplayClock
from ..errors import ConfigError
from ..schema import GAZE_DTYPE, frame_dtype
from ..streams import Stream
from .synthetic import TRACKER_RATES_HZ

__all__ = ["SteppedSynthetic"]


class SteppedSynthetic:
    """Tracker + camera of one phantom, generated up to the virtual clock on :meth:`advance_to`.

    Parameters
    ----------
    phantom : Phantom
    rate_hz : {60, 120, 250}
    camera : (width, height, fps) or None
    t0_us : int
        Virtual session time of the first sample.
    """

    def __init__(self, phantom, *, rate_hz: float = 120, camera=(640, 360, 15.0), t0_us: int = 1_000_000,
                 gaze_capacity_s: float = 180.0, camera_capacity_s: float = 2.0) -> None:
        if rate_hz not in TRACKER_RATES_HZ:
            raise ConfigError(f"synthetic tracker rate {rate_hz!r} Hz is not offered; use one of {TRACKER_RATES_HZ}")
        self.phantom = phantom
        self.rate_hz = int(rate_hz)
        self.clock = ReplayClock(t0_us, speed=None)
        self.t0_us = int(t0_us)
        self.gaze = Stream("gaze", GAZE_DTYPE,
                           int(gaze_capacity_s * rate_hz), nominal_rate_hz=float(rate_hz))
        self._k_gaze = 0
        self.camera: Optional[Stream] = None
        if camera is not None:
            w, h, fps = camera
            self.width, self.height, self.fps = int(w), int(h), float(fps)
            self.camera = Stream("camera", frame_dtype(self.width, self.height), max(int(fps * camera_capacity_s), 4),
                                 nominal_rate_hz=self.fps)
            self._k_cam = 0
            self._frame = np.zeros(1, self.camera.dtype)

    def advance_to(self, t_us: int) -> None:
        """Generate every sample and frame with nominal time <= ``t_us``, then move the clock."""
        t_us = int(t_us)
        rate = self.rate_hz
        k1 = ((t_us - self.t0_us) * rate) // 1_000_000 + 1
        if k1 > self._k_gaze:
            k = np.arange(self._k_gaze, k1, dtype=np.int64)
            times = self.t0_us + (k * 1_000_000 + rate // 2) // rate
            times = times[times <= t_us]
            if len(times):
                self.gaze.extend(self.phantom.gaze_at(times))
                self._k_gaze += len(times)
        if self.camera is not None:
            from ..phantom.face_render import render_face

            period = 1e6 / self.fps
            while self.t0_us + int(round(self._k_cam * period)) <= t_us:
                t = self.t0_us + int(round(self._k_cam * period))
                f = self._frame
                f["t_us"], f["frame_index"] = t, self._k_cam
                render_face(self.phantom.face_state(t), width=self.width, height=self.height, out=f["image"][0])
                self.camera.extend(f)
                self._k_cam += 1
        self.clock.advance_to(t_us)

    def tracker_info(self) -> dict:
        return {"kind": "tracker", "name": "synthetic-tracker (stepped)", "model": "Synthetic Pro Fusion",
                "nominal_rate_hz": float(self.rate_hz), "display_area": self.phantom.display.to_dict(),
                "synthetic": True, "virtual_clock": True}

    def camera_info(self) -> dict:
        return {"kind": "camera", "name": "synthetic-camera (stepped)", "width": self.width, "height": self.height,
                "fps": self.fps, "synthetic": True, "virtual_clock": True}
