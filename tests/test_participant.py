"""The participant side of the desktop app (offscreen, pytest-qt): SAM widget, the Qt presenter's
presentation log, and a whole short session driven through the GUI objects."""

import json
import sys

import pytest

pytest.importorskip("pytestqt")
from PyQt6 import QtCore  # noqa: E402

from emer_live.ui.participant import ParticipantScreen, QtPresenter, choose_screen  # noqa: E402
from emer_live.ui.sam_dialog import ROWS, SamWidget  # noqa: E402

K = QtCore.Qt.Key
# `clip_library` (28 placeholder clips, 2 s at 25 fps) is in tests/conftest.py


def _answer_by_keys(qtbot, sam, keys):
    for k in keys:
        qtbot.keyClick(sam, k)


def test_sam_keyboard_only_and_confirm_refused_until_complete(qtbot):
    sam = SamWidget()
    qtbot.addWidget(sam)
    sam.resize(900, 700)
    sam.show()
    sam.reset(3)
    got = []
    sam.sigAnswered.connect(lambda a, rt: got.append((a, rt)))
    assert all(v is None for v in sam.values.values()) and sam.emotion is None     # nothing pre-selected
    assert not sam.confirm.isEnabled()
    _answer_by_keys(qtbot, sam, [K.Key_7, K.Key_3])          # valence 7, arousal 3; dominance missing
    qtbot.keyClick(sam, K.Key_Return)
    assert not got and "dominance" in sam.hint.text() and "emotion" in sam.hint.text()
    qtbot.keyClick(sam, K.Key_5)                             # dominance 5 -> on to the emotion row
    assert not sam.confirm.isEnabled()
    qtbot.keyClick(sam, K.Key_2)                             # 2 = sadness
    assert sam.confirm.isEnabled()
    qtbot.keyClick(sam, K.Key_Return)
    assert len(got) == 1
    ans, rt = got[0]
    assert (ans.valence, ans.arousal, ans.dominance, ans.emotion) == (7, 3, 5, "sadness")
    assert set(rt) == set(ROWS) | {"emotion"}
    assert rt["valence"] <= rt["arousal"] <= rt["dominance"] <= rt["emotion"]


def test_sam_up_down_and_mouse(qtbot):
    sam = SamWidget()
    qtbot.addWidget(sam)
    sam.resize(900, 700)
    sam.show()
    sam.reset(1)
    qtbot.keyClick(sam, K.Key_Down)
    qtbot.keyClick(sam, K.Key_9)                             # arousal 9 (valence skipped)
    assert sam.values["arousal"] == 9 and sam.values["valence"] is None
    rows, _, emo = sam._layout()
    pt = rows["valence"][2][1].center().toPoint()            # the 2nd point of the valence row
    qtbot.mouseClick(sam, QtCore.Qt.MouseButton.LeftButton, pos=pt)
    assert sam.values["valence"] == 2
    qtbot.mouseClick(sam, QtCore.Qt.MouseButton.LeftButton, pos=emo[6].center().toPoint())
    assert sam.emotion == "neutral"


def test_sam_answers_land_in_sam_tsv_columns(qtbot, tmp_path):
    from emer_live.session.sam import SamTable, read_sam

    sam = SamWidget()
    qtbot.addWidget(sam)
    sam.resize(900, 700)
    sam.show()
    sam.reset(1)
    got = []
    sam.sigAnswered.connect(lambda a, rt: got.append(a))
    _answer_by_keys(qtbot, sam, [K.Key_9, K.Key_1, K.Key_4, K.Key_6, K.Key_Return])   # anger
    with SamTable(tmp_path / "sam.tsv") as table:
        table.append(trial=1, stimulus_id="ang_01", category="anger", answer=got[0], answered_t_us=123)
    row = read_sam(tmp_path / "sam.tsv", as_dataframe=True).iloc[0]
    assert (row["sam_valence"], row["sam_arousal"], row["sam_dominance"], row["sam_emotion"]) == (9, 1, 4, "anger")
    assert row["er7"] == "anger" and row["er3"] == "negative"
    assert row["er_valence"] == pytest.approx(1.0) and row["er_arousal"] == pytest.approx(-1.0)


