"""The operator console's live views. Each panel is built once; the console hands it run events
(:meth:`on_event`, on the GUI thread) and asks it to redraw (:meth:`refresh`) from its ~30 Hz
timer, where panels read the streams and update their items with ``setData`` / ``setImage``.
Nothing here runs per sample, and nothing here is on the data path."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Deque, Dict, List, Optional

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from ..app.events import (DeviceEvent, DeviceFailed, PhaseChanged, PredictionMade, RunError, RunFinished, RunNote,
                          RunStarted)
from ..labels import ER7_CLASSES, VA_ANCHORS
from .colors import (BAD_COLOR, EMOTION_COLORS, GAP_COLOR, GAZE_X_COLOR, GAZE_Y_COLOR, LEFT_EYE_COLOR, OK_COLOR,
                     RIGHT_EYE_COLOR, WARN_COLOR)

__all__ = ["EmotionPanel", "CircumplexPanel", "EyePanel", "CameraPanel", "HealthPanel", "EventLogPanel",
           "TrialTablePanel", "stream_rate", "LegendRow", "emotion_entries", "set_title", "colored",
           "legend_entry", "FlowLabel", "stream_health", "StreamHealth", "HEALTH_WINDOW_S"]

pg.setConfigOptions(antialias=False, background="w", foreground="#333333")

DASH = QtCore.Qt.PenStyle.DashLine


def _pen(color: str, width: float = 2.0, dashed: bool = False) -> QtGui.QPen:
    pen = pg.mkPen(color, width=width)
    if dashed:
        pen.setStyle(DASH)
    return pen


def _seconds(run, t_us: int) -> float:
    return (t_us - (run.t_origin_us or 0)) / 1e6


def colored(text: str, color: str, bold: bool = False) -> str:
    """``text`` in ``color`` for a plot title (pyqtgraph titles take simple HTML)."""
    weight = "; font-weight: bold" if bold else ""
    return f"<span style='color: {color}{weight}'>{text}</span>"


class FlowLabel(pg.LabelItem):
    """A LabelItem that never widens its layout. pyqtgraph makes a label's text width its minimum,
    so a long title or legend pushed the plots (their right axis, their labels) out of view; this
    one wraps its text to the width it is given (``wrap``) or lets it be clipped."""

    def __init__(self, text: str = "", *, wrap: bool = False, **opts) -> None:
        self.wrap = wrap
        super().__init__(text, **opts)
        if wrap:      # wrapped lines centred, as a one-line title is
            self.item.document().setDefaultTextOption(QtGui.QTextOption(QtCore.Qt.AlignmentFlag.AlignHCenter))

    def resizeEvent(self, ev) -> None:   # noqa: N802 (Qt name)
        w = self.rect().width()
        if self.wrap and w > 20 and abs(self.item.textWidth() - w) > 1:
            self.item.setTextWidth(w)
        super().resizeEvent(ev)

    def updateMin(self) -> None:   # noqa: N802 (pyqtgraph name)
        bounds = self.itemRect()
        self.setMinimumWidth(0)
        self.setMinimumHeight(bounds.height())
        H = QtCore.Qt.SizeHint
        self._sizeHint = {H.MinimumSize: (0, bounds.height()), H.PreferredSize: (bounds.width(), bounds.height()),
                          H.MaximumSize: (-1, -1), H.MinimumDescent: (0, 0)}
        self.updateGeometry()


def set_title(plot: pg.PlotItem, html: str, tip: str = "") -> None:
    """A plot's title that cannot force the plot wider than its view (see FlowLabel): in a narrow
    dock it wraps onto a second line. Titles are kept short; the tooltip says the rest."""
    if not isinstance(plot.titleLabel, FlowLabel):
        old = plot.titleLabel
        plot.layout.removeItem(old)
        old.setParentItem(None)
        if old.scene() is not None:
            old.scene().removeItem(old)
        plot.titleLabel = FlowLabel(wrap=True, size="11pt", parent=plot)
        plot.layout.addItem(plot.titleLabel, 0, 1)
    plot.setTitle(html)
    # PlotItem.setTitle fixes the title row at 30 px (one line): let a wrapped title have two
    plot.titleLabel.setMaximumHeight(200)
    plot.layout.setRowMaximumHeight(0, 200)
    plot.layout.setRowMinimumHeight(0, 0)
    plot.titleLabel.setToolTip(tip or html)


def legend_entry(glyph: str, color: str, name: str) -> str:
    """One legend entry as HTML: a coloured sample glyph and its name, never broken across lines."""
    return (f"<span style='white-space: nowrap'><span style='color: {color}; font-weight: bold'>{glyph}</span>"
            f"&nbsp;{name}</span>")


SOLID, DASHED = "&#9473;&#9473;", "&#9549;&#9549;"      # line samples (box drawing): solid, dashed


class LegendRow(FlowLabel):
    """A legend as a layout row of its own (above the plots), so no curve can hide an entry; it
    wraps into more lines when its row is too narrow for one. ``entries`` are legend_entry HTML."""

    def __init__(self, entries, *, size: str = "9pt") -> None:
        super().__init__(" &nbsp;&nbsp; ".join(entries), wrap=True, size=size, justify="center")
        self.entries = list(entries)


def emotion_entries(*, styles: bool = True) -> List[str]:
    """Legend entries: one per emotion colour, then (``styles``) ER solid and FER dashed."""
    out = [legend_entry(SOLID, EMOTION_COLORS[n], n) for n in ER7_CLASSES]
    if styles:
        out += [legend_entry(SOLID, "#555555", "ER"), legend_entry(DASHED, "#555555", "FER")]
    return out


class EmotionPanel(QtWidgets.QWidget):
    """ER (solid) and FER (dashed) 7-class probabilities over time, and the emotion gap with
    confident disagreements marked and named. One framed legend row above the plots explains
    every colour and line style."""

    HISTORY = 1800          # predictions kept (30 min at one per second)
    SPAN_S = 90.0           # seconds shown
    N_LABELS = 3            # newest disagreements named in words (where they fit)
    GAP_TITLE = "emotion gap: JS divergence of ER and FER"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.glw = pg.GraphicsLayoutWidget()
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.glw)
        self.legend = LegendRow(emotion_entries() + [legend_entry(SOLID, GAP_COLOR, "gap"),
                                                     legend_entry("&#9660;", BAD_COLOR, "confident disagreement")])
        self.glw.addItem(self.legend, row=0, col=0)
        self.er_plot = self.glw.addPlot(row=1, col=0)
        self.fer_plot = self.glw.addPlot(row=2, col=0)
        self.gap_plot = self.glw.addPlot(row=3, col=0)
        set_title(self.er_plot, "ER: what face + eyes reveal (solid)")
        self.set_fer_source(None)
        set_title(self.gap_plot, self.GAP_TITLE, "emotion gap: the Jensen-Shannon divergence of the ER and FER "
                  "distributions in bits (log2): 0 = the same, 1 = no overlap. A red triangle marks a confident "
                  "disagreement (different top classes, each >= 0.4); hover it for the classes.")
        for p in (self.er_plot, self.fer_plot, self.gap_plot):
            p.setYRange(0, 1.02, padding=0)
            p.setMouseEnabled(x=False, y=False)
            p.showGrid(x=True, y=True, alpha=0.2)
            p.setClipToView(True)
            p.setDownsampling(auto=True, mode="peak")
        self.er_plot.setLabel("left", "probability")
        self.fer_plot.setLabel("left", "probability")
        self.gap_plot.setLabel("left", "JSD, bits 0-1")
        self.fer_plot.setXLink(self.er_plot)
        self.gap_plot.setXLink(self.er_plot)
        self.gap_plot.setLabel("bottom", "time since start", units="s")
        self.er_curves = {}
        self.fer_curves = {}
        for name in ER7_CLASSES:
            c = EMOTION_COLORS[name]
            self.er_curves[name] = self.er_plot.plot(pen=_pen(c))
            self.fer_curves[name] = self.fer_plot.plot(pen=_pen(c, dashed=True))
        self.gap_curve = self.gap_plot.plot(pen=_pen(GAP_COLOR, 2))
        self.disagree_marks = pg.ScatterPlotItem(size=11, symbol="t", brush=pg.mkBrush(BAD_COLOR),
                                                 pen=pg.mkPen("w"), hoverable=True,
                                                 tip=lambda x, y, data: f"{x:.0f} s: {data} (JSD {y:.2f})")
        self.gap_plot.addItem(self.disagree_marks)
        self.labels: List[pg.TextItem] = []
        for _ in range(self.N_LABELS):
            t = pg.TextItem(color=BAD_COLOR, anchor=(0, 0), fill=pg.mkBrush(255, 255, 255, 220))
            t.setVisible(False)
            t.setZValue(20)
            self.gap_plot.addItem(t, ignoreBounds=True)
            self.labels.append(t)
        self.gap_plot.getViewBox().sigResized.connect(self._place_labels)
        self.t: Deque[float] = deque(maxlen=self.HISTORY)
        self.er: Deque[np.ndarray] = deque(maxlen=self.HISTORY)
        self.fer: Deque[np.ndarray] = deque(maxlen=self.HISTORY)
        self.gap: Deque[float] = deque(maxlen=self.HISTORY)
        self.disagreements: Deque[tuple] = deque(maxlen=200)   # (t, jsd, label)
        self.x_range = (0.0, self.SPAN_S * 0.25 + 1.0)
        self.n_labels_shown = 0
        self._dirty = False

    def set_fer_source(self, source: Optional[str]) -> None:
        """The FER plot's title names where FER comes from (EMERT's face branch or a FER model)."""
        set_title(self.fer_plot, "FER: what the face shows (dashed)" + (f"; source {source}" if source else ""))

    def clear(self) -> None:
        for d in (self.t, self.er, self.fer, self.gap, self.disagreements):
            d.clear()
        self._dirty = True

    def add(self, p, t_s: float) -> None:
        if p.kind != "window":
            return
        self.t.append(t_s)
        self.er.append(np.asarray(p.er7, float))
        fer = np.full(7, np.nan) if p.fer7 is None else np.asarray(p.fer7, float)
        self.fer.append(fer)
        jsd = float("nan") if p.gap is None else float(p.gap["jsd"])
        self.gap.append(jsd)
        if p.gap is not None and p.gap.get("disagree"):
            self.disagreements.append((t_s, jsd, f"face: {p.fer_top} / eyes+face: {p.er_top}"))
        self._dirty = True

    def refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        t = np.fromiter(self.t, float, len(self.t))
        if len(t):
            er = np.stack(self.er)
            fer = np.stack(self.fer)
            for i, name in enumerate(ER7_CLASSES):
                self.er_curves[name].setData(t, er[:, i])
                self.fer_curves[name].setData(t, fer[:, i], connect="finite")
            self.gap_curve.setData(t, np.fromiter(self.gap, float, len(self.gap)), connect="finite")
            hi = max(t[-1], self.SPAN_S * 0.25)
            self.x_range = (max(0.0, hi - self.SPAN_S), hi + 1.0)
            self.er_plot.setXRange(*self.x_range, padding=0)
        else:
            for c in list(self.er_curves.values()) + list(self.fer_curves.values()) + [self.gap_curve]:
                c.setData([], [])
        dis = list(self.disagreements)
        self.disagree_marks.setData([d[0] for d in dis], [d[1] for d in dis], data=[d[2] for d in dis])
        self._place_labels()

    def _place_labels(self) -> None:
        """Name the newest confident disagreements in words where a label fits: inside the view,
        clear of the gap curve under it (above it, else below it), over no other label. A
        disagreement left unnamed keeps its triangle, whose tooltip names it."""
        for lab in self.labels:
            lab.setVisible(False)
        rect = self.gap_plot.getViewBox().boundingRect()
        x0, x1 = self.x_range
        if rect.width() < 10 or rect.height() < 10 or not self.disagreements:
            return
        px, py = (x1 - x0) / rect.width(), 1.02 / rect.height()     # data units per pixel
        t = np.fromiter(self.t, float, len(self.t))
        g = np.fromiter(self.gap, float, len(self.gap))
        placed: List[tuple] = []       # (left, right, bottom, top) in data units
        k = 0
        for ts, _jsd, text in reversed(self.disagreements):
            if k == len(self.labels) or ts < x0:
                break
            lab = self.labels[k]
            lab.setText(text)
            br = lab.textItem.boundingRect()
            w, h = br.width() * px, br.height() * py
            if w > x1 - x0:
                continue
            spot = self._free_spot(ts, w, h, px, py, t, g, placed)
            if spot is not None:
                left, top = spot
                placed.append((left, left + w, top - h, top))
                lab.setPos(left, top)
                lab.setToolTip(f"{ts:.0f} s: confident disagreement - {text}")
                lab.setVisible(True)
                k += 1
        self.n_labels_shown = k

    def _free_spot(self, ts, w, h, px, py, t, g, placed):
        """(left, top) of a w x h label for the disagreement at ``ts``: centred on it, else just
        left or right of it; in rows from the top down, clear of the gap curve beneath (above or
        below it) and of the labels ``placed``; None when there is no such spot."""
        x0, x1 = self.x_range
        margin = 6 * py             # the triangle's half height
        for left in (ts - w / 2, ts - 0.9 * w, ts - 0.1 * w):
            left = min(max(left, x0), x1 - w)
            right = left + w
            near = g[(t >= left - 6 * px) & (t <= right + 6 * px)]
            near = near[np.isfinite(near)]
            lo, hi = (float(near.min()) - margin, float(near.max()) + margin) if len(near) else (0.0, 0.0)
            top = 1.02
            while top - h >= 0.0:
                if (top - h > hi or top < lo) and not any(left < r and l < right and top - h < tp and b < top
                                                         for l, r, b, tp in placed):
                    return left, top
                top -= h * 1.05
        return None

    @property
    def n_points(self) -> int:
        return len(self.t)


class CircumplexPanel(QtWidgets.QWidget):
    """Valence (x) and arousal (y) of ER (solid) and FER (dashed) with fading trails; the
    category anchors (Russell & Mehrabian 1977 ratings of emotion words) for orientation."""

    TRAIL = 20
    LABEL_X = 1.18          # the anchors' words sit at valence -/+ this, outside the circle
    LABEL_STEP = 0.17       # at least this far apart vertically (and at least one line of text)

    @classmethod
    def label_positions(cls, step: float = LABEL_STEP) -> Dict[str, tuple]:
        """name -> (label x, label y, anchor valence, anchor arousal): negative valence on the left,
        the rest on the right, in arousal order, pushed ``step`` apart."""
        out = {}
        for side in (-1, 1):
            names = sorted((n for n, (v, _) in VA_ANCHORS.items() if (v < 0) == (side < 0)),
                           key=lambda n: -VA_ANCHORS[n][1])
            y_prev = float("inf")
            for n in names:
                v, ar = VA_ANCHORS[n]
                y = min(ar, y_prev - step)
                out[n] = (side * cls.LABEL_X, y, v, ar)
                y_prev = y
        return out

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)
        p = self.plot.getPlotItem()
        set_title(p, "valence / arousal: &#9679; ER (solid), &#9633; FER (dashed)",
                  "ER as filled dots on a solid line, FER as hollow squares on a dashed line, last 20 predictions "
                  "fading out; a dot's colour is the top emotion's. Words: Russell & Mehrabian (1977) anchors.")
        p.setAspectLocked(True)
        # both ranges stay in view (the aspect lock widens one): room for the words beside the circle
        p.setRange(xRange=(-2.1, 2.1), yRange=(-1.15, 1.15), padding=0)
        p.setMouseEnabled(x=False, y=False)
        p.setLabel("bottom", "valence")
        p.setLabel("left", "arousal")
        a = np.linspace(0, 2 * np.pi, 120)
        p.plot(np.cos(a), np.sin(a), pen=pg.mkPen("#BBBBBB", width=1))
        p.addLine(x=0, pen=pg.mkPen("#DDDDDD"))
        p.addLine(y=0, pen=pg.mkPen("#DDDDDD"))
        # the anchors as small marks; their words in the free space left and right of the circle
        # (fear, anger and disgust lie within 0.3 of each other, and the live dots gather there),
        # each joined to its mark by a faint line
        p.addItem(pg.ScatterPlotItem([v for v, _ in VA_ANCHORS.values()], [a for _, a in VA_ANCHORS.values()],
                                     size=5, symbol="o", pen=None, brush=pg.mkBrush("#AAAAAA")))
        self.anchor_labels: Dict[str, pg.TextItem] = {}
        self.anchor_lines: Dict[str, pg.PlotDataItem] = {}
        for name in VA_ANCHORS:
            self.anchor_lines[name] = p.plot(pen=pg.mkPen("#D0D0D0", width=1, style=QtCore.Qt.PenStyle.DotLine))
            t = pg.TextItem(name, color=EMOTION_COLORS[name])
            p.addItem(t)
            self.anchor_labels[name] = t
        p.getViewBox().sigResized.connect(self._place_anchor_labels)
        self._place_anchor_labels()
        self.er_line = p.plot(pen=_pen("#333333", 1.5))
        self.fer_line = p.plot(pen=_pen("#333333", 1.5, dashed=True))
        self.er_dots = pg.ScatterPlotItem(symbol="o")
        self.fer_dots = pg.ScatterPlotItem(symbol="s")
        p.addItem(self.er_dots)
        p.addItem(self.fer_dots)
        self.er: Deque[tuple] = deque(maxlen=self.TRAIL)
        self.fer: Deque[tuple] = deque(maxlen=self.TRAIL)
        self._dirty = False

    def _place_anchor_labels(self) -> None:
        """The words a text line apart at the view's current scale (it changes with the dock's size)."""
        vb = self.plot.getPlotItem().getViewBox()
        h_px = max(t.boundingRect().height() for t in self.anchor_labels.values())
        height = vb.boundingRect().height()
        y0, y1 = vb.viewRange()[1]
        step = self.LABEL_STEP if height < 10 else max(self.LABEL_STEP, 1.05 * h_px * (y1 - y0) / height)
        for name, (x, y, v, ar) in self.label_positions(step).items():
            t = self.anchor_labels[name]
            t.setAnchor((1.0 if x < 0 else 0.0, 0.5))
            t.setPos(x, y)
            self.anchor_lines[name].setData([v, x], [ar, y])

    def clear(self) -> None:
        self.er.clear()
        self.fer.clear()
        self._dirty = True

    def add(self, p) -> None:
        if p.kind != "window":
            return
        self.er.append((p.er_va[0], p.er_va[1], p.er_top))
        if p.fer_va is not None:
            self.fer.append((p.fer_va[0], p.fer_va[1], p.fer_top))
        self._dirty = True

    @staticmethod
    def _spots(points, filled: bool):
        n = len(points)
        spots = []
        for i, (v, a, top) in enumerate(points):
            alpha = int(40 + 215 * (i + 1) / n)          # older points fade out
            r, g, b = QtGui.QColor(EMOTION_COLORS[top]).getRgb()[:3]
            size = 14 if i == n - 1 else 7
            brush = pg.mkBrush(r, g, b, alpha) if filled else pg.mkBrush(255, 255, 255, 0)
            spots.append({"pos": (v, a), "size": size, "brush": brush,
                          "pen": pg.mkPen((r, g, b, alpha), width=2 if i == n - 1 else 1)})
        return spots

    def refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        for pts, line, dots, filled in ((self.er, self.er_line, self.er_dots, True),
                                        (self.fer, self.fer_line, self.fer_dots, False)):
            pts = list(pts)
            line.setData([q[0] for q in pts], [q[1] for q in pts])
            dots.setData(self._spots(pts, filled))


class EyePanel(QtWidgets.QWidget):
    """Pupil diameter of both eyes with blinks shaded, gaze x/y on the display, and the valid
    sample fraction, over the last seconds of the gaze stream."""

    SPAN_S = 10.0
    N_BLINK_REGIONS = 12
    MAX_POINTS = 500
    FIELDS = ("t_us", "left_pupil_diameter", "right_pupil_diameter", "left_pupil_validity", "right_pupil_validity",
              "left_gaze_point_on_display_area_x", "left_gaze_point_on_display_area_y",
              "right_gaze_point_on_display_area_x", "right_gaze_point_on_display_area_y",
              "left_gaze_point_validity", "right_gaze_point_validity")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.glw = pg.GraphicsLayoutWidget()
        self.valid_label = QtWidgets.QLabel("valid gaze: -")
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.valid_label)
        lay.addWidget(self.glw)
        self.pupil = self.glw.addPlot(row=0, col=0)
        self.gaze = self.glw.addPlot(row=1, col=0)
        set_title(self.pupil, f"pupil (mm): {colored('left', LEFT_EYE_COLOR, True)}, "
                  f"{colored('right', RIGHT_EYE_COLOR, True)}"
                  "; grey = blink / no pupil")
        set_title(self.gaze, f"gaze on display (0..1): {colored('x', GAZE_X_COLOR, True)}, "
                  f"{colored('y', GAZE_Y_COLOR, True)}", "mean of the valid eyes; 0 = left / top edge")
        self.gaze.setXLink(self.pupil)
        self.gaze.setYRange(-0.05, 1.05, padding=0)
        self.pupil.setYRange(1.5, 7.5, padding=0)     # adult pupils; fixed so the axis never re-layouts
        self.gaze.setLabel("bottom", "seconds before now")
        for p in (self.pupil, self.gaze):
            p.setMouseEnabled(x=False, y=False)
            p.showGrid(x=True, y=True, alpha=0.2)
            p.setXRange(-self.SPAN_S, 0, padding=0)
        self.left = self.pupil.plot(pen=_pen(LEFT_EYE_COLOR, 1.5))
        self.right = self.pupil.plot(pen=_pen(RIGHT_EYE_COLOR, 1.5))
        self.gx = self.gaze.plot(pen=_pen(GAZE_X_COLOR, 1.2))
        self.gy = self.gaze.plot(pen=_pen(GAZE_Y_COLOR, 1.2))
        self.blinks = []
        for _ in range(self.N_BLINK_REGIONS):
            r = pg.LinearRegionItem(brush=pg.mkBrush(120, 120, 120, 60), pen=pg.mkPen(None), movable=False)
            r.setVisible(False)
            self.pupil.addItem(r)
            self.blinks.append(r)
        self.valid_fraction = float("nan")
        self.n_blinks_shown = 0

    def refresh(self, run) -> None:
        stream = run.streams.get("gaze")
        if stream is None or run.clock is None:
            return
        now = run.clock.now_us()
        d = stream.window(now - int(self.SPAN_S * 1e6), now + 1, fields=self.FIELDS)
        if not len(d):
            self.valid_label.setText("valid gaze: no samples in the last 10 s")
            return
        # x = seconds before now on a fixed axis (-10..0): the axes never re-layout, and the
        # traces are thinned to <= MAX_POINTS (blinks are found at full rate first)
        t = (d["t_us"] - now) / 1e6
        lv = d["left_pupil_validity"] > 0
        rv = d["right_pupil_validity"] > 0
        gl = d["left_gaze_point_validity"] > 0
        gr = d["right_gaze_point_validity"] > 0
        self.valid_fraction = float(np.mean(gl | gr))
        lost = ~(lv | rv)
        edges = np.flatnonzero(np.diff(np.r_[0, lost.astype(np.int8), 0]))
        runs = list(zip(edges[::2], edges[1::2]))[-self.N_BLINK_REGIONS:]
        for i, reg in enumerate(self.blinks):
            if i < len(runs):
                a, b = runs[i]
                reg.setRegion((t[a], t[min(b, len(t) - 1)]))
                reg.setVisible(True)
            else:
                reg.setVisible(False)
        self.n_blinks_shown = len(runs)
        k = max(1, -(-len(t) // self.MAX_POINTS))
        sl = slice(None, None, k)
        ts = t[sl]
        self.left.setData(ts, np.where(lv, d["left_pupil_diameter"], np.nan)[sl], connect="finite")
        self.right.setData(ts, np.where(rv, d["right_pupil_diameter"], np.nan)[sl], connect="finite")
        gx = _mean_of_valid(d["left_gaze_point_on_display_area_x"], gl, d["right_gaze_point_on_display_area_x"], gr)
        gy = _mean_of_valid(d["left_gaze_point_on_display_area_y"], gl, d["right_gaze_point_on_display_area_y"], gr)
        self.gx.setData(ts, gx[sl], connect="finite")
        self.gy.setData(ts, gy[sl], connect="finite")
        self.valid_label.setText(f"valid gaze: {100 * self.valid_fraction:.0f} % of the last {self.SPAN_S:.0f} s")


def _mean_of_valid(a, a_ok, b, b_ok) -> np.ndarray:
    """Per sample: the mean of the valid eyes' values, NaN where neither eye is valid."""
    n = a_ok.astype(np.float32) + b_ok.astype(np.float32)
    s = np.where(a_ok, a, 0.0) + np.where(b_ok, b, 0.0)
    out = np.full(len(n), np.nan, np.float32)
    np.divide(s, n, out=out, where=n > 0)
    return out


