"""``emer-live evaluate``: metrics equal hand computations (sklearn-free), whole-set (not
per-batch) scoring, the JSON report, confusion PNGs and refusal of foreign checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from emer_live import cli
from emer_live.training.dataset import Samples
from emer_live.training.evaluate import (draw_confusion, head_metrics, score_of,
                                         summarize_folds)



# --------------------------------------------------------------------------------------------
# hand-computed metrics
# --------------------------------------------------------------------------------------------
def test_class_metrics_equal_hand_computation():
    # 3 classes used out of 7. truth: 0 0 0 0 1 1 2 2 2 2 ; pred: 0 0 1 2 1 0 2 2 2 1 ; one unlabelled
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, -1])
    y_pred = np.array([0, 0, 1, 2, 1, 0, 2, 2, 2, 1, 3])
    m = head_metrics("er7", y_pred, y_true)
    # confusion rows=truth: [2,1,1], [1,1,0], [0,1,3]
    assert m["n"] == 10
    assert m["confusion"][0][:3] == [2, 1, 1] and m["confusion"][1][:3] == [1, 1, 0] and m["confusion"][2][:3] == [0, 1, 3]
    assert m["war"] == pytest.approx(6 / 10)
    assert m["uar"] == pytest.approx((2 / 4 + 1 / 2 + 3 / 4) / 3)
    # precision: c0 2/3, c1 1/3, c2 3/4 ; recall 1/2, 1/2, 3/4
    f1 = [2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2), 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2), 3 / 4]
    assert m["weighted_f1"] == pytest.approx((4 * f1[0] + 2 * f1[1] + 4 * f1[2]) / 10)
    assert m["per_class"]["happiness"]["support"] == 4 and m["labels"][2] == "fear"
    # probabilities give the same result as indices
    probs = np.eye(7)[y_pred] * 0.7 + 0.3 / 7
    assert head_metrics("er7", probs, y_true)["uar"] == pytest.approx(m["uar"])


def test_regression_metrics_equal_hand_computation():
    t = np.array([[0.5, -0.5], [0.0, np.nan], [-1.0, 1.0]], np.float32)
    p = np.array([[0.25, 0.0], [0.5, 0.3], [-0.5, 0.5]], np.float32)
    m = head_metrics("er_va", p, t)
    assert m["valence"]["n"] == 3 and m["arousal"]["n"] == 2
    assert m["valence"]["mae"] == pytest.approx((0.25 + 0.5 + 0.5) / 3)
    assert m["valence"]["mse"] == pytest.approx((0.0625 + 0.25 + 0.25) / 3)
    assert m["arousal"]["rmse"] == pytest.approx(math.sqrt((0.25 + 0.25) / 2))
    assert m["mae"] == pytest.approx((0.25 + 0.5 + 0.5 + 0.5 + 0.5) / 5)
    s = head_metrics("fer_intensity", np.array([1.0, 2.0, 0.0]), np.array([1.5, np.nan, 1.0]))
    assert s == {"n": 2, "mae": pytest.approx(0.75), "mse": pytest.approx(0.625), "rmse": pytest.approx(math.sqrt(0.625))}
    assert head_metrics("er7", np.zeros((2, 7)), np.array([-1, -1])) == {"n": 0}


def test_fold_summary_and_selection_score():
    folds = [{"er7": {"n": 5, "war": 0.5, "uar": 0.4, "weighted_f1": 0.3}, "er_va": {"n": 5, "mae": 0.2, "mse": 0.1,
                                                                                    "rmse": 0.3, "valence": {"n": 5, "mae": 0.1, "mse": 0.0, "rmse": 0.0},
                                                                                    "arousal": {"n": 5, "mae": 0.3, "mse": 0.2, "rmse": 0.4}}},
             {"er7": {"n": 4, "war": 0.7, "uar": 0.6, "weighted_f1": 0.5}, "er_va": {"n": 0}}]
    s = summarize_folds(folds)
    assert s["er7"]["uar"]["mean"] == pytest.approx(0.5)
    assert s["er7"]["uar"]["sd"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert s["er_va"]["mae"] == {"mean": pytest.approx(0.2), "sd": 0.0, "n_folds": 1}
    assert s["er_va"]["arousal"]["mae"]["mean"] == pytest.approx(0.3)
    assert score_of(folds[0]) == pytest.approx(0.4)
    assert score_of({"er_va": folds[0]["er_va"]}) == pytest.approx(-0.2)


def _fake_samples(n, er7, masked):
    """Samples whose raw fixation x holds the sample number (the fake model reads it back)."""
    z = lambda *s: np.zeros((n,) + s, np.float32)  # noqa: E731
    fix = z(32, 2)
    fix[:, :, 0] = np.arange(n)[:, None]
    arrays = {
        "face_row": np.full(n, -1), "face_mask": np.zeros((n, 8), bool), "eye": z(32, 39),
        "eye_mask": np.ones((n, 32), bool), "fixation": fix, "fixation_mask": np.ones((n, 32), bool),
        "er7": np.asarray(er7), "er3": np.full(n, -1), "er_va": np.full((n, 2), np.nan, np.float32),
        "fer7": np.full(n, -1), "fer3": np.full(n, -1), "fer_va": np.full((n, 2), np.nan, np.float32),
        "fer_intensity": np.full(n, np.nan, np.float32), "masked": np.asarray(masked, np.int8),
        "true7": np.full(n, -1), "trial": np.arange(n), "t_start_us": np.zeros(n, np.int64),
        "t_end_us": np.zeros(n, np.int64), "valid_gaze_fraction": np.ones(n, np.float32),
        "face_found_fraction": np.zeros(n, np.float32), "emer_set": np.full(n, -1),
        "eye_ref": np.zeros((n, 39), np.float32), "fixation_ref": np.zeros((n, 2), np.float32),
        "eye_sref_mean": z(39), "eye_sref_sd": z(39) + 1, "fixation_sref_mean": z(2), "fixation_sref_sd": z(2) + 1,
        "participant": np.array(["P01"] * n), "session": np.array(["S"] * n), "kind": np.array(["trial"] * n),
        "fer_source": np.array(["none"] * n),
    }
    return Samples(arrays)


@pytest.mark.torch
def test_evaluate_scores_the_whole_set_not_batches():
    torch = pytest.importorskip("torch")
    from emer_live.model.checkpoint import identity_norm_stats
    from emer_live.model.config import EMERTConfig
    from emer_live.training.evaluate import evaluate_fold

    # 7 samples; class 0 has 5 samples (4 right), class 1 has 2 (0 right); batches of 2 would
    # average per-batch recalls differently
    er7 = [0, 0, 0, 0, 0, 1, 1]
    pred = [0, 0, 0, 0, 1, 0, 0]
    masked = [1, 1, 0, 0, 0, 1, 0]

    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, face, eye, fixation, *, modality_mask=None):
            idx = fixation[:, 0, 0].round().long()
            logits = torch.nn.functional.one_hot(torch.tensor(pred)[idx], 7).float() * 5
            return {"er7": logits + self.w, "modalities_used": modality_mask}

    class Loaded:
        config = EMERTConfig(heads=("er7",))
        model = Fake()
        device = torch.device("cpu")
        norm_stats = identity_norm_stats(config)
        label_maps = None

    res = evaluate_fold(Loaded(), _fake_samples(7, er7, masked), modalities=("eye", "fixation"), batch_size=2)
    m = res["heads"]["er7"]
    assert m["war"] == pytest.approx(4 / 7)
    assert m["uar"] == pytest.approx((4 / 5 + 0 / 2) / 2)
    assert m["confusion"][0][:2] == [4, 1] and m["confusion"][1][:2] == [2, 0]
    sub = res["subsets"]
    assert sub["masked"]["heads"]["er7"]["war"] == pytest.approx(2 / 3)     # samples 0, 1, 5
    assert sub["unmasked"]["heads"]["er7"]["n"] == 4
    # with eye and fixation deselected, nothing can be scored
    res = evaluate_fold(Loaded(), _fake_samples(7, er7, masked), modalities=("face",), batch_size=2)
    assert res["n_unscored"] == 7 and res["heads"]["er7"] == {"n": 0}


def test_confusion_png_drawing():
    img = draw_confusion([[5, 1], [0, 4]], ["a", "b"], title="t")
    assert img.ndim == 3 and img.dtype == np.uint8
    with pytest.raises(ValueError):
        draw_confusion([[1, 2]], ["a"])


# --------------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, training_corpus):
    pytest.importorskip("torch")
    import torch

    torch.set_num_threads(1)
    corpus = training_corpus
    out = tmp_path_factory.mktemp("evalckpt") / "m.pt"
    assert cli.main(["train", "--data", str(corpus), "--folds", "3", "--epochs", "1", "--batch-size", "4",
                     "--task", "multi", "--modalities", "eye,fixation", "--eye-reference", "baseline",
                     "--save-folds", "--threads", "1",
                     "--quiet", "--out", str(out)]) == 0
    return corpus, out


@pytest.mark.torch
def test_evaluate_json_report(trained, tmp_path, capsys):
    import cv2

    from emer_live.model import load_checkpoint

    corpus, ckpt = trained
    folds = sorted(ckpt.parent.glob("m.fold*.pt"))
    assert len(folds) == 3
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", *map(str, folds), "--data", str(corpus), "--json",
                     "--out-dir", str(tmp_path / "ev")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["format"] == "emer_live.evaluation" and rep["version"] == 1
    assert [f["fold"] for f in rep["folds"]] == [1, 2, 3]
    seen = []
    for f, path in zip(rep["folds"], folds):
        prov = load_checkpoint(path, device="cpu").provenance
        assert f["participants"] == prov["split"]["test_participants"] and f["split"] == "test"
        assert f["trained_on_evaluated"] == [] and f["modalities"] == ["eye", "fixation"]
        assert prov["eye_reference"] == "baseline"
        er7 = f["heads"]["er7"]
        assert er7["n"] == f["n_scored"] == 3
        cm = np.array(er7["confusion"])
        assert cm.shape == (7, 7) and cm.sum() == er7["n"]
        assert er7["war"] == pytest.approx(np.trace(cm) / cm.sum())
        assert set(f["heads"]) == {"er7", "er3", "er_va", "fer7", "fer3", "fer_va", "fer_intensity"}
        assert {"valence", "arousal", "mae", "rmse"} <= set(f["heads"]["er_va"])
        # evaluate reproduces the test metrics train recorded for this fold
        assert prov["metrics"]["folds"][0]["heads"]["er7"]["uar"] == pytest.approx(er7["uar"])
        seen += f["participants"]
    assert sorted(seen) == ["P01", "P02", "P03"]
    uars = [f["heads"]["er7"]["uar"] for f in rep["folds"]]
    assert rep["summary"]["er7"]["uar"]["mean"] == pytest.approx(np.mean(uars))
    assert rep["summary"]["er7"]["uar"]["sd"] == pytest.approx(np.std(uars, ddof=1))
    saved = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert saved["folds"][0]["heads"]["er7"] == rep["folds"][0]["heads"]["er7"]
    png = tmp_path / "ev" / "confusion_er7_fold2.png"
    assert png.is_file() and cv2.imread(str(png)) is not None
    assert (tmp_path / "ev" / "confusion_er7_all.png").is_file()
    # one row per sample and fold; its predictions rebuild each fold's confusion matrix
    import pandas as pd

    rows = pd.read_csv(tmp_path / "ev" / "predictions.tsv", sep="\t", keep_default_na=False)
    assert list(rows.columns[:8]) == ["fold", "participant", "session", "kind", "trial", "t_end_us", "masked",
                                      "scored"]
    assert len(rows) == 9 and sorted(set(rows["participant"])) == sorted(seen)
    names = rep["folds"][0]["heads"]["er7"]["labels"]
    for f in rep["folds"]:
        r = rows[(rows["fold"] == f["fold"]) & (rows["scored"] == 1) & (rows["er7_target"] != "")]
        cm = np.zeros((7, 7), int)
        for t, p in zip(r["er7_target"], r["er7_pred"]):
            cm[names.index(t), names.index(p)] += 1
        assert cm.tolist() == f["heads"]["er7"]["confusion"]


@pytest.mark.torch
def test_evaluate_all_split_warns_about_training_participants(trained, capsys):
    corpus, ckpt = trained
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(ckpt), "--data", str(corpus), "--split", "all"]) == 0
    cap = capsys.readouterr()
    assert "were in its training data" in cap.err
    assert "fold 1" in cap.out and "er7" in cap.out


@pytest.mark.torch
def test_evaluate_refuses_foreign_checkpoints(trained, tmp_path, capsys):
    import torch

    corpus, _ = trained
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    assert cli.main(["evaluate", "--checkpoint", str(foreign), "--data", str(corpus)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("emer-live: error: ") and "not an emer_live checkpoint" in err[-1]
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(corpus)]) == 2
    assert "no such file" in capsys.readouterr().err
    text = tmp_path / "text.pt"
    text.write_text("hello")
    assert cli.main(["evaluate", "--checkpoint", str(text), "--data", str(corpus)]) == 2
    assert capsys.readouterr().err.strip().startswith("emer-live: error: ")
