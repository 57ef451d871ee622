"""The :class:`Prediction` record the live engine publishes, the emotion gap, and the log file.

Imports without torch: the GUI and analysis tools read predictions without the model.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..labels import ER3_CLASSES, ER7_CLASSES, er3_probs_from_er7, va_from_probs

__all__ = ["Prediction", "js_divergence", "emotion_gap", "PredictionLog", "PREDICTION_COLUMNS"]

#: A top class counts as "confident" above this probability (for the ``disagree`` flag).
CONFIDENT = 0.4


def js_divergence(p, q) -> float:
    """Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))


def emotion_gap(er7, fer7, er_valence: float, fer_valence: float) -> Dict[str, object]:
    """The gap between what face+eyes reveal (ER) and what the face shows (FER)."""
    er7, fer7 = np.asarray(er7), np.asarray(fer7)
    i, j = int(er7.argmax()), int(fer7.argmax())
    return {"jsd": js_divergence(er7, fer7), "valence_diff": float(er_valence - fer_valence),
            "disagree": bool(i != j and er7[i] >= CONFIDENT and fer7[j] >= CONFIDENT)}


@dataclass
class Prediction:
    kind: str                         # "window" | "trial"
    t_start_us: int
    t_end_us: int
    trial: int
    checkpoint: str
    er7: List[float]
    er3: List[float]
    er_va: List[float]                # valence, arousal in [-1, 1]
    fer7: Optional[List[float]]
    fer3: Optional[List[float]]
    fer_va: Optional[List[float]]
    fer_intensity: Optional[float]
    gap: Optional[Dict[str, object]]
    modalities: Dict[str, bool]
    quality: Dict[str, float]
    latency_ms: Dict[str, float] = field(default_factory=dict)
    va_source: str = "head"           # "head" or "anchors" (probability-weighted R&M anchors)
    er_from_face: bool = False        # face fallback: ER taken from the face alone (it was sure)
    fer_source: str = ""              # where fer7 came from: "emert" (its FER head), a pretrained
                                      # model ("fer_mini_xception:<id>"), "" when there is no FER
    stalled: str = ""                 # live: streams assembled without waiting for (they had
                                      # stalled), comma-separated; "" = every stream complete
    inputs: Dict[str, int] = field(default_factory=dict)   # n_gaze, eye_crc, face_crc: what the
                                      # window held (engine.window_inputs), to compare with a replay

    @property
    def er_top(self) -> str:
        return ER7_CLASSES[int(np.argmax(self.er7))]

    @property
    def fer_top(self) -> Optional[str]:
        return None if self.fer7 is None else ER7_CLASSES[int(np.argmax(self.fer7))]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["er_top"], d["fer_top"] = self.er_top, self.fer_top
        # each line names the order of its probability lists (er7/fer7, er3/fer3)
        d["classes"] = {"7": list(ER7_CLASSES), "3": list(ER3_CLASSES)}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, default=float)

    def compact(self, t0_us: Optional[int] = None) -> str:
        """One line for a terminal; time in seconds since ``t0_us`` (the run's start) if given."""
        t = (self.t_end_us - (t0_us or 0)) / 1e6
        gap = "-" if self.gap is None else f"{self.gap['jsd']:.2f}{'!' if self.gap['disagree'] else ''}"
        used = "".join(c if self.modalities.get(m) else "." for c, m in (("F", "face"), ("E", "eye"), ("X", "fixation")))
        used += ", ER face" if self.er_from_face else ""
        used += f", without {self.stalled} (stalled)" if self.stalled else ""
        return (f"t={t:8.2f}s {'trial ' + str(self.trial) if self.kind == 'trial' else 'win':>8} "
                f"ER {self.er_top:<9} {max(self.er7):.2f}  FER {str(self.fer_top):<9} "
                f"{'' if self.fer7 is None else f'{max(self.fer7):.2f}'}  gap {gap:<5} [{used}] "
                f"lat {self.latency_ms.get('total', float('nan')):.0f} ms")


def _vals(x, n):
    return [float("nan")] * n if x is None else [float(v) for v in x]


PREDICTION_COLUMNS = (
    ["kind", "t_start_us", "t_end_us", "trial", "checkpoint", "er_top", "fer_top"]
    + [f"er7_{c}" for c in ER7_CLASSES] + [f"fer7_{c}" for c in ER7_CLASSES]
    + [f"er3_{c}" for c in ER3_CLASSES] + [f"fer3_{c}" for c in ER3_CLASSES]
    + ["er_valence", "er_arousal", "fer_valence", "fer_arousal", "fer_intensity", "va_source",
       "gap_jsd", "gap_valence", "disagree", "used_face", "used_eye", "used_fixation",
       "valid_gaze_fraction", "face_found_fraction",
       "lat_assemble_ms", "lat_features_ms", "lat_model_ms", "lat_total_ms", "er_from_face", "fer_source",
       "lat_wait_ms", "stalled", "n_gaze", "eye_crc", "face_crc"]
)


def _fmt(v) -> str:
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.6g}"
    return str(v)


class PredictionLog:
    """Appends predictions to ``predictions.tsv`` (append-only, flushed per row, header once)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            head = self.path.open(encoding="utf-8").readline().rstrip("\n").split("\t")
            if head != PREDICTION_COLUMNS:
                from ..errors import SessionFormatError

                raise SessionFormatError(f"{self.path}: exists with other columns; refusing to append")
        self._f = open(self.path, "a", encoding="utf-8", newline="\n")
        if new:
            self._f.write("\t".join(PREDICTION_COLUMNS) + "\n")
            self._f.flush()
        self._lock = threading.Lock()

    def write(self, p: Prediction) -> None:
        g = p.gap or {}
        row = ([p.kind, p.t_start_us, p.t_end_us, p.trial, p.checkpoint, p.er_top, p.fer_top or ""]
               + _vals(p.er7, 7) + _vals(p.fer7, 7) + _vals(p.er3, 3) + _vals(p.fer3, 3)
               + _vals(p.er_va, 2) + _vals(p.fer_va, 2) + [p.fer_intensity, p.va_source,
                                                           g.get("jsd"), g.get("valence_diff"), g.get("disagree")]
               + [p.modalities.get("face", False), p.modalities.get("eye", False), p.modalities.get("fixation", False)]
               + [p.quality.get("valid_gaze_fraction"), p.quality.get("face_found_fraction")]
               + [p.latency_ms.get(k) for k in ("assemble", "features", "model", "total")] + [p.er_from_face]
               + [p.fer_source, p.latency_ms.get("wait"), p.stalled]
               + [p.inputs.get(k, -1) for k in ("n_gaze", "eye_crc", "face_crc")])
        line = "\t".join(_fmt(v) for v in row) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()

    def close(self) -> None:
        with self._lock:
            self._f.close()
