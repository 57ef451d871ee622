"""The operator console (offscreen, pytest-qt): demo mode end to end on the run layer."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch

pytest.importorskip("pytestqt")
from PyQt6 import QtCore  # noqa: E402

from emer_live.labels import ER7_CLASSES  # noqa: E402
from emer_live.recording import SessionReader  # noqa: E402
from emer_live.ui.console import ConsoleOptions, OperatorConsole  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def console(qtbot, tmp_path, random_checkpoint):
    opts = ConsoleOptions(tracker="synthetic", camera="synthetic", checkpoint=str(random_checkpoint),
                          out=str(tmp_path / "rec"), size=(320, 240), fps=15.0, rate=250.0, window_s=4.0,
                          hop_s=1.0, model_device="cpu", demo=True)
    settings = QtCore.QSettings(str(tmp_path / "layout.ini"), QtCore.QSettings.Format.IniFormat)
    win = OperatorConsole(opts, autostart=True, settings=settings)
    qtbot.addWidget(win)
    win.show()
    yield win
    if win.run is not None and win.run.running:
        win.close()


def _predictions(win):
    return win.emotion.n_points


def test_demo_console_shows_predictions_health_and_finalises(console, qtbot, tmp_path):
    win = console
    assert win.demo_banner.isVisible() and "demo: synthetic participant" in win.demo_banner.text()
    got = []
    win.run.subscribe(lambda ev: got.append(ev.prediction) if type(ev).__name__ == "PredictionMade" else None)
    qtbot.waitUntil(lambda: _predictions(win) >= 4, timeout=90_000)
    # the plots hold exactly the predictions that arrived, as drawn data
    win.emotion.refresh()
    preds = [p for p in got if p.kind == "window"]
    n = win.emotion.n_points
    x, y = win.emotion.er_curves["sadness"].getData()
    assert len(x) == n and n >= len(preds) >= 3
    for p in preds:
        k = int(np.argmin(np.abs(x - (p.t_end_us - win.run.t_origin_us) / 1e6)))
        for i, name in enumerate(ER7_CLASSES):
            assert win.emotion.er_curves[name].getData()[1][k] == pytest.approx(p.er7[i], abs=1e-6)
            assert win.emotion.fer_curves[name].getData()[1][k] == pytest.approx(p.fer7[i], abs=1e-6)
    gx, gy = win.emotion.gap_curve.getData()
    assert len(gx) == n and np.nanmax(gy) <= 1.0
    # the other live views are populated
    qtbot.waitUntil(lambda: win.camera.n_crops == 8 and win.camera.has_box, timeout=30_000)
    assert win.camera.preview.pixmap() is not None and not win.camera.preview.pixmap().isNull()
    assert len(win.eyes.left.getData()[0]) > 100
    assert 0.5 < win.eyes.valid_fraction <= 1.0
    win.circumplex.refresh()
    assert len(win.circumplex.er_line.getData()[0]) >= 3
    # health: effective rates within 5 % of nominal (from the streams' own time stamps)
    qtbot.wait(600)
    rates = dict(win.health.rates)
    assert abs(rates["gaze"] - 250.0) / 250.0 < 0.05, rates
    assert abs(rates["camera"] - 15.0) / 15.0 < 0.05, rates
    assert not win.health.problems, win.health.problems
    # an operator note (Ctrl+N focuses the entry under the event log) goes into events.tsv
    win.act_note.trigger()
    qtbot.keyClicks(win.notes.edit, "participant adjusted the chair")
    qtbot.keyClick(win.notes.edit, QtCore.Qt.Key.Key_Return)
    assert len(win.notes.stored) == 1
    qtbot.waitUntil(lambda: "operator: participant adjusted the chair" in win.event_log.toPlainText(), timeout=5000)
    # closing the window stops the devices and finalises the session folder
    folder = win.run.session_dir
    win.close()
    assert [e["detail"]["text"] for e in SessionReader(folder).events()
            if e["kind"] == "note" and e["detail"].get("source") == "operator"] == ["participant adjusted the chair"]
    meta = json.loads((folder / "session.json").read_text())
    assert meta["status"] == "complete"
    assert not win.run.running and all(not d.running for d in win.run.devices.all)
    r = SessionReader(folder)
    assert r.summary()["streams"]["gaze"]["samples"] > 1000
    tsv = (folder / "predictions.tsv").read_text().splitlines()
    assert len(tsv) - 1 >= len(preds)


def test_tracker_stop_shows_a_visible_warning(console, qtbot):
    win = console
    qtbot.waitUntil(lambda: win.run is not None and win.run.running and win.run.elapsed_s > 2, timeout=60_000)
    assert not win.warning_banner.isVisible()
    win.run.devices.tracker.stop()          # injected fault: the tracker stops delivering
    qtbot.waitUntil(lambda: win.warning_banner.isVisible(), timeout=10_000)
    assert "gaze" in win.warning_banner.text() and "NO DATA" in win.warning_banner.text()
    assert any("gaze" in p for p in win.health.problems)
    row = [win.health.table.item(r, 0).text() for r in range(win.health.table.rowCount())].index("gaze")
    state = win.health.table.item(row, win.health.table.columnCount() - 1)
    assert "NO DATA" in state.text() and state.foreground().color().name().lower() == "#c62828"


def test_layout_persists(qtbot, tmp_path, random_checkpoint):
    opts = ConsoleOptions(checkpoint=str(random_checkpoint), demo=True)
    ini = str(tmp_path / "layout.ini")
    win = OperatorConsole(opts, autostart=False, settings=QtCore.QSettings(ini, QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.show()
    win.docks["circumplex"].setVisible(False)
    win.close()
    win2 = OperatorConsole(opts, autostart=False, settings=QtCore.QSettings(ini, QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(win2)
    win2.show()
    assert not win2.docks["circumplex"].isVisible()
    assert win2.docks["camera"].isVisible()
    win2.close()


def test_main_without_display_runs_headless_and_says_why(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY",
                                                                          "QT_QPA_PLATFORM")}
    code = "import sys; from emer_live.ui.main import display_available; print(display_available())"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 0 and "no display" in p.stdout


def test_main_bad_option_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "main.py", "--size", "huge", "--quit-after", "1"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines()[-1].startswith("emer-live: error: --size")
