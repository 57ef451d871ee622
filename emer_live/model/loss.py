"""EMERT training loss: ``alpha * L_adv + beta * (L_er + L_fer)``.

* ``L_er`` / ``L_fer``: sum of the losses of the ER / FER heads that have targets -
  cross-entropy for class heads, Huber (smooth L1) for valence/arousal/intensity. Each head's
  loss is the mean over the samples (elements, for ``*_va``) that have a label; a missing class
  label is ``-1``, a missing regression label ``NaN``. A head whose batch has no label adds 0.
* ``L_adv = L_specific + L_invariant`` (the paper's modality-adversarial MAFD loss, as in the
  official training code): the discriminator is trained to tell the modality of each modality's
  time-averaged *specific* features and of its *invariant* features. The invariant features reach
  the discriminator through the gradient-reversal layer, so the same cross-entropy that trains
  the discriminator drives the shared invariant encoder to make the modalities
  indistinguishable. Each part is summed over the three modalities of the per-modality mean
  over samples where that modality is present (``outputs['modalities_used']``).
"""

from __future__ import annotations

from typing import Dict, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import MODALITIES, head_group, head_kind

__all__ = ["emert_loss"]


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    v = valid.to(values.dtype)
    return (torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device))).sum() \
        / v.sum().clamp(min=1.0)


def _adversarial(logits: Tensor, used: Tensor) -> Tensor:
    """Sum over modalities of the mean CE (over present samples) of predicting that modality."""
    b, m, k = logits.shape
    target = torch.arange(m, device=logits.device).expand(b, m)
    ce = F.cross_entropy(logits.reshape(b * m, k), target.reshape(-1), reduction="none").view(b, m)
    valid = used.to(ce.dtype)
    per_modality = (torch.where(used, ce, torch.zeros((), dtype=ce.dtype, device=ce.device))).sum(0) \
        / valid.sum(0).clamp(min=1.0)
    return per_modality.sum()


def emert_loss(outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], *,
               alpha: float = 0.3, beta: float = 0.1, huber_delta: float = 1.0) -> Dict[str, Tensor]:
    """EMERT loss and its parts.

    Parameters
    ----------
    outputs : mapping
        What :meth:`EMERT.forward` returned (heads, ``disc_specific``, ``disc_invariant``,
        ``modalities_used``).
    targets : mapping of head name -> Tensor
        ``(B,)`` int64 class indices for class heads (``-1`` = no label); ``(B, 2)`` float
        (valence, arousal) for ``*_va``; ``(B,)`` float for scalar heads (``NaN`` = no label).
        Heads without an entry are not trained by this call.
    alpha, beta : float
        Weights of the adversarial and the task losses (paper defaults 0.3 and 0.1).
    huber_delta : float
        Huber threshold of the regression losses.

    Returns
    -------
    dict of str -> Tensor (scalars)
        ``total``, ``adv``, ``adv_specific``, ``adv_invariant``, ``er``, ``fer`` and one entry per
        trained head (e.g. ``er7``).
    """
    for name, w in (("alpha", alpha), ("beta", beta), ("huber_delta", huber_delta)):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {w!r}")
    for key in ("disc_specific", "disc_invariant", "modalities_used"):
        if key not in outputs:
            raise ValueError(f"outputs lack {key!r}; pass what EMERT.forward returned")
    disc_s, disc_i, used = outputs["disc_specific"], outputs["disc_invariant"], outputs["modalities_used"]
    b = disc_s.shape[0]
    if disc_s.shape != (b, len(MODALITIES), len(MODALITIES)) or disc_i.shape != disc_s.shape \
            or used.shape != (b, len(MODALITIES)):
        raise ValueError("outputs: disc_specific/disc_invariant must be (B, 3, 3) and modalities_used (B, 3)")
    device = disc_s.device

    parts: Dict[str, Tensor] = {}
    group = {"er": disc_s.new_zeros(()), "fer": disc_s.new_zeros(())}
    for name, target in targets.items():
        kind, n = head_kind(name)
        if name not in outputs:
            raise ValueError(f"targets has {name!r} but the model has no such head "
                             f"(heads: {', '.join(k for k in outputs if not k.startswith(('disc_', 'features', 'modalities')))})")
        if not isinstance(target, Tensor):
            raise TypeError(f"target {name!r} must be a torch.Tensor, got {type(target).__name__}")
        pred = outputs[name]
        target = target.to(device)
        if kind == "class":
            if target.shape != (b,) or target.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise ValueError(f"target {name!r} must be ({b},) integer class indices (-1 = no label), "
                                 f"got {target.dtype} {tuple(target.shape)}")
            target = target.long()
            if bool(((target < -1) | (target >= n)).any()):
                raise ValueError(f"target {name!r} holds class indices outside -1..{n - 1}")
            valid = target >= 0
            ce = F.cross_entropy(pred, target.clamp(min=0), reduction="none")
            loss = _masked_mean(ce, valid)
        else:
            shape = (b, 2) if kind == "va" else (b,)
            if tuple(target.shape) != shape or not target.is_floating_point():
                raise ValueError(f"target {name!r} must be a float tensor of shape {shape} (NaN = no label), "
                                 f"got {target.dtype} {tuple(target.shape)}")
            target = target.to(pred.dtype)
            valid = torch.isfinite(target)
            safe = torch.where(valid, target, pred.detach())
            hub = F.huber_loss(pred, safe, reduction="none", delta=float(huber_delta))
            loss = _masked_mean(hub, valid)
        parts[name] = loss
        g = head_group(name)
        group[g] = group[g] + loss

    adv_s = _adversarial(disc_s, used.to(device))
    adv_i = _adversarial(disc_i, used.to(device))
    adv = adv_s + adv_i
    total = float(alpha) * adv + float(beta) * (group["er"] + group["fer"])
    out = {"total": total, "adv": adv, "adv_specific": adv_s, "adv_invariant": adv_i,
           "er": group["er"], "fer": group["fer"]}
    out.update(parts)
    return out
