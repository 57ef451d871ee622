"""Per-frame face features, computed once per face frame and reused by every window holding it.

With an 8 s window, a 1 s hop and 8 face frames per window on a fixed sample grid, consecutive
sliding windows share 7 of their 8 face frames. The face encoder (ResNet-18 -> 512) is the bulk of
EMERT's cost and depends on one frame only (eval-mode batch norm uses running statistics), so
:class:`FaceFeatureCache` keeps its output per grid frame and a new window runs the ResNet on its
one new frame. Everything after the encoder (projection, MAFD, the cross-transformer, heads) is run
per window as before, through the model's ``face_features`` argument, so the cached path computes
the same function as the full forward (tested to 1e-5 in tests/test_frame_cache.py).

Keys are the frames' grid sample times (``Window.face_times``); a window without them (a whole-trial
window, whose frames come from its own sampler) has its 8 frames encoded afresh and not cached.
The owner (the live engine) keeps one cache per face sampler, so a key always names one crop.

On CUDA the frames are encoded channels-last under bf16 autocast and the features stay on the
device; on the CPU the encoder runs in float32, one frame at a time: the live engine meets its grid
frames one by one, and the CPU kernels round a batch of frames differently from single frames (up
to ~1e-5 in the features), so a replay that encoded its frames in batches would not reproduce the
live predictions to 1e-5 (docs/performance.md).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext
from typing import Hashable, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .layers import ResNet18

__all__ = ["FaceFeatureCache"]


class FaceFeatureCache:
    """Face-encoder output per frame key, on the model's device.

    Parameters
    ----------
    model : LoadedModel
    max_frames : int
        Frames kept (least recently used dropped); a window needs its 8, a backlog a few more.
    fast_cuda : bool
        On CUDA: channels-last input and bf16 autocast for the encoder (features kept float32).
        Ignored on other devices.
    """

    def __init__(self, model, *, max_frames: int = 256, fast_cuda: bool = True) -> None:
        self.model = model
        self.net = model.model
        self.device = torch.device(getattr(model, "device", "cpu"))
        self.max_frames = max(8, int(max_frames))
        self.cuda = self.device.type == "cuda"
        self.fast = bool(fast_cuda) and self.cuda
        if self.fast:
            self.net.face_encoder.to(memory_format=torch.channels_last)
        self._feats: "OrderedDict[Hashable, Tensor]" = OrderedDict()
        self.hits = 0
        self.encoded = 0          # frames that went through the ResNet

    def __len__(self) -> int:
        return len(self._feats)

    def clear(self) -> None:
        self._feats.clear()

    def forget(self, key: Hashable) -> None:
        """Drop one frame's features (benchmarks: time a hop's one new frame again)."""
        self._feats.pop(key, None)

    def encode(self, frames: Tensor) -> Tensor:
        """Run the face encoder on ``(N, 3, H, W)`` frames (on the device) -> ``(N, 512)`` float32."""
        if not len(frames):
            return frames.new_zeros(0, ResNet18.out_dim, dtype=torch.float32)
        x = frames.to(self.device, dtype=torch.float32, non_blocking=True)
        ctx = nullcontext()
        if self.fast:
            x = x.contiguous(memory_format=torch.channels_last)
            ctx = torch.autocast("cuda", dtype=torch.bfloat16)
        with torch.inference_mode(), ctx:
            if self.cuda:
                out = self.net.encode_frames(x)
            else:   # as the live engine encodes them: one frame at a time, the same rounding
                out = torch.cat([self.net.encode_frames(x[i:i + 1]) for i in range(len(x))])
        self.encoded += len(frames)
        return out.float()

    def add(self, key: Hashable, frame: np.ndarray) -> None:
        """Encode one frame ``(3, H, W)`` now and keep it under ``key`` (the live engine does this
        when a grid frame's crop is made, so the window that first holds it finds it ready)."""
        if key in self._feats:
            return
        self._feats[key] = self.encode(torch.from_numpy(np.ascontiguousarray(frame[None], dtype=np.float32)))[0]
        while len(self._feats) > self.max_frames:
            self._feats.popitem(last=False)

    def window_features(self, face: np.ndarray, keys: Sequence[Optional[Sequence[Hashable]]],
                        present: Optional[np.ndarray] = None) -> Tensor:
        """Face features ``(B, F, 512)`` of a batch of windows, as ``EMERT.encode_face`` gives them.

        Parameters
        ----------
        face : ndarray (B, F, 3, H, W) float32
            The windows' face frames (what the model's face input holds).
        keys : list of B sequences of F hashables, or None per window
            Frame keys; ``None`` = encode that window's frames now and do not cache them.
        present : ndarray (B,) bool, optional
            Face modality present per window; absent rows get zeros (what the masked model gives).
        """
        b, f = face.shape[:2]
        present = np.ones(b, bool) if present is None else np.asarray(present, bool)
        zero = torch.zeros(ResNet18.out_dim, dtype=torch.float32, device=self.device)
        flat: List[Optional[Tensor]] = [zero] * (b * f)    # row-major (window, frame) slots
        todo: List[np.ndarray] = []                 # frames to encode now
        slots: List[List[int]] = []                 # for each: the flat slots it fills
        new_keys: List[Optional[Hashable]] = []
        pending = {}
        for i in range(b):
            if not present[i]:
                continue
            ks = keys[i]
            for j in range(f):
                k = None if ks is None else ks[j]
                if k is not None and k in self._feats:
                    self._feats.move_to_end(k)
                    flat[i * f + j] = self._feats[k]
                    self.hits += 1
                elif k is not None and k in pending:
                    slots[pending[k]].append(i * f + j)
                else:
                    if k is not None:
                        pending[k] = len(todo)
                    todo.append(face[i, j])
                    slots.append([i * f + j])
                    new_keys.append(k)
        if todo:
            feats = self.encode(torch.from_numpy(np.ascontiguousarray(np.stack(todo), dtype=np.float32)))
            for n, places in enumerate(slots):
                for s in places:
                    flat[s] = feats[n]
                if new_keys[n] is not None:
                    self._feats[new_keys[n]] = feats[n].clone()
            while len(self._feats) > self.max_frames:
                self._feats.popitem(last=False)
        # one gather on the device instead of a copy per slot
        return torch.stack(flat).view(b, f, ResNet18.out_dim)
