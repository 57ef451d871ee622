"""Calibration and validation of a screen-based eye tracker, without any UI.

:class:`CalibrationController` drives the SDK's ``ScreenBasedCalibration`` (enter calibration
mode, collect data per point, compute and apply, leave; recalibrate a single point) and then a
validation on *separate* points, computed from the gaze stream by :func:`compute_validation`.
The GUI only draws the points: it calls :meth:`CalibrationController.collect` once the
participant looks at a calibration point and :meth:`CalibrationController.collect_validation`
once a validation point is shown (both block for the collection time, so call them off the GUI
thread, e.g. from a worker ``QThread``).

Validation metrics (per eye, in degrees of visual angle, from the 3-D data in the tracker's user
coordinate system, UCS, mm):

* **accuracy** - mean over samples of the angle, seen from the sample's gaze origin (the eye),
  between the gaze point and the target. The target's UCS position comes from the display
  geometry (:meth:`~emer_live.geometry.DisplayGeometry.to_ucs`); the gaze point is the SDK's
  ``gaze_point_in_user_coordinate_system`` (or, when that is NaN, the display-area point mapped
  through the same geometry).
* **precision RMS-S2S** - root mean square of the angles between successive gaze points (both
  samples valid and adjacent in the stream), seen from the first sample's origin.
* **precision SD** - root mean square angle between each gaze point and the mean gaze point of
  that validation point (the population standard deviation of the angular positions).

Per eye, the session values are means over the validation points. An eye passes when accuracy,
RMS-S2S and SD are within the operator's thresholds, enough samples were valid, and every point
had valid data; the validation passes when both eyes pass (or either, if so configured).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..clock import utc_now_iso
from ..errors import ConfigError, DeviceUnavailable
from ..geometry import DEFAULT_DISPLAY, DisplayGeometry, angle_deg

__all__ = [
    "CALIBRATION_POINTS", "VALIDATION_POINTS", "ValidationThresholds", "EyeMetrics", "PointValidation",
    "ValidationResult", "CalibrationResult", "CalibrationController", "compute_validation", "eye_metrics",
]

Point = Tuple[float, float]

#: Standard layouts in normalised display coordinates (0,0 = top-left, 1,1 = bottom-right).
CALIBRATION_POINTS: Dict[int, Tuple[Point, ...]] = {
    5: ((0.5, 0.5), (0.1, 0.1), (0.9, 0.1), (0.1, 0.9), (0.9, 0.9)),
    9: tuple((x, y) for y in (0.1, 0.5, 0.9) for x in (0.1, 0.5, 0.9)),
}
#: Validation points, none of which is a calibration point of either layout.
VALIDATION_POINTS: Tuple[Point, ...] = ((0.3, 0.3), (0.7, 0.3), (0.3, 0.7), (0.7, 0.7))

EYES = ("left", "right")


def _check_point(p) -> Point:
    try:
        x, y = (float(v) for v in p)
    except (TypeError, ValueError):
        raise ValueError(f"a point is (x, y) in normalised display coordinates, got {p!r}") from None
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ValueError(f"point {p!r} lies outside the display (x and y must be within 0..1)")
    return (x, y)


def _points(spec, what: str) -> Tuple[Point, ...]:
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec not in CALIBRATION_POINTS:
            raise ValueError(f"{what}: use 5 or 9 points (or a list of (x, y)), got {spec}")
        return CALIBRATION_POINTS[spec]
    pts = tuple(_check_point(p) for p in spec)
    if not pts:
        raise ValueError(f"{what}: no points given")
    if len(set(pts)) != len(pts):
        raise ValueError(f"{what}: points repeat")
    return pts


# ----------------------------------------------------------------------------- thresholds
@dataclass(frozen=True)
class ValidationThresholds:
    """Pass/fail limits the operator sets (degrees; ``None`` switches a limit off).

    Parameters
    ----------
    max_accuracy_deg : float
        Largest acceptable mean angular offset.
    max_precision_rms_deg : float or None
        Largest acceptable RMS sample-to-sample angle.
    max_precision_sd_deg : float or None
        Largest acceptable SD of the angular positions.
    min_valid_fraction : float
        Smallest acceptable share of valid samples (0..1).
    eyes : {"both", "either"}
        Which eyes must pass.
    """

    max_accuracy_deg: float = 1.0
    max_precision_rms_deg: Optional[float] = 0.5
    max_precision_sd_deg: Optional[float] = 0.5
    min_valid_fraction: float = 0.5
    eyes: str = "both"

    def __post_init__(self) -> None:
        for name in ("max_accuracy_deg", "max_precision_rms_deg", "max_precision_sd_deg"):
            v = getattr(self, name)
            if v is None and name == "max_accuracy_deg":
                raise ConfigError("max_accuracy_deg is required")
            if v is not None and not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ConfigError(f"{name} must be a positive number of degrees, got {v!r}")
        if not (0.0 <= self.min_valid_fraction <= 1.0):
            raise ConfigError(f"min_valid_fraction must be within 0..1, got {self.min_valid_fraction!r}")
        if self.eyes not in ("both", "either"):
            raise ConfigError(f"eyes must be 'both' or 'either', got {self.eyes!r}")

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class EyeMetrics:
    """Validation metrics of one eye (at one point or over all points). NaN when no valid data."""

    accuracy_deg: float
    precision_rms_deg: float
    precision_sd_deg: float
    n_samples: int
    n_valid: int
    mean_gaze: Tuple[float, float] = (math.nan, math.nan)   # normalised display coordinates
    passed: Optional[bool] = None
    reasons: Tuple[str, ...] = ()

    @property
    def valid_fraction(self) -> float:
        return self.n_valid / self.n_samples if self.n_samples else 0.0

    def to_dict(self) -> dict:
        def num(v):
            return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 4)

        return {"accuracy_deg": num(self.accuracy_deg), "precision_rms_deg": num(self.precision_rms_deg),
                "precision_sd_deg": num(self.precision_sd_deg), "n_samples": self.n_samples,
                "n_valid": self.n_valid, "valid_fraction": round(self.valid_fraction, 4),
                "mean_gaze": [num(v) for v in self.mean_gaze], "passed": self.passed, "reasons": list(self.reasons)}


def _col(records: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(records[name], dtype=np.float64)


def eye_metrics(records: np.ndarray, target: Point, *, eye: str, geometry: DisplayGeometry) -> EyeMetrics:
    """Accuracy and precision of one eye looking at one target (see the module notes).

    Parameters
    ----------
    records : numpy structured array
        Gaze records (:data:`~emer_live.schema.GAZE_DTYPE` fields of that eye), in time order.
    target : (float, float)
        The target in normalised display coordinates.
    eye : {"left", "right"}
    geometry : DisplayGeometry
        The display area in UCS mm.

    Returns
    -------
    EyeMetrics
    """
    if eye not in EYES:
        raise ValueError(f"eye must be 'left' or 'right', got {eye!r}")
    tx, ty = _check_point(target)
    n = int(len(records))
    if n == 0:
        return EyeMetrics(math.nan, math.nan, math.nan, 0, 0)
    p = f"{eye}_"
    origin = np.stack([_col(records, f"{p}gaze_origin_in_user_coordinate_system_{c}") for c in "xyz"], axis=-1)
    gaze = np.stack([_col(records, f"{p}gaze_point_in_user_coordinate_system_{c}") for c in "xyz"], axis=-1)
    gx = _col(records, f"{p}gaze_point_on_display_area_x")
    gy = _col(records, f"{p}gaze_point_on_display_area_y")
    no_ucs = ~np.isfinite(gaze).all(axis=1)
    if no_ucs.any():                       # fall back on the display-area point, same geometry
        gaze[no_ucs] = geometry.to_ucs(gx[no_ucs], gy[no_ucs])
    valid = ((np.asarray(records[f"{p}gaze_point_validity"]) == 1)
             & (np.asarray(records[f"{p}gaze_origin_validity"]) == 1)
             & np.isfinite(origin).all(axis=1) & np.isfinite(gaze).all(axis=1))
    n_valid = int(valid.sum())
    if n_valid == 0:
        return EyeMetrics(math.nan, math.nan, math.nan, n, 0)
    o, g = origin[valid], gaze[valid]
    t_ucs = geometry.to_ucs(tx, ty)
    accuracy = float(np.mean(angle_deg(o, g, t_ucs)))
    pair = valid[:-1] & valid[1:]
    if pair.any():
        i = np.flatnonzero(pair)
        s2s = angle_deg(origin[i], gaze[i], gaze[i + 1])
        rms = float(np.sqrt(np.mean(s2s ** 2)))
    else:
        rms = math.nan
    centroid = g.mean(axis=0)
    sd = float(np.sqrt(np.mean(angle_deg(o, g, centroid) ** 2)))
    mean_gaze = (float(np.nanmean(gx[valid])), float(np.nanmean(gy[valid])))
    return EyeMetrics(accuracy, rms, sd, n, n_valid, mean_gaze)


def _judge(m: EyeMetrics, th: ValidationThresholds, extra: Sequence[str] = ()) -> EyeMetrics:
    reasons = list(extra)
    if m.n_valid == 0:
        reasons.append("no valid gaze")
    else:
        if not m.accuracy_deg <= th.max_accuracy_deg:
            reasons.append(f"accuracy {m.accuracy_deg:.2f} deg > {th.max_accuracy_deg:g} deg")
        if th.max_precision_rms_deg is not None and not m.precision_rms_deg <= th.max_precision_rms_deg:
            reasons.append(f"precision RMS-S2S {m.precision_rms_deg:.2f} deg > {th.max_precision_rms_deg:g} deg")
        if th.max_precision_sd_deg is not None and not m.precision_sd_deg <= th.max_precision_sd_deg:
            reasons.append(f"precision SD {m.precision_sd_deg:.2f} deg > {th.max_precision_sd_deg:g} deg")
        if m.valid_fraction < th.min_valid_fraction:
            reasons.append(f"only {m.valid_fraction:.0%} valid samples (< {th.min_valid_fraction:.0%})")
    return EyeMetrics(m.accuracy_deg, m.precision_rms_deg, m.precision_sd_deg, m.n_samples, m.n_valid,
                      m.mean_gaze, not reasons, tuple(reasons))


@dataclass(frozen=True)
class PointValidation:
    point: Point
    left: EyeMetrics
    right: EyeMetrics

    def to_dict(self) -> dict:
        return {"x": self.point[0], "y": self.point[1], "left": self.left.to_dict(), "right": self.right.to_dict()}


@dataclass(frozen=True)
class ValidationResult:
    """Per-point and per-eye validation results with the pass/fail decision."""

    points: Tuple[PointValidation, ...]
    left: EyeMetrics
    right: EyeMetrics
    thresholds: ValidationThresholds
    geometry: DisplayGeometry
    passed: bool
    time_utc: str = field(default_factory=utc_now_iso)

    def eye(self, name: str) -> EyeMetrics:
        return {"left": self.left, "right": self.right}[name]

    def to_dict(self) -> dict:
        """JSON-ready form for session.json."""
        return {"passed": self.passed, "time_utc": self.time_utc, "left": self.left.to_dict(),
                "right": self.right.to_dict(), "points": [p.to_dict() for p in self.points],
                "thresholds": self.thresholds.to_dict(), "display_area": self.geometry.to_dict(),
                "method": "accuracy = mean angular offset gaze->target seen from the gaze origin (UCS); "
                          "precision = RMS of successive-sample angles and SD of angular positions; "
                          "per-eye values are means over validation points"}

    def summary(self) -> str:
        def eye(m: EyeMetrics, name: str) -> str:
            if m.n_valid == 0:
                return f"{name}: no valid gaze"
            return (f"{name}: accuracy {m.accuracy_deg:.2f} deg, RMS {m.precision_rms_deg:.2f} deg, "
                    f"SD {m.precision_sd_deg:.2f} deg, {m.valid_fraction:.0%} valid")
        return f"validation {'PASSED' if self.passed else 'FAILED'} - {eye(self.left, 'left')}; {eye(self.right, 'right')}"


def compute_validation(samples_per_point: Mapping[Point, np.ndarray], *, geometry: DisplayGeometry = DEFAULT_DISPLAY,
                       thresholds: Optional[ValidationThresholds] = None) -> ValidationResult:
    """Validation metrics from gaze records collected while the participant looked at each point.

    Parameters
    ----------
    samples_per_point : mapping
        ``{(x, y): gaze records}`` - targets in normalised display coordinates.
    geometry : DisplayGeometry
        The display area in UCS mm (the tracker's ``get_display_area``).
    thresholds : ValidationThresholds, optional
        Pass/fail limits (defaults: 1.0 deg accuracy, 0.5 deg RMS and SD, 50 % valid, both eyes).

    Returns
    -------
    ValidationResult
    """
    th = thresholds or ValidationThresholds()
    if not samples_per_point:
        raise ValueError("no validation points: collect gaze at one or more points first")
    points: List[PointValidation] = []
    for target, rec in samples_per_point.items():
        tgt = _check_point(target)
        per_eye = [_judge(eye_metrics(rec, tgt, eye=e, geometry=geometry), th) for e in EYES]
        points.append(PointValidation(tgt, *per_eye))
    agg = []
    for e in EYES:
        ms = [getattr(p, e) for p in points]
        with_data = [m for m in ms if m.n_valid]
        missing = [f"no valid gaze at point ({p.point[0]:g}, {p.point[1]:g})" for p, m in zip(points, ms) if not m.n_valid]

        def mean(attr):
            vals = [getattr(m, attr) for m in with_data if math.isfinite(getattr(m, attr))]
            return float(np.mean(vals)) if vals else math.nan

        m = EyeMetrics(mean("accuracy_deg"), mean("precision_rms_deg"), mean("precision_sd_deg"),
                       sum(x.n_samples for x in ms), sum(x.n_valid for x in ms))
        agg.append(_judge(m, th, missing))
    left, right = agg
    passed = (left.passed and right.passed) if th.eyes == "both" else (left.passed or right.passed)
    return ValidationResult(tuple(points), left, right, th, geometry, bool(passed))


# ----------------------------------------------------------------------------- calibration result
@dataclass(frozen=True)
class CalibrationResult:
    """What ``compute_and_apply`` reported: status and, per point and eye, where the calibration
    samples landed (normalised display coordinates) and how many the tracker used."""

    status: str                                  # success | failure | success_left_eye | success_right_eye
    points: Tuple[dict, ...]
    time_utc: str = field(default_factory=utc_now_iso)

    @property
    def ok(self) -> bool:
        return self.status.startswith("success")

    def to_dict(self) -> dict:
        return {"status": self.status, "time_utc": self.time_utc, "points": list(self.points)}


def _calibration_result(res, sdk, geometry: DisplayGeometry) -> CalibrationResult:
    status = str(res.status)
    status = status[len("calibration_status_"):] if status.startswith("calibration_status_") else status
    used = getattr(sdk, "VALIDITY_VALID_AND_USED", "validity_valid_and_used")
    points = []
    for cp in getattr(res, "calibration_points", ()) or ():
        px, py = (float(v) for v in cp.position_on_display_area)
        entry: Dict[str, Any] = {"x": px, "y": py}
        for e in EYES:
            samples = [getattr(s, f"{e}_eye") for s in cp.calibration_samples]
            pos = np.array([s.position_on_display_area for s in samples if s.validity == used], dtype=np.float64)
            info: Dict[str, Any] = {"n": len(samples), "n_used": int(len(pos))}
            if len(pos):
                mx, my = (float(v) for v in pos.mean(axis=0))
                off_mm = float(np.linalg.norm(geometry.to_ucs(mx, my) - geometry.to_ucs(px, py)))
                info.update(mean_x=round(mx, 5), mean_y=round(my, 5), offset_mm=round(off_mm, 2))
            entry[e] = info
        points.append(entry)
    return CalibrationResult(status, tuple(points))


# ----------------------------------------------------------------------------- the controller
class CalibrationController:
    """Drive calibration and validation of one tracker; the UI only draws the points.

    Parameters
    ----------
    tracker
        A device with a gaze ``stream``; for calibration also ``screen_based_calibration()``
        (a :class:`~emer_live.devices.tobii.TobiiTracker`). Trackers without it (synthetic,
        replay) can still be validated.
    points : 5, 9 or sequence of (x, y)
        Calibration points.
    validation_points : sequence of (x, y), optional
        Validation points (default :data:`VALIDATION_POINTS`, separate from the calibration ones).
    thresholds : ValidationThresholds, optional
    geometry : DisplayGeometry, optional
        Display area in UCS mm; default: the tracker's ``display_geometry()``, else a 24" screen.
    on_event : callable, optional
        ``(t_us, kind, detail)`` sink; default: the tracker's own event sink. Emits
        ``calibration`` and ``validation`` events.
    """

    def __init__(self, tracker, *, points=5, validation_points: Optional[Iterable[Point]] = None,
                 thresholds: Optional[ValidationThresholds] = None, geometry: Optional[DisplayGeometry] = None,
                 on_event: Optional[Callable[[int, str, dict], None]] = None) -> None:
        self.tracker = tracker
        self.points = _points(points, "calibration points")
        self.validation_points = _points(VALIDATION_POINTS if validation_points is None else validation_points,
                                         "validation points")
        self.thresholds = thresholds or ValidationThresholds()
        if geometry is None and hasattr(tracker, "display_geometry"):
            geometry = tracker.display_geometry()
        self.geometry = geometry or DEFAULT_DISPLAY
        self._on_event = on_event
        self._cal = None
        self._sdk = getattr(tracker, "sdk", None)
        self.calibrating = False
        self.collected: Dict[Point, str] = {}
        self.calibration_result: Optional[CalibrationResult] = None
        self.validation_samples: Dict[Point, np.ndarray] = {}
        self.validation_result: Optional[ValidationResult] = None

    # -- events
    def _clock_now(self) -> int:
        clock = getattr(self.tracker, "clock", None)
        if clock is None:
            from ..clock import system_clock
            clock = system_clock()
        return clock.now_us()

    def _emit(self, kind: str, **detail) -> None:
        if self._on_event is not None:
            self._on_event(self._clock_now(), kind, detail)
        elif hasattr(self.tracker, "emit"):
            self.tracker.emit(kind, **detail)

    def _status_name(self, status) -> str:
        s = str(status)
        return s[len("calibration_status_"):] if s.startswith("calibration_status_") else s

    # -- calibration
    def begin(self) -> None:
        """Enter calibration mode (raises DeviceUnavailable when the tracker cannot calibrate)."""
        if self.calibrating:
            raise RuntimeError("already in calibration mode")
        if not hasattr(self.tracker, "screen_based_calibration"):
            raise DeviceUnavailable(f"{getattr(self.tracker, 'name', 'this tracker')} cannot be calibrated "
                                    "(only Tobii trackers can; synthetic and replay trackers are validated only)")
        if self._cal is None:
            self._cal = self.tracker.screen_based_calibration()
        self._cal.enter_calibration_mode()
        self.calibrating = True
        if hasattr(self.tracker, "set_calibration_mode"):
            self.tracker.set_calibration_mode(True)
        self._emit("calibration", action="enter", points=len(self.points))

    def _require_mode(self) -> None:
        if not self.calibrating:
            raise RuntimeError("not in calibration mode: call begin() first")

    def collect(self, point, *, retry: bool = True) -> bool:
        """Collect calibration data at ``point`` (the participant must be looking at it).

        The SDK call blocks while the tracker collects (typically under a second). On failure it
        is tried once more when ``retry``. Returns True on success.
        """
        self._require_mode()
        x, y = _check_point(point)
        status = self._status_name(self._cal.collect_data(x, y))
        tries = 1
        if status != "success" and retry:
            status = self._status_name(self._cal.collect_data(x, y))
            tries = 2
        self.collected[(x, y)] = status
        self._emit("calibration", action="collect", x=x, y=y, status=status, tries=tries)
        return status == "success"

    def discard(self, point) -> None:
        """Remove the data collected at ``point``."""
        self._require_mode()
        x, y = _check_point(point)
        self._cal.discard_data(x, y)
        self.collected.pop((x, y), None)
        self._emit("calibration", action="discard", x=x, y=y)

    def compute(self) -> CalibrationResult:
        """Compute and apply the calibration from the data collected so far."""
        self._require_mode()
        res = self._cal.compute_and_apply()
        self.calibration_result = _calibration_result(res, self._sdk, self.geometry)
        self._emit("calibration", action="compute", status=self.calibration_result.status,
                   points=len(self.calibration_result.points))
        return self.calibration_result

    def end(self) -> None:
        """Leave calibration mode (safe to call twice)."""
        if not self.calibrating:
            return
        try:
            self._cal.leave_calibration_mode()
        finally:
            self.calibrating = False
            if hasattr(self.tracker, "set_calibration_mode"):
                self.tracker.set_calibration_mode(False)
            self._emit("calibration", action="leave")

    def __enter__(self) -> "CalibrationController":
        self.begin()
        return self

    def __exit__(self, *exc) -> None:
        self.end()

    def run_calibration(self, show_point: Optional[Callable[[Point], None]] = None, *,
                        leave: bool = True) -> CalibrationResult:
        """Calibrate every point in turn: ``show_point(p)`` (the GUI draws it and returns once the
        participant fixates), then :meth:`collect`; finally :meth:`compute`.

        Leaves calibration mode afterwards unless ``leave=False`` (to recalibrate points next).
        """
        if not self.calibrating:
            self.begin()
        try:
            self.collected.clear()
            for p in self.points:
                if show_point is not None:
                    show_point(p)
                self.collect(p)
            return self.compute()
        finally:
            if leave:
                self.end()

    def recalibrate_point(self, point, show_point: Optional[Callable[[Point], None]] = None) -> CalibrationResult:
        """Discard one point's data, collect it again and recompute (enters calibration mode if
        needed and leaves it again if it was not in it)."""
        p = _check_point(point)
        was = self.calibrating
        if not was:
            self.begin()
        try:
            self.discard(p)
            if show_point is not None:
                show_point(p)
            self.collect(p)
            return self.compute()
        finally:
            if not was:
                self.end()

    # -- validation
    def add_validation_samples(self, point, records: np.ndarray) -> None:
        """Hand over gaze records collected while ``point`` was shown (replaces earlier ones)."""
        self.validation_samples[_check_point(point)] = np.asarray(records)

    def collect_validation(self, point, *, settle_s: float = 0.5, duration_s: float = 1.0,
                           shown_at_us: Optional[int] = None, timeout_s: float = 5.0) -> int:
        """Collect the tracker's gaze while ``point`` is shown; blocks until the window is complete.

        Parameters
        ----------
        point : (x, y)
        settle_s : float
            Time after the point appears that is ignored (the saccade towards it).
        duration_s : float
            Length of the window used.
        shown_at_us : int, optional
            When the point appeared on the session clock (default: now).
        timeout_s : float
            Give up waiting for the tracker after this long past the window (real seconds); the
            samples received by then are used.

        Returns
        -------
        int
            Number of records collected.
        """
        p = _check_point(point)
        if settle_s < 0 or duration_s <= 0 or timeout_s < 0:
            raise ValueError("settle_s >= 0, duration_s > 0 and timeout_s >= 0 are required")
        stream = getattr(self.tracker, "stream", None)
        if stream is None:
            raise RuntimeError("the tracker has no gaze stream: open and start it first")
        t0 = (self._clock_now() if shown_at_us is None else int(shown_at_us)) + int(settle_s * 1e6)
        t1 = t0 + int(duration_s * 1e6)
        deadline = None
        while True:
            last = stream.last_t_us
            if last is not None and last >= t1:
                break
            if self._clock_now() >= t1:          # the window is over: wait a little for late samples
                if deadline is None:
                    deadline = time.monotonic() + timeout_s
                elif time.monotonic() >= deadline:
                    break
            time.sleep(0.01)
        rec = stream.window(t0, t1)
        self.validation_samples[p] = rec
        self._emit("validation", action="collect", x=p[0], y=p[1], samples=int(len(rec)))
        return int(len(rec))

    def validate(self, samples_per_point: Optional[Mapping[Point, np.ndarray]] = None, *,
                 thresholds: Optional[ValidationThresholds] = None) -> ValidationResult:
        """Compute the validation from ``samples_per_point`` or from what was collected."""
        data = dict(samples_per_point) if samples_per_point is not None else dict(self.validation_samples)
        if thresholds is not None:
            self.thresholds = thresholds
        self.validation_result = compute_validation(data, geometry=self.geometry, thresholds=self.thresholds)
        r = self.validation_result
        self._emit("validation", action="result", passed=r.passed,
                   left_accuracy_deg=r.left.to_dict()["accuracy_deg"], right_accuracy_deg=r.right.to_dict()["accuracy_deg"],
                   left_rms_deg=r.left.to_dict()["precision_rms_deg"], right_rms_deg=r.right.to_dict()["precision_rms_deg"])
        return r

    def run_validation(self, show_point: Optional[Callable[[Point], None]] = None, *, settle_s: float = 0.5,
                       duration_s: float = 1.0) -> ValidationResult:
        """Show each validation point (``show_point(p)`` returns once it is drawn), collect, validate."""
        self.validation_samples.clear()
        for p in self.validation_points:
            if show_point is not None:
                show_point(p)
            self.collect_validation(p, settle_s=settle_s, duration_s=duration_s)
        return self.validate()

    def to_dict(self) -> dict:
        """Calibration and validation results for session.json."""
        return {"calibration_points": [list(p) for p in self.points],
                "validation_points": [list(p) for p in self.validation_points],
                "calibration": None if self.calibration_result is None else self.calibration_result.to_dict(),
                "validation": None if self.validation_result is None else self.validation_result.to_dict()}
