"""Display geometry and visual angles (Tobii user coordinate system, millimetres).

The Tobii UCS has its origin at the tracker's centre, x to the user's right, y up, z towards the
user. The display area is given by three corners in UCS (what ``get_display_area()`` returns);
gaze points on the display are normalised 0..1 from the top-left corner (ADCS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

import numpy as np

__all__ = ["DisplayGeometry", "angle_deg", "DEFAULT_DISPLAY"]

Vec3 = Tuple[float, float, float]


@dataclass(frozen=True)
class DisplayGeometry:
    """A display area in UCS mm plus its resolution in pixels."""

    top_left: Vec3 = (-265.5, 314.0, 0.0)
    top_right: Vec3 = (265.5, 314.0, 0.0)
    bottom_left: Vec3 = (-265.5, 15.0, 0.0)
    width_px: int = 1920
    height_px: int = 1080

    def __post_init__(self) -> None:
        if self.width_mm <= 0 or self.height_mm <= 0:
            raise ValueError("display area corners are degenerate (zero width or height)")
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError("display resolution must be positive")

    @property
    def width_mm(self) -> float:
        return float(np.linalg.norm(np.subtract(self.top_right, self.top_left)))

    @property
    def height_mm(self) -> float:
        return float(np.linalg.norm(np.subtract(self.bottom_left, self.top_left)))

    def to_ucs(self, x_norm, y_norm) -> np.ndarray:
        """Map normalised display coordinates (ADCS, arrays ok) to UCS points (..., 3) in mm."""
        tl = np.asarray(self.top_left, float)
        ex = np.subtract(self.top_right, self.top_left)
        ey = np.subtract(self.bottom_left, self.top_left)
        x = np.asarray(x_norm, float)[..., None]
        y = np.asarray(y_norm, float)[..., None]
        return tl + x * ex + y * ey

    def to_dict(self) -> dict:
        return {"top_left": list(self.top_left), "top_right": list(self.top_right),
                "bottom_left": list(self.bottom_left), "width_px": self.width_px, "height_px": self.height_px}

    @classmethod
    def from_dict(cls, d: dict) -> "DisplayGeometry":
        return cls(top_left=tuple(d["top_left"]), top_right=tuple(d["top_right"]),
                   bottom_left=tuple(d["bottom_left"]), width_px=int(d["width_px"]), height_px=int(d["height_px"]))


# A 24" 16:9 monitor (531 x 299 mm) standing upright just above a Tobii Pro Fusion.
DEFAULT_DISPLAY = DisplayGeometry()


def angle_deg(origin, p1, p2) -> np.ndarray:
    """Visual angle in degrees between points ``p1`` and ``p2`` seen from ``origin`` (all (...,3) mm).

    NaN where any input is NaN.
    """
    o = np.asarray(origin, float)
    a = np.asarray(p1, float) - o
    b = np.asarray(p2, float) - o
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, axis=-1) / (na * nb)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
