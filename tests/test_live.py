"""The live engine end to end (issue 7): predictions, replay equality, a tracker that dies."""

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
        assert set(q["latency_ms"]) == {"wait", "assemble", "features", "queue", "model", "total"}
        assert q["stalled"] == ""
        assert min(q["latency_ms"].values()) >= 0
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
    """The live run's failure policy: a tracker that disappears mid-run leaves the camera, and
    recognition carries on with the face alone."""
    from emer_live.app import PredictionMade, Run, RunConfig, drive
    from emer_live.model import load_checkpoint

    cfg = RunConfig(kind="live", checkpoint=str(random_checkpoint), window_s=3.0, hop_s=1.0, duration_s=11.0,
                    rate=120.0, fps=15.0, size=(320, 240), model_device="cpu")
    run = Run(cfg, model=load_checkpoint(random_checkpoint, device="cpu"))
    got = []
    run.subscribe(lambda ev: got.append(ev.prediction) if isinstance(ev, PredictionMade) else None)

    def killer():
        while not run.running:
            time.sleep(0.05)
        time.sleep(5.0)
        run.devices.tracker.stop()     # the tracker disappears mid-run

    th = threading.Thread(target=killer)
    th.start()
    drive(run, signals=False)
    th.join()
    assert run.status == "complete" and not run.engine.errors
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
    from emer_live.app import RunConfig
    from emer_live.session.runner import run_headless_session

    cfg = RunConfig(kind="session", participant="P07", out_root=str(tmp_path), size=(320, 240), fps=15, rate=120,
                                n_trials=3, time_scale=0.1, seed=4, fast=True, checkpoint=str(random_checkpoint))
    out = run_headless_session(cfg)
    r = SessionReader(out)
    preds = pd.read_csv(out / "predictions.tsv", sep="\t")
    trials = preds[preds["kind"] == "trial"].sort_values("trial")
    assert list(trials["trial"]) == [1, 2, 3]
    assert (preds["kind"] == "window").sum() >= 20
    # sliding windows wholly inside a clip say which trial they belong to (as training labels them)
    spans = {iv["trial"]: (iv["onset_us"], iv["offset_us"]) for iv in r.stimulus_intervals()}
    wins = preds[preds["kind"] == "window"]
    inside = wins[wins["trial"] >= 0]
    assert set(inside["trial"]) == {1, 2, 3}
    for _, p in inside.iterrows():
        on, off = spans[p["trial"]]
        assert on <= p["t_start_us"] and p["t_end_us"] <= off
    for _, p in wins[wins["trial"] < 0].iterrows():
        assert not any(on <= p["t_start_us"] and p["t_end_us"] <= off for on, off in spans.values())
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


def test_session_reference_checkpoint_live_equals_offline(tmp_path):
    """A checkpoint trained on the running session reference: the live engine z-scores the eyes
    by the session so far - no eyes before the reference has 16 s of gaze, and whole-trial
    predictions equal the training pipeline's samples scored offline."""
    import pandas as pd
    import torch

    from emer_live.features.commands import build_session_windows
    from emer_live.features.session_reference import SESSION_REFERENCE
    from emer_live.model import load_checkpoint
    from emer_live.model.checkpoint import identity_norm_stats, save_checkpoint
    from emer_live.model.config import EMERTConfig
    from emer_live.model.emert import EMERT
    from emer_live.app import RunConfig
    from emer_live.session.runner import run_headless_session
    from emer_live.training.dataset import SampleSpec, modality_mask, normalize_samples, session_samples

    torch.manual_seed(1)
    cfg = EMERTConfig()
    ckpt = tmp_path / "sref.pt"
    ns = identity_norm_stats(cfg)
    ns["eye"]["mean"] = [0.1] * 39        # the global statistics still apply after the reference
    ns["reference"] = dict(SESSION_REFERENCE)
    save_checkpoint(ckpt, EMERT(cfg).eval(), norm_stats=ns, provenance={"data": "random init (tests)"})
    out = run_headless_session(RunConfig(
        kind="session",        participant="P08", out_root=str(tmp_path), size=(320, 240), fps=15, rate=120, n_trials=2,
        time_scale=0.3, seed=2, fast=True, checkpoint=str(ckpt)))
    preds = pd.read_csv(out / "predictions.tsv", sep="\t")
    win = preds[preds["kind"] == "window"]
    origin = __import__("json").loads((out / "session.json").read_text())["live"]["t_origin_us"]
    early = win[win["t_end_us"] - origin < 16_000_000]
    late = win[win["t_end_us"] - origin >= 24_000_000]
    assert len(early) and len(late)
    assert not early["used_eye"].astype(bool).any() and early["used_face"].astype(bool).all()
    assert late["used_eye"].astype(bool).all()
    trials = preds[preds["kind"] == "trial"].sort_values("trial")
    assert list(trials["trial"]) == [1, 2]
    # offline: training samples (running reference from session.json's live origin) + same crops
    s = session_samples(out, SampleSpec(kind="trial", use_face=False))
    m = load_checkpoint(ckpt, device="cpu")
    eye, fix = normalize_samples(s, m.norm_stats)
    w = build_session_windows(str(out), per_trial=True)
    mask = modality_mask(s, ("eye", "fixation"), m.norm_stats)
    mask[:, 0] = w["face_mask"].any(1)
    got = m.predict(w["face"], eye, fix, modality_mask=mask)["er7"]
    cols = [c for c in preds.columns if c.startswith("er7_")]
    np.testing.assert_allclose(got, trials[cols].to_numpy(), atol=5e-5)


