"""The participant screen and the Qt presenter that plays the session on it.

The screen is its own top-level window: black, no cursor, full screen on the chosen display
(a plain window beside the console when there is only one display). It shows the fixation cross,
the stimulus video, the rest screen and the SAM; the :class:`QtPresenter` implements the session
controller's ``Presenter`` protocol with QMediaPlayer (video with sound through QAudioOutput,
frames through a QVideoSink) and reports every presented frame with its stream index and the
session clock at that moment (``stimulus_frames.tsv``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from PyQt6 import QtCore, QtGui, QtMultimedia, QtWidgets

from .sam_dialog import SamWidget

__all__ = ["ParticipantScreen", "QtPresenter", "choose_screen", "side_by_side"]


def choose_screen(index: Optional[int], screens: Optional[Sequence[QtGui.QScreen]] = None,
                  operator: Optional[QtGui.QScreen] = None):
    """The screen for the participant: ``index`` when given (an error names the screens there
    are), else the first screen that is not the operator's; None when there is only one (then the
    participant window opens beside the console on the operator's screen, not full screen:
    :meth:`ParticipantScreen.place`)."""
    screens = list(QtGui.QGuiApplication.screens() if screens is None else screens)
    if index is not None:
        if not 0 <= index < len(screens):
            from ..errors import ConfigError

            names = ", ".join(f"{i} = {(s.name() + ' ') if s.name() else ''}{s.geometry().width()}x"
                              f"{s.geometry().height()}" for i, s in enumerate(screens))
            raise ConfigError(f"--participant-screen {index}: no such screen; there are {len(screens)}: {names} "
                              f"(numbers start at 0)")
        return screens[index] if len(screens) > 1 else None
    if len(screens) < 2:
        return None
    operator = operator or QtGui.QGuiApplication.primaryScreen()
    return next((s for s in screens if s is not operator), screens[1])


def side_by_side(area: QtCore.QRect) -> Tuple[QtCore.QRect, QtCore.QRect]:
    """One display: (the console's rectangle, the participant window's) - the left and the right
    half of ``area``."""
    half = area.width() // 2
    return (QtCore.QRect(area.x(), area.y(), half, area.height()),
            QtCore.QRect(area.x() + half, area.y(), area.width() - half, area.height()))


def _fit_window(window: QtWidgets.QWidget, rect: QtCore.QRect) -> None:
    """Put a top-level window, its frame included (when the window manager has drawn one), in ``rect``."""
    frame, inner = window.frameGeometry(), window.geometry()
    dw, dh = max(0, frame.width() - inner.width()), max(0, frame.height() - inner.height())
    window.resize(max(1, rect.width() - dw), max(1, rect.height() - dh))
    window.move(rect.topLeft())


class _Cross(QtWidgets.QWidget):
    def paintEvent(self, event) -> None:   # noqa: N802 (Qt name)
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor("black"))
        c = self.rect().center()
        arm = max(12, min(self.width(), self.height()) // 30)
        p.setPen(QtGui.QPen(QtGui.QColor("white"), max(3, arm // 5)))
        p.drawLine(c.x() - arm, c.y(), c.x() + arm, c.y())
        p.drawLine(c.x(), c.y() - arm, c.x(), c.y() + arm)
        p.end()


class _Video(QtWidgets.QWidget):
    """Paints the newest video frame, scaled to fit, on black."""

    def __init__(self) -> None:
        super().__init__()
        self.image: Optional[QtGui.QImage] = None

    def set_image(self, image: QtGui.QImage) -> None:
        self.image = image
        self.update()

    def paintEvent(self, event) -> None:   # noqa: N802 (Qt name)
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor("black"))
        if self.image is not None and not self.image.isNull():
            img = self.image.scaled(self.size(), QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                    QtCore.Qt.TransformationMode.SmoothTransformation)
            p.drawImage(QtCore.QPoint((self.width() - img.width()) // 2, (self.height() - img.height()) // 2), img)
        p.end()


class _Target(QtWidgets.QWidget):
    """A calibration/validation target: a disc that shrinks onto its centre (draws the eye to
    one spot), at normalised display coordinates."""

    SHRINK_MS = 700

    def __init__(self) -> None:
        super().__init__()
        self.point = (0.5, 0.5)
        self._t0 = 0.0
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(16)
        self._timer.timeout.connect(self.update)

    def show_point(self, x: float, y: float) -> None:
        import time

        self.point = (x, y)
        self._t0 = time.perf_counter()
        self._timer.start()
        self.update()

    def paintEvent(self, event) -> None:   # noqa: N802 (Qt name)
        import time

        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QtGui.QColor("black"))
        k = min(1.0, (time.perf_counter() - self._t0) * 1000 / self.SHRINK_MS)
        if k >= 1.0:
            self._timer.stop()
        big = max(12.0, min(self.width(), self.height()) / 18)
        r = big * (1.0 - 0.75 * k)
        c = QtCore.QPointF(self.point[0] * self.width(), self.point[1] * self.height())
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(QtGui.QColor("#E0E0E0"))
        p.drawEllipse(c, r, r)
        p.setBrush(QtGui.QColor("#C62828"))
        p.drawEllipse(c, max(2.5, r * 0.2), max(2.5, r * 0.2))
        p.end()


class _Message(QtWidgets.QLabel):
    def __init__(self) -> None:
        super().__init__("")
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet("background: black; color: #9E9E9E; font-size: 26px")
        self.setWordWrap(True)


class ParticipantScreen(QtWidgets.QWidget):
    """The participant's window (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(None, QtCore.Qt.WindowType.Window)
        self.setWindowTitle("emer_live - participant")
        self.setCursor(QtCore.Qt.CursorShape.BlankCursor)
        self.setStyleSheet("background: black")
        self.stack = QtWidgets.QStackedLayout(self)
        self.cross = _Cross()
        self.video = _Video()
        self.message = _Message()
        self.sam = SamWidget()
        self.target = _Target()
        for w in (self.cross, self.video, self.message, self.sam, self.target):
            self.stack.addWidget(w)
        self.page = "message"
        self.show_message("")

    def _show(self, widget, page: str) -> None:
        self.stack.setCurrentWidget(widget)
        self.page = page

    def show_fixation(self) -> None:
        self._show(self.cross, "fixation")

    def show_video(self) -> None:
        self._show(self.video, "stimulus")

    def show_message(self, text: str, page: str = "message") -> None:
        self.message.setText(text)
        self._show(self.message, page)

    def show_target(self, x: float, y: float) -> None:
        self.target.show_point(x, y)
        self._show(self.target, "target")

    def show_rest(self) -> None:
        self.show_message("Rest for a moment.\nThe next clip follows.", "rest")

    def show_sam(self, trial: int) -> None:
        self.sam.reset(trial)
        self._show(self.sam, "sam")
        self.sam.setFocus()

    def place(self, screen: Optional[QtGui.QScreen], *, beside: Optional[QtWidgets.QWidget] = None,
              area: Optional[QtCore.QRect] = None, size: Optional[Tuple[int, int]] = None) -> None:
        """Full screen on ``screen``. With None (one display only) a plain window on the right half
        of ``area`` - default: the available part of the screen ``beside`` (the console) is on - and
        ``beside`` moved to the left half, so neither covers the other. ``size`` alone (tests,
        tools): a plain window of that size wherever the system puts it."""
        if screen is None and size is not None and beside is None and area is None:
            self.resize(*size)
            self.show()
            return
        if screen is None:
            if area is None:
                host = beside.screen() if beside is not None else QtGui.QGuiApplication.primaryScreen()
                area = host.availableGeometry()
            left, right = side_by_side(area)
            if beside is not None:
                if beside.isMaximized() or beside.isFullScreen():
                    beside.showNormal()
                _fit_window(beside, left)
            self.show()
            _fit_window(self, right)
            return
        self.setScreen(screen)
        self.setGeometry(screen.geometry())
        self.showFullScreen()


