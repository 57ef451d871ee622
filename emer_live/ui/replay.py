"""The replay window: review a recorded session afterwards (``python main.py --replay DIR``).

One :class:`Timeline` drives every view through its ``time_changed`` signal: the stimulus clip
with the gaze point and a fixation heatmap, the face video with the face box, pupil and gaze
plots, the recorded ER / FER / gap curves, trial and event markers, and the trial list. The data
side (lookups at t, comparison, re-analysis) is :mod:`emer_live.app.replay`; this module only
draws. docs/desktop-app.md, section "Replay and review", describes the window.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from ..app.replay import Comparison, ReplaySession, TrialRow, compare_predictions, damage_lines
from ..errors import EmerError
from ..labels import ER7_CLASSES
from .colors import (BAD_COLOR, EMOTION_COLORS, GAP_COLOR, GAZE_X_COLOR, GAZE_Y_COLOR, LEFT_EYE_COLOR,
                     RIGHT_EYE_COLOR, WARN_COLOR)
from .panels import LegendRow, colored, emotion_entries, legend_entry, set_title
from .settings import app_settings, keep_private, recent_entry, resolve_recent_entry

__all__ = ["ReplayWindow", "Timeline", "StimulusDecoder", "SPEEDS", "export_trial_clip"]

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SETTINGS_NAME = "replay"
MAX_RECENT = 10
RECENT_KEY = "recent_sessions"      # entries without pseudonyms (emer_live.ui.settings)
FACE_DETECT_EVERY_S = 0.1        # face box while playing: at most 10 detections a second
HEATMAP_EVERY_S = 0.2            # heatmap redraw while playing
CURSOR_EVERY_S = 0.1             # plot cursors while playing
FACE_EVERY_S = 0.06              # face video while playing: ~15 Hz (the console's camera rate)
HEATMAP_BINS = 48

pg.setConfigOptions(antialias=False, background="w", foreground="#333333")


# ---------------------------------------------------------------------- timeline
class Timeline(QtCore.QObject):
    """The one clock of the replay window (session microseconds)."""

    time_changed = QtCore.pyqtSignal(object)      # int t_us: session clocks exceed a C++ int
    playing_changed = QtCore.pyqtSignal(bool)
    speed_changed = QtCore.pyqtSignal(float)

    def __init__(self, t0_us: int, t1_us: int, *, step_us: int = 40_000, tick_ms: int = 30, parent=None) -> None:
        super().__init__(parent)
        self.t0_us, self.t1_us = int(t0_us), int(t1_us)
        self.step_us = int(step_us)
        self.t_us = self.t0_us
        self.speed = 1.0
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def seek(self, t_us: int) -> None:
        self.t_us = int(min(max(int(t_us), self.t0_us), self.t1_us))
        self.time_changed.emit(self.t_us)

    def play(self) -> None:
        if self.playing:
            return
        if self.t_us >= self.t1_us:
            self.t_us = self.t0_us
        self._last = time.perf_counter()
        self._timer.start()
        self.playing_changed.emit(True)

    def pause(self) -> None:
        if self.playing:
            self._timer.stop()
            self.playing_changed.emit(False)

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def step(self, n: int = 1) -> None:
        self.pause()
        self.seek(self.t_us + n * self.step_us)

    def set_speed(self, speed: float) -> None:
        self.speed = float(min(max(speed, SPEEDS[0]), SPEEDS[-1]))
        self.speed_changed.emit(self.speed)

    def faster(self) -> None:
        self.set_speed(next((s for s in SPEEDS if s > self.speed), SPEEDS[-1]))

    def slower(self) -> None:
        self.set_speed(next((s for s in reversed(SPEEDS) if s < self.speed), SPEEDS[0]))

    def _tick(self) -> None:
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        t = self.t_us + int(dt * self.speed * 1e6)
        if t >= self.t1_us:
            self.seek(self.t1_us)
            self.pause()
        else:
            self.seek(t)


# ---------------------------------------------------------------------- stimulus clips
class StimulusDecoder:
    """Frame-exact access to a clip with PyAV: decode forward from the nearest key frame before
    the wanted frame (QMediaPlayer's seeking lands on key frames only). Frames are scaled to at
    most ``max_width`` pixels wide and returned as RGB."""

    def __init__(self, path, *, max_width: int = 640) -> None:
        import av

        self.path = str(path)
        self.container = av.open(self.path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else 25.0
        self.max_width = max_width
        self._next_index: Optional[int] = None
        self._iter = None
        self._last: Optional[tuple] = None

    def _index_of(self, frame) -> int:
        if frame.pts is None:
            return -1
        return int(round(float(frame.pts * self.stream.time_base) * self.fps))

    def _convert(self, frame) -> np.ndarray:
        w = frame.width
        if w > self.max_width:
            h = int(round(frame.height * self.max_width / w)) // 2 * 2
            frame = frame.reformat(width=self.max_width, height=h)
        return frame.to_ndarray(format="rgb24")

    def frame(self, index: int) -> Optional[np.ndarray]:
        index = max(0, int(index))
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        # forward within ~2 s: keep decoding; else seek to the key frame before it
        if self._iter is None or self._next_index is None or not (self._next_index <= index <= self._next_index + 2 * self.fps):
            sec = index / self.fps
            self.container.seek(int(sec / float(self.stream.time_base)), stream=self.stream, backward=True,
                                any_frame=False)
            self._iter = self.container.decode(self.stream)
            self._next_index = -1
        best = None
        for fr in self._iter:
            i = self._index_of(fr)
            self._next_index = i + 1
            if i >= index:
                best = (i, fr)
                break
            best = (i, fr)
        if best is None:         # past the end: hold the last frame
            self._iter = None
            return None if self._last is None else self._last[1]
        img = self._convert(best[1])
        self._last = (index, img)
        return img

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass


def _face_pipeline():
    """The default face pipeline, or the Haar one when the landmark models were not fetched."""
    from ..features.face import FaceConfig, FacePipeline, default_pipeline

    try:
        return default_pipeline()
    except EmerError:
        return FacePipeline(FaceConfig(detector="haar"))


def _heat_lut() -> np.ndarray:
    lut = np.zeros((256, 4), np.ubyte)
    a = np.linspace(0, 1, 256)
    lut[:, 0] = 255
    lut[:, 1] = (200 * (1 - a)).astype(np.ubyte)
    lut[:, 3] = (np.clip(a * 1.6, 0, 1) * 170).astype(np.ubyte)
    lut[0, 3] = 0
    return lut


def heatmap(points: np.ndarray, rect, bins: int = HEATMAP_BINS) -> np.ndarray:
    """Fixation density of gaze ``points`` (display 0..1) inside ``rect`` (x0, y0, x1, y1) as a
    (bins_y, bins_x) float image in 0..1 (row 0 = top), smoothed."""
    import cv2

    x0, y0, x1, y1 = rect
    h = np.zeros((bins, bins), np.float32)
    if len(points):
        u = (points[:, 0] - x0) / (x1 - x0)
        v = (points[:, 1] - y0) / (y1 - y0)
        ok = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
        h, _, _ = np.histogram2d(v[ok], u[ok], bins=bins, range=[[0, 1], [0, 1]])
        h = cv2.GaussianBlur(h.astype(np.float32), (0, 0), bins / 24)
    m = float(h.max())
    return h / m if m > 0 else h


# ---------------------------------------------------------------------- views
class _ImageView(pg.GraphicsLayoutWidget):
    def __init__(self, title: str) -> None:
        super().__init__()
        self.setMinimumSize(240, 160)
        self.label = self.addLabel(title, row=0, col=0)
        self.vb = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image)
        self.img_size = (0, 0)

    def set_image(self, rgb: Optional[np.ndarray], blank=(320, 180)) -> None:
        if rgb is None:
            rgb = np.full((blank[1], blank[0], 3), 235, np.uint8)
        h, w = rgb.shape[:2]
        self.image.setImage(rgb, autoLevels=False, levels=(0, 255))
        if (w, h) != self.img_size:
            self.img_size = (w, h)
            self.vb.setRange(xRange=(0, w), yRange=(0, h), padding=0)


class StimulusView(_ImageView):
    """The clip on screen at t, the gaze point shown at t, and the fixation heatmap of the trial so far."""

    def __init__(self) -> None:
        super().__init__("stimulus + gaze")
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setLookupTable(_heat_lut())
        self.heat.setZValue(5)
        self.vb.addItem(self.heat)
        self.point = pg.ScatterPlotItem(size=18, pen=pg.mkPen("#000000", width=2), brush=pg.mkBrush(0, 200, 255, 170))
        self.point.setZValue(10)
        self.vb.addItem(self.point)

    def set_gaze(self, xy_px) -> None:
        if xy_px is None:
            self.point.setData([], [])
        else:
            self.point.setData([xy_px[0]], [xy_px[1]])

    def set_heat(self, h: Optional[np.ndarray]) -> None:
        if h is None or not h.any():
            self.heat.clear()
            return
        w, hh = self.img_size
        self.heat.setImage((h * 255).astype(np.uint8), autoLevels=False, levels=(0, 255))
        self.heat.setRect(QtCore.QRectF(0, 0, w, hh))


class FaceView(_ImageView):
    def __init__(self) -> None:
        super().__init__("face")
        self.box = QtWidgets.QGraphicsRectItem()
        self.box.setPen(pg.mkPen("#00E676", width=3))
        self.box.setZValue(10)
        self.box.setVisible(False)
        self.vb.addItem(self.box)

    def set_box(self, box) -> None:
        if box is None:
            self.box.setVisible(False)
        else:
            x, y, w, h = box
            self.box.setRect(QtCore.QRectF(float(x), float(y), float(w), float(h)))
            self.box.setVisible(True)


# ---------------------------------------------------------------------- face box worker
class FaceBoxWorker(QtCore.QThread):
    """Finds the face box off the GUI thread; only the newest requested frame is processed."""

    found = QtCore.pyqtSignal(object, object, str)      # frame key, box (x, y, w, h) or None, error

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._cond = QtCore.QWaitCondition()
        self._mutex = QtCore.QMutex()
        self._job = None
        self._stop = False

    def request(self, key, bgr, t_us: int, *, reset: bool) -> None:
        self._mutex.lock()
        self._job = (key, bgr, int(t_us), reset)
        self._cond.wakeOne()
        self._mutex.unlock()

    def stop(self) -> None:
        self._mutex.lock()
        self._stop = True
        self._cond.wakeOne()
        self._mutex.unlock()
        self.wait(5000)

    def run(self) -> None:
        pipe = None
        while True:
            self._mutex.lock()
            while self._job is None and not self._stop:
                self._cond.wait(self._mutex)
            job, self._job = self._job, None
            stop = self._stop
            self._mutex.unlock()
            if stop:
                return
            key, bgr, t_us, reset = job
            try:
                if pipe is None:
                    pipe = _face_pipeline()
                if reset:
                    pipe.reset()
                res = pipe.process(bgr, t_us)
                self.found.emit(key, tuple(int(v) for v in res.box) if res.found and res.box is not None else None, "")
            except Exception as exc:
                self.found.emit(key, None, f"{type(exc).__name__}: {exc}")
                return


# ---------------------------------------------------------------------- re-analysis worker
class ReanalysisWorker(QtCore.QThread):
    """Runs :class:`emer_live.app.replay.Reanalysis` off the GUI thread; cancel with :meth:`cancel`."""

    progress = QtCore.pyqtSignal(float)
    done = QtCore.pyqtSignal(object, str, str)     # predictions, status, error text

    def __init__(self, session: ReplaySession, checkpoint: str, parent=None) -> None:
        super().__init__(parent)
        self.session, self.checkpoint = session, checkpoint
        self._cancel = False

    def cancel(self) -> None:
        self._cancel = True

    def run(self) -> None:
        from ..app.replay import Reanalysis

        try:
            import torch

            torch.set_num_threads(max(1, min(4, (os.cpu_count() or 2) // 2)))   # leave the GUI a core
        except ImportError:
            pass
        job = None
        try:
            job = Reanalysis(self.session, self.checkpoint)
            last = 0.0
            cancelled = False
            while job.step():
                if self._cancel and not cancelled:
                    cancelled = True
                    job.cancel()
                p = job.progress
                if p - last >= 0.01:
                    last = p
                    self.progress.emit(p)
            err = "" if job.error is None else f"{type(job.error).__name__}: {job.error}"
            status = "cancelled" if cancelled else (job.status or "error")
            self.done.emit(list(job.predictions), status, err)
        except Exception as exc:          # shown in the window, never lost
            self.done.emit(list(job.predictions) if job else [], "error", f"{type(exc).__name__}: {exc}")
        finally:
            if job is not None:
                try:
                    job.close()
                except Exception:
                    pass


# ---------------------------------------------------------------------- the window
def _presented_cell(tr: TrialRow):
    """The trial list's "presented" cell - frames shown of the clip's, dropped, late, worst
    interval - and whether it is a problem (recording/presentation.py)."""
    if tr.frames_shown is None:
        return "", False
    text = f"{tr.frames_shown}/{tr.frames_expected if tr.frames_expected is not None else '?'}"
    bad = bool(tr.frames_dropped) or bool(tr.frames_late) or not tr.frames_shown
    if tr.frames_dropped:
        text += f", {tr.frames_dropped} dropped"
    if tr.frames_late:
        text += f", {tr.frames_late} late"
    return text, bad


class ReplayWindow(QtWidgets.QMainWindow):
    """Open a session folder and review it on one timeline."""

    def __init__(self, path=None, *, settings: Optional[QtCore.QSettings] = None, face_boxes: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("emer_live - replay")
        self.resize(1500, 950)
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else app_settings(SETTINGS_NAME)
        self._migrate_recent()
        self.session: Optional[ReplaySession] = None
        self.timeline: Optional[Timeline] = None
        self.last_error: Optional[str] = None
        self.face_boxes = face_boxes
        self._face_worker: Optional["FaceBoxWorker"] = None
        self._face_reduce = 1
        self.face_box_key = None        # the face frame the box shown was found in
        self._face_last_detect = 0.0
        self._cursor_last = 0.0
        self._face_last_show = 0.0
        self._heat_last = 0.0
        self._decoders: Dict[str, StimulusDecoder] = {}
        self.worker: Optional[ReanalysisWorker] = None
        self.reanalysed: List[object] = []
        self.reanalysed_trials: List[object] = []
        self.comparison: Optional[Comparison] = None
        # what each view shows now (tests and the status bar read these)
        self.shown_gaze = None          # (gaze.tsv row, x, y) or None
        self.shown_face = None          # (segment relpath, frame, t_us) or None
        self.shown_stimulus = None      # (trial, clip frame index) or None
        self.shown_face_box = None
        self.curves: Dict[str, pg.PlotDataItem] = {}
        self.new_curves: Dict[str, pg.PlotDataItem] = {}
        self._build()
        if path is not None:
            self.open_session(path)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        central = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(central)
        lay.setContentsMargins(4, 4, 4, 4)
        self.banner = QtWidgets.QLabel()
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.banner.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.banner)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        left = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.stim_view = StimulusView()
        self.face_view = FaceView()
        left.addWidget(self.stim_view)
        left.addWidget(self.face_view)
        split.addWidget(left)
        self.plots = pg.GraphicsLayoutWidget()
        split.addWidget(self.plots)
        split.setSizes([560, 940])
        lay.addWidget(split, 1)
        lay.addWidget(self._transport())
        self.setCentralWidget(central)
        self._build_plots()
        self._build_trials_dock()
        self._build_reanalysis_dock()
        self._build_menus()
        self.statusBar().showMessage("File > Open a session folder, or drop one here")

    def _transport(self) -> QtWidgets.QWidget:
        w = QtWidgets.QWidget()
        h = QtWidgets.QHBoxLayout(w)
        h.setContentsMargins(0, 0, 0, 0)
        st = self.style()
        self.btn_back = QtWidgets.QToolButton(icon=st.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaSeekBackward))
        self.btn_play = QtWidgets.QToolButton(icon=st.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaPlay))
        self.btn_fwd = QtWidgets.QToolButton(icon=st.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaSeekForward))
        for b, tip in ((self.btn_back, "step back (Left)"), (self.btn_play, "play / pause (Space)"),
                       (self.btn_fwd, "step forward (Right)")):
            b.setToolTip(tip)
            b.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
            h.addWidget(b)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.slider.setRange(0, 1000)
        h.addWidget(self.slider, 1)
        self.time_label = QtWidgets.QLabel("--")
        self.time_label.setMinimumWidth(150)
        h.addWidget(self.time_label)
        self.speed_box = QtWidgets.QComboBox()
        self.speed_box.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}x", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.setToolTip("speed (+ / -)")
        h.addWidget(self.speed_box)
        self.btn_back.clicked.connect(lambda: self.timeline and self.timeline.step(-1))
        self.btn_fwd.clicked.connect(lambda: self.timeline and self.timeline.step(1))
        self.btn_play.clicked.connect(lambda: self.timeline and self.timeline.toggle())
        # seek on release, not while dragging (a click on the groove seeks at once)
        self.slider.sliderReleased.connect(lambda: self._seek_slider(self.slider.value()))
        self.slider.valueChanged.connect(lambda v: None if self.slider.isSliderDown() else self._seek_slider(v))
        self.speed_box.currentIndexChanged.connect(
            lambda i: self.timeline and self.timeline.set_speed(float(self.speed_box.itemData(i))))
        w.setEnabled(False)
        self.transport = w
        return w

    def _build_plots(self) -> None:
        P = self.plots
        # one legend row above the plots: every colour and mark they use, never under a curve
        self.legend = LegendRow(emotion_entries() + [
            legend_entry("&#9733;", "#777777", "whole-trial ER (its top class's colour)"),
            legend_entry("&#9608;", "#CCCCCC", "clip (its category's colour)"),
            legend_entry("&#9474;", BAD_COLOR, "now"),
            legend_entry("&#9478;", "#777777", "event")])
        P.addItem(self.legend, row=0, col=0)
        self.p_emo = P.addPlot(row=1, col=0)
        self.p_gap = P.addPlot(row=2, col=0)
        self.p_new = P.addPlot(row=3, col=0)
        self.p_pupil = P.addPlot(row=4, col=0)
        self.p_gaze = P.addPlot(row=5, col=0)
        set_title(self.p_emo, "recorded ER (solid) / FER (dashed)")
        set_title(self.p_gap, "emotion gap: JS divergence of ER and FER",
                  "the Jensen-Shannon divergence of the ER and FER distributions in bits (log2): 0 = the same, "
                  "1 = no overlap; dotted lines = events (hover for what)")
        set_title(self.p_new, "re-analysed ER (solid) / FER (dashed); x = max |difference| per window")
        set_title(self.p_pupil, f"pupil diameter (mm): {colored('left', LEFT_EYE_COLOR, True)}, "
                  f"{colored('right', RIGHT_EYE_COLOR, True)}")
        set_title(self.p_gaze, f"gaze on display (0..1): {colored('x', GAZE_X_COLOR, True)}, "
                  f"{colored('y', GAZE_Y_COLOR, True)}")
        self.p_gap.setLabel("left", "JSD, bits 0-1")
        self.all_plots = [self.p_emo, self.p_gap, self.p_new, self.p_pupil, self.p_gaze]
        for p in self.all_plots:
            p.showGrid(x=True, y=True, alpha=0.2)
            if p is not self.p_emo:
                p.setXLink(self.p_emo)
            p.setMouseEnabled(y=False)
            p.getAxis("left").setWidth(48)      # one width: the x axes line up whatever the tick text
        self.p_emo.setYRange(0, 1)
        self.p_emo.showAxis("top")
        self.p_emo.getAxis("top").setStyle(tickLength=0)
        self.p_new.setYRange(0, 1)
        self.p_gap.setYRange(0, 1, padding=0.02)
        self.p_gaze.setLabel("bottom", "time since the recording started (s)")
        for p in self.all_plots:
            for name in ("left", "bottom"):
                # a moving cursor repaints the plots; cached axes skip re-drawing their tick text
                p.getAxis(name).setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.p_new.hide()
        self.cursors = []
        for p in self.all_plots:
            c = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(BAD_COLOR, width=2))
            c.setZValue(50)
            p.addItem(c, ignoreBounds=True)
            self.cursors.append(c)
        self.plots.scene().sigMouseClicked.connect(self._plot_clicked)
        self._marker_items: List[object] = []

    def _build_trials_dock(self) -> None:
        self.trial_table = QtWidgets.QTableWidget(0, 10)
        self.trial_table.setHorizontalHeaderLabels(["trial", "stimulus", "category", "status", "SAM emotion",
                                                    "SAM V/A/D", "model ER", "model FER", "agree", "presented"])
        self.trial_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.trial_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.trial_table.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.trial_table.verticalHeader().setVisible(False)
        self.trial_table.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.trial_table.cellClicked.connect(lambda r, c: self.jump_to_trial(r))
        d = QtWidgets.QDockWidget("Trials (click: jump to the clip)", self)
        d.setObjectName("dock_trials")
        d.setWidget(self.trial_table)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, d)
        self.trials_dock = d

    def _build_reanalysis_dock(self) -> None:
        w = QtWidgets.QWidget()
        v = QtWidgets.QVBoxLayout(w)
        row = QtWidgets.QHBoxLayout()
        self.ckpt_edit = QtWidgets.QLineEdit()
        self.ckpt_edit.setPlaceholderText("checkpoint (.pt)")
        b = QtWidgets.QPushButton("Browse...")
        b.clicked.connect(self._browse_checkpoint)
        row.addWidget(self.ckpt_edit, 1)
        row.addWidget(b)
        v.addLayout(row)
        row = QtWidgets.QHBoxLayout()
        self.btn_reanalyse = QtWidgets.QPushButton("Re-analyse")
        self.btn_cancel = QtWidgets.QPushButton("Cancel")
        self.btn_cancel.setEnabled(False)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        row.addWidget(self.btn_reanalyse)
        row.addWidget(self.btn_cancel)
        row.addWidget(self.progress, 1)
        v.addLayout(row)
        self.reanalysis_text = QtWidgets.QPlainTextEdit()
        self.reanalysis_text.setReadOnly(True)
        v.addWidget(self.reanalysis_text, 1)
        self.btn_reanalyse.clicked.connect(lambda: self.start_reanalysis())
        self.btn_cancel.clicked.connect(self.cancel_reanalysis)
        d = QtWidgets.QDockWidget("Re-analyse with a checkpoint", self)
        d.setObjectName("dock_reanalyse")
        d.setWidget(w)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, d)
        self.reanalysis_dock = d
        w.setEnabled(False)
        self.reanalysis_widget = w

    def _build_menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        a = m.addAction("&Open session folder...")
        a.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        a.triggered.connect(self._open_dialog)
        self.recent_menu = m.addMenu("Open &recent")
        self._fill_recent()
        m.addSeparator()
        self.export_actions = []
        for text, fn in (("Export figure as &PNG...", lambda: self._export_figure_dialog("png")),
                         ("Export figure as &SVG...", lambda: self._export_figure_dialog("svg")),
                         ("Export trial clip with gaze as &MP4...", self._export_clip_dialog),
                         ("Export trial &table as TSV...", self._export_table_dialog)):
            a = m.addAction(text)
            a.triggered.connect(fn)
            a.setEnabled(False)
            self.export_actions.append(a)
        m.addSeparator()
        m.addAction("&Close", self.close)
        pm = self.menuBar().addMenu("&Play")
        for text, keys, fn in (("Play / pause", ["Space"], lambda: self.timeline and self.timeline.toggle()),
                               ("Step back", ["Left"], lambda: self.timeline and self.timeline.step(-1)),
                               ("Step forward", ["Right"], lambda: self.timeline and self.timeline.step(1)),
                               ("Faster", ["+", "="], lambda: self.timeline and self.timeline.faster()),
                               ("Slower", ["-"], lambda: self.timeline and self.timeline.slower())):
            a = QtGui.QAction(text, self)
            a.setShortcuts([QtGui.QKeySequence(k) for k in keys])
            a.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            a.triggered.connect(fn)
            pm.addAction(a)
            self.addAction(a)
        vm = self.menuBar().addMenu("&View")
        vm.addAction(self.trials_dock.toggleViewAction())
        vm.addAction(self.reanalysis_dock.toggleViewAction())

    # ------------------------------------------------------------------ opening
    def _open_dialog(self) -> None:
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Open a session folder", self._recent()[0]
                                                       if self._recent() else "")
        if d:
            self.open_session(d)

    # The recent list is stored without pseudonyms (emer_live.ui.settings): entries are resolved
    # to folders when read, and an entry whose session is gone (forgotten) drops out.
    def _recent_entries(self) -> List[str]:
        v = self.settings.value(RECENT_KEY, "")
        try:
            entries = json.loads(v) if isinstance(v, str) and v else []
        except ValueError:
            entries = []
        return [e for e in entries if isinstance(e, str)]

    def _recent(self) -> List[str]:
        out = []
        for e in self._recent_entries():
            p = resolve_recent_entry(e)
            if p is not None and p not in out:
                out.append(p)
        return out

    def _store_recent(self, paths: List[str]) -> None:
        self.settings.setValue(RECENT_KEY, json.dumps([recent_entry(p) for p in paths[:MAX_RECENT]]))
        keep_private(self.settings)

    def _migrate_recent(self) -> None:
        """Plain paths kept by older versions (they named participants): rewritten without them."""
        old = self.settings.value("recent", None)
        if old is None:
            if any('"session_id"' in e for e in self._recent_entries()):   # kept the id in plain
                self._store_recent(self._recent())
            return
        old = [old] if isinstance(old, str) else [str(x) for x in (old or [])]
        self.settings.remove("recent")
        self._store_recent([p for p in old if Path(p, "session.json").is_file()] + self._recent())

    def _remember(self, path: str) -> None:
        rec = [path] + [p for p in self._recent() if Path(p).resolve() != Path(path).resolve()]
        self._store_recent(rec)
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        rec = self._recent()
        for p in rec:
            self.recent_menu.addAction(p, lambda p=p: self.open_session(p))
        self.recent_menu.setEnabled(bool(rec))

    def dragEnterEvent(self, ev) -> None:
        md = ev.mimeData()
        if md.hasUrls() and any(u.isLocalFile() and Path(u.toLocalFile()).is_dir() for u in md.urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        for u in ev.mimeData().urls():
            if u.isLocalFile() and Path(u.toLocalFile()).is_dir():
                self.open_session(u.toLocalFile())
                ev.acceptProposedAction()
                return

    def open_session(self, path) -> bool:
        """Open a session folder; False (and a message) when it is not one."""
        try:
            s = ReplaySession(path)
        except EmerError as exc:
            self.last_error = str(exc)
            self.statusBar().showMessage(f"cannot open: {exc}")
            if self.isVisible():
                QtWidgets.QMessageBox.warning(self, "Not a session folder", str(exc))
            return False
        self._close_session()
        self.session = s
        self._remember(str(Path(path).resolve()))
        self.setWindowTitle(f"emer_live - replay - {s.path.name} ({s.meta.get('participant', '?')})")
        self._show_banner()
        cam = (s.meta.get("streams") or {}).get("camera") or {}
        # HD frames are decoded at half size for the view (JPEG's own downscaling: ~4x faster)
        self._face_reduce = 2 if int(cam.get("width") or 0) > 800 else 1
        self.timeline = Timeline(s.t0_us, s.t1_us, parent=self)
        self.timeline.time_changed.connect(self._on_time)
        self.timeline.playing_changed.connect(self._on_playing)
        self.timeline.speed_changed.connect(self._on_speed)
        self._fill_plots()
        self._fill_trials()
        for tr in s.trials:          # open the clips now: importing PyAV and opening take ~0.5 s
            self._decoder(tr)
        live = s.live_settings
        if live.get("checkpoint_path") and not self.ckpt_edit.text():
            self.ckpt_edit.setText(str(live["checkpoint_path"]))
        self.transport.setEnabled(True)
        # re-analysis replays the folder through the devices, which refuse a damaged one
        self.reanalysis_widget.setEnabled(True)
        self.btn_reanalyse.setEnabled(not s.damaged and s.reader.has_gaze())
        for a in self.export_actions:
            a.setEnabled(True)
        self.p_emo.setXRange(0, s.duration_s, padding=0.01)
        self.timeline.seek(s.t0_us)
        self.statusBar().showMessage(f"{s.path}  status {s.status}  {s.duration_s:.1f} s  "
                                     f"{len(s.trials)} trials")
        return True

    def _close_session(self) -> None:
        self.cancel_reanalysis(wait=True)
        if self.timeline is not None:
            self.timeline.pause()
            self.timeline.deleteLater()
            self.timeline = None
        for d in self._decoders.values():
            d.close()
        self._decoders.clear()
        if self._face_worker is not None:
            self._face_worker.stop()
            self._face_worker = None
        self.shown_face = self.shown_face_box = self.face_box_key = None
        self.reanalysed, self.reanalysed_trials, self.comparison = [], [], None
        self.p_new.hide()
        self.reanalysis_text.clear()

    def _show_banner(self) -> None:
        import html

        s = self.session
        lines = damage_lines(s.problems, s.load_notes + s.load_errors)
        if s.damaged:
            head = "<b>Damaged folder - showing what can be read; re-analysis is off.</b> Each line says its fix."
            tail = ""
            self.banner.setStyleSheet(f"background:{BAD_COLOR}; color:white; padding:6px;")
        elif s.status not in ("complete",) or lines:
            head = (f"<b>This session ended early (status {html.escape(s.status)}).</b> Showing what it holds."
                    if s.status != "complete" else "<b>Not every stream covers the whole session.</b>")
            tail = ""
            self.banner.setStyleSheet(f"background:{WARN_COLOR}; color:black; padding:6px;")
        else:
            self.banner.setVisible(False)
            return
        body = "".join(f"<br>&bull; {html.escape(t)}" for t in lines)
        self.banner.setText(head + body + (f"<br>{tail}" if tail else ""))
        self.banner.setVisible(True)

    # ------------------------------------------------------------------ plots
    def _x(self, t_us) -> np.ndarray:
        return (np.asarray(t_us, dtype=np.float64) - self.session.t0_us) / 1e6

    def _fill_plots(self) -> None:
        s = self.session
        for p in (self.p_emo, self.p_gap, self.p_pupil, self.p_gaze):
            for it in list(p.listDataItems()):
                p.removeItem(it)
        for it in self._marker_items:
            it.getViewBox() and it.getViewBox().removeItem(it)
        self._marker_items = []
        self.curves = {}
        w = s.windows
        if w is not None and len(w):
            x = self._x(w["t_end_us"].to_numpy())
            for c in ER7_CLASSES:
                col = EMOTION_COLORS[c]
                self.curves[f"er7_{c}"] = self.p_emo.plot(x, w[f"er7_{c}"].to_numpy(float), pen=pg.mkPen(col, width=2),
                                                          name=f"ER {c}")
                self.curves[f"fer7_{c}"] = self.p_emo.plot(
                    x, w[f"fer7_{c}"].to_numpy(float),
                    pen=pg.mkPen(col, width=2, style=QtCore.Qt.PenStyle.DashLine), name=f"FER {c}")
            self.curves["gap_jsd"] = self.p_gap.plot(x, w["gap_jsd"].to_numpy(float), pen=pg.mkPen(GAP_COLOR, width=2))
        tp = s.trial_predictions
        if tp is not None and len(tp):
            # whole-trial predictions: one symbol per trial at the clip's end, in the top class's colour
            x = self._x(tp["t_end_us"].to_numpy())
            top = [str(v) for v in tp["er_top"]]
            ytop = [float(tp[f"er7_{c}"].iloc[i]) for i, c in enumerate(top)]
            self.curves["trial_er_top"] = self.p_emo.plot(
                x, ytop, pen=None, symbol="star", symbolSize=16,
                symbolBrush=[pg.mkBrush(EMOTION_COLORS.get(c, "#000")) for c in top], symbolPen="k")
        if len(s.gaze_t):
            x = self._x(s.gaze_t)
            self.curves["pupil_left"] = self.p_pupil.plot(x, s.pupil_left, pen=pg.mkPen(LEFT_EYE_COLOR),
                                                          connect="finite")
            self.curves["pupil_right"] = self.p_pupil.plot(x, s.pupil_right, pen=pg.mkPen(RIGHT_EYE_COLOR),
                                                           connect="finite")
            self.curves["gaze_x"] = self.p_gaze.plot(x, s.gaze_x, pen=pg.mkPen(GAZE_X_COLOR), connect="finite")
            self.curves["gaze_y"] = self.p_gaze.plot(x, s.gaze_y, pen=pg.mkPen(GAZE_Y_COLOR), connect="finite")
            for c in ("pupil_left", "pupil_right", "gaze_x", "gaze_y"):
                self.curves[c].setDownsampling(auto=True, method="peak")
                self.curves[c].setClipToView(True)
        # trial spans on every plot; events on the top plot
        clip_ticks = []
        for tr in s.trials:
            if tr.onset_us is None:
                continue
            end = tr.offset_us if tr.offset_us is not None else s.t1_us
            col = QtGui.QColor(EMOTION_COLORS.get(tr.category or "", "#999999"))
            col.setAlpha(45)
            for p in self.all_plots:
                r = pg.LinearRegionItem(values=(float(self._x(tr.onset_us)), float(self._x(end))), movable=False,
                                        brush=pg.mkBrush(col), pen=pg.mkPen(None))
                r.setZValue(-10)
                p.addItem(r, ignoreBounds=True)
                self._marker_items.append(r)
            clip_ticks.append((float(self._x(tr.onset_us + (end - tr.onset_us) / 2)), f"{tr.trial} {tr.stimulus_id}"))
        # the clips named on the top plot's upper axis: over no curve, and the axis leaves out a name
        # that would overlap its neighbour
        self.p_emo.getAxis("top").setTicks([clip_ticks, []])
        for e in s.events:
            if e["kind"] in ("stimulus_onset", "stimulus_offset", "trial_start", "trial_end"):
                continue          # drawn as the trial spans
            line = pg.InfiniteLine(pos=float(self._x(e["t_us"])), angle=90, movable=False,
                                   pen=pg.mkPen("#777777", style=QtCore.Qt.PenStyle.DotLine))
            said = (e.get("detail") or {}).get("text") if e["kind"] == "note" else None
            line.setToolTip(f"{e['kind']} at {float(self._x(e['t_us'])):.2f} s" + (f": {said}" if said else ""))
            self.p_gap.addItem(line, ignoreBounds=True)
            self._marker_items.append(line)
        self.event_markers = [e for e in s.events]

    def _plot_clicked(self, ev) -> None:
        if self.timeline is None or ev.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        for p in self.all_plots:
            if p.isVisible() and p.vb.sceneBoundingRect().contains(ev.scenePos()):
                x = p.vb.mapSceneToView(ev.scenePos()).x()
                self.timeline.seek(self.session.t0_us + int(x * 1e6))
                return

    def _fill_trials(self) -> None:
        t = self.trial_table
        rows = self.session.trials
        t.setRowCount(len(rows))
        for i, tr in enumerate(rows):
            vad = "" if tr.sam_valence is None else f"{tr.sam_valence}/{tr.sam_arousal}/{tr.sam_dominance}"
            agree = "" if tr.sam_emotion is None or tr.pred_er_top is None else \
                ("yes" if tr.sam_emotion == tr.pred_er_top else "no")
            shown, bad = _presented_cell(tr)
            cells = [str(tr.trial), tr.stimulus_id, tr.category or "", tr.status or "", tr.sam_emotion or "",
                     vad, tr.pred_er_top or "", tr.pred_fer_top or "", agree, shown]
            for j, text in enumerate(cells):
                it = QtWidgets.QTableWidgetItem(text)
                if j in (2, 4, 6, 7) and text in EMOTION_COLORS:
                    c = QtGui.QColor(EMOTION_COLORS[text])
                    c.setAlpha(90)
                    it.setBackground(c)
                if j == 9 and bad:
                    it.setForeground(QtGui.QColor(BAD_COLOR))
                    worst = "" if tr.worst_interval_ms is None else f"; worst interval {tr.worst_interval_ms:.0f} ms"
                    it.setToolTip(f"frames shown / in the clip: some were never presented or came late{worst} "
                                  "(docs/recording-format.md)")
                t.setItem(i, j, it)
        t.resizeColumnsToContents()
        self._size_bottom_docks()

    def _size_bottom_docks(self) -> None:
        """The trials dock as wide as its columns, the re-analysis dock beside it the rest, both
        tall enough for the re-analysis summary (six lines); in a narrower window the table
        scrolls sideways. Applied when a session opens and when the window first shows."""
        t = self.trial_table
        need = t.horizontalHeader().length() + 2 * t.frameWidth() + t.verticalScrollBar().sizeHint().width() + 4
        width = max(self.width(), 2 * need)
        self.resizeDocks([self.trials_dock, self.reanalysis_dock], [need, width - need],
                         QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.trials_dock], [200], QtCore.Qt.Orientation.Vertical)

    def showEvent(self, event) -> None:   # noqa: N802 (Qt name)
        super().showEvent(event)
        QtCore.QTimer.singleShot(0, self._size_bottom_docks)     # once the window has its size

    def jump_to_trial(self, row: int) -> None:
        tr = self.session.trials[row]
        t = tr.onset_us if tr.onset_us is not None else (tr.segment.t_start_us if tr.segment else None)
        if t is not None and self.timeline is not None:
            self.timeline.pause()
            self.timeline.seek(int(t))

    # ------------------------------------------------------------------ time
    def _seek_slider(self, v: int) -> None:
        if self.timeline is None:
            return
        tl = self.timeline
        tl.seek(tl.t0_us + int((tl.t1_us - tl.t0_us) * v / 1000))

    def seek(self, t_us: int) -> None:
        self.timeline.seek(t_us)

    def _on_playing(self, playing: bool) -> None:
        px = QtWidgets.QStyle.StandardPixmap
        self.btn_play.setIcon(self.style().standardIcon(px.SP_MediaPause if playing else px.SP_MediaPlay))
        if not playing and self.timeline is not None:
            self.timeline.seek(self.timeline.t_us)      # every view exact at the paused time

    def _on_speed(self, speed: float) -> None:
        self.speed_box.blockSignals(True)
        self.speed_box.setCurrentIndex(SPEEDS.index(speed) if speed in SPEEDS else 2)
        self.speed_box.blockSignals(False)

    def _on_time(self, t_us: int) -> None:
        s, tl = self.session, self.timeline
        x = float(self._x(t_us))
        now = time.perf_counter()
        if not tl.playing or now - self._cursor_last >= CURSOR_EVERY_S:
            # moving a cursor repaints every plot: ~10 Hz while playing is plenty
            self._cursor_last = now
            for c in self.cursors:
                c.setValue(x)
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(int(round(1000 * (t_us - tl.t0_us) / max(1, tl.t1_us - tl.t0_us))))
            self.slider.blockSignals(False)
        tr = s.trial_at(t_us)
        self.time_label.setText(f"{x:7.2f} / {s.duration_s:.2f} s" + (f"  trial {tr.trial}" if tr else ""))
        self._show_stimulus(t_us)
        if not tl.playing or now - self._face_last_show >= FACE_EVERY_S:
            self._face_last_show = now
            self._show_face(t_us)
        self._refresh_slow(t_us, force=not tl.playing)

    def _decoder(self, tr: TrialRow) -> Optional[StimulusDecoder]:
        if tr.clip_path is None:
            return None
        d = self._decoders.get(tr.clip_path)
        if d is None:
            try:
                d = StimulusDecoder(tr.clip_path)
            except Exception as exc:
                self.statusBar().showMessage(f"cannot decode {tr.clip_path}: {exc}")
                tr.clip_path = None
                return None
            self._decoders[tr.clip_path] = d
        return d

    def _show_stimulus(self, t_us: int) -> None:
        s = self.session
        hit = s.stimulus_frame_at(t_us)
        img = None
        if hit is not None:
            tr, idx = hit
            self.shown_stimulus = (tr.trial, idx)
            dec = self._decoder(tr)
            if dec is not None:
                img = dec.frame(idx)
            self.stim_view.label.setText(f"trial {tr.trial} {tr.stimulus_id} - clip frame {idx}"
                                         + ("" if img is not None else " (clip not found)"))
        else:
            self.shown_stimulus = None
            self.stim_view.label.setText("no clip on screen - gaze on the display")
        if img is None:
            img = None
        self.stim_view.set_image(img)
        g = s.gaze_at(t_us)
        self.shown_gaze = g
        w, h = self.stim_view.img_size
        if g is None or not (np.isfinite(g[1]) and np.isfinite(g[2])):
            self.stim_view.set_gaze(None)
        else:
            x0, y0, x1, y1 = s.stimulus_rect if hit is not None else (0.0, 0.0, 1.0, 1.0)
            self.stim_view.set_gaze(((g[1] - x0) / (x1 - x0) * w, (g[2] - y0) / (y1 - y0) * h))

    def _show_face(self, t_us: int) -> None:
        s = self.session
        hit = s.face_at(t_us)
        if hit is None:
            self.shown_face = None
            self.face_view.set_image(None)
            self.face_view.set_box(None)
            return
        seg, frame, ft = hit
        key = (seg.relpath, frame, ft)
        if key == self.shown_face:
            return
        self.shown_face = key
        bgr = s.face_image(t_us, reduce=self._face_reduce)
        crop = getattr(s, "face_is_crop", False)
        self.face_view.label.setText(f"face crop (privacy mode: no face video) - {seg.relpath} frame {frame}"
                                     if crop else f"face - {seg.relpath} frame {frame}")
        if bgr is None:
            self.face_view.set_image(None)
            return
        import cv2

        self.face_view.set_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        playing = bool(self.timeline and self.timeline.playing)
        now = time.perf_counter()
        # a kept crop is the aligned face already: no box to find in it
        if self.face_boxes and not crop and (not playing or now - self._face_last_detect >= FACE_DETECT_EVERY_S):
            self._face_last_detect = now
            if self._face_worker is None:
                self._face_worker = FaceBoxWorker(self)
                self._face_worker.found.connect(self._on_face_box)
                self._face_worker.start()
            # a seek (paused) starts the tracker afresh; playing follows the track
            self._face_worker.request(key, bgr, ft, reset=not playing)

    def _on_face_box(self, key, box, err) -> None:
        if err:
            self.face_boxes = False        # the box is an aid; its failure must not stop replay
            self.statusBar().showMessage(f"face box off: {err}")
        self.face_box_key = key
        self.shown_face_box = box
        self.face_view.set_box(box)

    def _refresh_slow(self, t_us: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._heat_last < HEATMAP_EVERY_S:
            return
        self._heat_last = now
        s = self.session
        if s.trial_at(t_us) is None:
            self.stim_view.set_heat(None)
            return
        self.stim_view.set_heat(heatmap(s.fixation_points(t_us), s.stimulus_rect))

    # ------------------------------------------------------------------ re-analysis
    def _browse_checkpoint(self) -> None:
        f, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Checkpoint", self.ckpt_edit.text(), "Checkpoints (*.pt)")
        if f:
            self.ckpt_edit.setText(f)

    def start_reanalysis(self, checkpoint: Optional[str] = None) -> bool:
        if self.session is None or self.worker is not None:
            return False
        ck = checkpoint or self.ckpt_edit.text().strip()
        if not ck or not Path(ck).is_file():
            self.reanalysis_text.setPlainText(f"no checkpoint file at {ck!r}: choose one (Browse...)")
            return False
        self.ckpt_edit.setText(ck)
        self.progress.setValue(0)
        self.reanalysis_text.setPlainText(f"re-analysing with {ck} ...")
        self.btn_reanalyse.setEnabled(False)
        self.btn_cancel.setEnabled(True)
        self.worker = ReanalysisWorker(self.session, ck, parent=self)
        self.worker.progress.connect(lambda p: self.progress.setValue(int(p * 1000)))
        self.worker.done.connect(self._reanalysis_done)
        self.worker.start()
        return True

    def cancel_reanalysis(self, wait: bool = False) -> None:
        w = self.worker
        if w is None:
            return
        w.cancel()
        if wait:
            w.wait(60_000)
            QtWidgets.QApplication.processEvents()

    def _reanalysis_done(self, preds, status: str, err: str) -> None:
        w, self.worker = self.worker, None
        if w is not None:
            w.wait(10_000)
        self.btn_cancel.setEnabled(False)
        self.btn_reanalyse.setEnabled(self.session is not None and not self.session.damaged)
        self.reanalysed = [p for p in preds if p.kind == "window"]
        self.reanalysed_trials = [p for p in preds if p.kind == "trial"]
        if status == "complete":
            self.progress.setValue(1000)
        head = f"re-analysis {status}: {len(self.reanalysed)} windows"
        if err:
            head += f"\nerror: {err}"
        if self.session is None:
            return
        self.comparison = compare_predictions(self.session.windows, self.reanalysed + self.reanalysed_trials,
                                              self.session.trial_predictions, t0_us=self.session.t0_us)
        self.reanalysis_text.setPlainText(head + "\n" + self.comparison.text())
        self._draw_new_curves()

    def _draw_new_curves(self) -> None:
        for it in list(self.p_new.listDataItems()):
            self.p_new.removeItem(it)
        self.new_curves = {}
        if not self.reanalysed:
            return
        x = self._x([p.t_end_us for p in self.reanalysed])
        er = np.array([p.er7 for p in self.reanalysed], float)
        fer = [p.fer7 for p in self.reanalysed]
        for i, c in enumerate(ER7_CLASSES):
            col = EMOTION_COLORS[c]
            self.new_curves[f"er7_{c}"] = self.p_new.plot(x, er[:, i], pen=pg.mkPen(col, width=2))
            if all(f is not None for f in fer):
                self.new_curves[f"fer7_{c}"] = self.p_new.plot(
                    x, np.array(fer, float)[:, i], pen=pg.mkPen(col, width=2, style=QtCore.Qt.PenStyle.DashLine))
        cmp = self.comparison
        if cmp is not None and cmp.matched:
            self.new_curves["max_abs_diff"] = self.p_new.plot(self._x(cmp.t_end_us), cmp.max_abs_diff,
                                                              pen=pg.mkPen(GAP_COLOR, width=1), symbol="x",
                                                              symbolSize=6)
        self.p_new.show()

    # ------------------------------------------------------------------ export
    def export_figure(self, path) -> Path:
        """The plots as PNG or SVG (by the file's suffix)."""
        from pyqtgraph import exporters

        path = Path(path)
        item = self.plots.ci
        if path.suffix.lower() == ".svg":
            self._export_svg(path)
            return path
        else:
            ex = exporters.ImageExporter(item)
            ex.parameters()["width"] = max(1200, int(item.boundingRect().width()))
        ex.export(str(path))
        return path

    def _export_svg(self, path: Path) -> None:
        """The plots as vector SVG through Qt's SVG generator (pyqtgraph's SVGExporter fails on the
        path syntax of Qt 6's SVG writer). For the export every item is drawn, not blitted: the
        axes' pixmap caches are off and pyqtgraph's export mode makes scatter symbols (the trial
        stars) paths at their own aspect instead of stretched bitmaps from the symbol atlas."""
        from PyQt6 import QtSvg

        gen = QtSvg.QSvgGenerator()
        gen.setFileName(str(path))
        size = self.plots.size()
        gen.setSize(size)
        gen.setViewBox(QtCore.QRect(0, 0, size.width(), size.height()))
        # the screen's resolution: at the generator's default 72 dpi the axes' recorded QPictures and
        # every point-sized font are scaled by 72/96 against the curves
        gen.setResolution(int(round(self.plots.logicalDpiX())))
        gen.setTitle(f"emer_live replay - {self.session.path.name if self.session else ''}")
        items = self.plots.scene().items()
        no_cache = QtWidgets.QGraphicsItem.CacheMode.NoCache
        cached = [(it, it.cacheMode()) for it in items if it.cacheMode() != no_cache]
        view_cache = self.plots.cacheMode()
        painter = QtGui.QPainter(gen)
        try:
            for it, _mode in cached:
                it.setCacheMode(no_cache)
            self.plots.setCacheMode(QtWidgets.QGraphicsView.CacheModeFlag.CacheNone)
            for it in items:
                if hasattr(it, "setExportMode"):
                    it.setExportMode(True, {"painter": painter})
            self.plots.render(painter)
        finally:
            painter.end()
            for it in items:
                if hasattr(it, "setExportMode"):
                    it.setExportMode(False)
            for it, mode in cached:
                it.setCacheMode(mode)
            self.plots.setCacheMode(view_cache)

    def export_trial_table(self, path) -> Path:
        return self.session.write_trial_table(path)

    def screenshot(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.grab().save(str(path))
        return path

    def _selected_trial(self) -> Optional[TrialRow]:
        rows = self.trial_table.selectionModel().selectedRows() if self.trial_table.selectionModel() else []
        if rows:
            return self.session.trials[rows[0].row()]
        tr = self.session.trial_at(self.timeline.t_us) if self.timeline else None
        return tr or (self.session.trials[0] if self.session.trials else None)

    def _export_figure_dialog(self, ext: str) -> None:
        f, _ = QtWidgets.QFileDialog.getSaveFileName(self, f"Export figure ({ext.upper()})", f"replay.{ext}",
                                                     f"{ext.upper()} (*.{ext})")
        if f:
            self.statusBar().showMessage(f"saved {self.export_figure(f)}{self._damage_suffix()}")

    def _export_table_dialog(self) -> None:
        f, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export trial table", "trials.tsv", "TSV (*.tsv)")
        if f:
            self.statusBar().showMessage(f"saved {self.export_trial_table(f)}{self._damage_suffix()}")

    def _damage_suffix(self) -> str:
        """What an export of a damaged folder lacks, for its status message."""
        s = self.session
        lines = damage_lines(s.problems, s.load_notes + s.load_errors, limit=2) if s is not None else []
        return f" - from a damaged folder, it lacks what the banner lists: {lines[0]}" if lines else ""

    def _export_clip_dialog(self) -> None:
        tr = self._selected_trial()
        if tr is None:
            return
        f, _ = QtWidgets.QFileDialog.getSaveFileName(self, f"Export trial {tr.trial} clip with gaze",
                                                     f"trial{tr.trial:02d}_{tr.stimulus_id}_gaze.mp4", "MP4 (*.mp4)")
        if f:
            notes: List[str] = []
            try:
                n = export_trial_clip(self.session, tr, f, notes=notes)
            except EmerError as exc:
                QtWidgets.QMessageBox.warning(self, "Export failed", str(exc))
                return
            self.statusBar().showMessage(f"saved {f} ({n} frames)" + (f"; {notes[0]}" if notes else ""))
            if notes:
                QtWidgets.QMessageBox.warning(self, "Exported with gaps", f"Saved {f} ({n} frames), but:\n\n"
                                              + "\n".join(notes))

    def closeEvent(self, ev) -> None:
        self._close_session()
        super().closeEvent(ev)


def export_trial_clip(session: ReplaySession, trial: TrialRow, path, *, max_width: int = 640,
                      notes: Optional[List[str]] = None) -> int:
    """Write the trial's stimulus clip with the gaze point (and its last 0.5 s as a trail) drawn
    on each presented frame, as H.264 MP4 at the clip's rate. Returns the number of frames;
    what the clip lacks (frames without gaze: a damaged or short gaze.tsv) is appended to
    ``notes``, and also warned about (``warnings``) so no caller passes it over silently."""
    import av
    import cv2

    from ..errors import ConfigError

    if trial.clip_path is None:
        raise ConfigError(f"trial {trial.trial}: its clip was not found (stimulus library moved?); "
                          "nothing to export")
    sf = trial.stimulus_frames
    if sf is None or not len(sf):
        if trial.onset_us is None or not trial.clip_fps:
            raise ConfigError(f"trial {trial.trial}: no stimulus_frames.tsv and no onset - cannot place gaze")
        n = int(((trial.offset_us or session.t1_us) - trial.onset_us) * trial.clip_fps // 1_000_000)
        sf = np.array([(i, trial.onset_us + int(i * 1e6 / trial.clip_fps)) for i in range(n)],
                      dtype=[("frame", np.int64), ("t_us", np.int64)])
    dec = StimulusDecoder(trial.clip_path, max_width=max_width)
    x0, y0, x1, y1 = session.stimulus_rect
    out = av.open(str(path), "w")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    st = None
    n = 0
    try:
        for frame_idx, t_us in sf:
            img = dec.frame(int(frame_idx))
            if img is None:
                continue
            img = np.ascontiguousarray(img)
            h, w = img.shape[:2]
            if st is None:
                st = out.add_stream(codec, rate=int(round(dec.fps)))
                st.width, st.height = w - w % 2, h - h % 2
                st.pix_fmt = "yuv420p"
            pts = session.fixation_points(int(t_us), since_us=int(t_us) - 500_000)
            for k, (gx, gy) in enumerate(pts):
                px = (int((gx - x0) / (x1 - x0) * w), int((gy - y0) / (y1 - y0) * h))
                last = k == len(pts) - 1
                cv2.circle(img, px, 9 if last else 2, (0, 200, 255) if last else (255, 80, 0), 2 if last else -1)
            vf = av.VideoFrame.from_ndarray(img[: st.height, : st.width], format="rgb24")
            for pkt in st.encode(vf):
                out.mux(pkt)
            n += 1
        if st is not None:
            for pkt in st.encode():
                out.mux(pkt)
    finally:
        out.close()
        dec.close()
    if n and len(sf):
        missing = session.gaze_missing(int(sf["t_us"][0]), int(sf["t_us"][-1]))
        if missing:
            note = f"trial {trial.trial}: exported without gaze where it is missing - {missing}"
            if notes is not None:
                notes.append(note)
            import warnings

            warnings.warn(note, stacklevel=2)
    return n


def run_replay(args, display_ok: bool = True, why: str = "") -> int:
    """``python main.py --replay DIR``: the replay window (``--screenshot``/``--quit-after``/``--settings``
    work as for the console)."""
    import sys

    from ..cli import report_error
    from ..errors import ConfigError
    from ..recording.reader import SessionReader

    try:
        if not display_ok:
            raise ConfigError(f"--replay needs a display: {why}; use xvfb-run or a desktop session")
        if args.quit_after is not None and not args.quit_after > 0:
            raise ConfigError(f"--quit-after {args.quit_after}: must be > 0 seconds")
        SessionReader(args.replay)          # a folder that is no session: one line, before any window
    except EmerError as exc:
        return report_error(exc)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("emer_live")
    app.setOrganizationName("emer_live")
    settings = QtCore.QSettings(args.settings, QtCore.QSettings.Format.IniFormat) if args.settings else None
    win = ReplayWindow(args.replay, settings=settings)
    win.show()
    if args.quit_after is not None:
        def finish():
            if args.screenshot:
                print(f"screenshot: {win.screenshot(args.screenshot)}", flush=True)
            win.close()
            app.quit()

        QtCore.QTimer.singleShot(int(args.quit_after * 1000), finish)
    app.exec()
    if win.last_error:
        print(f"emer-live: error: {win.last_error.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
