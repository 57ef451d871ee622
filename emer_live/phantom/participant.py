"""The synthetic participant: an emotional state over time, the eyes and the face that follow it.

A :class:`Phantom` holds one *timeline* of segments. A segment is either a stimulus **trial**
(between :meth:`Phantom.begin_trial` and :meth:`Phantom.end_trial`) or a **free-running
segment** (10-15 s, cycling through a seeded order of the seven emotions) that fills the time
when no trial runs, so a recording with synthetic devices and no session controller still holds
varied data. The first free segment after a trial is a neutral recovery segment. Free segments
have ``trial = -1``; every trial and segment has a running ``segment`` number.

Each segment draws its truth (felt emotion, valence/arousal, displayed expression, mask) and its
own random generators from ``(seed, participant, trial)`` (trials) or ``(seed, participant,
segment)`` (free segments), so a session regenerates from the seed and the trial start/end
times (which events.tsv records). Within a segment the felt state approaches its target with a
time constant of a few seconds, starting from where the previous segment left it.

The oculomotor timeline is a chain of fixations and saccades plus two overlay processes, blinks
and tracking loss. Events are generated lazily, in time order, as consumers ask for later times;
per-sample noise is a hash of the sample time, so a sample's value does not depend on how the
samples were chunked. Gaze and face read the *same* blink timeline: the face's eyes are closed
while the tracker reports a blink.

Changes of state take effect after the latest time anyone has already read (the "horizon"):
``begin_trial(t)`` with ``t`` at or before a sample already generated starts the trial one
microsecond after that sample instead (the returned :class:`TrialTruth` says when), so what was
delivered is never contradicted by the truth. In practice that shifts starts by < 10 ms.

Thread safety: every public method takes one re-entrant lock; the tracker, the camera and the
session controller may call from different threads.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError, EmerError
from ..geometry import DEFAULT_DISPLAY, DisplayGeometry
from ..schema import GAZE_DTYPE
from . import _random as R
from ._tables import (BLINK_DTYPE, FIXATION, LOSS_BOTH, LOSS_DTYPE, LOSS_LEFT, LOSS_RIGHT, OCULAR_DTYPE,
                      SACCADE, Table)
from .face_state import EMOTIONS7, FaceState
from .traits import (DOMINANCE_ANCHORS, EYE_EFFECTS, NEIGHBOURS, VA_ANCHORS, PhantomTraits, draw_traits)
from .truth import TruthWriter

__all__ = ["Phantom", "TrialTruth", "TRACKBOX"]

_US = 1_000_000
_TAN1 = math.tan(math.radians(1.0))
# Approximate track box (UCS mm): x +-200, y 100..420, z 450..850. Track-box coordinates are
# normalised 0..1 from its top-right corner nearest the tracker (x grows to the user's left,
# y downward, z away from the tracker), as in the Tobii SDK documentation.
TRACKBOX = {"x_half": 200.0, "y_top": 420.0, "y_bottom": 100.0, "z_near": 450.0, "z_far": 850.0}
_DROPOUT_P = 0.002          # isolated invalid samples per eye
_LID_EDGE = 0.6             # lid closure at which the tracker loses the pupil
_LID_REOPEN_US = 60_000     # lid still reopening after the pupil is found again
_FREE_MIN_S, _FREE_MAX_S = 10.0, 15.0
_BLINK_MIN_US, _BLINK_MAX_US = 80_000, 420_000
_FIX_MIN_MS, _FIX_MAX_MS = 150.0, 600.0
_EYE_FLOAT_FIELDS = (
    "gaze_point_on_display_area_x", "gaze_point_on_display_area_y", "gaze_point_in_user_coordinate_system_x",
    "gaze_point_in_user_coordinate_system_y", "gaze_point_in_user_coordinate_system_z", "pupil_diameter",
    "gaze_origin_in_user_coordinate_system_x", "gaze_origin_in_user_coordinate_system_y",
    "gaze_origin_in_user_coordinate_system_z", "gaze_origin_in_trackbox_coordinate_system_x",
    "gaze_origin_in_trackbox_coordinate_system_y", "gaze_origin_in_trackbox_coordinate_system_z",
)


@dataclass(frozen=True)
class TrialTruth:
    """The truth of one trial or free-running segment.

    ``t_end_us`` is None while the trial runs. ``intensity`` is the peak displayed-expression
    intensity (0..1; multiply by 3 for the FER intensity scale).
    """

    kind: str                       # "trial" | "segment"
    trial: int                      # trial number, -1 for free-running segments
    segment: int                    # running number over the whole timeline
    t_start_us: int
    t_end_us: Optional[int]
    true_emotion: str
    displayed_expression: str
    masked: bool
    valence: float
    arousal: float
    intensity: float
    category: Optional[str] = None
    stimulus_id: Optional[str] = None

    def row(self) -> dict:
        """This truth as a ``truth.tsv`` row dict."""
        return {"kind": self.kind, "trial": self.trial, "segment": self.segment, "t_start_us": self.t_start_us,
                "t_end_us": self.t_end_us, "true_emotion": self.true_emotion,
                "displayed_expression": self.displayed_expression, "masked": int(self.masked),
                "valence": self.valence, "arousal": self.arousal, "intensity": self.intensity,
                "category": self.category, "stimulus_id": self.stimulus_id}


@dataclass
class _Segment:
    index: int
    kind: str
    trial: int
    t_start: int
    planned_end: Optional[int]
    category: Optional[str]
    stimulus_id: Optional[str]
    true_emotion: str
    displayed: str
    masked: bool
    valence: float
    arousal: float
    intensity: float
    tau_state_us: float
    tau_face_us: float
    transition_us: float
    a_target: float
    m_target: np.ndarray
    strength: float
    sam_ss: np.random.SeedSequence
    rng_oc: np.random.Generator
    rng_bl: np.random.Generator
    rng_lo: np.random.Generator
    # filled by the timeline
    a0: float = 0.0
    m0: np.ndarray = field(default_factory=lambda: np.ones(5))
    prev_displayed: str = "neutral"
    prev_intensity: float = 0.0
    t_end: Optional[int] = None
    t_requested: int = 0
    bl_next: int = 0
    lo_next: int = 0
    sam: Optional[dict] = None

    def truth(self) -> TrialTruth:
        return TrialTruth(kind=self.kind, trial=self.trial, segment=self.index, t_start_us=self.t_start,
                          t_end_us=self.t_end, true_emotion=self.true_emotion,
                          displayed_expression=self.displayed, masked=self.masked,
                          valence=round(self.valence, 4), arousal=round(self.arousal, 4),
                          intensity=round(self.intensity, 4), category=self.category,
                          stimulus_id=self.stimulus_id)


def _min_jerk(s: np.ndarray) -> np.ndarray:
    return s * s * s * (10.0 - 15.0 * s + 6.0 * s * s)


def _soft_clamp_pupil(raw: np.ndarray) -> np.ndarray:
    # Iris mechanics saturate: keep diameters inside 2.5..5 mm, linear near the middle.
    return 3.75 + 1.25 * np.tanh((raw - 3.75) / 1.25)


class Phantom:
    """A synthetic participant whose eyes, face and self-reports follow a known emotional state.

    Parameters
    ----------
    seed : int
        Population seed (>= 0). With ``participant`` it determines everything.
    participant : str
        Participant pseudonym; different pseudonyms are different people.
    mask_rate : float
        Probability (0..1) that a trial's face masks the felt emotion, usually with a social smile
        (low-intensity happiness), otherwise with a neutral face.
    display : DisplayGeometry
        The display the phantom looks at (the tracker's display area).

    Notes
    -----
    Time starts at the first time anyone asks about (a gaze sample, a face state, a trial
    start); earlier times get the state at that origin. All times are session-clock
    microseconds (int).
    """

    def __init__(self, *, seed: int, participant: str, mask_rate: float = 0.4,
                 display: DisplayGeometry = DEFAULT_DISPLAY) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"phantom seed must be a non-negative integer, got {seed!r}")
        if not isinstance(participant, str) or not participant.strip() or any(c in participant for c in "\t\n\r/\\"):
            raise ConfigError(f"phantom participant must be a non-empty pseudonym without tabs, newlines or "
                              f"slashes, got {participant!r}")
        if not 0.0 <= float(mask_rate) <= 1.0:
            raise ConfigError(f"phantom mask_rate must be within 0..1, got {mask_rate!r}")
        if not isinstance(display, DisplayGeometry):
            raise ConfigError("phantom display must be a DisplayGeometry")
        self.seed = int(seed)
        self.participant = participant
        self.mask_rate = float(mask_rate)
        self.display = display
        self.traits: PhantomTraits = draw_traits(self.seed, participant)
        self._lock = threading.RLock()
        self._W = display.width_mm
        self._H = display.height_mm
        self._mmpd = self.traits.head_distance_mm * _TAN1
        self._noise_key = R.participant_key(participant) ^ (self.seed * 0x5851F42D)

        r = R.generator(self.seed, participant, 3)
        # how strongly each emotion's eye effects show in this person (per emotion, per effect)
        self._effect_gain = {e: r.uniform(0.6, 1.4, 5) for e in EMOTIONS7}
        self._cycle = [EMOTIONS7[i] for i in r.permutation(7)]
        ang = r.uniform(0.0, 2.0 * np.pi, 2)
        mag = self.traits.accuracy_deg * r.uniform(0.85, 1.15, 2)
        self._acc_deg = np.stack([mag * np.cos(ang), mag * np.sin(ang)], axis=1)  # (eye, [h, v])
        t = self.traits
        self._hx = R.SmoothNoise(r, rms=8.0, f_lo=0.005, f_hi=0.08)
        self._hy = R.SmoothNoise(r, rms=5.0, f_lo=0.005, f_hi=0.08)
        self._hz = R.SmoothNoise(r, rms=15.0, f_lo=0.003, f_hi=0.05)
        self._yaw = R.SmoothNoise(r, rms=3.0, f_lo=0.01, f_hi=0.2)
        self._pitch = R.SmoothNoise(r, rms=2.5, f_lo=0.01, f_hi=0.2)
        self._roll = R.SmoothNoise(r, rms=1.5, f_lo=0.01, f_hi=0.15)
        self._hippus = R.SmoothNoise(r, rms=t.hippus_mm, f_lo=0.05, f_hi=0.6)
        self._hippus_eye = [R.SmoothNoise(r, rms=0.01, f_lo=0.05, f_hi=0.6) for _ in range(2)]
        self._light = R.SmoothNoise(r, rms=0.08, f_lo=0.002, f_hi=0.03)
        self._gradient = R.SmoothNoise(r, rms=0.12, f_lo=0.002, f_hi=0.03)
        self._face_fluct = R.SmoothNoise(r, rms=0.06, f_lo=0.1, f_hi=0.8)
        # everything a gaze sample needs, evaluated at once
        self._bank = R.SmoothBank([self._hx, self._hy, self._hz, self._yaw, self._roll, self._hippus,
                                   *self._hippus_eye])
        self._dev_offset = int(r.integers(10**9, 5 * 10**10))
        self._dev_ppm = float(r.uniform(12.0, 28.0))

        self._origin: Optional[int] = None
        self._horizon: Optional[int] = None
        self._segments: List[_Segment] = []
        self._seg_starts = np.zeros(0, np.int64)
        self._seg_trials: List[int] = []
        self._seg_params = np.zeros((0, 4))    # t_start, tau_state, a0, a_target
        self._active: Optional[_Segment] = None
        self._free_count = 0
        self._cycle_pos = 0
        self._trials: Dict[int, _Segment] = {}
        self._oc = Table(OCULAR_DTYPE)
        self._bl = Table(BLINK_DTYPE)
        self._lo = Table(LOSS_DTYPE)
        self._lum_t = Table([("t", np.int64), ("value", np.float64), ("delta", np.float64)])
        self._rows: List[dict] = []
        self._queued = {"oc": 0, "bl": 0, "lo": 0}
        self._writer: Optional[TruthWriter] = None
        self._rows_written = 0
        self._finished_at: Optional[int] = None
        self._epoch = 0   # bumped by every change that can alter samples after the horizon
        self._targets: List[Tuple[int, int, float, float]] = []   # (from, until, x, y): look_at

    # ================================================================== public: targets
    def look_at(self, x: float, y: float, t_us: int, until_us: int) -> None:
        """From ``t_us`` to ``until_us`` the participant looks at the display point ``(x, y)``
        (0..1, a calibration or validation target): once the running fixation or saccade ends
        and a saccadic latency has passed, a main-sequence saccade to it, then fixations on it
        with small drift. The tracker's accuracy and precision errors of this person still apply
        (that is what a validation measures)."""
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0) or until_us <= t_us:
            raise ValueError("look_at: x, y in 0..1 and until_us > t_us")
        with self._lock:
            if self._origin is None:
                self._ensure(int(t_us))
            b = max(int(t_us), self._horizon + 1)
            self._extend(b - 1)
            self._oc.truncate_from(b)        # look-ahead events from b on are replaced
            self._targets = [tg for tg in self._targets if tg[1] > b - 10_000_000]   # keep it short
            self._targets.append((b, int(until_us), float(x), float(y)))
            self._epoch += 1

    def _target_at(self, t: int):
        for tg in reversed(self._targets):
            if tg[0] <= t < tg[1]:
                return tg
        return None

    def _target_next(self, seg: _Segment, t0: int, u: float, v: float) -> bool:
        """The next ocular event while a target is shown; False when none is shown at ``t0``."""
        tg = self._target_at(t0)
        if tg is None:
            return False
        tb, te, x, y = tg
        W, H, mmpd = self._W, self._H, self._mmpd
        U, V = x * W, y * H
        r = seg.rng_oc
        latency = 150_000 + int(r.gamma(4.0, 12_000.0))     # saccadic reaction time, ~200 ms
        if math.hypot(U - u, V - v) / mmpd > 0.6:
            if t0 < tb + latency:            # still reacting: hold the current position
                self._oc.append(t0, tb + latency, FIXATION, u, v, u, v, seg.index)
                return True
            # land near the target (a small undershoot, as saccades do), corrected by the next one
            err = r.normal(0.0, 0.3, 2) * mmpd
            u1, v1 = U + 0.05 * (u - U) + err[0], V + 0.05 * (v - V) + err[1]
            amp = math.hypot(u1 - u, v1 - v) / mmpd
            vpeak = self.traits.saccade_vmax_deg_s * (1.0 - math.exp(-max(amp, 0.05) / 7.0))
            dur_ms = float(np.clip(1.875 * max(amp, 0.05) / vpeak * 1000.0, 12.0, 150.0))
            self._oc.append(t0, t0 + int(dur_ms * 1000), SACCADE, u, v, u1, v1, seg.index)
            return True
        d = int(min(max(te - t0, 20_000), r.gamma(4.0, 80_000.0) + 100_000))
        drift = r.normal(0.0, 0.15, 2) * mmpd * d / 1e6
        self._oc.append(t0, t0 + d, FIXATION, u, v, u + drift[0], v + drift[1], seg.index)
        return True

    # ================================================================== public: trials
    def begin_trial(self, trial: int, t_us: int, *, category: Optional[str] = None,
                    stimulus_id: Optional[str] = None) -> TrialTruth:
        """Start trial ``trial`` at ``t_us`` (ends an active trial first).

        Parameters
        ----------
        trial : int
            Trial number (>= 0); seeds the trial's truth and random generators.
        t_us : int
            Start on the session clock. Moved to just after the latest generated sample if that
            is later (see the module notes); the returned truth holds the effective start.
        category : str, optional
            The stimulus category (one of EMOTIONS7). The felt emotion is usually this, sometimes
            another one; without a category the felt emotion is drawn uniformly.
        stimulus_id : str, optional
            Copied into the truth.

        Returns
        -------
        TrialTruth
            Felt emotion, displayed expression, mask flag, valence/arousal and effective start.
        """
        if isinstance(trial, bool) or not isinstance(trial, (int, np.integer)) or trial < 0:
            raise ConfigError(f"trial must be a non-negative integer, got {trial!r}")
        if category is not None and category not in EMOTIONS7:
            raise ConfigError(f"unknown stimulus category {category!r}; expected one of {', '.join(EMOTIONS7)}")
        if stimulus_id is not None and (not isinstance(stimulus_id, str) or any(c in stimulus_id for c in "\t\n\r")):
            raise ConfigError(f"stimulus_id must be a string without tabs or newlines, got {stimulus_id!r}")
        t_us = self._check_time(t_us)
        with self._lock:
            if self._active is not None:
                self._end_active(t_us)
            elif self._origin is not None:
                self._ensure(t_us - 1)     # free segments planned before the start run their course
            spec = self._trial_spec(int(trial), category, stimulus_id)
            seg = self._start_segment(t_us, spec)
            self._active = seg
            self._epoch += 1
            self._trials[int(trial)] = seg
            self._write_pending(force_flush=True)
            return seg.truth()

    def end_trial(self, t_us: int) -> Optional[TrialTruth]:
        """End the active trial at ``t_us`` (or just after the latest generated sample).

        Returns the finished trial's truth, or None when no trial was active. The free-running
        schedule resumes with a neutral recovery segment.
        """
        t_us = self._check_time(t_us)
        with self._lock:
            if self._active is None:
                return None
            seg = self._end_active(t_us)
            self._epoch += 1
            self._write_pending(force_flush=True)
            return seg.truth()

    @property
    def active_trial(self) -> Optional[TrialTruth]:
        """Truth of the running trial, or None."""
        with self._lock:
            return None if self._active is None else self._active.truth()

    def trial_truth(self, trial: int) -> TrialTruth:
        """Truth of the latest run of trial ``trial`` (raises EmerError when it never began)."""
        with self._lock:
            return self._trial(trial).truth()

    def segment_at(self, t_us: int) -> TrialTruth:
        """Truth of the trial or free segment in effect at ``t_us``."""
        t_us = self._check_time(t_us)
        with self._lock:
            self._ensure(t_us)
            self._after_read(t_us)
            return self._segments[self._seg_index(t_us)].truth()

    def set_stimulus_luminance(self, t_us: int, luminance: float) -> int:
        """Tell the phantom the mean stimulus luminance (0 = black .. 1 = white) from ``t_us`` on.

        The pupil constricts with brighter screens (light reflex: ~0.25 s latency, ~0.45 s time
        constant). Before the first call the luminance is 0.5. Returns the effective time (later
        than ``t_us`` when samples after it were already delivered).
        """
        lum = float(luminance)
        if not 0.0 <= lum <= 1.0 or math.isnan(lum):
            raise ConfigError(f"stimulus luminance must be within 0..1, got {luminance!r}")
        t_us = self._check_time(t_us)
        with self._lock:
            if self._horizon is not None:
                t_us = max(t_us, self._horizon + 1)
            last = self._lum_t.last()
            prev = 0.5 if last is None else float(last["value"])
            if abs(lum - prev) < 1e-4:
                return t_us
            if last is not None and t_us < int(last["t"]):
                t_us = int(last["t"])
            self._lum_t.append(t_us, lum, lum - prev)
            self._epoch += 1
            return t_us

    def sam_answer(self, trial: int) -> dict:
        """The participant's Self-Assessment Manikin answer for ``trial``.

        Returns
        -------
        dict
            ``valence``, ``arousal``, ``dominance``: 9-point integers 1..9 from the felt state
            with individual noise (``(x - 5) / 4`` maps back to [-1, 1]); ``emotion``: the
            self-reported category, mostly the felt one, sometimes a neighbouring emotion.
            Asking twice gives the same answer.
        """
        with self._lock:
            seg = self._trial(trial)
            if seg.sam is None:
                r = np.random.default_rng(seg.sam_ss)
                tr = self.traits
                noise = r.normal(0.0, tr.sam_noise, 3)
                dom = DOMINANCE_ANCHORS[seg.true_emotion] * seg.strength

                def nine(x: float) -> int:
                    return int(np.clip(np.rint(5.0 + 4.0 * x), 1, 9))

                if r.random() < tr.sam_label_accuracy:
                    label = seg.true_emotion
                else:
                    label = R.choice(r, NEIGHBOURS[seg.true_emotion])
                seg.sam = {"valence": nine(seg.valence + noise[0]), "arousal": nine(seg.arousal + noise[1]),
                           "dominance": nine(dom + 1.5 * noise[2]), "emotion": label}
            return dict(seg.sam)

    # ================================================================== public: signals
    def face_state(self, t_us: int) -> FaceState:
        """What the face shows at ``t_us``: displayed expression and intensity (blending during
        transitions), eye openness following the tracker's blinks, head pose, position and
        lighting drift.

        Notes
        -----
        During a transition from expression A to B, ``expression`` is A, ``blend_expression`` is
        B, ``blend`` rises smoothly 0 -> 1 and ``intensity`` is the blended intensity; afterwards
        ``expression`` is B and ``blend_expression`` None. The neutral expression has intensity 0.
        """
        t_us = self._check_time(t_us)
        with self._lock:
            self._ensure(t_us)
            seg = self._segments[self._seg_index(t_us)]
            t = np.array([t_us], np.int64)
            closure = float(self._lid_closure(t)[0])
            self._after_read(t_us)
        ts = self._seconds(t)
        expression, blend_expr, blend, inten = self._displayed(seg, t_us)
        hx, hy, hz = self._head(ts)
        z = float(hz[0])
        light = float(np.clip(self.traits.light_gain + self._light(ts)[0], 0.6, 1.3))
        grad = float(np.clip(self.traits.light_gradient + self._gradient(ts)[0], -1.0, 1.0))
        return FaceState(
            expression=expression, intensity=float(np.clip(inten, 0.0, 1.0)), blend_expression=blend_expr,
            blend=float(blend), eye_openness=float(1.0 - closure),
            yaw_deg=float(self._yaw(ts)[0]), pitch_deg=float(self._pitch(ts)[0]), roll_deg=float(self._roll(ts)[0]),
            # a webcam above the display, ~70 x 43 deg field of view, not mirrored
            cx=float(np.clip(0.5 - float(hx[0]) / (2.0 * 0.70 * z), 0.05, 0.95)),
            cy=float(np.clip(0.45 - (float(hy[0]) - self.traits.head_y_mm) / (2.0 * 0.39 * z), 0.05, 0.95)),
            scale=float(600.0 / z), light_gain=light, light_gradient=grad,
        )

    def gaze_at(self, t_us) -> np.ndarray:
        """Tracker samples (``GAZE_DTYPE``) at the given session-clock times.

        Each sample is a pure function of its time stamp and the timeline (chunking does not
        matter). ``system_time_stamp = t_us``; ``device_time_stamp`` runs on a simulated tracker
        clock with an offset and ~20 ppm drift. Invalid values are NaN with validity 0.
        """
        t = np.asarray(t_us, dtype=np.int64).reshape(-1)
        out = np.zeros(len(t), GAZE_DTYPE)
        if len(t) == 0:
            return out
        if np.any(np.diff(t) < 0):
            raise ValueError("gaze_at: time stamps must be non-decreasing")
        with self._lock:
            self._ensure(int(t[-1]), int(t[0]))
            if t[-1] - t[0] < _US:
                out[:] = self._gaze(t)
                self._after_read(int(t[-1]))
                return out
            # 1-s pieces keep the per-piece luminance matrix small
            edges = np.searchsorted(t, np.arange(int(t[0]), int(t[-1]) + _US, _US), side="left")
            edges = np.unique(np.concatenate([edges, [len(t)]]))
            start = 0
            for end in edges:
                if end > start:
                    out[start:end] = self._gaze(t[start:end])
                    start = end
            self._after_read(int(t[-1]))
        return out

    def peek_gaze(self, t: np.ndarray):
        """Look-ahead for the tracker: samples at future times ``t`` *without* delivering them.

        Returns ``(samples, epoch)``; only times after the horizon and before the next planned
        free-segment change are computed. Deliver them with :meth:`_commit`, which refuses when
        the timeline changed in between (then compute them again with :meth:`gaze_at`).
        """
        t = np.asarray(t, dtype=np.int64).reshape(-1)
        with self._lock:
            if self._origin is None or len(t) == 0:
                return np.zeros(0, GAZE_DTYPE), self._epoch
            last = self._segments[-1]
            keep = t > self._horizon
            if self._active is None and last.planned_end is not None:
                keep &= t < last.planned_end
            t = t[keep]
            if len(t) == 0 or t[-1] - t[0] >= _US:
                return np.zeros(0, GAZE_DTYPE), self._epoch
            self._extend(int(t[-1]))
            return self._gaze(t), self._epoch

    def commit(self, t_last: int, epoch: int) -> bool:
        """Deliver peeked samples up to ``t_last`` if nothing changed since the peek."""
        with self._lock:
            if epoch != self._epoch:
                return False
            self._after_read(int(t_last))
            return True

    def generate_gaze(self, t0_us: int, t1_us: int, rate_hz: float = 250.0) -> np.ndarray:
        """Samples at ``t0_us + round(k * 1e6 / rate_hz)`` for all ``k`` with time < ``t1_us``.

        The offline twin of :class:`~emer_live.devices.synthetic.SyntheticTracker` (no thread,
        no clock): for tests and corpus builders.
        """
        t0, t1 = self._check_time(t0_us), self._check_time(t1_us)
        if t1 <= t0:
            raise ValueError(f"generate_gaze: t1_us ({t1}) must be after t0_us ({t0})")
        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ValueError(f"generate_gaze: rate_hz must be a positive number, got {rate_hz!r}")
        n = int(math.ceil((t1 - t0) * rate_hz / _US)) + 1
        times = t0 + np.rint(np.arange(n) * (_US / rate_hz)).astype(np.int64)
        return self.gaze_at(times[times < t1])

    def blinks(self, t0_us: int, t1_us: int) -> np.ndarray:
        """Truth blink intervals ``(n, 2)`` ``[t_start, t_end)`` overlapping ``[t0_us, t1_us)``
        (only blinks already generated, i.e. up to the latest time read)."""
        with self._lock:
            b = self._bl.rows
            h = -1 if self._horizon is None else self._horizon
            keep = (b["t1"] > t0_us) & (b["t0"] < t1_us) & (b["t0"] <= h)
            return np.stack([b["t0"][keep], b["t1"][keep]], axis=1).astype(np.int64)

    def device_time_us(self, t_us):
        """The simulated tracker clock at session time ``t_us`` (offset + ~20 ppm drift)."""
        with self._lock:
            origin = self._origin if self._origin is not None else int(np.min(t_us))
        t = np.asarray(t_us, np.int64)
        return self._dev_offset + t - origin + np.rint((t - origin) * (self._dev_ppm * 1e-6)).astype(np.int64)

    @property
    def origin_us(self) -> Optional[int]:
        """Session time at which the phantom's timeline starts (None until first used)."""
        return self._origin

    def describe(self) -> dict:
        """What regenerates this phantom (for session.json): seed, participant, mask rate, origin, traits."""
        with self._lock:
            return {"seed": self.seed, "participant": self.participant, "mask_rate": self.mask_rate,
                    "origin_us": self._origin, "display": self.display.to_dict(), "traits": self.traits.to_dict()}

    # ================================================================== public: truth
    @property
    def truth_rows(self) -> List[dict]:
        """Every finished truth row so far (trial, segment, blink, loss and fixation rows), in the
        order they became final; see :mod:`emer_live.phantom.truth` for the columns."""
        with self._lock:
            return [dict(r) for r in self._rows]

    def attach_truth_file(self, path) -> None:
        """Write ``truth.tsv`` to ``path`` (a new file; an existing one is never overwritten).

        Rows finished before the call are written at once; later rows follow as they finish,
        flushed at least every 0.5 s while devices read the phantom. Call :meth:`close_truth`
        at the end of the session.
        """
        with self._lock:
            if self._writer is not None:
                raise EmerError(f"phantom truth is already written to {self._writer.path}")
            self._writer = TruthWriter(path)
            self._rows_written = 0
            self._write_pending(force_flush=True)

    def flush_truth(self) -> None:
        """Write and flush every finished row now."""
        with self._lock:
            self._write_pending(force_flush=True)

    def close_truth(self, t_us: Optional[int] = None) -> None:
        """End the truth at ``t_us`` (default: the latest time read): the open trial or segment gets
        its row with ``t_end_us = t_us``, events that ended by then are written, the file is closed.
        The phantom keeps answering afterwards, but adds no more truth rows."""
        with self._lock:
            if self._finished_at is None and self._origin is not None:
                t_end = self._horizon + 1 if t_us is None else self._check_time(t_us)
                t_end = max(t_end, self._segments[-1].t_start + 1)
                self._queue_events(t_end)
                row = self._segments[-1].truth().row()
                row["t_end_us"] = t_end
                self._rows.append(row)
                self._finished_at = t_end
            self._write_pending(force_flush=True)
            if self._writer is not None:
                self._writer.close()

    # ================================================================== timeline
    @staticmethod
    def _check_time(t_us) -> int:
        if isinstance(t_us, bool) or not isinstance(t_us, (int, np.integer)):
            raise ConfigError(f"times are integer microseconds on the session clock, got {t_us!r}")
        return int(t_us)

    def _trial(self, trial: int) -> _Segment:
        seg = self._trials.get(int(trial))
        if seg is None:
            raise EmerError(f"phantom: trial {trial} never began (begin_trial was not called for it)")
        return seg

    def _seconds(self, t: np.ndarray) -> np.ndarray:
        return (np.asarray(t, np.int64) - (self._origin or 0)) / 1e6

    def _ensure(self, t: int, first: Optional[int] = None) -> None:
        """Make the timeline cover every time <= ``t`` (``first``: earliest time of this read)."""
        if self._origin is None:
            t0 = t if first is None else min(first, t)
            self._origin = t0
            self._horizon = t0 - 1
            self._start_segment(t0, self._free_spec())
        while self._active is None and self._segments[-1].planned_end is not None \
                and self._segments[-1].planned_end <= t:
            self._start_segment(self._segments[-1].planned_end, self._free_spec())
        self._extend(t)

    def _end_active(self, t_us: int) -> _Segment:
        seg = self._active
        self._active = None
        self._start_segment(t_us, self._free_spec(recovery=True))
        return seg

    def _start_segment(self, t_us: int, seg: _Segment) -> _Segment:
        if self._origin is None:
            self._origin = t_us
            self._horizon = t_us - 1
        b = max(t_us, self._horizon + 1)
        last = self._segments[-1] if self._segments else None
        if last is not None and t_us < last.t_requested:
            raise ValueError(f"phantom: time goes backwards ({t_us} is before the start of segment {last.index}, "
                             f"{last.t_requested})")
        if last is not None and last.t_start >= b:
            # the last segment starts now and nothing of it was delivered: replace it
            self._segments.pop()
            if last is self._active:
                self._active = None
            last = self._segments[-1] if self._segments else None
        if last is not None:
            self._extend(b - 1)
            # events a look-ahead (peek_gaze) generated from b on belong to the new segment
            self._oc.truncate_from(b)
            self._bl.truncate_from(b)
            self._lo.truncate_from(b)
            if last.t_end is None:
                last.t_end = b
                if self._finished_at is None:
                    self._rows.append(last.truth().row())
            seg.a0 = self._arousal_of(last, b)
            seg.m0 = self._mods_of(last, b)
            expr, blend_expr, blend, inten = self._displayed(last, b)
            seg.prev_displayed = blend_expr if blend_expr is not None and blend >= 0.5 else expr
            seg.prev_intensity = inten
        seg.t_start = b
        seg.t_requested = t_us
        seg.index = len(self._segments)
        if seg.planned_end is not None:
            seg.planned_end += b
        bl = self._bl.last()
        t_ref = b if bl is None else max(b, int(bl["t1"]) + 150_000)
        seg.bl_next = t_ref + self._blink_interval(seg, t_ref, first=True)
        lo = self._lo.last()
        t_ref = b if lo is None else max(b, int(lo["t1"]))
        seg.lo_next = t_ref + self._loss_interval(seg)
        self._segments.append(seg)
        self._seg_trials = [s.trial for s in self._segments]
        self._seg_starts = np.array([s.t_start for s in self._segments], np.int64)
        self._seg_params = np.array([[s.t_start, s.tau_state_us, s.a0, s.a_target] for s in self._segments])
        return seg

    def _seg_index(self, t_us: int) -> int:
        return max(int(np.searchsorted(self._seg_starts, t_us, side="right")) - 1, 0)

    # ------------------------------------------------------------------ segment specs
    def _draw_state(self, r: np.random.Generator, true_emotion: str) -> dict:
        tr = self.traits
        strength = float(r.uniform(0.55, 1.0))
        va = np.array(VA_ANCHORS[true_emotion]) * strength + r.normal(0.0, 0.12, 2)
        valence, arousal = (float(x) for x in np.clip(va, -1.0, 1.0))
        masked = bool(r.random() < self.mask_rate)
        u_mask, u_int = r.random(), r.uniform(0.75, 1.15)
        if masked:
            if true_emotion == "happiness":
                displayed = "neutral"
            elif true_emotion == "neutral":
                displayed = "happiness"
            else:
                displayed = "happiness" if u_mask < 0.65 else "neutral"
            intensity = 0.25 + 0.25 * u_int / 1.15 if displayed == "happiness" else 0.0
        else:
            displayed = true_emotion
            intensity = 0.0 if displayed == "neutral" else float(np.clip(tr.expressivity * strength * u_int, 0.15, 1.0))
        gain = self._effect_gain[true_emotion] * tr.emotional_reactivity * strength
        m_target = (1.0 + (np.array(EYE_EFFECTS[true_emotion]) - 1.0) * gain) * np.exp(r.normal(0.0, 0.08, 5))
        return dict(
            true_emotion=true_emotion, displayed=displayed, masked=masked, valence=valence, arousal=arousal,
            intensity=float(intensity), strength=strength,
            tau_state_us=float(r.uniform(2.0, 6.0)) * _US, tau_face_us=float(r.uniform(1.0, 3.0)) * _US,
            transition_us=float(r.uniform(0.6, 1.5)) * _US,
            # suppressing an expression costs sympathetic arousal (Gross 1998): a small bump
            a_target=arousal + (0.08 if masked else 0.0), m_target=m_target,
        )

    def _make_segment(self, ss: np.random.SeedSequence, *, kind: str, trial: int, emotion_fn, planned,
                      category=None, stimulus_id=None) -> _Segment:
        truth_ss, oc_ss, bl_ss, lo_ss, sam_ss = ss.spawn(5)
        r = np.random.default_rng(truth_ss)
        true_emotion = emotion_fn(r)
        state = self._draw_state(r, true_emotion)
        planned_end = int(r.uniform(_FREE_MIN_S, _FREE_MAX_S) * _US) if planned else None
        return _Segment(index=len(self._segments), kind=kind, trial=trial, t_start=0, planned_end=planned_end,
                        category=category, stimulus_id=stimulus_id,
                        sam_ss=sam_ss,
                        rng_oc=np.random.default_rng(oc_ss), rng_bl=np.random.default_rng(bl_ss),
                        rng_lo=np.random.default_rng(lo_ss), **state)

    def _trial_spec(self, trial: int, category: Optional[str], stimulus_id: Optional[str]) -> _Segment:
        rate = self.traits.elicitation_rate

        def felt(r: np.random.Generator) -> str:
            u, u2 = r.random(), r.random()
            if category is None:
                return R.choice(r, EMOTIONS7)
            if u < rate:
                return category
            if category != "neutral" and u2 < 0.5:
                return "neutral"          # the clip left them cold
            return R.choice(r, NEIGHBOURS[category])

        return self._make_segment(R.seed_sequence(self.seed, self.participant, 1, trial), kind="trial",
                                  trial=trial, emotion_fn=felt, planned=False, category=category,
                                  stimulus_id=stimulus_id)

    def _free_spec(self, recovery: bool = False) -> _Segment:
        k = self._free_count
        self._free_count += 1
        if recovery:
            emotion = "neutral"
        else:
            emotion = self._cycle[self._cycle_pos % 7]
            self._cycle_pos += 1
        return self._make_segment(R.seed_sequence(self.seed, self.participant, 2, k), kind="segment", trial=-1,
                                  emotion_fn=lambda r: emotion, planned=True)

    # ------------------------------------------------------------------ state over time
    def _arousal_of(self, seg: _Segment, t: int) -> float:
        k = math.exp(-max(t - seg.t_start, 0) / seg.tau_state_us)
        return seg.a_target + (seg.a0 - seg.a_target) * k

    def _mods_of(self, seg: _Segment, t: int) -> np.ndarray:
        k = math.exp(-max(t - seg.t_start, 0) / seg.tau_state_us)
        return seg.m_target + (seg.m0 - seg.m_target) * k

    def _intensity(self, seg: _Segment, t: int) -> float:
        if seg.intensity <= 0.0:
            return 0.0
        ramp = 1.0 - math.exp(-max(t - seg.t_start, 0) / seg.tau_face_us)
        fl = float(self._face_fluct(np.array([(t - self._origin) / 1e6]))[0])
        return float(np.clip(seg.intensity * ramp * (1.0 + fl), 0.0, 1.0))

    def _displayed(self, seg: _Segment, t: int):
        """``(expression, blend_expression, blend, intensity)`` the face shows at ``t`` in ``seg``."""
        inten = self._intensity(seg, t)
        w = 1.0 if seg.transition_us <= 0 else min(max((t - seg.t_start) / seg.transition_us, 0.0), 1.0)
        w = w * w * (3.0 - 2.0 * w)
        expression, blend_expr, blend = seg.displayed, None, 0.0
        if w < 1.0:
            inten = (1.0 - w) * seg.prev_intensity + w * inten
            if seg.prev_displayed != seg.displayed:
                expression, blend_expr, blend = seg.prev_displayed, seg.displayed, w
        return expression, blend_expr, float(blend), float(np.clip(inten, 0.0, 1.0))

    def _time_on_task(self, t) -> np.ndarray:
        return np.minimum(np.maximum((np.asarray(t, np.int64) - self._origin) / (1800.0 * _US), 0.0), 1.0)

    # ------------------------------------------------------------------ event chains
    def _extend(self, t: int) -> None:
        seg = self._segments[-1]
        oc = self._oc
        while oc.n == 0 or int(oc.last()["t1"]) <= t:
            self._ocular_next(seg)
        while seg.bl_next <= t:
            r = seg.rng_bl
            m = self._mods_of(seg, seg.bl_next)
            med = self.traits.blink_duration_ms * 1000.0 * m[3]
            for _ in range(8):
                dur = med * math.exp(r.normal(0.0, 0.3))
                if _BLINK_MIN_US <= dur <= _BLINK_MAX_US:
                    break
            dur = int(np.clip(dur, _BLINK_MIN_US, _BLINK_MAX_US))
            self._bl.append(seg.bl_next, seg.bl_next + dur, seg.index)
            start = seg.bl_next
            seg.bl_next = start + max(self._blink_interval(seg, start), dur + 150_000)
        while seg.lo_next <= t:
            r = seg.rng_lo
            dur = int(math.exp(r.uniform(math.log(50e3), math.log(800e3))))
            eye = int(r.choice(3, p=[0.35, 0.35, 0.3]))
            self._lo.append(seg.lo_next, seg.lo_next + dur, eye, seg.index)
            seg.lo_next = seg.lo_next + dur + self._loss_interval(seg)

    def _blink_interval(self, seg: _Segment, t: int, first: bool = False) -> int:
        m = self._mods_of(seg, t)
        rate = self.traits.blink_rate_per_min * m[0] * (1.0 + 0.15 * float(self._time_on_task(t)))
        rate = float(np.clip(rate, 10.0, 25.0))
        shape = 2.5
        scale = 60.0 / rate / shape
        if first:  # forward recurrence time of a renewal process: U * length-biased interval
            x = seg.rng_bl.random() * seg.rng_bl.gamma(shape + 1.0, scale)
        else:
            x = seg.rng_bl.gamma(shape, scale)
        return int(x * _US)

    def _loss_interval(self, seg: _Segment) -> int:
        return int(seg.rng_lo.exponential(60.0 / self.traits.loss_rate_per_min) * _US)

    def _ocular_next(self, seg: _Segment) -> None:
        r = seg.rng_oc
        W, H, mmpd = self._W, self._H, self._mmpd
        tr = self.traits
        last = self._oc.last()
        if last is None:
            t0 = seg.t_start
            u = float(np.clip(W / 2 + r.normal(0, W / 10), 0, W))
            v = float(np.clip(H / 2 + r.normal(0, H / 10), 0, H))
            kind = FIXATION
        else:
            t0, u, v = int(last["t1"]), float(last["u1"]), float(last["v1"])
            kind = SACCADE if int(last["kind"]) == FIXATION else FIXATION
            if self._targets and self._target_next(seg, t0, u, v):
                return
        m = self._mods_of(seg, t0)
        if kind == FIXATION:
            mean = tr.fixation_mean_ms * m[1]
            for _ in range(8):
                d_ms = r.gamma(4.0, mean / 4.0)
                if _FIX_MIN_MS <= d_ms <= _FIX_MAX_MS:
                    break
            d_ms = float(np.clip(d_ms, _FIX_MIN_MS, _FIX_MAX_MS))
            drift = r.normal(0.0, 0.25, 2) * mmpd  # deg/s -> mm/s
            u1, v1 = u + drift[0] * d_ms / 1000.0, v + drift[1] * d_ms / 1000.0
            self._oc.append(t0, t0 + int(d_ms * 1000), FIXATION, u, v, u1, v1, seg.index)
            return
        off_now = not (0.0 <= u <= W and 0.0 <= v <= H)
        if off_now:  # come back to the display, near its centre
            u1 = float(np.clip(W / 2 + r.normal(0, W / 6), 0.02 * W, 0.98 * W))
            v1 = float(np.clip(H / 2 + r.normal(0, H / 6), 0.02 * H, 0.98 * H))
        elif r.random() < tr.offscreen_prob * m[4]:  # look away: down (keyboard, lap) or aside
            if r.random() < 0.6:
                u1, v1 = float(r.uniform(0.2 * W, 0.8 * W)), float(H + r.uniform(20.0, 150.0))
            else:
                side = -1.0 if r.random() < 0.5 else 1.0
                u1, v1 = float(W / 2 + side * (W / 2 + r.uniform(20.0, 120.0))), float(r.uniform(0.2 * H, 0.8 * H))
        else:
            amp_mean = tr.saccade_amplitude_deg * m[2]
            for _ in range(8):
                a = max(r.gamma(2.0, amp_mean / 2.0), 0.3) * mmpd
                th = r.uniform(0.0, 2.0 * np.pi)
                # central bias: a pull towards the middle of the display
                u1 = u + a * math.cos(th) + 0.2 * (W / 2 - u)
                v1 = v + a * math.sin(th) + 0.2 * (H / 2 - v)
                if 0.0 <= u1 <= W and 0.0 <= v1 <= H:
                    break
            u1, v1 = float(np.clip(u1, 0.01 * W, 0.99 * W)), float(np.clip(v1, 0.01 * H, 0.99 * H))
        amp = math.hypot(u1 - u, v1 - v) / mmpd
        vpeak = tr.saccade_vmax_deg_s * (1.0 - math.exp(-max(amp, 0.05) / 7.0))   # main sequence
        dur_ms = float(np.clip(1.875 * max(amp, 0.05) / vpeak * 1000.0, 12.0, 150.0))  # minimum-jerk peak = 1.875 A/D
        self._oc.append(t0, t0 + int(dur_ms * 1000), SACCADE, u, v, u1, v1, seg.index)

    # ------------------------------------------------------------------ signals
    def _head(self, ts: np.ndarray):
        tr = self.traits
        return tr.head_x_mm + self._hx(ts), tr.head_y_mm + self._hy(ts), tr.head_distance_mm + self._hz(ts)

    def _lid_closure(self, t: np.ndarray) -> np.ndarray:
        """Eyelid closure 0 (open) .. 1 (shut). The tracker loses the pupil above ``_LID_EDGE``,
        i.e. exactly during truth blinks; the lid reopens over 60 ms afterwards."""
        b = self._bl.rows
        c = np.zeros(len(t))
        if len(b) == 0:
            return c
        i = np.searchsorted(b["t0"], t, side="right") - 1
        has = i >= 0
        ii = np.maximum(i, 0)
        t0, t1 = b["t0"][ii], b["t1"][ii]
        inside = has & (t < t1)
        phi = np.clip((t - t0) / np.maximum(t1 - t0, 1), 0.0, 1.0)
        c_in = _LID_EDGE + (1.0 - _LID_EDGE) * np.sin(np.pi * phi ** 0.66)
        after = has & (t >= t1)
        c_post = _LID_EDGE * np.clip(1.0 - (t - t1) / _LID_REOPEN_US, 0.0, 1.0)
        c = np.where(inside, c_in, np.where(after, c_post, 0.0))
        return c

    def _in_intervals(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros(len(t), bool), np.zeros(len(t), np.int64)
        i = np.searchsorted(rows["t0"], t, side="right") - 1
        ii = np.maximum(i, 0)
        return (i >= 0) & (t < rows["t1"][ii]), ii

    def _luminance_filtered(self, te: np.ndarray, tau_us: float) -> np.ndarray:
        L = self._lum_t.rows
        out = np.full(len(te), 0.5)
        if len(L) == 0:
            return out
        cutoff = 12.0 * tau_us
        lo = int(np.searchsorted(L["t"], te[0] - cutoff, side="right"))
        hi = int(np.searchsorted(L["t"], te[-1], side="right"))
        out[:] = float(L["value"][lo - 1]) if lo else 0.5   # level after every step older than the cutoff
        if hi > lo:
            st, d = L["t"][lo:hi], L["delta"][lo:hi]
            lag = te[:, None] - st[None, :]
            resp = np.where(lag >= 0, 1.0 - np.exp(-np.maximum(lag, 0) / tau_us), 0.0)
            out += resp @ d
        return out

    def _gaze(self, t: np.ndarray) -> np.ndarray:
        """Samples at times ``t`` (sorted; timeline already extended)."""
        tr = self.traits
        n = len(t)
        out = np.zeros(n, GAZE_DTYPE)
        ts = self._seconds(t)
        key = self._noise_key & 0xFFFFFFFFFFFFFFFF
        W, H = self._W, self._H

        # intended gaze target on the display plane (mm from top-left)
        oc = self._oc.rows
        i = np.maximum(np.searchsorted(oc["t0"], t, side="right") - 1, 0)
        e = oc[i]
        s = np.clip((t - e["t0"]) / np.maximum(e["t1"] - e["t0"], 1), 0.0, 1.0)
        s = np.where(e["kind"] == SACCADE, _min_jerk(s), s)
        u = e["u0"] + (e["u1"] - e["u0"]) * s
        v = e["v0"] + (e["v1"] - e["v0"]) * s
        # per-sample noise, a pure function of the time stamp: tremor u/v, precision (L u, L v,
        # R u, R v), pupil L/R; then dropout uniforms L/R
        z = R.hash_normals(key, t, 8)
        drop = R.hash_uniforms(key ^ 0x5EED, t, 2)
        tremor = 0.01 * self._mmpd
        u = u + tremor * z[:, 0]
        v = v + tremor * z[:, 1]
        closure = self._lid_closure(t)
        v = v + 20.0 * closure  # the estimate sags while the lid covers the pupil

        sm = self._bank(ts)
        hx, hy, hz = tr.head_x_mm + sm[:, 0], tr.head_y_mm + sm[:, 1], tr.head_distance_mm + sm[:, 2]
        yaw = np.radians(sm[:, 3])
        roll = np.radians(sm[:, 4])
        half = tr.ipd_mm / 2.0
        in_blink, _ = self._in_intervals(self._bl.rows, t)
        in_loss, li = self._in_intervals(self._lo.rows, t)
        loss_eye = self._lo.rows["eye"][li] if len(self._lo.rows) else np.zeros(n, np.int8)

        # pupil (mm): baseline + arousal + light reflex + hippus + time on task, soft-limited
        segi = np.maximum(np.searchsorted(self._seg_starts, t, side="right") - 1, 0)
        sp = self._seg_params[segi]
        k = np.exp(-np.maximum(t - sp[:, 0], 0) / sp[:, 1])
        arousal = sp[:, 3] + (sp[:, 2] - sp[:, 3]) * k
        lum = self._luminance_filtered(t - int(tr.pupil_latency_s * _US), 0.45 * _US)
        common = (tr.pupil_baseline_mm + tr.arousal_reactivity_mm * arousal
                  - tr.light_reactivity_mm * (lum - 0.5) + sm[:, 5] - 0.15 * self._time_on_task(t)
                  - 0.5 * closure)

        # both eyes at once: arrays (n, 2), column 0 = left, 1 = right
        prec = tr.precision_deg / 2.0  # per-axis SD giving that RMS sample-to-sample precision
        sign = np.array([-1.0, 1.0])
        ox = hx[:, None] + sign * (half * np.cos(yaw))[:, None]
        oy = hy[:, None] + sign * (half * np.sin(roll))[:, None]
        oz = hz[:, None] - sign * (half * np.sin(yaw))[:, None]
        target = self.display.to_ucs(u / W, v / H)                        # (n, 3)
        dist = np.sqrt((target[:, 0:1] - ox) ** 2 + (target[:, 1:2] - oy) ** 2 + (target[:, 2:3] - oz) ** 2)
        mm = dist * _TAN1
        gx = (u[:, None] + mm * (self._acc_deg[:, 0] + prec * z[:, 2:4])) / W
        gy = (v[:, None] + mm * (self._acc_deg[:, 1] + prec * z[:, 4:6])) / H
        g_ucs = self.display.to_ucs(gx, gy)                               # (n, 2, 3)
        tbx = (TRACKBOX["x_half"] - ox) / (2 * TRACKBOX["x_half"])
        tby = (TRACKBOX["y_top"] - oy) / (TRACKBOX["y_top"] - TRACKBOX["y_bottom"])
        tbz = (oz - TRACKBOX["z_near"]) / (TRACKBOX["z_far"] - TRACKBOX["z_near"])
        lost = in_loss[:, None] & ((loss_eye[:, None] == LOSS_BOTH)
                                   | (loss_eye[:, None] == np.array([LOSS_LEFT, LOSS_RIGHT])))
        valid = ~(in_blink[:, None] | lost | (drop < _DROPOUT_P))
        tb = np.stack([tbx, tby, tbz])
        valid &= np.all((tb >= 0.0) & (tb <= 1.0), axis=0)
        pupil = _soft_clamp_pupil(common[:, None] + np.array([0.5, -0.5]) * tr.anisocoria_mm + sm[:, 6:8]
                                  + 0.012 * z[:, 6:8])
        vi = valid.astype(np.int8)
        # (n, 2, 12) in _EYE_FLOAT_FIELDS order, NaN where the eye is invalid
        F = np.stack([gx, gy, g_ucs[..., 0], g_ucs[..., 1], g_ucs[..., 2], pupil, ox, oy, oz, tbx, tby, tbz], axis=2)
        F = np.where(valid[..., None], F, np.nan)
        for eye, name in enumerate(("left_", "right_")):
            for j, col in enumerate(_EYE_FLOAT_FIELDS):
                out[name + col] = F[:, eye, j]
            for col in ("gaze_point_validity", "pupil_validity", "gaze_origin_validity"):
                out[name + col] = vi[:, eye]
        out["t_us"] = t
        out["system_time_stamp"] = t
        out["device_time_stamp"] = self.device_time_us(t)
        return out

    # ------------------------------------------------------------------ truth bookkeeping
    def _after_read(self, t: int) -> None:
        if self._horizon is None or t > self._horizon:
            self._horizon = t
        if self._finished_at is None:
            self._queue_events(self._horizon + 1)
        self._write_pending()

    def _queue_events(self, t_limit: int) -> None:
        """Queue rows of events that ended at or before ``t_limit``."""
        seg_trial = self._seg_trials
        q = self._queued
        oc = self._oc.rows
        j = q["oc"]
        while j < len(oc) and oc["t1"][j] <= t_limit:
            e = oc[j]
            if int(e["kind"]) == FIXATION:
                self._rows.append({"kind": "fixation", "trial": seg_trial[int(e["seg"])], "segment": int(e["seg"]),
                                   "t_start_us": int(e["t0"]), "t_end_us": int(e["t1"]),
                                   "x": float(e["u0"] + e["u1"]) / 2.0 / self._W,
                                   "y": float(e["v0"] + e["v1"]) / 2.0 / self._H})
            j += 1
        q["oc"] = j
        bl = self._bl.rows
        j = q["bl"]
        while j < len(bl) and bl["t1"][j] <= t_limit:
            self._rows.append({"kind": "blink", "trial": seg_trial[int(bl["seg"][j])], "segment": int(bl["seg"][j]),
                               "t_start_us": int(bl["t0"][j]), "t_end_us": int(bl["t1"][j])})
            j += 1
        q["bl"] = j
        lo = self._lo.rows
        j = q["lo"]
        while j < len(lo) and lo["t1"][j] <= t_limit:
            self._rows.append({"kind": "loss", "trial": seg_trial[int(lo["seg"][j])], "segment": int(lo["seg"][j]),
                               "t_start_us": int(lo["t0"][j]), "t_end_us": int(lo["t1"][j]),
                               "eye": ("left", "right", "both")[int(lo["eye"][j])]})
            j += 1
        q["lo"] = j

    def _write_pending(self, force_flush: bool = False) -> None:
        w = self._writer
        if w is None or w.closed:
            return
        new = self._rows[self._rows_written:]
        self._rows_written = len(self._rows)
        w.write(new, force_flush=force_flush)
