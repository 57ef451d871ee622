"""Evaluation metrics against hand-computed confusion matrices (numpy only, no torch needed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from emer_live.model import metrics as M

# y_true = [0,0,0,1,1,2], y_pred = [0,0,1,1,2,2]
#   confusion (truth rows): [[2,1,0],[0,1,1],[0,0,1]]
#   recall    2/3, 1/2, 1        -> UAR = (2/3 + 1/2 + 1) / 3 = 13/18
#   precision 1,   1/2, 1/2
#   F1        4/5, 1/2, 2/3      -> weighted by support (3,2,1): (12/5 + 1 + 2/3) / 6 = 61/90
#   WAR = 4/6
T1 = np.array([0, 0, 0, 1, 1, 2])
P1 = np.array([0, 0, 1, 1, 2, 2])


def test_confusion_matrix_hand_computed():
    assert M.confusion_matrix(T1, P1).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert M.confusion_matrix(T1, P1, n_classes=4).tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0],
                                                                [0, 0, 0, 0]]


def test_war_uar_weighted_f1_hand_computed():
    assert M.war(T1, P1) == pytest.approx(4 / 6)
    assert M.uar(T1, P1) == pytest.approx(13 / 18)
    assert M.weighted_f1(T1, P1) == pytest.approx(61 / 90)
    s = M.per_class_scores(M.confusion_matrix(T1, P1))
    np.testing.assert_allclose(s["precision"], [1, 0.5, 0.5])
    np.testing.assert_allclose(s["f1"], [0.8, 0.5, 2 / 3])
    assert s["support"].tolist() == [3, 2, 1]


def test_uar_ignores_classes_absent_from_truth():
    # truth has classes 0 and 1 only; class 2 is predicted once but has no support.
    t, p = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    assert M.uar(t, p, n_classes=7) == pytest.approx((0.5 + 1.0) / 2)
    # F1: class 0 = 2*1*0.5/1.5 = 2/3, class 1 = 1; weights 2, 2; class 2 weight 0
    assert M.weighted_f1(t, p, n_classes=7) == pytest.approx((2 * 2 / 3 + 2 * 1) / 4)


def test_perfect_and_all_wrong():
    t = np.array([0, 1, 2, 3, 4, 5, 6])
    assert M.war(t, t) == 1.0 and M.uar(t, t) == 1.0 and M.weighted_f1(t, t) == 1.0
    wrong = (t + 1) % 7
    assert M.war(t, wrong) == 0.0 and M.uar(t, wrong) == 0.0 and M.weighted_f1(t, wrong) == 0.0


def test_classification_metrics_report():
    rep = M.classification_metrics(T1, P1, n_classes=3, class_names=["pos", "neg", "neu"])
    assert rep["n"] == 6 and rep["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert rep["war"] == pytest.approx(4 / 6) and rep["uar"] == pytest.approx(13 / 18)
    assert rep["weighted_f1"] == pytest.approx(61 / 90)
    assert rep["per_class"]["neg"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_regression_metrics_hand_computed():
    t, p = [0.0, 1.0, -1.0], [0.5, 1.0, 0.0]
    assert M.mae(t, p) == pytest.approx(0.5)
    assert M.mse(t, p) == pytest.approx(1.25 / 3)
    assert M.rmse(t, p) == pytest.approx(np.sqrt(1.25 / 3))
    va_t, va_p = np.array([[0.5, -0.5], [0.0, 0.25]]), np.array([[0.25, -0.5], [0.5, 0.25]])
    rep = M.regression_metrics(va_t, va_p)
    assert rep["mae"] == pytest.approx(0.75 / 4) and rep["mse"] == pytest.approx((0.0625 + 0.25) / 4)


@pytest.mark.parametrize("call, match", [
    (lambda: M.war([0, 1], [0]), "differ in length"),
    (lambda: M.war([], []), "empty"),
    (lambda: M.uar([0, -1], [0, 0]), ">= 0"),
    (lambda: M.uar([0, 1], [0, 3], n_classes=3), "out of range"),
    (lambda: M.war([0.0, 1.0], [0, 1]), "integer class indices"),
    (lambda: M.mae([0.0, np.nan], [0.0, 1.0]), "NaN"),
    (lambda: M.mse([0.0, 1.0], [0.0]), "differ in shape"),
])
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_model_cli_and_metrics_import_without_torch():
    """metrics and the CLI module must work on a Python without torch (the 3.10 SDK lane)."""
    code = (
        "import sys, argparse\n"
        "sys.modules['torch'] = None  # any 'import torch' now raises ImportError\n"
        "from emer_live.model import metrics, commands, config\n"
        "assert metrics.war([0, 1], [0, 1]) == 1.0\n"
        "p = argparse.ArgumentParser(); sub = p.add_subparsers()\n"
        "commands.register(sub)\n"
        "args = p.parse_args(['import-official', 'in.pth', '--variant', 'discrete', '--out', 'never.pt'])\n"
        "try:\n"
        "    args.func(args)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "EmerError import-official needs PyTorch" in res.stdout
