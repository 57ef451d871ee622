"""The participant screen and the Qt presenter that plays the session on it.

The screen is its own top-level window: black, no cursor, full screen on the chosen display
(a plain window beside the console when there is only one display). It shows the fixation cross,
the stimulus video, the rest screen and the SAM; the :class:`QtPresenter` implements the session
controller's ``Presenter`` protocol with QMediaPlayer (video with sound through QAudioOutput,
frames through a QVideoSink) and reports every frame it painted on the participant screen with
its index in the clip and the session clock at that moment (``stimulus_frames.tsv``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from PyQt6 import QtCore, QtGui, QtMultimedia, QtWidgets, sip

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
    """Paints the newest video frame on black and reports each new clip frame once it has been
    painted on the screen (``on_presented(generation, index)``, GUI thread).

    Frames are offered from the decoder's thread (:meth:`offer`), already converted and scaled
    to the widget's size there, so painting is a plain copy. A frame offered while an earlier one
    still waits to be painted replaces it: the earlier one never reaches the screen (dropped)."""

    sigNewFrame = QtCore.pyqtSignal()

    def __init__(self) -> None:
        super().__init__()
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)   # every pixel painted below
        self.image: Optional[QtGui.QImage] = None
        self.on_presented: Optional[Callable[[int, int], None]] = None
        self.grabbing = False                                 # set by ParticipantScreen.grab
        self.target_size = (self.width(), self.height())      # read by the decoder's thread
        self._lock = threading.Lock()
        self._pending: Optional[tuple] = None                 # (generation, index, image)
        self.sigNewFrame.connect(self.update)                 # queued: update() on the GUI thread

    def offer(self, generation: int, index: int, image: QtGui.QImage) -> None:
        """A frame to show next (any thread)."""
        with self._lock:
            self._pending = (generation, index, image)
        self.sigNewFrame.emit()

    def clear(self) -> None:
        """Black until the next frame (a new clip must not begin with the last one's frame)."""
        with self._lock:
            self._pending = None
        self.image = None
        self.update()

    def set_image(self, image: QtGui.QImage) -> None:
        self.image = image
        self.update()

    def resizeEvent(self, event) -> None:   # noqa: N802 (Qt name)
        self.target_size = (self.width(), self.height())
        super().resizeEvent(event)

    def paintEvent(self, event) -> None:   # noqa: N802 (Qt name)
        p = QtGui.QPainter(self)
        # a grab() (the console's mirror) paints into a pixmap: it must not take the waiting
        # frame, which has not been on the screen yet
        on_screen = not self.grabbing
        new = None
        if on_screen:
            with self._lock:
                new, self._pending = self._pending, None
            if new is not None:
                self.image = new[2]
        p.fillRect(self.rect(), QtGui.QColor("black"))
        img = self.image
        if img is not None and not img.isNull():
            if img.width() > self.width() or img.height() > self.height() or \
                    (img.width() != self.width() and img.height() != self.height()):
                # not yet scaled for this size (a resize): fit it now
                img = img.scaled(self.size(), QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                 QtCore.Qt.TransformationMode.FastTransformation)
            p.drawImage(QtCore.QPoint((self.width() - img.width()) // 2, (self.height() - img.height()) // 2), img)
        p.end()
        if new is not None and self.on_presented is not None:
            self.on_presented(new[0], new[1])


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

    def video_thumbnail(self, size: QtCore.QSize) -> Optional[QtGui.QPixmap]:
        """The clip frame on screen, scaled to ``size`` cheaply (the console's mirror while a clip
        plays: a :meth:`grab` renders the whole screen); None when no clip frame is shown."""
        img = self.video.image
        if self.page != "stimulus" or img is None or img.isNull():
            return None
        return QtGui.QPixmap.fromImage(img.scaled(size, QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                                  QtCore.Qt.TransformationMode.FastTransformation))

    def grab(self, *args) -> QtGui.QPixmap:   # noqa: D401 (Qt name)
        """QWidget.grab, without counting a frame painted into the copy as presented."""
        self.video.grabbing = True
        try:
            return super().grab(*args)
        finally:
            self.video.grabbing = False

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


_PREPARING_THREAD: Optional[QtCore.QThread] = None
_PREPARERS: list = []      # kept for the process's life: never deleted while their thread may use them


def _stop_preparing_thread() -> None:
    global _PREPARING_THREAD
    t, _PREPARING_THREAD = _PREPARING_THREAD, None
    if t is not None and t.isRunning():
        t.quit()
        t.wait(2000)


def _preparing_thread() -> QtCore.QThread:
    """The one thread that converts and scales video frames for every presenter (started once)."""
    global _PREPARING_THREAD
    if _PREPARING_THREAD is None:
        t = QtCore.QThread()
        t.setObjectName("emer_live frame preparer")
        t.start()
        # Qt aborts when a running QThread is destroyed: Python's teardown must not own it (an
        # application that quits normally stops it; any other exit ends it with the process)
        sip.transferto(t, None)
        _PREPARING_THREAD = t
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(_stop_preparing_thread)
    return _PREPARING_THREAD


class _FramePreparer(QtCore.QObject):
    """Converts and scales decoded frames on the preparing thread (not the GUI thread, which the
    console shares, and not the decoder's: ``QMediaPlayer.stop`` on the GUI thread waits for the
    decoder's thread, which must then never wait for Python's lock)."""

    def __init__(self, presenter: "QtPresenter") -> None:
        super().__init__()
        import weakref

        self._presenter = weakref.ref(presenter)

    @QtCore.pyqtSlot(QtMultimedia.QVideoFrame)
    def prepare(self, frame: QtMultimedia.QVideoFrame) -> None:
        presenter = self._presenter()
        if presenter is not None:
            presenter.prepare_frame(frame)


class QtPresenter:
    """The session controller's ``Presenter`` on a :class:`ParticipantScreen`.

    Frames take this path: QMediaPlayer decodes and paces them on its own thread and hands
    each to a QVideoSink; the sink's signal goes to a preparing thread of the presenter's own,
    where the frame is converted to an image and scaled to the screen - work the GUI thread,
    shared with the operator console, would otherwise do. The GUI thread only paints the ready
    image; once it has been painted, the frame is reported as presented
    (``on_frame(index, t_us)``: clip frame index from the frame's own time stamp, session clock
    at the paint). A frame the GUI thread had no time to paint before the next one is never
    reported: it was not presented (counted as dropped in the trial's figures).

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
        self.audio = QtMultimedia.QAudioOutput(self.player)
        self.player.setAudioOutput(self.audio)
        self.sink = QtMultimedia.QVideoSink(self.player)
        self.player.setVideoSink(self.sink)
        # Python's garbage collector must never destroy the player: its destructor waits for the
        # player's threads, which need Python's lock, so a collection run from Python deadlocked
        # the GUI thread (seen when a finished presenter was collected during a later test). Qt
        # owns it (audio output and sink are its children); it lives until the process ends.
        sip.transferto(self.player, None)
        self.player.setPlaybackRate(float(playback_rate))
        # frames go to the preparing thread, not queued behind the console's redraws
        self._preparer = _FramePreparer(self)
        self._preparer.moveToThread(_preparing_thread())
        _PREPARERS.append(self._preparer)
        self.sink.videoFrameChanged.connect(self._preparer.prepare, QtCore.Qt.ConnectionType.QueuedConnection)
        self.player.errorOccurred.connect(self._on_player_error)
        self.screen.video.on_presented = self._on_presented
        self.on_error = on_error
        self.errors: List[str] = []
        self._loaded: Optional[str] = None
        self._trial = None
        self._on_frame = None
        self._generation = 0            # one per clip start: frames of an earlier clip are not reported
        self._state = "idle"            # idle | prerolling (paused on frame 0) | playing
        self._preroll: Optional[tuple] = None
        self._early: List[tuple] = []
        self._start_timer = QtCore.QTimer()
        self._start_timer.setSingleShot(True)
        self._start_timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._start_timer.timeout.connect(self._start)
        self._clip_fps = 25.0
        self._last_prepared = -1
        self._last_index = -1
        self.frames_shown = 0

    @property
    def presenting(self) -> bool:
        """True from the clip's preparation (fixation cross) to its end: the console draws less
        then, so its paints neither delay the clip's start nor its frames."""
        return self._state != "idle"

    # -- Presenter protocol --------------------------------------------------------------
    def show_fixation(self) -> None:
        self.screen.show_fixation()

    def prepare(self, trial, *, due_us: Optional[int] = None) -> None:
        """Load the next clip during the fixation cross and let the player decode its first
        frame (paused), so the clip starts at once; with ``due_us`` (its planned onset) the clip
        starts by itself then, on a precise timer, not at the controller's next tick."""
        self._cancel_start()
        if not self._load(trial):
            return
        self._trial = trial
        self._preroll = None
        self._state = "prerolling"
        self._player_call("pause")       # from stopped: decodes and delivers frame 0, paused
        if due_us is not None:
            wait_ms = max(0, int((due_us - int(self._clock().now_us())) / 1000))
            self._start_timer.start(wait_ms)

    def play(self, trial, on_frame, *, onset_us: int) -> None:
        self._cancel_start()
        self._on_frame = on_frame
        if self._state != "playing" or self._trial is not trial:
            self._trial = trial
            if not self._load(trial):     # a missing clip: black for its duration
                self._state = "idle"
                self._player_call("stop")
                self.screen.video.clear()
                self.screen.show_video()
                return
            self._start()
        early, self._early = self._early, []
        for index, t_us in early:        # painted before the controller's tick came round
            self._report(index, t_us)

    def poll(self, now_us: int) -> None:
        """Frames are reported as they are painted (``_on_presented``); nothing to do here."""

    def stop(self) -> None:
        self._cancel_start()
        self._state = "idle"
        self._trial = self._on_frame = None
        self._preroll = None
        self._early = []
        self._player_call("stop")

    def show_blank(self) -> None:
        self.screen.show_rest()

    # -- internals -------------------------------------------------------------------------
    def _load(self, trial) -> bool:
        path = getattr(trial, "path", None)
        if not path:
            return False
        if path == self._loaded:
            return True
        if not Path(path).is_file():
            self._error(f"stimulus clip {path} of trial {trial.trial} is missing; the trial shows a black "
                        "screen for its duration - check the library with `emer-live stimuli check`")
            return False
        self._player_call("setSource", QtCore.Q_ARG(QtCore.QUrl, QtCore.QUrl.fromLocalFile(str(Path(path).resolve()))))
        self._loaded = path
        return True

    def _player_call(self, name: str, *args) -> None:
        """Call a QMediaPlayer slot from the event loop, not from Python (every call goes this way,
        so they keep their order). ``stop`` and ``setSource`` wait for the player's threads, and
        those need Python's lock to finish (they disconnect from the audio output and video sink
        made in Python), which PyQt keeps during a call made from Python: that deadlocked."""
        QtCore.QMetaObject.invokeMethod(self.player, name, QtCore.Qt.ConnectionType.QueuedConnection, *args)

    def _cancel_start(self) -> None:
        self._start_timer.stop()

    def _start(self) -> None:
        """Put the clip on the screen: its first frame (decoded while paused) at once, the rest
        as the player paces them. Frames painted before :meth:`play` wait in ``_early``."""
        if self._state == "playing":
            return
        self._generation += 1
        self._last_prepared = self._last_index = -1
        self._early = []
        self._clip_fps = self._fps()     # read here: the preparing thread must not ask the player
        self.screen.video.clear()
        self.screen.show_video()
        self._state = "playing"
        pre, self._preroll = self._preroll, None
        if pre is not None:
            self._last_prepared = pre[0]
            self.screen.video.offer(self._generation, pre[0], pre[1])
        self._player_call("play")

    def prepare_frame(self, frame: QtMultimedia.QVideoFrame) -> None:
        """The preparing thread: convert and scale the frame, offer it to the screen."""
        state = self._state
        if state == "idle" or not frame.isValid():
            return
        generation = self._generation
        fps = self._clip_fps if state == "playing" else self._fps_of_trial()
        index = int(round(frame.startTime() * fps / 1e6))
        if state == "playing" and index <= self._last_prepared:
            return                      # the sink repeats a frame on pause/seek; show each once
        image = frame.toImage()
        w, h = self.screen.video.target_size
        if w > 0 and h > 0 and (image.width(), image.height()) != (w, h):
            image = image.scaled(w, h, QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                 QtCore.Qt.TransformationMode.SmoothTransformation)
        if state == "prerolling":
            self._preroll = (index, image)          # shown the moment the clip starts
            return
        self._last_prepared = index
        self.screen.video.offer(generation, index, image)

    def _fps_of_trial(self) -> float:
        return float(getattr(self._trial, "fps", 25.0) or 25.0)

    def _on_presented(self, generation: int, index: int) -> None:
        """GUI thread: frame ``index`` has just been painted on the participant screen."""
        if generation != self._generation or self._state != "playing" or index <= self._last_index:
            return
        self._last_index = index
        t_us = int(self._clock().now_us())
        if self._on_frame is None:
            self._early.append((index, t_us))
        else:
            self._report(index, t_us)

    def _report(self, index: int, t_us: int) -> None:
        self.frames_shown += 1
        self._on_frame(index, t_us)

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
