"""Configuration of the eye-movement pre-processing (stored with features and checkpoints)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Dict

from ..errors import ConfigError

__all__ = ["EyeConfig", "EYE_SELECTIONS"]

EYE_SELECTIONS = ("average", "left", "right")
_CONFIG_VERSION = 1


@dataclass(frozen=True)
class EyeConfig:
    """Parameters of blink handling, gap fill-in, noise reduction and the I-VT filter.

    Defaults are those of Tobii's I-VT fixation filter (Olsen 2012) and of the EMER paper's
    blink definition. Times are milliseconds.

    Parameters
    ----------
    blink_min_ms, blink_max_ms : float
        A loss of *both* pupils lasting this long (inclusive) is a blink and is linearly
        interpolated. Longer losses stay invalid.
    gap_fill_max_ms : float
        Other losses up to this length (per signal group) are linearly interpolated (0 = off).
    median_window : int
        Samples in the centred moving median over gaze positions (odd; 1 = off).
    velocity_window_ms : float
        Span of the window over which angular velocity is measured.
    velocity_threshold_deg_s : float
        I-VT threshold: samples at or above it are saccade samples.
    merge_max_gap_ms, merge_max_angle_deg : float
        Adjacent fixations separated by at most this time and this visual angle are merged.
    min_fixation_ms : float
        Fixations shorter than this become "other" (unclassified).
    eye_selection : {"average", "left", "right"}
        Which eye drives velocity and the mean gaze point; "average" uses the mean of both eyes
        where both are valid and the valid one otherwise.
    context_ms : float
        Data before a window's start used for pre-processing (velocity, events, blinks) when
        the input holds it.
    """

    blink_min_ms: float = 75.0
    blink_max_ms: float = 425.0
    gap_fill_max_ms: float = 75.0
    median_window: int = 3
    velocity_window_ms: float = 20.0
    velocity_threshold_deg_s: float = 30.0
    merge_max_gap_ms: float = 75.0
    merge_max_angle_deg: float = 0.5
    min_fixation_ms: float = 60.0
    eye_selection: str = "average"
    context_ms: float = 500.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "eye_selection":
                if v not in EYE_SELECTIONS:
                    raise ConfigError(f"EyeConfig.eye_selection={v!r} is not one of {EYE_SELECTIONS}")
                continue
            if f.name == "median_window":
                if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v % 2 == 0:
                    raise ConfigError(f"EyeConfig.median_window={v!r} must be an odd integer >= 1 (1 = off)")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"EyeConfig.{f.name}={v!r} must be a finite number >= 0")
        if self.blink_min_ms >= self.blink_max_ms:
            raise ConfigError(f"EyeConfig.blink_min_ms ({self.blink_min_ms}) must be below "
                              f"blink_max_ms ({self.blink_max_ms})")
        if self.velocity_window_ms <= 0 or self.velocity_threshold_deg_s <= 0:
            raise ConfigError("EyeConfig.velocity_window_ms and velocity_threshold_deg_s must be > 0")

    def to_dict(self) -> Dict[str, Any]:
        """Plain ``dict`` (JSON- and ``torch.load(weights_only=True)``-safe) with a format version."""
        d: Dict[str, Any] = {"version": _CONFIG_VERSION}
        for f in fields(self):
            d[f.name] = getattr(self, f.name)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "EyeConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are refused."""
        if not isinstance(d, dict):
            raise ConfigError(f"EyeConfig.from_dict expects a dict, got {type(d).__name__}")
        d = dict(d)
        version = d.pop("version", _CONFIG_VERSION)
        if version != _CONFIG_VERSION:
            raise ConfigError(f"EyeConfig version {version!r} is not supported (this build reads {_CONFIG_VERSION})")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"EyeConfig.from_dict: unknown keys {unknown}; known: {sorted(names)}")
        if "median_window" in d and isinstance(d["median_window"], float) and d["median_window"].is_integer():
            d["median_window"] = int(d["median_window"])
        return cls(**d)
