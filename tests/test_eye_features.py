"""Eye-movement pre-processing, the 39 eye features and their windows, on hand-built signals."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from emer_live.errors import CheckpointError, ConfigError
from emer_live.features.eye import (EYE_FEATURE_GROUPS, EYE_FEATURE_NAMES, EYE_FEATURE_UNITS, EyeConfig,
                                    analyse, classify_events, detect_blinks, eye_window, preprocess,
                                    sample_features)
from emer_live.features.ivt import FIXATION, OTHER, SACCADE
from emer_live.features.normalise import FeatureStats
from emer_live.geometry import DEFAULT_DISPLAY
from emer_live.schema import GAZE_DTYPE

DOCS = Path(__file__).resolve().parents[1] / "docs" / "eye_features.md"
T0 = 10_000_000_000          # an arbitrary session-clock origin (us)
HEAD = (0.0, 165.0, 650.0)   # eyes' midpoint in UCS mm: 650 mm from the tracker, level with the screen centre


# --------------------------------------------------------------------------- helpers

def times(rate_hz: float, duration_s: float, start_us: int = T0) -> np.ndarray:
    n = int(round(duration_s * rate_hz))
    return start_us + np.round(np.arange(n) * 1e6 / rate_hz).astype(np.int64)


def make_gaze(t_us, lx, ly, rx=None, ry=None, *, pupil_left=3.5, pupil_right=3.6, head=HEAD,
              ipd_mm=62.0, lost_left=None, lost_right=None, geometry=DEFAULT_DISPLAY) -> np.ndarray:
    """Gaze records from per-eye display trajectories (normalised 0..1), a fixed head and the
    default display. ``lost_*`` masks make every field of that eye invalid (NaN, validity 0)."""
    t = np.asarray(t_us, np.int64)
    n = t.size
    rx = lx if rx is None else rx
    ry = ly if ry is None else ry
    g = np.zeros(n, GAZE_DTYPE)
    g["t_us"] = t
    g["system_time_stamp"] = t
    g["device_time_stamp"] = t + 123_456
    for eye, x, y, p, lost, dx in (("left", lx, ly, pupil_left, lost_left, -ipd_mm / 2),
                                   ("right", rx, ry, pupil_right, lost_right, ipd_mm / 2)):
        x = np.broadcast_to(np.asarray(x, float), (n,))
        y = np.broadcast_to(np.asarray(y, float), (n,))
        pts = geometry.to_ucs(x, y)
        g[f"{eye}_gaze_point_on_display_area_x"] = x
        g[f"{eye}_gaze_point_on_display_area_y"] = y
        for i, c in enumerate("xyz"):
            g[f"{eye}_gaze_point_in_user_coordinate_system_{c}"] = pts[:, i]
            g[f"{eye}_gaze_origin_in_user_coordinate_system_{c}"] = head[i] + (dx if c == "x" else 0.0)
            g[f"{eye}_gaze_origin_in_trackbox_coordinate_system_{c}"] = 0.5
        g[f"{eye}_pupil_diameter"] = np.broadcast_to(np.asarray(p, float), (n,))
        for v in ("gaze_point_validity", "pupil_validity", "gaze_origin_validity"):
            g[f"{eye}_{v}"] = 1
        if lost is not None:
            lost = np.asarray(lost, bool)
            for name in g.dtype.names:
                if name.startswith(eye + "_"):
                    g[name][lost] = 0 if name.endswith("validity") else np.nan
    return g


def x_for_angle(theta_deg, head=HEAD, geometry=DEFAULT_DISPLAY):
    """Display x (normalised) of the point seen at horizontal angle ``theta`` from the eyes'
    midpoint (for gaze at the eyes' height)."""
    x_mm = head[0] + head[2] * np.tan(np.radians(theta_deg))
    return (x_mm - geometry.top_left[0]) / geometry.width_mm


def y_level(head=HEAD, geometry=DEFAULT_DISPLAY):
    return (geometry.top_left[1] - head[1]) / geometry.height_mm


def lost_between(t, a_s, b_s, start_us=T0):
    return (t >= start_us + round(a_s * 1e6)) & (t < start_us + round(b_s * 1e6))


def saccade_trial(rate_hz, *, amp_deg=20.0, speed=100.0, fix_s=0.3):
    """Fixation at -amp/2, a sweep at ``speed`` deg/s to +amp/2, fixation again."""
    sweep_s = amp_deg / speed
    t = times(rate_hz, 2 * fix_s + sweep_s)
    ts = (t - T0) / 1e6
    theta = np.clip(-amp_deg / 2 + speed * (ts - fix_s), -amp_deg / 2, amp_deg / 2)
    return make_gaze(t, x_for_angle(theta), y_level()), ts, sweep_s


# --------------------------------------------------------------------------- configuration

def test_config_round_trip_and_validation():
    cfg = EyeConfig(velocity_threshold_deg_s=40.0, median_window=5, eye_selection="left")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert EyeConfig.from_dict(d) == cfg
    assert EyeConfig.from_dict({}) == EyeConfig()
    with pytest.raises(ConfigError, match="median_window"):
        EyeConfig(median_window=4)
    with pytest.raises(ConfigError, match="blink_min_ms"):
        EyeConfig(blink_min_ms=500.0)
    with pytest.raises(ConfigError, match="eye_selection"):
        EyeConfig(eye_selection="both")
    with pytest.raises(ValueError, match="gap_fill_max_ms"):
        EyeConfig(gap_fill_max_ms=float("nan"))
    with pytest.raises(ConfigError, match="unknown keys"):
        EyeConfig.from_dict({"velocity_threshold": 30})


def test_bad_inputs_are_refused():
    g = make_gaze(times(250, 0.2), 0.5, 0.5)
    with pytest.raises(ValueError, match="sorted"):
        preprocess(g[::-1])
    with pytest.raises(TypeError):
        preprocess(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="after"):
        eye_window(g, t0_us=T0, t1_us=T0)


# --------------------------------------------------------------------------- blinks and gaps

def test_200ms_blink_is_interpolated_600ms_loss_is_not():
    t = times(250, 3.0)
    ts = (t - T0) / 1e6
    x = 0.4 + 0.02 * ts                       # slow linear drift: interpolation must reproduce it
    pl, pr = 3.0 + 0.2 * ts, 3.4 - 0.1 * ts
    blink = lost_between(t, 0.8, 1.0)          # 200 ms, both eyes
    loss = lost_between(t, 1.8, 2.4)           # 600 ms, both eyes
    lost = blink | loss
    g = make_gaze(t, x, 0.5, pupil_left=pl, pupil_right=pr, lost_left=lost, lost_right=lost)

    blinks = detect_blinks(g)
    assert blinks.dtype == np.int64 and blinks.shape == (1, 2)
    assert blinks[0, 0] == T0 + 800_000 and blinks[0, 1] == T0 + 1_000_000

    pre = preprocess(g)
    np.testing.assert_allclose(pre.pupil_left[blink], pl[blink], atol=1e-5)
    np.testing.assert_allclose(pre.pupil_right[blink], pr[blink], atol=1e-5)
    np.testing.assert_allclose(pre.display_left[blink, 0], x[blink], atol=1e-6)
    assert pre.blink[blink].all() and not pre.blink[~blink].any()
    assert pre.filled[blink].all()
    # the long loss is never invented
    assert np.isnan(pre.pupil_left[loss]).all() and np.isnan(pre.display_mean[loss]).all()
    assert not pre.filled[loss].any()
    assert not pre.gaze_valid[lost].any()          # recorded validity is kept

    ev = classify_events(pre)
    assert (ev.label[blink] == OTHER).all() and (ev.label[loss] == OTHER).all()
    f = sample_features(g)
    assert (f[blink, 28:34] == 0).all()            # validities show the loss
    assert np.isfinite(f[blink, 24:26]).all() and np.isnan(f[loss, 24]).all()


@pytest.mark.parametrize("dur_s, is_blink, filled", [(0.060, False, True), (0.100, True, True),
                                                     (0.400, True, True), (0.460, False, False)])
def test_blink_limits(dur_s, is_blink, filled):
    t = times(250, 2.0)
    lost = lost_between(t, 0.9, 0.9 + dur_s)
    g = make_gaze(t, 0.5, 0.5, lost_left=lost, lost_right=lost)
    assert len(detect_blinks(g)) == int(is_blink)
    pre = preprocess(g)
    assert np.isfinite(pre.pupil_left[lost]).all() == filled


def test_short_one_eye_gap_is_filled_long_one_is_not():
    t = times(250, 2.0)
    short = lost_between(t, 0.5, 0.54)         # 40 ms, left eye only
    long_ = lost_between(t, 1.2, 1.3)          # 100 ms, left eye only: not a blink (right pupil seen)
    g = make_gaze(t, 0.3, 0.5, 0.32, 0.5, lost_left=short | long_)
    assert len(detect_blinks(g)) == 0
    pre = preprocess(g)
    assert np.isfinite(pre.display_left[short]).all() and np.isnan(pre.display_left[long_]).all()
    # the mean gaze falls back to the right eye where the left one is lost
    np.testing.assert_allclose(pre.display_mean[long_, 0], 0.32, atol=1e-6)
    np.testing.assert_allclose(pre.display_mean[~long_, 0], 0.31, atol=1e-6)


def test_moving_median_removes_single_sample_spikes():
    t = times(250, 1.0)
    x = np.full(t.size, 0.5)
    x[100] = 0.9
    pre = preprocess(make_gaze(t, x, 0.5))
    assert pre.display_left[100, 0] == pytest.approx(0.5)
    pre = preprocess(make_gaze(t, x, 0.5), config=EyeConfig(median_window=1))
    assert pre.display_left[100, 0] == pytest.approx(0.9)


# --------------------------------------------------------------------------- velocity and I-VT

@pytest.mark.parametrize("rate", [60, 120, 250])
def test_sweep_is_a_saccade_and_still_gaze_a_fixation(rate):
    g, ts, sweep_s = saccade_trial(rate, amp_deg=20.0, speed=100.0)
    pre = preprocess(g)
    ev = classify_events(pre)
    mid = (ts > 0.3 + 0.05) & (ts < 0.3 + sweep_s - 0.05)
    still = (ts < 0.25) | (ts > 0.3 + sweep_s + 0.05)
    assert (ev.label[mid] == SACCADE).all()
    assert (ev.label[still] == FIXATION).all()
    # velocity of the known sweep within 10 %
    np.testing.assert_allclose(pre.velocity[mid], 100.0, rtol=0.10)
    assert np.nanmax(pre.velocity[still]) < 1.0
    kinds = ev.table["kind"].tolist()
    assert kinds == [FIXATION, SACCADE, FIXATION]
    sac = ev.table[1]
    assert sac["duration_ms"] == pytest.approx(1000 * sweep_s, abs=2.5 * 1000 / rate + 20)
    # each sample carries its event's duration
    assert np.all(ev.duration_ms[mid] == sac["duration_ms"])


def test_velocity_uses_the_eyes_3d_position():
    """The same on-screen sweep seen from twice the distance is half as fast in deg/s."""
    rate = 250
    t = times(rate, 0.6)
    ts = (t - T0) / 1e6
    x_mm = 100.0 * ts * 1.0                       # 100 mm/s horizontally through the screen centre
    x = 0.5 + x_mm / DEFAULT_DISPLAY.width_mm
    near = preprocess(make_gaze(t, x, y_level(), head=(0.0, 165.0, 500.0)))
    far = preprocess(make_gaze(t, x, y_level(), head=(0.0, 165.0, 1000.0)))
    mid = (ts > 0.2) & (ts < 0.4)
    ratio = np.median(near.velocity[mid]) / np.median(far.velocity[mid])
    assert ratio == pytest.approx(2.0, rel=0.03)
    expected = math.degrees(100.0 / 500.0)        # small angles near the screen centre
    assert np.median(near.velocity[mid]) == pytest.approx(expected, rel=0.05)


def test_nearby_fixations_are_merged():
    rate = 250
    t = times(rate, 1.0)
    ts = (t - T0) / 1e6
    theta = np.where(ts >= 0.5, 0.2, 0.0)          # second fixation 0.2 deg away
    # between them a 40 ms excursion: out to 4 deg at 100 deg/s, then straight back (a symmetric
    # out-and-back would have a slow turning point that I-VT calls a 1-sample fixation, which
    # sits between the two and stops the merge, as in Tobii's filter)
    ramp = (ts >= 0.46) & (ts < 0.5)
    theta = theta + np.where(ramp, 100.0 * (ts - 0.46), 0.0)
    g = make_gaze(t, x_for_angle(theta), y_level())
    ev = classify_events(preprocess(g))
    assert ev.table["kind"].tolist() == [FIXATION]            # merged over the excursion
    assert ev.table["duration_ms"][0] == pytest.approx(1000.0)
    ev = classify_events(preprocess(g), config=EyeConfig(merge_max_gap_ms=0.0))
    assert ev.table["kind"].tolist() == [FIXATION, SACCADE, FIXATION]
    ev = classify_events(preprocess(g), config=EyeConfig(merge_max_angle_deg=0.1))
    assert ev.fixations.size == 2


def test_short_fixations_are_discarded():
    rate = 250
    t = times(rate, 1.0)
    ts = (t - T0) / 1e6
    # sweep 0 -> 10 deg, pause, sweep 10 -> 20 deg, both at 200 deg/s
    def trial(pause_s):
        theta = np.clip(200.0 * (ts - 0.3), 0, 10) + np.clip(200.0 * (ts - 0.35 - pause_s), 0, 10)
        return classify_events(preprocess(make_gaze(t, x_for_angle(theta), y_level())))
    assert trial(0.045).table["kind"].tolist() == [FIXATION, SACCADE, OTHER, SACCADE, FIXATION]
    assert trial(0.120).table["kind"].tolist() == [FIXATION, SACCADE, FIXATION, SACCADE, FIXATION]


# --------------------------------------------------------------------------- the 39 features

def _doc_table():
    rows = []
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|\s*`([a-z_]+)`\s*\|\s*([^|]+?)\s*\|", line)
        if m:
            rows.append((int(m.group(1)), m.group(2), m.group(3)))
    return rows


def test_documented_names_units_and_order_match_the_code():
    rows = _doc_table()
    assert [r[0] for r in rows] == list(range(39))
    assert tuple(r[1] for r in rows) == EYE_FEATURE_NAMES
    assert tuple(r[2] for r in rows) == EYE_FEATURE_UNITS
    assert len(set(EYE_FEATURE_NAMES)) == 39


def test_features_land_in_the_documented_order():
    rate = 250
    t = times(rate, 1.0)
    i = np.arange(t.size)
    head = (5.0, 160.0, 640.0)
    lost_rp = np.zeros(t.size, bool)
    g = make_gaze(t, 0.30, 0.40, 0.50, 0.60, pupil_left=3.0 + 0.001 * i, pupil_right=4.0 - 0.002 * i,
                  head=head, ipd_mm=62.0, lost_right=lost_rp)
    k = 120
    g["right_gaze_origin_validity"][k] = 0      # a distinct validity pattern at sample k
    for c in "xyz":
        g[f"right_gaze_origin_in_user_coordinate_system_{c}"][k] = np.nan
    f = sample_features(g)
    assert f.shape == (t.size, 39) and f.dtype == np.float32
    row = f[k].astype(np.float64)
    G = EYE_FEATURE_GROUPS
    lp, rp = DEFAULT_DISPLAY.to_ucs(0.30, 0.40), DEFAULT_DISPLAY.to_ucs(0.50, 0.60)
    lo = np.array([head[0] - 31, head[1], head[2]])
    ro = np.array([head[0] + 31, head[1], head[2]])
    np.testing.assert_allclose(row[G["gaze_display"]], [0.40, 0.50, 0.30, 0.40, 0.50, 0.60], atol=1e-6)
    np.testing.assert_allclose(row[G["gaze_ucs"]], np.concatenate([lp, rp]), atol=1e-3)
    # the lost origin sample is gap-filled (constant head) while its validity stays 0
    np.testing.assert_allclose(row[G["origin_ucs"]], np.concatenate([lo, ro]), atol=1e-3)
    dl, dr = (lp - lo) / np.linalg.norm(lp - lo), (rp - ro) / np.linalg.norm(rp - ro)
    np.testing.assert_allclose(row[G["direction"]], np.concatenate([dl, dr]), atol=1e-6)
    np.testing.assert_allclose(row[G["pupil"]], [3.0 + 0.001 * k, 4.0 - 0.002 * k], atol=1e-5)
    np.testing.assert_allclose(row[G["pupil_fluctuation"]], [0.001, -0.002], atol=1e-5)
    np.testing.assert_array_equal(row[G["validity"]], [1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(row[G["event"]], [1, 0, 0])
    assert row[G["event_duration"]][0] == pytest.approx(1000.0)      # one fixation over the whole second
    assert row[G["velocity"]][0] == pytest.approx(0.0, abs=1e-3)
    assert np.isnan(f[0, 26:28]).all()        # no previous sample for the first fluctuation


# --------------------------------------------------------------------------- windows

def _smooth(rate, t0, t1, context_s=1.0):
    t = times(rate, (t1 - t0) / 1e6 + context_s, start_us=t0 - round(context_s * 1e6))
    ts = (t - T0) / 1e6
    x = 0.5 + 0.05 * np.sin(2 * np.pi * 0.2 * ts)
    y = 0.5 + 0.03 * np.cos(2 * np.pi * 0.15 * ts)
    p = 3.5 + 0.3 * np.sin(2 * np.pi * 0.1 * ts)
    return make_gaze(t, x, y, x + 0.01, y, pupil_left=p, pupil_right=p + 0.2)


def test_window_is_the_mean_of_equal_time_bins():
    t0, t1 = T0 + 1_000_000, T0 + 9_000_000
    g = _smooth(250, t0, t1, context_s=0.5)      # exactly the context the window uses
    w = eye_window(g, t0_us=t0, t1_us=t1)
    assert w.features.shape == (32, 39) and w.features.dtype == np.float32
    assert w.step_valid.all() and w.n_samples == 2000 and w.valid_fraction == 1.0 and w.blinks == 0
    f = sample_features(g).astype(np.float64)
    t = g["t_us"]
    b = (t - t0) * 32 // (t1 - t0)
    for j in (0, 7, 31):
        sel = (t >= t0) & (b == j)
        assert sel.sum() == 62 or sel.sum() == 63
        np.testing.assert_allclose(w.features[j], f[sel].mean(axis=0), rtol=1e-5, atol=1e-5)


def test_250hz_and_60hz_give_the_same_steps():
    t0, t1 = T0 + 1_000_000, T0 + 9_000_000
    a = eye_window(_smooth(250, t0, t1), t0_us=t0, t1_us=t1)
    b = eye_window(_smooth(60, t0, t1), t0_us=t0, t1_us=t1)
    assert a.step_valid.all() and b.step_valid.all()
    fa, fb = a.features.astype(np.float64), b.features.astype(np.float64)
    same = np.r_[0:26, 28:38]
    scale = np.maximum(np.ptp(fa[:, same], axis=0), 1e-3)
    err = np.abs(fa[:, same] - fb[:, same]) / scale
    assert err.max() < 0.02, EYE_FEATURE_NAMES[same[np.argmax(err.max(axis=0))]]
    # pupil fluctuation is a per-sample difference: equal once expressed per second
    np.testing.assert_allclose(fa[:, 26:28] * 250, fb[:, 26:28] * 60, rtol=0.05, atol=0.01)
    np.testing.assert_allclose(fa[:, 38], fb[:, 38], atol=0.5)       # slow drift: < 1 deg/s both


def test_window_without_valid_gaze_is_zeros_and_masked():
    t = times(250, 9.0)
    lost = np.ones(t.size, bool)
    g = make_gaze(t, 0.5, 0.5, lost_left=lost, lost_right=lost)
    w = eye_window(g, t0_us=T0 + 1_000_000, t1_us=T0 + 9_000_000)
    assert np.array_equal(w.features, np.zeros((32, 39), np.float32)) and not w.step_valid.any()
    assert w.valid_fraction == 0.0 and w.n_samples == 2000
    empty = eye_window(g[:0], t0_us=T0, t1_us=T0 + 8_000_000)
    assert np.array_equal(empty.features, np.zeros((32, 39), np.float32)) and not empty.step_valid.any()
    assert empty.n_samples == 0


def test_lost_and_missing_steps_are_masked_and_finite():
    t0, t1 = T0 + 1_000_000, T0 + 9_000_000
    g = _smooth(250, t0, t1)
    t = g["t_us"]
    lost = (t >= t0 + 6_500_000)                                     # tracking lost for the last 1.5 s
    for eye in ("left", "right"):
        for name in g.dtype.names:
            if name.startswith(eye + "_"):
                g[name][lost] = 0 if name.endswith("validity") else np.nan
    g = g[~((t >= t0 + 2_000_000) & (t < t0 + 3_000_000))]           # and no samples at all for 1 s
    w = eye_window(g, t0_us=t0, t1_us=t1)
    assert np.isfinite(w.features).all()
    step_t = t0 + (np.arange(32) + 0.5) * (t1 - t0) / 32
    gap = (step_t > t0 + 2_000_000) & (step_t < t0 + 3_000_000)
    tail = step_t > t0 + 6_500_000
    assert not w.step_valid[gap | tail].any() and w.step_valid[~(gap | tail)].all()
    assert (w.features[gap][:, 28:34] == 0).all() and (w.features[gap][:, 34:37] == [0, 0, 1]).all()
    assert (w.features[tail][:, 28:34] == 0).all() and (w.features[tail][:, 36] == 1).all()
    assert w.valid_fraction == pytest.approx(1 - 1.5 / 7.0, abs=0.01)   # 1.5 s lost of 7 s sampled
    # lost steps carry the nearest known gaze, not zeros
    last = np.flatnonzero(w.step_valid)[-1]
    np.testing.assert_allclose(w.features[tail][:, 0], w.features[last, 0])


def test_window_uses_context_before_its_start():
    """A window that starts mid-saccade classifies its first samples as saccade only because the
    pre-processing sees the samples before t0."""
    g, ts, sweep_s = saccade_trial(250, amp_deg=20.0, speed=100.0)
    t0 = T0 + 400_000                          # 100 ms into the sweep
    t1 = T0 + 700_000
    a = analyse(g, t0_us=t0, t1_us=t1)
    assert a.first > 0 and a.pre.t_us[a.first] == t0
    w = eye_window(g, t0_us=t0, t1_us=t1, analysis=a)
    assert w.features[0, 35] == 1.0             # the first step is all saccade
    assert w.features[0, 38] == pytest.approx(100.0, rel=0.1)
    cut = eye_window(g[g["t_us"] >= t0], t0_us=t0, t1_us=t1)
    assert cut.features[0, 38] < w.features[0, 38]   # without context the first velocities are cut short
    with pytest.raises(ValueError, match="analysis"):
        eye_window(g, t0_us=t0, t1_us=t1 + 1, analysis=a)


def test_blinks_are_counted_per_window():
    t = times(250, 9.0)
    lost = lost_between(t, 2.0, 2.15) | lost_between(t, 5.0, 5.3) | lost_between(t, 0.8, 0.95)
    g = make_gaze(t, 0.5, 0.5, lost_left=lost, lost_right=lost)
    w = eye_window(g, t0_us=T0 + 1_000_000, t1_us=T0 + 9_000_000)
    assert w.blinks == 2                        # the one at 0.8 s starts before the window
    assert w.step_valid.all()                   # blinks are interpolated


# --------------------------------------------------------------------------- normalisation

def _corpus():
    rng = np.random.default_rng(7)
    arrays = [rng.normal(loc=[1e6, 5.0, 1.0], scale=[2.0, 0.5, 0.0], size=(32, 3)) for _ in range(5)]
    masks = [rng.random(32) > 0.3 for _ in range(5)]
    for a, m in zip(arrays, masks):
        a[~m] = 1e9                      # garbage in masked steps must not matter
    arrays[2][4, 1] = np.nan             # NaN is ignored
    return arrays, masks


def test_feature_stats_fit_ignores_masked_steps_and_nan():
    arrays, masks = _corpus()
    st = FeatureStats.fit(arrays, masks=masks, names=("a", "b", "c"))
    used = np.concatenate([a[m] for a, m in zip(arrays, masks)])
    np.testing.assert_allclose(st.mean, np.nanmean(used, axis=0), rtol=1e-12)
    np.testing.assert_allclose(st.std[:2], np.nanstd(used, axis=0)[:2], rtol=1e-9)
    assert st.count.tolist() == [len(used), len(used) - int(np.isnan(used[:, 1]).sum()), len(used)]
    # the constant feature is centred but not scaled (no explosion)
    assert st.std[2] == 0 and st.scale[2] == 1.0
    y = st.apply(np.array([[1e6 + 2.0, 5.5, 0.0]]))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], [(2.0 - (st.mean[0] - 1e6)) / st.std[0], (5.5 - st.mean[1]) / st.std[1], -1.0],
                               rtol=1e-4)
    np.testing.assert_allclose(st.invert(st.apply(used[:3])), used[:3], rtol=1e-6)
    assert np.abs(st.apply(np.array([[0.0, 0.0, 0.0]]), clip=5.0)).max() == 5.0
    with pytest.raises(ValueError, match="expected"):
        st.apply(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="mask"):
        FeatureStats.fit(arrays, masks=[np.ones(31, bool)] * 5)
    with pytest.raises(ValueError, match="no finite"):
        FeatureStats.fit([np.full((4, 2), np.nan)])


def test_feature_stats_round_trip():
    arrays, masks = _corpus()
    st = FeatureStats.fit(arrays, masks=masks, names=("a", "b", "c"))
    d = json.loads(json.dumps(st.to_dict()))
    back = FeatureStats.from_dict(d)
    np.testing.assert_array_equal(back.mean, st.mean)
    np.testing.assert_array_equal(back.std, st.std)
    assert back.names == st.names and back.std_floor == st.std_floor
    x = np.random.default_rng(1).normal(size=(4, 3))
    np.testing.assert_array_equal(back.apply(x), st.apply(x))
    with pytest.raises(CheckpointError):
        FeatureStats.from_dict({"version": 1, "mean": [0.0], "std": [1.0]})
    with pytest.raises(CheckpointError):
        FeatureStats.from_dict({"version": 99})


@pytest.mark.torch
def test_feature_stats_and_config_load_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    arrays, masks = _corpus()
    st = FeatureStats.fit(arrays, masks=masks, names=EYE_FEATURE_NAMES[:3])
    torch.save({"eye_stats": st.to_dict(), "eye_config": EyeConfig().to_dict()}, tmp_path / "ck.pt")
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    back = FeatureStats.from_dict(ck["eye_stats"])
    np.testing.assert_array_equal(back.mean, st.mean)
    assert EyeConfig.from_dict(ck["eye_config"]) == EyeConfig()


def test_feature_stats_on_eye_windows():
    t0, t1 = T0 + 1_000_000, T0 + 9_000_000
    wins = [eye_window(_smooth(rate, t0, t1), t0_us=t0, t1_us=t1) for rate in (120, 250)]
    st = FeatureStats.fit([w.features for w in wins], masks=[w.step_valid for w in wins],
                          names=EYE_FEATURE_NAMES)
    z = st.apply(wins[1].features)
    assert np.isfinite(z).all() and np.abs(z).max() < 10
    # validities were always 1: centred to 0, not blown up
    assert np.all(z[:, EYE_FEATURE_GROUPS["validity"]] == 0)


# --------------------------------------------------------------------------- against the phantom

def _overlap_matches(a: np.ndarray, b: np.ndarray) -> int:
    """Rows of interval array ``a`` that overlap some row of ``b``."""
    return int(sum(np.any((b[:, 0] < e) & (b[:, 1] > s)) for s, e in a))


@pytest.fixture(scope="module")
def phantom_gaze():
    from emer_live.phantom.participant import Phantom
    out = {}
    for rate in (250.0, 60.0):
        ph = Phantom(seed=5, participant="P05")
        g = ph.generate_gaze(T0, T0 + 90_000_000, rate)
        out[rate] = (ph, g)
    return out


@pytest.mark.parametrize("rate", [250.0, 60.0])
def test_detect_blinks_matches_phantom_truth(phantom_gaze, rate):
    ph, g = phantom_gaze[rate]
    inner = lambda x: x[(x[:, 0] > T0 + 500_000) & (x[:, 1] < T0 + 89_500_000)]   # noqa: E731
    truth = inner(ph.blinks(T0, T0 + 90_000_000))
    det = inner(detect_blinks(g))
    assert len(truth) >= 10
    recall = _overlap_matches(truth, det) / len(truth)
    precision = _overlap_matches(det, truth) / max(len(det), 1)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    # matched blinks start and end within a sample period (+ the tracker's lid-edge slack)
    period = 1e6 / rate
    for s, e in det:
        k = np.flatnonzero((truth[:, 0] < e) & (truth[:, 1] > s))
        if k.size == 1:
            assert abs(s - truth[k[0], 0]) <= period + 1 and abs(e - truth[k[0], 1]) <= period + 1


def test_ivt_recovers_phantom_fixations(phantom_gaze):
    ph, g = phantom_gaze[250.0]
    fx = [r for r in ph.truth_rows if r["kind"] == "fixation"]
    assert len(fx) > 100
    pre = preprocess(g)
    ev = classify_events(pre)
    t = g["t_us"]
    truth = np.zeros(t.size, bool)
    for r in fx:
        truth[np.searchsorted(t, r["t_start_us"]):np.searchsorted(t, r["t_end_us"])] = True
    known = pre.gaze_valid.any(axis=1)
    agree = np.mean(truth[known] == (ev.label[known] == FIXATION))
    assert agree > 0.95
    assert len(ev.fixations) == pytest.approx(len(fx), rel=0.1)