def test_replay_with_face_fallback_takes_er_from_the_face(live_run, random_checkpoint, tmp_path):
    from emer_live.model import load_checkpoint

    d, _ = live_run
    ff = tmp_path / "ff.pt"
    # a threshold below any 7-class top probability: every window with face and eyes takes the face's ER
    load_checkpoint(random_checkpoint, device="cpu").with_inference(ff, {"face_fallback": {"threshold": 0.01}})
    p = live("--tracker", f"replay:{d / 'S'}", "--camera", "replay", "--speed", "max", "--checkpoint", str(ff),
             "--window", "4", "--hop", "1", "--out", str(tmp_path / "F.jsonl"), "--record", str(tmp_path / "S"))
    assert p.returncode == 0, p.stderr + p.stdout
    plain = {q["t_end_us"]: q for q in map(json.loads, (d / "P.jsonl").read_text().splitlines())}
    fb = {q["t_end_us"]: q for q in map(json.loads, (tmp_path / "F.jsonl").read_text().splitlines())}
    common = sorted(set(plain) & set(fb))
    assert len(common) >= 5
    n_face = 0
    for t in common:
        a, b = plain[t], fb[t]
        m = b["modalities"]
        assert b["er_from_face"] == (m["face"] and (m["eye"] or m["fixation"]))
        np.testing.assert_allclose(a["fer7"], b["fer7"], atol=1e-4)   # FER always from the fused pass
        if b["er_from_face"]:
            n_face += 1
            assert np.abs(np.subtract(a["er7"], b["er7"])).max() > 1e-4
        else:
            np.testing.assert_allclose(a["er7"], b["er7"], atol=1e-4)
    assert n_face >= 3
    rows = (tmp_path / "S" / "predictions.tsv").read_text().splitlines()
    head = rows[0].split("\t")
    col = [r.split("\t")[head.index("er_from_face")] for r in rows[1:]]
    assert col.count("1") >= n_face


def test_a_window_with_no_modality_is_an_error_not_a_crash(tmp_path):
    """No camera and the demo checkpoint (face windows only): no window has a modality the model
    can use. Each is recorded as an engine error and left unscored; before, the fast session
    ended in a ValueError traceback (exit 1) and the threaded engine lost whole batches."""
    r = subprocess.run(EMER + ["session", "--headless", "--participant", "P03", "--camera", "none", "--trials", "1",
                               "--time-scale", "0.1", "--fast", "--checkpoint", "models/emert_demo_synthetic.pt",
                               "--out", str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "status complete" in r.stdout


def test_reanalysis_of_a_session_without_face_frames_finishes(tmp_path):
    """A clip announced to an engine without the face modality (a session recorded with no
    camera): its face sample times are no work, so its end is what is due. Before, the fast
    replay stepped to the first sample time forever (the re-analysis never finished)."""
    from emer_live.app.replay import Reanalysis, ReplaySession

    r = subprocess.run(EMER + ["session", "--headless", "--participant", "P03", "--camera", "none", "--trials", "2",
                               "--time-scale", "0.1", "--fast", "--checkpoint", "models/emert_demo_synthetic.pt",
                               "--out", str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    (folder,) = (tmp_path / "P03").iterdir()
    re = Reanalysis(ReplaySession(folder), "models/emert_demo_synthetic.pt")
    for _ in range(10_000):
        if not re.step():
            break
    else:
        pytest.fail("the re-analysis did not finish")
    re.close()
    assert re.status == "complete", re.status
