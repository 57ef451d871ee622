"""CameraDevice on a fake VideoCapture (requested vs delivered, stalls, freezes, hangs) and on
small MJPG video files written by the test."""

from __future__ import annotations

import os
import sys
import time

import cv2
import numpy as np
import pytest

from emer_live.devices.camera import CameraDevice, probe_cameras
from emer_live.errors import DeviceUnavailable

try:
    from tests.fakes import wait_for
    from tests.fakes.fake_camera import FakeCamera
except ImportError:
    from fakes import wait_for
    from fakes.fake_camera import FakeCamera

cv2.setNumThreads(1)


class Events(list):
    def __call__(self, t_us, kind, detail):
        self.append((t_us, kind, detail))

    def of(self, kind):
        return [d for _, k, d in self if k == kind]


def cam_device(cam, ev=None, **kw):
    kw.setdefault("width", 1280)
    kw.setdefault("height", 720)
    kw.setdefault("fps", 30.0)
    return CameraDevice(source=0, capture_factory=cam.factory, on_event=ev, **kw)


def test_requested_vs_delivered_and_stamping():
    cam = FakeCamera(width=320, height=240, fps=30.0)
    ev = Events()
    dev = cam_device(cam, ev)
    dev.open()
    assert dev.stream.dtype["image"].shape == (240, 320, 3)
    assert any("320x240" in n["message"] and "1280x720" in n["message"] for n in ev.of("note"))
    asked = dict(cam.requests)
    assert asked[cv2.CAP_PROP_FRAME_WIDTH] == 1280 and asked[cv2.CAP_PROP_FRAME_HEIGHT] == 720
    assert asked[cv2.CAP_PROP_FPS] == 30 and asked[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    t_before = dev.clock.now_us()
    dev.start()
    assert wait_for(lambda: dev.frames >= 12)
    dev.stop()
    t_after = dev.clock.now_us()
    f = dev.stream.latest(1000)
    assert len(f) == dev.frames and (np.diff(f["t_us"]) > 0).all()
    assert f["t_us"][0] >= t_before and f["t_us"][-1] <= t_after
    assert (f["frame_index"] == np.arange(len(f))).all()
    # successive fake frames carry increasing frame numbers in their first pixels
    nums = [int.from_bytes(img[0, :8, 0].tobytes(), "little") for img in f["image"]]
    assert nums == sorted(nums) and len(set(nums)) == len(nums)
    info = dev.info()
    assert info["requested"] == {"width": 1280, "height": 720, "fps": 30.0}
    assert info["delivered"]["width"] == 320 and info["delivered"]["height"] == 240
    assert info["delivered"]["fps_reported"] == 30.0 and info["delivered"]["fourcc"] == "MJPG"
    assert 15 < info["delivered"]["fps_measured"] < 45           # paced fake at 30 fps
    assert info["stalls"] == 0


def test_stall_is_reported_retried_and_cleared():
    cam = FakeCamera(width=64, height=48, fps=30.0, stall_at_s=0.4, stall_for_s=0.6, fail_opens=1)
    ev = Events()
    dev = cam_device(cam, ev, width=64, height=48, stall_timeout_s=0.3, max_backoff_s=0.1)
    dev.open()
    dev.start()
    assert wait_for(lambda: ev.of("camera_stall"), 5)
    assert dev.stalled and dev.status.startswith("stalled")
    assert wait_for(lambda: ev.of("device_connect"), 8)
    n_at_recovery = dev.frames
    assert wait_for(lambda: dev.frames > n_at_recovery + 5, 5)
    dev.stop()
    assert len(ev.of("camera_stall")) == 1 and ev.of("camera_stall")[0]["reason"] == "grab failed"
    gap = ev.of("gap")[0]
    assert gap["reason"] == "camera_stall" and gap["duration_ms"] > 500
    assert dev.reopen_attempts >= 2 and cam.opens >= 3                 # one reopen failed on purpose
    assert any("reopen attempt" in n["message"] for n in ev.of("note"))
    assert not dev.stalled and dev.info()["stalls"] == 1


def test_frozen_frames_count_as_stall():
    cam = FakeCamera(width=64, height=48, fps=30.0, freeze_at_s=0.3, freeze_for_s=1.0)
    ev = Events()
    dev = cam_device(cam, ev, width=64, height=48, stall_timeout_s=0.3, max_backoff_s=0.1)
    dev.open()
    dev.start()
    assert wait_for(lambda: ev.of("device_connect"), 8)
    dev.stop()
    st = ev.of("camera_stall")
    assert st and st[0]["reason"].startswith("identical frames")
    assert dev.duplicated >= 8


def test_single_duplicates_are_counted_not_stalls():
    cam = FakeCamera(width=64, height=48, fps=30.0, duplicate_every=5)
    ev = Events()
    dev = cam_device(cam, ev, width=64, height=48)
    dev.open()
    dev.start()
    assert wait_for(lambda: dev.frames >= 25)
    dev.stop()
    assert dev.duplicated >= 3 and not ev.of("camera_stall")


def test_hung_grab_is_reported_by_the_watchdog():
    cam = FakeCamera(width=64, height=48, fps=30.0, hang_at_s=0.3, hang_for_s=1.0)
    ev = Events()
    dev = cam_device(cam, ev, width=64, height=48, stall_timeout_s=0.3)
    dev.open()
    dev.start()
    assert wait_for(lambda: ev.of("camera_stall"), 5)
    assert ev.of("camera_stall")[0]["reason"].startswith("no frame for")
    assert not ev.of("device_connect")                   # still hanging
    assert wait_for(lambda: ev.of("device_connect"), 5)
    dev.stop()


@pytest.mark.parametrize("case", ["absent", "no_frames"])
def test_open_failures(case):
    cam = FakeCamera(present=case != "absent", deliver_frames=case != "no_frames")
    dev = cam_device(cam)
    with pytest.raises(DeviceUnavailable, match="could not be opened" if case == "absent" else "delivered no frame"):
        dev.open()
    assert dev.stream is None and all(h.released for h in cam.handles)


def test_probe_cameras_reports_each_index():
    cams = {0: FakeCamera(width=320, height=240, fps=15.0), 1: FakeCamera(present=False)}
    res = probe_cameras([0, 1], capture_factory=lambda src: cams[src].factory(src))
    assert res[0]["ok"] and (res[0]["width"], res[0]["height"]) == (320, 240) and res[0]["fps_reported"] == 15.0
    assert 8 < res[0]["fps_measured"] < 25
    assert not res[1]["ok"] and "could not be opened" in res[1]["reason"]
    assert all(h.released for c in cams.values() for h in c.handles)


# ----------------------------------------------------------------------------- video files
def write_video(path, n=15, fps=25.0, size=(160, 120)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for k in range(n):
        w.write(np.full((size[1], size[0], 3), 10 * k + 20, np.uint8))
    w.release()
    return path


def test_video_file_plays_every_frame_then_finishes(tmp_path):
    path = write_video(tmp_path / "face.avi")
    ev = Events()
    dev = CameraDevice(source=str(path), on_event=ev, pace_files=False)
    dev.open()
    assert dev.is_file and dev.nominal_fps == pytest.approx(25.0) and dev.file_frames == 15
    dev.start()
    assert wait_for(lambda: dev.finished, 10)
    dev.stop()
    f = dev.stream.latest(100)
    assert len(f) == 15
    levels = f["image"].reshape(15, -1).mean(axis=1)
    np.testing.assert_allclose(levels, 10 * np.arange(15) + 20, atol=3)       # MJPG is lossy
    assert dev.status == "stopped" and any("end of video file" in n["message"] for n in ev.of("note"))
    assert not ev.of("camera_stall")


def test_video_file_is_paced_at_its_own_rate(tmp_path):
    path = write_video(tmp_path / "paced.avi", n=12, fps=25.0, size=(64, 48))
    dev = CameraDevice(source=str(path), width=64, height=48)
    dev.open()
    dev.start()
    assert wait_for(lambda: dev.finished, 10)
    dev.stop()
    t = dev.stream.latest(100)["t_us"]
    assert len(t) == 12
    assert 30_000 < np.median(np.diff(t)) < 70_000          # 40 ms per frame, give or take scheduling


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(DeviceUnavailable, match="no such video file"):
        CameraDevice(source=str(tmp_path / "nope.avi")).open()
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(DeviceUnavailable, match="cannot be decoded|delivered no frame"):
        CameraDevice(source=str(empty)).open()


def test_bad_arguments():
    for kw in ({"source": -1}, {"source": 0, "width": 5}, {"source": 0, "fps": 0}, {"source": True},
               {"source": 0, "fourcc": "MJPEG"}):
        with pytest.raises(ValueError):
            CameraDevice(**kw)
    assert CameraDevice(source="2").source == 2


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.path.exists("/dev/video0"),
                    reason="checks the no-camera message on a Linux machine without /dev/video0")
def test_real_index_without_camera_says_why():
    with pytest.raises(DeviceUnavailable, match="/dev/video0 does not exist"):
        CameraDevice(source=0).open()
