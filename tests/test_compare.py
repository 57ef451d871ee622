"""`emer-live compare`: ablation tables from evaluations' per-sample predictions (numpy only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emer_live import cli
from emer_live.training.compare import compare_evaluations, read_evaluation, uar

COLS = ["fold", "participant", "session", "kind", "trial", "t_end_us", "masked", "scored", "er7_target", "er7_pred"]


def _write(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "predictions.tsv", "w") as f:
        f.write("\t".join(COLS) + "\n")
        for r in rows:
            f.write("\t".join(str(v) for v in r) + "\n")
    return folder


def _rows(preds, targets, masked, people):
    return [(1 if p in ("P1", "P2") else 2, p, "S", "trial", i, i * 10, m, 1, t, q)
            for i, (q, t, m, p) in enumerate(zip(preds, targets, masked, people))]


def test_uar_by_hand():
    t = np.array([0, 0, 0, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    assert uar(t, p) == pytest.approx(np.mean([1 / 3, 1.0, 0.5]))
    # weights = multiplicities: the same as repeating the samples
    w = np.array([2, 0, 1, 1, 1, 3])
    rep = np.repeat(np.arange(6), w)
    assert uar(t, p, w) == pytest.approx(uar(t[rep], p[rep]))


def test_compare_table_and_bootstrap(tmp_path, capsys):
    people = ["P1", "P2", "P3", "P4"] * 6
    targets = ["sadness", "happiness", "fear"] * 8
    masked = [1, 0] * 12
    # the face-only model says happiness on every masked trial; the eye model is right on them
    face = [("happiness" if m else t) for t, m in zip(targets, masked)]
    eyes = list(targets)
    eyes[1] = "fear"                                   # one unmasked mistake
    a = _write(tmp_path / "face", _rows(face, targets, masked, people))
    b = _write(tmp_path / "eyes", _rows(eyes, targets, masked, people))
    ea, eb = read_evaluation("face", a), read_evaluation("eyes", b)
    rep = compare_evaluations([ea, eb], n_boot=300, seed=1)
    face_m, eye_m = rep["models"]
    sel = np.array(masked) == 1
    t_idx = np.array([ea.classes.index(x) for x in targets])
    f_idx = np.array([ea.classes.index(x) for x in face])
    assert face_m["subsets"]["masked"]["uar"] == pytest.approx(uar(t_idx[sel], f_idx[sel]))
    assert eye_m["subsets"]["masked"]["uar"] == pytest.approx(1.0)
    d = eye_m["subsets"]["masked"]["diff_vs_baseline"]
    assert d["uar"] == pytest.approx(1.0 - face_m["subsets"]["masked"]["uar"])
    assert d["ci95"][0] > 0 and d["p_not_higher"] == 0.0
    assert face_m["subsets"]["all"]["uar_folds"] and eye_m["subsets"]["all"]["uar_fold_sd"] is not None
    # the CLI prints the same as a markdown table, and JSON
    assert cli.main(["compare", f"face={a}", f"eyes={b}", "--bootstrap", "300", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| model |") and "| eyes | 0.958" in out and "(baseline)" in out
    assert cli.main(["compare", f"face={a}", f"eyes={b}", "--bootstrap", "300", "--seed", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][1]["subsets"]["masked"]["diff_vs_baseline"] == d


def test_compare_bad_input(tmp_path, capsys):
    a = _write(tmp_path / "a", _rows(["fear"], ["fear"], [1], ["P1"]))
    other = _write(tmp_path / "b", [(1, "P9", "S", "trial", 5, 50, 1, 1, "fear", "fear")])
    assert cli.main(["compare", f"a={a}", f"b={other}"]) == 2
    assert "share no sample" in capsys.readouterr().err
    assert cli.main(["compare", f"a={a}", str(other)]) == 2
    assert "NAME=DIR" in capsys.readouterr().err
    assert cli.main(["compare", f"a={tmp_path / 'missing'}"]) == 2
    assert "evaluate" in capsys.readouterr().err


def test_new_participants_scored_by_every_fold_model(tmp_path):
    # evaluate --split all of fold 4's and fold 5's models on the same new people: one row per
    # (fold, sample); pooled over both models, bootstrap over the people
    targets = ["sadness", "fear", "anger"] * 4
    people = ["P1", "P2", "P3", "P4"] * 3
    rows_a, rows_b = [], []
    for fold in (4, 5):
        for i, (t, p) in enumerate(zip(targets, people)):
            rows_a.append((fold, p, "S", "trial", i, i * 10, 0, 1, t, t))
            rows_b.append((fold, p, "S", "trial", i, i * 10, 0, 1, t, "fear" if fold == 5 else t))
    ea = read_evaluation("a", _write(tmp_path / "a", rows_a))
    eb = read_evaluation("b", _write(tmp_path / "b", rows_b))
    rep = compare_evaluations([ea, eb], n_boot=100)
    assert rep["n_participants"] == 4
    a, b = (m["subsets"]["all"] for m in rep["models"])
    assert a["n"] == b["n"] == 24 and a["uar_folds"] == [1.0, 1.0]
    assert b["uar_folds"][0] == 1.0 and b["uar_folds"][1] == pytest.approx(1 / 3)
    # a sample twice within one fold is still refused
    dup = _write(tmp_path / "dup", rows_a + rows_a[:1])
    with pytest.raises(Exception, match="appears twice"):
        compare_evaluations([read_evaluation("d", dup), ea])