def _qimage(rgb: np.ndarray) -> QtGui.QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888).copy()


class CameraPanel(QtWidgets.QWidget):
    """The camera preview with the face box of the newest processed frame, the current
    window's face crops, and the face-found fraction."""

    PREVIEW_W = 400

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.preview = QtWidgets.QLabel("no camera")
        self.preview.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(320, 180)
        self.crops = QtWidgets.QLabel("face crops appear with the first window")
        self.crops.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.info = QtWidgets.QLabel("")
        self.info.setWordWrap(True)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.preview, 3)
        lay.addWidget(QtWidgets.QLabel("the current window's face crops (8 x 112 x 112; dark = no face)"))
        lay.addWidget(self.crops, 1)
        lay.addWidget(self.info)
        self.last_frame_index = -1
        self._strip_src, self._strip_width = None, 0     # the crops the strip shows (built once a window)
        self.face_found_fraction = float("nan")
        self.has_box = False
        self.n_crops = 0
        self.head_pose = ""

    def refresh(self, run) -> None:
        import cv2

        stream = run.streams.get("camera")
        if stream is None:
            return
        rec = stream.latest(1)
        if not len(rec) or int(rec["frame_index"][0]) == self.last_frame_index:
            return
        self.last_frame_index = int(rec["frame_index"][0])
        kept_crop = "image" not in rec.dtype.names     # a replayed privacy-mode session: crops, no frames
        frame = np.ascontiguousarray(rec["crop"][0][:, :, ::-1]) if kept_crop else rec["image"][0]   # BGR
        h, w = frame.shape[:2]
        s = self.PREVIEW_W / float(w)
        small = cv2.resize(frame, (self.PREVIEW_W, int(round(h * s))), interpolation=cv2.INTER_LINEAR)
        eng = run.engine
        res, crops, found = eng.latest_faces() if eng is not None else (None, None, None)
        self.has_box = bool(res is not None and res.found and res.box is not None and not kept_crop)
        if self.has_box:
            x, y, bw, bh = (v * s for v in res.box)
            cv2.rectangle(small, (int(x), int(y)), (int(x + bw), int(y + bh)), (0, 200, 0), 2)
            if res.eyes is not None:
                for ex, ey in res.eyes:
                    cv2.circle(small, (int(ex * s), int(ey * s)), 3, (0, 200, 255), -1)
            age = (int(rec["t_us"][0]) - int(res.t_us)) / 1e6
            cv2.putText(small, f"face box from {age:.1f} s ago ({res.method})", (6, small.shape[0] - 8),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 200, 0), 1, cv2.LINE_AA)
        self.preview.setPixmap(QtGui.QPixmap.fromImage(_qimage(small[:, :, ::-1])))
        if crops is not None:
            self.n_crops = int(len(crops))
            width = max(self.crops.width() - 4, 200)
            if self._strip_src is not crops or self._strip_width != width:   # a new window or a resize
                self._strip_src, self._strip_width = crops, width
                tiles = crops.copy()
                tiles[~found] //= 4
                strip = np.concatenate(list(tiles), axis=1)
                self.crops.setPixmap(QtGui.QPixmap.fromImage(_qimage(strip)).scaledToWidth(
                    width, QtCore.Qt.TransformationMode.SmoothTransformation))
            self.face_found_fraction = float(found.mean())
            pose = ""
            if res is not None and res.found and math.isfinite(getattr(res, "yaw_deg", float("nan"))):
                pose = (f"; head yaw {res.yaw_deg:+.0f} pitch {res.pitch_deg:+.0f} roll {res.roll_deg:+.0f} deg, "
                        f"landmark confidence {res.landmark_conf:.2f}")
            self.head_pose = pose
            self.info.setText(f"face found in {100 * self.face_found_fraction:.0f} % of the window's frames; "
                              f"frame {self.last_frame_index}, {w}x{h}{pose}")


