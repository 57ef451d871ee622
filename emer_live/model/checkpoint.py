"""EMERT checkpoints: one file with weights, config, normalisation statistics, label maps and
training provenance, loadable with ``torch.load(weights_only=True)``.

File format (version 1): ``torch.save`` of a dict holding only tensors, str, int, float, bool,
None, lists and dicts::

    format           "emer_live.emert_checkpoint"
    format_version   1
    software_version emer_live version that wrote it
    created_utc      ISO-8601 UTC time of writing
    config           EMERTConfig.to_dict()
    state_dict       {name: tensor} (CPU, contiguous) of EMERT
    weights_sha256   sha256 over the state dict (names, dtypes, shapes, bytes) - catches bit rot
                     that PyTorch's zip reader does not
    norm_stats       {"eye": {"mean": [39 floats], "std": [39 floats]},
                      "fixation": {"mean": [2], "std": [2]}, ...extra plain keys allowed}
    label_maps       {head: [class names in index order] or ["valence", "arousal"]}
    provenance       plain dict: data, folds, metrics, git_commit, created_utc, notes, ...

The checkpoint id shown everywhere is the first 12 hex digits of the file's sha256.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import math
import numbers
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .. import __version__
from ..errors import CheckpointError, ConfigError, DeviceUnavailable
from ._io import compare_layout, first_non_finite, is_tensor_mapping, read_file, safe_torch_load, weights_digest
from .config import MODALITIES, EMERTConfig, default_label_maps, head_kind
from .emert import EMERT
from .fallback import check_face_fallback, combine, scatter_rows, threshold_of

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LoadedModel",
    "save_checkpoint",
    "load_checkpoint",
    "select_device",
    "identity_norm_stats",
    "checkpoint_id",
]

FORMAT_NAME = "emer_live.emert_checkpoint"
FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------------------
# device
# --------------------------------------------------------------------------------------------
def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def select_device(prefer: str = "auto", *, num_threads: Optional[int] = None) -> torch.device:
    """Pick the device to run EMERT on.

    Parameters
    ----------
    prefer : str
        ``'auto'`` (CUDA, else Apple MPS, else CPU), ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'mps'``.
    num_threads : int, optional
        CPU only: intra-op threads for ``torch.set_num_threads``. Default: the CPUs this process
        may use minus one (left to capture and GUI threads), at least 1, at most 8.

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        ``prefer`` is not one of the forms above.
    DeviceUnavailable
        The requested accelerator is not present.
    """
    if not isinstance(prefer, str):
        raise ConfigError(f"device must be a string like 'auto', 'cpu', 'cuda', 'cuda:0', 'mps'; got {prefer!r}")
    p = prefer.strip().lower()
    mps_ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if p == "auto":
        dev = torch.device("cuda") if torch.cuda.is_available() else (
            torch.device("mps") if mps_ok else torch.device("cpu"))
    elif p == "cpu":
        dev = torch.device("cpu")
    elif p == "mps":
        if not mps_ok:
            raise DeviceUnavailable("device 'mps' requested but Apple MPS is not available; use --device auto or cpu")
        dev = torch.device("mps")
    elif p == "cuda" or p.startswith("cuda:"):
        try:
            dev = torch.device(p)
        except RuntimeError:
            raise ConfigError(f"invalid CUDA device {prefer!r}; use 'cuda' or 'cuda:N'") from None
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {prefer!r} requested but CUDA is not available "
                                    "(no GPU or a CPU-only PyTorch); use --device auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {prefer!r} requested but only {torch.cuda.device_count()} "
                                    "CUDA device(s) exist")
    else:
        raise ConfigError(f"unknown device {prefer!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if dev.type == "cpu":
        if num_threads is None:
            num_threads = min(8, max(1, _cpu_count() - 1))
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ConfigError(f"num_threads must be a positive int, got {num_threads!r}")
        torch.set_num_threads(num_threads)
    return dev


# --------------------------------------------------------------------------------------------
# validation of the plain-data parts
# --------------------------------------------------------------------------------------------
def _check_plain(obj: Any, where: str) -> None:
    """Raise ValueError unless obj is JSON-like plain data."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return
    if isinstance(obj, float):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be strings, got {k!r}")
            _check_plain(v, f"{where}.{k}")
        return
    raise ValueError(f"{where}: {type(obj).__name__} is not plain data (use str, int, float, bool, None, list, dict)")


