"""Layout of the console's views (offscreen, pytest-qt, no run started): the calibration dock
closes after Accept, the trial table's columns show in the default layout, the participant
window opens beside the console on one screen, nothing forces a plot wider than its view, and
labels (disagreements, circumplex anchors) do not overlap."""

from types import SimpleNamespace as NS

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6 import QtCore  # noqa: E402

from emer_live.labels import ER7_CLASSES  # noqa: E402
from emer_live.ui.console import ConsoleOptions, OperatorConsole  # noqa: E402
from emer_live.ui.panels import CircumplexPanel, EmotionPanel  # noqa: E402
from emer_live.ui.participant import ParticipantScreen, choose_screen  # noqa: E402


@pytest.fixture
def session_console(qtbot, tmp_path):
    """A session console in its default layout at the docs' size; nothing started."""
    win = OperatorConsole(ConsoleOptions(session=True, demo=True, out=str(tmp_path / "rec")),
                          settings=QtCore.QSettings(str(tmp_path / "layout.ini"), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.resize(1600, 980)
    win.show()
    qtbot.waitExposed(win)
    qtbot.wait(400)          # the dock sizes apply after the first layout pass
    return win


def _scene_rect(item):
    return item.mapRectToScene(item.boundingRect())


def _disjoint(rects) -> bool:
    return not any(a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1:])


def test_calibration_dock_closes_after_accept_and_reopens_from_view(session_console, qtbot):
    win = session_console
    dock = win.docks["calibration"]
    assert dock.isVisible()
    cal = win.calibration
    cal.procedure = NS(accept=lambda: None, summary=lambda: "validation PASSED", note="")  # a finished pass
    central_before = win.centralWidget().width()
    cal.accept()
    qtbot.wait(50)
    assert cal.accepted and not dock.isVisible() and not win.docks["setup"].isVisible()
    assert win.centralWidget().width() > central_before       # the plots got the room
    view_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&View")
    toggle = dock.toggleViewAction()
    assert toggle in view_menu.actions()
    toggle.trigger()
    assert dock.isVisible()


def test_trial_table_shows_every_column_in_the_default_layout(session_console, qtbot):
    win = session_console
    # the widest values a 14-trial session gives
    trials = [NS(spec=NS(trial=i + 1, stimulus_id=f"hap_{i:02d}", category="happiness"), status="complete")
              for i in range(14)]
    answers = {i + 1: NS(emotion="happiness", valence=9, arousal=9, dominance=9) for i in range(14)}
    table = win.trials
    for i in range(14):
        table.trial_predictions[i + 1] = NS(er_top="happiness", er7=[0.99] * 7, fer_top="happiness",
                                            fer7=[0.99] * 7)
    table._dirty = True
    table.refresh(NS(controller=NS(trials=trials, answers=answers)))
    win.docks["trials"].raise_()
    qtbot.wait(100)
    right = max(table.columnViewportPosition(c) + table.columnWidth(c) for c in range(table.columnCount()))
    assert 0 < right <= table.viewport().width(), (right, table.viewport().width())


def test_one_screen_puts_the_participant_window_beside_the_console(session_console, qtbot):
    class FakeScreen:          # Xvfb and offscreen have one screen: inject the list
        def name(self):
            return "laptop"

        def geometry(self):
            return QtCore.QRect(0, 0, 1920, 1080)

        def availableGeometry(self):
            return QtCore.QRect(0, 24, 1920, 1056)

    only = FakeScreen()
    assert choose_screen(None, [only], operator=only) is None
    scr = ParticipantScreen()
    qtbot.addWidget(scr)
    win = session_console
    scr.place(None, beside=win, area=only.availableGeometry())
    qtbot.waitExposed(scr)
    qtbot.wait(50)
    con, par = win.frameGeometry(), scr.frameGeometry()
    assert not con.intersects(par), (con, par)
    assert con.left() == 0 and con.right() < 960 <= par.left() and par.right() <= 1919
    assert par.width() >= 900 and con.width() >= 900 and not scr.isFullScreen()


def _prediction(er_top: str, fer_top: str, gap: float, disagree: bool):
    er = np.full(7, 0.02)
    er[ER7_CLASSES.index(er_top)] = 0.88
    fer = np.full(7, 0.02)
    fer[ER7_CLASSES.index(fer_top)] = 0.88
    return NS(kind="window", er7=er, fer7=fer, er_va=(0.0, 0.0), fer_va=(0.0, 0.0), er_top=er_top, fer_top=fer_top,
              gap={"jsd": gap, "disagree": disagree})


@pytest.mark.parametrize("width", [420, 1100])
def test_disagreement_labels_fit_the_view_and_never_overlap(qtbot, width):
    panel = EmotionPanel()
    panel.set_fer_source("fer_mini_xception:0123abcd")       # the longest title
    qtbot.addWidget(panel)
    panel.resize(width, 520)
    panel.show()
    qtbot.waitExposed(panel)
    rng = np.random.default_rng(1)
    for k in range(60):         # a disagreement every 2 s; the gap high (no room above it), then low
        gap = 0.95 if k < 12 else 0.2 + 0.2 * rng.random()
        panel.add(_prediction("fear", "disgust", float(gap), disagree=k % 2 == 0), float(k))
    panel.refresh()
    qtbot.wait(50)
    panel._place_labels()
    shown = [lab for lab in panel.labels if lab.isVisible()]
    assert 1 <= len(shown) == panel.n_labels_shown
    view = _scene_rect(panel.gap_plot.getViewBox())
    rects = [_scene_rect(lab) for lab in shown]
    assert all(view.adjusted(-1, -1, 1, 1).contains(r) for r in rects), (view, rects)
    assert _disjoint(rects)
    # each sits clear of the gap curve under it
    t, g = panel.gap_curve.getData()
    for lab in shown:
        x0, top = lab.pos().x(), lab.pos().y()
        w = lab.textItem.boundingRect().width() * (panel.x_range[1] - panel.x_range[0]) / view.width()
        h = lab.textItem.boundingRect().height() * 1.02 / view.height()
        seg = g[(t >= x0) & (t <= x0 + w)]
        assert seg.max() < top - h or seg.min() > top
    # nothing in the layout is wider than the widget (titles, legend): no plot is cut on the right
    assert panel.glw.ci.effectiveSizeHint(QtCore.Qt.SizeHint.MinimumSize).width() <= panel.glw.width()
    assert _scene_rect(panel.gap_plot).right() <= panel.glw.width()
    # every title shows whole (it wraps when the panel is narrow)
    for plot in (panel.er_plot, panel.fer_plot, panel.gap_plot):
        r = _scene_rect(plot.titleLabel.item)
        assert r.left() >= 0 and r.right() <= panel.glw.width(), (plot.titleLabel.item.toPlainText(), r)


def test_circumplex_words_do_not_overlap(qtbot):
    panel = CircumplexPanel()
    qtbot.addWidget(panel)
    panel.resize(420, 300)
    panel.show()
    qtbot.waitExposed(panel)
    qtbot.wait(50)
    rects = [_scene_rect(t) for t in panel.anchor_labels.values()]
    assert len(rects) == 7 and _disjoint(rects)
    view = _scene_rect(panel.plot.getPlotItem().getViewBox())
    assert all(view.contains(r) for r in rects)
