"""Webcam (or video file) capture through OpenCV ``VideoCapture``.

The grab thread only grabs, stamps and stores: each frame gets ``t_us`` from the session clock
right after ``grab()`` returns (the moment the driver handed the frame over), is decoded with
``retrieve()`` and copied into the frame ring (:func:`~emer_live.schema.frame_dtype`). Encoding to
disk is the recorder's job on its own thread.

Requested and delivered values differ on real cameras (a 1280x720@30 request may give 640x480 or
15 fps in low light): :meth:`CameraDevice.info` reports the requested size/fps, what the driver
says, what was actually delivered (frame size) and the measured rate. The stream uses the
delivered size.

Health: intervals longer than 1.5 frame periods count as dropped frames (stream gap counters);
byte-identical consecutive frames count as duplicates; a camera whose ``grab()`` fails, or whose
frames stay identical for ``stall_timeout_s`` (a frozen driver), is *stalled*: a ``camera_stall``
event, the capture is released and reopened with back-off (0.5 s doubling to ``max_backoff_s``)
until frames come again, which gives a ``device_connect`` and a ``gap`` event. A watchdog thread
reports a stall even while ``grab()`` itself hangs. Video files play at their own frame rate
(``pace_files``) and end the device at the end of the file.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DeviceUnavailable
from ..schema import frame_dtype
from ..streams import Stream
from .base import Device, EventSink

__all__ = ["CameraDevice", "probe_cameras", "camera_backends"]


def _cv2():
    import cv2  # noqa: PLC0415 - OpenCV is a dependency, imported where used to keep imports light

    return cv2


def camera_backends() -> List[Tuple[str, int]]:
    """OpenCV capture backends to try for a camera index on this OS, best first."""
    cv2 = _cv2()
    if sys.platform.startswith("win"):
        names = ("CAP_DSHOW", "CAP_MSMF", "CAP_ANY")
    elif sys.platform == "darwin":
        names = ("CAP_AVFOUNDATION", "CAP_ANY")
    else:
        names = ("CAP_V4L2", "CAP_ANY")
    return [(n[4:], getattr(cv2, n)) for n in names if hasattr(cv2, n)]


def _fourcc_text(v: float) -> str:
    i = int(v)
    s = "".join(chr((i >> (8 * k)) & 0xFF) for k in range(4))
    return s if s.isprintable() and s.strip() else ""


class CameraDevice(Device):
    """A camera (index) or a video file as a frame :class:`~emer_live.streams.Stream`.

    Parameters
    ----------
    source : int or str
        Camera index, a video file path, or a stream URL (``rtsp://...``).
    width, height : int
        Requested frame size.
    fps : float
        Requested frame rate (files play at their own rate).
    clock : SessionClock, optional
    on_event : callable, optional
        ``(t_us, kind, detail)`` sink: ``camera_stall``, ``device_connect``, ``gap``, ``note``.
    capacity_s : float
        Seconds of full frames kept in the ring.
    capture_factory : callable, optional
        ``factory(source) -> VideoCapture-like`` (tests inject fakes); default OpenCV with the
        OS's preferred backend (V4L2 / DirectShow / AVFoundation, then any).
    fourcc : str or None
        Pixel format asked of cameras (``MJPG`` reaches 720p30 over USB 2); None leaves it.
    pace_files : bool
        Play files at their own frame rate (True) or as fast as possible.
    stall_timeout_s : float
        No new frame (or identical frames) for this long counts as a stall.
    max_backoff_s : float
        Longest wait between reopen attempts.
    detect_freeze : bool, optional
        Treat identical frames as a stall (default: cameras yes, files no).
    """

    kind = "camera"

    def __init__(self, *, source: Union[int, str], width: int = 1280, height: int = 720, fps: float = 30.0,
                 clock=None, on_event: Optional[EventSink] = None, capacity_s: float = 2.0,
                 capture_factory: Optional[Callable[[Any], Any]] = None, fourcc: Optional[str] = "MJPG",
                 pace_files: bool = True, stall_timeout_s: float = 2.0, max_backoff_s: float = 5.0,
                 detect_freeze: Optional[bool] = None) -> None:
        if isinstance(source, bool) or not isinstance(source, (int, str)):
            raise ValueError(f"camera source must be an index or a path/URL, got {source!r}")
        if isinstance(source, str) and source.strip().isdigit():
            source = int(source.strip())
        if isinstance(source, int) and source < 0:
            raise ValueError(f"camera index must be >= 0, got {source}")
        if isinstance(source, str) and not source.strip():
            raise ValueError("camera source is an empty string")
        for name, v, lo, hi in (("width", width, 16, 7680), ("height", height, 16, 4320)):
            if not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
                raise ValueError(f"{name} must be an integer within {lo}..{hi}, got {v!r}")
        if not (isinstance(fps, (int, float)) and 0 < fps <= 1000):
            raise ValueError(f"fps must be within (0, 1000], got {fps!r}")
        if capacity_s <= 0 or stall_timeout_s <= 0 or max_backoff_s <= 0:
            raise ValueError("capacity_s, stall_timeout_s and max_backoff_s must be > 0")
        if fourcc is not None and len(fourcc) != 4:
            raise ValueError(f"fourcc must be 4 characters (e.g. 'MJPG'), got {fourcc!r}")
        super().__init__(name=f"camera:{source}", clock=clock, on_event=on_event)
        self.source = source
        self.is_file = isinstance(source, str) and "://" not in source
        self.requested = {"width": int(width), "height": int(height), "fps": float(fps)}
        self.capacity_s = float(capacity_s)
        self.fourcc = fourcc
        self.pace_files = bool(pace_files)
        self.stall_timeout_s = float(stall_timeout_s)
        self.max_backoff_s = float(max_backoff_s)
        self.detect_freeze = (not self.is_file) if detect_freeze is None else bool(detect_freeze)
        self._factory = capture_factory
        self._cap = None
        self.backend: Optional[str] = None
        self.width = self.height = 0
        self.reported_fps: Optional[float] = None
        self.reported_fourcc = ""
        self.nominal_fps = float(fps)
        self.file_frames: Optional[int] = None
        self._first: Optional[np.ndarray] = None
        self._finished = False
        self._grab_alive = False
        self._lock = threading.Lock()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.frames = 0
        self.duplicated = 0
        self.resized = 0
        self.stalls = 0
        self.reopen_attempts = 0
        self._stalled = False
        self._stall_reported = False
        self._last_t: Optional[int] = None
        self._last_wall = time.monotonic()
        self._same_since: Optional[float] = None
        self._prev_sig: Optional[int] = None
        self._dt_ewma: Optional[float] = None

    # ------------------------------------------------------------------ capture handling
    def _open_capture(self):
        """Open the source; returns (capture, backend name) or raises DeviceUnavailable."""
        if self._factory is not None:
            cap = self._factory(self.source)
            if cap is None or not cap.isOpened():
                if cap is not None:
                    cap.release()
                raise DeviceUnavailable(f"camera {self.source!r} could not be opened")
            return cap, "injected"
        cv2 = _cv2()
        if self.is_file:
            path = Path(self.source)
            if not path.is_file():
                raise DeviceUnavailable(f"camera source {str(path)!r}: no such video file")
            cap = cv2.VideoCapture(str(path), cv2.CAP_ANY)
            if not cap.isOpened():
                cap.release()
                raise DeviceUnavailable(f"video file {str(path)!r} cannot be decoded by OpenCV "
                                        "(empty, damaged or an unsupported codec)")
            return cap, "file"
        tried = []
        if isinstance(self.source, int) and sys.platform.startswith("linux"):
            node = f"/dev/video{self.source}"
            if not os.path.exists(node):
                raise DeviceUnavailable(f"camera {self.source} unavailable: {node} does not exist (no camera "
                                        "connected, or its driver is not loaded); `emer-live doctor` lists the "
                                        "cameras that open")
            if not os.access(node, os.R_OK | os.W_OK):
                raise DeviceUnavailable(f"camera {self.source} unavailable: no permission to open {node}; add the "
                                        "user to the 'video' group (then log in again)")
        for name, api in (camera_backends() if isinstance(self.source, int) else [("ANY", cv2.CAP_ANY)]):
            cap = cv2.VideoCapture(self.source, api)
            if cap.isOpened():
                return cap, name
            cap.release()
            tried.append(name)
        raise DeviceUnavailable(f"camera {self.source!r} could not be opened (tried {', '.join(tried)}): check "
                                "that it is connected and not used by another program; `emer-live doctor` lists "
                                "the cameras that open")

    def _configure(self, cap) -> None:
        if self.is_file:
            return
        cv2 = _cv2()
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.requested["width"])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.requested["height"])
        cap.set(cv2.CAP_PROP_FPS, self.requested["fps"])

    def _read_image(self, cap) -> Tuple[bool, Optional[np.ndarray]]:
        ok, img = cap.retrieve()
        if not ok or img is None:
            return False, None
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        elif img.shape[2] == 4:
            img = np.ascontiguousarray(img[:, :, :3])
        return True, img

    def _open(self) -> None:
        cv2 = _cv2()
        cap, backend = self._open_capture()
        try:
            self._configure(cap)
            ok = cap.grab()
            ok, img = self._read_image(cap) if ok else (False, None)
            if not ok:
                raise DeviceUnavailable(
                    f"camera {self.source!r} opened ({backend}) but delivered no frame"
                    + (": the file holds no decodable frame" if self.is_file else
                       ": it may be in use by another program or need a different size/fps"))
            rep_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.reported_fps = rep_fps if math.isfinite(rep_fps) and rep_fps > 0 else None
            self.reported_fourcc = _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC) or 0)
            if self.is_file:
                n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
                self.file_frames = int(n) if n and n > 0 else None
                self.nominal_fps = self.reported_fps or self.requested["fps"]
            else:
                self.nominal_fps = self.reported_fps or self.requested["fps"]
        except BaseException:
            cap.release()
            raise
        self.height, self.width = int(img.shape[0]), int(img.shape[1])
        self.backend = backend
        self._cap = cap
        self._first = img if self.is_file else None      # a camera's warm-up frame is stale by start
        self._finished = False
        self._reset_counters()
        cap_n = max(int(math.ceil(self.capacity_s * self.nominal_fps)), 2)
        self.stream = Stream("camera", frame_dtype(self.width, self.height), cap_n, nominal_rate_hz=self.nominal_fps)
        if (self.width, self.height) != (self.requested["width"], self.requested["height"]) and not self.is_file:
            self.emit("note", device=self.name, message=f"camera delivers {self.width}x{self.height}, "
                      f"{self.requested['width']}x{self.requested['height']} was requested")

    # ------------------------------------------------------------------ threads
    def start(self) -> None:
        super().start()
        self._watchdog = threading.Thread(target=self._watch, name=f"camera-watchdog:{self.source}", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        """Report a stall even when ``grab()`` hangs (the grab thread cannot speak then)."""
        while not self._stop.wait(min(0.25, self.stall_timeout_s / 4)):
            if self._finished:
                return
            if time.monotonic() - self._last_wall >= self.stall_timeout_s:
                self._report_stall(f"no frame for {self.stall_timeout_s:g} s")

    def _report_stall(self, reason: str) -> None:
        with self._lock:
            if self._stall_reported:
                return
            self._stall_reported = True
            self._stalled = True
            self.stalls += 1
        self.status = f"stalled ({reason}): retrying"
        self.emit("camera_stall", device=self.name, reason=reason, last_frame_t_us=self._last_t)

    def _run(self) -> None:
        # The grab thread owns the capture: it releases it itself, so a stop() that gives up
        # waiting for a hung grab() never releases the capture under it.
        self._grab_alive = True
        try:
            self._grab_loop()
        finally:
            self._grab_alive = False
            cap, self._cap = self._cap, None
            if cap is not None:
                cap.release()

    def _grab_loop(self) -> None:
        row = np.zeros(1, self.stream.dtype)
        period = 1.0 / self.nominal_fps
        t0_wall = time.monotonic()
        backoff = min(0.5, self.max_backoff_s)
        self._last_wall = time.monotonic()
        while not self._stop.is_set():
            cap = self._cap
            if cap is None:                                   # stalled: reopen with back-off
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.max_backoff_s)
                self.reopen_attempts += 1
                try:
                    cap, _ = self._open_capture()
                    self._configure(cap)
                except DeviceUnavailable as exc:
                    self.emit("note", device=self.name, message=f"reopen attempt {self.reopen_attempts} failed: {exc}")
                    continue
                self._cap = cap
                self._same_since = None
                continue
            if self._first is not None:
                img, ok = self._first, True
                self._first = None
            else:
                if self.is_file and self.pace_files:
                    due = t0_wall + self.frames * period
                    if self._stop.wait(max(due - time.monotonic(), 0.0)):
                        break
                ok = cap.grab()
                img = None
            t = self.clock.now_us()
            if ok and img is None:
                ok, img = self._read_image(cap)
            if not ok:
                if self.is_file:
                    self._finished = True
                    self.status = "end of file"
                    self.emit("note", device=self.name, message=f"end of video file after {self.frames} frames")
                    return
                self._stall("grab failed")
                continue
            wall = time.monotonic()
            if self._frozen(img, wall) and self.detect_freeze:
                self._stall(f"identical frames for {self.stall_timeout_s:g} s")
                continue
            if (img.shape[0], img.shape[1]) != (self.height, self.width):
                img = _cv2().resize(img, (self.width, self.height), interpolation=_cv2().INTER_AREA)
                self.resized += 1
                if self.resized == 1:
                    self.emit("note", device=self.name, message="the camera changed its frame size; frames are "
                              f"resized to {self.width}x{self.height}")
            if self._last_t is not None and t > self._last_t and not self._stalled:
                dt = float(t - self._last_t)       # smoothed interval; its inverse is the rate
                self._dt_ewma = dt if self._dt_ewma is None else 0.95 * self._dt_ewma + 0.05 * dt
            if self._stalled:
                # the watchdog must see this frame's wall time before the stall flags are reset,
                # or it may report the stall that just ended a second time
                self._last_wall = wall
                self._recovered(t)
                backoff = min(0.5, self.max_backoff_s)
            row["t_us"] = t
            row["frame_index"] = self.frames
            row["image"][0] = img
            self.stream.extend(row)
            self.frames += 1
            self._last_t = t
            self._last_wall = wall

    def _frozen(self, img: np.ndarray, wall: float) -> bool:
        """Count byte-identical repeats; True once they lasted ``stall_timeout_s``."""
        sig = hash(img[::16, ::16].tobytes())
        same = sig == self._prev_sig
        self._prev_sig = sig
        if not same:
            self._same_since = None
            return False
        self.duplicated += 1
        if self._same_since is None:
            self._same_since = wall
        return wall - self._same_since >= self.stall_timeout_s

    def _stall(self, reason: str) -> None:
        self._report_stall(reason)
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def _recovered(self, t_us: int) -> None:
        with self._lock:
            self._stalled = False
            self._stall_reported = False
        down = None if self._last_t is None else (t_us - self._last_t) / 1e6
        self.status = "running"
        self.emit("device_connect", device=self.name, reason="camera delivers frames again", reconnected=True,
                  stalled_s=None if down is None else round(down, 3), reopen_attempts=self.reopen_attempts)
        if self._last_t is not None:
            self.emit("gap", device=self.name, stream="camera", t_start_us=self._last_t, t_end_us=t_us,
                      duration_ms=round((t_us - self._last_t) / 1000, 3),
                      missing=max(int(round((t_us - self._last_t) / 1e6 * self.nominal_fps)) - 1, 0),
                      reason="camera_stall")

    def measure_grab_rate(self, frames: int) -> Optional[float]:
        """Grab ``frames`` frames from the opened camera (no capture thread) and return the
        measured frames per second, or None when fewer than two could be grabbed."""
        cap = self._cap
        if cap is None or self.running:
            raise RuntimeError("measure_grab_rate() needs an opened camera that is not capturing")
        stamps = []
        for _ in range(frames):
            if not cap.grab():
                break
            stamps.append(time.monotonic())
        if len(stamps) < 2 or stamps[-1] <= stamps[0]:
            return None
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    def _close(self) -> None:
        if self._grab_alive:            # stop() timed out on a hung grab(): the thread releases it
            return
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    # ------------------------------------------------------------------ public surface
    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def stalled(self) -> bool:
        return self._stalled

    def measured_fps(self) -> Optional[float]:
        """Smoothed delivered frame rate (None before two frames)."""
        return None if not self._dt_ewma else round(1e6 / self._dt_ewma, 2)

    def info(self) -> dict:
        d = super().info()
        d.update({"source": self.source, "is_file": self.is_file, "backend": self.backend,
                  "requested": dict(self.requested),
                  "delivered": {"width": self.width, "height": self.height, "fps_reported": self.reported_fps,
                                "fps_measured": self.measured_fps(), "fourcc": self.reported_fourcc or None},
                  "nominal_fps": self.nominal_fps, "frames": self.frames, "duplicated": self.duplicated,
                  "resized": self.resized, "stalls": self.stalls, "reopen_attempts": self.reopen_attempts,
                  "status": self.status})
        if self.file_frames is not None:
            d["file_frames"] = self.file_frames
        if self.stream is not None:
            d["counters"] = self.stream.counters.as_dict()
        return d


def probe_cameras(indices: Sequence[int] = range(4), *, frames: int = 8,
                  capture_factory: Optional[Callable[[Any], Any]] = None) -> List[Dict[str, Any]]:
    """Try to open each camera index and report what it delivers (for ``emer-live doctor``).

    Parameters
    ----------
    indices : sequence of int
        Camera indices to probe (on Linux, indices without ``/dev/videoN`` are reported at once).
    frames : int
        Frames grabbed to measure the delivered rate.
    capture_factory : callable, optional
        As for :class:`CameraDevice`.

    Returns
    -------
    list of dict
        Per index: ``ok``, and either ``width``/``height``/``fps_reported``/``fps_measured``/
        ``backend`` or ``reason``.
    """
    out = []
    for i in indices:
        dev = CameraDevice(source=int(i), width=1280, height=720, fps=30.0, capture_factory=capture_factory)
        try:
            dev.open()
        except DeviceUnavailable as exc:
            out.append({"index": int(i), "ok": False, "reason": str(exc)})
            continue
        try:
            fps = dev.measure_grab_rate(max(frames, 2))
            out.append({"index": int(i), "ok": True, "backend": dev.backend, "width": dev.width,
                        "height": dev.height, "fps_reported": dev.reported_fps,
                        "fps_measured": None if fps is None else round(fps, 1),
                        "fourcc": dev.reported_fourcc or None})
        finally:
            dev.stop()
    return out