class QtPresenter:
    """The session controller's ``Presenter`` on a :class:`ParticipantScreen`.

    Parameters
    ----------
    screen : ParticipantScreen
    clock : callable
        Returns the session clock (the run's clock exists only once the run started).
    playback_rate : float
        1.0 for sessions; tests and demos with ``time_scale`` < 1 play clips faster so they fit
        the shortened phases.
    """

    def __init__(self, screen: ParticipantScreen, *, clock: Callable[[], object], playback_rate: float = 1.0,
                 on_error: Optional[Callable[[str], None]] = None) -> None:
        self.screen = screen
        self._clock = clock
        self.player = QtMultimedia.QMediaPlayer()
        self.audio = QtMultimedia.QAudioOutput()
        self.player.setAudioOutput(self.audio)
        self.sink = QtMultimedia.QVideoSink()
        self.player.setVideoSink(self.sink)
        self.player.setPlaybackRate(float(playback_rate))
        self.sink.videoFrameChanged.connect(self._on_video_frame)
        self.player.errorOccurred.connect(self._on_player_error)
        self.on_error = on_error
        self.errors: List[str] = []
        self._loaded: Optional[str] = None
        self._trial = None
        self._on_frame = None
        self._last_index = -1
        self.frames_shown = 0

    # -- Presenter protocol --------------------------------------------------------------
    def show_fixation(self) -> None:
        self.screen.show_fixation()

    def prepare(self, trial) -> None:
        """Load the next clip during the fixation cross so playback starts without delay."""
        self._load(trial)

    def play(self, trial, on_frame, *, onset_us: int) -> None:
        self._load(trial)
        self._trial, self._on_frame, self._last_index = trial, on_frame, -1
        self.screen.show_video()
        self.player.play()

    def poll(self, now_us: int) -> None:
        """Frames are reported as Qt delivers them (``_on_video_frame``); nothing to do here."""

    def stop(self) -> None:
        self._trial = self._on_frame = None
        self.player.stop()

    def show_blank(self) -> None:
        self.screen.show_rest()

    # -- internals -------------------------------------------------------------------------
    def _load(self, trial) -> None:
        path = getattr(trial, "path", None)
        if not path or path == self._loaded:
            return
        if not Path(path).is_file():
            self._error(f"stimulus clip {path} of trial {trial.trial} is missing; the trial shows a black "
                        "screen for its duration - check the library with `emer-live stimuli check`")
            return
        self.player.setSource(QtCore.QUrl.fromLocalFile(str(Path(path).resolve())))
        self._loaded = path

    def _on_video_frame(self, frame: QtMultimedia.QVideoFrame) -> None:
        if self._on_frame is None or not frame.isValid():
            return
        index = int(round(frame.startTime() * self._fps() / 1e6))
        if index <= self._last_index:
            return                      # the sink repeats a frame on pause/seek; log each once
        self._last_index = index
        self.screen.video.set_image(frame.toImage())
        self.frames_shown += 1
        self._on_frame(index, int(self._clock().now_us()))

    def _fps(self) -> float:
        """The clip's frame rate from its own metadata (the manifest has none), else the trial's."""
        rate = self.player.metaData().value(QtMultimedia.QMediaMetaData.Key.VideoFrameRate)
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            rate = 0.0
        return rate if rate > 0 else float(getattr(self._trial, "fps", 25.0) or 25.0)

    def _on_player_error(self, error, text: str) -> None:
        self._error(f"video playback of {self._loaded}: {text or error}")

    def _error(self, text: str) -> None:
        self.errors.append(text)
        if self.on_error is not None:
            self.on_error(text)
