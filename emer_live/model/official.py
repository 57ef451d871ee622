"""Import the official EMERT checkpoints (one per task and fold) into :class:`EMERT`.

The official state dicts use the names of the authors' code (``subnet.f_extractor.*`` for the
ResNet-18, ``subnet.e_lstm``/``subnet.v_lstm`` for the eye/fixation LSTMs, ``proj_v1``,
``specific_projection_v/a/l`` for face/eye/fixation, ``invariant_projection``, ``distriminator``
[sic], ``transformer.*``, ``cls_head``/``cls_head_e``/``cls_head_in``). :func:`official_key`
maps each of this model's keys to its official name; the import is strict: every official key
must be used, none may be missing, every shape must match, and the first problem is named.

What the official weights expect as input (from the authors' data loader): face crops read with
OpenCV, i.e. **BGR**, scaled to [0, 1] without mean/std normalisation (the imported config sets
``face_channel_order='bgr'``, and ``forward`` still takes RGB); eye features = the 39 columns of
the EMER dataset's exported eye-movement table, and fixation = its "Gaze point X/Y" columns in
display pixels, both **unnormalised** (the imported checkpoint carries identity norm stats).
Live features from this app follow DESIGN sec. 7/8 and differ from those columns, so imported
models are references for the paper's protocol rather than calibrated live models.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from torch import Tensor

from ..errors import CheckpointError, ConfigError
from ._io import compare_layout, first_non_finite, is_tensor_mapping, read_file, safe_torch_load
from .checkpoint import FORMAT_NAME, identity_norm_stats, save_checkpoint
from .config import OFFICIAL_VARIANTS, EMERTConfig, default_label_maps, official_config
from .emert import EMERT

__all__ = ["OfficialImport", "import_official", "official_key", "official_head_names", "official_state_dict",
           "unwrap_state_dict", "guess_variant"]

_MODALITY_SUFFIX = {"face": "v", "eye": "a", "fixation": "l"}
_XF = "transformer.CrossTransformerEncoder.layers"

# (our key pattern, official template); applied in order, first match wins.
_RULES: Sequence[Tuple[str, str]] = (
    (r"face_encoder\.(.+)", r"subnet.f_extractor.\1"),
    (r"eye_encoder\.(.+)", r"subnet.e_lstm.\1"),
    (r"fixation_encoder\.(.+)", r"subnet.v_lstm.\1"),
    (r"unused_classifier\.(.+)", r"subnet.classifier.\1"),
    (r"face_proj\.(.+)", r"proj_v1.\1"),
    (r"specific\.face\.(.+)", r"specific_projection_v.\1"),
    (r"specific\.eye\.(.+)", r"specific_projection_a.\1"),
    (r"specific\.fixation\.(.+)", r"specific_projection_l.\1"),
    (r"invariant\.(.+)", r"invariant_projection.\1"),
    (r"discriminator\.(.+)", r"distriminator.0.\1"),
    (r"fusion\.pos_context", r"transformer.pos_embedding_s"),
    (r"fusion\.pos_query", r"transformer.pos_embedding_t"),
    (r"fusion\.blocks\.(\d+)\.attn\.(norm_[qkv])\.(.+)", _XF + r".\1.0.\2.\3"),
    (r"fusion\.blocks\.(\d+)\.attn\.(to_[qkv])\.(.+)", _XF + r".\1.0.fn.\2.\3"),
    (r"fusion\.blocks\.(\d+)\.attn\.to_out\.(.+)", _XF + r".\1.0.fn.to_out.0.\2"),
    (r"fusion\.blocks\.(\d+)\.ff\.norm\.(.+)", _XF + r".\1.1.norm.\2"),
    (r"fusion\.blocks\.(\d+)\.ff\.fc1\.(.+)", _XF + r".\1.1.fn.net.0.\2"),
    (r"fusion\.blocks\.(\d+)\.ff\.fc2\.(.+)", _XF + r".\1.1.fn.net.3.\2"),
)
_COMPILED = [(re.compile(p + r"\Z"), t) for p, t in _RULES]


def official_head_names(config: EMERTConfig) -> Dict[str, str]:
    """Map this config's heads onto the official head module names.

    One head -> ``cls_head``; ``(fer7, fer_intensity)`` -> ``cls_head_e``, ``cls_head_in``.
    """
    heads = tuple(config.heads)
    if len(heads) == 1:
        return {heads[0]: "cls_head"}
    if set(heads) == {"fer7", "fer_intensity"}:
        return {"fer7": "cls_head_e", "fer_intensity": "cls_head_in"}
    raise ConfigError(f"heads {list(heads)} have no official counterpart (official models have one head, "
                      "or fer7 + fer_intensity)")


def official_key(key: str, head_names: Mapping[str, str]) -> str:
    """The official name of one of this model's state-dict keys."""
    m = re.match(r"heads\.([a-z0-9_]+)\.(.+)\Z", key)
    if m:
        if m.group(1) not in head_names:
            raise KeyError(f"head {m.group(1)!r} has no official name")
        return f"{head_names[m.group(1)]}.{m.group(2)}"
    for rx, template in _COMPILED:
        m = rx.match(key)
        if m:
            return m.expand(template)
    raise KeyError(f"no official name for key {key!r}")


