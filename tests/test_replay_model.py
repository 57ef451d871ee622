"""The replay window's data side without Qt or torch (emer_live.app.replay): lookups at t on a
plain recording, damage reported instead of refused, and the prediction comparison."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from emer_live.app.replay import ReplaySession, compare_predictions, read_only_reason
from emer_live.labels import ER7_CLASSES
from emer_live.live.prediction import Prediction

EMER = [sys.executable, "-m", "emer_live.cli"]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    d = tmp_path_factory.mktemp("rm") / "plain"
    p = subprocess.run(EMER + ["record", "--duration", "2", "--size", "160x120", "--rate", "120", "--out", str(d),
                               "--quiet"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return d


def test_lookups_take_the_last_record_at_or_before_t(plain):
    s = ReplaySession(plain)
    assert not s.damaged and s.trials == [] and s.windows is None
    g = pd.read_csv(plain / "gaze.tsv", sep="\t")
    f = pd.read_csv(plain / "between" / "00_recording" / "face_frames.tsv", sep="\t")
    assert s.gaze_at(int(g["t_us"].iloc[0]) - 1) is None and s.face_at(int(f["t_us"].iloc[0]) - 1) is None
    for i in (0, 7, len(g) - 1):
        t = int(g["t_us"].iloc[i])
        assert s.gaze_at(t)[0] == i and s.gaze_at(t + 1)[0] == i
    for i in (0, 5, len(f) - 1):
        t = int(f["t_us"].iloc[i])
        seg, frame, ft = s.face_at(t + 1)
        assert (seg.relpath, frame, ft) == ("between/00_recording", int(f["frame"].iloc[i]), t)
        assert s.face_image(t).shape == (120, 160, 3)
        assert s.face_image(t, reduce=2).shape == (60, 80, 3)


def test_damage_is_reported_and_the_rest_still_reads(plain, tmp_path):
    d = tmp_path / "crashed"
    shutil.copytree(plain, d)
    meta = json.loads((d / "session.json").read_text())
    meta["status"] = "recording"                        # what a crash leaves
    (d / "session.json").write_text(json.dumps(meta))
    vid = d / "between" / "00_recording" / "face.mjpeg"
    with open(vid, "r+b") as fh:
        fh.truncate(vid.stat().st_size // 2)
    s = ReplaySession(d)
    assert s.damaged
    reason = read_only_reason(s.problems)
    assert reason.startswith("damaged (truncated, unfinished)") and "emer-live repair" in reason
    n_frames = len(pd.read_csv(d / "between" / "00_recording" / "face_frames.tsv", sep="\t"))
    assert 0 < len(s.face_t) < n_frames                  # only the frames whose bytes are all there
    assert s.face_image(int(s.face_t[-1])) is not None
    assert read_only_reason([]) is None


def _pred(kind, t0, t1, trial, er7, fer7):
    return Prediction(kind=kind, t_start_us=t0, t_end_us=t1, trial=trial, checkpoint="x", er7=list(er7),
                      er3=[1 / 3] * 3, er_va=[0, 0], fer7=list(fer7), fer3=None, fer_va=None, fer_intensity=None,
                      gap=None, modalities={}, quality={})


def test_compare_predictions_per_window_and_trial():
    rng = np.random.default_rng(0)
    rows, new = [], []
    for k in range(4):
        er, fer = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(7))
        row = {"kind": "window", "t_start_us": k * 10**6, "t_end_us": k * 10**6 + 2 * 10**6,
               "trial": 2 if k == 2 else -1,
               "er_top": ER7_CLASSES[int(np.argmax(er))], "fer_top": ER7_CLASSES[int(np.argmax(fer))]}
        row.update({f"er7_{c}": er[i] for i, c in enumerate(ER7_CLASSES)})
        row.update({f"fer7_{c}": fer[i] for i, c in enumerate(ER7_CLASSES)})
        rows.append(row)
        er2 = er.copy()
        if k == 2:                                      # this window's ER top class changes
            er2 = np.roll(er, 1)
        elif k == 1:
            er2 = er + np.array([0.01, -0.01, 0, 0, 0, 0, 0])
        if k < 3:                                       # the last window was not re-analysed
            new.append(_pred("window", row["t_start_us"], row["t_end_us"], -1, er2, fer))
    new.append(_pred("window", 99 * 10**6, 101 * 10**6, -1, er, fer))    # only new
    df = pd.DataFrame(rows)
    trial_rows = df.iloc[:1].assign(kind="trial", trial=1)
    new.append(_pred("trial", 0, 1, 1, df.iloc[0][[f"er7_{c}" for c in ER7_CLASSES]].to_numpy(float), fer))
    cmp = compare_predictions(df, new, trial_rows, t0_us=10**6)
    assert (cmp.matched, cmp.only_recorded, cmp.only_new) == (3, 1, 1)
    assert cmp.max_abs_diff[0] == 0 and abs(cmp.max_abs_diff[1] - 0.01) < 1e-12 and cmp.max_abs_diff[2] > 0
    assert [t for t, _, _ in cmp.changed_er_top] == [4 * 10**6]
    assert cmp.trial_max_abs_diff == {1: 0.0} and not cmp.changed_trial_top
    assert "3 windows matched" in cmp.text() and "ER top class changed in 1 windows" in cmp.text()
    # named as the plots name time: seconds from the session's start, and the trial
    assert f"ER  at 3.0 s (trial 2): {df['er_top'][2]} -> " in cmp.text()
    assert "ER  at 3.0 s (trial 2)" not in compare_predictions(df, new, trial_rows).text()
    assert cmp.inputs_compared == 0 and "model inputs" not in cmp.text()   # a session from before


def test_compare_names_windows_whose_inputs_differed():
    """predictions.tsv's n_gaze / eye_crc / face_crc against the re-analysed windows' inputs: the
    summary says whether the data differed or only the arithmetic."""
    er = np.full(7, 1 / 7)
    rows, new = [], []
    for k in range(3):
        row = {"kind": "window", "t_start_us": k * 10**6, "t_end_us": k * 10**6 + 2 * 10**6, "trial": -1,
               "er_top": ER7_CLASSES[0], "fer_top": ER7_CLASSES[0], "n_gaze": 500, "eye_crc": 11, "face_crc": 22}
        row.update({f"er7_{c}": er[i] for i, c in enumerate(ER7_CLASSES)})
        row.update({f"fer7_{c}": er[i] for i, c in enumerate(ER7_CLASSES)})
        rows.append(row)
        p = _pred("window", row["t_start_us"], row["t_end_us"], -1, er, er)
        p.inputs = {"n_gaze": 500, "eye_crc": 11, "face_crc": 22}
        new.append(p)
    new[1].inputs = {"n_gaze": 498, "eye_crc": 12, "face_crc": 23}
    df = pd.DataFrame(rows)
    cmp = compare_predictions(df, new, t0_us=0)
    assert cmp.inputs_compared == 3 and cmp.inputs_differ == [(3 * 10**6, "gaze samples 500 recorded, 498 now, "
                                                                           "face crops")]
    assert "model inputs differed in 1 of 3 windows" in cmp.text()
    assert "inputs at 3.0 s: gaze samples 500 recorded, 498 now, face crops" in cmp.text()
    new[1].inputs = dict(new[0].inputs)
    assert "model inputs equal in all 3 windows compared" in compare_predictions(df, new).text()
