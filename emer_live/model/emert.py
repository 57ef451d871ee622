"""EMERT: face ResNet-18 + eye/fixation LSTMs -> MAFD -> cross-attention (EMT) -> heads.

Paper sec. IV; layout of the official checkpoints in ``official_layouts/``. Data flow for a batch
of B windows::

    face (B, 8, 3, H, W) RGB in [0, 1] -> ResNet-18 -> (B, 8, 512) -> Linear -> (B, 8, 128)
    eye (B, 32, 39)                    -> LSTM x3   -> (B, 32, 128)
    fixation (B, 32, 2)                -> LSTM x3   -> (B, 32, 128)
    MAFD: per modality a specific MLP and the shared invariant MLP -> (B, 72, D) twice;
          a 3-way modality discriminator on each modality's time-averaged features
          (specific features directly, invariant features through gradient reversal)
    EMT:  queries = invariant tokens + pos_t, keys/values = specific tokens + pos_s;
          ``depth`` pre-norm cross-attention blocks; mean over (present) query tokens
    heads: one MLP per configured head on the pooled (B, D) feature

Missing modalities
------------------
``modality_mask`` (B, 3) bool, True = present (face, eye, fixation). For a masked modality of a
sample:

* its input is never read: the face encoder runs only on samples with a face, and the LSTM inputs
  are replaced by zeros (``torch.where``, so NaN/inf garbage cannot leak through a product);
* its specific tokens are removed from the keys/values of every attention (key-padding mask),
  so no query of that sample attends to them;
* its invariant (query) tokens are left out of the mean over tokens. Queries never attend to
  each other (cross-attention only), so they cannot influence the present queries either.

The outputs of a sample are therefore exactly those of the model restricted to its present
modalities, and a sample with one modality gives finite outputs. A sample with no modality at
all is refused (``ValueError``). The discriminator logits of masked modalities are still
returned (computed from the zeroed input) and ``emert_loss`` leaves them out.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .config import MODALITIES, EMERTConfig, head_kind
from .fallback import eligible_rows
from .layers import CrossTransformer, ResNet18, grad_reverse, mlp

__all__ = ["EMERT"]

_MAFD_SLOPE = 0.1   # LeakyReLU slope inside the MAFD MLPs (official: nn.LeakyReLU(0.1))
_HEAD_SLOPE = 0.01  # LeakyReLU slope inside the head MLPs (official: nn.LeakyReLU() default)


class EMERT(nn.Module):
    """The EMERT model.

    Parameters
    ----------
    config : EMERTConfig, optional
        Architecture and heads; the default has every head of DESIGN sec. 10.

    Notes
    -----
    ``forward(face, eye, fixation, *, modality_mask=None)`` returns a dict:

    * one entry per configured head: ``er7``/``fer7`` ``(B, 7)`` and ``er3``/``fer3`` ``(B, 3)``
      logits; ``er_va``/``fer_va`` ``(B, 2)`` = (valence, arousal); ``er_valence``,
      ``er_arousal``, ``fer_valence``, ``fer_arousal``, ``fer_intensity`` ``(B,)``;
    * ``features`` ``(B, D)``: the pooled transformer output the heads read;
    * ``disc_specific``, ``disc_invariant`` ``(B, 3, 3)``: discriminator logits
      ``[sample, modality, predicted modality]`` for the specific features and for the invariant
      features (the latter behind the gradient-reversal layer);
    * ``modalities_used`` ``(B, 3)`` bool.
    """

    def __init__(self, config: Optional[EMERTConfig] = None) -> None:
        super().__init__()
        cfg = config if config is not None else EMERTConfig()
        if not isinstance(cfg, EMERTConfig):
            raise TypeError(f"config must be an EMERTConfig, got {type(cfg).__name__}")
        self.config = cfg
        d_tok, dim = cfg.token_dim, cfg.model_dim

        # encoders (declared in the official state-dict order)
        self.face_encoder = ResNet18(with_fc=cfg.official_extras)
        self.eye_encoder = nn.LSTM(cfg.eye_features, d_tok, cfg.lstm_layers, batch_first=True)
        self.fixation_encoder = nn.LSTM(cfg.fixation_features, d_tok, cfg.lstm_layers, batch_first=True)
        if cfg.official_extras:
            # Held only so official checkpoints round-trip; never used in forward.
            self.unused_classifier = nn.Linear(ResNet18.out_dim + 2 * d_tok, 7)
        self.face_proj = nn.Linear(ResNet18.out_dim, d_tok)
        self.feature_dropout = nn.Dropout(cfg.feature_dropout)

        # MAFD
        self.specific = nn.ModuleDict(
            {m: mlp(d_tok, cfg.projection_widths, negative_slope=_MAFD_SLOPE) for m in MODALITIES})
        self.invariant = mlp(d_tok, cfg.projection_widths, negative_slope=_MAFD_SLOPE)
        self.discriminator = nn.Linear(dim, len(MODALITIES))

        # EMT
        self.fusion = CrossTransformer(
            dim, n_query=cfg.n_tokens, n_context=cfg.n_tokens, depth=cfg.transformer_depth,
            heads=cfg.attention_heads, head_dim=cfg.attention_head_dim, mlp_dim=cfg.ff_dim,
            dropout=cfg.transformer_dropout, embedding_dropout=cfg.embedding_dropout)

        # heads
        self.heads = nn.ModuleDict({
            h: mlp(dim, cfg.head_hidden + (head_kind(h)[1],), negative_slope=_HEAD_SLOPE) for h in cfg.heads})

        token_modality = torch.repeat_interleave(
            torch.arange(len(MODALITIES)), torch.tensor(cfg.tokens_per_modality))
        self.register_buffer("token_modality", token_modality, persistent=False)
        # ImageNet statistics (RGB) for face_normalization="imagenet"; constants, not weights
        self.register_buffer("face_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("face_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ input checks
    def check_inputs(self, face: Tensor, eye: Tensor, fixation: Tensor,
                      modality_mask: Optional[Tensor]) -> Tuple[int, Optional[Tensor]]:
        cfg = self.config
        for name, t, nd in (("face", face, 5), ("eye", eye, 3), ("fixation", fixation, 3)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.ndim != nd:
                raise ValueError(f"{name} must have {nd} dimensions, got shape {tuple(t.shape)}")
            if not t.is_floating_point():
                raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        b = face.shape[0]
        if face.shape[1:3] != (cfg.face_frames, 3) or min(face.shape[3:]) < 16:
            raise ValueError(f"face must be (B, {cfg.face_frames}, 3, H, W) with H, W >= 16 "
                             f"(the official models use 112x112), got {tuple(face.shape)}")
        if eye.shape[1:] != (cfg.eye_steps, cfg.eye_features):
            raise ValueError(f"eye must be (B, {cfg.eye_steps}, {cfg.eye_features}), got {tuple(eye.shape)}")
        if fixation.shape[1:] != (cfg.fixation_steps, cfg.fixation_features):
            raise ValueError(f"fixation must be (B, {cfg.fixation_steps}, {cfg.fixation_features}), "
                             f"got {tuple(fixation.shape)}")
        if eye.shape[0] != b or fixation.shape[0] != b:
            raise ValueError(f"batch sizes differ: face {b}, eye {eye.shape[0]}, fixation {fixation.shape[0]}")
        if modality_mask is None:
            return b, None
        if not isinstance(modality_mask, Tensor) or modality_mask.dtype != torch.bool \
                or tuple(modality_mask.shape) != (b, len(MODALITIES)):
            raise ValueError(f"modality_mask must be a bool tensor of shape ({b}, 3) "
                             f"(face, eye, fixation present), got "
                             f"{getattr(modality_mask, 'dtype', type(modality_mask).__name__)} "
                             f"{tuple(getattr(modality_mask, 'shape', ()))}")
        present = modality_mask.any(dim=1)
        if not bool(present.all()):
            bad = (~present).nonzero().flatten()[:5].tolist()
            raise ValueError(f"modality_mask: sample(s) {bad} have no modality present; "
                             "they cannot be scored - drop them before calling the model")
        if bool(modality_mask.all()):
            return b, None  # everything present: take the unmasked path
        return b, modality_mask.to(face.device)

    # ------------------------------------------------------------------ encoders
    def encode_frames(self, frames: Tensor) -> Tensor:
        """The face encoder on single frames ``(N, 3, H, W)`` (RGB in [0, 1]) -> ``(N, 512)``.

        Everything here is per frame (eval-mode batch norm uses its running statistics), so a
        frame's features do not depend on the window it is in: the live engine computes them
        once per frame and reuses them (:mod:`emer_live.model.frame_cache`)."""
        if self.config.face_normalization == "imagenet":
            frames = (frames - self.face_mean[0]) / self.face_std[0]
        if self.config.face_channel_order == "bgr":
            frames = frames.flip(1)
        return self.face_encoder(frames)

    def _encode_face(self, face: Tensor, present: Optional[Tensor]) -> Tensor:
        b, f = face.shape[:2]
        if present is None:
            return self.encode_frames(face.reshape(b * f, *face.shape[2:])).view(b, f, -1)
        idx = present.nonzero().flatten()
        out = face.new_zeros(b, f, ResNet18.out_dim)
        if idx.numel():
            sel = face.index_select(0, idx)
            feats = self.encode_frames(sel.reshape(idx.numel() * f, *face.shape[2:])).view(idx.numel(), f, -1)
            out = out.index_copy(0, idx, feats.to(out.dtype))
        return out

    def _encode_sequence(self, lstm: nn.LSTM, x: Tensor, present: Optional[Tensor]) -> Tensor:
        if present is not None:
            x = torch.where(present[:, None, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        return lstm(x)[0]

    # ------------------------------------------------------------------ forward
    def encode_face(self, face: Tensor, modality_mask: Optional[Tensor] = None) -> Tensor:
        """The face encoder's per-frame features ``(B, 8, 512)`` (zeros where the face is absent),
        to pass as ``face_features`` when the same faces are scored again with another mask."""
        return self._encode_face(face, None if modality_mask is None else modality_mask[:, 0])

    def forward_fused_and_face_only(self, face: Tensor, eye: Tensor, fixation: Tensor, *,
                                    modality_mask: Optional[Tensor] = None,
                                    face_features: Optional[Tensor] = None, one_pass: bool = False
                                    ) -> Tuple[Dict[str, Tensor], Optional[Dict[str, Tensor]], np.ndarray]:
        """The face fallback's two passes (:mod:`emer_live.model.fallback`), the face encoder run once:
        the fused outputs of every sample, and the outputs with the face alone of the samples that
        have a face and eyes or fixations.

        Returns ``(fused, face_only, rows)``: ``rows`` (numpy int) index the batch rows that
        ``face_only`` holds (``face_only`` is None when there are none). ``face_features``: as
        :meth:`forward` takes it (the face encoder is then not run at all). ``one_pass``: run both
        as one batch through the masked path (half the per-call overhead at batch 1, the live
        case; equal to the two calls up to float rounding).
        """
        b = face.shape[0]
        feats = self.encode_face(face, modality_mask) if face_features is None else face_features
        full = (modality_mask if modality_mask is not None
                else torch.ones(b, len(MODALITIES), dtype=torch.bool, device=face.device))
        rows = np.flatnonzero(eligible_rows(full.cpu().numpy()))
        if one_pass and len(rows):
            idx = torch.as_tensor(rows, device=face.device)
            face_mask = full.index_select(0, idx).clone()
            face_mask[:, 1:] = False
            both = self(torch.cat([face, face[idx]]), torch.cat([eye, eye[idx]]), torch.cat([fixation, fixation[idx]]),
                        modality_mask=torch.cat([full, face_mask]), face_features=torch.cat([feats, feats[idx]]))
            return {k: v[:b] for k, v in both.items()}, {k: v[b:] for k, v in both.items()}, rows
        fused = self(face, eye, fixation, modality_mask=modality_mask, face_features=feats)
        if not len(rows):
            return fused, None, rows
        idx = torch.as_tensor(rows, device=face.device)
        face_mask = full.index_select(0, idx).clone()
        face_mask[:, 1:] = False
        face_only = self(face[idx], eye[idx], fixation[idx], modality_mask=face_mask, face_features=feats[idx])
        return fused, face_only, rows

    def forward_features(self, face: Tensor, eye: Tensor, fixation: Tensor, *,
                         modality_mask: Optional[Tensor] = None,
                         face_features: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Everything up to the pooled feature (``face_features``: see :meth:`encode_face`).

        Returns a dict with ``pooled`` (B, D), ``tokens`` (B, 72, D) transformer output,
        ``token_mask`` (B, 72) bool, ``specific`` and ``invariant`` (B, 72, D) MAFD outputs
        (before positional embeddings), ``disc_specific``/``disc_invariant`` (B, 3, 3) and
        ``modalities_used`` (B, 3) bool.
        """
        b, mask = self.check_inputs(face, eye, fixation, modality_mask)
        if face_features is None:
            face_features = self._encode_face(face, None if mask is None else mask[:, 0])
        elif tuple(face_features.shape) != (b, face.shape[1], ResNet18.out_dim):
            raise ValueError(f"face_features must be (B, {face.shape[1]}, {ResNet18.out_dim}) as encode_face gives, "
                             f"got {tuple(face_features.shape)}")
        x = (
            self.face_proj(face_features),
            self._encode_sequence(self.eye_encoder, eye, None if mask is None else mask[:, 1]),
            self._encode_sequence(self.fixation_encoder, fixation, None if mask is None else mask[:, 2]),
        )
        x = [self.feature_dropout(t) for t in x]

        specific = [self.specific[m](t) for m, t in zip(MODALITIES, x)]
        invariant = [self.invariant(t) for t in x]
        lam = self.config.grl_lambda
        disc_specific = torch.stack([self.discriminator(s.mean(dim=1)) for s in specific], dim=1)
        disc_invariant = torch.stack(
            [self.discriminator(grad_reverse(v, lam).mean(dim=1)) for v in invariant], dim=1)

        spec = torch.cat(specific, dim=1)
        inv = torch.cat(invariant, dim=1)
        if mask is None:
            token_mask = torch.ones(b, self.config.n_tokens, dtype=torch.bool, device=inv.device)
            tokens = self.fusion(inv, spec)
            pooled = tokens.mean(dim=1)
        else:
            token_mask = mask[:, self.token_modality]
            tokens = self.fusion(inv, spec, key_mask=token_mask)
            zero = torch.zeros((), dtype=tokens.dtype, device=tokens.device)
            pooled = torch.where(token_mask.unsqueeze(-1), tokens, zero).sum(dim=1)
            pooled = pooled / token_mask.sum(dim=1, keepdim=True).to(tokens.dtype)
        used = (torch.ones(b, len(MODALITIES), dtype=torch.bool, device=tokens.device)
                if mask is None else mask)
        return {
            "pooled": pooled,
            "tokens": tokens,
            "token_mask": token_mask,
            "specific": spec,
            "invariant": inv,
            "disc_specific": disc_specific,
            "disc_invariant": disc_invariant,
            "modalities_used": used,
        }

    def forward_head(self, pooled: Tensor) -> Dict[str, Tensor]:
        """Apply every configured head to the pooled feature ``(B, D)``."""
        out: Dict[str, Tensor] = {}
        for name, head in self.heads.items():
            y = head(pooled)
            out[name] = y.squeeze(-1) if head_kind(name)[0] == "scalar" else y
        return out

    def forward(self, face: Tensor, eye: Tensor, fixation: Tensor, *,
                modality_mask: Optional[Tensor] = None, face_features: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Run the model; see the class notes for the returned dict.

        Parameters
        ----------
        face : Tensor (B, 8, 3, H, W)
            Face crops, RGB, float in [0, 1] (112x112 for the official weights).
        eye : Tensor (B, 32, 39)
            Normalised eye features (DESIGN sec. 7).
        fixation : Tensor (B, 32, 2)
            Normalised fixation positions (DESIGN sec. 8).
        modality_mask : Tensor (B, 3) bool, optional
            Which of face, eye, fixation are present per sample; ``None`` = all.
        face_features : Tensor (B, 8, 512), optional
            The face encoder's output for these faces (:meth:`encode_face`), reused instead of
            running the ResNet again.
        """
        feats = self.forward_features(face, eye, fixation, modality_mask=modality_mask, face_features=face_features)
        out = self.forward_head(feats["pooled"])
        out["features"] = feats["pooled"]
        out["disc_specific"] = feats["disc_specific"]
        out["disc_invariant"] = feats["disc_invariant"]
        out["modalities_used"] = feats["modalities_used"]
        return out

    # ------------------------------------------------------------------ helpers
    def num_parameters(self) -> int:
        """Number of trainable + frozen parameters (buffers excluded)."""
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"heads={list(self.config.heads)}, dim={self.config.model_dim}"
