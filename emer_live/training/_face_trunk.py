"""Frozen face-encoder trunk with cached activations (a CPU training speed-up).

With ``--face-train layer4`` the ResNet-18 stem and stages 1-3 are frozen (``requires_grad``
False, batch-norm in eval mode) and only stage 4 (plus everything after the face encoder)
trains; with ``--face-train none`` the whole ResNet is frozen. A frozen part is a fixed function
of the input, so its output for each training sample is computed once, stored (float16), and fed
to the trainable rest during training. This is the same computation as running the frozen
layers every step (up to the float16 rounding of the stored activations) at a fraction of the
cost. The model's weights and state-dict layout are never changed: the face encoder's
``forward`` is redirected on the instance while training and restored afterwards.

Because :class:`~emer_live.model.EMERT` takes face *images* ``(B, 8, 3, H, W)``, the stored
activations are packed into that shape (``C*h*w`` values zero-padded to ``3*H*W``) and unpacked
by the redirected ``forward``.
"""

from __future__ import annotations

import math
import types
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FACE_TRAIN_CHOICES", "FaceTrunk"]

FACE_TRAIN_CHOICES = ("all", "layer4", "none")


class FaceTrunk:
    """Freeze part of ``model.face_encoder`` and serve its cached output.

    Parameters
    ----------
    model : EMERT
    mode : {'all', 'layer4', 'none'}
        What of the ResNet trains: everything (no caching), stage 4 only, or nothing.
    """

    def __init__(self, model: nn.Module, mode: str) -> None:
        if mode not in FACE_TRAIN_CHOICES:
            raise ValueError(f"face-train mode must be one of {FACE_TRAIN_CHOICES}, got {mode!r}")
        self.model = model
        self.mode = mode
        self.encoder = model.face_encoder
        self.bgr = getattr(model.config, "face_channel_order", "rgb") == "bgr"
        self._shape: Optional[tuple] = None       # (C, h, w) of the cached activation
        self._pack_hw: Optional[int] = None
        self._active = False
        if mode == "all":
            return
        enc = self.encoder
        frozen = [enc.conv1, enc.bn1, enc.layer1, enc.layer2, enc.layer3]
        if mode == "none":
            frozen.append(enc.layer4)
        self.frozen = frozen
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)

    @property
    def caching(self) -> bool:
        return self.mode != "all"

    def set_train_mode(self) -> None:
        """Call after ``model.train()``: frozen batch-norms stay in eval mode."""
        if self.caching:
            for m in self.frozen:
                m.eval()

    # ------------------------------------------------------------------ prefix
    def _model_input(self, x: Tensor) -> Tensor:
        """What EMERT does to face images before its encoder (normalisation, channel order)."""
        if getattr(self.model.config, "face_normalization", "none") == "imagenet":
            x = (x - self.model.face_mean) / self.model.face_std
        if self.bgr:
            x = x.flip(1)
        return x

    def _unmodel_input(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`_model_input`, so the model's own preprocessing restores ``x``."""
        if self.bgr:
            x = x.flip(1)
        if getattr(self.model.config, "face_normalization", "none") == "imagenet":
            x = x * self.model.face_std + self.model.face_mean
        return x

    def _prefix(self, x: Tensor) -> Tensor:
        enc = self.encoder
        x = self._model_input(x)
        x = enc.maxpool(enc.relu(enc.bn1(enc.conv1(x))))
        x = enc.layer3(enc.layer2(enc.layer1(x)))
        if self.mode == "none":
            x = torch.flatten(F.adaptive_avg_pool2d(enc.layer4(x), 1), 1)
        return x

    @torch.no_grad()
    def precompute(self, faces: np.ndarray, rows: np.ndarray, *, device: torch.device,
                   batch_frames: int = 64, progress=None) -> np.ndarray:
        """Packed frozen-prefix activations for ``faces[rows]`` (rows ``-1``: zeros).

        Parameters
        ----------
        faces : array (M, 8, 3, H, W)
            The face bank: uint8 (0..255, divided by 255 here) or float RGB in [0, 1].
        rows : int array (N,)
            Bank row per sample, ``-1`` = no face.

        Returns
        -------
        float16 array (N, 8, 3, P, P)
        """
        if not self.caching:
            raise RuntimeError("precompute() is only for a frozen trunk")
        was_training = [m.training for m in self.frozen]
        for m in self.frozen:
            m.eval()
        n = len(rows)
        used = np.flatnonzero(rows >= 0)
        out: Optional[np.ndarray] = None
        frames_per_sample = faces.shape[1] if faces is not None else 8
        per = max(1, batch_frames // frames_per_sample)
        for start in range(0, len(used), per):
            sel = used[start:start + per]
            raw = np.asarray(faces[rows[sel]])
            x = torch.from_numpy(raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else
                                 raw.astype(np.float32)).to(device)
            b, f = x.shape[:2]
            act = self._prefix(x.reshape(b * f, *x.shape[2:]))
            packed = self._pack(act).view(b, f, 3, self._pack_hw, self._pack_hw)
            if out is None:
                self._verify(x[:1], packed[:1])
            if out is None:
                out = np.zeros((n, f, 3, self._pack_hw, self._pack_hw), np.float16)
            out[sel] = packed.float().cpu().numpy().astype(np.float16)
            if progress:
                progress(min(start + per, len(used)), len(used))
        for m, t in zip(self.frozen, was_training):
            m.train(t)
        if out is None:  # no face at all
            side = self._pack_hw or 16
            out = np.zeros((n, frames_per_sample, 3, side, side), np.float16)
        return out

    def _pack(self, act: Tensor) -> Tensor:
        shape = tuple(act.shape[1:])
        if self._shape is None:
            self._shape = shape
            numel = int(np.prod(shape))
            self._pack_hw = max(16, int(math.ceil(math.sqrt(numel / 3))))
        elif shape != self._shape:
            raise ValueError(f"face crops of different sizes in one run: activation {shape} vs {self._shape}")
        flat = act.reshape(act.shape[0], -1)
        pad = 3 * self._pack_hw * self._pack_hw - flat.shape[1]
        packed = F.pad(flat, (0, pad)).view(-1, 3, self._pack_hw, self._pack_hw)
        return self._unmodel_input(packed)

    @torch.no_grad()
    def _verify(self, face: Tensor, packed: Tensor) -> None:
        """Check on one sample that the packed path gives the face features the model computes
        from the images (guards against changes in EMERT's face preprocessing)."""
        got: list = []
        hook = self.model.face_proj.register_forward_hook(lambda m, i, o: got.append(i[0].detach().clone()))
        was = self.model.training
        self.model.eval()
        try:
            d = face.device
            eye = torch.zeros(1, self.model.config.eye_steps, self.model.config.eye_features, device=d)
            fix = torch.zeros(1, self.model.config.fixation_steps, self.model.config.fixation_features, device=d)
            self.model(face.float(), eye, fix)
            self.activate()
            try:
                self.model(packed.float().half().float(), eye, fix)
            finally:
                self.deactivate()
        finally:
            hook.remove()
            self.model.train(was)
        ref, new = got
        err = float((ref - new).abs().max())
        scale = float(ref.abs().max()) + 1e-6
        if not err <= 5e-3 * scale + 1e-3:
            raise RuntimeError(f"frozen face trunk: cached features differ from the model's own by {err:.3g} "
                               f"(scale {scale:.3g}); EMERT's face preprocessing changed - use --face-train all")

    # ------------------------------------------------------------------ suffix
    def activate(self) -> None:
        """Redirect the face encoder to take packed activations (training with the cache)."""
        if not self.caching or self._active:
            return
        if self._shape is None:
            raise RuntimeError("call precompute() before activate()")
        shape, mode = self._shape, self.mode
        numel = int(np.prod(shape))

        def forward(enc, x: Tensor) -> Tensor:
            act = x.reshape(x.shape[0], -1)[:, :numel]
            if mode == "none":
                return act
            act = act.reshape(x.shape[0], *shape)
            return torch.flatten(F.adaptive_avg_pool2d(enc.layer4(act), 1), 1)

        self.encoder.forward = types.MethodType(forward, self.encoder)
        self._active = True

    def deactivate(self) -> None:
        """Restore the face encoder's own forward (images in)."""
        if self._active:
            del self.encoder.forward
            self._active = False
