"""Headless collection sessions end to end (issue 3): labels, events, segments, abort."""

import json
import threading

import numpy as np
import pytest

from emer_live.cli import main
from emer_live.errors import ConfigError
from emer_live.recording import SessionReader
from emer_live.app import RunConfig
from emer_live.session.runner import run_headless_session

CATS = ("happiness", "sadness", "fear", "surprise", "disgust", "anger", "neutral")


@pytest.fixture(scope="module")
def session14(tmp_path_factory):
    root = tmp_path_factory.mktemp("sess")
    cfg = RunConfig(kind="session", participant="P01", out_root=str(root), camera="synthetic", size=(320, 240),
                                fps=10, rate=120, n_trials=14, time_scale=0.02, seed=3)
    return run_headless_session(cfg)


def test_headless_14_trials(session14):
    r = SessionReader(session14)
    assert r.status == "complete"
    sam = r.sam()
    assert len(sam) == 14
    for col in ("trial", "stimulus_id", "category", "sam_valence", "sam_arousal", "sam_dominance", "sam_emotion",
                "er7", "er3", "er_valence", "er_arousal", "answered_t_us"):
        assert col in sam.columns and sam[col].notna().all(), col
    assert ((sam["er_valence"] - (sam["sam_valence"] - 5) / 4).abs() < 1e-9).all()
    cats = list(sam["category"])
    assert sorted(cats) == sorted(CATS * 2)
    assert all(a != b for a, b in zip(cats, cats[1:])), "no two consecutive trials of one category"
    iv = r.stimulus_intervals()
    assert [i["trial"] for i in iv] == list(range(1, 15))
    assert all(i["offset_us"] > i["onset_us"] and i["status"] == "complete" for i in iv)
    # per-trial face segments: frame times inside the trial
    meta_trials = {t["trial"]: t for t in r.meta["trials"]}
    for seg in r.trial_segments():
        fi = r.frame_index(seg)
        t = meta_trials[seg.trial]
        assert len(fi) > 0
        assert fi["t_us"].min() >= t["t_start_us"] and fi["t_us"].max() < t["t_end_us"]
    # gaze covers the whole session
    g = r.gaze()
    ev = r.events()
    assert g["t_us"][0] <= ev[0]["t_us"] + 50_000 and g["t_us"][-1] >= iv[-1]["offset_us"]
    assert np.all(np.diff(g["t_us"]) > 0)
    # presentation log for gaze -> stimulus frame mapping
    seg1 = r.trial_segments()[0]
    log = (seg1.path / "stimulus_frames.tsv").read_text().splitlines()
    assert log[0] == "frame\tt_us" and len(log) > 10
    truth = r.truth()
    assert truth is not None and (truth["kind"] == "trial").sum() == 14


def test_abort_mid_trial_keeps_everything(tmp_path):
    cfg = RunConfig(kind="session", participant="P02", out_root=str(tmp_path), camera="none", rate=60,
                                n_trials=6, time_scale=0.02, seed=1)
    out = run_headless_session(cfg, abort_after_trials=2)
    r = SessionReader(out)
    assert r.status == "aborted"
    statuses = [t["status"] for t in r.meta["trials"]]
    assert statuses[:2] == ["complete", "complete"] and statuses[2] == "aborted"
    assert statuses[3:] == ["not_run"] * 3     # never begun: the word `repair` uses too
    assert len(r.sam()) == 2
    kinds = [e["kind"] for e in r.events()]
    assert "trial_aborted" in kinds and "abort" in kinds
    assert len(r.gaze()) > 0


def test_abort_by_stop_event(tmp_path):
    stop = threading.Event()
    cfg = RunConfig(kind="session", participant="P03", out_root=str(tmp_path), camera="none", rate=60,
                                n_trials=4, time_scale=0.02, seed=2)
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    out = run_headless_session(cfg, stop_event=stop)
    r = SessionReader(out)
    assert r.status == "aborted"
    assert any(t["status"] == "aborted" for t in r.meta["trials"]) or r.meta["trials"][0]["status"] == "not_run"


@pytest.mark.parametrize("pid", ["Jane Doe", "../P01", "P/01", "Jürgen", "P" * 33])
def test_participant_id_rule(tmp_path, pid, capsys):
    rc = main(["session", "--headless", "--participant", pid, "--out", str(tmp_path), "--trials", "2",
               "--time-scale", "0.02"])
    err = capsys.readouterr().err
    assert rc != 0 and "pseudonym" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_missing_stimulus_folder(tmp_path, capsys):
    rc = main(["session", "--headless", "--participant", "P01", "--stimuli", str(tmp_path / "nope"),
               "--out", str(tmp_path / "rec")])
    assert rc != 0 and "no such folder" in capsys.readouterr().err


def test_collect_first_adds_the_same_people_under_their_numbers(training_corpus, tmp_path, capsys):
    # the training corpus: seed 5, P01..P03; --first 2 --participants 1 must record P02 again, identically
    out = tmp_path / "more"
    assert main(["collect-synthetic", "--participants", "1", "--first", "2", "--trials", "3", "--time-scale", "0.03",
                 "--size", "320x240", "--seed", "5", "--mask-rate", "0.5", "--jobs", "1", "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["P02"]
    new = next(out.glob("P02/*/session.json")).parent
    old = next(training_corpus.glob("P02/*/session.json")).parent
    for name in ("truth.tsv", "sam.tsv"):
        assert (new / name).read_bytes() == (old / name).read_bytes(), name
    assert json.loads((new / "session.json").read_text())["plan"] == json.loads((old / "session.json").read_text())["plan"]
    assert main(["collect-synthetic", "--participants", "5", "--first", "997", "--out", str(tmp_path / "x")]) == 2
    assert "--first must be 1..995" in capsys.readouterr().err and not (tmp_path / "x").exists()
