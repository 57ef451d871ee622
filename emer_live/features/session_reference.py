"""Per-session running reference of the eye and fixation features (``--eye-reference session``).

People differ in pupil size, blink rate and fixation habits far more than one person's eyes
change between emotions, so a model fed raw eye features across participants learns who is
watching rather than what they feel. The session reference z-scores each eye/fixation feature
by the statistics of *this* session so far:

    x_ref = (x - session_mean) / session_sd

The statistics are accumulated causally, the same way live and offline: the session's gaze is
cut into non-overlapping reference windows of ``REFERENCE_WINDOW_S`` seconds on a fixed grid
(``origin + k * 8 s``: the live engine's origin when the session ran one, else the first gaze
sample), each built by the ordinary window builder (32 steps of 0.25 s, no face), and every
valid step of a window whose end is at or before ``t`` counts for a sample that ends at ``t``.
The baseline phase comes first in a session, so by the first stimulus the reference holds a
minute of the person's resting eye behaviour; until ``MIN_VALID_STEPS`` valid steps are in,
there is no reference and the eyes are not used (the window is scored face-only and says so).
"""

from __future__ import annotations

import bisect
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .normalise import RunningStats  # noqa: F401  (re-exported: the tests and callers use it here)

__all__ = ["reference_kind", "REFERENCE_WINDOW_S", "MIN_VALID_STEPS", "SESSION_REFERENCE", "RunningStats", "SessionReference",
           "apply_reference", "reference_series"]

REFERENCE_WINDOW_S = 8.0
MIN_VALID_STEPS = 64           # 16 s of valid gaze at 0.25 s steps
_SD_FLOOR = 1e-3               # below: only centre (constant features must not explode)

#: ``norm_stats["reference"]`` of a checkpoint trained with ``--eye-reference session``.
SESSION_REFERENCE: Dict[str, object] = {
    "kind": "session_running",
    "window_s": REFERENCE_WINDOW_S,
    "min_valid_steps": MIN_VALID_STEPS,
    "definition": "per feature, (x - mean) / sd over the valid steps of the session's non-overlapping 8 s "
                  "reference windows (grid from the live origin or the first gaze sample) that ended at or "
                  "before the sample's end; no reference (eyes unused) before 64 valid steps",
}


def reference_kind(norm_stats) -> str:
    """``"none"``, ``"baseline"`` (``--eye-reference baseline``) or ``"session"`` (this module):
    the eye reference a checkpoint's ``norm_stats`` say its inputs need."""
    ref = norm_stats.get("reference") if isinstance(norm_stats, dict) else None
    kind = ref.get("kind") if isinstance(ref, dict) else None
    return {"session_baseline": "baseline", SESSION_REFERENCE["kind"]: "session"}.get(kind, "none")


class SessionReference:
    """The running reference of one session, fed with reference windows in time order.

    Parameters
    ----------
    builder : WindowBuilder
        Builds the reference windows; its spec should be ``WindowSpec(window_s=8, hop_s=8)``
        and it needs no face (``use_face=False``).
    origin_us : int
        Grid origin: reference windows end at ``origin + k * 8 s``, k >= 1.
    """

    def __init__(self, builder, origin_us: int, *, min_valid_steps: int = MIN_VALID_STEPS) -> None:
        self.builder = builder
        self.origin_us = int(origin_us)
        self.window_us = int(round(REFERENCE_WINDOW_S * 1e6))
        self.min_valid_steps = int(min_valid_steps)
        self.eye = RunningStats(39)
        self.fixation = RunningStats(2)
        self.next_end_us = self.origin_us + self.window_us
        self.windows = 0
        # (end of the last window included, reference) after each window: a window scored late
        # (a whole trial scored after its offset) still gets the reference as of its own end
        self._ends: List[int] = []
        self._snapshots: List[Optional[Tuple[np.ndarray, ...]]] = []

    def advance(self, t_us: int) -> int:
        """Add every reference window ending at or before ``t_us``; returns how many were added."""
        added = 0
        while self.next_end_us <= t_us:
            w = self.builder.build(self.next_end_us, t_start_us=self.next_end_us - self.window_us)
            self.eye.add(w.eye, w.eye_mask)
            self.fixation.add(w.fixation, w.fixation_mask)
            self._ends.append(self.next_end_us)
            self._snapshots.append(self._current())
            self.next_end_us += self.window_us
            self.windows += 1
            added += 1
        return added

    def _current(self) -> Optional[Tuple[np.ndarray, ...]]:
        e = self.eye.mean_sd(self.min_valid_steps)
        f = self.fixation.mean_sd(self.min_valid_steps)
        if e is None or f is None:
            return None
        return e[0], e[1], f[0], f[1]

    def at(self, t_us: int) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """``(eye_mean, eye_sd, fixation_mean, fixation_sd)`` from the reference windows that
        ended at or before ``t_us`` (advancing to ``t_us`` first), or None before enough valid steps."""
        self.advance(t_us)
        k = bisect.bisect_right(self._ends, int(t_us)) - 1
        return self._snapshots[k] if k >= 0 else None


def reference_series(builder, origin_us: int, t_ends_us: Sequence[int]) -> Dict[str, np.ndarray]:
    """The session reference at each of ``t_ends_us`` (offline, in one pass over the session).

    Returns ``eye_mean``/``eye_sd`` ``(N, 39)`` and ``fixation_mean``/``fixation_sd`` ``(N, 2)``,
    NaN for samples that end before the reference has enough valid steps.
    """
    t_ends = np.asarray(t_ends_us, np.int64)
    out = {"eye_mean": np.full((len(t_ends), 39), np.nan, np.float32),
           "eye_sd": np.full((len(t_ends), 39), np.nan, np.float32),
           "fixation_mean": np.full((len(t_ends), 2), np.nan, np.float32),
           "fixation_sd": np.full((len(t_ends), 2), np.nan, np.float32)}
    ref = SessionReference(builder, origin_us)
    for i in np.argsort(t_ends, kind="stable"):
        cur = ref.at(int(t_ends[i]))
        if cur is not None:
            out["eye_mean"][i], out["eye_sd"][i], out["fixation_mean"][i], out["fixation_sd"][i] = cur
    return out


def apply_reference(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``(x - mean) / sd`` per feature (``sd`` below a floor: only centred), float32.

    ``mean``/``sd`` are ``(F,)`` or ``(N, F)`` for ``x`` ``(N, T, F)``.
    """
    mean = np.asarray(mean, np.float32)
    sd = np.asarray(sd, np.float32)
    if mean.ndim == 2:
        mean, sd = mean[:, None, :], sd[:, None, :]
    sd = np.where(sd < _SD_FLOOR, 1.0, sd).astype(np.float32)
    return ((np.asarray(x, np.float32) - mean) / sd).astype(np.float32)
