"""Evaluation with the EMER protocol: WAR, UAR, weighted F1, MAE/MSE/RMSE, confusion matrices.

Every metric is computed over the whole test set at once (never averaged per batch), with
:mod:`emer_live.model.metrics`. A checkpoint written by ``emer-live train`` is scored on its
held-out participants by default (``provenance.split.test_participants``); several fold
checkpoints give per-fold results plus mean and standard deviation over folds.

The JSON written by ``emer-live evaluate --json`` is documented field by field in
``docs/training.md``; :func:`evaluation_report` builds it.

:func:`compute_metrics` and :func:`draw_confusion` import without torch; prediction
(:func:`predict_samples`) needs it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from ..model import metrics as M
from ..model.config import EMOTIONS_3, EMOTIONS_7, head_kind
from ..model.fallback import applies, combine
from .dataset import MODALITIES, Samples, head_targets, modality_mask

__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "compute_metrics", "head_metrics", "summarize_folds",
           "score_of", "predict_samples", "evaluate_checkpoints", "write_sample_predictions", "SAMPLE_COLUMNS", "draw_confusion", "write_confusion_pngs",
           "format_report", "tune_face_fallback", "fallback_on_samples", "describe_fallback"]

REPORT_FORMAT = "emer_live.evaluation"
REPORT_VERSION = 1


# --------------------------------------------------------------------------------------------
# metrics (numpy only)
# --------------------------------------------------------------------------------------------
def _class_names(head: str, label_maps: Optional[Dict[str, Any]]) -> List[str]:
    if label_maps and head in label_maps:
        return list(label_maps[head])
    return list(EMOTIONS_7 if head_kind(head)[1] == 7 else EMOTIONS_3)


def head_metrics(head: str, pred: np.ndarray, target: np.ndarray, *,
                 label_maps: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Metrics of one head over the samples that have a label.

    Parameters
    ----------
    head : str
        Head name (``er7``, ``er_va``, ``fer_intensity``...).
    pred : array
        Class heads: ``(N, K)`` scores/probabilities or ``(N,)`` predicted indices;
        ``*_va``: ``(N, 2)``; scalar heads: ``(N,)``.
    target : array
        Class indices (``-1`` = no label) or values (``NaN`` = no label), as
        :func:`~emer_live.training.dataset.head_targets` gives.

    Returns
    -------
    dict
        Class heads: ``n``, ``war``, ``uar``, ``weighted_f1``, ``confusion`` (truth rows,
        prediction columns), ``per_class``, ``labels``. ``*_va``: ``n`` and per component
        (``valence``, ``arousal``) ``n``/``mae``/``mse``/``rmse``, plus the same over both
        (``mae``, ``mse``, ``rmse``). Scalar heads: ``n``, ``mae``, ``mse``, ``rmse``. A head
        without any labelled sample gives ``{"n": 0}``.
    """
    kind, n_out = head_kind(head)
    pred = np.asarray(pred)
    target = np.asarray(target)
    if kind == "class":
        y_pred = pred.argmax(axis=-1) if pred.ndim == 2 else pred.astype(np.int64)
        ok = target >= 0
        if not ok.any():
            return {"n": 0}
        names = _class_names(head, label_maps)
        out = M.classification_metrics(target[ok].astype(np.int64), y_pred[ok].astype(np.int64),
                                       n_classes=n_out, class_names=names)
        out["labels"] = names
        return out
    if kind == "va":
        t = target.reshape(-1, 2).astype(np.float64)
        p = pred.reshape(-1, 2).astype(np.float64)
        out: Dict[str, Any] = {}
        both_t, both_p = [], []
        for j, comp in enumerate(("valence", "arousal")):
            ok = np.isfinite(t[:, j]) & np.isfinite(p[:, j])
            out[comp] = M.regression_metrics(t[ok, j], p[ok, j]) if ok.any() else {"n": 0}
            both_t.append(t[ok, j])
            both_p.append(p[ok, j])
        tt, pp = np.concatenate(both_t), np.concatenate(both_p)
        if not len(tt):
            return {"n": 0}
        allm = M.regression_metrics(tt, pp)
        out.update(n=int(max(out["valence"]["n"], out["arousal"]["n"])), mae=allm["mae"], mse=allm["mse"],
                   rmse=allm["rmse"])
        return out
    t = target.reshape(-1).astype(np.float64)
    p = pred.reshape(-1).astype(np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    if not ok.any():
        return {"n": 0}
    return M.regression_metrics(t[ok], p[ok])


def compute_metrics(preds: Dict[str, np.ndarray], targets: Dict[str, np.ndarray], *,
                    label_maps: Optional[Dict[str, Any]] = None,
                    scored: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """:func:`head_metrics` for every head present in both ``preds`` and ``targets``.

    ``scored`` (bool, per sample) leaves out samples the model could not score (no modality).
    """
    out = {}
    for h in preds:
        if h not in targets:
            continue
        p, t = np.asarray(preds[h]), np.asarray(targets[h])
        if scored is not None:
            p, t = p[scored], t[scored]
        out[h] = head_metrics(h, p, t, label_maps=label_maps)
    return out


def score_of(metrics: Dict[str, Any]) -> float:
    """One number to select models on (higher is better): the mean UAR of the class heads that
    have labels, else minus the mean MAE of the regression heads; NaN when nothing is labelled."""
    uars = [m["uar"] for m in metrics.values() if isinstance(m, dict) and "uar" in m]
    if uars:
        return float(np.mean(uars))
    maes = [m["mae"] for m in metrics.values() if isinstance(m, dict) and "mae" in m]
    return float(-np.mean(maes)) if maes else float("nan")


def _mean_sd(values: List[float]) -> Dict[str, Any]:
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if not v:
        return {"mean": None, "sd": None, "n_folds": 0}
    return {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n_folds": len(v)}


def summarize_folds(fold_metrics: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; 0 for one fold) over folds of each scalar
    metric: ``{head: {metric: {"mean", "sd", "n_folds"}}}`` (``*_va`` heads also per component)."""
    heads: Dict[str, Any] = {}
    for fm in fold_metrics:
        for h in fm:
            heads.setdefault(h, None)
    out: Dict[str, Any] = {}
    for h in heads:
        per = [fm.get(h, {}) for fm in fold_metrics]
        kind = head_kind(h)[0]
        keys = ("war", "uar", "weighted_f1") if kind == "class" else ("mae", "mse", "rmse")
        entry = {k: _mean_sd([p.get(k) for p in per if p.get("n", 0)]) for k in keys}
        if kind == "va":
            for comp in ("valence", "arousal"):
                entry[comp] = {k: _mean_sd([p.get(comp, {}).get(k) for p in per if p.get("n", 0)])
                               for k in ("mae", "mse", "rmse")}
        out[h] = entry
    return out


# --------------------------------------------------------------------------------------------
# prediction (torch)
# --------------------------------------------------------------------------------------------
def predict_samples(model, samples: Samples, *, heads: Sequence[str], norm_stats: Dict[str, Any],
                    modalities: Sequence[str] = MODALITIES, device=None, batch_size: int = 32,
                    amp: bool = False, indices: Optional[np.ndarray] = None,
                    face_fallback: Optional[float] = None, face_only: bool = False) -> Dict[str, np.ndarray]:
    """Run ``model`` (an EMERT, eval mode) over ``samples``.

    ``face_fallback``: a threshold turns on the face fallback of :mod:`emer_live.model.fallback`
    (samples with a face and eyes are also scored face-only; where that pass is sure, the ER heads
    come from it), as :meth:`LoadedModel.predict` does for a checkpoint that stores one.
    ``face_only``: also return that face-only pass (to tune the threshold on).

    Returns
    -------
    dict
        Per head: class probabilities ``(N, K)`` or values; unscored rows (no selected modality
        present) are NaN. ``scored`` ``(N,)`` bool; ``er_face_fallback`` ``(N,)`` bool. With
        ``face_only``: ``face_only`` (per head, NaN where not scored so) and ``face_eligible``
        ``(N,)`` bool (samples with a face and eyes or fixations).
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    from ._torchdata import WindowDataset, collate

    n = len(samples)
    mask = modality_mask(samples, modalities, norm_stats)
    scored = mask.any(axis=1)
    want = np.flatnonzero(scored) if indices is None else np.asarray(indices)[scored[np.asarray(indices)]]
    dev = device if device is not None else next(model.parameters()).device
    out: Dict[str, np.ndarray] = {}
    for h in heads:
        kind, k = head_kind(h)
        shape = (n, k) if kind in ("class", "va") else (n,)
        out[h] = np.full(shape, np.nan, np.float32)
    # the fallback's face-only pass rides along in the same batches, the face encoder run once
    two_pass = (face_fallback is not None or face_only) and applies(modalities)
    face_out = {h: np.full_like(v, np.nan) for h, v in out.items()}
    eligible = np.zeros(n, bool)

    def store(dst, res, rows) -> None:
        for h in heads:
            y = res[h].float()
            if head_kind(h)[0] == "class":
                y = torch.softmax(y, dim=-1)
            dst[h][rows] = y.cpu().numpy()

    if len(want):
        ds = WindowDataset(samples, heads=(), norm_stats=norm_stats, modalities=modalities)
        loader = DataLoader(Subset(ds, want.tolist()), batch_size=batch_size, shuffle=False, collate_fn=collate)
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            for batch in loader:
                idx = batch["index"].numpy()
                inputs = (batch["face"].to(dev, non_blocking=True), batch["eye"].to(dev), batch["fixation"].to(dev))
                with torch.autocast(device_type=dev.type, enabled=bool(amp) and dev.type == "cuda"):
                    if two_pass:
                        res, res_face, rows = model.forward_fused_and_face_only(
                            *inputs, modality_mask=batch["modality_mask"].to(dev))
                    else:
                        res, res_face = model(*inputs, modality_mask=batch["modality_mask"].to(dev)), None
                store(out, res, idx)
                if res_face is not None:
                    store(face_out, res_face, idx[rows])
                    eligible[idx[rows]] = True
        model.train(was_training)
    out["er_face_fallback"] = np.zeros(n, bool)
    if face_fallback is not None and eligible.any():
        combined, fired = combine({h: out[h] for h in heads}, face_out, face_fallback, eligible)
        out.update(combined)
        out["er_face_fallback"] = fired
    if face_only:
        out["face_only"], out["face_eligible"] = face_out, eligible
    out["scored"] = scored
    return out


# --------------------------------------------------------------------------------------------
# evaluating checkpoints
# --------------------------------------------------------------------------------------------
def _subsets(samples: Samples) -> Dict[str, np.ndarray]:
    subs: Dict[str, np.ndarray] = {}
    kinds = sorted(set(samples["kind"].tolist()))
    if len(kinds) > 1:
        for k in kinds:
            subs[f"kind={k}"] = samples["kind"] == k
    masked = samples["masked"]
    if np.any(masked == 1):
        subs["masked"] = masked == 1
    if np.any(masked == 0) and np.any(masked == 1):
        subs["unmasked"] = masked == 0
    return subs


def evaluate_fold(loaded, samples: Samples, *, modalities: Sequence[str], batch_size: int = 32,
                  amp: bool = False, face_fallback: bool = True) -> Dict[str, Any]:
    """Metrics of one loaded checkpoint on ``samples`` (all heads, plus subsets); with
    ``face_fallback`` the checkpoint's stored face fallback applies (as in the live app)."""
    heads = list(loaded.config.heads)
    threshold = getattr(loaded, "face_fallback", None) if face_fallback else None
    if not applies(modalities):
        threshold = None  # nothing to fall back from: one pass is all there is
    preds = predict_samples(loaded.model, samples, heads=heads, norm_stats=loaded.norm_stats,
                            modalities=modalities, device=loaded.device, batch_size=batch_size, amp=amp,
                            face_fallback=threshold)
    scored = preds.pop("scored")
    fired = preds.pop("er_face_fallback")
    targets = head_targets(samples, heads)
    result = {
        "n_samples": int(len(samples)),
        "n_scored": int(scored.sum()),
        "n_unscored": int((~scored).sum()),
        "face_fallback": None if threshold is None else {"threshold": threshold, "n_er_from_face": int(fired.sum())},
        "heads": compute_metrics(preds, targets, label_maps=loaded.label_maps, scored=scored),
        "subsets": {},
    }
    class_heads = [h for h in heads if head_kind(h)[0] == "class"]
    result["_rows"] = _sample_rows(samples, preds, targets, scored, class_heads, loaded.label_maps)
    if threshold is not None:
        for r, f in zip(result["_rows"], fired):
            r["er_face_fallback"] = int(f)
    for name, sel in _subsets(samples).items():
        keep = scored & sel
        result["subsets"][name] = {
            "n_samples": int(sel.sum()),
            "heads": compute_metrics({h: preds[h] for h in class_heads}, targets, label_maps=loaded.label_maps,
                                     scored=keep),
        }
    return result


SAMPLE_COLUMNS = ("fold", "participant", "session", "kind", "trial", "t_end_us", "masked", "scored")


def _sample_rows(samples: Samples, preds, targets, scored, class_heads, label_maps) -> List[Dict[str, Any]]:
    """One row per sample: who/what it is, and per class head the target and predicted class
    names (empty when unlabelled / unscored) - for pooled or per-participant analyses."""
    rows = []
    names = {h: _class_names(h, label_maps) for h in class_heads}
    for i in range(len(samples)):
        r = {"participant": str(samples["participant"][i]), "session": str(samples["session"][i]),
             "kind": str(samples["kind"][i]), "trial": int(samples["trial"][i]),
             "t_end_us": int(samples["t_end_us"][i]), "masked": int(samples["masked"][i]),
             "scored": int(bool(scored[i]))}
        for h in class_heads:
            t = int(targets[h][i])
            r[f"{h}_target"] = names[h][t] if t >= 0 else ""
            r[f"{h}_pred"] = names[h][int(np.argmax(preds[h][i]))] if scored[i] else ""
        rows.append(r)
    return rows


def write_sample_predictions(rows: List[Dict[str, Any]], path: Any) -> Path:
    """``predictions.tsv`` of an evaluation: :data:`SAMPLE_COLUMNS` then ``<head>_target`` /
    ``<head>_pred`` per class head (union over the folds' checkpoints)."""
    path = Path(path)
    cols = list(SAMPLE_COLUMNS)
    for r in rows:
        cols += [k for k in r if k not in cols]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(cols) + "\n")
        for r in rows:
            f.write("\t".join(str(r.get(c, "")) for c in cols) + "\n")
    return path


def _checkpoint_split(loaded) -> Dict[str, Any]:
    prov = loaded.provenance or {}
    split = prov.get("split") if isinstance(prov.get("split"), dict) else {}
    return split or {}


def evaluate_checkpoints(checkpoints: Sequence[Any], samples: Samples, *, split: str = "auto",
                         modalities: Optional[Sequence[str]] = None, device: str = "auto",
                         batch_size: int = 32, data: Sequence[str] = (), sample_spec: Optional[Dict[str, Any]] = None,
                         log=None, keep_rows: Optional[List[Dict[str, Any]]] = None,
                         face_fallback: bool = True) -> Dict[str, Any]:
    """Evaluate one or more checkpoints (e.g. the models of the folds of one training run).

    Parameters
    ----------
    checkpoints : paths
    samples : Samples
        All candidate samples; each checkpoint is scored on a selection of them (``split``).
    split : {'auto', 'test', 'all'}
        ``test``: only the participants the checkpoint's training run held out for its fold
        (``provenance.split.test_participants``; refused when it has none); ``all``: every sample
        (for data the model never saw); ``auto``: ``test`` when the checkpoint records test
        participants, else ``all``.
    modalities : sequence of str, optional
        Modalities fed to the model; default: the ones it was trained with
        (``provenance.modalities``), else all three.
    keep_rows : list, optional
        Receives one dict per scored-or-not sample and fold (see :func:`write_sample_predictions`).
    face_fallback : bool
        Apply each checkpoint's stored face fallback (default, as the live app does); False
        scores the plain fused model.

    Returns
    -------
    dict
        The report documented in ``docs/training.md``.
    """
    from ..model import load_checkpoint

    if split not in ("auto", "test", "all"):
        raise ConfigError(f"--split must be auto, test or all, got {split!r}")
    if not checkpoints:
        raise ConfigError("no checkpoint given: pass --checkpoint CKPT")
    folds, entries, rows = [], [], []
    all_participants = set(samples.participants)
    for i, path in enumerate(checkpoints):
        loaded = load_checkpoint(path, device=device)
        prov = loaded.provenance or {}
        sp = _checkpoint_split(loaded)
        test_p = sp.get("test_participants")
        trained_on = set(sp.get("train_participants") or []) | set(sp.get("val_participants") or [])
        mode = split
        if mode == "auto":
            mode = "test" if test_p else "all"
        if mode == "test":
            if not test_p:
                raise ConfigError(f"{path}: the checkpoint records no held-out test participants "
                                  "(trained on all); use --split all with data it never saw")
            sel = samples.of_participants(test_p)
            if not len(sel):
                raise ConfigError(f"{path}: none of its test participants ({', '.join(test_p)}) is in the data; "
                                  "give the data it was trained on, or --split all")
        else:
            sel = samples
        leaked = sorted(set(sel.participants) & trained_on)
        if leaked and log:
            log(f"warning: {Path(path).name}: participants {', '.join(leaked)} were in its training data; "
                "their scores are not a held-out estimate")
        mods = tuple(modalities) if modalities else tuple(prov.get("modalities") or MODALITIES)
        res = evaluate_fold(loaded, sel, modalities=mods, batch_size=batch_size, face_fallback=face_fallback)
        fold_no = sp.get("fold")
        for r in res.pop("_rows"):
            rows.append({"fold": int(fold_no) if isinstance(fold_no, int) else i + 1, **r})
        entry = {"fold": int(fold_no) if isinstance(fold_no, int) else i + 1, "checkpoint": str(path),
                 "checkpoint_id": loaded.id, "split": mode, "participants": sel.participants,
                 "modalities": list(mods), "trained_on_evaluated": leaked, **res}
        folds.append(entry)
        entries.append({"path": str(path), "id": loaded.id, "heads": list(loaded.config.heads),
                        "task": prov.get("task")})
        del loaded
    report = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "data": [str(d) for d in data],
        "samples": sample_spec or {},
        "participants": sorted(all_participants),
        "checkpoints": entries,
        "folds": folds,
        "summary": summarize_folds([f["heads"] for f in folds]),
        "summary_subsets": {name: summarize_folds([f["subsets"][name]["heads"] for f in folds
                                                   if name in f["subsets"]])
                            for name in sorted({n for f in folds for n in f["subsets"]})},
    }
    if keep_rows is not None:
        keep_rows.extend(rows)
    return report


# --------------------------------------------------------------------------------------------
# text and images
# --------------------------------------------------------------------------------------------
def _fmt(v: Optional[float]) -> str:
    return "  -  " if v is None else f"{v:.3f}"


def format_report(report: Dict[str, Any]) -> str:
    """Human-readable summary of :func:`evaluate_checkpoints` output."""
    lines = []
    for f in report["folds"]:
        lines.append(f"fold {f['fold']}: {Path(f['checkpoint']).name} [{f['checkpoint_id']}] on "
                     f"{len(f['participants'])} participant(s) ({f['split']}), {f['n_scored']}/{f['n_samples']} "
                     f"samples scored, modalities {','.join(f['modalities'])}")
        fb = f.get("face_fallback")
        if fb:
            lines.append(f"  face fallback (threshold {fb['threshold']:.2f}): ER taken from the face alone on "
                         f"{fb['n_er_from_face']} sample(s)")
        for h, m in f["heads"].items():
            lines.append("  " + _head_line(h, m))
        for name, sub in f["subsets"].items():
            for h, m in sub["heads"].items():
                if m.get("n"):
                    lines.append(f"  [{name}] " + _head_line(h, m))
    if len(report["folds"]) > 1:
        lines.append(f"mean +- sd over {len(report['folds'])} folds:")
        for h, m in report["summary"].items():
            parts = [f"{k.upper() if k != 'weighted_f1' else 'F1w'} {_fmt(v['mean'])} +- {_fmt(v['sd'])}"
                     for k, v in m.items() if isinstance(v, dict) and "mean" in v]
            lines.append(f"  {h:<14} " + "  ".join(parts))
    return "\n".join(lines)


def _head_line(h: str, m: Dict[str, Any]) -> str:
    if not m.get("n"):
        return f"{h:<14} no labelled samples"
    if "uar" in m:
        return f"{h:<14} n={m['n']:<5} WAR {m['war']:.3f}  UAR {m['uar']:.3f}  F1w {m['weighted_f1']:.3f}"
    if "valence" in m:
        v, a = m["valence"], m["arousal"]
        return (f"{h:<14} n={m['n']:<5} MAE {m['mae']:.3f}  RMSE {m['rmse']:.3f}  (valence MAE "
                f"{_fmt(v.get('mae'))}, arousal MAE {_fmt(a.get('mae'))})")
    return f"{h:<14} n={m['n']:<5} MAE {m['mae']:.3f}  MSE {m['mse']:.3f}  RMSE {m['rmse']:.3f}"


def draw_confusion(cm: Any, labels: Sequence[str], *, title: str = "", cell: int = 64) -> np.ndarray:
    """Render a confusion matrix (truth in rows, prediction in columns) as a BGR uint8 image.

    Cells are shaded by row-normalised recall (white 0 -> dark blue 1) and show the count and
    the row percentage. Drawn with OpenCV; no plotting library needed.
    """
    import cv2

    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    if cm.shape != (k, k) or len(labels) != k:
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(labels)} labels")
    font = cv2.FONT_HERSHEY_SIMPLEX
    short = [str(s)[:9] for s in labels]
    left = 12 + max(cv2.getTextSize(s, font, 0.45, 1)[0][0] for s in short) + 8
    top, bottom = 72, 40
    w, h = left + k * cell + 16, top + k * cell + bottom
    img = np.full((h, w, 3), 255, np.uint8)
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(rows > 0, cm / np.maximum(rows, 1), 0.0)
    for i in range(k):
        for j in range(k):
            x0, y0 = left + j * cell, top + i * cell
            f = float(frac[i, j])
            color = (255 - int(f * 135), 255 - int(f * 205), 255 - int(f * 225))   # BGR towards dark blue
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), color, -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (180, 180, 180), 1)
            ink = (255, 255, 255) if f > 0.55 else (20, 20, 20)
            txt = str(int(cm[i, j]))
            (tw, th), _ = cv2.getTextSize(txt, font, 0.5, 1)
            cv2.putText(img, txt, (x0 + (cell - tw) // 2, y0 + cell // 2), font, 0.5, ink, 1, cv2.LINE_AA)
            pct = f"{100 * f:.0f}%"
            (pw, _), _ = cv2.getTextSize(pct, font, 0.35, 1)
            cv2.putText(img, pct, (x0 + (cell - pw) // 2, y0 + cell // 2 + 16), font, 0.35, ink, 1, cv2.LINE_AA)
        (tw, th), _ = cv2.getTextSize(short[i], font, 0.45, 1)
        cv2.putText(img, short[i], (left - tw - 8, top + i * cell + cell // 2 + th // 2), font, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    for j in range(k):
        s = short[j][:5]
        (tw, th), _ = cv2.getTextSize(s, font, 0.4, 1)
        cv2.putText(img, s, (left + j * cell + (cell - tw) // 2, top - 8), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "predicted ->", (left, top - 32), font, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    cv2.putText(img, "rows: truth", (8, h - 12), font, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    if title:
        cv2.putText(img, title[:60], (8, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def write_confusion_pngs(report: Dict[str, Any], out_dir: Any) -> List[Path]:
    """Write ``confusion_<head>_fold<k>.png`` per fold and class head, and
    ``confusion_<head>_all.png`` (summed over folds) when there are several folds."""
    import cv2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    sums: Dict[str, Any] = {}
    for f in report["folds"]:
        for h, m in f["heads"].items():
            if "confusion" not in m:
                continue
            p = out_dir / f"confusion_{h}_fold{f['fold']}.png"
            img = draw_confusion(m["confusion"], m["labels"],
                                 title=f"{h} fold {f['fold']}: UAR {m['uar']:.3f} WAR {m['war']:.3f} n={m['n']}")
            if not cv2.imwrite(str(p), img):
                raise ConfigError(f"could not write {p}")
            written.append(p)
            cm = np.asarray(m["confusion"])
            sums[h] = (sums[h][0] + cm, m["labels"]) if h in sums else (cm, m["labels"])
    if len(report["folds"]) > 1:
        for h, (cm, labels) in sums.items():
            p = out_dir / f"confusion_{h}_all.png"
            cv2.imwrite(str(p), draw_confusion(cm, labels, title=f"{h}: all folds, n={int(cm.sum())}"))
            written.append(p)
    return written


# --------------------------------------------------------------------------------------------
# tuning the face fallback
# --------------------------------------------------------------------------------------------
def tune_face_fallback(loaded, samples: Samples, *, participants: Optional[Sequence[str]] = None,
                       batch_size: int = 32, log=None) -> Dict[str, Any]:
    """Choose the face-fallback threshold of a checkpoint on its validation participants.

    Parameters
    ----------
    loaded : LoadedModel
        Trained with face and eyes (and, to have a useful face-only pass, with eye dropout).
    samples : Samples
        Data holding the participants to tune on.
    participants : sequence of str, optional
        Default: the checkpoint's validation participants (``provenance.split.val_participants``),
        never its test participants.

    Returns
    -------
    dict
        The ``face_fallback`` setting to store (:func:`emer_live.model.fallback.choose_threshold`
        plus ``participants``, ``n_samples`` and ``method``).
    """
    sp = _checkpoint_split(loaded)
    mods = check_fallback_model(loaded)
    people = list(participants) if participants else list(sp.get("val_participants") or [])
    if not people:
        raise ConfigError(f"{loaded.path}: the checkpoint records no validation participants; name the "
                          "participants to tune on (never its test participants)")
    leaked = sorted(set(people) & set(sp.get("test_participants") or []))
    if leaked:
        raise ConfigError(f"refusing to tune on {', '.join(leaked)}: held-out test participants of "
                          f"{loaded.path.name}; tune on its validation participants")
    trained = sorted(set(people) & set(sp.get("train_participants") or []))
    if trained:
        raise ConfigError(f"refusing to tune on {', '.join(trained)}: {loaded.path.name} was trained on them, so "
                          "its answers there are too good; tune on its validation participants")
    missing = sorted(set(people) - set(samples.participants))
    if missing:
        raise ConfigError(f"participant(s) {', '.join(missing)} to tune on are not in the data; give the data the "
                          "checkpoint was trained on (--data)")
    sel = samples.of_participants(people)
    spec = fallback_on_samples(loaded.model, sel, norm_stats=loaded.norm_stats, modalities=mods,
                               device=loaded.device, batch_size=batch_size)
    if log:
        log(describe_fallback(spec))
    return spec


def check_fallback_model(loaded) -> Tuple[str, ...]:
    """The modalities ``loaded`` was trained with; ConfigError when a face fallback cannot apply to it
    (checked before any data is loaded)."""
    mods = tuple((loaded.provenance or {}).get("modalities") or MODALITIES)
    if not applies(mods, loaded.config.heads):
        raise ConfigError(f"{loaded.path}: trained on {'+'.join(mods)} with heads {', '.join(loaded.config.heads)}; "
                          "the face fallback needs a model that sees the face and the eyes and has an er7 head")
    return mods


def fallback_on_samples(model, samples: Samples, *, norm_stats: Dict[str, Any], modalities: Sequence[str],
                        device=None, batch_size: int = 32) -> Dict[str, Any]:
    """:func:`~emer_live.model.fallback.choose_threshold` for ``model`` on ``samples`` (the
    validation participants): the fused and the face-only pass, ER7 targets."""
    from ..model.fallback import choose_threshold

    heads = ["er7"]
    pred = predict_samples(model, samples, heads=heads, norm_stats=norm_stats, modalities=modalities,
                           device=device, batch_size=batch_size, face_only=True)
    target = head_targets(samples, heads)["er7"].copy()
    target[~pred["scored"]] = -1
    spec = choose_threshold(np.nan_to_num(pred["er7"]), np.nan_to_num(pred["face_only"]["er7"]),
                            pred["face_eligible"], target)
    spec.update({"participants": sorted(samples.participants), "n_samples": int(len(samples)),
                 "method": "ER7 UAR on validation participants, thresholds 0.30-0.95; off unless it beats the "
                           "fused model"})
    return spec


def describe_fallback(spec: Dict[str, Any]) -> str:
    """One log line for a tuned face-fallback setting."""
    t = spec["threshold"]
    return (f"face fallback on {', '.join(spec['participants'])} ({spec['n_val']} samples): fused ER7 UAR "
            f"{spec['val_er7_uar_fused']:.3f}; " + (f"threshold {t:.2f} gives {spec['val_er7_uar']:.3f}"
                                                    if t is not None else "no threshold beats it: fallback off"))
