"""EMERT configuration, head catalogue and label maps (no torch needed).

The configuration is a frozen dataclass validated in ``__post_init__``; it is stored in every
checkpoint as a plain dict (:meth:`EMERTConfig.to_dict`) and rebuilt with
:meth:`EMERTConfig.from_dict`. :func:`official_config` gives the configurations that reproduce
the three layouts of the official EMERT checkpoints (``discrete``, ``valence``/``arousal``,
``intensity``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigError

__all__ = [
    "EMERTConfig",
    "HEADS",
    "HEAD_KINDS",
    "EMOTIONS_7",
    "EMOTIONS_3",
    "VA_COMPONENTS",
    "MODALITIES",
    "OFFICIAL_VARIANTS",
    "official_config",
    "default_label_maps",
    "head_kind",
    "head_group",
]

#: The modalities in token order (face tokens first, then eye, then fixation).
MODALITIES: Tuple[str, str, str] = ("face", "eye", "fixation")

#: 7-class emotion names in index order (DESIGN sec. 10).
EMOTIONS_7: Tuple[str, ...] = ("happiness", "sadness", "fear", "surprise", "disgust", "anger", "neutral")
#: 3-class names in index order (happiness, surprise -> positive; neutral -> neutral; rest negative).
EMOTIONS_3: Tuple[str, ...] = ("positive", "negative", "neutral")
#: Components of a ``*_va`` head, in output order.
VA_COMPONENTS: Tuple[str, str] = ("valence", "arousal")

#: Every head the model can carry -> (kind, number of outputs). Kinds: ``class`` (logits over
#: classes), ``va`` (valence, arousal in [-1, 1]), ``scalar`` (one regression value, output
#: shape ``(B,)``). The single-valued ``*_valence`` / ``*_arousal`` heads exist because the
#: official regression checkpoints predict valence or arousal alone.
HEAD_KINDS: Dict[str, Tuple[str, int]] = {
    "er7": ("class", 7),
    "er3": ("class", 3),
    "er_va": ("va", 2),
    "er_valence": ("scalar", 1),
    "er_arousal": ("scalar", 1),
    "fer7": ("class", 7),
    "fer3": ("class", 3),
    "fer_va": ("va", 2),
    "fer_valence": ("scalar", 1),
    "fer_arousal": ("scalar", 1),
    "fer_intensity": ("scalar", 1),
}
HEADS: Tuple[str, ...] = tuple(HEAD_KINDS)

#: The heads of a default (non-official) model: every task of DESIGN sec. 10.
DEFAULT_HEADS: Tuple[str, ...] = ("er7", "er3", "er_va", "fer7", "fer3", "fer_va", "fer_intensity")

OFFICIAL_VARIANTS: Tuple[str, ...] = ("discrete", "valence", "arousal", "intensity")

_CHANNEL_ORDERS = ("rgb", "bgr")


def head_kind(name: str) -> Tuple[str, int]:
    """Return ``(kind, n_outputs)`` of head ``name`` (see :data:`HEAD_KINDS`)."""
    try:
        return HEAD_KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown head {name!r}; known heads: {', '.join(HEADS)}") from None


def head_group(name: str) -> str:
    """Return ``'er'`` or ``'fer'``: which task loss (L_er or L_fer) head ``name`` belongs to."""
    head_kind(name)
    return "fer" if name.startswith("fer") else "er"


def _int_tuple(value: Any, field: str) -> Tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"EMERTConfig.{field} must be a sequence of positive ints, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"EMERTConfig.{field} must hold positive ints, got {value!r}")
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class EMERTConfig:
    """Architecture of one EMERT model.

    Parameters
    ----------
    heads : tuple of str
        Output heads, in order (names from :data:`HEAD_KINDS`). ``er_va`` excludes
        ``er_valence``/``er_arousal`` (same for ``fer``).
    token_dim : int
        Width of every modality's tokens before MAFD: the face projection (512 -> token_dim)
        and the hidden size of both LSTMs. Official: 128.
    lstm_layers : int
        Layers of the eye and fixation LSTMs. Official: 3.
    eye_features, fixation_features : int
        Input features per time step (DESIGN sec. 7 and 8). Official: 39 and 2.
    face_frames, eye_steps, fixation_steps : int
        Tokens per modality (8 + 32 + 32 = 72 in the paper); fixed because the positional
        embeddings are learned per token.
    projection_widths : tuple of int
        Layer widths of every MAFD MLP (one shared modality-invariant MLP, one modality-specific
        MLP per modality): ``token_dim -> w0 -> LeakyReLU(0.1) -> w1 ...``. The last width is the
        transformer width. Official discrete: ``(64, 32)``; regression and intensity: ``(64,)``.
    transformer_depth : int
        Cross-attention blocks. Official: 2.
    attention_heads, attention_head_dim : int
        Heads and per-head width of the cross-attention (inner width = product). Official: 8, 64.
    mlp_dim : int or None
        Hidden width of the transformer's GELU MLP; ``None`` = the transformer width (official).
    head_hidden : tuple of int
        Hidden widths of every output head (LeakyReLU(0.01) between layers); ``()`` = one linear
        layer. Official discrete/intensity: ``()``; regression: ``(32, 16, 8)``.
    feature_dropout, embedding_dropout, transformer_dropout : float
        Dropout on the encoder tokens (official 0.5), after adding the positional embeddings
        (0.1), and inside the attention output / MLP (0.5). Inactive in eval mode.
    grl_lambda : float
        Gradient-reversal factor on the invariant path to the modality discriminator.
    face_channel_order : {'rgb', 'bgr'}
        Channel order the face-encoder weights expect. ``forward`` always takes RGB and flips the
        channels itself when this is ``'bgr'`` (the official checkpoints were trained on OpenCV
        BGR images).
    face_normalization : {'imagenet', 'none'}
        What the face encoder does to its RGB [0, 1] input first: ``'imagenet'`` subtracts the
        ImageNet mean and divides by its std per channel (the usual ResNet input; default for
        models trained here), ``'none'`` feeds [0, 1] as is (the official checkpoints).
    official_extras : bool
        Also carry the two parameter sets the official checkpoints hold but never use in their
        forward pass (the ResNet's ImageNet ``fc`` 512 -> 1000 and the feature extractor's
        768 -> 7 ``classifier``), so that an imported official checkpoint round-trips exactly.
        They take no part in ``forward``.
    """

    heads: Tuple[str, ...] = DEFAULT_HEADS
    token_dim: int = 128
    lstm_layers: int = 3
    eye_features: int = 39
    fixation_features: int = 2
    face_frames: int = 8
    eye_steps: int = 32
    fixation_steps: int = 32
    projection_widths: Tuple[int, ...] = (64, 32)
    transformer_depth: int = 2
    attention_heads: int = 8
    attention_head_dim: int = 64
    mlp_dim: Optional[int] = None
    head_hidden: Tuple[int, ...] = ()
    feature_dropout: float = 0.5
    embedding_dropout: float = 0.1
    transformer_dropout: float = 0.5
    grl_lambda: float = 1.0
    face_channel_order: str = "rgb"
    face_normalization: str = "imagenet"
    official_extras: bool = False

    def __post_init__(self) -> None:
        # Normalise sequences to tuples (from_dict hands lists) before validating.
        if isinstance(self.heads, str) or not isinstance(self.heads, Sequence):
            raise ConfigError(f"EMERTConfig.heads must be a sequence of head names, got {self.heads!r}")
        object.__setattr__(self, "heads", tuple(self.heads))
        object.__setattr__(self, "projection_widths", _int_tuple(self.projection_widths, "projection_widths"))
        object.__setattr__(self, "head_hidden", _int_tuple(self.head_hidden, "head_hidden"))

        if not self.heads:
            raise ConfigError("EMERTConfig.heads is empty; configure at least one head")
        for h in self.heads:
            if not isinstance(h, str) or h not in HEAD_KINDS:
                raise ConfigError(f"EMERTConfig.heads: unknown head {h!r}; known heads: {', '.join(HEADS)}")
        if len(set(self.heads)) != len(self.heads):
            raise ConfigError(f"EMERTConfig.heads lists a head twice: {self.heads!r}")
        for fam in ("er", "fer"):
            if f"{fam}_va" in self.heads and ({f"{fam}_valence", f"{fam}_arousal"} & set(self.heads)):
                raise ConfigError(
                    f"EMERTConfig.heads: {fam}_va already predicts valence and arousal; "
                    f"drop {fam}_valence/{fam}_arousal")
        for name in ("token_dim", "lstm_layers", "eye_features", "fixation_features", "face_frames",
                     "eye_steps", "fixation_steps", "transformer_depth", "attention_heads",
                     "attention_head_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"EMERTConfig.{name} must be a positive int, got {v!r}")
        if not self.projection_widths:
            raise ConfigError("EMERTConfig.projection_widths is empty; give at least the transformer width")
        if self.mlp_dim is not None and (isinstance(self.mlp_dim, bool) or not isinstance(self.mlp_dim, int)
                                         or self.mlp_dim <= 0):
            raise ConfigError(f"EMERTConfig.mlp_dim must be a positive int or None, got {self.mlp_dim!r}")
        for name in ("feature_dropout", "embedding_dropout", "transformer_dropout"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
                raise ConfigError(f"EMERTConfig.{name} must be a float in [0, 1), got {v!r}")
            object.__setattr__(self, name, float(v))
        if isinstance(self.grl_lambda, bool) or not isinstance(self.grl_lambda, (int, float)) \
                or not math.isfinite(self.grl_lambda) or self.grl_lambda < 0:
            raise ConfigError(f"EMERTConfig.grl_lambda must be a float >= 0, got {self.grl_lambda!r}")
        object.__setattr__(self, "grl_lambda", float(self.grl_lambda))
        if self.face_channel_order not in _CHANNEL_ORDERS:
            raise ConfigError(
                f"EMERTConfig.face_channel_order must be 'rgb' or 'bgr', got {self.face_channel_order!r}")
        if self.face_normalization not in ("imagenet", "none"):
            raise ConfigError(f"EMERTConfig.face_normalization must be 'imagenet' or 'none', "
                              f"got {self.face_normalization!r}")
        if not isinstance(self.official_extras, bool):
            raise ConfigError(f"EMERTConfig.official_extras must be a bool, got {self.official_extras!r}")

    # ---- derived ----
    @property
    def model_dim(self) -> int:
        """Width of the MAFD outputs and of the transformer (last of ``projection_widths``)."""
        return self.projection_widths[-1]

    @property
    def ff_dim(self) -> int:
        """Hidden width of the transformer MLP."""
        return self.mlp_dim if self.mlp_dim is not None else self.model_dim

    @property
    def tokens_per_modality(self) -> Tuple[int, int, int]:
        """Tokens of (face, eye, fixation)."""
        return (self.face_frames, self.eye_steps, self.fixation_steps)

    @property
    def n_tokens(self) -> int:
        """All tokens (72 in the paper)."""
        return sum(self.tokens_per_modality)

    # ---- (de)serialisation ----
    def to_dict(self) -> Dict[str, Any]:
        """Plain dict (lists, ints, floats, str, bool, None) for checkpoints and JSON."""
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EMERTConfig":
        """Rebuild from :meth:`to_dict` output; unknown keys raise ``ConfigError``.

        Keys that are absent take their defaults (a checkpoint always writes all of them).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"EMERTConfig.from_dict needs a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"EMERTConfig: unknown field(s) {', '.join(map(repr, unknown))}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "EMERTConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def official_config(variant: str, *, task: str = "er", n_classes: int = 7) -> EMERTConfig:
    """Configuration reproducing the layout of an official EMERT checkpoint.

    Parameters
    ----------
    variant : {'discrete', 'valence', 'arousal', 'intensity'}
        ``discrete``: MAFD widths (64, 32), one linear classification head (``cls_head``).
        ``valence``/``arousal``: MAFD width 64, one MLP head 64-32-16-8-1 (``cls_head``).
        ``intensity``: MAFD width 64, a linear 7-class head (``cls_head_e``) and a linear
        intensity head (``cls_head_in``).
    task : {'er', 'fer'}
        Which label family the discrete/valence/arousal head predicts (the official code
        trains one label column per checkpoint and does not say which); the intensity variant
        is always FER (``fer7`` + ``fer_intensity``).
    n_classes : {7, 3}
        Classes of the discrete head (the official checkpoints have 7).
    """
    if variant not in OFFICIAL_VARIANTS:
        raise ConfigError(f"unknown official variant {variant!r}; choose one of {', '.join(OFFICIAL_VARIANTS)}")
    if task not in ("er", "fer"):
        raise ConfigError(f"task must be 'er' or 'fer', got {task!r}")
    common = dict(face_channel_order="bgr", face_normalization="none", official_extras=True)
    if variant == "discrete":
        if n_classes not in (7, 3):
            raise ConfigError(f"the discrete variant has 7 or 3 classes, got {n_classes!r}")
        return EMERTConfig(heads=(f"{task}{n_classes}",), projection_widths=(64, 32), head_hidden=(), **common)
    if variant in ("valence", "arousal"):
        return EMERTConfig(heads=(f"{task}_{variant}",), projection_widths=(64,), head_hidden=(32, 16, 8),
                           **common)
    return EMERTConfig(heads=("fer7", "fer_intensity"), projection_widths=(64,), head_hidden=(), **common)


def default_label_maps(heads: Sequence[str], *, class_names_7: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Label maps for ``heads``: class names in index order, or VA component names.

    Scalar heads (``*_valence``, ``*_arousal``, ``fer_intensity``) get no entry.
    """
    names7 = list(class_names_7) if class_names_7 is not None else list(EMOTIONS_7)
    if len(names7) != 7 or len(set(names7)) != 7 or not all(isinstance(n, str) and n for n in names7):
        raise ConfigError(f"need 7 distinct non-empty class names, got {names7!r}")
    out: Dict[str, Any] = {}
    for h in heads:
        kind, n = head_kind(h)
        if kind == "class":
            out[h] = list(names7) if n == 7 else list(EMOTIONS_3)
        elif kind == "va":
            out[h] = list(VA_COMPONENTS)
    return out
