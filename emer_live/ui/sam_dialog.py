"""The Self-Assessment Manikin (SAM) the participant answers after each clip.

Three rows - valence, arousal, dominance - each with five manikin figures drawn here by the app
(the original 1994 drawings carry no open licence) and nine answer points on and between them,
then the seven emotion categories and an optional note. Nothing is pre-selected; **Confirm**
works only when every row and the category are answered.

Keyboard: digits 1-9 answer the current rating row and move to the next; on the category row
digits 1-7 pick a category; Up/Down (or Tab) move between rows; Enter confirms. The mouse works
on every target; targets are large.

Response times (ms from the moment the SAM was shown to each row's last answer) are reported
with the answer; the session logs them in events.tsv (``sam_answered``), while sam.tsv keeps the
columns the headless path writes.
"""

from __future__ import annotations

import math
import time
from typing import Dict, List, Optional

from PyQt6 import QtCore, QtGui, QtWidgets

from ..labels import ER7_CLASSES
from ..session.sam import SamAnswer
from .colors import EMOTION_COLORS

__all__ = ["SamWidget", "ROWS"]

ROWS = ("valence", "arousal", "dominance")
_ROW_TEXT = {"valence": "How pleasant did you feel?  (unhappy ... happy)",
             "arousal": "How excited did you feel?  (calm ... excited)",
             "dominance": "How much in control did you feel?  (controlled ... in control)"}


def draw_manikin(p: QtGui.QPainter, rect: QtCore.QRectF, dimension: str, level: float) -> None:
    """One manikin in ``rect``; ``level`` 0..1 from the scale's low to its high end.

    valence: the mouth turns from a frown to a smile and the brows lift; arousal: eyes widen and
    a jagged burst grows behind the body; dominance: the figure grows from small to large."""
    p.save()
    scale = 0.55 + 0.45 * level if dimension == "dominance" else 1.0
    cx, base = rect.center().x(), rect.bottom() - 2
    h = rect.height() * 0.92 * scale
    w = rect.width() * 0.62 * scale
    head_r = h * 0.2
    head_c = QtCore.QPointF(cx, base - h + head_r + 1)
    line = QtGui.QPen(QtGui.QColor("#EEEEEE"), max(1.5, rect.width() / 45))
    if dimension == "arousal" and level > 0.05:
        # the burst: a star whose spikes grow with arousal
        n, r_in = 14, h * 0.28
        r_out = r_in + h * 0.28 * level
        body_c = QtCore.QPointF(cx, base - h * 0.45)
        pts = [QtCore.QPointF(body_c.x() + (r_out if k % 2 == 0 else r_in) * math.cos(k * math.pi / n),
                              body_c.y() + (r_out if k % 2 == 0 else r_in) * math.sin(k * math.pi / n))
               for k in range(2 * n)]
        p.setPen(QtGui.QPen(QtGui.QColor("#777777"), 1))
        p.setBrush(QtGui.QColor(90, 90, 90, 150))
        p.drawPolygon(QtGui.QPolygonF(pts))
    p.setPen(line)
    p.setBrush(QtGui.QColor("#3A3A3A"))
    body = QtCore.QRectF(cx - w / 2, head_c.y() + head_r * 0.9, w, base - head_c.y() - head_r * 0.9)
    p.drawRoundedRect(body, w * 0.3, w * 0.3)
    p.drawEllipse(head_c, head_r, head_r)
    # eyes (wider with arousal), brows (raised with valence), mouth (smile with valence)
    eye_dx, eye_y = head_r * 0.4, head_c.y() - head_r * 0.15
    eye_r = head_r * (0.09 + (0.12 * level if dimension == "arousal" else 0.06))
    p.setBrush(QtGui.QColor("#EEEEEE"))
    for sx in (-1, 1):
        p.drawEllipse(QtCore.QPointF(cx + sx * eye_dx, eye_y), eye_r, eye_r)
    val = (level - 0.5) * 2 if dimension == "valence" else 0.0
    brow_y = eye_y - head_r * (0.3 + 0.08 * val)
    for sx in (-1, 1):
        inner = QtCore.QPointF(cx + sx * eye_dx * 0.45, brow_y + head_r * 0.1 * -val)
        outer = QtCore.QPointF(cx + sx * eye_dx * 1.5, brow_y)
        p.drawLine(inner, outer)
    mouth_w, mouth_y = head_r * 0.9, head_c.y() + head_r * 0.45
    path = QtGui.QPainterPath(QtCore.QPointF(cx - mouth_w / 2, mouth_y))
    path.quadTo(QtCore.QPointF(cx, mouth_y + head_r * 0.5 * val), QtCore.QPointF(cx + mouth_w / 2, mouth_y))
    p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
    p.drawPath(path)
    p.restore()


