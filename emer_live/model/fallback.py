"""Face fallback: take the ER answer from the face alone where the face alone is sure.

Why: a fused model trained on few participants lets noisy eye features move its ER answer even
when the face shows an expression nobody uses as a mask (anger, disgust...), and so loses some of
the face's accuracy on honest faces. A model trained with modality dropout can also be run with
its eyes masked; where that face-only pass is confident (top ER7 probability >= a threshold), the
face is taken at its word, and everywhere else - typically a smile or a neutral face, the faces
people hide behind - the fused answer stands. The threshold is chosen on the validation
participants of the model's own training run (:func:`choose_threshold`), and "off" is kept when
no threshold beats the plain fused model there.

Only the ER heads (``er7``, ``er3``, ``er_va``, ``er_valence``, ``er_arousal``) are switched; FER heads always come from the
fused pass. Imports without torch.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from . import metrics as M

__all__ = ["ER_HEADS", "THRESHOLDS", "applies", "eligible_rows", "scatter_rows", "combine", "choose_threshold",
           "check_face_fallback", "threshold_of"]

#: The heads the fallback switches to the face-only pass (every ER head a config can have).
ER_HEADS = ("er7", "er3", "er_va", "er_valence", "er_arousal")
#: Thresholds tried when tuning (top ER7 probability of the face-only pass).
THRESHOLDS = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 ... 0.95


def applies(modalities: Sequence[str], heads: Optional[Sequence[str]] = None) -> bool:
    """Whether a model fed ``modalities`` (and having ``heads``, when given) can use a face
    fallback: it needs the face, eyes or fixations to fall back from, and an er7 head."""
    mods = set(modalities)
    return "face" in mods and bool({"eye", "fixation"} & mods) and (heads is None or "er7" in heads)


def eligible_rows(modality_mask: Any) -> np.ndarray:
    """Rows where a face-only pass differs from the fused one: face present and eyes or fixations
    present. ``modality_mask`` is ``(B, 3)`` bool (face, eye, fixation)."""
    m = np.asarray(modality_mask, dtype=bool)
    return m[:, 0] & (m[:, 1] | m[:, 2])


def scatter_rows(part: Mapping[str, np.ndarray], rows: np.ndarray, n: int) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Face-only outputs of ``rows`` (of a batch of ``n``) spread to full size (NaN elsewhere), and the
    eligible mask, as :func:`combine` takes them."""
    full = {}
    for h, v in part.items():
        v = np.asarray(v)
        full[h] = np.full((n,) + v.shape[1:], np.nan, v.dtype if v.dtype.kind == "f" else np.float32)
        full[h][rows] = v
    eligible = np.zeros(n, bool)
    eligible[rows] = True
    return full, eligible


def combine(fused: Mapping[str, np.ndarray], face_only: Mapping[str, np.ndarray], threshold: float,
            eligible: np.ndarray) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Outputs with the ER heads of ``face_only`` on the eligible rows where its ER7 top probability
    reaches ``threshold``.

    Parameters
    ----------
    fused, face_only : dict of head -> array (B, ...)
        The same rows scored with all present modalities and with the face alone (rows the
        face-only pass did not score may hold anything; they are not eligible).
    threshold : float
    eligible : bool array (B,)

    Returns
    -------
    (dict, bool array)
        The combined outputs (a new dict; other keys copied from ``fused``) and, per row, whether
        the face answer was taken.
    """
    eligible = np.asarray(eligible, dtype=bool)
    conf = np.zeros(len(eligible), np.float64)
    if eligible.any():
        conf[eligible] = np.asarray(face_only["er7"], dtype=np.float64)[eligible].max(axis=-1)
    fired = eligible & (conf >= float(threshold))
    out = dict(fused)
    for h in ER_HEADS:
        if h in fused and h in face_only:
            sel = fired.reshape((-1,) + (1,) * (np.ndim(fused[h]) - 1))
            out[h] = np.where(sel, np.asarray(face_only[h]), np.asarray(fused[h])).astype(np.asarray(fused[h]).dtype)
    return out, fired


def choose_threshold(fused_er7: Any, face_er7: Any, eligible: Any, target: Any, *,
                     thresholds: Sequence[float] = THRESHOLDS) -> Dict[str, Any]:
    """Pick the fallback threshold that maximises ER7 UAR on validation samples.

    Ties go to the highest threshold (the fewest answers changed); when no threshold beats the
    plain fused model, the result is ``threshold: None`` (fallback off).

    Parameters
    ----------
    fused_er7, face_er7 : (N, 7) probabilities of the fused and the face-only pass
    eligible : (N,) bool, see :func:`eligible_rows`
    target : (N,) class indices, ``-1`` = no label (ignored)

    Returns
    -------
    dict
        ``threshold`` (float or None), ``val_er7_uar_fused``, ``val_er7_uar`` (with the chosen
        threshold), ``n_val`` (labelled samples), ``n_eligible``, ``grid`` ([threshold, UAR, share
        of samples switched] per threshold tried).
    """
    y = np.asarray(target)
    keep = y >= 0
    fused = np.asarray(fused_er7, dtype=np.float64)[keep]
    face = np.asarray(face_er7, dtype=np.float64)[keep]
    elig = np.asarray(eligible, dtype=bool)[keep]
    y = y[keep].astype(np.int64)
    if not len(y):
        raise ConfigError("no scored sample with an ER7 label among the participants to tune the face fallback "
                          "on; tune on participants with SAM ratings and eyes (or train with --face-fallback off)")
    k = fused.shape[1]
    base = M.uar(y, fused.argmax(axis=1), n_classes=k)
    best_t, best_u = None, base
    grid = []
    for t in sorted(float(v) for v in thresholds):
        comb, fired = combine({"er7": fused}, {"er7": face}, t, elig)
        u = M.uar(y, comb["er7"].argmax(axis=1), n_classes=k)
        grid.append([t, round(float(u), 4), round(float(fired.mean()), 4)])
        if u > base + 1e-9 and u >= best_u - 1e-9:  # ascending: a tie moves to the higher threshold
            best_t, best_u = t, u
    return {"threshold": best_t, "val_er7_uar_fused": round(float(base), 4), "val_er7_uar": round(float(best_u), 4),
            "n_val": int(len(y)), "n_eligible": int(elig.sum()), "grid": grid}


def check_face_fallback(spec: Any, where: str = "face_fallback") -> Optional[Dict[str, Any]]:
    """Validate a stored fallback setting (``None`` or a dict whose ``threshold`` is None or in
    (0, 1]); returns it as a plain dict. Raises ``ValueError`` naming the problem."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(spec).__name__}")
    t = spec.get("threshold")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)
                          or not 0 < t <= 1):
        raise ValueError(f"{where}.threshold must be a number in (0, 1] or null, got {t!r}")
    return dict(spec)


def threshold_of(inference: Optional[Mapping[str, Any]]) -> Optional[float]:
    """The active fallback threshold of a checkpoint's ``inference`` settings, or None (off)."""
    spec = (inference or {}).get("face_fallback")
    if not spec or spec.get("threshold") is None:
        return None
    return float(spec["threshold"])
