"""Eye-movement pre-processing: validity, blinks, gap fill-in, noise reduction, velocity, I-VT.

The steps follow the EMER paper and the defaults of Tobii's I-VT fixation filter (Olsen 2012):

1. validity: a value is used only where its SDK validity is 1 and it is finite;
2. blinks: a loss of both pupils lasting ``blink_min_ms``..``blink_max_ms`` is a blink; every
   signal lost around it is linearly interpolated across it;
3. gap fill-in: other losses up to ``gap_fill_max_ms`` are linearly interpolated; longer ones
   stay NaN (never invented);
4. noise reduction: centred moving median over ``median_window`` samples (gaze positions);
5. gaze direction unit vectors per eye, origin -> gaze point in the user coordinate system (UCS);
6. angular velocity (deg/s) over ``velocity_window_ms`` from the eyes' 3-D data;
7. I-VT: fixation below ``velocity_threshold_deg_s``, saccade at or above it, blink/other where
   gaze is unknown or inside a blink; adjacent fixations merged, short fixations discarded.

Every step is vectorised over samples; only the fixation merge loops, over fixations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..geometry import angle_deg
from ._eye_config import EyeConfig

__all__ = [
    "EyeConfig", "Preprocessed", "EyeEvents", "detect_blinks", "preprocess", "classify_events",
    "FIXATION", "SACCADE", "OTHER", "EVENT_NAMES", "EVENT_DTYPE",
]

FIXATION, SACCADE, OTHER = 0, 1, 2
EVENT_NAMES = ("fixation", "saccade", "blink/other")

EVENT_DTYPE = np.dtype([
    ("kind", np.int8), ("start_us", np.int64), ("end_us", np.int64), ("duration_ms", np.float64),
    ("n_samples", np.int64), ("x", np.float64), ("y", np.float64),
])
"""One row per eye-movement event: ``kind`` (FIXATION/SACCADE/OTHER), ``[start_us, end_us)``,
its duration, sample count and, for fixations, the mean gaze point on the display (normalised);
NaN otherwise."""

_EYES = ("left", "right")
_DEFAULT = EyeConfig()


# --------------------------------------------------------------------------- result types

@dataclass(frozen=True)
class Preprocessed:
    """Per-sample arrays after pre-processing (N samples; NaN where a value is unknown).

    Display coordinates are normalised 0..1 (ADCS, origin top-left); UCS values are mm;
    pupils mm; velocity deg/s. Validity arrays are the *recorded* validities (before any
    interpolation); ``filled`` marks samples where some signal was interpolated.
    """

    t_us: np.ndarray             # (N,) int64
    display_left: np.ndarray     # (N, 2)
    display_right: np.ndarray    # (N, 2)
    display_mean: np.ndarray     # (N, 2)  eye_selection applied
    point_left: np.ndarray       # (N, 3)  gaze point in UCS
    point_right: np.ndarray      # (N, 3)
    point_mean: np.ndarray       # (N, 3)  eye_selection applied
    origin_left: np.ndarray      # (N, 3)  gaze origin (eye position) in UCS
    origin_right: np.ndarray     # (N, 3)
    origin_mean: np.ndarray      # (N, 3)
    direction_left: np.ndarray   # (N, 3)  unit vector origin -> gaze point
    direction_right: np.ndarray  # (N, 3)
    pupil_left: np.ndarray       # (N,)
    pupil_right: np.ndarray      # (N,)
    gaze_valid: np.ndarray       # (N, 2) bool, recorded (left, right)
    pupil_valid: np.ndarray      # (N, 2) bool
    origin_valid: np.ndarray     # (N, 2) bool
    filled: np.ndarray           # (N,) bool, some signal interpolated here
    blink: np.ndarray            # (N,) bool, inside a detected blink
    blinks: np.ndarray           # (K, 2) int64 blink intervals [start_us, end_us)
    velocity: np.ndarray         # (N,) deg/s, NaN where gaze is unknown
    dt_us: float                 # median sample interval
    config: EyeConfig

    def __len__(self) -> int:
        return int(self.t_us.shape[0])


@dataclass(frozen=True)
class EyeEvents:
    """I-VT result: a label and the duration of the event it belongs to, per sample, plus the
    event table (:data:`EVENT_DTYPE`)."""

    label: np.ndarray        # (N,) int8: FIXATION, SACCADE or OTHER
    duration_ms: np.ndarray  # (N,) float64, duration of the sample's event
    table: np.ndarray        # (E,) EVENT_DTYPE

    @property
    def fixations(self) -> np.ndarray:
        """Rows of :attr:`table` that are fixations."""
        return self.table[self.table["kind"] == FIXATION]


# --------------------------------------------------------------------------- helpers

def _check_gaze(gaze) -> np.ndarray:
    if not isinstance(gaze, np.ndarray) or gaze.dtype.names is None:
        raise TypeError(f"gaze must be a numpy structured array of GAZE_DTYPE, got {type(gaze).__name__}")
    if gaze.ndim != 1:
        raise ValueError(f"gaze must be 1-D (one record per sample), got shape {gaze.shape}")
    needed = ["t_us"] + [f"{e}_{n}" for e in _EYES for n in (
        "gaze_point_on_display_area_x", "gaze_point_on_display_area_y",
        "gaze_point_in_user_coordinate_system_x", "gaze_point_in_user_coordinate_system_y",
        "gaze_point_in_user_coordinate_system_z", "gaze_point_validity", "pupil_diameter",
        "pupil_validity", "gaze_origin_in_user_coordinate_system_x",
        "gaze_origin_in_user_coordinate_system_y", "gaze_origin_in_user_coordinate_system_z",
        "gaze_origin_validity")]
    missing = [n for n in needed if n not in gaze.dtype.names]
    if missing:
        raise ValueError(f"gaze records lack fields {missing[:4]}{'...' if len(missing) > 4 else ''}; "
                         "use emer_live.schema.GAZE_DTYPE")
    t = gaze["t_us"]
    if t.size > 1 and np.any(t[1:] < t[:-1]):
        raise ValueError("gaze t_us must be sorted ascending (non-decreasing)")
    return gaze


def _runs(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Start and (exclusive) end indices of the runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _runs_to_mask(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    acc = np.zeros(n + 1, np.int64)
    np.add.at(acc, starts, 1)
    np.add.at(acc, ends, -1)
    return np.cumsum(acc[:n]) > 0


def _loss_runs(valid: np.ndarray, t: np.ndarray):
    """Runs of invalid samples bounded by valid samples on both sides, with their durations in
    us (first invalid sample to the next valid one). Runs touching either end are left out:
    their length is unknown."""
    s, e = _runs(~valid)
    if s.size == 0:
        return s, e, np.zeros(0, np.int64)
    interior = (s > 0) & (e < valid.size)
    s, e = s[interior], e[interior]
    return s, e, t[e] - t[s]


def _blink_runs(pupil_valid: np.ndarray, t: np.ndarray, config: EyeConfig):
    lost_both = ~(pupil_valid[:, 0] | pupil_valid[:, 1])
    # a run is bounded by samples where some pupil is valid, so "interior" == bounded
    s, e, dur = _loss_runs(~lost_both, t)
    keep = (dur >= round(config.blink_min_ms * 1000)) & (dur <= round(config.blink_max_ms * 1000))
    return s[keep], e[keep]


def _moving_median(x: np.ndarray, w: int) -> np.ndarray:
    """Centred moving median along axis 0 ignoring NaN (window shrinks at the ends and around
    gaps); samples that are NaN stay NaN."""
    if w <= 1 or x.shape[0] < 2:
        return x.copy()
    if w == 3:   # closed form: ~5x faster than sorting windows
        nanrow = np.full((1,) + x.shape[1:], np.nan)
        a = np.concatenate([nanrow, x[:-1]], axis=0)
        c = np.concatenate([x[1:], nanrow], axis=0)
        fa, fc = np.isfinite(a), np.isfinite(c)
        med = np.maximum(np.minimum(a, x), np.minimum(np.maximum(a, x), c))
        out = np.where(fa & fc, med, np.where(fa, 0.5 * (a + x), np.where(fc, 0.5 * (x + c), x)))
        out[~np.isfinite(x)] = np.nan
        return out
    h = w // 2
    pad = np.full((h,) + x.shape[1:], np.nan)
    xp = np.concatenate([pad, x, pad], axis=0)
    win = np.lib.stride_tricks.sliding_window_view(xp, w, axis=0)   # (N, ..., w)
    srt = np.sort(win, axis=-1)                                       # NaN last
    n = np.sum(np.isfinite(win), axis=-1)
    lo = np.clip((n - 1) // 2, 0, w - 1)
    hi = np.clip(n // 2, 0, w - 1)
    a = np.take_along_axis(srt, lo[..., None], axis=-1)[..., 0]
    b = np.take_along_axis(srt, hi[..., None], axis=-1)[..., 0]
    out = 0.5 * (a + b)
    out[~np.isfinite(x)] = np.nan
    return out


def _combine(left: np.ndarray, right: np.ndarray, mode: str) -> np.ndarray:
    if mode == "left":
        return left.copy()
    if mode == "right":
        return right.copy()
    fl, fr = np.isfinite(left), np.isfinite(right)
    s = np.where(fl, left, 0.0) + np.where(fr, right, 0.0)
    n = fl.astype(np.float64) + fr
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, v / n, np.nan)


def _median_dt_us(t: np.ndarray) -> float:
    d = np.diff(t)
    d = d[d > 0]
    return float(np.median(d)) if d.size else 4000.0


# --------------------------------------------------------------------------- public API

def detect_blinks(gaze: np.ndarray, *, config: Optional[EyeConfig] = None) -> np.ndarray:
    """Find blinks: losses of both pupils lasting ``blink_min_ms``..``blink_max_ms``.

    Parameters
    ----------
    gaze : numpy structured array of :data:`emer_live.schema.GAZE_DTYPE`
        Samples sorted by ``t_us``.
    config : EyeConfig, optional
        Blink limits; defaults 75-425 ms.

    Returns
    -------
    numpy.ndarray
        ``(K, 2)`` int64 rows ``(start_us, end_us)``: time of the first sample with both pupils
        lost and of the next sample with a pupil back (exclusive end). Losses that touch the
        start or end of the input are left out because their length is unknown.
    """
    config = _DEFAULT if config is None else config
    gaze = _check_gaze(gaze)
    t = gaze["t_us"].astype(np.int64)
    pv = np.stack([_valid(gaze, e, "pupil") for e in _EYES], axis=1)
    s, e = _blink_runs(pv, t, config)
    return np.stack([t[s], t[e]], axis=1).astype(np.int64) if s.size else np.zeros((0, 2), np.int64)


def _valid(gaze: np.ndarray, eye: str, group: str) -> np.ndarray:
    if group == "gaze":
        ok = gaze[f"{eye}_gaze_point_validity"] > 0
        for c in ("x", "y"):
            ok &= np.isfinite(gaze[f"{eye}_gaze_point_on_display_area_{c}"])
        for c in "xyz":
            ok &= np.isfinite(gaze[f"{eye}_gaze_point_in_user_coordinate_system_{c}"])
    elif group == "origin":
        ok = gaze[f"{eye}_gaze_origin_validity"] > 0
        for c in "xyz":
            ok &= np.isfinite(gaze[f"{eye}_gaze_origin_in_user_coordinate_system_{c}"])
    else:
        p = gaze[f"{eye}_pupil_diameter"]
        ok = (gaze[f"{eye}_pupil_validity"] > 0) & np.isfinite(p) & (p > 0)
    return np.asarray(ok, bool)


def preprocess(gaze: np.ndarray, *, config: Optional[EyeConfig] = None) -> Preprocessed:
    """Validity handling, blink interpolation, gap fill-in, moving median, directions, velocity.

    Parameters
    ----------
    gaze : numpy structured array of :data:`emer_live.schema.GAZE_DTYPE`
        Samples sorted by ``t_us`` (any rate; 60-600 Hz).
    config : EyeConfig, optional

    Returns
    -------
    Preprocessed
        Per-sample arrays; values that were lost and could not be interpolated are NaN.

    Notes
    -----
    A signal group (gaze of one eye: display + UCS point; origin of one eye; pupil of one eye)
    is interpolated over a loss when the loss lasts at most ``gap_fill_max_ms``, or when it
    overlaps a blink and lasts at most ``blink_max_ms``. Interpolation is linear in time between
    the valid samples on either side. The moving median runs on gaze positions after filling;
    velocity at sample i is the visual angle between the combined gaze points at i-k and i+k seen
    from the combined eye position at i, divided by their time difference, with
    k = max(1, floor(velocity_window_ms / 2 / median interval)).
    """
    config = _DEFAULT if config is None else config
    gaze = _check_gaze(gaze)
    n = gaze.shape[0]
    t = gaze["t_us"].astype(np.int64)
    tf = t.astype(np.float64)
    dt_us = _median_dt_us(t)

    valid = {(e, g): _valid(gaze, e, g) for e in _EYES for g in ("gaze", "origin", "pupil")}
    pupil_valid = np.stack([valid[("left", "pupil")], valid[("right", "pupil")]], axis=1)
    bs, be = _blink_runs(pupil_valid, t, config)
    blink = _runs_to_mask(bs, be, n)
    blink_cs = np.concatenate(([0], np.cumsum(blink)))
    gap_us = round(config.gap_fill_max_ms * 1000)
    blink_max_us = round(config.blink_max_ms * 1000)
    filled = np.zeros(n, bool)

    def load(eye: str, group: str) -> np.ndarray:
        if group == "gaze":
            cols = [f"{eye}_gaze_point_on_display_area_{c}" for c in "xy"] + \
                   [f"{eye}_gaze_point_in_user_coordinate_system_{c}" for c in "xyz"]
        elif group == "origin":
            cols = [f"{eye}_gaze_origin_in_user_coordinate_system_{c}" for c in "xyz"]
        else:
            cols = [f"{eye}_pupil_diameter"]
        x = np.stack([gaze[c].astype(np.float64) for c in cols], axis=1)
        ok = valid[(eye, group)]
        x[~ok] = np.nan
        s, e, dur = _loss_runs(ok, t)
        if s.size:
            in_blink = (blink_cs[e] - blink_cs[s]) > 0
            fill = (dur <= gap_us) | (in_blink & (dur <= blink_max_us))
            if np.any(fill):
                m = _runs_to_mask(s[fill], e[fill], n)
                filled[m] = True
                for j in range(x.shape[1]):
                    x[m, j] = np.interp(tf[m], tf[ok], x[ok, j])
        return x

    out = {}
    for eye in _EYES:
        g = _moving_median(load(eye, "gaze"), config.median_window)
        out[f"display_{eye}"] = g[:, :2]
        out[f"point_{eye}"] = g[:, 2:]
        out[f"origin_{eye}"] = load(eye, "origin")
        out[f"pupil_{eye}"] = load(eye, "pupil")[:, 0]
        out[f"direction_{eye}"] = _unit(out[f"point_{eye}"] - out[f"origin_{eye}"])

    mode = config.eye_selection
    point_mean = _combine(out["point_left"], out["point_right"], mode)
    origin_mean = _combine(out["origin_left"], out["origin_right"], mode)
    display_mean = _combine(out["display_left"], out["display_right"], mode)
    # rows where only some components are finite (cannot happen for valid data) become NaN
    for a in (point_mean, origin_mean, display_mean):
        a[~np.all(np.isfinite(a), axis=1)] = np.nan

    velocity = np.full(n, np.nan)
    if n >= 2:
        k = max(1, int(np.floor(config.velocity_window_ms * 1000.0 / 2.0 / dt_us + 1e-6)))
        idx = np.arange(n)
        i0 = np.clip(idx - k, 0, n - 1)
        i1 = np.clip(idx + k, 0, n - 1)
        span_s = (tf[i1] - tf[i0]) / 1e6
        # spans stretched by dropped samples beyond what gap fill-in allows are not measured
        max_span = (2 * k * dt_us * 1.5 + gap_us) / 1e6
        ok = (span_s > 0) & (span_s <= max_span)
        with np.errstate(invalid="ignore", divide="ignore"):
            ang = angle_deg(origin_mean, point_mean[i0], point_mean[i1])
            velocity = np.where(ok, ang / np.where(ok, span_s, 1.0), np.nan)

    return Preprocessed(
        t_us=t, display_left=out["display_left"], display_right=out["display_right"],
        display_mean=display_mean, point_left=out["point_left"], point_right=out["point_right"],
        point_mean=point_mean, origin_left=out["origin_left"], origin_right=out["origin_right"],
        origin_mean=origin_mean, direction_left=out["direction_left"],
        direction_right=out["direction_right"], pupil_left=out["pupil_left"],
        pupil_right=out["pupil_right"],
        gaze_valid=np.stack([valid[("left", "gaze")], valid[("right", "gaze")]], axis=1),
        pupil_valid=pupil_valid,
        origin_valid=np.stack([valid[("left", "origin")], valid[("right", "origin")]], axis=1),
        filled=filled, blink=blink,
        blinks=np.stack([t[bs], t[be]], axis=1).astype(np.int64) if bs.size else np.zeros((0, 2), np.int64),
        velocity=velocity, dt_us=dt_us, config=config,
    )


def classify_events(pre: Preprocessed, *, config: Optional[EyeConfig] = None) -> EyeEvents:
    """I-VT classification of pre-processed samples into fixation / saccade / blink-or-other.

    Parameters
    ----------
    pre : Preprocessed
        Output of :func:`preprocess`.
    config : EyeConfig, optional
        Defaults to the configuration ``pre`` was made with.

    Returns
    -------
    EyeEvents

    Notes
    -----
    Samples with velocity below the threshold are fixation samples, at or above it saccade
    samples; samples with unknown velocity or inside a blink are "other". Then adjacent
    fixations are merged when the time between them (the first non-fixation sample to the next
    fixation's start) is at most ``merge_max_gap_ms``, the samples between contain no blink, and
    the visual angle between their mean gaze points (seen from their mean eye position) is at
    most ``merge_max_angle_deg``; merging runs left to right with the merged fixation's mean.
    Fixations shorter than ``min_fixation_ms`` then become "other". An event's duration runs
    from its first sample to the first sample of the next event (the last event ends one median
    interval after its last sample).
    """
    if not isinstance(pre, Preprocessed):
        raise TypeError(f"classify_events expects a Preprocessed, got {type(pre).__name__}")
    config = pre.config if config is None else config
    n = len(pre)
    t = pre.t_us
    tf = t.astype(np.float64)
    t_end = np.append(tf[1:], tf[-1] + pre.dt_us) if n else tf   # exclusive end time per sample
    label = np.full(n, OTHER, np.int8)
    v = pre.velocity
    with np.errstate(invalid="ignore"):
        label[v < config.velocity_threshold_deg_s] = FIXATION
        label[v >= config.velocity_threshold_deg_s] = SACCADE
    label[pre.blink] = OTHER

    s, e = _runs(label == FIXATION)
    if s.size > 1 and (config.merge_max_gap_ms > 0 and config.merge_max_angle_deg > 0):
        p = pre.point_mean
        o = pre.origin_mean
        fin = np.all(np.isfinite(p), axis=1) & np.all(np.isfinite(o), axis=1)
        pz = np.where(fin[:, None], p, 0.0)
        oz = np.where(fin[:, None], o, 0.0)
        cp = np.concatenate([np.zeros((1, 3)), np.cumsum(pz, axis=0)])
        co = np.concatenate([np.zeros((1, 3)), np.cumsum(oz, axis=0)])
        cn = np.concatenate([[0], np.cumsum(fin)])
        bcs = np.concatenate([[0], np.cumsum(pre.blink)])
        max_gap = config.merge_max_gap_ms * 1000.0
        merged_s, merged_e = [int(s[0])], [int(e[0])]
        for a, b in zip(s[1:].tolist(), e[1:].tolist()):
            ps, pe = merged_s[-1], merged_e[-1]
            gap = tf[a] - tf[pe]
            ok = gap <= max_gap and bcs[a] - bcs[pe] == 0
            if ok:
                n1, n2 = cn[pe] - cn[ps], cn[b] - cn[a]
                if n1 > 0 and n2 > 0:
                    m1 = (cp[pe] - cp[ps]) / n1
                    m2 = (cp[b] - cp[a]) / n2
                    om = (co[pe] - co[ps] + co[b] - co[a]) / (n1 + n2)
                    ok = bool(angle_deg(om, m1, m2) <= config.merge_max_angle_deg)
                else:
                    ok = False
            if ok:
                merged_e[-1] = b
            else:
                merged_s.append(a)
                merged_e.append(b)
        s, e = np.asarray(merged_s), np.asarray(merged_e)
        label[_runs_to_mask(s, e, n)] = FIXATION

    if s.size:
        dur_us = t_end[e - 1] - tf[s]
        short = dur_us < config.min_fixation_ms * 1000.0
        if np.any(short):
            label[_runs_to_mask(s[short], e[short], n)] = OTHER

    # event runs over the final labels
    if n:
        change = np.flatnonzero(np.diff(label) != 0) + 1
        rs = np.concatenate(([0], change))
        re = np.concatenate((change, [n]))
    else:
        rs = re = np.zeros(0, np.int64)
    table = np.zeros(rs.size, EVENT_DTYPE)
    duration_ms = np.zeros(n)
    if rs.size:
        d_ms = (t_end[re - 1] - tf[rs]) / 1000.0
        table["kind"] = label[rs]
        table["start_us"] = t[rs]
        table["end_us"] = np.round(t_end[re - 1]).astype(np.int64)
        table["duration_ms"] = d_ms
        table["n_samples"] = re - rs
        duration_ms = np.repeat(d_ms, re - rs)
        dm = pre.display_mean
        fin = np.all(np.isfinite(dm), axis=1)
        cd = np.concatenate([np.zeros((1, 2)), np.cumsum(np.where(fin[:, None], dm, 0.0), axis=0)])
        cn = np.concatenate([[0], np.cumsum(fin)])
        cnt = cn[re] - cn[rs]
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = (cd[re] - cd[rs]) / cnt[:, None]
        is_fix = (table["kind"] == FIXATION) & (cnt > 0)
        table["x"] = np.where(is_fix, mean[:, 0], np.nan)
        table["y"] = np.where(is_fix, mean[:, 1], np.nan)
    return EyeEvents(label=label, duration_ms=duration_ms, table=table)
