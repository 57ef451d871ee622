"""Validation math against hand-computed cases, and the calibration controller on the fake SDK."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from emer_live.devices.calibration import (
    CALIBRATION_POINTS, VALIDATION_POINTS, CalibrationController, ValidationThresholds, compute_validation,
    eye_metrics,
)
from emer_live.devices.tobii import TobiiTracker
from emer_live.errors import ConfigError, DeviceUnavailable
from emer_live.geometry import DisplayGeometry
from emer_live.schema import GAZE_DTYPE

try:
    from tests.fakes import fake_tobii_research as fk
except ImportError:
    from fakes import fake_tobii_research as fk

FLAT = DisplayGeometry()       # 531 x 299 mm, upright in the plane z = 0, centre at (0, 164.5, 0)


def records(gaze_ucs, origin, geometry=FLAT, *, ucs=True, valid=None):
    """Gaze records with both eyes at ``origin`` looking at ``gaze_ucs`` (n, 3) on the display."""
    g = np.asarray(gaze_ucs, float)
    n = len(g)
    r = np.zeros(n, GAZE_DTYPE)
    tl = np.array(geometry.top_left)
    ex = np.subtract(geometry.top_right, geometry.top_left)
    ey = np.subtract(geometry.bottom_left, geometry.top_left)
    # display-area coordinates by projecting onto the display edges (they are orthogonal here)
    x_norm = (g - tl) @ ex / (ex @ ex)
    y_norm = (g - tl) @ ey / (ey @ ey)
    ok = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    for eye in ("left", "right"):
        for j, c in enumerate("xyz"):
            r[f"{eye}_gaze_point_in_user_coordinate_system_{c}"] = g[:, j] if ucs else np.nan
            r[f"{eye}_gaze_origin_in_user_coordinate_system_{c}"] = origin[j]
        r[f"{eye}_gaze_point_on_display_area_x"] = x_norm
        r[f"{eye}_gaze_point_on_display_area_y"] = y_norm
        r[f"{eye}_gaze_point_validity"] = ok
        r[f"{eye}_gaze_origin_validity"] = ok
        r[f"{eye}_pupil_validity"] = ok
    r["t_us"] = np.arange(n) * 4000
    return r


CENTRE = np.array([0.0, 164.5, 0.0])
EYE_600 = (0.0, 164.5, 600.0)           # 600 mm straight in front of the display centre


def test_known_offset_gives_known_degrees():
    d = 600 * math.tan(math.radians(1.0))                   # 10.4731 mm at 600 mm = 1 degree
    rec = records(np.tile(CENTRE + [d, 0, 0], (50, 1)), EYE_600)
    m = eye_metrics(rec, (0.5, 0.5), eye="left", geometry=FLAT)
    assert m.accuracy_deg == pytest.approx(1.0, abs=1e-6)
    assert m.precision_rms_deg == pytest.approx(0.0, abs=1e-6) and m.precision_sd_deg == pytest.approx(0.0, abs=1e-6)
    assert m.n_valid == 50 and m.mean_gaze[0] == pytest.approx(0.5 + d / 531)
    # 2 degrees straight up at 600 mm, 0.5 degree sideways at 700 mm
    up = 600 * math.tan(math.radians(2.0))
    m = eye_metrics(records(np.tile(CENTRE + [0, up, 0], (10, 1)), EYE_600), (0.5, 0.5), eye="right", geometry=FLAT)
    assert m.accuracy_deg == pytest.approx(2.0, abs=1e-6)
    side = 700 * math.tan(math.radians(0.5))
    m = eye_metrics(records(np.tile(CENTRE + [-side, 0, 0], (10, 1)), (0.0, 164.5, 700.0)), (0.5, 0.5),
                    eye="left", geometry=FLAT)
    assert m.accuracy_deg == pytest.approx(0.5, abs=1e-6)


def test_precision_rms_and_sd_by_hand():
    # Samples alternate 0.5 deg left/right of the target: successive samples are 1.0 deg apart,
    # each is 0.5 deg from the mean (the target): RMS-S2S = 1.0, SD = 0.5, accuracy = 0.5.
    a = 600 * math.tan(math.radians(0.5))
    g = np.array([CENTRE + [a if i % 2 == 0 else -a, 0, 0] for i in range(40)])
    m = eye_metrics(records(g, EYE_600), (0.5, 0.5), eye="left", geometry=FLAT)
    assert m.precision_rms_deg == pytest.approx(1.0, abs=1e-6)
    assert m.precision_sd_deg == pytest.approx(0.5, abs=1e-6)
    assert m.accuracy_deg == pytest.approx(0.5, abs=1e-6)


def test_invalid_samples_and_broken_pairs():
    a = 600 * math.tan(math.radians(0.5))
    g = np.array([CENTRE + [a if i % 2 == 0 else -a, 0, 0] for i in range(8)])
    valid = [1, 1, 0, 1, 1, 0, 0, 1]          # adjacent valid pairs: (0,1), (3,4) -> both 1.0 deg
    m = eye_metrics(records(g, EYE_600, valid=valid), (0.5, 0.5), eye="left", geometry=FLAT)
    assert m.n_samples == 8 and m.n_valid == 5 and m.valid_fraction == pytest.approx(5 / 8)
    assert m.precision_rms_deg == pytest.approx(1.0, abs=1e-6)
    none = eye_metrics(records(g, EYE_600, valid=[0] * 8), (0.5, 0.5), eye="left", geometry=FLAT)
    assert none.n_valid == 0 and math.isnan(none.accuracy_deg)


def test_tilted_display_and_display_area_fallback():
    # Top edge 100 mm further back than the bottom edge; centre at (0, 160, -50); eye 650 mm away.
    tilted = DisplayGeometry(top_left=(-265.5, 300.0, -100.0), top_right=(265.5, 300.0, -100.0),
                             bottom_left=(-265.5, 20.0, 0.0))
    centre = np.array([0.0, 160.0, -50.0])
    np.testing.assert_allclose(tilted.to_ucs(0.5, 0.5), centre)
    d = 650 * math.tan(math.radians(1.0))
    eye = (0.0, 160.0, 600.0)
    g = np.tile(centre + [d, 0, 0], (20, 1))
    for ucs in (True, False):                # False: only the display-area point is known
        m = eye_metrics(records(g, eye, tilted, ucs=ucs), (0.5, 0.5), eye="right", geometry=tilted)
        assert m.accuracy_deg == pytest.approx(1.0, abs=1e-6)


def test_off_axis_target_matches_independent_formula():
    # Eye 31 mm left of centre, target at (0.3, 0.3), gaze 8 mm right and 5 mm down of it.
    target = np.array([-265.5 + 0.3 * 531, 314 - 0.3 * 299, 0.0])     # (-106.2, 224.3, 0)
    gaze = target + [8.0, -5.0, 0.0]
    eye = np.array([-31.0, 180.0, 620.0])
    u, v = gaze - eye, target - eye
    expected = math.degrees(math.atan2(np.linalg.norm(np.cross(u, v)), u @ v))
    m = eye_metrics(records(np.tile(gaze, (5, 1)), tuple(eye)), (0.3, 0.3), eye="left", geometry=FLAT)
    assert m.accuracy_deg == pytest.approx(expected, abs=1e-6)
    assert 0.7 < expected < 1.0                                         # ~0.86 deg, sanity of the case


def test_aggregate_thresholds_and_report():
    one = 600 * math.tan(math.radians(1.0))
    half = 600 * math.tan(math.radians(0.5))
    data = {(0.5, 0.5): records(np.tile(CENTRE + [one, 0, 0], (20, 1)), EYE_600),
            (0.3, 0.5): None}
    # second point: 0.5 deg offset around its own target, seen from straight in front of it
    t2 = FLAT.to_ucs(0.3, 0.5)
    data[(0.3, 0.5)] = records(np.tile(t2 + [half, 0, 0], (20, 1)), (t2[0], t2[1], 600.0))
    r = compute_validation(data, geometry=FLAT, thresholds=ValidationThresholds(max_accuracy_deg=0.8))
    assert r.left.accuracy_deg == pytest.approx(0.75, abs=1e-6)            # mean of 1.0 and 0.5
    assert r.left.passed and r.right.passed and r.passed
    assert r.points[0].left.passed is False                                # 1.0 deg point alone fails
    strict = compute_validation(data, geometry=FLAT, thresholds=ValidationThresholds(max_accuracy_deg=0.7))
    assert not strict.passed and "accuracy 0.75 deg > 0.7 deg" in strict.left.reasons[0]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["left"]["accuracy_deg"] == pytest.approx(0.75) and d["thresholds"]["max_accuracy_deg"] == 0.8
    assert len(d["points"]) == 2 and "PASSED" in r.summary()


def test_either_eye_and_missing_point():
    one = 600 * math.tan(math.radians(1.0))
    good = records(np.tile(CENTRE + [0.1, 0, 0], (10, 1)), EYE_600)
    bad = records(np.tile(CENTRE + [one * 3, 0, 0], (10, 1)), EYE_600)
    rec = good.copy()
    for name in GAZE_DTYPE.names:
        if name.startswith("right_"):
            rec[name] = bad[name]
    both = compute_validation({(0.5, 0.5): rec}, geometry=FLAT)
    assert both.left.passed and not both.right.passed and not both.passed
    either = compute_validation({(0.5, 0.5): rec}, geometry=FLAT, thresholds=ValidationThresholds(eyes="either"))
    assert either.passed
    empty = compute_validation({(0.5, 0.5): rec, (0.7, 0.7): rec[:0]}, geometry=FLAT)
    assert not empty.passed and any("no valid gaze at point (0.7, 0.7)" in s for s in empty.left.reasons)


def test_threshold_and_point_validation():
    with pytest.raises(ConfigError):
        ValidationThresholds(max_accuracy_deg=-1)
    with pytest.raises(ConfigError):
        ValidationThresholds(eyes="one")
    with pytest.raises(ValueError, match="outside the display"):
        eye_metrics(np.zeros(1, GAZE_DTYPE), (1.5, 0.5), eye="left", geometry=FLAT)
    with pytest.raises(ValueError):
        compute_validation({}, geometry=FLAT)
    assert not set(VALIDATION_POINTS) & (set(CALIBRATION_POINTS[5]) | set(CALIBRATION_POINTS[9]))


# ----------------------------------------------------------------------------- controller + fake SDK
@pytest.fixture
def tracker():
    fk.fake_reset(speed=10.0)
    et = fk.fake_add_tracker(gaze_noise=0.0, head_sway_mm=0.0, blink_every_s=0.0,
                             calibration_fail_points=[(0.1, 0.1)])
    events = []
    tr = TobiiTracker(sdk=fk, clock=fk.fake_clock(), frequency=250,
                      on_event=lambda t, k, d: events.append((k, d)))
    tr.open()
    tr.fake = et
    tr.events = events
    yield tr
    if tr.running:
        tr.stop()
    fk.fake_reset()


@pytest.mark.parametrize("n", [5, 9])
def test_calibration_run(tracker, n):
    ctl = CalibrationController(tracker, points=n)
    shown = []
    res = ctl.run_calibration(shown.append)
    assert shown == list(CALIBRATION_POINTS[n])
    assert res.ok and res.status == "success" and len(res.points) == n
    assert set(tracker.fake._cal_points) == set(CALIBRATION_POINTS[n])
    assert not ctl.calibrating and not tracker.fake._calibrating
    p = res.points[0]
    # the fake puts calibration samples 0.004/-0.003 display units off: sqrt(2.124^2 + 0.897^2) mm
    assert p["left"]["n_used"] == 8 and p["left"]["offset_mm"] == pytest.approx(2.306, abs=0.4)
    collects = [d for k, d in tracker.events if k == "calibration" and d["action"] == "collect"]
    assert [d["tries"] for d in collects if (d["x"], d["y"]) == (0.1, 0.1)] == [2]   # failed once, retried
    assert json.loads(json.dumps(ctl.to_dict()))["calibration"]["status"] == "success"


def test_recalibrate_single_point_and_mode_rules(tracker):
    ctl = CalibrationController(tracker, points=5)
    ctl.run_calibration()
    res = ctl.recalibrate_point((0.9, 0.9))
    assert res.ok and not ctl.calibrating
    actions = [d["action"] for k, d in tracker.events if k == "calibration"]
    assert actions[-5:] == ["enter", "discard", "collect", "compute", "leave"]
    with pytest.raises(RuntimeError, match="begin"):
        ctl.collect((0.5, 0.5))
    with ctl:
        with pytest.raises(RuntimeError):
            ctl.begin()
        with pytest.raises(ValueError):
            ctl.collect((0.5, 1.2))
    assert not tracker.fake._calibrating
    with pytest.raises(ValueError):
        CalibrationController(tracker, points=7)


def test_tracker_without_calibration_can_only_validate():
    class Plain:
        name = "synthetic"
        stream = None

    with pytest.raises(DeviceUnavailable, match="cannot be calibrated"):
        CalibrationController(Plain()).begin()


def test_validation_from_the_live_stream(tracker):
    """Fake participant fixates each validation point 0.01 display widths to the right."""
    tracker.fake.config.look_bias = (0.01, 0.0)
    tracker.start()
    ctl = CalibrationController(tracker)

    def show(p):
        tracker.fake.config.look_at = p

    res = ctl.run_validation(show, settle_s=0.1, duration_s=0.4)
    tracker.stop()
    geo = tracker.display_geometry()
    for eye, ox in (("left", -31.0), ("right", 31.0)):
        o = np.array([ox, 180.0, 620.0])
        exp = []
        for p in VALIDATION_POINTS:
            u = geo.to_ucs(p[0] + 0.01, p[1]) - o
            v = geo.to_ucs(*p) - o
            exp.append(math.degrees(math.atan2(np.linalg.norm(np.cross(u, v)), u @ v)))
        m = res.eye(eye)
        assert m.accuracy_deg == pytest.approx(np.mean(exp), abs=1e-3)
        assert m.precision_rms_deg == pytest.approx(0.0, abs=1e-3)
        assert m.n_valid >= 4 * 90                                    # ~100 samples per point at 250 Hz
    assert res.passed
    assert any(k == "validation" and d["action"] == "result" for k, d in tracker.events)
