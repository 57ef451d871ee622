"""Evaluation metrics of the EMER protocol (numpy only).

All metrics are computed over the whole test set at once (the authors' evaluation scripts
average per-batch scores instead, which weights batches rather than samples; values computed
here are the standard, sample-weighted ones).

* WAR - weighted average recall = accuracy.
* UAR - unweighted average recall: mean per-class recall over the classes present in the truth.
* weighted F1 - per-class F1 averaged with the true class counts as weights (F1 of a class is 0
  when its precision and recall are both 0).
* MAE, MSE, RMSE for valence, arousal and intensity.

Confusion matrices have the truth in rows and the prediction in columns.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "confusion_matrix",
    "war",
    "uar",
    "weighted_f1",
    "per_class_scores",
    "mae",
    "mse",
    "rmse",
    "classification_metrics",
    "regression_metrics",
]


def _labels(y_true: Any, y_pred: Any, n_classes: Optional[int]) -> Tuple[np.ndarray, np.ndarray, int]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.size == 0 and p.size == 0:
        raise ValueError("no samples: y_true is empty")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D class indices, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    lo = min(int(t.min()), int(p.min()))
    if lo < 0:
        raise ValueError(f"class indices must be >= 0, found {lo} (drop unlabelled samples first)")
    hi = max(int(t.max()), int(p.max()))
    if n_classes is None:
        n_classes = hi + 1
    elif isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
    elif hi >= n_classes:
        raise ValueError(f"class index {hi} out of range for n_classes={n_classes}")
    return t.astype(np.int64), p.astype(np.int64), int(n_classes)


def confusion_matrix(y_true: Any, y_pred: Any, *, n_classes: Optional[int] = None) -> np.ndarray:
    """``(K, K)`` int64 counts; ``cm[i, j]`` = samples of true class i predicted as j."""
    t, p, k = _labels(y_true, y_pred, n_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def per_class_scores(cm: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` and ``support`` from a confusion matrix.

    Undefined ratios (no true or no predicted samples of a class) are 0.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def war(y_true: Any, y_pred: Any) -> float:
    """Weighted average recall (= accuracy)."""
    t, p, _ = _labels(y_true, y_pred, None)
    return float(np.mean(t == p))


def uar(y_true: Any, y_pred: Any, *, n_classes: Optional[int] = None) -> float:
    """Unweighted average recall over the classes present in ``y_true``."""
    cm = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    s = per_class_scores(cm)
    present = s["support"] > 0
    return float(np.mean(s["recall"][present]))


def weighted_f1(y_true: Any, y_pred: Any, *, n_classes: Optional[int] = None) -> float:
    """Support-weighted mean of the per-class F1 scores."""
    cm = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    s = per_class_scores(cm)
    return float(np.sum(s["f1"] * s["support"]) / np.sum(s["support"]))


def _reg(y_true: Any, y_pred: Any) -> np.ndarray:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {t.shape} vs {p.shape}")
    if t.size == 0:
        raise ValueError("no samples: y_true is empty")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("y_true/y_pred hold NaN or inf (drop unlabelled samples first)")
    return p - t


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error over all elements."""
    return float(np.mean(np.abs(_reg(y_true, y_pred))))


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error over all elements."""
    return float(np.mean(_reg(y_true, y_pred) ** 2))


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error over all elements."""
    return float(np.sqrt(mse(y_true, y_pred)))


def classification_metrics(y_true: Any, y_pred: Any, *, n_classes: int,
                           class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """WAR, UAR, weighted F1, confusion matrix and per-class scores as plain data.

    Returns
    -------
    dict
        ``n``, ``war``, ``uar``, ``weighted_f1``, ``confusion`` (list of lists, truth in rows),
        ``per_class`` ({name: {precision, recall, f1, support}}).
    """
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"class_names has {len(class_names)} names for n_classes={n_classes}")
    cm = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    s = per_class_scores(cm)
    present = s["support"] > 0
    names = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
    n = int(cm.sum())
    return {
        "n": n,
        "war": float(np.trace(cm) / n),
        "uar": float(np.mean(s["recall"][present])),
        "weighted_f1": float(np.sum(s["f1"] * s["support"]) / n),
        "confusion": cm.tolist(),
        "per_class": {name: {"precision": float(s["precision"][i]), "recall": float(s["recall"][i]),
                             "f1": float(s["f1"][i]), "support": int(s["support"][i])}
                      for i, name in enumerate(names)},
    }


def regression_metrics(y_true: Any, y_pred: Any) -> Dict[str, Any]:
    """``n``, ``mae``, ``mse``, ``rmse`` as plain floats."""
    d = _reg(y_true, y_pred)
    m = float(np.mean(d ** 2))
    return {"n": int(d.shape[0]) if d.ndim else 1, "mae": float(np.mean(np.abs(d))), "mse": m,
            "rmse": float(np.sqrt(m))}
