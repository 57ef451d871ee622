"""Per-feature normalisation statistics, stored inside checkpoints as plain lists."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ..errors import CheckpointError

__all__ = ["FeatureStats", "RunningStats"]

_VERSION = 1


class RunningStats:
    """Count, mean and sum of squared deviations per feature, merged batch by batch (Chan et
    al.'s parallel update: a large corpus can be streamed, large offsets keep their precision).
    NaN values and masked-out steps are ignored."""

    def __init__(self, n_features: int) -> None:
        self.n = np.zeros(n_features, np.int64)
        self.mean = np.zeros(n_features, np.float64)
        self.m2 = np.zeros(n_features, np.float64)

    def add(self, x: np.ndarray, mask: np.ndarray) -> None:
        """Add the rows of ``x`` ``(N, F)`` where ``mask`` ``(N,)`` is True."""
        x = np.asarray(x, np.float64)[np.asarray(mask, bool)]
        fin = np.isfinite(x)
        nb = fin.sum(axis=0)
        if not nb.any():
            return
        mb = np.where(fin, x, 0.0).sum(axis=0) / np.maximum(nb, 1)
        m2b = np.where(fin, (x - mb) ** 2, 0.0).sum(axis=0)
        tot = self.n + nb
        delta = mb - self.mean
        safe = np.maximum(tot, 1)
        self.mean = np.where(tot > 0, self.mean + delta * nb / safe, 0.0)
        self.m2 = self.m2 + m2b + np.where(tot > 0, delta ** 2 * self.n * nb / safe, 0.0)
        self.n = tot

    def mean_sd(self, min_count: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """``(mean, sd)`` as float32, or None while any feature has fewer than ``min_count`` values."""
        if self.n.min() < min_count:
            return None
        return self.mean.astype(np.float32), np.sqrt(self.m2 / self.n).astype(np.float32)


@dataclass(frozen=True)
class FeatureStats:
    """Mean and standard deviation of each of ``F`` features, fitted on a training corpus.

    ``apply`` computes ``(x - mean) / scale`` where ``scale`` is the standard deviation, except
    that features whose standard deviation is below ``std_floor`` (constant in the corpus, e.g.
    a validity that was always 1) are only centred (scale 1), so they cannot explode.

    Attributes
    ----------
    mean, std : (F,) float64
        Fitted statistics (``std`` as fitted, before the floor).
    count : (F,) int64
        Finite, unmasked values each statistic was computed from.
    std_floor : float
    names : tuple of str or None
        Feature names (e.g. :data:`emer_live.features.eye.EYE_FEATURE_NAMES`).
    """

    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray
    std_floor: float = 1e-3
    names: Optional[Tuple[str, ...]] = None

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, np.float64).reshape(-1)
        std = np.asarray(self.std, np.float64).reshape(-1)
        count = np.asarray(self.count, np.int64).reshape(-1)
        if not (mean.shape == std.shape == count.shape) or mean.size == 0:
            raise ValueError(f"mean, std and count must be 1-D of equal non-zero length, got "
                             f"{mean.shape}, {std.shape}, {count.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std >= 0)):
            raise ValueError("mean and std must be finite and std >= 0")
        if not math.isfinite(self.std_floor) or self.std_floor < 0:
            raise ValueError(f"std_floor must be a finite number >= 0, got {self.std_floor!r}")
        names = None if self.names is None else tuple(str(n) for n in self.names)
        if names is not None and len(names) != mean.size:
            raise ValueError(f"{len(names)} names for {mean.size} features")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "std_floor", float(self.std_floor))

    @property
    def n_features(self) -> int:
        return int(self.mean.size)

    @property
    def scale(self) -> np.ndarray:
        """Divisor used by :meth:`apply`: ``std``, or 1 where ``std < std_floor``."""
        return np.where(self.std < self.std_floor, 1.0, self.std)

    @classmethod
    def fit(cls, arrays: Iterable[np.ndarray], *, masks: Optional[Iterable[np.ndarray]] = None,
            std_floor: float = 1e-3, names: Optional[Sequence[str]] = None) -> "FeatureStats":
        """Fit on a corpus of ``(N, F)`` (or ``(B, N, F)``) arrays.

        Parameters
        ----------
        arrays : iterable of arrays
            Feature arrays with the features on the last axis. NaN values are ignored.
        masks : iterable of bool arrays, optional
            One per array, shaped like it without the last axis; True = use the step. Steps
            with False (e.g. ``EyeWindow.step_valid`` False) are ignored.
        std_floor : float
        names : sequence of str, optional

        Returns
        -------
        FeatureStats

        Notes
        -----
        Statistics are combined array by array (Chan et al.'s parallel update), so a large
        corpus can be streamed and large offsets do not lose precision.
        """
        mask_iter = iter(masks) if masks is not None else None
        acc: Optional[RunningStats] = None
        for i, arr in enumerate(arrays):
            x = np.asarray(arr, np.float64)
            if x.ndim < 1 or (acc is not None and x.shape[-1] != acc.n.size):
                raise ValueError(f"array {i} has shape {x.shape}; expected (..., {acc.n.size if acc else '?'})")
            x = x.reshape(-1, x.shape[-1])
            m = np.ones(x.shape[0], bool)
            if mask_iter is not None:
                try:
                    m = np.asarray(next(mask_iter), bool).reshape(-1)
                except StopIteration:
                    raise ValueError(f"fewer masks than arrays (none for array {i})") from None
                if m.size != x.shape[0]:
                    raise ValueError(f"mask {i} has {m.size} entries for {x.shape[0]} steps")
            if acc is None:
                acc = RunningStats(x.shape[-1])
            acc.add(x, m)
        if acc is None:
            raise ValueError("FeatureStats.fit needs at least one array")
        n, mean, m2 = acc.n, acc.mean, acc.m2
        if np.any(n == 0):
            raise ValueError(f"features {np.flatnonzero(n == 0).tolist()} have no finite, unmasked values")
        std = np.sqrt(m2 / n)
        return cls(mean=mean, std=std, count=n, std_floor=std_floor,
                   names=None if names is None else tuple(names))

    def apply(self, x, *, clip: Optional[float] = None) -> np.ndarray:
        """Normalise ``(..., F)`` values to float32; NaN stays NaN.

        Parameters
        ----------
        x : array
        clip : float, optional
            Clip the result to ``[-clip, clip]``.
        """
        x = np.asarray(x)
        if x.shape[-1:] != (self.n_features,):
            raise ValueError(f"expected (..., {self.n_features}) values, got shape {x.shape}")
        y = (x.astype(np.float64) - self.mean) / self.scale
        if clip is not None:
            y = np.clip(y, -float(clip), float(clip))
        return y.astype(np.float32)

    def invert(self, y) -> np.ndarray:
        """Undo :meth:`apply` (without clipping) to float64."""
        y = np.asarray(y, np.float64)
        if y.shape[-1:] != (self.n_features,):
            raise ValueError(f"expected (..., {self.n_features}) values, got shape {y.shape}")
        return y * self.scale + self.mean

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict of lists/floats/str, safe for JSON and ``torch.load(weights_only=True)``."""
        return {
            "version": _VERSION,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "count": [int(v) for v in self.count],
            "std_floor": float(self.std_floor),
            "names": None if self.names is None else list(self.names),
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FeatureStats":
        """Inverse of :meth:`to_dict`; a malformed dict raises :class:`~emer_live.errors.CheckpointError`."""
        if not isinstance(d, dict):
            raise CheckpointError(f"feature statistics must be a dict, got {type(d).__name__}")
        if d.get("version") != _VERSION:
            raise CheckpointError(f"feature statistics version {d.get('version')!r} is not supported "
                                  f"(this build reads {_VERSION})")
        try:
            return cls(mean=np.asarray(d["mean"], np.float64), std=np.asarray(d["std"], np.float64),
                       count=np.asarray(d["count"], np.int64), std_floor=float(d["std_floor"]),
                       names=None if d.get("names") is None else tuple(d["names"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"feature statistics are malformed: {exc}") from None
