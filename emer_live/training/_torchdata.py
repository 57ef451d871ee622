"""torch ``Dataset`` and collate over :class:`~emer_live.training.dataset.Samples` (imports torch)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .dataset import MODALITIES, Samples, head_targets, modality_mask, normalize_samples

__all__ = ["WindowDataset", "collate"]


class WindowDataset(Dataset):
    """Normalised model inputs, modality masks and targets of a sample set."""

    def __init__(self, samples: Samples, *, heads: Sequence[str], norm_stats: Dict[str, Any],
                 modalities: Sequence[str] = MODALITIES, face_override: Optional[np.ndarray] = None) -> None:
        self.samples = samples
        self.heads = tuple(heads)
        eye, fix = normalize_samples(samples, norm_stats)
        self.eye = torch.from_numpy(eye)
        self.fixation = torch.from_numpy(fix)
        self.mask = torch.from_numpy(modality_mask(samples, modalities, norm_stats))
        self.use_face = "face" in modalities
        self.targets = {h: torch.from_numpy(np.ascontiguousarray(t)) for h, t in head_targets(samples, heads).items()}
        if face_override is not None and len(face_override) != len(samples):
            raise ValueError(f"face_override has {len(face_override)} rows for {len(samples)} samples")
        self.face_override = face_override
        self._zero_face: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.samples)

    def _face(self, i: int) -> torch.Tensor:
        if self.face_override is not None:
            return torch.from_numpy(np.asarray(self.face_override[i], np.float32))
        if not self.use_face or not bool(self.mask[i, 0]):
            if self._zero_face is None:
                self._zero_face = torch.zeros(8, 3, 112, 112)
            return self._zero_face
        return torch.from_numpy(self.samples.face(i))

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        item = {"face": self._face(i), "eye": self.eye[i], "fixation": self.fixation[i],
                "modality_mask": self.mask[i], "index": torch.tensor(i, dtype=torch.int64)}
        for h, t in self.targets.items():
            item[h] = t[i]
        return item


def collate(items: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Stack item dicts into one batch dict."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
