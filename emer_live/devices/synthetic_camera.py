"""Synthetic webcam: renders the phantom's face (:mod:`emer_live.phantom.face_render`) at an exact
nominal frame rate, behind the :class:`~emer_live.devices.base.Device` contract.

Frame ``k`` lies at ``t0 + round(k * 1e6 / fps)`` on the session clock (``t0`` = clock time at
start) and shows ``phantom.face_state(t_us)`` at exactly that time, so frames, gaze samples and
the phantom's truth line up by construction. The producer thread sleeps until each frame is due,
renders it straight into a one-record buffer and appends it to the ``camera`` stream.

If rendering falls behind (a starved CPU) by more than ``max_lag_s``, the camera does what a
real one does: it drops the frames it could not deliver, counts them on the stream
(``counters.dropped``, and the stream's gap counter sees the hole) and reports a
``camera_stall`` event followed by a ``gap`` event over the hole; it never delivers frames with
invented time stamps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from fractions import Fraction
from typing import Optional

import numpy as np

from ..clock import ReplayClock, SessionClock
from ..errors import ConfigError
from ..schema import frame_dtype
from ..streams import Stream
from .base import Device, EventSink, buffer_on_clock_us

__all__ = ["SyntheticCamera"]

_MAX_WAIT_S = 0.05


def _appearance_for(phantom):
    """The look of a phantom with ``seed`` and ``participant`` (None: the renderer's default)."""
    from ..phantom.face_render import FaceAppearance

    seed, participant = getattr(phantom, "seed", None), getattr(phantom, "participant", None)
    if not isinstance(seed, (int, np.integer)) or not isinstance(participant, str):
        return None
    look = FaceAppearance.for_participant(int(seed), participant)
    ipd = getattr(getattr(phantom, "traits", None), "ipd_mm", None)
    if isinstance(ipd, (int, float)) and math.isfinite(ipd):
        # head half-width ~75 mm: an interpupillary distance of 63 mm puts the eyes at +-0.42
        look = replace(look, eye_spacing=round(float(min(max(ipd / 150.0, 0.36), 0.44)), 3))
    return look


class SyntheticCamera(Device):
    """A webcam that films the phantom.

    Parameters
    ----------
    phantom : object
        The synthetic participant: anything with ``face_state(t_us) -> FaceState``
        (normally :class:`~emer_live.phantom.participant.Phantom`, shared with the tracker).
    width, height : int
        Frame size in pixels (64x48 .. 3840x2160).
    fps : float
        Nominal frame rate (1..240).
    clock : SessionClock, optional
        Live session clock (default: the process clock). A ``ReplayClock(speed=None)`` never
        advances by itself and is refused.
    on_event : callable, optional
        ``(t_us, kind, detail)`` sink for device events (``camera_stall``, ``gap``).
    capacity_s : float
        Seconds of frames the ring keeps (a 1280x720 frame is 2.76 MB: 2 s at 30 fps = 166 MB).
    max_lag_s : float
        How far behind schedule the renderer may fall before frames are dropped (default 1 s:
        a frame is a function of its time stamp, so a short stall of a loaded CPU - a fsync, a
        burst of model work - is caught up with correct time stamps instead of lost; a CPU that
        cannot keep up at all still drops, counts and reports).
    appearance : FaceAppearance, optional
        The filmed person's look. Default: drawn from the phantom's ``(seed, participant)``
        (:meth:`FaceAppearance.for_participant`, eye spacing from its interpupillary distance
        when it has traits), or the renderer's default look for a phantom without them.
    name : str
        Device name.
    """

    kind = "camera"

    def __init__(self, phantom, *, width: int = 1280, height: int = 720, fps: float = 30.0,
                 clock: Optional[SessionClock] = None, on_event: Optional[EventSink] = None,
                 capacity_s: float = 2.0, max_lag_s: float = 1.0, appearance=None,
                 name: str = "synthetic-camera") -> None:
        if not callable(getattr(phantom, "face_state", None)):
            raise ConfigError(f"SyntheticCamera needs a phantom with face_state(t_us), got {type(phantom).__name__}")
        for label, v, lo, hi in (("width", width, 64, 3840), ("height", height, 48, 2160)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ConfigError(f"synthetic camera {label} must be an int {lo}..{hi}, got {v!r}")
        try:
            fps_f = float(fps)
        except (TypeError, ValueError):
            fps_f = float("nan")
        if not (math.isfinite(fps_f) and 1.0 <= fps_f <= 240.0):
            raise ConfigError(f"synthetic camera fps must be within 1..240, got {fps!r}")
        if not (isinstance(capacity_s, (int, float)) and capacity_s > 0):
            raise ConfigError(f"capacity_s must be > 0, got {capacity_s!r}")
        if not (isinstance(max_lag_s, (int, float)) and max_lag_s > 0):
            raise ConfigError(f"max_lag_s must be > 0, got {max_lag_s!r}")
        if isinstance(clock, ReplayClock) and clock.as_fast_as_possible:
            raise ConfigError("the synthetic camera runs on a live clock; a ReplayClock(speed=None) never advances "
                              "by itself - use a real-time clock, or render frames offline with "
                              "emer_live.phantom.face_render.render_face")
        from ..phantom.face_render import FaceAppearance

        if appearance is None:
            appearance = _appearance_for(phantom)
        elif not isinstance(appearance, FaceAppearance):
            raise ConfigError(f"appearance must be a FaceAppearance, got {type(appearance).__name__}")
        super().__init__(name=name, clock=clock, on_event=on_event)
        self.phantom = phantom
        self.appearance = appearance
        self.width, self.height = int(width), int(height)
        self.fps = fps_f
        self._rate = Fraction(fps_f).limit_denominator(1001)     # 30 -> 30/1, 29.97 -> 2997/100
        self.capacity_s = float(capacity_s)
        self.max_lag_s = float(max_lag_s)
        self.t0_us: Optional[int] = None
        self.frames_rendered = 0
        self.frames_dropped = 0

    def frame_time_us(self, k: int) -> int:
        """Nominal time of frame ``k`` (needs a started camera)."""
        if self.t0_us is None:
            raise RuntimeError("the camera has not started")
        num, den = self._rate.numerator, self._rate.denominator   # period = 1e6 * den / num
        return self.t0_us + (k * 1_000_000 * den + num // 2) // num

    def _open(self) -> None:
        from ..phantom.face_render import render_face
        from ..phantom.face_state import FaceState

        self._render = render_face
        dtype = frame_dtype(self.width, self.height)
        self.stream = Stream("camera", dtype, max(int(round(self.capacity_s * self.fps)), 2),
                             nominal_rate_hz=self.fps)
        self._rec = np.zeros(1, dtype)
        # warm the renderer's per-size cache (background, noise) so the first frame is on time
        render_face(FaceState(), width=self.width, height=self.height, out=self._rec["image"][0],
                    appearance=self.appearance)

    def _run(self) -> None:
        rec = self._rec
        img = rec["image"][0]
        num, den = self._rate.numerator, self._rate.denominator
        self.t0_us = self.clock.now_us()
        lag_us = buffer_on_clock_us(self.max_lag_s, self.clock)
        k = 0
        while not self._stop.is_set():
            t_k = self.frame_time_us(k)
            now = self.clock.now_us()
            if now < t_k:
                self._stop.wait(min((t_k - now) / 1e6, _MAX_WAIT_S))
                continue
            if now - t_k > lag_us:
                # the frames due by now minus the one we are about to render are lost
                k_now = ((now - self.t0_us) * num) // (1_000_000 * den)
                n_drop = int(k_now - k)
                if n_drop > 0:
                    self.stream.count_dropped(n_drop)
                    self.frames_dropped += n_drop
                    self.emit("camera_stall", device=self.name, dropped=n_drop, first_frame_index=k,
                              behind_ms=round((now - t_k) / 1000.0, 1))
                    t_hole = self.frame_time_us(k - 1) if k else self.t0_us
                    k = int(k_now)
                    t_k = self.frame_time_us(k)
                    # the hole marked as a real camera marks it (docs/hardware.md); no
                    # device_connect: this camera never went away, it fell behind
                    self.emit("gap", device=self.name, stream="camera", t_start_us=t_hole, t_end_us=t_k,
                              duration_ms=round((t_k - t_hole) / 1000, 3), missing=n_drop, reason="camera_stall")
            state = self.phantom.face_state(t_k)
            self._render(state, width=self.width, height=self.height, out=img, appearance=self.appearance)
            rec["t_us"][0] = t_k
            rec["frame_index"][0] = k
            self.stream.extend(rec)
            self.frames_rendered += 1
            k += 1

    def info(self) -> dict:
        d = super().info()
        d.update({"model": "synthetic webcam (phantom face renderer)", "width": self.width, "height": self.height,
                  "fps": self.fps, "nominal_rate_hz": self.fps, "pixel_format": "BGR24", "synthetic": True,
                  "appearance": asdict(self.appearance) if self.appearance is not None else None})
        ph = self.phantom
        if hasattr(ph, "seed") and hasattr(ph, "participant"):
            d["phantom"] = {"seed": getattr(ph, "seed"), "participant": getattr(ph, "participant")}
        return d
