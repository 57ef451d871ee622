"""The replay window (offscreen, pytest-qt) on a recorded synthetic session: the curves hold the
rows of predictions.tsv, a sought time shows the gaze.tsv / face_frames.tsv / stimulus_frames.tsv
records of that time, seeking, shortcuts, damaged and aborted folders, re-analysis with the
recording's own checkpoint, and the exports."""

import json
import shutil
import subprocess
import sys
import time
import xml.dom.minidom
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.torch

pytest.importorskip("pytestqt")
from PyQt6 import QtCore, QtGui  # noqa: E402

from emer_live.labels import ER7_CLASSES  # noqa: E402
from emer_live.ui.replay import ReplayWindow  # noqa: E402

EMER = [sys.executable, "-m", "emer_live.cli"]
K = QtCore.Qt.Key


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory, random_checkpoint, clip_library):
    root = tmp_path_factory.mktemp("replay")
    lib = clip_library
    p = subprocess.run(EMER + ["session", "--headless", "--fast", "--participant", "P01", "--trials", "2",
                               "--time-scale", "0.1", "--window", "2", "--hop", "1", "--size", "320x240",
                               "--stimuli", str(lib), "--checkpoint", str(random_checkpoint),
                               "--out", str(root / "rec")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr + p.stdout
    (d,) = list((root / "rec" / "P01").iterdir())
    return d


@pytest.fixture
def win(qtbot, tmp_path, session_dir):
    settings = QtCore.QSettings(str(tmp_path / "replay.ini"), QtCore.QSettings.Format.IniFormat)
    w = ReplayWindow(session_dir, settings=settings)
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    return w


def _all_face_frames(d: Path) -> pd.DataFrame:
    parts = []
    for f in sorted(d.glob("*/*/face_frames.tsv")):
        t = pd.read_csv(f, sep="\t")
        t["segment"] = f.parent.relative_to(d).as_posix()
        parts.append(t)
    return pd.concat(parts).sort_values("t_us", kind="stable").reset_index(drop=True)


def test_curves_hold_exactly_the_rows_of_predictions_tsv(win, session_dir):
    pred = pd.read_csv(session_dir / "predictions.tsv", sep="\t")
    t0 = win.session.t0_us
    wins = pred[pred["kind"] == "window"]
    trials = pred[pred["kind"] == "trial"]
    assert len(wins) >= 5 and len(trials) == 2
    for c in ER7_CLASSES:
        for col in (f"er7_{c}", f"fer7_{c}"):
            x, y = win.curves[col].getData()
            np.testing.assert_array_equal(x, (wins["t_end_us"].to_numpy() - t0) / 1e6)
            np.testing.assert_array_equal(y, wins[col].to_numpy(float))
    x, y = win.curves["gap_jsd"].getData()
    np.testing.assert_array_equal(y, wins["gap_jsd"].to_numpy(float))
    # ER solid, FER dashed, same colour per emotion
    er_pen = win.curves["er7_sadness"].opts["pen"]
    fer_pen = win.curves["fer7_sadness"].opts["pen"]
    assert er_pen.style() == QtCore.Qt.PenStyle.SolidLine and fer_pen.style() == QtCore.Qt.PenStyle.DashLine
    assert er_pen.color().name().upper() == fer_pen.color().name().upper() == "#0072B2"
    # the whole-trial rows: one marker each, at the trial's end
    x, y = win.curves["trial_er_top"].getData()
    np.testing.assert_array_equal(x, (trials["t_end_us"].to_numpy() - t0) / 1e6)
    assert len(x) + len(win.curves["er7_happiness"].getData()[0]) == len(pred)


def test_sought_time_shows_the_records_of_that_time(win, qtbot, session_dir):
    gaze = pd.read_csv(session_dir / "gaze.tsv", sep="\t")
    faces = _all_face_frames(session_dir)
    meta = json.loads((session_dir / "session.json").read_text())
    tr = meta["trials"][1]
    stim = pd.read_csv(session_dir / "trials" / f"02_{tr['stimulus_id']}" / "stimulus_frames.tsv", sep="\t")
    # inside a clip, between records, exactly on a gaze stamp, exactly on a face frame, before a trial
    times = [tr["t_onset_us"] + 77_777, int(gaze["t_us"].iloc[len(gaze) // 2]), int(faces["t_us"].iloc[40]),
             int(stim["t_us"].iloc[10]), meta["trials"][0]["t_start_us"] - 123]
    n_valid = 0
    for t in times:
        win.seek(t)
        g = gaze[gaze["t_us"] <= t].iloc[-1]
        row, x, y = win.shown_gaze
        assert row == g.name and int(gaze["t_us"].iloc[row]) == int(g["t_us"])
        valid = [e for e in ("left", "right") if g[f"{e}_gaze_point_validity"] == 1]
        f = faces[faces["t_us"] <= t].iloc[-1]
        assert win.shown_face == (f["segment"], int(f["frame"]), int(f["t_us"]))
        px, py = win.stim_view.point.getData()
        if not valid:                           # neither eye valid (blink, loss): no point drawn
            assert np.isnan(x) and np.isnan(y) and len(px) == 0
            continue
        n_valid += 1
        ex = np.mean([g[f"{e}_gaze_point_on_display_area_x"] for e in valid])
        ey = np.mean([g[f"{e}_gaze_point_on_display_area_y"] for e in valid])
        assert abs(x - ex) < 1e-6 and abs(y - ey) < 1e-6          # gaze is stored as float32
        # the point is drawn where the sample says, on the image shown
        w, h = win.stim_view.img_size
        assert abs(px[0] - x * w) < 1e-6 and abs(py[0] - y * h) < 1e-6
    assert n_valid >= 3
    win.seek(times[3])
    assert win.shown_stimulus == (2, int(stim["frame"].iloc[10]))
    assert win.stim_view.img_size == (128, 96)          # the clip itself, not the blank display
    win.seek(times[4])
    assert win.shown_stimulus is None
    # the face box (found off the GUI thread) is the one of the frame shown, on the synthetic face
    qtbot.waitUntil(lambda: win.face_box_key == win.shown_face, timeout=20_000)
    x, y, w, h = win.shown_face_box
    fw, fh = win.face_view.img_size
    assert 0 <= x < fw and 0 <= y < fh and 0.1 * fw < w < fw


def test_slider_seeks_on_release_not_while_dragging(win, qtbot):
    tl = win.timeline
    win.seek(tl.t0_us)
    win.slider.setSliderDown(True)
    win.slider.setValue(500)
    assert tl.t_us == tl.t0_us                 # dragging: nothing moves yet
    win.slider.setSliderDown(False)            # release
    assert abs(tl.t_us - (tl.t0_us + (tl.t1_us - tl.t0_us) // 2)) <= (tl.t1_us - tl.t0_us) // 1000 + 1
    assert win.cursors[0].value() == pytest.approx((tl.t_us - tl.t0_us) / 1e6)


def test_keyboard_shortcuts_and_playback(win, qtbot):
    tl = win.timeline
    win.seek(tl.t0_us + 1_000_000)
    qtbot.keyClick(win, K.Key_Right)
    assert tl.t_us == tl.t0_us + 1_000_000 + tl.step_us
    qtbot.keyClick(win, K.Key_Left)
    qtbot.keyClick(win, K.Key_Left)
    assert tl.t_us == tl.t0_us + 1_000_000 - tl.step_us
    for _ in range(5):
        qtbot.keyClick(win, K.Key_Plus)
    assert tl.speed == 8.0 and win.speed_box.currentText() == "8x"
    qtbot.keyClick(win, K.Key_Minus)
    assert tl.speed == 4.0
    start = tl.t_us
    w0 = time.perf_counter()
    qtbot.keyClick(win, K.Key_Space)
    assert tl.playing
    qtbot.wait(500)
    qtbot.keyClick(win, K.Key_Space)
    wall = time.perf_counter() - w0
    assert not tl.playing
    moved = tl.t_us - start
    assert 4 * 0.45e6 <= moved <= 4 * wall * 1e6, (moved, wall)     # 4x the wall time that passed


def test_trial_list_jumps_and_shows_sam_beside_prediction(win, session_dir):
    sam = pd.read_csv(session_dir / "sam.tsv", sep="\t")
    pred = pd.read_csv(session_dir / "predictions.tsv", sep="\t")
    t = win.trial_table
    assert t.rowCount() == 2
    for r in range(2):
        n = int(t.item(r, 0).text())
        assert t.item(r, 4).text() == str(sam[sam["trial"] == n]["sam_emotion"].iloc[0])
        assert t.item(r, 6).text() == str(pred[(pred["kind"] == "trial") & (pred["trial"] == n)]["er_top"].iloc[-1])
    win.trial_table.cellClicked.emit(1, 0)
    assert win.timeline.t_us == win.session.trials[1].onset_us
    assert win.shown_stimulus == (2, 0)


def test_recent_list_and_drop(qtbot, tmp_path, session_dir):
    settings = QtCore.QSettings(str(tmp_path / "r.ini"), QtCore.QSettings.Format.IniFormat)
    w = ReplayWindow(None, settings=settings)
    qtbot.addWidget(w)
    md = QtCore.QMimeData()
    md.setUrls([QtCore.QUrl.fromLocalFile(str(session_dir))])
    ev = QtGui.QDropEvent(QtCore.QPointF(5, 5), QtCore.Qt.DropAction.CopyAction, md, QtCore.Qt.MouseButton.NoButton,
                          QtCore.Qt.KeyboardModifier.NoModifier)
    w.dropEvent(ev)
    assert w.session is not None and w.session.path == session_dir
    w2 = ReplayWindow(None, settings=settings)
    qtbot.addWidget(w2)
    assert [a.text() for a in w2.recent_menu.actions()] == [str(session_dir.resolve())]
    assert not w2.open_session(tmp_path)            # not a session folder: refused, said why
    assert "not a session folder" in w2.last_error


def test_damaged_folder_opens_read_only_with_banner(qtbot, tmp_path, session_dir):
    d = tmp_path / "damaged"
    shutil.copytree(session_dir, d)
    vid = d / "trials" / sorted(p.name for p in (d / "trials").iterdir())[1] / "face.mjpeg"
    with open(vid, "r+b") as f:
        f.truncate(vid.stat().st_size // 2)
    w = ReplayWindow(d, settings=QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    assert not w.banner.isHidden()
    text = w.banner.text()
    assert "damaged" in text and "truncated" in text and f"emer-live repair {d}" in text
    assert not w.btn_reanalyse.isEnabled()
    # what is whole still shows: a face frame before the cut
    w.seek(w.session.trials[1].onset_us)
    assert w.shown_face is not None
    # an aborted session opens with what it holds
    a = tmp_path / "aborted"
    shutil.copytree(session_dir, a)
    meta = json.loads((a / "session.json").read_text())
    meta["status"] = "aborted"
    (a / "session.json").write_text(json.dumps(meta))
    w2 = ReplayWindow(a, settings=QtCore.QSettings(str(tmp_path / "s2.ini"), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(w2)
    assert "ended early (status aborted)" in w2.banner.text() and w2.btn_reanalyse.isEnabled()
    assert len(w2.curves["er7_happiness"].getData()[0]) > 0


def test_reanalysis_with_the_recording_checkpoint_reproduces_it(win, qtbot, random_checkpoint):
    n_windows = len(win.session.windows)
    assert win.start_reanalysis(str(random_checkpoint))
    qtbot.waitUntil(lambda: win.worker is None, timeout=240_000)
    cmp = win.comparison
    assert "complete" in win.reanalysis_text.toPlainText(), win.reanalysis_text.toPlainText()
    assert cmp.matched == n_windows and cmp.only_recorded == 0
    assert cmp.overall_max < 1e-4, cmp.text()
    assert not cmp.changed_er_top
    # whole-trial predictions: the clips are announced to the engine as the controller did live
    # (a clip ending within the last window's grace of the recording's end is not scored: see docs)
    assert cmp.trials_recorded == 2 and cmp.trial_max_abs_diff
    assert max(cmp.trial_max_abs_diff.values()) < 1e-4 and not cmp.changed_trial_top
    assert win.progress.value() == 1000
    x, y = win.new_curves["er7_neutral"].getData()
    np.testing.assert_allclose(y, win.session.windows["er7_neutral"].to_numpy(float), atol=1e-4)


def test_reanalysis_cancel(win, qtbot, random_checkpoint):
    assert win.start_reanalysis(str(random_checkpoint))
    win.cancel_reanalysis()
    qtbot.waitUntil(lambda: win.worker is None, timeout=120_000)
    assert "re-analysis cancelled" in win.reanalysis_text.toPlainText()
    assert win.btn_reanalyse.isEnabled()


def test_exports(win, tmp_path, session_dir):
    import av

    png = win.export_figure(tmp_path / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = win.export_figure(tmp_path / "fig.svg")
    doc = xml.dom.minidom.parse(str(svg))
    assert doc.documentElement.tagName == "svg" and doc.getElementsByTagName("path")
    # vector: no bitmaps (cached axes, the scatter symbol atlas) in the "vector" export
    assert not doc.getElementsByTagName("image")
    tsv = pd.read_csv(win.export_trial_table(tmp_path / "t.tsv"), sep="\t")
    sam = pd.read_csv(session_dir / "sam.tsv", sep="\t")
    assert list(tsv["trial"]) == [1, 2] and list(tsv["sam_emotion"]) == list(sam["sam_emotion"])
    from emer_live.ui.replay import export_trial_clip

    tr = win.session.trials[0]
    n = export_trial_clip(win.session, tr, tmp_path / "clip.mp4")
    assert n == len(tr.stimulus_frames) == 50
    with av.open(str(tmp_path / "clip.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == n
    # the gaze marker is drawn: the exported frame differs from the clip frame where the gaze is
    from emer_live.ui.replay import StimulusDecoder

    clean = StimulusDecoder(tr.clip_path).frame(25)
    assert np.abs(frames[25].astype(int) - clean[: frames[25].shape[0], : frames[25].shape[1]].astype(int)).max() > 60


def test_trial_table_columns_show_and_every_plot_colour_is_named(win, qtbot):
    qtbot.wait(100)          # the docks are sized once the shown window has its size
    t = win.trial_table
    right = max(t.columnViewportPosition(c) + t.columnWidth(c) for c in range(t.columnCount()))
    assert 0 < right <= t.viewport().width(), (right, t.viewport().width())
    legend = win.legend.item.toPlainText()
    for name in list(ER7_CLASSES) + ["ER", "FER", "whole-trial ER", "clip", "now", "event"]:
        assert name in legend
    assert "left" in win.p_pupil.titleLabel.item.toPlainText() and "right" in win.p_pupil.titleLabel.item.toPlainText()
    assert "JS divergence" in win.p_gap.titleLabel.item.toPlainText()


def test_main_replay_option(tmp_path, capsys):
    from emer_live.ui.main import build_parser, main

    assert build_parser().parse_args(["--replay", "X"]).replay == "X"
    rc = main(["--replay", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("emer-live: error: ") and "no such folder" in err


def test_plain_recording_on_the_real_clock(qtbot, tmp_path, monkeypatch):
    """A plain recording (no trials, no predictions) on the live session clock, read where its
    microseconds exceed 32 bits (as the monotonic clock's do after ~36 min of uptime, and the
    Tobii clock's always): the timeline and the views keep the exact time. The clock is moved
    2^33 us ahead so that range is tested on a machine booted minutes ago too (issue 21)."""
    from emer_live import clock as session_clock
    from emer_live.app import Run, RunConfig, drive

    class AheadClock(session_clock.SessionClock):
        def now_us(self) -> int:
            return super().now_us() + 2 ** 33

    monkeypatch.setattr(session_clock, "_default", AheadClock(use_sdk=False))
    d = tmp_path / "plain"
    run = drive(Run(RunConfig(kind="record", duration_s=2.0, size=(160, 120), rate=120.0, out=str(d))),
                signals=False)
    assert run.status == "complete", run.reason
    w = ReplayWindow(d, settings=QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    assert w.banner.isHidden() and w.trial_table.rowCount() == 0 and "er7_happiness" not in w.curves
    gaze = pd.read_csv(d / "gaze.tsv", sep="\t")
    faces = _all_face_frames(d)
    t = int(faces["t_us"].iloc[len(faces) // 2]) + 1
    assert t > 2 ** 31
    w.seek(t)
    assert w.timeline.t_us == t
    assert w.shown_gaze[0] == gaze[gaze["t_us"] <= t].index[-1]
    assert w.shown_face[1:] == (int(faces["frame"].iloc[len(faces) // 2]), t - 1)
    assert w.time_label.text().split("/")[0].strip() == f"{(t - w.session.t0_us) / 1e6:.2f}"


def test_stimulus_decoder_is_frame_exact_in_any_order(clip_library):
    """Random access (back, far forward, neighbours) gives the same pixels as decoding the clip
    from the start - the reason the window decodes with PyAV instead of seeking QMediaPlayer."""
    import av

    from emer_live.ui.replay import StimulusDecoder

    clip = clip_library / "hap_01.mp4"
    with av.open(str(clip)) as c:
        seq = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(seq) == 50
    dec = StimulusDecoder(clip)
    for i in (30, 5, 49, 0, 20, 21, 22, 40, 12, 49, 1):
        np.testing.assert_array_equal(dec.frame(i), seq[i], err_msg=f"frame {i}")
    dec.close()
