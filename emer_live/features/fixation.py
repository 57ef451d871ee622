"""The fixation modality: where on the stimulus the participant fixated, step by step, and
fixation heatmaps (DESIGN sec. 8).

Stimulus coordinates are 0..1 inside the stimulus video's rectangle on the display
(``stimulus_rect = (x0, y0, x1, y1)`` in normalised display coordinates, origin top-left);
fixations off the stimulus fall outside 0..1 unless clipped.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from ..geometry import DisplayGeometry
from ._eye_config import EyeConfig
from .eye import EyeAnalysis, analyse, _bin_edges, _bin_means, _check_bounds
from .ivt import FIXATION, _check_gaze, _valid

__all__ = [
    "fixation_sequence", "fixation_points", "to_stimulus_coords", "fixation_heatmap",
    "sigma_px_for_1deg", "viewing_distance_mm", "FULL_DISPLAY",
]

FULL_DISPLAY = (0.0, 0.0, 1.0, 1.0)
_EXACT_MAX_POINTS = 1024


def _check_rect(stimulus_rect) -> Tuple[float, float, float, float]:
    if stimulus_rect is None:
        return FULL_DISPLAY
    try:
        x0, y0, x1, y1 = (float(v) for v in stimulus_rect)
    except (TypeError, ValueError):
        raise ValueError(f"stimulus_rect must be (x0, y0, x1, y1) in normalised display coordinates, "
                         f"got {stimulus_rect!r}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"stimulus_rect {stimulus_rect!r} must be finite with x1 > x0 and y1 > y0")
    return x0, y0, x1, y1


def to_stimulus_coords(xy_display: np.ndarray, stimulus_rect=None) -> np.ndarray:
    """Map normalised display coordinates ``(..., 2)`` into the stimulus rectangle (0..1 inside)."""
    x0, y0, x1, y1 = _check_rect(stimulus_rect)
    xy = np.asarray(xy_display, np.float64)
    return (xy - (x0, y0)) / (x1 - x0, y1 - y0)


def _get_analysis(gaze, t0, t1, config, analysis) -> EyeAnalysis:
    if analysis is None:
        return analyse(gaze, t0_us=t0, t1_us=t1, config=config)
    if not isinstance(analysis, EyeAnalysis) or (analysis.t0_us, analysis.t1_us) != (t0, t1):
        raise ValueError("analysis must be an EyeAnalysis made by analyse() for the same t0_us/t1_us")
    return analysis


def fixation_sequence(gaze: Optional[np.ndarray], *, t0_us: int, t1_us: int, steps: int = 32,
                      stimulus_rect: Optional[Sequence[float]] = None,
                      config: Optional[EyeConfig] = None, clip: bool = False,
                      analysis: Optional[EyeAnalysis] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Mean fixation point per time step, in stimulus coordinates (EMERT's ``(32, 2)`` input).

    Parameters
    ----------
    gaze : numpy structured array of :data:`emer_live.schema.GAZE_DTYPE` or None
        Sorted by ``t_us`` (ignored when ``analysis`` is given).
    t0_us, t1_us : int
        Window bounds (the trial's bounds for the whole-trial mode).
    steps : int
        Number of equal time bins.
    stimulus_rect : (x0, y0, x1, y1), optional
        The stimulus on the display in normalised display coordinates; default the whole display.
    config : EyeConfig, optional
    clip : bool
        Clip the coordinates to 0..1 (fixations off the stimulus land on its border).
    analysis : EyeAnalysis, optional
        Shared result of :func:`emer_live.features.eye.analyse` for the same bounds.

    Returns
    -------
    seq : (steps, 2) float32
        Mean (x, y) of the samples classified as fixation within each step. Steps without a
        fixation sample carry the previous step's value forward (0.5, 0.5 before the first).
    mask : (steps,) bool
        True where the step has fixation samples.
    """
    t0, t1 = _check_bounds(t0_us, t1_us, steps)
    steps = int(steps)
    rect = _check_rect(stimulus_rect)
    a = _get_analysis(gaze, t0, t1, config, analysis)
    first = a.first
    t = a.pre.t_us[first:]
    xy = to_stimulus_coords(a.pre.display_mean[first:], rect)
    is_fix = (a.events.label[first:] == FIXATION) & np.all(np.isfinite(xy), axis=1)
    xy = np.where(is_fix[:, None], xy, np.nan)
    seq = np.full((steps, 2), 0.5)
    mask = np.zeros(steps, bool)
    if t.size:
        mean, cnt = _bin_means(xy, _bin_edges(t, t0, t1, steps))
        mask = cnt[:, 0] > 0
        last = np.array([0.5, 0.5])
        for j in range(steps):   # 32 steps: carry forward
            if mask[j]:
                last = mean[j]
            seq[j] = last
    if clip:
        seq = np.clip(seq, 0.0, 1.0)
    return seq.astype(np.float32), mask


