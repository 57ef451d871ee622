"""One colour per emotion, used by every view (plots, circumplex, tables, reports).

The seven hues come from the Okabe-Ito colour-blind-safe palette where it has enough distinct
colours, with the conventional associations labs expect (happiness yellow-orange, sadness blue,
anger vermillion, disgust green, fear purple, surprise sky blue, neutral grey). ER (face + eyes)
is drawn solid, FER (face) dashed. docs/desktop-app.md shows the table.
"""

from __future__ import annotations

from typing import Dict, Tuple

__all__ = ["EMOTION_COLORS", "emotion_rgb", "GAP_COLOR", "OK_COLOR", "WARN_COLOR", "BAD_COLOR", "LEFT_EYE_COLOR",
           "RIGHT_EYE_COLOR", "GAZE_X_COLOR", "GAZE_Y_COLOR"]

#: emotion -> hex colour (same in every view)
EMOTION_COLORS: Dict[str, str] = {
    "happiness": "#E69F00",   # orange
    "sadness": "#0072B2",     # blue
    "fear": "#9467BD",        # purple
    "surprise": "#56B4E9",    # sky blue
    "disgust": "#009E73",     # bluish green
    "anger": "#D55E00",       # vermillion
    "neutral": "#999999",     # grey
}

GAP_COLOR = "#222222"
OK_COLOR = "#2E7D32"
WARN_COLOR = "#E69F00"
BAD_COLOR = "#C62828"
# the eyes and the gaze axes, the same in the console and in replay (named in each plot's title)
LEFT_EYE_COLOR = "#0072B2"    # blue
RIGHT_EYE_COLOR = "#D55E00"   # vermillion
GAZE_X_COLOR = "#444444"
GAZE_Y_COLOR = "#009E73"


def emotion_rgb(name: str) -> Tuple[int, int, int]:
    h = EMOTION_COLORS[name].lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
