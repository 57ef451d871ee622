"""Session setup in the operator console: who, which stimuli, which plan, which screen.

Before **Start session** the operator sees the participant pseudonym checked by the project's ID
rule (with its message), the stimulus library's ``stimuli check`` result line by line, the
participant's trial plan (order, clip, category, the counterbalancing seed and index), the
devices, and the participant screen's geometry. The panel only edits :class:`ConsoleOptions`;
the run layer validates everything again when the session starts.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from PyQt6 import QtCore, QtGui, QtWidgets

from ..errors import EmerError
from .colors import BAD_COLOR, EMOTION_COLORS, OK_COLOR

__all__ = ["SessionSetupPanel"]


class SessionSetupPanel(QtWidgets.QWidget):
    """The setup form (see the module docstring). ``options_changed(opts)`` is called with the
    edited options; :meth:`refresh_plan` re-checks the library and redraws the plan."""

    def __init__(self, options, *, options_changed: Callable, screen_info: Callable[[], str], parent=None) -> None:
        super().__init__(parent)
        self.options = options
        self._changed = options_changed
        self._screen_info = screen_info
        form = QtWidgets.QFormLayout()
        self.participant = QtWidgets.QLineEdit(options.participant)
        self.participant_msg = QtWidgets.QLabel("")
        self.participant_msg.setWordWrap(True)
        self.stimuli = QtWidgets.QLineEdit(options.stimuli)
        browse = QtWidgets.QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        check = QtWidgets.QPushButton("Check")
        check.clicked.connect(self.refresh_plan)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.stimuli, 1)
        row.addWidget(browse)
        row.addWidget(check)
        self.trials = QtWidgets.QSpinBox()
        self.trials.setRange(1, 28)
        self.trials.setValue(options.n_trials)
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(0, 2 ** 31 - 1)
        self.seed.setValue(options.seed)
        from .console import face_video_combo

        self.face_video = face_video_combo(getattr(options, "face_video", "full"))
        self.devices = QtWidgets.QLabel("")
        self.devices.setWordWrap(True)
        self.screen_label = QtWidgets.QLabel("")
        self.screen_label.setWordWrap(True)
        form.addRow("participant (pseudonym)", self.participant)
        form.addRow("", self.participant_msg)
        form.addRow("stimulus library", row)
        form.addRow("trials", self.trials)
        form.addRow("study seed", self.seed)
        form.addRow("devices", self.devices)
        form.addRow("face video kept", self.face_video)
        form.addRow("participant screen", self.screen_label)
        self.check_list = QtWidgets.QListWidget()
        self.check_list.setMaximumHeight(110)
        self.plan = QtWidgets.QTableWidget(0, 4)
        self.plan.setHorizontalHeaderLabels(("trial", "clip", "category", "duration s"))
        self.plan.verticalHeader().setVisible(False)
        self.plan.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.plan.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.plan_label = QtWidgets.QLabel("")
        self.plan_label.setWordWrap(True)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(QtWidgets.QLabel("stimulus check"))
        lay.addWidget(self.check_list)
        lay.addWidget(self.plan_label)
        lay.addWidget(self.plan, 1)
        for w in (self.participant, self.stimuli):
            w.editingFinished.connect(self._edited)
        self.trials.valueChanged.connect(self._edited)
        self.seed.valueChanged.connect(self._edited)
        self.face_video.currentIndexChanged.connect(self._edited)
        self.ok = False
        self.refresh_plan()

    def _browse(self) -> None:
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Stimulus library", self.stimuli.text())
        if d:
            self.stimuli.setText(d)
            self._edited()

    def _edited(self) -> None:
        self.options = replace(self.options, participant=self.participant.text().strip(),
                               stimuli=self.stimuli.text().strip(), n_trials=self.trials.value(),
                               seed=self.seed.value(), face_video=self.face_video.currentData())
        self._changed(self.options)
        self.refresh_plan()

    def set_enabled(self, editable: bool) -> None:
        for w in (self.participant, self.stimuli, self.trials, self.seed, self.face_video):
            w.setEnabled(editable)

    def refresh_plan(self) -> bool:
        """Check the pseudonym and the library, and show the plan; True when all is well."""
        from ..session.ids import validate_participant_id
        from ..session.plan import make_plan
        from ..session.stimuli import check_library, load_manifest

        o = self.options
        self.devices.setText(f"tracker {o.tracker}, camera {o.camera}, microphone {o.mic}; "
                             f"live model {Path(o.checkpoint).name if o.checkpoint else 'none'}")
        self.screen_label.setText(self._screen_info())
        ok = True
        try:
            validate_participant_id(o.participant)
            self.participant_msg.setText("pseudonym OK")
            self.participant_msg.setStyleSheet(f"color: {OK_COLOR}")
        except EmerError as exc:
            self.participant_msg.setText(str(exc))
            self.participant_msg.setStyleSheet(f"color: {BAD_COLOR}")
            ok = False
        self.check_list.clear()
        self.plan.setRowCount(0)
        folder = Path(o.stimuli)
        if not folder.is_dir():
            self._line(f"{folder}: no such folder - `emer-live stimuli placeholders --out {folder}` makes "
                       "placeholder clips for a dry run", bad=True)
            self.ok = False
            return False
        try:
            report = check_library(folder)
        except EmerError as exc:
            self._line(str(exc), bad=True)
            self.ok = False
            return False
        self._line(report.summary(), bad=not report.ok)
        for p in report.problems:
            self._line(str(p), bad=True)
        for w in report.warnings:
            self._line(f"warning: {w}", bad=False)
        if not report.ok:
            self.ok = False
            return False
        lib = report.library or load_manifest(folder)
        try:
            plan = make_plan(lib, participant=o.participant, n_trials=o.n_trials, seed=o.seed)
        except EmerError as exc:
            self.plan_label.setText(str(exc))
            self.ok = False
            return False
        self.plan_label.setText(f"plan for {plan.participant}: {plan.n_trials} trials, seed {plan.seed}, "
                                f"counterbalancing index {plan.participant_index} ({plan.scheme})")
        self.plan.setRowCount(len(plan.trials))
        for r, t in enumerate(plan.trials):
            clip = lib.clip(t.clip_id)
            for c, v in enumerate((str(t.number), t.clip_id, t.category, f"{clip.duration_s:g}")):
                item = QtWidgets.QTableWidgetItem(v)
                if c == 2:
                    item.setForeground(QtGui.QColor(EMOTION_COLORS[t.category]))
                self.plan.setItem(r, c, item)
        self.ok = ok
        return ok

    def _line(self, text: str, *, bad: bool) -> None:
        item = QtWidgets.QListWidgetItem(text)
        item.setForeground(QtGui.QColor(BAD_COLOR if bad else OK_COLOR))
        self.check_list.addItem(item)