#: seconds of records the health rate is measured over: long enough that a burst of late frames
#: or one stamp's jitter does not move it (a webcam's 30 Hz over 5 s: 150 intervals)
HEALTH_WINDOW_S = 5.0


@dataclass
class StreamHealth:
    """One stream's health, three separate things: its **rate** (from the records' own stamps,
    over the newest ``window_s``), how **late** its newest record is (delivery delay or
    backlog; nothing is lost by lateness alone) and its **loss** (samples missing against the
    nominal grid inside the window, and the device/ring counters)."""

    rate_hz: float                  # (n - 1) / stamp span of the window's records; 0 when < 2
    window_s: float                 # stamp span those records cover
    late_s: Optional[float]         # now - newest record's stamp; None when no record yet
    missing: int                    # grid holes: steps over 1.5 periods, counted in periods
    expected: int                   # intervals the nominal grid holds inside the window
    intervals: int                  # intervals the window's records make (records - 1)
    lost_total: int                 # device drops + ring overruns since the start (counters)

    @property
    def shortfall(self) -> int:
        """Intervals fewer than the grid holds: holes that stamp jitter does not make up for (a
        late frame followed by an early one leaves a hole but no shortfall)."""
        return max(self.expected - self.intervals, 0)

    @property
    def rate_fraction(self) -> Optional[float]:
        """Records there are against the records the nominal grid holds in the window."""
        return None if not self.expected else self.intervals / self.expected