def fixation_points(gaze: Optional[np.ndarray], *, t0_us: int, t1_us: int,
                    stimulus_rect: Optional[Sequence[float]] = None, config: Optional[EyeConfig] = None,
                    analysis: Optional[EyeAnalysis] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Fixations overlapping ``[t0_us, t1_us)``: positions in stimulus coordinates and the part
    of their duration inside the window (ms), ready for :func:`fixation_heatmap`.

    Returns
    -------
    points : (K, 2) float64
    durations_ms : (K,) float64
    """
    t0, t1 = _check_bounds(t0_us, t1_us)
    rect = _check_rect(stimulus_rect)
    a = _get_analysis(gaze, t0, t1, config, analysis)
    fx = a.events.fixations
    fx = fx[(fx["end_us"] > t0) & (fx["start_us"] < t1) & np.isfinite(fx["x"]) & np.isfinite(fx["y"])]
    dur = (np.minimum(fx["end_us"], t1) - np.maximum(fx["start_us"], t0)) / 1000.0
    pts = to_stimulus_coords(np.stack([fx["x"], fx["y"]], axis=1), rect) if fx.size else np.zeros((0, 2))
    return pts, dur.astype(np.float64)


def fixation_heatmap(points_xy_norm, durations_ms, *, width: int, height: int, sigma_px: float,
                     normalise: bool = False) -> np.ndarray:
    """Duration-weighted Gaussian fixation map.

    Parameters
    ----------
    points_xy_norm : (K, 2) array
        Fixation positions, normalised 0..1 over the map (x right, y down); points outside
        still contribute their tails; rows with NaN are ignored.
    durations_ms : (K,) array
        Weights (fixation durations); must be >= 0.
    width, height : int
        Map size in pixels.
    sigma_px : float
        Gaussian standard deviation in pixels (see :func:`sigma_px_for_1deg`).
    normalise : bool
        Scale the map to a maximum of 1 (when it is not all zero).

    Returns
    -------
    (height, width) float32
        Sum over fixations of ``duration * exp(-d^2 / (2 sigma^2))`` where ``d`` is the distance
        from the pixel centre; an isolated fixation peaks at its duration.

    Notes
    -----
    Separable: the map is ``G_y @ W @ G_x.T`` with ``W`` the diagonal of the durations, exact
    for up to 1024 fixations; beyond that fixations are pooled on a lattice of spacing
    ``sigma_px / 20`` (position error at most ``sigma_px / 40``) so the cost grows with the number
    of distinct lattice rows and columns, not with the number of fixations.
    """
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    sigma = float(sigma_px)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma_px must be a finite number > 0, got {sigma_px!r}")
    pts = np.asarray(points_xy_norm, np.float64).reshape(-1, 2) if np.size(points_xy_norm) else np.zeros((0, 2))
    w = np.asarray(durations_ms, np.float64).reshape(-1)
    if w.shape[0] != pts.shape[0]:
        raise ValueError(f"durations_ms has {w.shape[0]} values for {pts.shape[0]} points")
    if np.any(w[np.isfinite(w)] < 0):
        raise ValueError("durations_ms must be >= 0")
    out = np.zeros((int(height), int(width)), np.float64)
    px = pts[:, 0] * width
    py = pts[:, 1] * height
    reach = 6 * sigma
    keep = (np.isfinite(px) & np.isfinite(py) & np.isfinite(w) & (w > 0)
            & (px > -reach) & (px < width + reach) & (py > -reach) & (py < height + reach))
    if not np.any(keep):
        return out.astype(np.float32)
    px, py, w = px[keep], py[keep], w[keep]
    if px.size <= _EXACT_MAX_POINTS:     # exact: W = diag(durations)
        xs, ys, wm = px, py, np.diag(w)
    else:                                # pool on a lattice of spacing sigma/20
        spacing = sigma / 20.0
        ux, ix = np.unique(np.round(px / spacing).astype(np.int64), return_inverse=True)
        uy, iy = np.unique(np.round(py / spacing).astype(np.int64), return_inverse=True)
        wm = np.zeros((uy.size, ux.size))
        np.add.at(wm, (iy.reshape(-1), ix.reshape(-1)), w)
        xs, ys = ux * spacing, uy * spacing
    cx = np.arange(width) + 0.5
    cy = np.arange(height) + 0.5
    gx = np.exp(-0.5 * ((cx[:, None] - xs[None, :]) / sigma) ** 2)   # (W, Rx)
    gy = np.exp(-0.5 * ((cy[:, None] - ys[None, :]) / sigma) ** 2)   # (H, Ry)
    if ys.size <= xs.size:
        out = gy @ (wm @ gx.T)
    else:
        out = (gy @ wm) @ gx.T
    if normalise:
        m = out.max()
        if m > 0:
            out /= m
    return out.astype(np.float32)


def sigma_px_for_1deg(geometry: DisplayGeometry, viewing_distance_mm: float, stimulus_width_px: int, *,
                      stimulus_rect: Optional[Sequence[float]] = None) -> float:
    """Pixels of a heatmap that span 1 degree of visual angle (the usual heatmap sigma).

    Parameters
    ----------
    geometry : DisplayGeometry
        The participant display (its width in mm).
    viewing_distance_mm : float
        Eye-to-screen distance (e.g. :func:`viewing_distance_mm` of the recording).
    stimulus_width_px : int
        Width of the heatmap image (the stimulus frame) in pixels.
    stimulus_rect : (x0, y0, x1, y1), optional
        Where the stimulus is shown on the display; default the whole display.

    Returns
    -------
    float
        ``2 d tan(0.5 deg)`` mm converted to stimulus pixels.
    """
    if not isinstance(geometry, DisplayGeometry):
        raise TypeError(f"geometry must be a DisplayGeometry, got {type(geometry).__name__}")
    d = float(viewing_distance_mm)
    if not math.isfinite(d) or d <= 0:
        raise ValueError(f"viewing_distance_mm must be a finite number > 0, got {viewing_distance_mm!r}")
    if isinstance(stimulus_width_px, bool) or not isinstance(stimulus_width_px, (int, np.integer)) \
            or stimulus_width_px < 1:
        raise ValueError(f"stimulus_width_px must be a positive integer, got {stimulus_width_px!r}")
    x0, _, x1, _ = _check_rect(stimulus_rect)
    mm_per_deg = 2.0 * d * math.tan(math.radians(0.5))
    shown_width_mm = (x1 - x0) * geometry.width_mm
    return mm_per_deg / shown_width_mm * int(stimulus_width_px)


def viewing_distance_mm(gaze: np.ndarray) -> float:
    """Median distance (mm) from the eyes to their gaze points on the display over valid samples
    (NaN when there are none)."""
    gaze = _check_gaze(gaze)
    d = []
    for eye in ("left", "right"):
        ok = _valid(gaze, eye, "gaze") & _valid(gaze, eye, "origin")
        if np.any(ok):
            p = np.stack([gaze[f"{eye}_gaze_point_in_user_coordinate_system_{c}"][ok] for c in "xyz"], 1)
            o = np.stack([gaze[f"{eye}_gaze_origin_in_user_coordinate_system_{c}"][ok] for c in "xyz"], 1)
            d.append(np.linalg.norm(p.astype(np.float64) - o, axis=1))
    return float(np.median(np.concatenate(d))) if d else float("nan")