def _official_layout(model: EMERT) -> "OrderedDict[str, Tuple[str, Tuple[int, ...]]]":
    """official key -> (our key, shape), in this model's state-dict order."""
    names = official_head_names(model.config)
    out: "OrderedDict[str, Tuple[str, Tuple[int, ...]]]" = OrderedDict()
    for k, v in model.state_dict().items():
        ok = official_key(k, names)
        if ok in out:  # pragma: no cover - guards the rule table
            raise RuntimeError(f"official key {ok!r} produced twice")
        out[ok] = (k, tuple(v.shape))
    return out


def official_state_dict(model: EMERT) -> "OrderedDict[str, Tensor]":
    """This model's weights under the official key names (needs ``official_extras=True``).

    The result loads into the authors' model class with ``load_state_dict(strict=True)``.
    """
    if not model.config.official_extras:
        raise ConfigError("official_state_dict needs a model built with official_extras=True "
                          "(the official layout holds the unused ResNet fc and 768->7 classifier)")
    names = official_head_names(model.config)
    return OrderedDict((official_key(k, names), v) for k, v in model.state_dict().items())


def unwrap_state_dict(obj: Any) -> Dict[str, Tensor]:
    """Find the state dict in what ``torch.load`` returned and strip ``module.`` prefixes.

    Accepts a raw state dict, or one nested under ``state_dict``, ``model_state_dict``,
    ``model``, ``net``, ``state`` or ``weights`` (other entries such as ``epoch`` are ignored).
    Raises ``ValueError`` when no state dict is found.
    """
    for _ in range(3):
        if is_tensor_mapping(obj):
            break
        if not isinstance(obj, Mapping):
            raise ValueError(f"expected a state dict (a dict of tensors), got {type(obj).__name__}")
        for key in ("state_dict", "model_state_dict", "model", "net", "state", "weights"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        else:
            keys = ", ".join(repr(k) for k in list(obj)[:8])
            raise ValueError(f"no state dict found (top-level keys: {keys or 'none'})")
    if not is_tensor_mapping(obj):
        raise ValueError("no state dict found")
    sd = dict(obj)
    while sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def guess_variant(state: Mapping[str, Tensor]) -> Optional[str]:
    """Which official variant a state dict looks like (``'valence/arousal'`` when regression)."""
    if "cls_head_in.0.weight" in state:
        return "intensity"
    if "cls_head.6.weight" in state:
        return "valence/arousal"
    if "cls_head.0.weight" in state and "cls_head.2.weight" not in state:
        return "discrete"
    return None


@dataclass
class OfficialImport:
    """An official checkpoint converted into an :class:`EMERT` (eval mode, CPU)."""

    model: EMERT
    config: EMERTConfig
    label_maps: Dict[str, Any]
    norm_stats: Dict[str, Any]
    provenance: Dict[str, Any]

    def save(self, path: Union[str, Path], *, overwrite: bool = False) -> str:
        """Write it as an emer_live checkpoint; returns the checkpoint id."""
        return save_checkpoint(path, self.model, norm_stats=self.norm_stats, provenance=self.provenance,
                               label_maps=self.label_maps, overwrite=overwrite)


def import_official(in_path: Union[str, Path], *, variant: str, task: str = "er",
                    class_names: Optional[Sequence[str]] = None,
                    fold: Optional[int] = None) -> OfficialImport:
    """Convert an official EMERT checkpoint.

    Parameters
    ----------
    in_path : str or Path
        The official ``.pth`` (a state dict, possibly wrapped or with ``module.`` prefixes).
    variant : {'discrete', 'valence', 'arousal', 'intensity'}
        Which official model it is (valence and arousal share a layout, so it cannot be guessed).
    task : {'er', 'fer'}
        Label family of the discrete/valence/arousal head (``er7``/``er_valence``... or
        ``fer7``/...); the intensity variant is always ``fer7`` + ``fer_intensity``.
    class_names : sequence of 7 str, optional
        Class order of the 7-class head. The authors do not publish their label indices; the
        default is DESIGN's order (happiness, sadness, fear, surprise, disgust, anger, neutral),
        recorded as an assumption in the provenance.
    fold : int, optional
        Cross-validation fold (set1..set5) the file belongs to, for the provenance.

    Returns
    -------
    OfficialImport

    Raises
    ------
    CheckpointError
        Unreadable/foreign file, or a state dict that does not match the variant's layout
        exactly (the message names the first missing, unexpected or mis-shaped key).
    ConfigError
        Invalid ``variant``/``task``/``class_names``.
    """
    if variant not in OFFICIAL_VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {', '.join(OFFICIAL_VARIANTS)}")
    if task not in ("er", "fer"):
        raise ConfigError(f"task must be 'er' or 'fer', got {task!r}")
    if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int) or fold < 1):
        raise ConfigError(f"fold must be a positive int, got {fold!r}")
    path = Path(in_path)
    data, sha = read_file(path)
    raw = safe_torch_load(path, data)
    if isinstance(raw, Mapping) and raw.get("format") == FORMAT_NAME:
        raise CheckpointError(f"{path}: already an emer_live checkpoint; load it with load_checkpoint")
    try:
        state = unwrap_state_dict(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: not an official EMERT checkpoint: {exc}") from None

    n_classes = 7
    if variant == "discrete" and "cls_head.0.weight" in state and state["cls_head.0.weight"].ndim == 2 \
            and state["cls_head.0.weight"].shape[0] == 3:
        n_classes = 3
    config = official_config(variant, task=task, n_classes=n_classes)
    label_maps = default_label_maps(config.heads, class_names_7=class_names)
    model = EMERT(config)
    layout = _official_layout(model)
    problem = compare_layout(OrderedDict((k, shape) for k, (_, shape) in layout.items()), state)
    if problem:
        guess = guess_variant(state)
        hint = ""
        if guess is not None and variant not in guess.split("/"):
            hint = f" (the file looks like the {guess!r} variant)"
        raise CheckpointError(f"{path}: does not match the official EMERT {variant!r} layout: {problem}{hint}")
    bad = first_non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path}: official weight {bad!r} holds NaN or inf")

    ours = model.state_dict()
    mapped = {}
    for ok, (k, _) in layout.items():
        t = state[ok]
        target = ours[k]
        if t.is_floating_point() != target.is_floating_point():
            raise CheckpointError(f"{path}: key {ok!r} has dtype {t.dtype}, expected {target.dtype}")
        mapped[k] = t.detach().to(dtype=target.dtype).contiguous()
    model.load_state_dict(mapped, strict=True)
    model.eval()

    notes = [
        "Imported from an official EMERT checkpoint (github.com/kejun1/EMER).",
        "Face weights expect OpenCV BGR crops in [0, 1] (config face_channel_order='bgr'; forward takes RGB).",
        "Eye/fixation inputs of the official model are the raw columns of the EMER dataset export "
        "(norm stats here are identity); the live 39-d features differ from them.",
    ]
    if class_names is None and any(h in config.heads for h in ("er7", "fer7")):
        notes.append("7-class order assumed (DESIGN order); the authors do not publish their label indices.")
    provenance: Dict[str, Any] = {
        "source": "official EMERT checkpoint",
        "source_file": path.name,
        "source_sha256": sha,
        "official_variant": variant,
        "task": task if variant != "intensity" else "fer",
        "fold": fold,
        "imported_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "data": "EMER dataset, trained by the authors (their 5-fold split set1..set5)",
        "notes": notes,
    }
    return OfficialImport(model=model, config=config, label_maps=label_maps,
                          norm_stats=identity_norm_stats(config), provenance=provenance)
