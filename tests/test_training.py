"""Training data and ``emer-live train``: labels, splits without participant leakage, the window
cache, the frozen face trunk, one-epoch training to a loadable checkpoint, resume, bad input.

A tiny synthetic corpus (3 participants x 3 trials, time scale 0.03, 320x240 camera) is recorded
once per test session; its window caches are shared by the tests that use it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emer_live import cli
from emer_live.errors import ConfigError
from emer_live.labels import ER7_CLASSES, VA_ANCHORS
from emer_live.training.dataset import (SampleSpec, fit_norm_stats, load_samples, participant_folds,
                                        read_fer_annotations, session_samples, split_validation)



@pytest.fixture(scope="module")
def corpus(training_corpus):
    return training_corpus


def sessions(root: Path):
    return sorted(p.parent for p in root.glob("P*/*/session.json"))


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------
def test_trial_samples_carry_sam_and_truth_labels(corpus):
    spec = SampleSpec(kind="trial", use_face=False)
    for sess in sessions(corpus):
        s = session_samples(sess, spec)
        sam = pd.read_csv(sess / "sam.tsv", sep="\t")
        truth = pd.read_csv(sess / "truth.tsv", sep="\t")
        truth = truth[truth["kind"] == "trial"].set_index("trial")
        assert len(s) == len(sam) == 3
        for i in range(len(s)):
            trial = int(s["trial"][i])
            row = sam[sam["trial"] == trial].iloc[0]
            assert ER7_CLASSES[s["er7"][i]] == row["er7"]
            assert ["positive", "negative", "neutral"][s["er3"][i]] == row["er3"]
            np.testing.assert_allclose(s["er_va"][i], [row["er_valence"], row["er_arousal"]], atol=1e-6)
            t = truth.loc[trial]
            assert ER7_CLASSES[s["fer7"][i]] == t["displayed_expression"]
            assert s["fer_intensity"][i] == pytest.approx(3 * t["intensity"], abs=1e-4)
            assert s["masked"][i] == int(t["masked"])
            assert ER7_CLASSES[s["true7"][i]] == t["true_emotion"]
            np.testing.assert_allclose(s["fer_va"][i], VA_ANCHORS[t["displayed_expression"]], atol=1e-6)
            assert s["fer_source"][i] == "truth"
            assert s["participant"][i] == sess.parent.name


def test_sliding_windows_lie_inside_their_stimulus(corpus):
    from emer_live.recording.reader import SessionReader

    sess = sessions(corpus)[0]
    s = session_samples(sess, SampleSpec(kind="sliding", window_s=1.0, hop_s=0.5, use_face=False))
    assert len(s) > 0 and set(s["kind"].tolist()) == {"window"}
    iv = {i["trial"]: i for i in SessionReader(sess).stimulus_intervals()}
    per_trial = {int(t): int(e) for t, e in zip(session_samples(sess, SampleSpec(use_face=False))["trial"],
                                                  session_samples(sess, SampleSpec(use_face=False))["er7"])}
    for i in range(len(s)):
        stim = iv[int(s["trial"][i])]
        assert stim["onset_us"] <= s["t_start_us"][i] and s["t_end_us"][i] <= stim["offset_us"]
        assert s["er7"][i] == per_trial[int(s["trial"][i])]


def test_cached_sliding_windows_equal_the_window_builders(corpus):
    from emer_live.features.commands import build_session_windows
    from emer_live.training.dataset import session_windows

    sess = sessions(corpus)[1]
    full = build_session_windows(str(sess), window_s=1.0, hop_s=0.5, per_trial=False, use_face=True)
    mine = session_windows(sess, per_trial=False, window_s=1.0, hop_s=0.5, use_face=True)   # built + cached
    again = session_windows(sess, per_trial=False, window_s=1.0, hop_s=0.5, use_face=True)  # from the cache
    keep = full["trial"] >= 0
    assert keep.any() and not keep.all()
    for got in (mine, again):
        for k in ("t_end_us", "trial", "eye", "eye_mask", "fixation", "fixation_mask", "face_mask"):
            np.testing.assert_array_equal(got[k], full[k][keep])
        # faces are cached as uint8 pixels; / 255 gives back exactly the builder's floats
        np.testing.assert_array_equal(got["face"].astype(np.float32) / 255.0, full["face"][keep])
    # an eye-only request is served from the cache built with faces (nothing rebuilt), without faces
    import emer_live.features.commands as fc

    real, fc.build_session_windows = fc.build_session_windows, None
    try:
        eye_only = session_windows(sess, per_trial=False, window_s=1.0, hop_s=0.5, use_face=False)
    finally:
        fc.build_session_windows = real
    np.testing.assert_array_equal(eye_only["eye"], full["eye"][keep])
    assert "face" not in eye_only and not eye_only["face_mask"].any()
    assert len(list((sess / "cache").glob("windows_w1-h0.5-face_*.npz"))) == 1


def test_fer_annotations_override_truth(corpus, tmp_path):
    src = sessions(corpus)[0]
    sess = tmp_path / "P01" / src.name
    shutil.copytree(src, sess, ignore=shutil.ignore_patterns("cache"))
    (sess / "fer_annotations.tsv").write_text(
        "trial\tfer7\tfer_intensity\tannotator\n"
        "1\tanger\t2.0\tauto-model\n"          # machine row, overruled by the humans below
        "1\tSadness\t1.0\tR1\n"
        "1\t1\t2.0\tR2\n"                      # index 1 = sadness
        "1\tfear\t3.0\tR3\n"
        "2\tsurprise\t0.5\tauto\n"             # machine row only: used
        "3\t\t\tR1\n",                          # no judgeable expression: no FER label
        encoding="utf-8")
    ann = read_fer_annotations(sess / "fer_annotations.tsv")
    assert ann[1]["fer7"] == ER7_CLASSES.index("sadness")
    assert ann[1]["fer_intensity"] == pytest.approx(1.5)
    assert ann[2]["fer7"] == ER7_CLASSES.index("surprise")
    s = session_samples(sess, SampleSpec(use_face=False))
    by_trial = {int(t): i for i, t in enumerate(s["trial"])}
    assert s["fer7"][by_trial[1]] == ER7_CLASSES.index("sadness")
    assert s["fer3"][by_trial[1]] == 1  # negative
    np.testing.assert_allclose(s["fer_va"][by_trial[1]], VA_ANCHORS["sadness"], atol=1e-6)
    assert s["fer7"][by_trial[3]] == -1 and s["fer_source"][by_trial[3]] == "annotation"
    assert np.isnan(s["fer_va"][by_trial[3]]).all()

    (sess / "fer_annotations.tsv").write_text("trial\tfer7\n1\tgrumpy\n", encoding="utf-8")
    with pytest.raises(Exception, match="grumpy"):
        session_samples(sess, SampleSpec(use_face=False))


def test_baseline_reference_is_the_baseline_window_mean(corpus):
    from emer_live.features.windows import RecordingSource, WindowBuilder, WindowSpec
    from emer_live.recording.reader import SessionReader
    from emer_live.training.dataset import normalize_inputs, session_reference

    sess = sessions(corpus)[0]
    r = SessionReader(sess)
    ev = {e["kind"]: e["t_us"] for e in r.events()}
    w = WindowBuilder(RecordingSource(r), spec=WindowSpec(window_s=2.0), use_face=False).build(
        ev["baseline_end"], t_start_us=ev["baseline_start"])
    eye_ref, fix_ref, span = session_reference(r)
    assert span == "baseline"
    np.testing.assert_allclose(eye_ref, w.eye[w.eye_mask].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fix_ref, w.fixation[w.fixation_mask].mean(axis=0), rtol=1e-5, atol=1e-6)
    s = session_samples(sess, SampleSpec(use_face=False))
    np.testing.assert_array_equal(s["eye_ref"], np.tile(eye_ref, (len(s), 1)))
    ns = fit_norm_stats(s, reference="baseline")
    assert ns["reference"]["kind"] == "session_baseline"
    np.testing.assert_allclose(ns["eye"]["mean"], (s["eye"] - eye_ref)[s["eye_mask"]].mean(axis=0), atol=1e-4)
    e, f = normalize_inputs(s["eye"], s["fixation"], ns, eye_ref=s["eye_ref"], fixation_ref=s["fixation_ref"])
    expect = (s["eye"] - eye_ref - np.array(ns["eye"]["mean"], np.float32)) / np.array(ns["eye"]["std"], np.float32)
    np.testing.assert_allclose(e, expect, rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="reference"):
        normalize_inputs(s["eye"], s["fixation"], ns)


# --------------------------------------------------------------------------------------------
# splits and cache
# --------------------------------------------------------------------------------------------
def test_participant_folds_partition_people():
    people = [f"P{i:02d}" for i in range(1, 12)]
    folds = participant_folds(people + people[:3], 4, seed=3)
    flat = [p for f in folds for p in f]
    assert sorted(flat) == sorted(people) and len(flat) == len(set(flat))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert folds == participant_folds(people, 4, seed=3)
    assert folds != participant_folds(people, 4, seed=4)
    tr, va = split_validation(people, fraction=0.2, seed=1)
    assert not set(tr) & set(va) and sorted(tr + va) == sorted(people) and len(va) == 2
    with pytest.raises(ConfigError, match="participant"):
        participant_folds(people[:2], 3)


def test_window_cache_is_used_and_stays_in_cache_folder(corpus, monkeypatch):
    import emer_live.features.commands as fc

    spec = SampleSpec(kind="trial", use_face=False)
    first = load_samples([corpus], spec)
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file() and "cache" not in p.parts}

    def boom(*a, **k):
        raise AssertionError("windows were rebuilt although cached")

    import emer_live.training.dataset as ds_mod

    monkeypatch.setattr(fc, "build_session_windows", boom)
    monkeypatch.setattr(ds_mod, "running_reference", boom)     # the running reference is cached too
    monkeypatch.setattr(ds_mod, "session_reference", boom)
    again = load_samples([corpus], spec)
    np.testing.assert_array_equal(first["eye"], again["eye"])
    for k in ("eye_sref_mean", "eye_sref_sd", "fixation_sref_mean", "eye_ref"):
        np.testing.assert_array_equal(first[k], again[k])
    after = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file() and "cache" not in p.parts}
    assert before == after  # nothing but cache/ was written into the sessions
    for sess in sessions(corpus):
        assert list((sess / "cache").glob("windows_*.npz"))
        assert len(list((sess / "cache").glob("reference_*.npz"))) >= 1


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
@pytest.mark.torch
def test_frozen_face_trunk_matches_full_forward():
    torch = pytest.importorskip("torch")
    from emer_live.model import EMERT, EMERTConfig
    from emer_live.training._face_trunk import FaceTrunk

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = EMERT(EMERTConfig(heads=("er7",))).eval()
    face = torch.randn(2, 8, 3, 112, 112)
    eye, fix = torch.randn(2, 32, 39), torch.randn(2, 32, 2)
    with torch.no_grad():
        ref = model(face, eye, fix)["er7"]
    for mode in ("layer4", "none"):
        trunk = FaceTrunk(model, mode)
        packed = trunk.precompute(face.numpy(), np.array([0, 1]), device=torch.device("cpu"))
        trunk.activate()
        with torch.no_grad():
            got = model(torch.from_numpy(packed.astype(np.float32)), eye, fix)["er7"]
        trunk.deactivate()
        torch.testing.assert_close(got, ref, atol=2e-2, rtol=2e-2)
        assert not any(p.requires_grad for p in model.face_encoder.layer3.parameters())
    with torch.no_grad():  # the encoder's own forward is back
        torch.testing.assert_close(model(face, eye, fix)["er7"], ref)


@pytest.mark.torch
def test_one_epoch_gives_loadable_checkpoint_without_leakage(corpus, tmp_path):
    torch = pytest.importorskip("torch")
    from emer_live.model import load_checkpoint

    torch.set_num_threads(1)
    out = tmp_path / "m.pt"
    rc = cli.main(["train", "--data", str(corpus), "--folds", "3", "--run-folds", "1", "--epochs", "1",
                   "--batch-size", "4", "--task", "multi", "--modalities", "face,eye,fixation",
                   "--face-train", "none", "--threads", "1", "--quiet", "--out", str(out)])
    assert rc == 0 and out.is_file()
    assert not (tmp_path / "m.train_state.pt").exists()
    m = load_checkpoint(out, device="cpu")
    prov = m.provenance
    sp = prov["split"]
    train_p, val_p, test_p = set(sp["train_participants"]), set(sp["val_participants"]), set(sp["test_participants"])
    assert train_p and test_p and not (train_p & test_p) and not (val_p & test_p) and not (train_p & val_p)
    assert train_p | val_p | test_p == {"P01", "P02", "P03"}
    assert sorted(p for f in sp["fold_test_participants"] for p in f) == ["P01", "P02", "P03"]
    assert prov["modalities"] == ["face", "eye", "fixation"] and prov["task"] == "multi"
    assert set(m.config.heads) == {"er7", "er3", "er_va", "fer7", "fer3", "fer_va", "fer_intensity"}
    assert m.label_maps["er7"] == list(ER7_CLASSES)
    fold = prov["metrics"]["folds"][0]
    assert fold["test_participants"] == sp["test_participants"] and fold["heads"]["er7"]["n"] > 0
    # normalisation fitted on the training participants only
    samples = load_samples([corpus], SampleSpec(kind="trial"), load_face=False)
    expect = fit_norm_stats(samples.of_participants(sp["train_participants"]))
    np.testing.assert_allclose(m.norm_stats["eye"]["mean"], expect["eye"]["mean"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(m.norm_stats["fixation"]["std"], expect["fixation"]["std"], rtol=1e-6)
    # the live engine's path works on it
    face = np.zeros((1, 8, 3, 112, 112), np.float32)
    eye, fix = m.normalize(samples["eye"][:1], samples["fixation"][:1])
    pred = m.predict(face, eye, fix, modality_mask=np.array([[False, True, True]]))
    assert pred["er7"].shape == (1, 7) and np.isclose(pred["er7"].sum(), 1.0, atol=1e-5)


@pytest.mark.torch
def test_resume_continues_to_the_same_weights(corpus, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from emer_live.model import load_checkpoint
    from emer_live.training import train as T

    torch.set_num_threads(1)
    args = ["train", "--data", str(corpus), "--folds", "3", "--run-folds", "1", "--epochs", "2", "--patience", "9",
            "--batch-size", "2", "--task", "er7", "--modalities", "eye,fixation", "--threads", "1", "--quiet"]
    ref = tmp_path / "ref.pt"
    assert cli.main([*args, "--out", str(ref)]) == 0

    out = tmp_path / "run.pt"
    real_save = T._Trainer.save_state
    calls = {"n": 0}

    def save_then_crash(self, payload):
        real_save(self, payload)
        calls["n"] += 1
        if calls["n"] == 1:   # after epoch 1 was saved
            raise KeyboardInterrupt

    monkeypatch.setattr(T._Trainer, "save_state", save_then_crash)
    assert cli.main([*args, "--out", str(out)]) == 130
    assert not out.exists() and (tmp_path / "run.train_state.pt").is_file()
    monkeypatch.setattr(T._Trainer, "save_state", real_save)
    assert cli.main([*args, "--out", str(out)]) == 2        # refuses to start over the state silently
    assert cli.main([*args, "--epochs", "3", "--resume", "--out", str(out)]) == 2   # options differ
    assert cli.main([*args, "--resume", "--out", str(out)]) == 0
    a, b = load_checkpoint(ref, device="cpu"), load_checkpoint(out, device="cpu")
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[k], v, rtol=0, atol=0)
    assert len(b.provenance["training"]["history"]) == 2


@pytest.mark.torch
def test_modality_dropout_hides_one_modality_of_full_samples():
    torch = pytest.importorskip("torch")
    from emer_live.training.train import _drop_modalities

    n = 20_000
    mask = torch.ones(n, 3, dtype=torch.bool)
    mask[: n // 4, 0] = False                 # no face: nothing to drop
    mask[n // 4: n // 2, 1:] = False          # no eyes: nothing to drop
    g = torch.Generator().manual_seed(0)
    out = _drop_modalities(mask, 0.2, 0.3, g)
    assert torch.equal(out[: n // 2], mask[: n // 2])
    full = out[n // 2:]
    no_face = ~full[:, 0]
    no_eye = ~full[:, 1] & ~full[:, 2]
    assert not (no_face & no_eye).any() and (full[:, 1] == full[:, 2]).all()
    assert float(no_face.float().mean()) == pytest.approx(0.2, abs=0.02)
    assert float(no_eye.float().mean()) == pytest.approx(0.3, abs=0.02)
    assert torch.equal(_drop_modalities(mask, 0.0, 0.0, g), mask)


@pytest.mark.torch
def test_only_fold_trains_that_fold_as_the_full_run_does(corpus, tmp_path):
    """--only-fold K (folds spread over processes/machines) gives fold K's model of a full run
    (here with modality dropout on, whose random masks must not depend on the other folds either)."""
    torch = pytest.importorskip("torch")
    from emer_live.model import load_checkpoint
    from emer_live.training.train import fold_checkpoint_path

    torch.set_num_threads(1)
    args = ["train", "--data", str(corpus), "--folds", "3", "--epochs", "1", "--batch-size", "2", "--task", "er7",
            "--face-train", "none", "--face-dropout", "0.3", "--eye-dropout", "0.3", "--threads", "1", "--quiet"]
    full = tmp_path / "full.pt"
    assert cli.main([*args, "--run-folds", "2", "--save-folds", "--out", str(full)]) == 0
    one = tmp_path / "one.pt"
    assert cli.main([*args, "--only-fold", "2", "--out", str(one)]) == 0
    a, b = load_checkpoint(fold_checkpoint_path(full, 2), device="cpu"), load_checkpoint(one, device="cpu")
    assert b.provenance["split"]["test_participants"] == a.provenance["split"]["test_participants"]
    assert b.provenance["training"]["face_dropout"] == 0.3 and b.provenance["training"]["eye_dropout"] == 0.3
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[k], v, rtol=0, atol=0)
    assert cli.main([*args, "--only-fold", "4", "--out", str(tmp_path / "x.pt")]) == 2


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("emer-live: error: ")
    return err[-1]


@pytest.mark.torch
def test_bad_data_roots_give_one_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["train", "--data", str(empty), "--out", str(tmp_path / "x.pt")]) == 2
    assert "is empty" in _one_error_line(capsys)
    junk = tmp_path / "junk"
    (junk / "a").mkdir(parents=True)
    (junk / "a" / "notes.txt").write_text("hello")
    assert cli.main(["train", "--data", str(junk), "--out", str(tmp_path / "x.pt")]) == 2
    assert "no recorded session" in _one_error_line(capsys)
    assert cli.main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "no such folder" in _one_error_line(capsys)
    assert cli.main(["train", "--data", str(junk), "--out", str(tmp_path / "x.ckpt")]) == 2
    assert ".pt" in _one_error_line(capsys)
    assert cli.main(["train", "--data", str(junk), "--modalities", "face,nose", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--modalities" in _one_error_line(capsys)


@pytest.mark.torch
def test_existing_output_and_too_many_folds_are_refused(corpus, tmp_path, capsys):
    out = tmp_path / "exists.pt"
    out.write_bytes(b"x")
    assert cli.main(["train", "--data", str(corpus), "--out", str(out)]) == 2
    assert "already exists" in _one_error_line(capsys)
    assert cli.main(["train", "--data", str(corpus), "--folds", "5", "--modalities", "eye,fixation",
                     "--out", str(tmp_path / "n.pt")]) == 2
    assert "only 3 participant" in _one_error_line(capsys)