def stream_health(stream, now_us: int, *, window_s: float = HEALTH_WINDOW_S) -> StreamHealth:
    """Measure ``stream`` (a :class:`~emer_live.streams.Stream`) at ``now_us``; see
    :class:`StreamHealth`. The window ends at the newest record, not at ``now``: a stream
    delivered late keeps its rate, and its lateness is shown on its own."""
    c = stream.counters
    lost_total = int(c.dropped + c.overruns)
    last = stream.last_t_us
    if last is None:
        return StreamHealth(0.0, 0.0, None, 0, 0, 0, lost_total)
    t = stream.window(int(last) - int(window_s * 1e6), int(last) + 1, fields=("t_us",))["t_us"].astype(np.int64)
    late_s = max(now_us - int(last), 0) / 1e6
    if len(t) < 2:
        return StreamHealth(0.0, 0.0, late_s, 0, 0, 0, lost_total)
    span_us = int(t[-1] - t[0])
    rate = (len(t) - 1) / max(span_us / 1e6, 1e-6)
    missing = expected = 0
    if stream.nominal_rate_hz:
        period = 1e6 / stream.nominal_rate_hz
        steps = np.diff(t)
        # the grid's rule (streams.StreamCounters): a step over 1.5 periods hides round(step/period)-1
        holes = steps[steps > 1.5 * period]
        missing = int(np.maximum(np.rint(holes / period) - 1, 0).sum())
        expected = int(round(span_us / period))
    return StreamHealth(rate, span_us / 1e6, late_s, missing, expected, len(t) - 1, lost_total)


