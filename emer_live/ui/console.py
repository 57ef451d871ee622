"""The operator console: the window a lab operator (or a demo audience) watches.

It owns one :class:`~emer_live.app.Run` at a time. A ~30 Hz GUI timer polls the run (which hands
its typed events to :meth:`OperatorConsole.on_event` on this thread) and redraws the visible
panels from the streams and the prediction events; devices, recorder and model work on their own
threads and never wait on a widget. Closing the window stops the run and finalises its folder; a
running session is aborted only after the operator confirms.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from PyQt6 import QtCore, QtGui, QtWidgets

from ..app import (DeviceFailed, PhaseChanged, PredictionMade, Run, RunConfig, RunError, RunFinished,
                   RunStarted, default_checkpoint)
from ..errors import EmerError
from .colors import BAD_COLOR, WARN_COLOR
from .panels import (CameraPanel, CircumplexPanel, EmotionPanel, EventLogPanel, EyePanel, HealthPanel, NoteEntry,
                     TrialTablePanel)

__all__ = ["ConsoleOptions", "OperatorConsole", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]
TICK_MS = 33
PRESENTING_CYCLE = 32           # ticks (~1 s) over which the plots redraw while a clip plays


@dataclass
class ConsoleOptions:
    """What the console runs when the operator presses Start (mirrors the CLI options)."""

    tracker: str = "synthetic"
    camera: str = "synthetic"
    mic: str = "none"
    checkpoint: str = field(default_factory=lambda: str(default_checkpoint()))
    participant: str = "P00"
    out: Optional[str] = None          # recordings root (default recordings/, demo: recordings/demo/)
    size: Tuple[int, int] = (1280, 720)
    fps: float = 30.0
    rate: float = 250.0
    seed: int = 0
    window_s: float = 8.0
    hop_s: float = 1.0
    duration_s: Optional[float] = None
    model_device: str = "auto"
    demo: bool = False                 # synthetic participant standing in for a person
    session: bool = False              # a collection session (participant screen, stimuli, SAM)
    stimuli: str = "stimuli/placeholder"
    n_trials: int = 14
    time_scale: float = 1.0
    participant_screen: Optional[int] = None
    fer_model: str = "auto"            # auto | emert | a FER checkpoint (docs/face.md)
    calibrate: bool = True             # sessions begin with calibration + validation
    calibration_points: int = 5
    consent_version: Optional[str] = None
    consent_date: Optional[str] = None
    group_readable: bool = False            # folders 0750/files 0640 instead of 0700/0600
    face_video: str = "full"                # privacy mode: full | crops | none (docs/data-rights.md)

    @property
    def out_root(self) -> Path:
        """Where runs record: ``--out``, else recordings/ (demo mode: recordings/demo/)."""
        if self.out:
            return Path(self.out)
        return REPO_ROOT / "recordings" / "demo" if self.demo else REPO_ROOT / "recordings"

    def run_config(self) -> RunConfig:
        """A live run or a collection session, recording into a new folder under one rule for both:
        ``ROOT/<participant>/S<UTC time>`` (session) or ``ROOT/<participant>/L<UTC time>`` (live)."""
        root = self.out_root
        if self.session:
            return RunConfig(kind="session", participant=self.participant, tracker=self.tracker,
                             camera=self.camera, mic=self.mic, rate=self.rate, fps=self.fps, size=tuple(self.size),
                             seed=self.seed, out_root=str(root), checkpoint=self.checkpoint or None,
                             model_device=self.model_device, window_s=self.window_s, hop_s=self.hop_s,
                             stimuli=self.stimuli, n_trials=self.n_trials, time_scale=self.time_scale,
                             fer_model=self.fer_model, calibrate=self.calibrate,
                             calibration_points=self.calibration_points, consent_version=self.consent_version,
                             consent_date=self.consent_date, group_readable=self.group_readable,
                             face_video=self.face_video)
        from ..session.ids import session_stamp, validate_participant_id

        # the folder is made by the run once everything is checked; the id is validated first
        # so a bad one never becomes part of a path
        folder_root = root / validate_participant_id(self.participant)
        stamp = session_stamp(prefix="L")
        folder = folder_root / stamp
        k = 2
        while folder.exists():
            folder = folder_root / f"{stamp}-{k}"
            k += 1
        return RunConfig(kind="live", participant=self.participant, tracker=self.tracker, camera=self.camera,
                         mic=self.mic, rate=self.rate, fps=self.fps, size=tuple(self.size), seed=self.seed,
                         duration_s=self.duration_s, out=str(folder), checkpoint=self.checkpoint,
                         model_device=self.model_device, window_s=self.window_s, hop_s=self.hop_s,
                         fer_model=self.fer_model, consent_version=self.consent_version,
                         consent_date=self.consent_date, group_readable=self.group_readable,
                         face_video=self.face_video)


#: the privacy mode's choices as the setup forms show them (docs/data-rights.md)
FACE_VIDEO_LABELS = (("full", "full face video"),
                     ("crops", "face crops only (no face video)"),
                     ("none", "no face images (measurements only)"))


def face_video_combo(current: str) -> QtWidgets.QComboBox:
    """The --face-video choice as a combo box (item data: the mode)."""
    box = QtWidgets.QComboBox()
    for mode, label in FACE_VIDEO_LABELS:
        box.addItem(label, mode)
    box.setCurrentIndex(max(0, [m for m, _ in FACE_VIDEO_LABELS].index(current)
                            if current in [m for m, _ in FACE_VIDEO_LABELS] else 0))
    box.setToolTip("what the recording keeps of the camera; with crops and none no raw face video is ever "
                   "written (docs/data-rights.md)")
    return box


class DeviceDialog(QtWidgets.QDialog):
    """Choose devices, participant and checkpoint for the next run."""

    def __init__(self, opts: ConsoleOptions, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Devices and model")
        form = QtWidgets.QFormLayout(self)
        self.tracker = QtWidgets.QComboBox(editable=True)
        self.tracker.addItems(["synthetic", "tobii", "replay:"])
        self.tracker.setCurrentText(opts.tracker)
        self.camera = QtWidgets.QComboBox(editable=True)
        self.camera.addItems(["synthetic", "0", "1", "none", "replay"])
        self.camera.setCurrentText(opts.camera)
        self.mic = QtWidgets.QComboBox(editable=True)
        self.mic.addItems(["none", "synthetic", "default"])
        self.mic.setCurrentText(opts.mic)
        self.participant = QtWidgets.QLineEdit(opts.participant)
        self.checkpoint = QtWidgets.QLineEdit(opts.checkpoint)
        self.face_video = face_video_combo(opts.face_video)
        browse = QtWidgets.QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.checkpoint)
        row.addWidget(browse)
        form.addRow("eye tracker", self.tracker)
        form.addRow("camera", self.camera)
        form.addRow("microphone", self.mic)
        form.addRow("participant (pseudonym)", self.participant)
        form.addRow("checkpoint", row)
        form.addRow("face video kept", self.face_video)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "EMERT checkpoint", str(REPO_ROOT / "models"),
                                                        "checkpoints (*.pt)")
        if path:
            self.checkpoint.setText(path)

    def apply(self, opts: ConsoleOptions) -> ConsoleOptions:
        tracker = self.tracker.currentText().strip()
        return replace(opts, tracker=tracker, camera=self.camera.currentText().strip(),
                       mic=self.mic.currentText().strip(), participant=self.participant.text().strip(),
                       checkpoint=self.checkpoint.text().strip(), demo=tracker == "synthetic",
                       face_video=self.face_video.currentData())


class OperatorConsole(QtWidgets.QMainWindow):
    """The operator console (see the module docstring).

    Parameters
    ----------
    options : ConsoleOptions
    autostart : bool
        Start a run as soon as the window shows (demo mode does).
    settings : QSettings, optional
        Where the dock layout persists (default: the user's emer_live settings).
    model : LoadedModel, optional
        The options' checkpoint, already loaded (``python main.py`` checks it before the window
        opens); runs with that checkpoint use it instead of loading it again.
    """

    def __init__(self, options: ConsoleOptions, *, autostart: bool = False,
                 settings: Optional[QtCore.QSettings] = None, model=None) -> None:
        super().__init__()
        self.options = options
        self._model = model
        self.start_error: Optional[EmerError] = None    # why the last Start was refused (bad input)
        self.run: Optional[Run] = None
        self.runs: List[Run] = []             # every run of this window (tests, the status bar)
        self.settings = settings or QtCore.QSettings("emer_live", "operator-console")
        self.setWindowTitle("emer_live - operator console")
        self.resize(1600, 980)
        self.last_error: Optional[str] = None
        self._close_confirmed = False        # close_without_asking(): no question on this close
        self._shown_once = False
        self._layout_restored = False
        self._tick_times: List[float] = []
        self._tick_no = 0

        # central: banners + the emotion view
        central = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(central)
        lay.setContentsMargins(4, 4, 4, 4)
        self.demo_banner = QtWidgets.QLabel(
            "demo: synthetic participant - a simulated person stands in for the tracker and camera; "
            "the demo checkpoint was trained on synthetic data (not a validated emotion model)")
        self.demo_banner.setStyleSheet("background: #FFF3C4; color: #5A4500; padding: 6px; font-weight: bold;"
                                       "border: 1px solid #E6C200")
        self.demo_banner.setWordWrap(True)
        self.warning_banner = QtWidgets.QLabel("")
        self.warning_banner.setWordWrap(True)
        self.warning_banner.setStyleSheet(f"background: {BAD_COLOR}; color: white; padding: 6px; font-weight: bold")
        self.warning_banner.setVisible(False)
        self.emotion = EmotionPanel()
        lay.addWidget(self.demo_banner)
        lay.addWidget(self.warning_banner)
        lay.addWidget(self.emotion, 1)
        self.setCentralWidget(central)

        # docks
        self.circumplex = CircumplexPanel()
        self.camera = CameraPanel()
        self.eyes = EyePanel()
        self.health = HealthPanel()
        self.event_log = EventLogPanel()
        self.notes = NoteEntry()
        events_box = QtWidgets.QWidget()             # the log with the operator's note entry under it
        box = QtWidgets.QVBoxLayout(events_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.event_log, 1)
        box.addWidget(self.notes)
        self.trials = TrialTablePanel()
        self.mirror = QtWidgets.QLabel("the participant screen appears here during a session")
        self.mirror.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.mirror.setMinimumSize(240, 150)
        self.mirror.setStyleSheet("background: #111; color: #888")
        self.participant_screen = None
        self.presenter = None
        self._warned: set = set()        # problems already shown in a dialog this run
        from .setup_panel import SessionSetupPanel

        self.setup = SessionSetupPanel(options, options_changed=self._setup_changed,
                                       screen_info=self._participant_screen_info)
        from .calibration_panel import CalibrationPanel

        self.calibration = CalibrationPanel()
        self.calibration.sigAccepted.connect(self._put_setup_away)
        self.docks: Dict[str, QtWidgets.QDockWidget] = {}
        A = QtCore.Qt.DockWidgetArea
        for key, title, widget, area in (
                ("camera", "Camera and face", self.camera, A.RightDockWidgetArea),
                ("circumplex", "Valence / arousal", self.circumplex, A.RightDockWidgetArea),
                ("eyes", "Eyes", self.eyes, A.BottomDockWidgetArea),
                ("health", "Device health", self.health, A.BottomDockWidgetArea),
                ("events", "Event log and notes", events_box, A.BottomDockWidgetArea),
                ("trials", "Trials", self.trials, A.BottomDockWidgetArea),
                ("participant", "Participant screen (mirror)", self.mirror, A.RightDockWidgetArea),
                ("setup", "Session setup", self.setup, A.LeftDockWidgetArea),
                ("calibration", "Calibration", self.calibration, A.LeftDockWidgetArea)):
            dock = QtWidgets.QDockWidget(title, self)
            dock.setObjectName(f"dock_{key}")         # saveState needs names
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[key] = dock
        # bottom row: eyes | health | event log + trials (tabs); right column: camera over circumplex
        H = QtCore.Qt.Orientation.Horizontal
        self.splitDockWidget(self.docks["eyes"], self.docks["health"], H)
        self.splitDockWidget(self.docks["health"], self.docks["events"], H)
        self.tabifyDockWidget(self.docks["events"], self.docks["trials"])
        self.tabifyDockWidget(self.docks["circumplex"], self.docks["participant"])
        self.docks["events"].raise_()
        self.docks["circumplex"].raise_()
        self.docks["participant"].setVisible(options.session)
        self.docks["setup"].setVisible(options.session)
        self.tabifyDockWidget(self.docks["setup"], self.docks["calibration"])
        self.docks["calibration"].setVisible(options.session and options.calibrate)
        self.docks["setup"].raise_()
        self._size_docks()
        self._default_state = self.saveState()
        self._build_actions()
        self.status_folder = QtWidgets.QLabel("no session")
        self.status_elapsed = QtWidgets.QLabel("elapsed 00:00.0")
        self.status_elapsed.setMinimumWidth(140)     # a changing text must not relayout the bar
        self.status_state = QtWidgets.QLabel("idle")
        self.status_phase = QtWidgets.QLabel("")
        sb = self.statusBar()
        sb.addWidget(self.status_state)
        sb.addWidget(self.status_phase)
        sb.addWidget(self.status_folder, 1)
        sb.addPermanentWidget(self.status_elapsed)
        self._restore_layout()
        self._apply_options()

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        if autostart:
            QtCore.QTimer.singleShot(0, self.start_run)

    def _size_docks(self) -> None:
        H, V = QtCore.Qt.Orientation.Horizontal, QtCore.Qt.Orientation.Vertical
        w, h = max(self.width(), 1200), max(self.height(), 800)
        self.resizeDocks([self.docks["camera"]], [int(0.30 * w)], H)
        self.resizeDocks([self.docks["camera"], self.docks["circumplex"]], [int(0.33 * h), int(0.33 * h)], V)
        self.resizeDocks([self.docks["eyes"]], [int(0.34 * h)], V)
        self.resizeDocks([self.docks["eyes"], self.docks["health"], self.docks["events"]],
                         [int(0.27 * w), int(0.35 * w), int(0.38 * w)], H)    # the trial table's columns fit

    def showEvent(self, event: QtGui.QShowEvent) -> None:   # noqa: N802 (Qt name)
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            if not self._layout_restored:
                # sizes apply once the window has its size (and again after the first layout pass)
                QtCore.QTimer.singleShot(0, self._size_docks)
                QtCore.QTimer.singleShot(300, self._size_docks)

    # ------------------------------------------------------------------ actions
    def _build_actions(self) -> None:
        style = self.style()
        SP = QtWidgets.QStyle.StandardPixmap
        self.act_start = QtGui.QAction(style.standardIcon(SP.SP_MediaPlay), "&Start recording", self)
        self.act_start.setShortcut("Ctrl+R")
        self.act_start.triggered.connect(self.start_run)
        self.act_stop = QtGui.QAction(style.standardIcon(SP.SP_MediaStop), "S&top", self)
        self.act_stop.setShortcut("Ctrl+.")
        self.act_stop.triggered.connect(self._stop_action)
        self.act_pause = QtGui.QAction(style.standardIcon(SP.SP_MediaPause), "&Pause session", self)
        self.act_pause.triggered.connect(self.pause_session)
        self.act_resume = QtGui.QAction(style.standardIcon(SP.SP_MediaSeekForward), "Res&ume session", self)
        self.act_resume.triggered.connect(self.resume_session)
        self.act_skip = QtGui.QAction(style.standardIcon(SP.SP_MediaSkipForward), "S&kip trial", self)
        self.act_skip.triggered.connect(self.skip_trial)
        self.act_devices = QtGui.QAction("&Devices and model...", self)
        self.act_devices.triggered.connect(self.choose_devices)
        self.act_checkpoint = QtGui.QAction("Choose &checkpoint...", self)
        self.act_checkpoint.triggered.connect(self.choose_checkpoint)
        self.act_quit = QtGui.QAction("&Quit", self)
        self.act_quit.setShortcut("Ctrl+Q")
        self.act_quit.triggered.connect(self.close)
        self.act_reset = QtGui.QAction("&Reset layout", self)
        self.act_reset.triggered.connect(self.reset_layout)
        self.act_note = QtGui.QAction("Add a &note...", self)
        self.act_note.setShortcut("Ctrl+N")
        self.act_note.triggered.connect(self.focus_note)
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addAction(self.act_checkpoint)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Run")
        m.addAction(self.act_start)
        m.addAction(self.act_stop)
        m.addAction(self.act_pause)
        m.addAction(self.act_resume)
        m.addAction(self.act_skip)
        m.addAction(self.act_note)
        m.addAction(self.act_devices)
        m = mb.addMenu("&View")
        for dock in self.docks.values():
            m.addAction(dock.toggleViewAction())
        m.addSeparator()
        m.addAction(self.act_reset)
        tb = self.addToolBar("Run")
        tb.setObjectName("toolbar_run")
        tb.addAction(self.act_start)
        tb.addAction(self.act_stop)
        tb.addAction(self.act_pause)
        tb.addAction(self.act_resume)
        tb.addAction(self.act_skip)
        tb.addSeparator()
        tb.addAction(self.act_devices)
        self.devices_label = QtWidgets.QLabel("")
        self.devices_label.setContentsMargins(8, 0, 8, 0)
        tb.addWidget(self.devices_label)
        self._update_actions()

    def focus_note(self) -> None:
        """Ctrl+N: the note entry under the event log, ready for typing."""
        dock = self.docks["events"]
        dock.setVisible(True)
        dock.raise_()
        self.notes.edit.setFocus()

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.setVisible(True)
        self._size_docks()

    def _apply_options(self) -> None:
        o = self.options
        self.demo_banner.setVisible(o.demo)
        self.devices_label.setText(f"tracker {o.tracker} | camera {o.camera} | mic {o.mic} | participant "
                                   f"{o.participant} | checkpoint {Path(o.checkpoint).name}")

    def _stop_action(self) -> None:
        """Stop: a live run ends complete; a session is aborted (its running trial marked so)."""
        if self.run is not None and self.run.controller is not None:
            self.abort_session()
        else:
            self.stop_run()

    def _update_actions(self) -> None:
        running = self.run is not None and self.run.running
        session = self.options.session
        self.act_start.setText("&Start session" if session else "&Start recording")
        self.act_stop.setText("&Abort session" if session else "S&top")
        for act in (self.act_pause, self.act_resume, self.act_skip):
            act.setVisible(session)
            act.setEnabled(running and session)
        if hasattr(self, "setup"):
            self.setup.set_enabled(not running)
        self.act_start.setEnabled(not running)
        self.act_stop.setEnabled(running)
        self.act_devices.setEnabled(not running)
        self.act_checkpoint.setEnabled(not running)
        if hasattr(self, "notes"):
            self.notes.set_run(self.run)
            self.act_note.setEnabled(self.notes.edit.isEnabled())

    def choose_devices(self) -> None:
        dlg = DeviceDialog(self.options, self)
        if dlg.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self.options = dlg.apply(self.options)
            self._apply_options()

    def choose_checkpoint(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "EMERT checkpoint", str(REPO_ROOT / "models"),
                                                        "checkpoints (*.pt)")
        if path:
            self.options = replace(self.options, checkpoint=path)
            self._apply_options()

    # ------------------------------------------------------------------ run control
    def start_run(self) -> Optional[Run]:
        if self.run is not None and self.run.running:
            return self.run
        self.start_error = None
        try:
            cfg = self.options.run_config()
            run = self._make_session_run(cfg) if cfg.kind == "session" else Run(cfg, model=self._loaded(cfg))
        except EmerError as exc:
            self.start_error = exc
            self._error_dialog("Cannot start", str(exc))
            return None
        for panel in (self.emotion, self.circumplex):
            panel.clear()
        self._warned.clear()
        self.event_log.clear()
        self.event_log.attach(run)
        run.subscribe(self.on_event)
        self.run = run
        self.runs.append(run)
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            run.start()          # loads the checkpoint, opens devices (a second or two)
        except EmerError as exc:
            self.start_error = exc
            self._error_dialog("Cannot start", str(exc))
        except Exception as exc:   # a programming error: keep the traceback visible
            self._error_dialog("Cannot start", f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self._update_actions()
        return run

    def _loaded(self, cfg: RunConfig):
        """The preloaded checkpoint when ``cfg`` asks for that file, else None (the run loads it)."""
        m = self._model
        if m is None or not cfg.checkpoint or Path(cfg.checkpoint).resolve() != Path(m.path).resolve():
            return None
        return m

    def _make_session_run(self, cfg: RunConfig) -> Run:
        """A session on the participant screen: the Qt presenter plays the clips, the SAM is
        answered there (in demo mode by the synthetic participant, visibly)."""
        from .participant import ParticipantScreen, QtPresenter, choose_screen

        if self.participant_screen is None:
            self.participant_screen = ParticipantScreen()
            self.participant_screen.sam.sigAnswered.connect(self._on_sam_answered)
        screen = choose_screen(self.options.participant_screen, operator=self.screen())
        holder = {}
        self.presenter = QtPresenter(self.participant_screen, clock=lambda: holder["run"].clock,
                                     playback_rate=1.0 / cfg.time_scale, on_error=self._presenter_error)
        run = Run(cfg, presenter=self.presenter, sam_source=None, model=self._loaded(cfg))
        holder["run"] = run
        self.participant_screen.place(screen, beside=self)
        self.docks["participant"].setVisible(True)
        self.docks["participant"].raise_()
        return run

    def _setup_changed(self, opts) -> None:
        self.options = replace(self.options, participant=opts.participant, stimuli=opts.stimuli,
                               n_trials=opts.n_trials, seed=opts.seed, face_video=opts.face_video)
        self._apply_options()

    def _participant_screen_info(self) -> str:
        from .participant import choose_screen

        try:
            screen = choose_screen(self.options.participant_screen, operator=self.screen())
        except EmerError as exc:
            return str(exc)
        if screen is None:
            s = self.screen()
            g = s.geometry()
            return (f"one display only ({s.name()} {g.width()}x{g.height()}): the participant window opens "
                    "on the right half, the console on the left half, not full screen")
        g, mm = screen.geometry(), screen.physicalSize()
        return (f"{screen.name()}: {g.width()}x{g.height()} px at ({g.x()}, {g.y()}), "
                f"{mm.width():.0f}x{mm.height():.0f} mm, full screen")

    def skip_trial(self) -> None:
        if self.run is not None and self.run.controller is not None:
            self.run.controller.skip_trial("operator")

    def _on_sam_answered(self, answer, response_ms: dict) -> None:
        run = self.run
        if run is None or run.controller is None or run.controller.phase.value != "sam":
            return
        try:
            run.submit_sam(answer, response_ms=response_ms)
        except Exception as exc:        # e.g. the session was aborted meanwhile
            self._error_dialog("SAM not stored", f"{type(exc).__name__}: {exc}")

    def _presenter_error(self, text: str) -> None:
        self.event_log.log(f"STIMULUS PROBLEM: {text}")
        self.statusBar().showMessage(text, 20000)
        self._error_dialog("Stimulus problem", text + "\n\nThe session continues.")

    def pause_session(self) -> None:
        if self.run is not None and self.run.controller is not None:
            self.run.controller.pause()

    def resume_session(self) -> None:
        if self.run is not None and self.run.controller is not None:
            self.run.controller.resume()

    def abort_session(self) -> None:
        if self.run is not None and self.run.running:
            self.run.stop("operator aborted the session")
            self._finish_now(self.run)

    def stop_run(self, *, reason: str = "operator pressed Stop") -> None:
        """End the run as complete (the operator's normal end) and finalise its folder."""
        run = self.run
        if run is None or not run.running:
            return
        run.stop(reason, status="complete")
        self._finish_now(run)

    def _finish_now(self, run: Run, timeout_s: float = 90.0) -> None:
        t0 = time.monotonic()
        while run.poll() and time.monotonic() - t0 < timeout_s:
            QtCore.QThread.msleep(20)
        self._update_actions()

    def _error_dialog(self, title: str, text: str) -> None:
        self.last_error = text
        self.event_log.log(f"ERROR: {text}")
        if QtWidgets.QApplication.platformName() in ("offscreen", "minimal"):
            return            # no one to see it; the log and the status bar show it
        # not modal: the run goes on (the GUI timer keeps polling) while the operator reads
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Critical, title, text,
                                    QtWidgets.QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    # ------------------------------------------------------------------ events and redraw
    def on_event(self, ev) -> None:
        """A run event, on the GUI thread (delivered by Run.poll)."""
        run = self.run
        if isinstance(ev, PredictionMade):
            p = ev.prediction
            t_s = (p.t_end_us - (run.t_origin_us or 0)) / 1e6
            self.emotion.add(p, t_s)
            self.circumplex.add(p)
        elif isinstance(ev, DeviceFailed):
            self.statusBar().showMessage(f"device {ev.device} failed: {ev.error} - the run {ev.action}", 15000)
            what = {"stopped": "The recording stopped; what was recorded is kept.",
                    "aborted": "The session was aborted; the trials done so far are kept complete.",
                    "continues": "Recognition goes on with the devices that are left."}[ev.action]
            self._error_dialog("Device failed", f"Device {ev.device} failed: {type(ev.error).__name__}: {ev.error}\n\n"
                               f"{what}\nCheck its cable and power (docs/hardware.md), then start a new run.")
        elif isinstance(ev, RunError):
            self.statusBar().showMessage(f"error: {ev}", 15000)
        elif isinstance(ev, RunFinished):
            self._update_actions()
            if self.options.session:
                self.docks["setup"].setVisible(True)     # ready for the next session
                self.docks["setup"].raise_()
        elif isinstance(ev, RunStarted):
            self.status_folder.setText(ev.session_dir or "not recording")
            self.emotion.set_fer_source(run.fer_source)
        elif isinstance(ev, PhaseChanged):
            self._on_phase(ev)
        for panel in (self.health, self.event_log, self.trials):
            panel.on_event(ev)

    def _on_phase(self, ev) -> None:
        screen, run = self.participant_screen, self.run
        if screen is None or run is None or run.controller is None:
            return
        if ev.phase == "calibration":
            self.docks["calibration"].setVisible(True)
            self.docks["calibration"].raise_()
            self.calibration.begin(run, screen, points=self.options.calibration_points)
            if self.options.demo:     # unattended demo: accept the first pass a moment after it ends
                self._auto_accept_calibration()
        elif ev.phase == "baseline":
            self._put_setup_away()
        elif ev.phase == "sam" and ev.trial is not None:
            screen.show_sam(ev.trial)
            if self.options.demo and run.phantom is not None:   # demo: the phantom answers on screen
                from ..session.sam import SamAnswer

                screen.sam.play_answer(SamAnswer(**run.phantom.sam_answer(ev.trial)))
        elif ev.phase == "done":
            screen.show_message("Thank you - the session is over.", "done")
        elif ev.phase == "aborted":
            screen.show_message("The session was stopped. Please wait for the experimenter.", "aborted")
        elif ev.phase == "paused":
            screen.show_message("Short pause. Please wait.", "paused")

    def _put_setup_away(self) -> None:
        """Once calibration is accepted (or a session starts without it) the set-up and calibration
        docks close so the plots get their room; View reopens them, the session's end brings the
        set-up back."""
        for key in ("calibration", "setup"):
            self.docks[key].setVisible(False)

    def _auto_accept_calibration(self) -> None:
        def check():
            cal = self.calibration
            if cal.accepted or self.run is None or not self.run.running:
                return
            if (cal.passes >= 1 and cal.accept_btn.isEnabled()) or cal.failed is not None:
                # a failed pass in an unattended demo is recorded as such and the session goes on
                QtCore.QTimer.singleShot(2000, lambda: cal.accept() if not cal.accepted else None)
                return
            QtCore.QTimer.singleShot(200, check)

        QtCore.QTimer.singleShot(200, check)

    def refresh_mirror(self, presenting: bool = False) -> None:
        """The participant screen's small copy in its dock (~2 Hz from the timer; once a second
        during a clip, when it takes the clip frame on screen: a grab renders the whole screen)."""
        if self.participant_screen is not None and self.docks["participant"].isVisible():
            shot = self.participant_screen.video_thumbnail(self.mirror.size()) if presenting else None
            if shot is None:
                shot = self.participant_screen.grab().scaled(
                    self.mirror.size(), QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                    QtCore.Qt.TransformationMode.FastTransformation)
            self.mirror.setPixmap(shot)

    def _session_status(self, run) -> str:
        ctrl = run.controller
        if ctrl is None:
            return ""
        n = len(ctrl.trials)
        k = ctrl.current + 1 if ctrl.trial is not None else 0
        text = f"phase {ctrl.phase.value} | trial {k}/{n}"
        end = ctrl.phase_end_us
        if end is not None and run.clock is not None and run.running:
            text += f" | {max(0.0, (end - run.clock.now_us()) / 1e6):.1f} s left"
        return text

    def tick(self) -> None:
        """The GUI timer: poll the run, then redraw what is visible."""
        self._tick_times.append(time.perf_counter())
        if len(self._tick_times) > 300:
            del self._tick_times[:150]
        run = self.run
        if run is None:
            return
        try:
            run.poll()
        except Exception as exc:
            self._error_dialog("Run failed", f"{type(exc).__name__}: {exc}")
            self._update_actions()
        # Spread the redraws over ticks so no single tick paints everything: predictions come
        # once a hop, so the emotion views redraw only then; the traces at ~10 Hz, the camera at
        # ~15 Hz, the numbers at ~2 Hz.
        self._tick_no += 1
        k = self._tick_no
        # While a clip plays on the participant screen (same GUI thread), the plots redraw one at
        # a time, each about once a second, and the mirror is not grabbed: a long paint here
        # delays the clip's frames (docs/performance.md, "Stimulus presentation").
        presenting = self.presenter is not None and self.presenter.presenting
        slot = k % PRESENTING_CYCLE if presenting else None
        if slot in (None, 0):
            self.emotion.refresh()
        if self.docks["circumplex"].isVisible() and slot in (None, 8):
            self.circumplex.refresh()
        if (k % 3 == 0 if slot is None else slot == 16) and self.docks["eyes"].isVisible():
            self.eyes.refresh(run)
        if (k % 2 == 1 if slot is None else slot == 24) and self.docks["camera"].isVisible():
            self.camera.refresh(run)
        if (k % 15 == 7) if slot is None else slot == 7:
            self.health.refresh(run)
            if self.docks["trials"].isVisible():
                self.trials.refresh(run)
        problems = self.health.problems
        low_disk = [p for p in problems if "LOW DISK" in p]
        if low_disk and "disk" not in self._warned:
            self._warned.add("disk")
            self._error_dialog("Disk nearly full", low_disk[0] + f"\n\nFree space on the disk of {run.session_dir} "
                               "now; when it is full the recording stops and keeps what was written.")
        self.warning_banner.setVisible(bool(problems))
        if problems:
            self.warning_banner.setText("WARNING: " + "; ".join(problems))
        self.status_state.setText(run.state.value if run.status is None else f"finished: {run.status}")
        self.status_phase.setText(self._session_status(run))
        if (slot == 12) if presenting else (k % 15 == 3):
            self.refresh_mirror(presenting)
        self.status_state.setStyleSheet("" if run.status in (None, "complete") else f"color: {WARN_COLOR}")
        el = run.elapsed_s
        self.status_elapsed.setText(f"elapsed {int(el // 60):02d}:{el % 60:04.1f}")

    # ------------------------------------------------------------------ layout and closing
    def _restore_layout(self) -> None:
        geo = self.settings.value("geometry")
        state = self.settings.value("state")
        if isinstance(geo, QtCore.QByteArray):
            self.restoreGeometry(geo)
        if isinstance(state, QtCore.QByteArray):
            self._layout_restored = self.restoreState(state)

    def save_layout(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState())
        self.settings.sync()

    def close_without_asking(self) -> bool:
        """Close even during a session, without the confirmation (``--quit-after``,
        ``--quit-when-done``: the operator asked for the end on the command line)."""
        self._close_confirmed = True
        return self.close()

    def confirm_close(self) -> bool:
        """Ask before a window close aborts a running session (True: abort and close). The
        session goes on while the question is open (the GUI timer keeps polling it)."""
        run = self.run
        ctrl = run.controller
        n, k = len(ctrl.trials), sum(t.status in ("complete", "skipped") for t in ctrl.trials)
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
        box.setWindowTitle("Abort the session?")
        box.setText(f"A session is running: {k} of {n} trials done, phase {ctrl.phase.value}.")
        box.setInformativeText("Closing the console aborts it: trials done stay complete, the running trial is "
                               "marked aborted, the rest not run. The session is recorded as aborted.")
        abort = box.addButton("Abort session and close", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep the session running", QtWidgets.QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.exec()
        return box.clickedButton() is abort

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:   # noqa: N802 (Qt name)
        """Closing stops the devices and finalises the recording. A running session is aborted
        (each trial keeps its own state) after the operator confirms; declined, it runs on. A
        live run ends complete (closing is its normal end, as Stop is)."""
        run = self.run
        asked = self._close_confirmed
        self._close_confirmed = False
        if run is not None and run.running and run.controller is not None and not asked:
            if not self.confirm_close():
                event.ignore()
                return
        self.timer.stop()
        if run is not None and run.running:      # it may have ended while the question was open
            if run.controller is not None:
                run.stop("console window closed")
            else:
                run.stop("console window closed", status="complete")
            self._finish_now(run)
        self.save_layout()
        if self.participant_screen is not None:
            self.participant_screen.close()
        super().closeEvent(event)

    def screenshot(self, path) -> Path:
        """Save what the window shows now as an image (PNG by the file name)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab().save(str(path)):
            raise OSError(f"could not write the screenshot {path}")
        return path
