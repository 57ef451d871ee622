"""A scriptable stand-in for ``cv2.VideoCapture`` (a USB webcam) for camera tests.

``FakeCamera`` is the *device*: it decides what size/fps it really delivers, when it stalls or
freezes, and how many opens fail; ``FakeCamera.factory`` is the ``capture_factory`` handed to
``CameraDevice`` and returns a new ``FakeVideoCapture`` (a *handle*) per open, like OpenCV.
Frames are paced in real time; the k-th frame the camera hands out carries ``k`` in its first
pixels so tests can tell frames apart.
"""

from __future__ import annotations

import threading
import time
from typing import List, Optional

import numpy as np

CAP_PROP_FRAME_WIDTH = 3
CAP_PROP_FRAME_HEIGHT = 4
CAP_PROP_FPS = 5
CAP_PROP_FOURCC = 6


class FakeCamera:
    """One fake webcam.

    Parameters
    ----------
    width, height, fps : what the camera really delivers, whatever is requested.
    stall_at_s, stall_for_s : from ``stall_at_s`` after the first open, ``grab()`` fails (after
        waiting one frame period) for ``stall_for_s`` seconds.
    freeze_at_s, freeze_for_s : the driver keeps returning the same frame for that long.
    duplicate_every : every n-th frame repeats the previous one.
    fail_opens : how many opens after a stall fail (``isOpened()`` False).
    present : False = nothing at this index (``isOpened()`` False at the first open).
    hang_at_s, hang_for_s : once, ``grab()`` blocks that long (a hung driver).
    """

    def __init__(self, *, width: int = 640, height: int = 480, fps: float = 30.0,
                 stall_at_s: Optional[float] = None, stall_for_s: float = 1.0,
                 freeze_at_s: Optional[float] = None, freeze_for_s: float = 1.0,
                 duplicate_every: Optional[int] = None, fail_opens: int = 0, present: bool = True,
                 deliver_frames: bool = True, hang_at_s: Optional[float] = None, hang_for_s: float = 1.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.stall_at_s, self.stall_for_s = stall_at_s, stall_for_s
        self.freeze_at_s, self.freeze_for_s = freeze_at_s, freeze_for_s
        self.duplicate_every = duplicate_every
        self.fail_opens = fail_opens
        self.present = present
        self.deliver_frames = deliver_frames
        self.hang_at_s, self.hang_for_s = hang_at_s, hang_for_s
        self._hung = False
        self.t0: Optional[float] = None
        self.delivered = 0                   # frames handed out so far (numbers frames)
        self.opens = 0
        self.handles: List["FakeVideoCapture"] = []
        self.requests: List[tuple] = []
        self.lock = threading.Lock()

    def factory(self, source):
        self.opens += 1
        if self.t0 is None:
            self.t0 = time.monotonic()
        ok = self.present and (self.opens == 1 or self.opens > 1 + self.fail_opens)
        h = FakeVideoCapture(self, opened=ok)
        self.handles.append(h)
        return h

    def stalled(self, t: float) -> bool:
        return self.stall_at_s is not None and self.stall_at_s <= t < self.stall_at_s + self.stall_for_s

    def frozen(self, t: float) -> bool:
        return self.freeze_at_s is not None and self.freeze_at_s <= t < self.freeze_at_s + self.freeze_for_s


class FakeVideoCapture:
    """The subset of ``cv2.VideoCapture`` that ``CameraDevice`` uses."""

    def __init__(self, cam: FakeCamera, *, opened: bool) -> None:
        self.cam = cam
        self._opened = opened
        self._next = None
        self._frame_no = -1
        self._last_img: Optional[np.ndarray] = None
        self._rng = np.random.default_rng(len(cam.handles))
        self.released = False

    def isOpened(self) -> bool:
        return self._opened and not self.released

    def set(self, prop, value) -> bool:
        self.cam.requests.append((int(prop), float(value)))
        return False                         # like many drivers: accepted silently, not honoured

    def get(self, prop) -> float:
        return {CAP_PROP_FRAME_WIDTH: float(self.cam.width), CAP_PROP_FRAME_HEIGHT: float(self.cam.height),
                CAP_PROP_FPS: float(self.cam.fps),
                CAP_PROP_FOURCC: float(int.from_bytes(b"MJPG", "little"))}.get(int(prop), 0.0)

    def grab(self) -> bool:
        if not self.isOpened():
            return False
        cam = self.cam
        period = 1.0 / cam.fps
        now = time.monotonic()
        if self._next is None:
            self._next = now
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next + period, time.monotonic() - period)
        t = time.monotonic() - cam.t0
        if cam.hang_at_s is not None and not cam._hung and t >= cam.hang_at_s:
            cam._hung = True                 # grab() blocks inside the driver, then goes on
            time.sleep(cam.hang_for_s)
            t = time.monotonic() - cam.t0
        if cam.stalled(t) or not cam.deliver_frames:
            return False
        cam.delivered += 1
        self._frame_no = cam.delivered
        return True

    def retrieve(self, image=None):
        if not self.isOpened() or self._frame_no < 0:
            return False, None
        cam = self.cam
        t = time.monotonic() - cam.t0
        repeat = (cam.frozen(t) or (cam.duplicate_every and self._frame_no % cam.duplicate_every == 0))
        if repeat and self._last_img is not None:
            return True, self._last_img.copy()
        img = self._rng.integers(0, 255, size=(cam.height, cam.width, 3), dtype=np.uint8)
        img[0, :8, 0] = np.frombuffer(int(self._frame_no).to_bytes(8, "little"), np.uint8)
        self._last_img = img
        return True, img.copy()

    def read(self, image=None):
        if not self.grab():
            return False, None
        return self.retrieve()

    def release(self) -> None:
        self.released = True
