"""Emotion label maps shared by sessions, training and the live view (DESIGN sec. 10).

* 7-class (ER7 / FER7): :data:`ER7_CLASSES`, in this fixed order; class indices everywhere in the
  project (model heads, ``predictions.tsv``, training targets) follow it.
* 3-class (ER3): :data:`ER3_CLASSES`; happiness, surprise -> positive; sadness, fear, disgust,
  anger -> negative; neutral -> neutral.
* Valence / arousal in [-1, 1]; a Self-Assessment Manikin 9-point answer ``x`` maps to
  ``(x - 5) / 4`` (:func:`sam_to_unit`).
* :data:`VA_ANCHORS`: per-category (valence, arousal) anchors from Russell & Mehrabian (1977).
  **These are mean ratings of emotion *words* (pleasure/arousal dimensions of the PAD model,
  rescaled to [-1, 1]), not ratings of faces or of our stimulus clips.** They are used only where a
  valence/arousal estimate has to be derived from class probabilities (:func:`va_from_probs`,
  e.g. a FER-only model or auto-annotation), and as the default *intended* valence/arousal of the
  placeholder stimuli.

References
----------
Russell, J. A., & Mehrabian, A. (1977). Evidence for a three-factor theory of emotions.
Journal of Research in Personality, 11(3), 273-294.
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple, Union

import numpy as np

from .errors import ConfigError

__all__ = [
    "ER7_CLASSES", "ER3_CLASSES", "ER7_TO_ER3", "VA_ANCHORS", "VA_ANCHOR_ARRAY",
    "validate_category", "category_index", "to_er3", "sam_to_unit", "va_from_probs",
    "er3_probs_from_er7",
]

#: The 7 emotion categories, in the project's fixed class order.
ER7_CLASSES: Tuple[str, ...] = (
    "happiness", "sadness", "fear", "surprise", "disgust", "anger", "neutral",
)

#: The 3 coarse classes, in the project's fixed class order.
ER3_CLASSES: Tuple[str, ...] = ("positive", "negative", "neutral")

#: 7-class -> 3-class mapping (DESIGN sec. 10).
ER7_TO_ER3: Dict[str, str] = {
    "happiness": "positive",
    "surprise": "positive",
    "sadness": "negative",
    "fear": "negative",
    "disgust": "negative",
    "anger": "negative",
    "neutral": "neutral",
}

#: (valence, arousal) anchors per category from Russell & Mehrabian (1977): ratings of emotion
#: *words*, not faces (see the module docstring).
VA_ANCHORS: Dict[str, Tuple[float, float]] = {
    "happiness": (0.81, 0.51),
    "sadness": (-0.63, -0.27),
    "fear": (-0.64, 0.60),
    "surprise": (0.40, 0.67),
    "disgust": (-0.60, 0.35),
    "anger": (-0.51, 0.59),
    "neutral": (0.0, 0.0),
}

#: The anchors as a (7, 2) float array in :data:`ER7_CLASSES` order (read-only).
VA_ANCHOR_ARRAY = np.array([VA_ANCHORS[c] for c in ER7_CLASSES], dtype=np.float64)
VA_ANCHOR_ARRAY.setflags(write=False)

_ER3_MATRIX = np.zeros((len(ER7_CLASSES), len(ER3_CLASSES)), dtype=np.float64)
for _i, _c in enumerate(ER7_CLASSES):
    _ER3_MATRIX[_i, ER3_CLASSES.index(ER7_TO_ER3[_c])] = 1.0
_ER3_MATRIX.setflags(write=False)


def validate_category(name: object, *, what: str = "emotion category") -> str:
    """Return ``name`` if it is one of :data:`ER7_CLASSES`, else raise :class:`ConfigError`.

    Parameters
    ----------
    name : object
        The candidate category (exact, lower-case spelling).
    what : str
        How the value is called in the error message (e.g. ``"SAM emotion"``).

    Returns
    -------
    str
        ``name`` unchanged.
    """
    if not isinstance(name, str) or name not in ER7_TO_ER3:
        raise ConfigError(
            f"unknown {what} {name!r}: use one of {', '.join(ER7_CLASSES)}"
        )
    return name


def category_index(name: str) -> int:
    """Index of a 7-class category in :data:`ER7_CLASSES` (raises :class:`ConfigError`)."""
    return ER7_CLASSES.index(validate_category(name))


def to_er3(category: str) -> str:
    """Map a 7-class category to its 3-class label (positive / negative / neutral)."""
    return ER7_TO_ER3[validate_category(category)]


def sam_to_unit(x: Union[int, float]) -> float:
    """Map a 9-point SAM rating (1..9) to [-1, 1] as ``(x - 5) / 4``.

    Parameters
    ----------
    x : int or float
        A rating in [1, 9].

    Returns
    -------
    float
        ``-1.0`` for 1, ``0.0`` for 5, ``1.0`` for 9.
    """
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ConfigError(f"a SAM rating must be a number from 1 to 9, got {x!r}")
    xf = float(x)
    if not (1.0 <= xf <= 9.0):
        raise ConfigError(f"a SAM rating must be from 1 to 9, got {x!r}")
    return (xf - 5.0) / 4.0


def _as_prob_array(probs: Union[Sequence[float], Mapping[str, float], np.ndarray]) -> np.ndarray:
    if isinstance(probs, Mapping):
        unknown = sorted(set(probs) - set(ER7_CLASSES))
        if unknown:
            raise ConfigError(
                f"unknown categories {unknown} in probabilities: use {', '.join(ER7_CLASSES)}"
            )
        return np.array([float(probs.get(c, 0.0)) for c in ER7_CLASSES], dtype=np.float64)
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != len(ER7_CLASSES):
        raise ConfigError(
            f"7-class probabilities need a last axis of length 7 ({', '.join(ER7_CLASSES)}), "
            f"got shape {arr.shape}"
        )
    return arr


def va_from_probs(probs: Union[Sequence[float], Mapping[str, float], np.ndarray], *,
                  normalize: bool = True) -> np.ndarray:
    """Probability-weighted valence/arousal from 7-class probabilities.

    ``va = sum_c p_c * anchor_c`` with the Russell & Mehrabian (1977) anchors
    (:data:`VA_ANCHORS`), which are ratings of emotion words, not faces: treat the result as a
    coarse estimate, not a measurement.

    Parameters
    ----------
    probs : array-like (..., 7) or mapping category -> probability
        Class probabilities in :data:`ER7_CLASSES` order (a mapping may omit categories: 0).
    normalize : bool
        Divide by the sum of the probabilities first (rows summing to 0 give NaN).

    Returns
    -------
    numpy.ndarray
        Shape ``(..., 2)``: valence, arousal in [-1, 1].
    """
    p = _as_prob_array(probs)
    if np.any(p < 0):
        raise ConfigError("probabilities must not be negative")
    if normalize:
        s = p.sum(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = p / s
    return p @ VA_ANCHOR_ARRAY


def er3_probs_from_er7(probs: Union[Sequence[float], np.ndarray]) -> np.ndarray:
    """Sum 7-class probabilities (..., 7) into 3-class probabilities (..., 3)."""
    return _as_prob_array(probs) @ _ER3_MATRIX
