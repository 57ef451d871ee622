"""Closing the operator console during a session (offscreen, pytest-qt; issue 21): the operator is
asked first; declined, the session runs on; confirmed, it ends aborted with each trial's own state,
and session.json, events.tsv and `info` agree."""

import json

import pytest

pytest.importorskip("pytestqt")
from PyQt6 import QtCore, QtWidgets  # noqa: E402

from emer_live.recording import SessionReader  # noqa: E402
from emer_live.ui.console import ConsoleOptions, OperatorConsole  # noqa: E402

# `clip_library` (28 placeholder clips, 2 s at 25 fps) is in tests/conftest.py


def _answer_close_question(button_text: str) -> list:
    """Click ``button_text`` in the question the close opens (a modal box); returns what it asked."""
    asked = []

    def click():
        box = QtWidgets.QApplication.activeModalWidget()
        if not isinstance(box, QtWidgets.QMessageBox):
            QtCore.QTimer.singleShot(20, click)
            return
        asked.append(box.text() + " " + box.informativeText())
        next(b for b in box.buttons() if b.text() == button_text).click()

    QtCore.QTimer.singleShot(20, click)
    return asked


@pytest.fixture
def session_console(qtbot, tmp_path, clip_library):
    # demo mode: the synthetic participant answers the SAM on screen, so trials complete unattended
    opts = ConsoleOptions(tracker="synthetic", camera="none", rate=60.0, checkpoint="", participant="P07",
                          out=str(tmp_path / "rec"), session=True, stimuli=str(clip_library), n_trials=3,
                          time_scale=0.05, calibrate=False, demo=True)
    win = OperatorConsole(opts, autostart=True, settings=QtCore.QSettings(
        str(tmp_path / "layout.ini"), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.show()
    yield win
    if win.run is not None and win.run.running:
        win.close_without_asking()


def test_closing_mid_session_asks_and_records_the_session_as_aborted(session_console, qtbot, capsys):
    win = session_console
    # trial 1 done, trial 2 under way
    qtbot.waitUntil(lambda: win.run is not None and win.run.controller is not None
                    and win.run.controller.current == 1 and win.run.controller.phase.value == "fixation",
                    timeout=60_000)
    run = win.run
    # declined: the window stays, the session goes on
    asked = _answer_close_question("Keep the session running")
    assert win.close() is False
    assert asked and "1 of 3 trials done" in asked[0] and "aborts it" in asked[0]
    assert run.running and win.isVisible()
    phase_before = run.controller.phase.value
    qtbot.waitUntil(lambda: run.controller.phase.value != phase_before, timeout=30_000)   # still moving
    assert run.controller.current == 1
    # confirmed: aborted, each trial as it stands
    asked = _answer_close_question("Abort session and close")
    assert win.close() is True
    assert len(asked) == 1 and not run.running
    assert run.status == "aborted"
    folder = run.session_dir
    r = SessionReader(folder)
    assert r.status == "aborted"
    assert [t["status"] for t in r.meta["trials"]] == ["complete", "aborted", "not_run"]
    tail = [(e["kind"], e["detail"]) for e in r.events() if e["kind"] in ("trial_aborted", "abort", "recording_stop")]
    assert [k for k, _ in tail] == ["trial_aborted", "abort", "recording_stop"]
    assert tail[1][1]["reason"] == "console window closed" and tail[2][1]["status"] == "aborted"
    from emer_live.cli import main

    capsys.readouterr()
    assert main(["info", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "aborted"