class SamWidget(QtWidgets.QWidget):
    """The SAM for one trial (see the module docstring). Emits :attr:`sigAnswered` with
    ``(SamAnswer, response_ms)`` once the participant confirms."""

    sigAnswered = QtCore.pyqtSignal(object, dict)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.setAutoFillBackground(True)
        pal = self.palette()
        pal.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor("black"))
        pal.setColor(QtGui.QPalette.ColorRole.WindowText, QtGui.QColor("#EEEEEE"))
        self.setPalette(pal)
        self.note = QtWidgets.QLineEdit()
        self.note.setPlaceholderText("optional note (no names)")
        self.note.setMaxLength(200)
        self.note.setStyleSheet("background: #222; color: #EEE; font-size: 16px; padding: 6px")
        self.confirm = QtWidgets.QPushButton("Confirm")
        self.confirm.setMinimumHeight(48)
        self.confirm.setStyleSheet("QPushButton { font-size: 20px; background: #2E7D32; color: white; }"
                                   "QPushButton:disabled { background: #444; color: #888; }")
        self.confirm.clicked.connect(self.try_confirm)
        self.hint = QtWidgets.QLabel("")
        self.hint.setStyleSheet("color: #BBBBBB; font-size: 14px")
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.note, 3)
        bottom.addWidget(self.confirm, 1)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addStretch(1)
        lay.addWidget(self.hint)
        lay.addLayout(bottom)
        self.trial: Optional[int] = None
        self.reset(None)

    # ------------------------------------------------------------------ state
    def reset(self, trial: Optional[int]) -> None:
        """A fresh SAM for ``trial``: nothing selected, the clock for response times restarts."""
        self.trial = trial
        self.values: Dict[str, Optional[int]] = {r: None for r in ROWS}
        self.emotion: Optional[str] = None
        self.response_ms: Dict[str, float] = {}
        self.current = 0                    # 0..2 rating rows, 3 = category row
        self.note.clear()
        self._t_shown = time.perf_counter()
        self._update()

    @property
    def complete(self) -> bool:
        return all(v is not None for v in self.values.values()) and self.emotion is not None

    def set_value(self, row: str, value: int) -> None:
        if row not in ROWS or not 1 <= int(value) <= 9:
            raise ValueError(f"SAM {row}: a rating is 1..9")
        self.values[row] = int(value)
        self.response_ms[row] = (time.perf_counter() - self._t_shown) * 1e3
        self._update()

    def set_emotion(self, emotion: str) -> None:
        if emotion not in ER7_CLASSES:
            raise ValueError(f"SAM emotion {emotion!r}: one of {', '.join(ER7_CLASSES)}")
        self.emotion = emotion
        self.response_ms["emotion"] = (time.perf_counter() - self._t_shown) * 1e3
        self._update()

    def answer(self) -> SamAnswer:
        if not self.complete:
            raise ValueError("the SAM is not complete")
        return SamAnswer(valence=self.values["valence"], arousal=self.values["arousal"],
                         dominance=self.values["dominance"], emotion=self.emotion, note=self.note.text().strip())

    def try_confirm(self) -> bool:
        """Confirm if complete (emits sigAnswered); otherwise say what is missing."""
        if not self.complete:
            missing = [r for r in ROWS if self.values[r] is None] + ([] if self.emotion else ["emotion"])
            self.hint.setText("Please answer: " + ", ".join(missing))
            return False
        ans = self.answer()
        self.sigAnswered.emit(ans, dict(self.response_ms))
        return True

    def _update(self) -> None:
        self.confirm.setEnabled(self.complete)
        if self.complete:
            self.hint.setText("Press Enter or Confirm")
        else:
            self.hint.setText("Keys 1-9 answer the highlighted row (1-7 on the emotion row); Up/Down move")
        self.update()

    # ------------------------------------------------------------------ geometry
    def _layout(self):
        """Rectangles of every target: rows[row] = (label_rect, [manikin rects], [9 point rects]),
        emotions = [7 rects]."""
        W, H = self.width(), self.height()
        top, usable = 20.0, H - 150.0
        row_h = usable * 0.24
        margin = W * 0.08
        rows = {}
        for i, r in enumerate(ROWS):
            y = top + i * row_h
            label = QtCore.QRectF(margin, y, W - 2 * margin, 24)
            man_h = row_h - 24 - 46
            span = W - 2 * margin
            pts = [QtCore.QRectF(margin + span * (k + 0.5) / 9 - 19, y + 24 + man_h + 4, 38, 38) for k in range(9)]
            mans = [QtCore.QRectF(margin + span * (k + 0.5) / 9 - man_h * 0.45, y + 24, man_h * 0.9, man_h)
                    for k in range(0, 9, 2)]
            rows[r] = (label, mans, pts)
        y = top + 3 * row_h + 6
        span = W - 2 * margin
        emo = [QtCore.QRectF(margin + span * k / 7 + 4, y + 26, span / 7 - 8, min(56.0, usable * 0.2)) for k in range(7)]
        return rows, QtCore.QRectF(margin, y, span, 24), emo

    def paintEvent(self, event) -> None:   # noqa: N802 (Qt name)
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        rows, emo_label, emo = self._layout()
        font = p.font()
        font.setPointSize(13)
        p.setFont(font)
        for i, r in enumerate(ROWS):
            label, mans, pts = rows[r]
            active = i == self.current
            p.setPen(QtGui.QColor("#FFD54F" if active else "#DDDDDD"))
            p.drawText(label, QtCore.Qt.AlignmentFlag.AlignLeft, ("> " if active else "") + _ROW_TEXT[r])
            for k, rect in enumerate(mans):
                draw_manikin(p, rect, r, k / 4)
            for k, rect in enumerate(pts):
                chosen = self.values[r] == k + 1
                p.setPen(QtGui.QPen(QtGui.QColor("#FFD54F" if chosen else "#AAAAAA"), 3 if chosen else 1.5))
                p.setBrush(QtGui.QColor("#FFD54F") if chosen else QtCore.Qt.BrushStyle.NoBrush)
                p.drawEllipse(rect.center(), 12, 12)
                p.setPen(QtGui.QColor("#111111" if chosen else "#888888"))
                p.drawText(rect, QtCore.Qt.AlignmentFlag.AlignCenter, str(k + 1))
        active = self.current == 3
        p.setPen(QtGui.QColor("#FFD54F" if active else "#DDDDDD"))
        p.drawText(emo_label, QtCore.Qt.AlignmentFlag.AlignLeft,
                   ("> " if active else "") + "Which emotion did you feel most?")
        for k, rect in enumerate(emo):
            name = ER7_CLASSES[k]
            chosen = self.emotion == name
            col = QtGui.QColor(EMOTION_COLORS[name])
            p.setPen(QtGui.QPen(QtGui.QColor("white") if chosen else col, 4 if chosen else 2))
            p.setBrush(col if chosen else QtGui.QColor(30, 30, 30))
            p.drawRoundedRect(rect, 8, 8)
            p.setPen(QtGui.QColor("black" if chosen else "#EEEEEE"))
            p.drawText(rect, QtCore.Qt.AlignmentFlag.AlignCenter, f"{k + 1}  {name}")
        p.end()

    # ------------------------------------------------------------------ input
    def mousePressEvent(self, event) -> None:   # noqa: N802 (Qt name)
        pos = event.position()
        rows, _, emo = self._layout()
        for i, r in enumerate(ROWS):
            label, mans, pts = rows[r]
            for k, rect in enumerate(pts):
                if rect.adjusted(-6, -6, 6, 6).contains(pos):
                    self.current = min(i + 1, 3)
                    self.set_value(r, k + 1)
                    return
            for k, rect in enumerate(mans):     # a click on a manikin picks the point below it
                if rect.contains(pos):
                    self.current = min(i + 1, 3)
                    self.set_value(r, 2 * k + 1)
                    return
        for k, rect in enumerate(emo):
            if rect.contains(pos):
                self.current = 3
                self.set_emotion(ER7_CLASSES[k])
                return

    def keyPressEvent(self, event) -> None:   # noqa: N802 (Qt name)
        key = event.key()
        K = QtCore.Qt.Key
        if K.Key_1 <= key <= K.Key_9:
            digit = key - K.Key_0
            if self.current < 3:
                self.set_value(ROWS[self.current], digit)
                self.current += 1
            elif digit <= 7:
                self.set_emotion(ER7_CLASSES[digit - 1])
            self._update()
        elif key in (K.Key_Down, K.Key_Tab):
            self.current = min(self.current + 1, 3)
            self._update()
        elif key in (K.Key_Up, K.Key_Backtab):
            self.current = max(self.current - 1, 0)
            self._update()
        elif key in (K.Key_Return, K.Key_Enter):
            self.try_confirm()
        else:
            super().keyPressEvent(event)

    def focusNextPrevChild(self, next_: bool) -> bool:   # noqa: N802 (Qt name): Tab moves rows
        if self.note.hasFocus() or self.confirm.hasFocus():
            return super().focusNextPrevChild(next_)
        self.current = min(self.current + 1, 3) if next_ else max(self.current - 1, 0)
        self._update()
        return True

    # ------------------------------------------------------------------ demo
    def play_answer(self, answer: SamAnswer, *, step_ms: int = 450) -> None:
        """Enter ``answer`` visibly, one mark after another, then confirm (demo mode: the
        synthetic participant answers on screen so an audience sees the dialog work)."""
        steps: List = [("valence", answer.valence), ("arousal", answer.arousal),
                       ("dominance", answer.dominance), ("emotion", answer.emotion)]
        trial = self.trial

        def do(i: int) -> None:
            if self.trial != trial:     # a new trial began meanwhile
                return
            if i == len(steps):
                self.try_confirm()
                return
            row, value = steps[i]
            if row == "emotion":
                self.current = 3
                self.set_emotion(value)
            else:
                self.current = min(ROWS.index(row) + 1, 3)
                self.set_value(row, value)
            QtCore.QTimer.singleShot(step_ms, lambda: do(i + 1))

        QtCore.QTimer.singleShot(step_ms, lambda: do(0))
