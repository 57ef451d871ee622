"""The live engine end to end (issue 7): predictions, replay equality, a tracker that dies."""

import argparse
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.torch

EMER = [sys.executable, "-m", "emer_live.cli"]


def live(*args, timeout=180):
    return subprocess.run(EMER + ["live", "--headless"] + list(args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def live_run(tmp_path_factory, random_checkpoint):
    d = tmp_path_factory.mktemp("live")
    p = live("--tracker", "synthetic", "--camera", "synthetic", "--size", "640x360", "--checkpoint",
             str(random_checkpoint), "--window", "4", "--hop", "1", "--duration", "12",
             "--out", str(d / "P.jsonl"), "--record", str(d / "S"))
    assert p.returncode == 0, p.stderr + p.stdout
    return d, p


def test_live_predictions_complete(live_run):
    d, p = live_run
    lines = (d / "P.jsonl").read_text().splitlines()
    preds = [json.loads(x) for x in lines]
    assert len(preds) >= 7            # 12 s, first after 4 s, one per second
    first = preds[0]["t_end_us"] - preds[0]["t_start_us"]
    assert first == 4_000_000
    for q in preds:
        for k in ("er7", "fer7", "er3", "er_va", "gap", "modalities", "quality", "latency_ms", "checkpoint"):
            assert q[k] is not None, k
        assert abs(sum(q["er7"]) - 1) < 1e-4 and len(q["er7"]) == 7
        assert set(q["latency_ms"]) == {"assemble", "features", "model", "total"}
        assert 0 <= q["gap"]["jsd"] <= 1
    assert "0 dropped" in p.stdout and "summary:" in p.stdout
    tsv = (d / "S" / "predictions.tsv").read_text().splitlines()
    assert len(tsv) == len(preds) + 1


def test_replay_max_speed_gives_same_predictions(live_run, random_checkpoint):
    d, _ = live_run
    p = live("--tracker", f"replay:{d / 'S'}", "--camera", "replay", "--speed", "max", "--checkpoint",
             str(random_checkpoint), "--window", "4", "--hop", "1", "--out", str(d / "R.jsonl"))
    assert p.returncode == 0, p.stderr + p.stdout
    assert "real-time factor" in p.stdout
    live_p = {q["t_end_us"]: q for q in map(json.loads, (d / "P.jsonl").read_text().splitlines())}
    rep_p = {q["t_end_us"]: q for q in map(json.loads, (d / "R.jsonl").read_text().splitlines())}
    common = sorted(set(live_p) & set(rep_p))
    assert len(common) >= len(live_p) - 1, (sorted(live_p), sorted(rep_p))
    for t in common:
        a, b = live_p[t], rep_p[t]
        np.testing.assert_allclose(a["er7"], b["er7"], atol=1e-4)
        np.testing.assert_allclose(a["fer7"], b["fer7"], atol=1e-4)
        assert a["modalities"] == b["modalities"]
        assert abs(a["quality"]["face_found_fraction"] - b["quality"]["face_found_fraction"]) < 1e-9


def test_tracker_dies_engine_goes_on_face_only(tmp_path, random_checkpoint):
    from emer_live.live.runner import LiveRun
    from emer_live.model import load_checkpoint

    args = argparse.Namespace(tracker="synthetic", camera="synthetic", checkpoint=str(random_checkpoint), window=3.0,
                              hop=1.0, duration=11.0, speed="1", headless=True, out=None, record=None, rate=120.0,
                              fps=15.0, size="320x240", seed=0, participant="P00", device="cpu", quiet=True)
    run = LiveRun(args=args, model=load_checkpoint(random_checkpoint, device="cpu"), speed=1.0, out_path=None)
    got = []

    def killer():
        while run.engine is None:
            time.sleep(0.05)
        run.engine.callbacks.append(got.append)
        time.sleep(5.0)
        run.ds.tracker.stop()     # the tracker disappears mid-run

    th = threading.Thread(target=killer)
    th.start()
    rc = run.run()
    th.join()
    assert rc == 0
    assert len(got) >= 6
    early = [p for p in got if p.t_end_us - run.engine.t_origin_us <= 5_000_000]
    late = [p for p in got if p.t_start_us - run.engine.t_origin_us >= 5_500_000]
    assert early and late
    assert all(p.modalities["eye"] for p in early)
    assert all(not p.modalities["eye"] and not p.modalities["fixation"] and p.modalities["face"] for p in late)
    assert all(p.quality["valid_gaze_fraction"] == 0.0 for p in late)


def test_session_with_live_model_predicts_each_trial(tmp_path, random_checkpoint):
    """Whole-trial predictions at each stimulus end, beside SAM, equal to offline re-analysis."""
    import pandas as pd

    from emer_live.features.commands import build_session_windows
    from emer_live.model import load_checkpoint
    from emer_live.recording import SessionReader
    from emer_live.session.runner import HeadlessSessionConfig, run_headless_session

    cfg = HeadlessSessionConfig(participant="P07", out_root=str(tmp_path), size=(320, 240), fps=15, rate=120,
                                n_trials=3, time_scale=0.1, seed=4, fast=True, checkpoint=str(random_checkpoint))
    out = run_headless_session(cfg)
    r = SessionReader(out)
    preds = pd.read_csv(out / "predictions.tsv", sep="\t")
    trials = preds[preds["kind"] == "trial"].sort_values("trial")
    assert list(trials["trial"]) == [1, 2, 3]
    assert (preds["kind"] == "window").sum() >= 20
    info = r.summary()
    assert all("predicted_er7" in t and "sam_er7" in t for t in info["trials"])
    # offline: the same whole-trial windows from the recording, scored by the same model
    w = build_session_windows(r, per_trial=True)
    m = load_checkpoint(random_checkpoint, device="cpu")
    eye, fix = m.normalize(w["eye"], w["fixation"])
    mask = np.stack([w["face_mask"].any(1), w["eye_mask"].any(1), w["fixation_mask"].any(1)], axis=1)
    got = m.predict(w["face"], eye, fix, modality_mask=mask)["er7"]
    cols = [c for c in preds.columns if c.startswith("er7_")]
    np.testing.assert_allclose(got, trials[cols].to_numpy(), atol=2e-5)