def _plain_copy(obj: Any) -> Any:
    """Deep copy into dicts and lists; numpy scalars/arrays become Python numbers/lists."""
    if isinstance(obj, Mapping):
        return {str(k) if isinstance(k, str) else k: _plain_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_copy(v) for v in obj]
    # subclasses (e.g. torch.__version__, a str subclass) would be pickled as their class, which
    # weights_only loading refuses: store the plain value
    if isinstance(obj, str) and type(obj) is not str:
        return str(obj)
    if isinstance(obj, bool) and type(obj) is not bool:
        return bool(obj)
    if isinstance(obj, int) and not isinstance(obj, bool) and type(obj) is not int:
        return int(obj)
    if isinstance(obj, float) and type(obj) is not float:
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _to_float_list(v: Any, where: str, n: int, *, positive: bool) -> list:
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, Tensor):
        v = v.detach().cpu().tolist()
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise ValueError(f"{where} must be a list of {n} numbers, got {str(v)[:80]}")
    out = []
    for x in v:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real) or not math.isfinite(x) \
                or (positive and x <= 0):
            raise ValueError(f"{where} must hold {n} finite{' positive' if positive else ''} numbers; found {x!r}")
        out.append(float(x))
    return out


def _check_norm_stats(stats: Any, config: EMERTConfig) -> Dict[str, Any]:
    """Validate norm stats and return a plain copy (lists of floats)."""
    if not isinstance(stats, Mapping):
        raise ValueError(f"norm_stats must be a dict like {{'eye': {{'mean': [...], 'std': [...]}}, "
                         f"'fixation': {{...}}}}, got {type(stats).__name__}")
    out = _plain_copy({k: v for k, v in stats.items() if k not in ("eye", "fixation")})
    _check_plain(out, "norm_stats")
    for name, n in (("eye", config.eye_features), ("fixation", config.fixation_features)):
        part = stats.get(name)
        if not isinstance(part, Mapping) or "mean" not in part or "std" not in part:
            raise ValueError(f"norm_stats[{name!r}] must be a dict with 'mean' and 'std' lists of {n} numbers")
        extra = _plain_copy({k: v for k, v in part.items() if k not in ("mean", "std")})
        _check_plain(extra, f"norm_stats.{name}")
        out[name] = {"mean": _to_float_list(part["mean"], f"norm_stats.{name}.mean", n, positive=False),
                     "std": _to_float_list(part["std"], f"norm_stats.{name}.std", n, positive=True), **extra}
    return out


def identity_norm_stats(config: EMERTConfig) -> Dict[str, Any]:
    """Norm stats that leave features unchanged (mean 0, std 1)."""
    return {name: {"mean": [0.0] * n, "std": [1.0] * n}
            for name, n in (("eye", config.eye_features), ("fixation", config.fixation_features))}


def _check_label_maps(label_maps: Any, config: EMERTConfig) -> Dict[str, Any]:
    if not isinstance(label_maps, Mapping):
        raise ValueError(f"label_maps must be a dict head -> list of names, got {type(label_maps).__name__}")
    out = _plain_copy(label_maps)
    _check_plain(out, "label_maps")
    for h in config.heads:
        kind, n = head_kind(h)
        if kind == "scalar":
            continue
        names = out.get(h)
        if not isinstance(names, list) or len(names) != n or not all(isinstance(s, str) and s for s in names) \
                or len(set(names)) != n:
            raise ValueError(f"label_maps[{h!r}] must list {n} distinct names in output order, got {names!r}")
    return out


def _git_commit() -> Optional[str]:
    """The git commit of the source tree emer_live runs from, or None."""
    try:
        root = Path(__file__).resolve().parents[2]
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = res.stdout.strip()
    return sha if res.returncode == 0 and len(sha) >= 7 else None


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def checkpoint_id(sha256_hex: str) -> str:
    """Short id of a checkpoint file: the first 12 hex digits of its sha256."""
    return sha256_hex[:12]


