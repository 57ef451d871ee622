"""Private helpers shared by checkpoint.py and official.py: safe loading and state-dict checks."""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import CheckpointError


def read_file(path: Path) -> Tuple[bytes, str]:
    """Read a whole file; return (bytes, sha256 hex). Missing/unreadable -> CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise CheckpointError(f"{path}: empty file (0 bytes); not a checkpoint")
    return data, hashlib.sha256(data).hexdigest()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _first_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _unpickler_reason(exc: BaseException) -> Tuple[Optional[str], str]:
    """From torch's weights-only refusal: the global it refused (None when there is none - then
    the bytes are not a pickle of objects at all but garbage) and the unpickler's own reason,
    without torch's advice (it suggests ``weights_only=False``, which this project never does)
    and without terminal colour codes."""
    text = _ANSI.sub("", str(exc))
    glob = re.search(r"GLOBAL ([\w.]+)", text)
    m = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    reason = m.group(1).strip() if m else ""
    if not reason:   # the reason sits on the line after the marker in some torch versions
        lines = [ln.strip() for ln in text.split("WeightsUnpickler error:")[-1].splitlines() if ln.strip()]
        reason = lines[0] if lines and "WeightsUnpickler" in text else _first_line(exc)
    if glob:
        reason = f"it names {glob.group(1)}"
    return (glob.group(1) if glob else None), reason[:200]


def safe_torch_load(path: Path, data: bytes) -> Any:
    """``torch.load(weights_only=True)`` on CPU with every failure turned into CheckpointError."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        glob, reason = _unpickler_reason(exc)
        if glob is None:
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint - corrupt, truncated or another kind of file "
                f"(the unpickler stopped: {reason})") from None
        raise CheckpointError(
            f"{path}: refused - it holds pickled Python objects that are not plain data ({reason}); "
            f"checkpoints hold only tensors, numbers, strings, lists and dicts and are never loaded "
            f"any other way") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint - corrupt, truncated or another kind of file "
            f"({type(exc).__name__}: {_first_line(exc)})") from None


def is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def compare_layout(expected: Mapping[str, Sequence[int]], got: Mapping[str, Tensor]) -> Optional[str]:
    """Describe the first mismatch between an expected key -> shape layout and a state dict.

    Returns ``None`` when keys and shapes agree exactly.
    """
    problems = []
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        problems.append(f"missing key {missing[0]!r}{more}")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more unexpected)" if len(unexpected) > 1 else ""
        problems.append(f"unexpected key {unexpected[0]!r}{more}")
    if not problems:
        for k, shape in expected.items():
            if tuple(got[k].shape) != tuple(shape):
                problems.append(f"key {k!r} has shape {tuple(got[k].shape)}, expected {tuple(shape)}")
                break
    return "; ".join(problems) if problems else None


def first_non_finite(state: Mapping[str, Tensor]) -> Optional[str]:
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return k
    return None


def weights_digest(state: Mapping[str, Tensor]) -> str:
    """sha256 over key names, dtypes, shapes and raw bytes of a state dict (sorted by key)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
