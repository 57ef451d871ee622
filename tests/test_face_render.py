"""The synthetic face renderer and the synthetic camera device."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

from emer_live.clock import ReplayClock, SessionClock
from emer_live.errors import ConfigError
from emer_live.phantom.face_render import (DEFAULT_APPEARANCE, PARAM_NAMES, FaceAppearance, expression_params,
                                           face_geometry, render_face)
from emer_live.phantom.face_state import EMOTIONS7, FaceState
from emer_live.schema import frame_dtype

W, H = 640, 360


@pytest.fixture(autouse=True)
def _one_thread():
    n = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(n)


def _gray(img):
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def _region(state, name, half_w, half_h, width=W, height=H):
    g = face_geometry(state, width=width, height=height)
    u = g["unit_px"][0]
    x, y = g[name]
    return (slice(int(y - half_h * u), int(y + half_h * u)), slice(int(x - half_w * u), int(x + half_w * u)))


# --------------------------------------------------------------------------- renderer
def test_shapes_dtype_and_out():
    img = render_face(FaceState(), width=W, height=H)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    out = np.zeros((720, 1280, 3), np.uint8)
    res = render_face(FaceState(expression="anger", intensity=0.7), width=1280, height=720, out=out)
    assert res is out and out.std() > 10          # drawn into the given array
    with pytest.raises(ValueError):
        render_face(FaceState(), width=W, height=H, out=np.zeros((H, W, 3), np.float32))
    with pytest.raises(ValueError):
        render_face(FaceState(), width=W, height=H, out=np.zeros((H + 1, W, 3), np.uint8))
    with pytest.raises(ValueError):
        render_face(FaceState(), width=32, height=H)
    with pytest.raises(ValueError):
        render_face(FaceState(eye_openness=1.5), width=W, height=H)
    with pytest.raises(ValueError):
        render_face(FaceState(yaw_deg=float("nan")), width=W, height=H)
    with pytest.raises(TypeError):
        render_face({"expression": "neutral"}, width=W, height=H)


def test_deterministic_and_noisy():
    s = FaceState(expression="fear", intensity=0.6, yaw_deg=4.0, light_gain=0.8)
    a = render_face(s, width=W, height=H)
    b = render_face(s, width=W, height=H)
    assert np.array_equal(a, b)
    # sensor noise: a state that differs only in the last digits gives a different noise pattern
    c = render_face(FaceState(expression="fear", intensity=0.6, yaw_deg=4.0 + 1e-9, light_gain=0.8), width=W, height=H)
    d = np.abs(a.astype(int) - c.astype(int))
    assert 0.3 < d.mean() < 4.0


def test_eyes_close_with_openness():
    for state_kw in ({}, {"yaw_deg": 10.0, "roll_deg": -8.0, "light_gain": 0.7}):
        dark, rows = [], []
        for op in (1.0, 0.5, 0.0):
            s = FaceState(eye_openness=op, **state_kw)
            img = _gray(render_face(s, width=W, height=H))
            n = r = 0
            for eye in ("left_eye", "right_eye"):
                d = img[_region(s, eye, 0.22, 0.15)] < 70
                n += int(d.sum())
                r += int(d.sum(axis=1).astype(bool).sum())    # rows with something dark
            dark.append(n)
            rows.append(r)
        assert dark[0] > 80                       # iris, pupil and lid margin visible
        assert dark[2] < dark[1] < dark[0], dark
        assert dark[2] < 0.5 * dark[0], dark      # only the lash line is left
        assert rows[2] < 0.5 * rows[0], rows      # ... and it is thin


def test_expressions_differ_and_scale_with_intensity():
    imgs = {e: render_face(FaceState(expression=e, intensity=1.0), width=W, height=H).astype(np.float32)
            for e in EMOTIONS7}
    ref = FaceState()
    mouth = _region(ref, "mouth", 0.45, 0.3)
    upper = _region(ref, "centre", 0.8, 0.25)          # brows and eyes band
    upper = (slice(upper[0].start - int(0.25 * 0.155 * H), upper[0].stop - int(0.25 * 0.155 * H)), upper[1])
    for i, a in enumerate(EMOTIONS7):
        for b in EMOTIONS7[i + 1:]:
            dm = np.abs(imgs[a][mouth] - imgs[b][mouth]).mean()
            du = np.abs(imgs[a][upper] - imgs[b][upper]).mean()
            assert dm + du > 3.0, (a, b, dm, du)   # noise alone is ~1.6
    neutral = imgs["neutral"]
    # happiness, surprise show in the mouth; anger, surprise in the brows
    assert np.abs(imgs["happiness"][mouth] - neutral[mouth]).mean() > 6
    assert np.abs(imgs["surprise"][mouth] - neutral[mouth]).mean() > 6
    assert np.abs(imgs["anger"][upper] - neutral[upper]).mean() > 3
    assert np.abs(imgs["surprise"][upper] - neutral[upper]).mean() > 3
    half = render_face(FaceState(expression="happiness", intensity=0.5), width=W, height=H).astype(np.float32)
    d_half = np.abs(half[mouth] - neutral[mouth]).mean()
    d_full = np.abs(imgs["happiness"][mouth] - neutral[mouth]).mean()
    assert 2.0 < d_half < d_full


def test_expression_params_blend():
    p = expression_params(FaceState(expression="sadness", intensity=0.0))
    assert set(p) == set(PARAM_NAMES) and all(v == 0 for v in p.values())
    full = expression_params(FaceState(expression="surprise", intensity=1.0))
    blended = expression_params(FaceState(expression="anger", intensity=1.0, blend_expression="surprise", blend=1.0))
    assert blended == pytest.approx(full)
    mid = expression_params(FaceState(expression="anger", intensity=0.8, blend_expression="surprise", blend=0.5))
    ang = expression_params(FaceState(expression="anger", intensity=1.0))
    for k in PARAM_NAMES:
        assert mid[k] == pytest.approx(0.8 * 0.5 * (ang[k] + full[k]))
    # a blend is drawn as the blend: half-way images lie between the two ends
    a = render_face(FaceState(expression="happiness", intensity=1.0), width=W, height=H).astype(np.float32)
    b = render_face(FaceState(expression="surprise", intensity=1.0), width=W, height=H).astype(np.float32)
    m = render_face(FaceState(expression="happiness", intensity=1.0, blend_expression="surprise", blend=0.5),
                    width=W, height=H).astype(np.float32)
    mouth = _region(FaceState(), "mouth", 0.45, 0.35)
    dab = np.abs(a[mouth] - b[mouth]).mean()
    assert np.abs(m[mouth] - a[mouth]).mean() < dab and np.abs(m[mouth] - b[mouth]).mean() < dab


def test_lighting_and_position():
    face = _region(FaceState(), "centre", 0.7, 0.8)
    dim = _gray(render_face(FaceState(light_gain=0.6), width=W, height=H)).astype(float)
    bright = _gray(render_face(FaceState(light_gain=1.3), width=W, height=H)).astype(float)
    assert bright[face].mean() > 1.6 * dim[face].mean()
    assert bright.mean() > 1.5 * dim.mean()                       # the room is lit too
    g = _gray(render_face(FaceState(light_gradient=0.5), width=W, height=H)).astype(float)
    fl, fr = face[1].start, face[1].stop
    mid = (fl + fr) // 2
    assert g[face[0], mid:fr].mean() > 1.15 * g[face[0], fl:mid].mean()   # right side of the face lit
    assert g[:, -W // 4:].mean() > 1.2 * g[:, :W // 4].mean()            # and of the room
    # position and size follow cx, cy, scale (located by the Haar cascade)
    casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    boxes = []
    for s in (FaceState(cx=0.42, cy=0.45, scale=0.9), FaceState(cx=0.58, cy=0.55, scale=1.1)):
        r = casc.detectMultiScale(_gray(render_face(s, width=W, height=H)), 1.1, 4, minSize=(60, 60))
        assert len(r) == 1
        x, y, w, h = r[0]
        assert abs(x + w / 2 - s.cx * W) < 0.1 * w and abs(y + h / 2 - s.cy * H) < 0.25 * h
        boxes.append(w)
    assert boxes[1] / boxes[0] == pytest.approx(1.1 / 0.9, rel=0.12)


def test_appearance_per_participant():
    a = FaceAppearance.for_participant(0, "P01")
    assert a == FaceAppearance.for_participant(0, "P01")               # deterministic
    looks = {FaceAppearance.for_participant(s, p) for s in (0, 1) for p in ("P01", "P02", "P03")}
    assert len(looks) == 6
    imgs = [render_face(FaceState(), width=W, height=H, appearance=x).astype(np.float32)
            for x in (DEFAULT_APPEARANCE, a)]
    face = _region(FaceState(), "centre", 0.8, 0.8)
    assert np.abs(imgs[0][face] - imgs[1][face]).mean() > 5
    # the eyes are where face_geometry says for that look
    wide = FaceAppearance(eye_spacing=0.44)
    g0 = face_geometry(FaceState(), width=W, height=H)
    g1 = face_geometry(FaceState(), width=W, height=H, appearance=wide)
    assert g1["right_eye"][0] - g1["left_eye"][0] > g0["right_eye"][0] - g0["left_eye"][0]
    with pytest.raises(ValueError):
        FaceAppearance(skin=(300, 0, 0))
    with pytest.raises(ValueError):
        FaceAppearance(face_width=1.5)
    with pytest.raises(TypeError):
        render_face(FaceState(), width=W, height=H, appearance={"skin": (1, 2, 3)})


def test_yaw_moves_features_roll_rotates_eye_line():
    g0 = face_geometry(FaceState(), width=W, height=H)
    gy = face_geometry(FaceState(yaw_deg=15.0), width=W, height=H)
    assert gy["mouth"][0] - g0["mouth"][0] > 0.15 * g0["unit_px"][0]     # nose/mouth move right
    gr = face_geometry(FaceState(roll_deg=10.0), width=W, height=H)
    (lx, ly), (rx, ry) = gr["left_eye"], gr["right_eye"]
    assert math.degrees(math.atan2(ry - ly, rx - lx)) == pytest.approx(-10.0, abs=0.01)
    a = _gray(render_face(FaceState(), width=W, height=H)).astype(float)
    b = _gray(render_face(FaceState(yaw_deg=15.0), width=W, height=H)).astype(float)
    face = _region(FaceState(), "centre", 0.8, 0.8)
    assert np.abs(a[face] - b[face]).mean() > 4


def test_haar_finds_rendered_faces_sample():
    """Renderer contract: the stock Haar cascade sees this face (the full-rate check with ~200
    states runs through the pipeline in test_face.py)."""
    casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rng = np.random.default_rng(11)
    hits = 0
    n = 40
    for _ in range(n):
        s = FaceState(expression=EMOTIONS7[int(rng.integers(7))], intensity=float(rng.uniform()),
                      eye_openness=float(rng.choice([0.0, 1.0])), yaw_deg=float(rng.uniform(-15, 15)),
                      pitch_deg=float(rng.uniform(-15, 15)), roll_deg=float(rng.uniform(-10, 10)),
                      light_gain=float(rng.uniform(0.6, 1.3)), light_gradient=float(rng.uniform(-0.5, 0.5)))
        img = render_face(s, width=320, height=180)
        hits += len(casc.detectMultiScale(_gray(img), 1.1, 4, minSize=(27, 27))) >= 1
    assert hits >= n - 1


# --------------------------------------------------------------------------- camera device
class _StubPhantom:
    """Duck-typed phantom: records the times it is asked about."""

    def __init__(self) -> None:
        self.asked = []

    def face_state(self, t_us):
        self.asked.append(int(t_us))
        k = len(self.asked)
        return FaceState(expression="happiness", intensity=0.5, eye_openness=0.0 if k % 20 == 0 else 1.0,
                         yaw_deg=5.0 * math.sin(k / 10.0))


def test_camera_delivers_frames_at_nominal_times():
    from emer_live.devices.synthetic_camera import SyntheticCamera

    ph = _StubPhantom()
    events = []
    cam = SyntheticCamera(ph, width=320, height=180, fps=30.0, clock=SessionClock(use_sdk=False),
                          on_event=lambda *a: events.append(a), capacity_s=3.0, max_lag_s=1.0)
    assert cam.info()["width"] == 320 and cam.info()["height"] == 180 and cam.info()["fps"] == 30.0
    cam.open()
    assert cam.stream.name == "camera" and cam.stream.dtype == frame_dtype(320, 180)
    assert cam.stream.nominal_rate_hz == 30.0
    cam.start()
    t_start = time.monotonic()
    time.sleep(1.5)
    elapsed = time.monotonic() - t_start
    cam.stop()
    assert cam.error is None, cam.error
    recs = cam.stream.latest(10_000)
    n = len(recs)
    assert abs(n - 30 * elapsed) <= 4, (n, elapsed)
    t = recs["t_us"]
    assert np.all(np.diff(t) > 0)
    assert np.array_equal(recs["frame_index"], np.arange(n))
    expected = cam.t0_us + (np.arange(n) * 1_000_000 + 15) // 30
    assert np.array_equal(t, expected)
    assert set(np.diff(t).tolist()) <= {33333, 33334}
    assert ph.asked[:n] == t.tolist()                 # each frame shows the state at its own time
    assert cam.stream.counters.gaps == 0 and cam.stream.counters.dropped == 0 and not events
    img = recs["image"][0]
    assert img.shape == (180, 320, 3) and img.dtype == np.uint8 and img.std() > 10
    assert np.array_equal(img, render_face(FaceState(expression="happiness", intensity=0.5,
                                                     yaw_deg=5.0 * math.sin(1 / 10.0)), width=320, height=180))


def test_camera_with_real_phantom_and_bad_arguments():
    from emer_live.devices.synthetic_camera import SyntheticCamera
    from emer_live.phantom.participant import Phantom

    ph = Phantom(seed=3, participant="CAM01")
    cam = SyntheticCamera(ph, width=160, height=90, fps=25.0, clock=SessionClock(use_sdk=False))
    info = cam.info()
    assert info["kind"] == "camera" and info["phantom"]["participant"] == "CAM01"
    assert cam.appearance is not None and cam.appearance != DEFAULT_APPEARANCE
    assert tuple(info["appearance"]["skin"]) == cam.appearance.skin
    cam.start()
    time.sleep(0.5)
    cam.stop()
    assert cam.error is None, cam.error
    recs = cam.stream.latest(1000)
    assert len(recs) >= 8 and set(np.diff(recs["t_us"]).tolist()) == {40000}
    t = int(recs["t_us"][3])
    assert np.array_equal(recs["image"][3], render_face(ph.face_state(t), width=160, height=90,
                                                          appearance=cam.appearance))
    with pytest.raises(ConfigError):
        SyntheticCamera(object())
    with pytest.raises(ConfigError):
        SyntheticCamera(ph, fps=0)
    with pytest.raises(ConfigError):
        SyntheticCamera(ph, width=10)
    with pytest.raises(ConfigError):
        SyntheticCamera(ph, clock=ReplayClock(0, speed=None))
