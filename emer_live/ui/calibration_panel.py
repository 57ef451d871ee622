"""The operator's calibration panel: runs the :class:`~emer_live.app.calibration.CalibrationProcedure`
(targets on the participant screen, collection on a worker thread), then shows the result -
accuracy and precision per eye in degrees, and per validation point the gaze samples around its
target - with **Accept**, **Redo point** and **Redo all**.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from ..app.calibration import CalibrationProcedure
from .colors import BAD_COLOR, LEFT_EYE_COLOR, OK_COLOR, RIGHT_EYE_COLOR
from .panels import colored, set_title

__all__ = ["CalibrationPanel"]


def _translucent(color: str, alpha: int = 90):
    c = QtGui.QColor(color)
    c.setAlpha(alpha)
    return pg.mkBrush(c)


class _Bridge(QtCore.QObject):
    """Carries the worker thread's requests onto the GUI thread (queued signals)."""

    sigShow = QtCore.pyqtSignal(float, float)
    sigDone = QtCore.pyqtSignal()
    sigFailed = QtCore.pyqtSignal(str)


class CalibrationPanel(QtWidgets.QWidget):
    """See the module docstring. ``sigAccepted`` fires once the operator (or the demo) accepted
    a result; the console then puts the panel away so the plots get the room."""

    sigAccepted = QtCore.pyqtSignal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        p = self.plot.getPlotItem()
        set_title(p, f"validation: + target, {colored('left', LEFT_EYE_COLOR, True)} / "
                  f"{colored('right', RIGHT_EYE_COLOR, True)} eye's gaze",
                  "the gaze samples collected around each validation target (black +), per eye, in display "
                  "coordinates (0..1, y down)")
        p.invertY(True)            # display coordinates: y grows downwards
        p.setXRange(0, 1, padding=0.02)
        p.setYRange(0, 1, padding=0.02)
        p.setAspectLocked(False)
        self.left_dots = pg.ScatterPlotItem(size=3, brush=_translucent(LEFT_EYE_COLOR), pen=None, name="left")
        self.right_dots = pg.ScatterPlotItem(size=3, brush=_translucent(RIGHT_EYE_COLOR), pen=None, name="right")
        self.targets = pg.ScatterPlotItem(size=14, symbol="+", pen=pg.mkPen("k", width=2), brush=None)
        for item in (self.left_dots, self.right_dots, self.targets):
            p.addItem(item)
        self.status = QtWidgets.QLabel("calibration starts with the session")
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(84)      # four lines: method, verdict, one per eye
        self.accept_btn = QtWidgets.QPushButton("Accept")
        self.redo_all_btn = QtWidgets.QPushButton("Redo all")
        self.redo_point_btn = QtWidgets.QPushButton("Redo point")
        self.point_box = QtWidgets.QComboBox()
        row = QtWidgets.QHBoxLayout()
        for w in (self.accept_btn, self.redo_all_btn, self.point_box, self.redo_point_btn):
            row.addWidget(w)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.status)
        lay.addWidget(self.plot, 1)
        lay.addLayout(row)
        self.accept_btn.clicked.connect(self.accept)
        self.redo_all_btn.clicked.connect(lambda: self._pass())
        self.redo_point_btn.clicked.connect(self.redo_point)
        self.procedure: Optional[CalibrationProcedure] = None
        self.screen = None
        self.passes = 0
        self.accepted = False
        self.failed: Optional[str] = None
        self._bridge = _Bridge()
        self._bridge.sigShow.connect(self._show_on_screen)
        self._bridge.sigDone.connect(self._done)
        self._bridge.sigFailed.connect(self._failed)
        self._shown = threading.Event()
        self._shown_at = 0
        self._set_buttons(False)

    # -- life cycle ---------------------------------------------------------------------------
    def begin(self, run, screen, *, points: int = 5) -> None:
        """The session entered its CALIBRATION phase: start the first pass."""
        self.screen = screen
        self.accepted = False
        self.failed = None
        self.passes = 0
        self.procedure = CalibrationProcedure(run, show_point=self._show_from_worker, points=points,
                                              on_done=lambda _p: self._bridge.sigDone.emit(),
                                              on_failed=self._bridge.sigFailed.emit)
        self.point_box.clear()
        for x, y in self.procedure.ctrl.validation_points:
            self.point_box.addItem(f"({x:.1f}, {y:.1f})", (x, y))
        self._pass()

    def _pass(self, point=None) -> None:
        self._set_buttons(False)
        self.status.setText("calibrating: the participant follows the targets" if point is None
                            else f"redoing the point near {point}")
        self.status.setStyleSheet("")
        if point is None:
            self.procedure.start()
        else:
            self.procedure.redo_point(point)

    def redo_point(self) -> None:
        point = self.point_box.currentData()
        if point is not None:
            self._pass(tuple(point))

    def accept(self) -> None:
        """Accept the result (a failed pass too, when the operator goes on without calibration:
        session.json then records the failure)."""
        if self.procedure is None or self.accepted:
            return
        if self.failed is not None:
            self.procedure.note = (self.procedure.note + "; " if self.procedure.note else "") + \
                f"accepted after a failed pass: {self.failed}"
        self.procedure.accept()
        self.accepted = True
        self._set_buttons(False)
        self.status.setText("accepted: " + self.procedure.summary())
        self.sigAccepted.emit()

    # -- worker <-> GUI -------------------------------------------------------------------------
    def _show_from_worker(self, x: float, y: float) -> int:
        """Worker thread: ask the GUI to draw the target, wait until it is up."""
        self._shown.clear()
        self._bridge.sigShow.emit(float(x), float(y))
        if not self._shown.wait(5.0):
            raise RuntimeError("the participant screen did not show the target within 5 s")
        return self._shown_at

    def _show_on_screen(self, x: float, y: float) -> None:
        self.screen.show_target(x, y)
        self._shown_at = int(self.procedure.run.clock.now_us())
        self._shown.set()

    def _done(self) -> None:
        self.passes += 1
        proc = self.procedure
        self.screen.show_message("Well done. Please wait a moment.", "calibration")
        v = proc.ctrl.validation_result
        lines = ["calibration: " + ("done" if proc.calibrated else (proc.note or "not done"))]
        if v is not None:
            lines.append(f"validation {'PASSED' if v.passed else 'FAILED'}")
            for eye in ("left", "right"):
                m = v.eye(eye)
                lines.append(f"{eye} eye: no valid gaze" if m.n_valid == 0 else
                             f"{eye} eye: accuracy {m.accuracy_deg:.2f} deg, precision RMS {m.precision_rms_deg:.2f} "
                             f"deg, SD {m.precision_sd_deg:.2f} deg, {m.valid_fraction:.0%} valid")
        self.status.setText("\n".join(lines))
        self.status.setStyleSheet(f"color: {OK_COLOR if v is not None and v.passed else BAD_COLOR}; "
                                  "font-weight: bold")
        self._draw()
        self._set_buttons(True)

    def _failed(self, text: str) -> None:
        self.failed = text
        self.screen.show_message("Please wait a moment.", "calibration")
        self.status.setText(f"calibration failed: {text} - redo it, or abort the session")
        self.status.setStyleSheet(f"color: {BAD_COLOR}; font-weight: bold")
        self._set_buttons(True)
        self.accept_btn.setEnabled(False)

    def _draw(self) -> None:
        samples = self.procedure.ctrl.validation_samples
        pts = list(samples)
        self.targets.setData([p[0] for p in pts], [p[1] for p in pts])
        for eye, item in (("left", self.left_dots), ("right", self.right_dots)):
            xs, ys = [], []
            for rec in samples.values():
                ok = rec[f"{eye}_gaze_point_validity"] > 0
                xs.append(rec[f"{eye}_gaze_point_on_display_area_x"][ok])
                ys.append(rec[f"{eye}_gaze_point_on_display_area_y"][ok])
            item.setData(np.concatenate(xs) if xs else [], np.concatenate(ys) if ys else [])

    def _set_buttons(self, idle: bool) -> None:
        for b in (self.accept_btn, self.redo_all_btn, self.redo_point_btn, self.point_box):
            b.setEnabled(idle)
