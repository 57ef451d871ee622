"""Face fallback (emer_live.model.fallback): ER from the face alone where the face alone is sure.

The numpy part (switching rows, choosing the threshold on validation data) runs without torch;
the rest checks that the live path (``LoadedModel.predict``) and the evaluation path
(``predict_samples``) apply the same stored setting, and the ``tune-fallback`` command end to end.
"""

from __future__ import annotations

import numpy as np
import pytest

from emer_live import cli
from emer_live.errors import ConfigError
from emer_live.model.fallback import check_face_fallback, choose_threshold, combine, eligible_rows


def onehot(idx, k=7, p=0.9):
    out = np.full((len(idx), k), (1 - p) / (k - 1))
    out[np.arange(len(idx)), idx] = p
    return out


# --------------------------------------------------------------------------------------------
# numpy core
# --------------------------------------------------------------------------------------------
def test_combine_switches_only_eligible_confident_rows_and_only_er_heads():
    fused = {"er7": onehot([0, 1, 2, 3]), "er_va": np.zeros((4, 2)), "fer7": onehot([5, 5, 5, 5]),
             "modalities_used": np.ones((4, 3), bool)}
    face = {"er7": np.vstack([onehot([4], p=0.95), onehot([4], p=0.5), onehot([4], p=0.95), onehot([4], p=0.95)]),
            "er_va": np.ones((4, 2)), "fer7": onehot([6, 6, 6, 6])}
    eligible = np.array([True, True, True, False])
    out, fired = combine(fused, face, 0.8, eligible)
    # row 0: sure face -> switched; row 1: unsure face; row 2: sure; row 3: not eligible (no eyes or no face)
    assert fired.tolist() == [True, False, True, False]
    assert out["er7"].argmax(1).tolist() == [4, 1, 4, 3]
    assert out["er_va"][:, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    np.testing.assert_array_equal(out["fer7"], fused["fer7"])  # FER always from the fused pass
    assert fused["er7"].argmax(1).tolist() == [0, 1, 2, 3]     # inputs untouched


def test_eligible_rows_need_face_and_eyes():
    m = np.array([[1, 1, 1], [1, 0, 1], [1, 0, 0], [0, 1, 1]], bool)
    assert eligible_rows(m).tolist() == [True, True, False, False]


def test_threshold_is_chosen_where_the_sure_face_beats_the_fused_answer():
    rng = np.random.default_rng(0)
    n = 140
    y = np.arange(n) % 7
    # the face is sure (0.9) and right on classes 1-5; unsure (0.35) and says 0 on classes 0 and 6
    face = np.where(np.isin(y, [0, 6])[:, None], onehot(np.zeros(n, int), p=0.35), onehot(y, p=0.9))
    # the fused answer is right on classes 0 and 6 and on 70 % of the others
    wrong = (rng.random(n) < 0.3) & ~np.isin(y, [0, 6])
    fused = onehot(np.where(wrong, (y + 1) % 7, y), p=0.6)
    spec = choose_threshold(fused, face, np.ones(n, bool), y)
    assert spec["threshold"] is not None and 0.35 < spec["threshold"] <= 0.9
    assert spec["val_er7_uar"] == pytest.approx(1.0)
    assert spec["val_er7_uar_fused"] < 0.9
    # every threshold in (0.35, 0.9] is equally good: the tie goes to the highest tried
    assert spec["threshold"] == 0.9
    assert [g[0] for g in spec["grid"]] == sorted(g[0] for g in spec["grid"])


def test_threshold_is_off_when_the_face_never_helps():
    y = np.arange(70) % 7
    fused = onehot(y, p=0.6)                      # fused always right
    face = onehot((y + 1) % 7, p=0.95)            # face sure and always wrong
    spec = choose_threshold(fused, face, np.ones(70, bool), y)
    assert spec["threshold"] is None and spec["val_er7_uar"] == spec["val_er7_uar_fused"] == 1.0
    # unlabelled samples are ignored; none at all is an error
    spec = choose_threshold(fused, face, np.ones(70, bool), np.where(y == 3, -1, y))
    assert spec["n_val"] == 60
    with pytest.raises(ConfigError, match="no scored sample with an ER7 label"):
        choose_threshold(fused, face, np.ones(70, bool), np.full(70, -1))


@pytest.mark.parametrize("bad", [{"threshold": 0}, {"threshold": 1.5}, {"threshold": "0.5"}, {"threshold": True},
                                 {"threshold": float("nan")}, [0.5]])
def test_bad_stored_settings_are_refused(bad):
    with pytest.raises(ValueError, match="face_fallback"):
        check_face_fallback(bad)


# --------------------------------------------------------------------------------------------
# checkpoints and the live path
# --------------------------------------------------------------------------------------------
@pytest.mark.torch
def test_checkpoint_keeps_the_setting_and_predict_applies_it(random_checkpoint, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from emer_live.model import load_checkpoint

    torch.manual_seed(1)
    base = load_checkpoint(random_checkpoint, device="cpu")
    assert base.inference == {} and base.face_fallback is None
    b = 5
    face = torch.rand(b, 8, 3, 112, 112).numpy()
    eye = torch.randn(b, 32, 39).numpy()
    fix = torch.randn(b, 32, 2).numpy()
    mask = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 0], [0, 1, 1], [1, 1, 0]], bool)
    fused = base.predict(face, eye, fix, modality_mask=mask)
    has_face = mask[:, 0]
    part = base.predict(face[has_face], eye[has_face], fix[has_face],
                        modality_mask=mask[has_face] & np.array([True, False, False]))
    face_only = {h: np.zeros_like(v) for h, v in fused.items()}
    for h in part:
        face_only[h][has_face] = part[h]
    assert not fused["er_face_fallback"].any()
    # a threshold just below the face-only confidence of row 0 switches row 0 (and any surer row)
    conf = np.where(has_face, face_only["er7"].max(1), 0.0)
    t = float(conf[0]) - 1e-6
    out = tmp_path / "ff.pt"
    base.with_inference(out, {"face_fallback": {"threshold": t, "note": "test"}}, note="unit test")
    with pytest.raises(Exception, match="already exists"):
        base.with_inference(out, {"face_fallback": {"threshold": t}})
    m = load_checkpoint(out, device="cpu")
    assert m.face_fallback == pytest.approx(t) and m.provenance["derived_from"]["checkpoint_id"] == base.id
    got = m.predict(face, eye, fix, modality_mask=mask)
    expect_fired = eligible_rows(mask) & (conf >= t)
    assert got["er_face_fallback"].tolist() == expect_fired.tolist() and expect_fired[0]
    for h in ("er7", "er3", "er_va"):
        want = np.where(expect_fired.reshape((-1,) + (1,) * (fused[h].ndim - 1)), face_only[h], fused[h])
        np.testing.assert_allclose(got[h], want, atol=1e-6)
    np.testing.assert_allclose(got["fer7"], fused["fer7"], atol=1e-6)
    assert cli.main(["model-info", str(out)]) == 0
    assert f"face fallback: threshold {t:.2f}" in capsys.readouterr().out
    # off on request
    plain = m.predict(face, eye, fix, modality_mask=mask, face_fallback=False)
    np.testing.assert_allclose(plain["er7"], fused["er7"], atol=1e-6)


