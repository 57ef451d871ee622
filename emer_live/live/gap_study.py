"""Does the emotion gap see masking? Score synthetic sessions and compare the logged gap on
trials whose face was masked with trials whose face showed the felt emotion (truth.tsv).

Used by ``benchmarks/bench_live.py`` and a test; imports torch only through the session runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

__all__ = ["collect_gap_corpus", "gap_by_mask"]


def collect_gap_corpus(root, *, checkpoint: str, participants: List[str], seed: int = 1000, n_trials: int = 14,
                       time_scale: float = 0.15, mask_rate: float = 0.5, size=(320, 240)) -> List[Path]:
    """Fast synthetic sessions with the live model running (whole-trial predictions per trial)."""
    from ..app import RunConfig
    from ..session.runner import run_headless_session

    out = []
    for i, p in enumerate(participants):
        cfg = RunConfig(kind="session", participant=p, out_root=str(root), n_trials=n_trials, time_scale=time_scale,
                        seed=seed, size=tuple(size), fps=15, rate=120, mask_rate=mask_rate, fast=True,
                        checkpoint=checkpoint, participant_index=i)
        out.append(run_headless_session(cfg))
    return out


def gap_by_mask(sessions) -> Dict[str, object]:
    """Per-trial gap (JSD of ER vs FER, whole-trial predictions) split by the truth's mask flag."""
    import pandas as pd

    rows = []
    for s in sessions:
        s = Path(s)
        preds = pd.read_csv(s / "predictions.tsv", sep="\t")
        truth = pd.read_csv(s / "truth.tsv", sep="\t")
        truth = truth[truth["kind"] == "trial"][["trial", "masked", "true_emotion", "displayed_expression"]]
        tp = preds[preds["kind"] == "trial"][["trial", "gap_jsd", "gap_valence", "er_top", "fer_top"]]
        m = tp.merge(truth, on="trial")
        m["session"] = s.name
        rows.append(m)
    df = pd.concat(rows, ignore_index=True)
    masked = df["masked"].astype(str).str.lower().isin(("1", "1.0", "true"))
    g_m, g_u = df.loc[masked, "gap_jsd"].to_numpy(float), df.loc[~masked, "gap_jsd"].to_numpy(float)
    # probability that a masked trial's gap exceeds an unmasked one's (AUC; 0.5 = no difference)
    auc = float(np.mean([(a > b) + 0.5 * (a == b) for a in g_m for b in g_u])) if len(g_m) and len(g_u) else float("nan")
    return {"n_masked": int(len(g_m)), "n_unmasked": int(len(g_u)),
            "gap_masked_mean": float(g_m.mean()) if len(g_m) else float("nan"),
            "gap_unmasked_mean": float(g_u.mean()) if len(g_u) else float("nan"),
            "auc_masked_gt_unmasked": auc,
            "er_matches_truth": float((df["er_top"] == df["true_emotion"]).mean()),
            "fer_matches_displayed": float((df["fer_top"] == df["displayed_expression"]).mean())}
