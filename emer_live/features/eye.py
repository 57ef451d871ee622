"""The eye-movement modality: 39 values per sample and their resampling to 32 window steps.

See ``docs/eye_features.md`` for the name, unit and index of each value and for the rules.
Pre-processing (blinks, gap fill-in, noise reduction, velocity, I-VT) lives in
:mod:`emer_live.features.ivt`; this module assembles the feature vector and the windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ._eye_config import EyeConfig
from .ivt import (EVENT_NAMES, FIXATION, OTHER, SACCADE, EyeEvents, Preprocessed, _check_gaze,
                  classify_events, detect_blinks, preprocess)

__all__ = [
    "EYE_FEATURE_NAMES", "EYE_FEATURE_UNITS", "N_EYE_FEATURES", "EYE_FEATURE_GROUPS",
    "EyeConfig", "Preprocessed", "EyeEvents", "EyeAnalysis", "EyeWindow",
    "detect_blinks", "preprocess", "classify_events", "sample_features", "analyse", "eye_window",
    "EVENT_NAMES",
]

_F = [
    ("gaze_display_mean_x", "norm"), ("gaze_display_mean_y", "norm"),
    ("gaze_display_left_x", "norm"), ("gaze_display_left_y", "norm"),
    ("gaze_display_right_x", "norm"), ("gaze_display_right_y", "norm"),
    ("gaze_ucs_left_x", "mm"), ("gaze_ucs_left_y", "mm"), ("gaze_ucs_left_z", "mm"),
    ("gaze_ucs_right_x", "mm"), ("gaze_ucs_right_y", "mm"), ("gaze_ucs_right_z", "mm"),
    ("origin_ucs_left_x", "mm"), ("origin_ucs_left_y", "mm"), ("origin_ucs_left_z", "mm"),
    ("origin_ucs_right_x", "mm"), ("origin_ucs_right_y", "mm"), ("origin_ucs_right_z", "mm"),
    ("direction_left_x", "unit"), ("direction_left_y", "unit"), ("direction_left_z", "unit"),
    ("direction_right_x", "unit"), ("direction_right_y", "unit"), ("direction_right_z", "unit"),
    ("pupil_left", "mm"), ("pupil_right", "mm"),
    ("pupil_fluctuation_left", "mm/sample"), ("pupil_fluctuation_right", "mm/sample"),
    ("validity_gaze_left", "0..1"), ("validity_gaze_right", "0..1"),
    ("validity_pupil_left", "0..1"), ("validity_pupil_right", "0..1"),
    ("validity_origin_left", "0..1"), ("validity_origin_right", "0..1"),
    ("event_fixation", "0..1"), ("event_saccade", "0..1"), ("event_blink_other", "0..1"),
    ("event_duration", "ms"), ("gaze_velocity", "deg/s"),
]
EYE_FEATURE_NAMES: Tuple[str, ...] = tuple(n for n, _ in _F)
"""The 39 eye features in model input order (DESIGN sec. 7)."""
EYE_FEATURE_UNITS: Tuple[str, ...] = tuple(u for _, u in _F)
"""Unit of each feature: ``norm`` = normalised display coordinate (0..1 from the top-left),
``mm`` = millimetres in the Tobii user coordinate system, ``unit`` = unit-vector component,
``0..1`` = a flag, averaged to a fraction within a window step."""
N_EYE_FEATURES = len(EYE_FEATURE_NAMES)
EYE_FEATURE_GROUPS = {
    "gaze_display": slice(0, 6), "gaze_ucs": slice(6, 12), "origin_ucs": slice(12, 18),
    "direction": slice(18, 24), "pupil": slice(24, 26), "pupil_fluctuation": slice(26, 28),
    "validity": slice(28, 34), "event": slice(34, 37), "event_duration": slice(37, 38),
    "velocity": slice(38, 39),
}
_VALIDITY = EYE_FEATURE_GROUPS["validity"]
_EVENT = EYE_FEATURE_GROUPS["event"]
_DEFAULT = EyeConfig()


def _assemble(pre: Preprocessed, ev: EyeEvents) -> np.ndarray:
    n = len(pre)
    x = np.empty((n, N_EYE_FEATURES), np.float64)
    x[:, 0:2] = pre.display_mean
    x[:, 2:4] = pre.display_left
    x[:, 4:6] = pre.display_right
    x[:, 6:9] = pre.point_left
    x[:, 9:12] = pre.point_right
    x[:, 12:15] = pre.origin_left
    x[:, 15:18] = pre.origin_right
    x[:, 18:21] = pre.direction_left
    x[:, 21:24] = pre.direction_right
    x[:, 24] = pre.pupil_left
    x[:, 25] = pre.pupil_right
    x[:, 26:28] = np.nan
    if n > 1:
        x[1:, 26] = np.diff(pre.pupil_left)
        x[1:, 27] = np.diff(pre.pupil_right)
    x[:, 28:30] = pre.gaze_valid
    x[:, 30:32] = pre.pupil_valid
    x[:, 32:34] = pre.origin_valid
    x[:, 34] = ev.label == FIXATION
    x[:, 35] = ev.label == SACCADE
    x[:, 36] = ev.label == OTHER
    x[:, 37] = ev.duration_ms
    x[:, 38] = pre.velocity
    return x


def sample_features(gaze: np.ndarray, *, config: Optional[EyeConfig] = None) -> np.ndarray:
    """The 39 eye features of every sample (pre-processing over the whole input).

    Parameters
    ----------
    gaze : numpy structured array of :data:`emer_live.schema.GAZE_DTYPE`
        Samples sorted by ``t_us``.
    config : EyeConfig, optional

    Returns
    -------
    numpy.ndarray
        ``(N, 39)`` float32 in the order of :data:`EYE_FEATURE_NAMES`. Values that are unknown
        (lost and not interpolated; the first sample's pupil fluctuation) are NaN; validities,
        event one-hot and event duration are always finite.
    """
    config = _DEFAULT if config is None else config
    pre = preprocess(gaze, config=config)
    return _assemble(pre, classify_events(pre, config=config)).astype(np.float32)


# --------------------------------------------------------------------------- windows

@dataclass(frozen=True)
class EyeAnalysis:
    """Pre-processing, events and per-sample features of ``[t0_us - context, t1_us)``.

    Build it once with :func:`analyse` and pass it to :func:`eye_window` and
    :func:`emer_live.features.fixation.fixation_sequence` to avoid doing the work twice.
    ``first`` is the index of the first sample at or after ``t0_us``.
    """

    t0_us: int
    t1_us: int
    pre: Preprocessed
    events: EyeEvents
    features: np.ndarray   # (n, 39) float64, NaN where unknown
    first: int
    config: EyeConfig

    @property
    def t_us(self) -> np.ndarray:
        """Times of the samples inside ``[t0_us, t1_us)``."""
        return self.pre.t_us[self.first:]


@dataclass(frozen=True)
class EyeWindow:
    """One window of the eye modality, resampled to ``steps`` time steps.

    Attributes
    ----------
    features : (steps, 39) float32, all finite
    step_valid : (steps,) bool
        False for a step without any sample whose gaze is known after pre-processing (recorded
        valid, or interpolated over a blink or short gap); its features are interpolated from
        the neighbouring steps.
    valid_fraction : float
        Fraction of the window's samples with recorded valid gaze in at least one eye.
    n_samples : int
        Samples inside ``[t0_us, t1_us)``.
    blinks : int
        Blinks starting inside the window.
    """

    features: np.ndarray
    step_valid: np.ndarray
    valid_fraction: float
    n_samples: int
    blinks: int
    t0_us: int
    t1_us: int


def _check_bounds(t0_us, t1_us, steps=None) -> Tuple[int, int]:
    try:
        t0, t1 = int(t0_us), int(t1_us)
    except (TypeError, ValueError):
        raise TypeError(f"t0_us and t1_us must be integers (microseconds), got {t0_us!r}, {t1_us!r}") from None
    if t1 <= t0:
        raise ValueError(f"t1_us ({t1}) must be after t0_us ({t0})")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return t0, t1


def analyse(gaze: np.ndarray, *, t0_us: int, t1_us: int, config: Optional[EyeConfig] = None) -> EyeAnalysis:
    """Pre-process ``[t0_us - config.context_ms, t1_us)`` of ``gaze`` and classify its events.

    Parameters
    ----------
    gaze : numpy structured array of :data:`emer_live.schema.GAZE_DTYPE`
        Sorted by ``t_us``; may hold more than the window (only the needed part is used).
    t0_us, t1_us : int
        Window bounds on the session clock, ``t0_us < t1_us``.
    config : EyeConfig, optional

    Returns
    -------
    EyeAnalysis
    """
    config = _DEFAULT if config is None else config
    t0, t1 = _check_bounds(t0_us, t1_us)
    t = _check_gaze(gaze)["t_us"]
    lo = int(np.searchsorted(t, t0 - round(config.context_ms * 1000), "left"))
    hi = int(np.searchsorted(t, t1, "left"))
    sub = gaze[lo:hi]
    pre = preprocess(sub, config=config)   # validates fields and order
    ev = classify_events(pre, config=config)
    first = int(np.searchsorted(pre.t_us, t0, "left"))
    return EyeAnalysis(t0_us=t0, t1_us=t1, pre=pre, events=ev, features=_assemble(pre, ev),
                       first=first, config=config)


def _bin_edges(t: np.ndarray, t0: int, t1: int, steps: int) -> np.ndarray:
    """Index boundaries of the equal time bins ``[t0 + j*T/steps, t0 + (j+1)*T/steps)`` in
    sorted ``t`` (length steps + 1)."""
    j = np.arange(steps + 1, dtype=np.int64)
    span = t1 - t0
    edges_t = t0 - ((-j * span) // steps)          # t0 + ceil(j * span / steps)
    return np.searchsorted(t, edges_t, "left")


def _bin_means(x: np.ndarray, edges: np.ndarray):
    """NaN-ignoring mean of rows of ``x`` within contiguous index bins; also the counts."""
    fin = np.isfinite(x)
    steps = edges.size - 1
    sums = np.zeros((steps, x.shape[1]))
    cnt = np.zeros((steps, x.shape[1]), np.int64)
    nonempty = edges[1:] > edges[:-1]
    if np.any(nonempty):
        starts = edges[:-1][nonempty]
        end = edges[-1]   # reduceat runs the last segment to the end of the array
        sums[nonempty] = np.add.reduceat(np.where(fin, x, 0.0)[:end], starts, axis=0)
        cnt[nonempty] = np.add.reduceat(fin[:end].astype(np.int64), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    return mean, cnt


def _fill_columns(m: np.ndarray) -> np.ndarray:
    """Interpolate NaN entries of each column linearly over the step index (nearest value
    beyond the first/last known step); all-NaN columns become 0."""
    steps = m.shape[0]
    idx = np.arange(steps, dtype=np.float64)
    fin = np.isfinite(m)
    for j in np.flatnonzero(~np.all(fin, axis=0)):
        f = fin[:, j]
        m[:, j] = np.interp(idx, idx[f], m[f, j]) if np.any(f) else 0.0
    return m


def eye_window(gaze: Optional[np.ndarray], *, t0_us: int, t1_us: int, steps: int = 32,
               config: Optional[EyeConfig] = None, analysis: Optional[EyeAnalysis] = None) -> EyeWindow:
    """Eye features of ``[t0_us, t1_us)`` resampled to ``steps`` equal time bins.

    Parameters
    ----------
    gaze : numpy structured array of :data:`emer_live.schema.GAZE_DTYPE` or None
        Sorted by ``t_us``. Samples up to ``config.context_ms`` before ``t0_us`` are used for
        pre-processing when present. Ignored (may be None) when ``analysis`` is given.
    t0_us, t1_us : int
        Window bounds; the whole-trial mode is the same call with the trial's bounds.
    steps : int
        Number of time steps (32 for EMERT).
    config : EyeConfig, optional
    analysis : EyeAnalysis, optional
        Result of :func:`analyse` for the same bounds, to share work with
        :func:`~emer_live.features.fixation.fixation_sequence`.

    Returns
    -------
    EyeWindow
        ``features`` is the NaN-ignoring mean of the per-sample features within each bin. Bins
        without samples get validities 0 and the event one-hot of "blink/other"; every other
        unknown value is interpolated linearly from the neighbouring steps (nearest at the
        window's ends). A window without any known gaze is all zeros with an all-False mask.
    """
    t0, t1 = _check_bounds(t0_us, t1_us, steps)
    steps = int(steps)
    if analysis is None:
        analysis = analyse(gaze, t0_us=t0, t1_us=t1, config=config)
    elif not isinstance(analysis, EyeAnalysis) or (analysis.t0_us, analysis.t1_us) != (t0, t1):
        raise ValueError("analysis must be an EyeAnalysis made by analyse() for the same t0_us/t1_us")
    pre, first = analysis.pre, analysis.first
    t = pre.t_us[first:]
    x = analysis.features[first:]
    n = int(t.size)
    n_blinks = int(np.count_nonzero((pre.blinks[:, 0] >= t0) & (pre.blinks[:, 0] < t1))) if len(pre.blinks) else 0
    if n == 0:
        return EyeWindow(np.zeros((steps, N_EYE_FEATURES), np.float32), np.zeros(steps, bool),
                         0.0, 0, n_blinks, t0, t1)
    valid_fraction = float(np.mean(pre.gaze_valid[first:].any(axis=1)))
    edges = _bin_edges(t, t0, t1, steps)
    mean, cnt = _bin_means(x, edges)
    step_valid = np.all(cnt[:, 0:2] > 0, axis=1)     # mean gaze point known in the step
    if not np.any(step_valid):
        return EyeWindow(np.zeros((steps, N_EYE_FEATURES), np.float32), step_valid,
                         valid_fraction, n, n_blinks, t0, t1)
    empty = (edges[1:] - edges[:-1]) == 0
    if np.any(empty):
        mean[np.ix_(empty, np.arange(_VALIDITY.start, _VALIDITY.stop))] = 0.0
        mean[np.ix_(empty, np.arange(_EVENT.start, _EVENT.stop))] = (0.0, 0.0, 1.0)
    feats = _fill_columns(mean).astype(np.float32)
    return EyeWindow(feats, step_valid, valid_fraction, n, n_blinks, t0, t1)
