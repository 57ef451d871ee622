"""What the synthetic camera draws at one instant: the interface between the phantom's state model
(``emer_live.phantom``) and the face renderer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

EMOTIONS7 = ("happiness", "sadness", "fear", "surprise", "disgust", "anger", "neutral")


@dataclass(frozen=True)
class FaceState:
    expression: str = "neutral"           # displayed expression (one of EMOTIONS7)
    intensity: float = 0.0                # 0 = neutral face .. 1 = full expression
    blend_expression: Optional[str] = None  # expression being blended towards (transitions)
    blend: float = 0.0                    # 0..1 weight of blend_expression
    eye_openness: float = 1.0             # 0 = closed (blink) .. 1 = open; follows the tracker's blinks
    yaw_deg: float = 0.0                  # head pose
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    cx: float = 0.5                       # face centre in the frame, normalised 0..1
    cy: float = 0.5
    scale: float = 1.0                    # relative face size (1 = default distance)
    light_gain: float = 1.0               # global illumination multiplier
    light_gradient: float = 0.0           # -1..1 left/right illumination imbalance

    def __post_init__(self) -> None:
        if self.expression not in EMOTIONS7:
            raise ValueError(f"unknown expression {self.expression!r}; expected one of {EMOTIONS7}")
        if self.blend_expression is not None and self.blend_expression not in EMOTIONS7:
            raise ValueError(f"unknown blend_expression {self.blend_expression!r}")