def test_choose_screen_with_an_injected_screen_list(qtbot):
    class FakeScreen:
        def __init__(self, name):
            self._name = name

        def name(self):
            return self._name

        def geometry(self):
            return QtCore.QRect(0, 0, 1920, 1080)

    a, b = FakeScreen("operator"), FakeScreen("participant")
    assert choose_screen(None, [a], operator=a) is None            # one screen: a plain window
    assert choose_screen(None, [a, b], operator=a) is b
    assert choose_screen(0, [a, b], operator=a) is a
    from emer_live.errors import ConfigError

    with pytest.raises(ConfigError, match="no such screen"):
        choose_screen(5, [a, b], operator=a)


def test_presentation_log_at_1x_reports_painted_frames_in_order(qtbot, clip_library):
    """A 2 s, 25 fps clip played at 1x: each frame is reported once, when painted, in clip order;
    no frame is painted before its time in the clip (counted from play()); the
    last frame is always painted (no later frame replaces it). Which frames a loaded machine
    fails to paint in time is left open: those are the trial's dropped frames."""
    from emer_live.clock import system_clock
    from emer_live.session.controller import TrialSpec

    screen = ParticipantScreen()
    qtbot.addWidget(screen)
    screen.place(None, size=(480, 320))
    clock = system_clock()
    pres = QtPresenter(screen, clock=lambda: clock)
    spec = TrialSpec(trial=1, stimulus_id="hap_01", category="happiness", duration_s=2.0, fps=25.0,
                     path=str(clip_library / "hap_01.mp4"))
    log = []
    pres.prepare(spec)
    qtbot.wait(300)
    t_play = clock.now_us()
    pres.play(spec, lambda i, t: log.append((i, t)), onset_us=t_play)
    qtbot.waitUntil(lambda: pres.player.mediaStatus().name == "EndOfMedia" and log and log[-1][0] == 49,
                    timeout=20_000)
    pres.stop()
    idx = [i for i, _ in log]
    assert all(0 <= i < 50 for i in idx) and all(b > a for a, b in zip(idx, idx[1:])), idx
    assert idx[-1] == 49 and pres.frames_shown == len(idx)
    # a frame is never on screen before its time; 1 frame of slack for the player's own pacing
    assert all(t - t_play >= i * 40_000 - 40_000 for i, t in log), log
    assert not pres.errors


def test_session_onset_is_the_first_frame_painted_on_the_participant_screen(qtbot, tmp_path, clip_library):
    """A one-clip session at 1x on the Qt presenter: the onset in events.tsv and session.json is
    the first row of the presentation log (the frame painted), not the planned onset, and
    `emer-live info` prints the trial's presentation figures from that log."""
    from emer_live.clock import system_clock
    from emer_live.recording import Recorder, SessionReader
    from emer_live.recording.presentation import read_presentation_log, trial_presentation
    from emer_live.session.controller import SessionController, SessionTiming, TrialSpec
    from emer_live.session.sam import SamAnswer

    screen = ParticipantScreen()
    qtbot.addWidget(screen)
    screen.place(None, size=(320, 240))
    clock = system_clock()
    rec = Recorder(tmp_path / "s", clock=clock)
    rec.start(thread=False)
    pres = QtPresenter(screen, clock=lambda: clock)
    spec = TrialSpec(trial=1, stimulus_id="hap_01", category="happiness", duration_s=2.0, fps=25.0,
                     path=str(clip_library / "hap_01.mp4"))
    answer = SamAnswer(valence=5, arousal=5, dominance=5, emotion="neutral")
    ctrl = SessionController(recorder=rec, trials=[spec], presenter=pres, sam_source=lambda n: answer,
                             timing=SessionTiming(baseline_s=0.0, fixation_s=0.5, rest_s=0.0, sam_answer_s=0.0))
    timer = QtCore.QTimer()
    timer.setInterval(10)
    timer.timeout.connect(ctrl.tick)
    ctrl.start()
    timer.start()
    qtbot.waitUntil(lambda: ctrl.finished, timeout=30_000)
    timer.stop()
    ctrl.close()
    rec.stop()
    r = SessionReader(tmp_path / "s")
    log = read_presentation_log(tmp_path / "s" / "trials" / "01_hap_01" / "stimulus_frames.tsv")
    assert len(log) > 10 and not pres.errors
    (on,) = [e for e in r.events() if e["kind"] == "stimulus_onset"]
    (off,) = [e for e in r.events() if e["kind"] == "stimulus_offset"]
    t = r.meta["trials"][0]
    assert on["t_us"] == int(log["t_us"][0]) == t["t_onset_us"]
    assert off["t_us"] == int(log["t_us"][-1]) == t["t_offset_us"]
    # the plan is kept apart; the screen cannot show a frame before the clip was due
    assert t["planned_onset_us"] == on["detail"]["planned_onset_us"] <= on["t_us"]
    assert t["frames_presented"] == len(log) and t["frames_expected"] == 50
    (row,) = trial_presentation(r)
    assert row["frames_shown"] == len(log) and row["frames_dropped"] == 50 - len(set(log["frame"].tolist()))


