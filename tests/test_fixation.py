"""Fixation modality: sequence in stimulus coordinates, points, heatmaps and their sigma."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emer_live.features.eye import analyse
from emer_live.features.fixation import (fixation_heatmap, fixation_points, fixation_sequence,
                                         sigma_px_for_1deg, to_stimulus_coords, viewing_distance_mm)
from emer_live.geometry import DEFAULT_DISPLAY, DisplayGeometry, angle_deg

from test_eye_features import HEAD, T0, lost_between, make_gaze, times

RECT = (0.25, 0.25, 0.75, 0.75)


def two_fixations(rate=250):
    """Fixate (0.25, 0.25) for 4 s, then (0.75, 0.60) for 4 s, after 0.5 s of context."""
    t = times(rate, 8.5, start_us=T0 - 500_000)
    second = t >= T0 + 4_000_000
    x = np.where(second, 0.75, 0.25)
    y = np.where(second, 0.60, 0.25)
    return make_gaze(t, x, y)


def test_sequence_is_in_stimulus_coordinates():
    g = two_fixations()
    seq, mask = fixation_sequence(g, t0_us=T0, t1_us=T0 + 8_000_000, stimulus_rect=RECT)
    assert seq.shape == (32, 2) and seq.dtype == np.float32 and mask.dtype == bool
    assert np.isfinite(seq).all()
    np.testing.assert_allclose(seq[:15], 0.0, atol=1e-6)
    np.testing.assert_allclose(seq[17:], np.tile([1.0, 0.7], (15, 1)), atol=1e-6)
    # the saccade's step holds only fixation samples' positions (from both fixations)
    assert mask.all()
    full, _ = fixation_sequence(g, t0_us=T0, t1_us=T0 + 8_000_000)
    np.testing.assert_allclose(full[:15], 0.25, atol=1e-6)
    np.testing.assert_allclose(to_stimulus_coords([[0.5, 0.5]], RECT), [[0.5, 0.5]])


def test_steps_without_fixation_carry_forward_or_start_at_centre():
    t = times(250, 8.5, start_us=T0 - 500_000)
    lost = lost_between(t, -0.5, 1.5) | lost_between(t, 4.0, 6.0)
    x = np.where(t >= T0 + 4_000_000, 0.8, 0.2)
    g = make_gaze(t, x, 0.3, lost_left=lost, lost_right=lost)
    seq, mask = fixation_sequence(g, t0_us=T0, t1_us=T0 + 8_000_000)
    step_t = T0 + (np.arange(32) + 0.5) * 250_000
    before = step_t < T0 + 1_500_000
    gap = (step_t > T0 + 4_000_000) & (step_t < T0 + 6_000_000)
    assert not mask[before].any() and not mask[gap].any()
    np.testing.assert_allclose(seq[before], 0.5)                      # centre before the first fixation
    np.testing.assert_allclose(seq[gap], [[0.2, 0.3]] * int(gap.sum()), atol=1e-6)   # carried forward
    np.testing.assert_allclose(seq[-1], [0.8, 0.3], atol=1e-6)
    clipped, _ = fixation_sequence(g, t0_us=T0, t1_us=T0 + 8_000_000, stimulus_rect=(0.3, 0.0, 0.7, 1.0),
                                   clip=True)
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0


def test_shared_analysis_gives_the_same_result():
    g = two_fixations(120)
    a = analyse(g, t0_us=T0, t1_us=T0 + 8_000_000)
    s1, m1 = fixation_sequence(g, t0_us=T0, t1_us=T0 + 8_000_000, stimulus_rect=RECT)
    s2, m2 = fixation_sequence(None, t0_us=T0, t1_us=T0 + 8_000_000, stimulus_rect=RECT, analysis=a)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(m1, m2)
    with pytest.raises(ValueError, match="stimulus_rect"):
        fixation_sequence(g, t0_us=T0, t1_us=T0 + 8_000_000, stimulus_rect=(0.5, 0, 0.4, 1))


def test_fixation_points_and_durations():
    g = two_fixations()
    pts, dur = fixation_points(g, t0_us=T0, t1_us=T0 + 8_000_000, stimulus_rect=RECT)
    assert pts.shape == (2, 2)
    np.testing.assert_allclose(pts, [[0.0, 0.0], [1.0, 0.7]], atol=1e-6)
    # the first fixation starts in the context: only its part inside the window counts
    assert dur[0] == pytest.approx(4000, abs=40) and dur[1] == pytest.approx(4000, abs=40)


def test_heatmap_peak_and_sigma():
    w, h, sigma = 200, 100, 8.0
    p = np.array([[60.5 / w, 70.5 / h]])            # the centre of pixel (60, 70)
    m = fixation_heatmap(p, [300.0], width=w, height=h, sigma_px=sigma)
    assert m.shape == (h, w) and m.dtype == np.float32
    iy, ix = np.unravel_index(np.argmax(m), m.shape)
    assert (ix, iy) == (60, 70)
    assert m[70, 60] == pytest.approx(300.0, rel=1e-4)
    assert m[70, 68] / m[70, 60] == pytest.approx(math.exp(-0.5), rel=1e-3)   # one sigma right
    assert m[62, 60] / m[70, 60] == pytest.approx(math.exp(-0.5), rel=1e-3)   # one sigma up
    row = m[70].astype(np.float64)
    xs = np.arange(w)
    var = np.sum(row * (xs - 60) ** 2) / row.sum()
    assert math.sqrt(var) == pytest.approx(sigma, rel=0.02)


def test_heatmap_weights_by_duration_and_handles_edges():
    pts = np.array([[0.2, 0.5], [0.8, 0.5], [np.nan, 0.5], [5.0, 5.0]])
    m = fixation_heatmap(pts, [100.0, 400.0, 50.0, 70.0], width=100, height=50, sigma_px=4.0)
    assert np.isfinite(m).all()
    assert np.argmax(m.max(axis=0)) == 80 or np.argmax(m.max(axis=0)) == 79
    assert m.max() == pytest.approx(400.0 * math.exp(-0.5 * (0.5 ** 2 + 0.5 ** 2) / 16), rel=1e-4)  # half a pixel off in x and y
    n = fixation_heatmap(pts, [100.0, 400.0, 50.0, 70.0], width=100, height=50, sigma_px=4.0, normalise=True)
    assert n.max() == pytest.approx(1.0)
    assert not fixation_heatmap(np.zeros((0, 2)), [], width=10, height=10, sigma_px=2.0).any()
    with pytest.raises(ValueError, match="durations_ms"):
        fixation_heatmap(pts, [1.0], width=10, height=10, sigma_px=2.0)
    with pytest.raises(ValueError, match="sigma_px"):
        fixation_heatmap(pts[:1], [1.0], width=10, height=10, sigma_px=0)


def test_heatmap_many_fixations_matches_direct_sum():
    rng = np.random.default_rng(3)
    pts = rng.random((300, 2))
    dur = rng.uniform(100, 600, 300)
    w, h, s = 96, 54, 5.0
    m = fixation_heatmap(pts, dur, width=w, height=h, sigma_px=s)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    ref = sum(d * np.exp(-((xx - x * w) ** 2 + (yy - y * h) ** 2) / (2 * s * s)) for (x, y), d in zip(pts, dur))
    np.testing.assert_allclose(m, ref, rtol=1e-4, atol=1e-5 * ref.max())


def test_heatmap_of_very_many_fixations_is_pooled_accurately():
    rng = np.random.default_rng(4)
    pts = rng.random((3000, 2))
    dur = rng.uniform(100, 600, 3000)
    w, h, s = 96, 54, 5.0
    m = fixation_heatmap(pts, dur, width=w, height=h, sigma_px=s)
    xs, ys = (np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h
    gx = np.exp(-((xs[:, None] - pts[None, :, 0]) * w) ** 2 / (2 * s * s))
    gy = np.exp(-((ys[:, None] - pts[None, :, 1]) * h) ** 2 / (2 * s * s))
    ref = (gy * dur) @ gx.T
    np.testing.assert_allclose(m, ref, rtol=5e-3)


def test_sigma_for_one_degree():
    d = 650.0
    sig = sigma_px_for_1deg(DEFAULT_DISPLAY, d, 1920)
    # independent check: a span of sig pixels (full-width stimulus) at the screen centre subtends 1 deg
    half_mm = sig / 1920 * DEFAULT_DISPLAY.width_mm / 2
    eye = np.array([0.0, 165.0, d])
    a = angle_deg(eye, [-half_mm, 165.0, 0.0], [half_mm, 165.0, 0.0])
    assert float(a) == pytest.approx(1.0, rel=1e-6)
    assert sig == pytest.approx(41.0, abs=0.2)
    # a stimulus shown at half the display width, rendered 1280 px wide: more pixels per degree
    half = sigma_px_for_1deg(DEFAULT_DISPLAY, d, 1280, stimulus_rect=(0.25, 0.25, 0.75, 0.75))
    assert half == pytest.approx(sig / 1920 * 1280 * 2)
    with pytest.raises(ValueError):
        sigma_px_for_1deg(DEFAULT_DISPLAY, -1.0, 1920)
    with pytest.raises(TypeError):
        sigma_px_for_1deg("display", 650.0, 1920)


def test_viewing_distance_from_the_recording():
    g = make_gaze(times(250, 0.5), 0.5, 0.5)
    screen_centre = DEFAULT_DISPLAY.to_ucs(0.5, 0.5)
    eye_l = np.array([HEAD[0] - 31, HEAD[1], HEAD[2]])
    assert viewing_distance_mm(g) == pytest.approx(np.linalg.norm(screen_centre - eye_l), rel=1e-5)
    g2 = make_gaze(times(250, 0.5), 0.5, 0.5, lost_left=np.ones(125, bool), lost_right=np.ones(125, bool))
    assert math.isnan(viewing_distance_mm(g2))
    assert isinstance(DEFAULT_DISPLAY, DisplayGeometry)
