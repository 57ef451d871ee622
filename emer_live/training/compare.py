"""Compare evaluations of several models on the same held-out samples: a modality-ablation table
(like the paper's Table VI) with pooled metrics, per-fold mean +- sd, and a participant-level
bootstrap confidence interval for each model's difference to a baseline model.

Input is the ``predictions.tsv`` that ``emer-live evaluate --out-dir DIR`` writes (one row per
sample and fold). Numpy only.

Why a bootstrap over participants: samples of one person are not independent (the same face,
the same eyes), so the uncertainty of a difference between two models is estimated by
resampling whole participants with replacement and recomputing both models' metrics on the
same resampled set (a paired comparison).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError

__all__ = ["Evaluation", "read_evaluation", "uar", "compare_evaluations", "format_comparison"]

SUBSETS = ("all", "masked", "unmasked")


@dataclass
class Evaluation:
    """The scored, labelled samples of one evaluation for one head."""

    name: str
    # fold, participant, session, kind, trial, t_end_us: with the fold, new participants scored by
    # every fold's model (evaluate --split all) give one row per model and sample
    key: List[Tuple[int, str, str, str, int, int]]
    participant: np.ndarray
    fold: np.ndarray
    masked: np.ndarray      # 1 / 0 / -1 (unknown)
    target: np.ndarray      # class index
    pred: np.ndarray
    classes: List[str]


def read_evaluation(name: str, folder: Any, *, head: str = "er7", kind: Optional[str] = "trial") -> Evaluation:
    """Read ``folder/predictions.tsv`` (or a .tsv path): the labelled, scored samples of ``head``
    (``kind`` = only samples of that kind, e.g. whole-trial ``trial`` as in the paper)."""
    path = Path(folder)
    if path.is_dir():
        path = path / "predictions.tsv"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (run `emer-live evaluate ... --out-dir DIR` first)")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    tcol, pcol = f"{head}_target", f"{head}_pred"
    if rows and (tcol not in rows[0] or pcol not in rows[0]):
        raise ConfigError(f"{path}: no {head} columns (the model has no {head} head?)")
    rows = [r for r in rows if r.get("scored") == "1" and r.get(tcol) and r.get(pcol)
            and (kind is None or r.get("kind") == kind)]
    if not rows:
        raise ConfigError(f"{path}: no scored, labelled {kind or ''} samples for {head}")
    classes = sorted({r[tcol] for r in rows} | {r[pcol] for r in rows})
    idx = {c: i for i, c in enumerate(classes)}
    return Evaluation(
        name=name,
        key=[(int(r["fold"]), r["participant"], r["session"], r["kind"], int(r["trial"]), int(r["t_end_us"]))
             for r in rows],
        participant=np.array([r["participant"] for r in rows]),
        fold=np.array([int(r["fold"]) for r in rows]),
        masked=np.array([int(r["masked"]) for r in rows]),
        target=np.array([idx[r[tcol]] for r in rows]), pred=np.array([idx[r[pcol]] for r in rows]),
        classes=classes)


def uar(target: np.ndarray, pred: np.ndarray, weights: Optional[np.ndarray] = None) -> float:
    """Unweighted average recall over the classes present in ``target`` (NaN when empty);
    ``weights`` count each sample that many times (bootstrap multiplicities)."""
    w = np.ones(len(target)) if weights is None else np.asarray(weights, float)
    recalls = []
    for c in np.unique(target[w > 0]):
        sel = (target == c) & (w > 0)
        recalls.append(float(np.sum(w[sel] * (pred[sel] == c)) / np.sum(w[sel])))
    return float(np.mean(recalls)) if recalls else float("nan")


def _subset(ev: Evaluation, name: str) -> np.ndarray:
    if name == "all":
        return np.ones(len(ev.target), bool)
    return ev.masked == (1 if name == "masked" else 0)


def _aligned(evals: Sequence[Evaluation]) -> List[Evaluation]:
    """The same samples in the same order in every evaluation (else a paired comparison is wrong)."""
    base = evals[0]
    common = set(base.key)
    for e in evals[1:]:
        common &= set(e.key)
    if not common:
        raise ConfigError("the evaluations share no sample; compare models evaluated on the same data and folds")
    for e in evals:
        if len(set(e.key)) != len(e.key):
            raise ConfigError(f"{e.name}: a sample appears twice (several evaluations of one model concatenated?)")
    order = sorted(common)
    for e in evals:
        if len(e.key) > len(order):  # say so: a comparison on the overlap only is easy to misread
            print(f"compare: {e.name}: {len(e.key) - len(order)} of its {len(e.key)} samples are not in every "
                  "evaluation and are left out", file=sys.stderr)
    out = []
    for e in evals:
        pos = {k: i for i, k in enumerate(e.key)}
        ii = np.array([pos[k] for k in order])
        classes = sorted(set().union(*[set(x.classes) for x in evals]))
        remap = np.array([classes.index(c) for c in e.classes])
        out.append(Evaluation(name=e.name, key=order, participant=e.participant[ii], fold=e.fold[ii],
                              masked=e.masked[ii], target=remap[e.target[ii]], pred=remap[e.pred[ii]],
                              classes=classes))
    return out


def compare_evaluations(evals: Sequence[Evaluation], *, baseline: Optional[str] = None, n_boot: int = 2000,
                        seed: int = 0) -> Dict[str, Any]:
    """Metrics of each evaluation on the common samples, and its difference to ``baseline``
    (default: the first) with a 95 % participant-bootstrap interval, per subset."""
    if len(evals) < 1:
        raise ConfigError("nothing to compare")
    names = [e.name for e in evals]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must differ, got {', '.join(names)}")
    base_name = baseline or names[0]
    if base_name not in names:
        raise ConfigError(f"--baseline {base_name}: not one of {', '.join(names)}")
    evals = _aligned(evals)
    base = evals[names.index(base_name)]
    people = np.array(sorted(set(base.participant.tolist())))
    person_idx = np.searchsorted(people, base.participant)
    rng = np.random.default_rng(seed)
    # bootstrap multiplicity of every sample: its participant's draw count
    draws = np.stack([np.bincount(rng.integers(0, len(people), len(people)), minlength=len(people))
                      for _ in range(n_boot)])[:, person_idx] if n_boot > 0 else np.zeros((0, len(base.target)))
    report: Dict[str, Any] = {"baseline": base_name, "n_participants": int(len(people)),
                              "n_bootstrap": int(n_boot), "seed": seed, "classes": base.classes, "models": []}
    for e in evals:
        m: Dict[str, Any] = {"name": e.name, "subsets": {}}
        for sub in SUBSETS:
            sel = _subset(e, sub)
            if not sel.any():
                continue
            folds = sorted(set(e.fold[sel].tolist()))
            per_fold = [uar(e.target[sel & (e.fold == f)], e.pred[sel & (e.fold == f)]) for f in folds]
            s: Dict[str, Any] = {"n": int(sel.sum()), "uar": uar(e.target[sel], e.pred[sel]),
                                 "war": float(np.mean(e.target[sel] == e.pred[sel])),
                                 "uar_folds": per_fold,
                                 "uar_fold_mean": float(np.nanmean(per_fold)),
                                 "uar_fold_sd": float(np.nanstd(per_fold, ddof=1)) if len(per_fold) > 1 else None}
            if e is not base and n_boot > 0:
                diffs = np.array([uar(e.target[sel], e.pred[sel], w[sel]) - uar(base.target[sel], base.pred[sel], w[sel])
                                  for w in draws])
                diffs = diffs[np.isfinite(diffs)]
                s["diff_vs_baseline"] = {
                    "uar": s["uar"] - uar(base.target[sel], base.pred[sel]),
                    "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
                    "p_not_higher": float(np.mean(diffs <= 0)),
                }
            m["subsets"][sub] = s
        report["models"].append(m)
    return report


def format_comparison(report: Dict[str, Any], *, chance: Optional[float] = None) -> str:
    """A markdown table: pooled UAR per subset, per-fold mean +- sd, and the difference to the
    baseline with its 95 % interval."""
    subs = [s for s in SUBSETS if any(s in m["subsets"] for m in report["models"])]
    head = ["model"]
    for s in subs:
        n = next(m["subsets"][s]["n"] for m in report["models"] if s in m["subsets"])
        head += [f"UAR {s} (n={n})", f"{s}: fold mean +- sd", f"{s}: minus {report['baseline']} [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in report["models"]:
        cells = [m["name"]]
        for s in subs:
            x = m["subsets"].get(s)
            if x is None:
                cells += ["-", "-", "-"]
                continue
            sd = "" if x["uar_fold_sd"] is None else f" +- {x['uar_fold_sd']:.3f}"
            d = x.get("diff_vs_baseline")
            cells += [f"{x['uar']:.3f}", f"{x['uar_fold_mean']:.3f}{sd}",
                      "(baseline)" if d is None else f"{d['uar']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"]
        lines.append("| " + " | ".join(cells) + " |")
    foot = (f"\nPooled over folds; intervals: {report['n_bootstrap']} bootstrap resamples of the "
            f"{report['n_participants']} participants (paired, seed {report['seed']}).")
    if chance is not None:
        foot += f" Chance UAR {chance:.3f}."
    return "\n".join(lines) + foot


def report_json(report: Dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
