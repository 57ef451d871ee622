"""Who the phantom is: individual traits drawn from ``(seed, participant)``, and how emotions act
on the eyes.

The numbers are physiologically *motivated* (ranges from the eye-tracking literature) but the
emotion effects are this project's modelling choices, kept modest on purpose:

- pupil: dilates with arousal for pleasant and unpleasant states alike (Bradley et al. 2008),
  a few tenths of a millimetre; constricts with screen luminance (light reflex, ~1 mm over the
  full luminance range);
- blink rate: up with negative arousal/anxiety, down with attentive engagement (blink
  inhibition in surprise); longer blinks with low-arousal sadness (fatigue-like);
- fixations: longer with sadness (slowed scanning), shorter with fear (vigilant scanning);
- saccade amplitude / gaze dispersion: broader with positive affect (broaden-and-build,
  Fredrickson 2001), narrower with sadness and anger (focused), broader with fear;
- gaze aversion (looks off the display): more with disgust and sadness.

Each effect is scaled per person and per trial and buried in trial-to-trial noise, so the eyes
alone tell the emotion clearly above chance but far from perfectly.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict

import numpy as np

from ._random import generator
from .face_state import EMOTIONS7

__all__ = [
    "EMOTIONS7", "VA_ANCHORS", "DOMINANCE_ANCHORS", "EYE_EFFECTS", "EYE_EFFECT_NAMES", "NEIGHBOURS",
    "PhantomTraits", "draw_traits",
]

# Russell & Mehrabian (1977) PAD ratings of emotion *words* (not faces), as in DESIGN sec. 10.
VA_ANCHORS = {
    "happiness": (0.81, 0.51), "sadness": (-0.63, -0.27), "fear": (-0.64, 0.60),
    "surprise": (0.40, 0.67), "disgust": (-0.60, 0.35), "anger": (-0.51, 0.59), "neutral": (0.0, 0.0),
}
# Dominance of the same PAD ratings (as commonly tabulated, e.g. Gebhard 2005, ALMA).
DOMINANCE_ANCHORS = {
    "happiness": 0.46, "sadness": -0.33, "fear": -0.43, "surprise": -0.13,
    "disgust": 0.11, "anger": 0.25, "neutral": 0.0,
}

EYE_EFFECT_NAMES = ("blink_rate", "fixation_duration", "saccade_amplitude", "blink_duration", "offscreen")
# Multipliers on the person's baseline, at full elicitation strength.
EYE_EFFECTS = {
    #             blink  fixdur  amp    blinkdur offscreen
    "happiness": (0.95,  0.95,   1.15,  1.00,    1.0),
    "sadness":   (1.10,  1.15,   0.85,  1.15,    1.5),
    "fear":      (1.20,  0.88,   1.15,  0.92,    1.2),
    "surprise":  (0.80,  1.08,   1.05,  0.95,    0.8),
    "disgust":   (1.15,  0.95,   1.05,  1.05,    1.8),
    "anger":     (1.10,  1.08,   0.88,  1.00,    0.9),
    "neutral":   (1.00,  1.00,   1.00,  1.00,    1.0),
}

# Emotions a felt state or a self-report label is most easily confused with.
NEIGHBOURS = {
    "happiness": ("surprise", "neutral"),
    "sadness": ("neutral", "fear"),
    "fear": ("surprise", "disgust", "sadness"),
    "surprise": ("fear", "happiness"),
    "disgust": ("anger", "fear"),
    "anger": ("disgust", "sadness"),
    "neutral": ("sadness", "happiness"),
}


@dataclass(frozen=True)
class PhantomTraits:
    """Individual differences of one synthetic participant (all drawn from ``(seed, participant)``)."""

    pupil_baseline_mm: float        # mean of both eyes at mid luminance, calm
    anisocoria_mm: float            # left minus right pupil size
    arousal_reactivity_mm: float    # dilation per unit arousal (arousal in [-1, 1])
    light_reactivity_mm: float      # constriction from luminance 0 to 1
    pupil_latency_s: float          # light reflex latency
    hippus_mm: float                # RMS of slow pupil fluctuation
    blink_rate_per_min: float       # calm baseline
    blink_duration_ms: float        # median blink (both pupils lost)
    fixation_mean_ms: float
    saccade_amplitude_deg: float    # mean amplitude
    saccade_vmax_deg_s: float       # main-sequence asymptote
    offscreen_prob: float           # chance a saccade leaves the display
    expressivity: float             # scales facial expression intensity
    emotional_reactivity: float     # scales how strongly emotions act on the eyes
    elicitation_rate: float         # chance a clip elicits its intended category
    sam_label_accuracy: float       # chance the self-reported category equals the felt one
    sam_noise: float                # SD of self-reported valence/arousal (in [-1, 1] units)
    precision_deg: float            # tracker RMS sample-to-sample noise
    accuracy_deg: float             # tracker systematic offset magnitude
    loss_rate_per_min: float        # tracking-loss episodes
    head_distance_mm: float
    head_x_mm: float
    head_y_mm: float
    ipd_mm: float
    light_gain: float               # mean illumination of the face
    light_gradient: float           # mean left/right illumination imbalance

    def to_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def draw_traits(seed: int, participant: str) -> PhantomTraits:
    """Draw the traits of participant ``participant`` in the population seeded by ``seed``."""
    r = generator(seed, participant, 0)
    u = r.uniform
    return PhantomTraits(
        pupil_baseline_mm=u(2.9, 4.3),
        anisocoria_mm=float(np.clip(r.normal(0.0, 0.07), -0.15, 0.15)),
        arousal_reactivity_mm=u(0.25, 0.55),
        light_reactivity_mm=u(0.7, 1.4),
        pupil_latency_s=u(0.2, 0.3),
        hippus_mm=u(0.03, 0.08),
        blink_rate_per_min=u(12.0, 20.0),
        blink_duration_ms=u(110.0, 170.0),
        fixation_mean_ms=u(240.0, 340.0),
        saccade_amplitude_deg=u(3.5, 6.0),
        saccade_vmax_deg_s=u(450.0, 650.0),
        offscreen_prob=u(0.01, 0.04),
        expressivity=u(0.65, 1.1),
        emotional_reactivity=u(0.7, 1.3),
        elicitation_rate=u(0.7, 0.88),
        sam_label_accuracy=u(0.75, 0.92),
        sam_noise=u(0.08, 0.18),
        precision_deg=u(0.05, 0.2),
        accuracy_deg=u(0.3, 0.5),
        loss_rate_per_min=u(0.5, 3.0),
        head_distance_mm=u(550.0, 700.0),
        head_x_mm=r.normal(0.0, 25.0),
        head_y_mm=u(220.0, 300.0),
        ipd_mm=u(58.0, 70.0),
        light_gain=u(0.8, 1.1),
        light_gradient=u(-0.3, 0.3),
    )
