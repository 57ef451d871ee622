"""Calibration and validation as a session's first phase, UI-neutral.

:class:`CalibrationProcedure` runs :class:`~emer_live.devices.calibration.CalibrationController`
on a worker thread (its SDK calls and the validation collection block): it asks the front end to
show each target through ``show_point(x, y) -> t_shown_us`` (which returns once the target is
drawn) and, with the synthetic participant, makes the phantom look at it. Trackers that cannot
be calibrated (synthetic, replay) are validated only, and the result says so. The operator then
accepts (:meth:`accept` -> the session's ``finish_calibration``), redoes one point or redoes all.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Tuple

from ..errors import DeviceUnavailable

__all__ = ["CalibrationProcedure"]

Point = Tuple[float, float]


class CalibrationProcedure:
    """One calibration + validation of the run's tracker (see the module docstring).

    Parameters
    ----------
    run : Run
        A running session in its CALIBRATION phase.
    show_point : callable
        ``(x, y) -> t_shown_us``: draw the target (0..1 display coordinates), return when it is
        visible, with the session time it appeared. Called on the worker thread.
    points : 5 or 9
    on_done, on_failed : callable
        Called on the worker thread with this procedure / the error text when a pass ends.
    """

    FIXATE_S = 0.8          # time for the eyes to reach a new target before collecting

    def __init__(self, run, *, show_point: Callable[[float, float], int], points: int = 5,
                 on_done: Optional[Callable] = None, on_failed: Optional[Callable[[str], None]] = None) -> None:
        from ..devices.calibration import CalibrationController

        self.run = run
        self.show_point = show_point
        self.ctrl = CalibrationController(run.devices.tracker, points=points)
        self.on_done = on_done
        self.on_failed = on_failed
        self.calibrated: Optional[bool] = None     # None until tried; False: tracker cannot calibrate
        self.note = ""
        self._thread: Optional[threading.Thread] = None

    # -- the participant's side ---------------------------------------------------------------
    def _show(self, p: Point, hold_s: float) -> int:
        t = int(self.show_point(p[0], p[1]))
        ph = self.run.phantom
        if ph is not None:          # the synthetic participant looks where the target is
            ph.look_at(p[0], p[1], t, t + int(hold_s * 1e6))
        return t

    def _calibrate(self, points) -> None:
        c = self.ctrl
        try:
            c.begin()
        except DeviceUnavailable as exc:
            self.calibrated = False
            self.note = f"calibration skipped: {exc}"
            return
        try:
            for p in points:
                self._show(p, 2.5)
                threading.Event().wait(self.FIXATE_S)
                if p in c.collected:      # a redone point replaces its earlier data
                    c.discard(p)
                c.collect(p)
            c.compute()
            self.calibrated = True
        finally:
            c.end()

    def _validate(self, points) -> None:
        for p in points:
            t = self._show(p, 2.5)
            self.ctrl.collect_validation(p, shown_at_us=t, settle_s=self.FIXATE_S, duration_s=1.0)
        self.ctrl.validate()

    # -- operator actions ----------------------------------------------------------------------
    def start(self, *, calibrate_points=None, validate_points=None) -> None:
        """Run a pass on the worker thread: all points by default, or the ones given (redo)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("a calibration pass is running")
        c = self.ctrl
        cal = list(c.points if calibrate_points is None else calibrate_points)
        val = list(c.validation_points if validate_points is None else validate_points)

        def work():
            try:
                if cal and self.calibrated is not False:
                    self._calibrate(cal)
                if val:
                    self._validate(val)
            except Exception as exc:     # reported to the operator; the session waits in CALIBRATION
                if self.on_failed is not None:
                    self.on_failed(f"{type(exc).__name__}: {exc}")
                return
            if self.on_done is not None:
                self.on_done(self)

        self._thread = threading.Thread(target=work, name="calibration", daemon=True)
        self._thread.start()

    def redo_point(self, point: Point) -> None:
        """Calibrate (when the tracker can) and validate again at the nearest points to ``point``."""
        c = self.ctrl
        near = lambda pts: [min(pts, key=lambda q: (q[0] - point[0]) ** 2 + (q[1] - point[1]) ** 2)]  # noqa: E731
        self.start(calibrate_points=near(c.points) if self.calibrated else [],
                   validate_points=near(c.validation_points))

    def result(self) -> dict:
        """What goes into session.json (``calibration``)."""
        d = self.ctrl.to_dict()
        d["calibrated"] = bool(self.calibrated)
        if self.note:
            d["note"] = self.note
        return d

    def summary(self) -> str:
        v = self.ctrl.validation_result
        head = "calibrated" if self.calibrated else (self.note or "not calibrated")
        return f"{head}; " + (v.summary() if v is not None else "not validated")

    def accept(self) -> None:
        """End the CALIBRATION phase with this result; the session's baseline follows."""
        self.run.controller.finish_calibration(self.result())

    def wait(self, timeout: Optional[float] = None) -> bool:
        t = self._thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()