@pytest.mark.slow
def test_gui_session_matches_the_headless_session(qtbot, tmp_path, clip_library):
    """A whole 2-trial session through the console, the participant screen and its SAM (answered
    with key presses), against the headless run of the same seed: the same files, trials, SAM
    rows and event kinds."""
    from emer_live.app import RunConfig
    from emer_live.recording import SessionReader
    from emer_live.session.runner import run_headless_session
    from emer_live.ui.console import ConsoleOptions, OperatorConsole

    common = dict(participant="P05", camera="none", rate=60.0, seed=5, n_trials=2, time_scale=0.1)
    opts = ConsoleOptions(tracker="synthetic", checkpoint="", out=str(tmp_path / "gui"), session=True,
                          stimuli=str(clip_library), demo=False, calibrate=False,
                          **{k: v for k, v in common.items()
                                                                   if k != "participant"},
                          participant="P05")
    win = OperatorConsole(opts, autostart=True, settings=QtCore.QSettings(
        str(tmp_path / "layout.ini"), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.show()
    answered = set()
    keys = {1: [K.Key_8, K.Key_6, K.Key_5, K.Key_1], 2: [K.Key_2, K.Key_7, K.Key_3, K.Key_3]}

    def drive():
        scr = win.participant_screen
        if scr is not None and scr.page == "sam" and scr.sam.trial not in answered:
            t = scr.sam.trial
            answered.add(t)
            _answer_by_keys(qtbot, scr.sam, keys[t] + [K.Key_Return])
        return win.run is not None and win.run.status is not None

    qtbot.waitUntil(drive, timeout=120_000)
    assert win.run.status == "complete", win.run.reason
    gui = win.run.session_dir
    assert win.presenter.frames_shown > 0 and not win.presenter.errors
    head = run_headless_session(RunConfig(kind="session", tracker="synthetic", stimuli=str(clip_library),
                                          out_root=str(tmp_path / "head"), **common))
    g, h = SessionReader(gui), SessionReader(head)
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(gui) == files(head)
    assert [(t["trial"], t["stimulus_id"], t["status"]) for t in g.meta["trials"]] == \
        [(t["trial"], t["stimulus_id"], t["status"]) for t in h.meta["trials"]]
    gs, hs = g.sam(), h.sam()
    assert list(gs.columns) == list(hs.columns)
    assert list(gs["stimulus_id"]) == list(hs["stimulus_id"]) and len(gs) == 2
    assert (gs.iloc[0]["sam_valence"], gs.iloc[0]["sam_emotion"]) == (8, "happiness")
    assert (gs.iloc[1]["sam_valence"], gs.iloc[1]["sam_emotion"]) == (2, "fear")
    kinds = lambda d: set(l.split("\t")[1] for l in (d / "events.tsv").read_text().splitlines()[1:])  # noqa: E731,E741
    assert kinds(gui) - {"gap", "camera_stall"} == kinds(head) - {"gap", "camera_stall"}
    ev = [json.loads(l.split("\t")[3]) for l in (gui / "events.tsv").read_text().splitlines()[1:]  # noqa: E741
          if l.split("\t")[1] == "sam_answered"]
    assert all(set(e["response_ms"]) == {"valence", "arousal", "dominance", "emotion"} for e in ev)
    # the clips were really played: frames logged for both trials
    for t in g.meta["trials"]:
        folder = next((gui / "trials").glob(f"{t['trial']:02d}_*"))
        assert len((folder / "stimulus_frames.tsv").read_text().splitlines()) > 10
    win.close()


def test_setup_panel_checks_pseudonym_library_and_shows_the_plan(qtbot, tmp_path, clip_library):
    from emer_live.ui.console import ConsoleOptions
    from emer_live.ui.setup_panel import SessionSetupPanel

    seen = []
    opts = ConsoleOptions(session=True, stimuli=str(clip_library), n_trials=4, participant="P03", checkpoint="")
    panel = SessionSetupPanel(opts, options_changed=seen.append, screen_info=lambda: "screen X")
    qtbot.addWidget(panel)
    assert panel.ok and panel.plan.rowCount() == 4
    assert "stimuli OK" in panel.check_list.item(0).text()
    panel.participant.setText("Jane Doe")
    panel.participant.editingFinished.emit()
    assert not panel.ok
    assert "'Jane Doe'" in panel.participant_msg.text()
    assert seen and seen[-1].participant == "Jane Doe"
    panel.participant.setText("P03")
    panel.stimuli.setText(str(tmp_path / "nope"))
    panel.stimuli.editingFinished.emit()
    assert not panel.ok and "no such folder" in panel.check_list.item(0).text()
    assert panel.screen_label.text() == "screen X"


@pytest.fixture
def fake_sdk(monkeypatch):
    try:
        from tests.fakes import fake_tobii_research as fk
    except ImportError:
        from fakes import fake_tobii_research as fk
    fk.fake_reset(speed=1.0)
    fk.fake_add_tracker(duration_s=600.0)
    monkeypatch.setitem(sys.modules, "tobii_research", fk)
    yield fk
    fk.fake_reset()


@pytest.mark.slow
def test_gui_session_with_calibration_on_the_fake_tobii(qtbot, tmp_path, clip_library, fake_sdk):
    """Setup -> calibration and validation with the fake Tobii SDK (targets on the participant
    screen, the operator accepts) -> 2 trials of real clips -> SAM by key presses -> end; the
    folder equals a headless run of the same seed and tracker but for the calibration record."""
    from emer_live.app import Run, RunConfig, drive
    from emer_live.recording import SessionReader
    from emer_live.session.sam import SamAnswer
    from emer_live.ui.console import ConsoleOptions, OperatorConsole

    common = dict(participant="P06", tracker="tobii", camera="none", rate=250.0, seed=6, n_trials=2,
                  time_scale=0.1, stimuli=str(clip_library))
    opts = ConsoleOptions(checkpoint="", out=str(tmp_path / "gui"), session=True, demo=False, calibrate=True,
                          **common)
    win = OperatorConsole(opts, autostart=True, settings=QtCore.QSettings(
        str(tmp_path / "layout.ini"), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.show()
    targets = []
    answered = set()

    def drive_gui():
        scr, cal = win.participant_screen, win.calibration
        if scr is not None and scr.page == "target" and (not targets or targets[-1] != scr.target.point):
            targets.append(scr.target.point)
        if cal.passes >= 1 and not cal.accepted and cal.accept_btn.isEnabled():
            qtbot.mouseClick(cal.accept_btn, QtCore.Qt.MouseButton.LeftButton)
        if scr is not None and scr.page == "sam" and scr.sam.trial not in answered:
            answered.add(scr.sam.trial)
            _answer_by_keys(qtbot, scr.sam, [K.Key_5, K.Key_5, K.Key_5, K.Key_7, K.Key_Return])
        return win.run is not None and win.run.status is not None

    qtbot.waitUntil(drive_gui, timeout=180_000)
    assert win.run.status == "complete", win.run.reason
    gui = win.run.session_dir
    meta = SessionReader(gui).meta
    cal = meta["calibration"]
    assert cal["calibrated"] is True and cal["calibration"]["status"].startswith("success")
    assert len(cal["calibration_points"]) == 5 and cal["validation"] is not None
    assert set(map(tuple, cal["calibration_points"])) | set(map(tuple, cal["validation_points"])) <= set(targets)
    win.close()
    # the headless run of the same seed and tracker (SAM answered by a fixed answer)
    run = Run(RunConfig(kind="session", out_root=str(tmp_path / "head"), **common),
              sam_source=lambda trial: SamAnswer(5, 5, 5, "neutral"))
    drive(run, signals=False)
    head = run.session_dir
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(gui) == files(head)
    g, h = SessionReader(gui), SessionReader(head)
    assert [(t["trial"], t["stimulus_id"], t["status"]) for t in g.meta["trials"]] == \
        [(t["trial"], t["stimulus_id"], t["status"]) for t in h.meta["trials"]]
    assert list(g.sam()["stimulus_id"]) == list(h.sam()["stimulus_id"])
    kinds = lambda d: set(l.split("\t")[1] for l in (d / "events.tsv").read_text().splitlines()[1:])  # noqa: E731,E741
    noise = {"gap", "device_connect", "device_disconnect"}
    assert kinds(gui) - noise - {"calibration", "validation"} == kinds(head) - noise
    assert {"calibration", "validation"} <= kinds(gui)