# --------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------
def save_checkpoint(path: PathLike, model: EMERT, *, norm_stats: Mapping[str, Any],
                    provenance: Mapping[str, Any], label_maps: Optional[Mapping[str, Any]] = None,
                    inference: Optional[Mapping[str, Any]] = None, overwrite: bool = False) -> str:
    """Write ``model`` and its metadata to one checkpoint file (atomically).

    Parameters
    ----------
    path : str or Path
        Output file (``.pt``); parent folders are created.
    model : EMERT
        The model; its weights are copied to CPU.
    norm_stats : dict
        ``{"eye": {"mean": [...], "std": [...]}, "fixation": {...}}`` (``FeatureStats.to_dict()``),
        lengths matching the config; extra plain keys are kept.
    provenance : dict
        Plain data: what it was trained on (``data``, ``folds``), ``metrics``, free ``notes``...
        ``created_utc``, ``git_commit`` and ``software_version`` are filled in when absent, and
        ``face_config``: the face pipeline whose crops the model sees (this version's default),
        which the live engine then uses; checkpoints without it predate the landmark pipeline
        and get the Haar pipeline they were trained on.
    label_maps : dict, optional
        Head -> class names in output order; default :func:`default_label_maps`.
    inference : dict, optional
        How :meth:`LoadedModel.predict` runs the model: ``{"face_fallback": {"threshold": t, ...}}``
        (see :mod:`emer_live.model.fallback`); default none (one fused pass).
    overwrite : bool
        Replace an existing file; otherwise an existing ``path`` raises ``CheckpointError``.

    Returns
    -------
    str
        The checkpoint id (first 12 hex digits of the file's sha256).
    """
    if not isinstance(model, EMERT):
        raise TypeError(f"model must be an EMERT, got {type(model).__name__}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path}: already exists; refusing to overwrite (choose another path)")
    config = model.config
    stats = _check_norm_stats(norm_stats, config)
    maps = _check_label_maps(label_maps if label_maps is not None else default_label_maps(config.heads), config)
    if not isinstance(provenance, Mapping):
        raise ValueError(f"provenance must be a dict, got {type(provenance).__name__}")
    prov = _plain_copy(provenance)
    _check_plain(prov, "provenance")
    infer = _check_inference(inference, config)
    created = _utc_now()
    prov.setdefault("created_utc", created)
    prov.setdefault("software_version", __version__)
    if "face_config" not in prov:
        from ..features.face import FaceConfig

        prov["face_config"] = FaceConfig().to_dict()
    if "git_commit" not in prov:
        prov["git_commit"] = _git_commit()

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    bad = first_non_finite(state)
    if bad is not None:
        raise ValueError(f"refusing to save: weight {bad!r} holds NaN or inf")
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "software_version": __version__,
        "created_utc": created,
        "config": config.to_dict(),
        "state_dict": state,
        "weights_sha256": weights_digest(state),
        "norm_stats": stats,
        "label_maps": maps,
        "provenance": prov,
        "inference": infer,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not overwrite and path.exists():
            raise CheckpointError(f"{path}: already exists; refusing to overwrite (choose another path)")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return checkpoint_id(hashlib.sha256(data).hexdigest())


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint loaded for inference.

    Attributes
    ----------
    model : EMERT
        In eval mode on ``device``.
    config : EMERTConfig
    device : torch.device
    norm_stats : dict
        ``{"eye": {"mean", "std"}, "fixation": {...}}`` as stored.
    label_maps : dict
        Head -> class names (or VA component names) in output order.
    provenance : dict
    id : str
        First 12 hex digits of the file's sha256.
    path : Path
    format_version : int
    inference : dict
        Inference settings stored with the weights (``face_fallback``; empty for checkpoints
        written before they existed).
    """

    model: EMERT
    config: EMERTConfig
    device: torch.device
    norm_stats: Dict[str, Any]
    label_maps: Dict[str, Any]
    provenance: Dict[str, Any]
    id: str
    path: Path
    format_version: int
    inference: Dict[str, Any] = field(default_factory=dict)

    @property
    def face_fallback(self) -> Optional[float]:
        """The stored face-fallback threshold, or None when off (:mod:`emer_live.model.fallback`)."""
        return threshold_of(self.inference)

    def normalize(self, eye: Any, fixation: Any) -> Tuple[Any, Any]:
        """Apply the stored normalisation: ``(x - mean) / std`` per feature (numpy or tensors)."""
        out = []
        for name, x in (("eye", eye), ("fixation", fixation)):
            mean = np.asarray(self.norm_stats[name]["mean"], dtype=np.float32)
            std = np.asarray(self.norm_stats[name]["std"], dtype=np.float32)
            if isinstance(x, Tensor):
                out.append((x - torch.as_tensor(mean, device=x.device, dtype=x.dtype))
                           / torch.as_tensor(std, device=x.device, dtype=x.dtype))
            else:
                out.append(((np.asarray(x, dtype=np.float32) - mean) / std).astype(np.float32))
        return out[0], out[1]

    def predict(self, face: Any, eye: Any, fixation: Any, *,
                modality_mask: Any = None, face_fallback: Optional[bool] = None,
                face_features: Optional[Tensor] = None) -> Dict[str, np.ndarray]:
        """Run the model under ``torch.inference_mode`` on already-normalised inputs.

        Parameters
        ----------
        face, eye, fixation : array-like or Tensor
            ``(B, 8, 3, H, W)`` RGB in [0, 1], ``(B, 32, 39)``, ``(B, 32, 2)`` (normalised, see
            :meth:`normalize`).
        modality_mask : array-like (B, 3) bool, optional
        face_fallback : bool, optional
            Apply the checkpoint's face fallback (default: when it stores a threshold): rows with a
            face and eyes are also scored face-only, and where that pass is sure the ER heads
            come from it.

        Returns
        -------
        dict of str -> numpy array
            Class heads as probabilities (softmax), regression heads as values,
            ``modalities_used`` (B, 3) bool, ``er_face_fallback`` (B,) bool (ER taken from the
            face-only pass).
        face_features : Tensor (B, 8, 512), optional
            The face encoder's output for ``face`` (:meth:`EMERT.encode_face`, or per frame from a
            :class:`~emer_live.model.frame_cache.FaceFeatureCache`): the ResNet is then not run.
        """
        dev = self.device
        tensors = []
        for name, x in (("face", face), ("eye", eye), ("fixation", fixation)):
            t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
            tensors.append(t.to(dev, dtype=torch.float32))
        mask = None
        if modality_mask is not None:
            mask = modality_mask if isinstance(modality_mask, Tensor) else torch.as_tensor(
                np.asarray(modality_mask, dtype=bool))
            mask = mask.to(dev)
        self.model.check_inputs(*tensors, mask)  # shapes first, for clear messages
        for i, (name, t) in enumerate(zip(MODALITIES, tensors)):
            rows = t if mask is None else t[mask[:, i]]
            if rows.numel() and not bool(torch.isfinite(rows).all()):
                raise ValueError(f"{name} input holds NaN or inf for a sample where it is marked present; "
                                 "interpolate it or mark the modality missing in modality_mask")
        threshold = self.face_fallback if face_fallback is not False else None
        n = tensors[0].shape[0]
        with torch.inference_mode():
            ff = None if face_features is None else face_features.to(dev, dtype=torch.float32)
            if threshold is None:
                fused, face_only, rows = self.model(*tensors, modality_mask=mask, face_features=ff), None, None
            else:
                # with given features (the live engine) both passes run as one batch: per-call
                # overhead dominates once the ResNet is cached
                fused, face_only, rows = self.model.forward_fused_and_face_only(
                    *tensors, modality_mask=mask, face_features=ff, one_pass=ff is not None)
            result = self._numpy(fused)
            part = None if face_only is None else self._numpy(face_only)
        result["er_face_fallback"] = np.zeros(n, bool)
        if part is not None:
            part.pop("modalities_used")
            face_full, eligible = scatter_rows(part, rows, n)
            combined, fired = combine(result, face_full, threshold, eligible)
            result = {**combined, "er_face_fallback": fired}
        return result

    def _numpy(self, out: Dict[str, Tensor]) -> Dict[str, np.ndarray]:
        """Model outputs as numpy: softmax probabilities for class heads, values otherwise."""
        result: Dict[str, np.ndarray] = {}
        for h in self.config.heads:
            y = out[h].float()
            if head_kind(h)[0] == "class":
                y = torch.softmax(y, dim=-1)
            result[h] = y.cpu().numpy()
        result["modalities_used"] = out["modalities_used"].cpu().numpy()
        return result

    def with_inference(self, path: PathLike, inference: Mapping[str, Any], *,
                       note: Optional[str] = None) -> str:
        """Write these weights with new ``inference`` settings to a new checkpoint ``path``
        (provenance kept, plus a note of where they came from). Returns the new id."""
        prov = _plain_copy(self.provenance)
        prov.pop("created_utc", None)
        prov["derived_from"] = {"checkpoint_id": self.id, "file": self.path.name,
                                **({"note": note} if note else {})}
        return save_checkpoint(path, self.model, norm_stats=self.norm_stats, provenance=prov,
                               label_maps=self.label_maps, inference=inference)


def _check_inference(inference: Any, config: Optional[EMERTConfig] = None) -> Dict[str, Any]:
    if inference is None:
        return {}
    if not isinstance(inference, Mapping):
        raise ValueError(f"inference settings must be a dict, got {type(inference).__name__}")
    out = _plain_copy(inference)
    _check_plain(out, "inference")
    unknown = sorted(set(out) - {"face_fallback"})
    if unknown:
        raise ValueError(f"unknown inference setting(s) {', '.join(unknown)} (known: face_fallback)")
    if out.get("face_fallback") is not None:
        out["face_fallback"] = check_face_fallback(out["face_fallback"], "inference.face_fallback")
        if (config is not None and out["face_fallback"].get("threshold") is not None
                and "er7" not in config.heads):
            raise ValueError("inference.face_fallback needs an er7 head (its threshold applies to ER7 "
                             "probabilities); this model has " + ", ".join(config.heads))
    return out


def load_checkpoint(path: PathLike, *, device: Union[str, torch.device] = "auto") -> LoadedModel:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Parameters
    ----------
    path : str or Path
    device : str or torch.device
        Passed to :func:`select_device` when a string (default ``'auto'``).

    Returns
    -------
    LoadedModel

    Raises
    ------
    CheckpointError
        The file is missing, unreadable, corrupt or truncated, holds pickled objects, is not an
        emer_live checkpoint (e.g. a bare state dict or an official EMERT file - convert those
        with ``emer-live import-official``), was written by a newer format, or its weights do not
        match its configuration. The message names the file and the problem.
    """
    path = Path(path)
    data, sha = read_file(path)
    payload = safe_torch_load(path, data)
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT_NAME:
        if is_tensor_mapping(payload) or (isinstance(payload, Mapping) and any(
                is_tensor_mapping(v) for v in payload.values())):
            raise CheckpointError(
                f"{path}: a bare PyTorch state dict, not an emer_live checkpoint; if it is an official "
                "EMERT checkpoint, convert it with `emer-live import-official`")
        raise CheckpointError(f"{path}: not an emer_live EMERT checkpoint (foreign file: no "
                              f"'format': {FORMAT_NAME!r} entry)")
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written in checkpoint format {version} by a newer emer_live "
                              f"(this one reads up to {FORMAT_VERSION}); upgrade emer_live")
    try:
        config = EMERTConfig.from_dict(payload.get("config"))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from None
    state = payload.get("state_dict")
    if not is_tensor_mapping(state):
        raise CheckpointError(f"{path}: 'state_dict' missing or not a dict of tensors")
    if payload.get("weights_sha256") != weights_digest(state):
        raise CheckpointError(f"{path}: weights are corrupt (their sha256 does not match the one "
                              "stored when the file was written)")
    model = EMERT(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problem = compare_layout(expected, state)
    if problem:
        raise CheckpointError(f"{path}: weights do not fit the stored config: {problem}")
    bad = first_non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path}: weight {bad!r} holds NaN or inf")
    try:
        norm_stats = _check_norm_stats(payload.get("norm_stats"), config)
        label_maps = _check_label_maps(payload.get("label_maps"), config)
        provenance = payload.get("provenance")
        if not isinstance(provenance, Mapping):
            raise ValueError("provenance missing or not a dict")
        _check_plain(provenance, "provenance")
        inference = _check_inference(payload.get("inference"), config)
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid metadata: {exc}") from None
    model.load_state_dict(state, strict=True)
    dev = select_device(device) if isinstance(device, str) else torch.device(device)
    model.to(dev).eval()
    return LoadedModel(model=model, config=config, device=dev, norm_stats=norm_stats, label_maps=label_maps,
                       provenance=_plain_copy(provenance), id=checkpoint_id(sha), path=path,
                       format_version=version, inference=inference)