@pytest.mark.torch
def test_a_checkpoint_with_a_bad_setting_is_refused(random_checkpoint, tmp_path):
    torch = pytest.importorskip("torch")
    from emer_live.errors import CheckpointError
    from emer_live.model import load_checkpoint

    payload = torch.load(random_checkpoint, weights_only=True)
    payload["inference"] = {"face_fallback": {"threshold": 2.0}}
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pt: invalid metadata: inference\.face_fallback\.threshold"):
        load_checkpoint(bad, device="cpu")
    payload["inference"] = {"ensemble": 3}
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="unknown inference setting"):
        load_checkpoint(bad, device="cpu")
    # a threshold on ER7 probabilities needs an er7 head
    from emer_live.model import EMERT, EMERTConfig, save_checkpoint
    from emer_live.model.checkpoint import identity_norm_stats

    cfg = EMERTConfig(heads=("fer7",))
    with pytest.raises(ValueError, match="needs an er7 head"):
        save_checkpoint(tmp_path / "fer.pt", EMERT(cfg), norm_stats=identity_norm_stats(cfg), provenance={},
                        inference={"face_fallback": {"threshold": 0.5}})


# --------------------------------------------------------------------------------------------
# tune-fallback and evaluate, end to end
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(training_corpus, tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ff") / "m.pt"
    assert cli.main(["train", "--data", str(training_corpus), "--folds", "3", "--run-folds", "1", "--epochs", "1",
                     "--batch-size", "4", "--task", "multi", "--face-train", "none", "--eye-dropout", "0.5",
                     "--threads", "1", "--quiet", "--out", str(out)]) == 0
    return out


@pytest.mark.torch
def test_tune_fallback_uses_validation_participants_and_evaluate_applies_it(trained, training_corpus, tmp_path,
                                                                             capsys):
    from emer_live.model import load_checkpoint
    from emer_live.training.dataset import SampleSpec, load_samples
    from emer_live.training.evaluate import predict_samples

    base = load_checkpoint(trained, device="cpu")
    sp = base.provenance["split"]
    # train --face-fallback auto (the default) already tuned it on the validation participants
    auto = base.inference["face_fallback"]
    assert auto["participants"] == sorted(sp["val_participants"]) and len(auto["grid"]) == 14
    out = tmp_path / "tuned.pt"
    capsys.readouterr()
    assert cli.main(["tune-fallback", "--checkpoint", str(trained), "--data", str(training_corpus),
                     "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "threshold 0.30: ER7 UAR" in text and f"wrote {out}" in text
    m = load_checkpoint(out, device="cpu")
    ff = m.inference["face_fallback"]
    assert ff["participants"] == sorted(sp["val_participants"])
    assert not set(ff["participants"]) & set(sp["test_participants"])
    assert len(ff["grid"]) == 14 and ff["n_val"] > 0
    assert ff["grid"] == auto["grid"]  # the command and train tune the same way
    assert m.provenance["derived_from"]["checkpoint_id"] == base.id
    # whatever was chosen, force a threshold that switches some rows to check evaluate against predict
    forced = tmp_path / "forced.pt"
    m.with_inference(forced, {"face_fallback": {**ff, "threshold": 0.05}})
    f = load_checkpoint(forced, device="cpu")
    samples = load_samples([training_corpus], SampleSpec(kind="trial"), load_face=True)
    test_s = samples.of_participants(sp["test_participants"])
    res = predict_samples(f.model, test_s, heads=["er7"], norm_stats=f.norm_stats, face_fallback=f.face_fallback)
    plain = predict_samples(f.model, test_s, heads=["er7"], norm_stats=f.norm_stats)
    face = predict_samples(f.model, test_s, heads=["er7"], norm_stats=f.norm_stats, modalities=("face",))
    assert res["er_face_fallback"].any()
    np.testing.assert_allclose(res["er7"], np.where(res["er_face_fallback"][:, None], face["er7"], plain["er7"]),
                               atol=1e-6)
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(forced), "--data", str(training_corpus),
                     "--out-dir", str(tmp_path / "ev")]) == 0
    assert "face fallback (threshold 0.05): ER taken from the face alone on" in capsys.readouterr().out
    import json

    rep = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert rep["folds"][0]["face_fallback"]["n_er_from_face"] == int(res["er_face_fallback"].sum())
    got = rep["folds"][0]["heads"]["er7"]
    from emer_live.model import metrics as M
    from emer_live.training.dataset import head_targets

    y = head_targets(test_s, ["er7"])["er7"]
    ok = (y >= 0) & res["scored"]
    assert got["uar"] == pytest.approx(M.uar(y[ok], res["er7"][ok].argmax(1), n_classes=7))
    assert cli.main(["evaluate", "--checkpoint", str(forced), "--data", str(training_corpus),
                     "--no-face-fallback", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["folds"][0]["face_fallback"] is None
    # fed the face alone there is nothing to fall back from
    assert cli.main(["evaluate", "--checkpoint", str(forced), "--data", str(training_corpus),
                     "--modalities", "face", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["folds"][0]["face_fallback"] is None


@pytest.mark.torch
def test_tune_fallback_refuses_test_participants_and_existing_output(trained, training_corpus, tmp_path, capsys):
    from emer_live.model import load_checkpoint

    test_p = load_checkpoint(trained, device="cpu").provenance["split"]["test_participants"]
    out = tmp_path / "x.pt"
    rc = cli.main(["tune-fallback", "--checkpoint", str(trained), "--data", str(training_corpus),
                   "--participants", ",".join(test_p), "--out", str(out)])
    assert rc != 0 and "held-out test participants" in capsys.readouterr().err and not out.exists()
    sp = load_checkpoint(trained, device="cpu").provenance["split"]
    rc = cli.main(["tune-fallback", "--checkpoint", str(trained), "--data", str(training_corpus),
                   "--participants", sp["train_participants"][0], "--out", str(out)])
    assert rc != 0 and "was trained on them" in capsys.readouterr().err and not out.exists()
    rc = cli.main(["tune-fallback", "--checkpoint", str(trained), "--data", str(training_corpus),
                   "--participants", "P77", "--out", str(out)])
    assert rc != 0 and "P77 to tune on are not in the data" in capsys.readouterr().err
    rc = cli.main(["tune-fallback", "--checkpoint", str(trained), "--data", str(training_corpus),
                   "--out", str(trained)])
    assert rc != 0 and "already exists" in capsys.readouterr().err


@pytest.mark.torch
def test_train_face_fallback_off_or_face_only_stores_none(training_corpus, tmp_path):
    pytest.importorskip("torch")
    from emer_live.model import load_checkpoint

    for extra, name in ((["--face-fallback", "off"], "off.pt"), (["--modalities", "face"], "face.pt")):
        out = tmp_path / name
        assert cli.main(["train", "--data", str(training_corpus), "--folds", "3", "--run-folds", "1", "--epochs", "1",
                         "--batch-size", "4", "--face-train", "none", "--threads", "1", "--quiet", *extra,
                         "--out", str(out)]) == 0
        m = load_checkpoint(out, device="cpu")
        assert m.inference == {} and m.face_fallback is None


@pytest.mark.torch
def test_reused_face_features_give_the_same_outputs():
    torch = pytest.importorskip("torch")
    from emer_live.model import EMERT, EMERTConfig

    torch.manual_seed(3)
    model = EMERT(EMERTConfig()).eval()
    face, eye, fix = torch.rand(3, 8, 3, 112, 112), torch.randn(3, 32, 39), torch.randn(3, 32, 2)
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 0]], dtype=torch.bool)
    with torch.inference_mode():
        feats = model.encode_face(face, mask)
        assert feats.shape == (3, 8, 512) and not feats[1].any()   # no face: zeros
        a = model(face, eye, fix, modality_mask=mask)
        b = model(face, eye, fix, modality_mask=mask, face_features=feats)
        for h in ("er7", "fer7", "er_va"):
            torch.testing.assert_close(a[h], b[h])
        with pytest.raises(ValueError, match="face_features must be"):
            model(face, eye, fix, face_features=feats[:, :4])