def stream_rate(stream, now_us: int, span_s: float = HEALTH_WINDOW_S) -> float:
    """Effective rate (Hz) from the records' own time stamps over the newest ``span_s`` seconds
    of records (see :func:`stream_health`; a late stream keeps its rate)."""
    return stream_health(stream, now_us, window_s=span_s).rate_hz


class HealthPanel(QtWidgets.QWidget):
    """Device health: per stream its rate (from the records' own stamps over
    ``HEALTH_WINDOW_S``), how late its newest record is and what it lost (missing against the
    nominal grid, device drops, ring overruns) - lateness and loss are separate columns and
    separate states; model latency per stage; CPU and memory of this process; disk left as hours
    of recording. Red only for a real loss, a rate drop, no data or a failed device; lateness
    alone is amber."""

    COLS = ("stream", "rate Hz", "nominal", "late s", "missing", "dropped", "overruns", "state")
    STALE_S = 2.0       # a stream with no record for this long is "no data" (a stall, not lateness)
    LATE_S = 0.25       # newest record older than this: "late" (delivery delay or backlog)
    RATE_DROP = 0.9     # records below this fraction of the nominal grid: a rate drop
    MIN_WINDOW_S = 2.0  # the rate is judged once this much of the window is filled

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        import psutil

        self._proc = psutil.Process()
        self._proc.cpu_percent(None)
        self.table = QtWidgets.QTableWidget(0, len(self.COLS))
        self.table.setHorizontalHeaderLabels(self.COLS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        # the state takes the room left and wraps there: a long state never hides behind a scroll bar
        self.table.horizontalHeader().setSectionResizeMode(len(self.COLS) - 1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.model_label = QtWidgets.QLabel("model: -")
        self.system_label = QtWidgets.QLabel("system: -")
        self.problem_label = QtWidgets.QLabel("")
        for label in (self.problem_label, self.model_label, self.system_label):
            label.setWordWrap(True)     # long lines must not force the dock wide
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.problem_label)
        lay.addWidget(self.table)
        lay.addWidget(self.model_label)
        lay.addWidget(self.system_label)
        self.rates: Dict[str, float] = {}
        self.health: Dict[str, StreamHealth] = {}
        self.problems: List[str] = []   # red: real loss, rate drop, no data, failure
        self.notices: List[str] = []    # amber: lateness (nothing lost)
        self.failed: Dict[str, str] = {}
        self._lost_seen: Dict[str, tuple] = {}   # stream -> (lost_total, since t_us) of the last loss
        self._disk = (0.0, None, 0)     # (checked at, bytes/s estimate, folder bytes)

    def on_event(self, ev) -> None:
        if isinstance(ev, DeviceFailed):
            self.failed[ev.device] = f"{type(ev.error).__name__}: {ev.error}"
        elif isinstance(ev, RunStarted):
            self.failed.clear()
            self._lost_seen.clear()

    def assess(self, name: str, h: StreamHealth, now_us: int, running: bool) -> tuple:
        """(state text, colour, is a problem) for one stream's health; lateness is never loss."""
        if not running:
            return "stopped", WARN_COLOR, False
        if h.late_s is None or h.late_s > self.STALE_S:
            age = "ever" if h.late_s is None else f"{h.late_s:.1f} s"
            return f"NO DATA for {age}", BAD_COLOR, True
        # a device drop or ring overrun shows red for a window's length
        seen, since = self._lost_seen.get(name, (0, None))
        if h.lost_total != seen:
            since = now_us if h.lost_total > seen else None
            self._lost_seen[name] = (h.lost_total, since)
        if since is not None and (now_us - since) / 1e6 < HEALTH_WINDOW_S:
            return f"LOSS: {h.lost_total} dropped by the device or overrun so far", BAD_COLOR, True
        if h.missing and h.shortfall > 0:
            return (f"LOSS: {h.shortfall} of {h.expected} samples missing in the last {h.window_s:.0f} s "
                    f"({h.rate_hz:.1f} Hz)"), BAD_COLOR, True
        if h.expected and h.window_s >= self.MIN_WINDOW_S and h.rate_fraction < self.RATE_DROP:
            return f"RATE DROP ({h.rate_hz:.1f} Hz, {100 * h.rate_fraction:.0f} % of nominal)", BAD_COLOR, True
        if h.late_s > self.LATE_S:
            return f"late {h.late_s:.2f} s (delivery delay; nothing lost)", WARN_COLOR, False
        return "ok", OK_COLOR, False

    def refresh(self, run) -> None:
        streams = run.streams
        problems, notices = [], []
        self.table.setRowCount(len(streams))
        now = run.clock.now_us() if run.clock is not None else 0
        for row, (name, s) in enumerate(streams.items()):
            c = s.counters
            h = stream_health(s, now)
            self.health[name] = h
            self.rates[name] = h.rate_hz if run.running else 0.0
            nominal = s.nominal_rate_hz or float("nan")
            state, colour, problem = self.assess(name, h, now, run.running)
            dev = {"gaze": "tracker", "camera": "camera", "audio": "mic"}.get(name, name)
            for fname, msg in self.failed.items():
                if dev in fname or name in fname:
                    state, colour, problem = f"FAILED: {msg}", BAD_COLOR, True
            if problem and run.running:
                problems.append(f"{name}: {state}")
            elif colour == WARN_COLOR and run.running:
                notices.append(f"{name}: {state}")
            late = "-" if h.late_s is None else f"{h.late_s:.2f}"
            vals = (name, f"{self.rates[name]:.1f}", f"{nominal:g}", late, f"{c.missing}", str(c.dropped),
                    str(c.overruns), state)
            for col, v in enumerate(vals):
                item = QtWidgets.QTableWidgetItem(v)
                if col == len(vals) - 1 or (col == 1 and problem):
                    item.setForeground(QtGui.QColor(colour))
                    if colour != OK_COLOR:
                        f = item.font()
                        f.setBold(True)
                        item.setFont(f)
                self.table.setItem(row, col, item)
        for fname, msg in self.failed.items():
            if not any(fname in p for p in problems):
                problems.append(f"device {fname} FAILED: {msg}")
        eng = run.engine
        if eng is not None:
            lat = {k: v[-60:] for k, v in eng.latencies.items()}
            parts = [f"{k} p50 {np.percentile(v, 50):.0f} / p95 {np.percentile(v, 95):.0f} ms"
                     for k, v in lat.items() if v]
            st = eng.stats
            self.model_label.setText(f"model {eng.model.id} on {getattr(eng.model, 'device', 'cpu')}: "
                                     f"{st.made} predictions, {st.dropped} dropped, {len(eng.errors)} errors"
                                     + ("; latency " + ", ".join(parts) if parts else ""))
            if eng.errors:
                problems.append(f"model: {len(eng.errors)} errors (last: {eng.errors[-1]})")
            if st.dropped:
                self.model_label.setStyleSheet(f"color: {WARN_COLOR}")
        cpu = self._proc.cpu_percent(None)
        mem = self._proc.memory_info().rss / 2 ** 20
        disk = self._disk_text(run)
        self.system_label.setText(f"process CPU {cpu:.0f} % (of one core), memory {mem:.0f} MB; {disk}")
        if "LOW" in disk:
            problems.append(disk)
        self.problems = problems
        self.notices = notices
        if problems:
            self.problem_label.setText("PROBLEM: " + "; ".join(problems))
            self.problem_label.setStyleSheet(f"color: white; background: {BAD_COLOR}; padding: 4px; font-weight: bold")
        elif notices:
            self.problem_label.setText("late, nothing lost: " + "; ".join(notices))
            self.problem_label.setStyleSheet(f"color: {WARN_COLOR}; padding: 4px")
        else:
            self.problem_label.setText("all streams healthy" if run.running else "not running")
            self.problem_label.setStyleSheet(f"color: {OK_COLOR}; padding: 4px")

    def _disk_text(self, run) -> str:
        folder: Optional[Path] = run.session_dir
        if folder is None or not folder.exists():
            return "not recording"
        free = shutil.disk_usage(folder).free
        checked, rate, size0 = self._disk
        now = time.monotonic()
        if now - checked > 5.0:
            size = _folder_bytes(folder)
            if checked and size >= size0:
                rate = (size - size0) / (now - checked)
            self._disk = (now, rate, size)
        if not rate:
            return f"disk: {free / 2 ** 30:.1f} GB free"
        hours = free / rate / 3600
        flag = " - LOW DISK" if hours < 1 else ""
        return f"disk: {free / 2 ** 30:.1f} GB free = {hours:.1f} h of recording at {rate / 2 ** 20:.1f} MB/s{flag}"


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class EventLogPanel(QtWidgets.QPlainTextEdit):
    """Everything the run reported, newest last (device events, phases, notes, errors)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(5000)
        self.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self._run = None

    def attach(self, run) -> None:
        self._run = run

    def log(self, text: str, t_us: Optional[int] = None) -> None:
        run = self._run
        stamp = "" if t_us is None or run is None or run.t_origin_us is None else f"{_seconds(run, t_us):8.2f} s  "
        self.appendPlainText(stamp + text)

    def on_event(self, ev) -> None:
        if isinstance(ev, RunStarted):
            self.log(f"{ev.kind} run started" + (f", recording to {ev.session_dir}" if ev.session_dir else ""), ev.t_us)
        elif isinstance(ev, PhaseChanged):
            self.log(f"phase {ev.phase}" + (f" (trial {ev.trial})" if ev.trial is not None else ""), ev.t_us)
        elif isinstance(ev, DeviceEvent):
            detail = ", ".join(f"{k}={v}" for k, v in ev.detail.items())
            self.log(f"device event {ev.device_kind}: {detail}", ev.t_us)
        elif isinstance(ev, DeviceFailed):
            self.log(f"DEVICE FAILED {ev.device}: {type(ev.error).__name__}: {ev.error} -> run {ev.action}", ev.t_us)
        elif isinstance(ev, RunError):
            self.log(f"ERROR {ev}", ev.t_us)
        elif isinstance(ev, RunNote):
            self.log(f"note: {ev.text}", ev.t_us)
        elif isinstance(ev, RunFinished):
            self.log(f"run finished: status {ev.status} ({ev.reason})", ev.t_us)
            from ..app import format_losses

            for line in format_losses(ev.summary.get("losses", {})):
                self.log(line, ev.t_us)
        elif isinstance(ev, PredictionMade) and ev.prediction.kind == "trial":
            p = ev.prediction
            self.log(f"trial {p.trial} prediction: ER {p.er_top}, FER {p.fer_top}", ev.t_us)


class NoteEntry(QtWidgets.QWidget):
    """The operator's notes for the record ("participant sneezed", "door opened"): stamped when
    typing begins - the moment the operator saw it, not when the sentence was done - and stored
    by Enter as a ``note`` event in events.tsv. A note that looks like a name or an e-mail address
    is held back once with a warning (participants are pseudonymous); Enter again stores it."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.edit = QtWidgets.QLineEdit()
        self.edit.setPlaceholderText("note for the record (Ctrl+N) - Enter stores it")
        self.edit.setMaxLength(2000)
        self.button = QtWidgets.QPushButton("Add note")
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        row = QtWidgets.QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.button)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.status)
        self.status.hide()
        self.edit.textEdited.connect(self._typing)
        self.edit.returnPressed.connect(self.submit)
        self.button.clicked.connect(self.submit)
        self._run = None
        self._t_us: Optional[int] = None     # when typing began
        self._held: Optional[str] = None     # a note shown back once because it looked identifying
        self.stored: List[tuple] = []        # (t_us, text) of this run's notes
        self.set_run(None)

    def set_run(self, run) -> None:
        """The run notes go to; entry is possible while it records."""
        if run is not self._run:
            if self.edit.text().strip():          # typed for the last run: never file it under the next
                self._say(f"not stored (its run ended): {self.edit.text().strip()}", WARN_COLOR)
            self.edit.clear()
            self._run, self._t_us, self._held, self.stored = run, None, None, []
        ok = run is not None and run.running and run.recorder is not None
        self.edit.setEnabled(ok)
        self.button.setEnabled(ok)
        self.edit.setToolTip("stamped when you start typing, stored in events.tsv by Enter" if ok
                             else "notes are stored with a recording: start one first")

    def _say(self, text: str, color: str = "") -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {color}" if color else "")
        self.status.setVisible(bool(text))

    def _typing(self, text: str) -> None:
        run = self._run
        if not text:
            self._t_us = None
        elif self._t_us is None and run is not None and run.running and run.clock is not None:
            self._t_us = run.clock.now_us()
            self._say(f"stamped at {_seconds(run, self._t_us):.1f} s - Enter stores the note")

    def submit(self) -> None:
        import warnings

        from ..errors import ConfigError
        from ..session.ids import IdentifyingTextWarning, looks_identifying

        text = self.edit.text().strip()
        run = self._run
        if not text:
            return
        if run is None or not run.running:
            self._say("no run is recording: the note was not stored", BAD_COLOR)
            return
        why = looks_identifying(text)
        if why and self._held != text:
            self._held = text
            self._say(f"Not stored yet: {why}. Participants are pseudonymous - edit the note, or press Enter "
                      "again to store it as it is.", WARN_COLOR)
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IdentifyingTextWarning)    # the operator has seen it
                t = run.add_note(text, t_us=self._t_us)
        except (ConfigError, RuntimeError) as exc:
            self._say(f"not stored: {exc}", BAD_COLOR)
            return
        self.stored.append((t, text))
        self.edit.clear()
        self._t_us, self._held = None, None
        self._say(f"stored at {_seconds(run, t):.1f} s")


