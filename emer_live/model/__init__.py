"""EMERT in PyTorch: model, loss, checkpoints, official-checkpoint import, evaluation metrics.

Public surface (imported lazily, so ``emer_live.model.commands`` and ``emer_live.model.metrics``
import without torch)::

    from emer_live.model import (EMERT, EMERTConfig, official_config, emert_loss,
                                 save_checkpoint, load_checkpoint, LoadedModel, select_device,
                                 import_official)
    from emer_live.model import metrics
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EMERTConfig": "config",
    "official_config": "config",
    "default_label_maps": "config",
    "HEADS": "config",
    "HEAD_KINDS": "config",
    "EMOTIONS_7": "config",
    "EMOTIONS_3": "config",
    "MODALITIES": "config",
    "EMERT": "emert",
    "emert_loss": "loss",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "LoadedModel": "checkpoint",
    "select_device": "checkpoint",
    "identity_norm_stats": "checkpoint",
    "import_official": "official",
    "OfficialImport": "official",
    "official_state_dict": "official",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'emer_live.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