class TrialTablePanel(QtWidgets.QTableWidget):
    """Per trial: stimulus, category, status, the SAM answer and the trial-level prediction."""

    # short headers (the tooltips say the rest), so every column shows in the default layout
    COLS = ("trial", "stimulus", "category", "status", "SAM", "V/A/D", "ER", "FER")
    TIPS = ("", "", "the clip's intended category", "", "the emotion the participant reported (SAM)",
            "the participant's SAM valence / arousal / dominance (1-9)",
            "the model's whole-trial prediction from face + eyes: top class and its probability",
            "the whole-trial prediction from the face alone: top class and its probability")

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(self.COLS), parent)
        self.setHorizontalHeaderLabels(self.COLS)
        for col, tip in enumerate(self.TIPS):
            if tip:
                self.horizontalHeaderItem(col).setToolTip(tip)
        self.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.trial_predictions: Dict[int, object] = {}
        self._dirty = True

    def on_event(self, ev) -> None:
        if isinstance(ev, PredictionMade) and ev.prediction.kind == "trial":
            self.trial_predictions[int(ev.prediction.trial)] = ev.prediction
            self._dirty = True
        elif isinstance(ev, (PhaseChanged, RunStarted, RunFinished)):
            self._dirty = True

    def refresh(self, run) -> None:
        if not self._dirty:
            return
        self._dirty = False
        ctrl = run.controller
        if ctrl is None:
            self.setRowCount(0)
            return
        answers = ctrl.answers
        self.setRowCount(len(ctrl.trials))
        for row, tr in enumerate(ctrl.trials):
            spec = tr.spec
            ans = answers.get(spec.trial)
            pred = self.trial_predictions.get(spec.trial)
            vals = [str(spec.trial), spec.stimulus_id, spec.category, tr.status,
                    "" if ans is None else ans.emotion,
                    "" if ans is None else f"{ans.valence}/{ans.arousal}/{ans.dominance}",
                    "" if pred is None else f"{pred.er_top} {max(pred.er7):.2f}",
                    "" if pred is None or pred.fer7 is None else f"{pred.fer_top} {max(pred.fer7):.2f}"]
            for col, v in enumerate(vals):
                item = QtWidgets.QTableWidgetItem(v)
                if col in (2, 4) and v in EMOTION_COLORS:
                    item.setForeground(QtGui.QColor(EMOTION_COLORS[v]))
                elif col in (6, 7) and v.split(" ")[0] in EMOTION_COLORS:
                    item.setForeground(QtGui.QColor(EMOTION_COLORS[v.split(" ")[0]]))
                self.setItem(row, col, item)
