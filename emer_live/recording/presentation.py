"""What the participant saw: a trial's presentation timing from its presentation log.

Every frame the participant screen presented is one row of the trial's ``stimulus_frames.tsv``
(``frame``: index in the clip, ``t_us``: session clock when it was put on the screen). From that
log, per trial:

* **onset** / **offset**: the first and the last presented frame's time (the record's
  ``stimulus_onset`` / ``stimulus_offset``; the schedule's times are kept apart as
  ``planned_onset_us`` / ``planned_offset_us``);
* **frames shown**; **dropped**: clip frames never presented (the clip has
  ``frames_expected``); **late**: frames presented more than :data:`LATE_FACTOR` frame intervals
  after the previous one; **worst interval** between two presented frames;
* **onset delay**: first presented frame minus the planned onset.

The session controller keeps these figures up to date while a clip plays
(:class:`PresentationTracker`); ``emer-live info`` recomputes them from the log itself
(:func:`trial_presentation`), so a crashed session's figures come from what was written.
See docs/recording-format.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

__all__ = ["LATE_FACTOR", "STIMULUS_FRAMES_TSV", "PresentationStats", "PresentationTracker", "presentation_stats",
           "read_presentation_log", "last_presentation", "trial_presentation", "format_presentation"]

#: a frame presented more than this many frame intervals after the previous one is late
LATE_FACTOR = 1.5
STIMULUS_FRAMES_TSV = "stimulus_frames.tsv"
_LOG_DT = np.dtype([("frame", np.int64), ("t_us", np.int64)])


@dataclass(frozen=True)
class PresentationStats:
    """One clip presentation's timing (times on the session clock, intervals in ms)."""

    frames_shown: int
    frames_expected: Optional[int]
    frames_dropped: Optional[int]          # None when the clip's length is unknown
    frames_late: int
    worst_interval_ms: Optional[float]     # None with fewer than two frames
    frame_interval_ms: float               # the nominal interval (clip fps, at its playback rate)
    onset_us: Optional[int]                # first presented frame
    offset_us: Optional[int]               # last presented frame
    planned_onset_us: Optional[int] = None
    planned_offset_us: Optional[int] = None

    @property
    def onset_delay_ms(self) -> Optional[float]:
        if self.onset_us is None or self.planned_onset_us is None:
            return None
        return (self.onset_us - self.planned_onset_us) / 1000.0

    def problems(self) -> List[str]:
        """What a lab should know about this presentation, in words (empty: as planned)."""
        out = []
        if not self.frames_shown:
            return ["no frame was presented"]
        if self.frames_dropped:
            out.append(f"{self.frames_dropped} of {self.frames_expected} frames dropped")
        if self.frames_late:
            out.append(f"{self.frames_late} late (worst interval {self.worst_interval_ms:.0f} ms, "
                       f"nominal {self.frame_interval_ms:.0f} ms)")
        delay = self.onset_delay_ms
        if delay is not None and delay > self.frame_interval_ms:
            out.append(f"first frame {delay:.0f} ms after the planned onset")
        return out

    def as_dict(self) -> dict:
        """The figures stored per trial (session.json ``trials``, the ``stimulus_offset`` event)."""
        d = asdict(self)
        d["onset_delay_ms"] = None if self.onset_delay_ms is None else round(self.onset_delay_ms, 3)
        for k in ("worst_interval_ms", "frame_interval_ms"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
        return d


def _nominal_interval_us(fps: float, time_scale: float) -> float:
    if not (fps and fps > 0 and math.isfinite(fps)):
        raise ValueError(f"a clip's frame rate must be a positive number, got {fps!r}")
    return 1e6 / float(fps) * float(time_scale)


class PresentationTracker:
    """The running figures of one clip presentation, fed frame by frame (``add``).

    Parameters
    ----------
    fps : float
        The clip's frame rate.
    time_scale : float
        Session time scale: a clip played ``1 / time_scale`` times faster has frame intervals
        ``time_scale / fps`` seconds long on the session clock.
    frames_expected : int, optional
        How many frames the clip has (its duration x fps).
    planned_onset_us, planned_offset_us : int, optional
        The schedule's times, kept beside the observed ones.
    """

    def __init__(self, *, fps: float, time_scale: float = 1.0, frames_expected: Optional[int] = None,
                 planned_onset_us: Optional[int] = None, planned_offset_us: Optional[int] = None) -> None:
        self.interval_us = _nominal_interval_us(fps, time_scale)
        self.frames_expected = frames_expected
        self.planned_onset_us = planned_onset_us
        self.planned_offset_us = planned_offset_us
        self.first_us: Optional[int] = None
        self.first_frame: Optional[int] = None
        self.last_us: Optional[int] = None
        self.shown = 0
        self.late = 0
        self.worst_us: Optional[int] = None
        self._indices: set = set()

    def add(self, frame: int, t_us: int) -> bool:
        """One presented frame; True when it is the first (the observed onset)."""
        t_us = int(t_us)
        first = self.first_us is None
        if first:
            self.first_us, self.first_frame = t_us, int(frame)
        else:
            gap = t_us - self.last_us
            if self.worst_us is None or gap > self.worst_us:
                self.worst_us = gap
            if gap > LATE_FACTOR * self.interval_us:
                self.late += 1
        self.last_us = t_us
        self.shown += 1
        self._indices.add(int(frame))
        return first

    def last_frame_due_us(self) -> Optional[int]:
        """When the clip's last frame is due, counted from the first presented frame at the
        nominal interval (None before the first frame or without the clip's length)."""
        if self.first_us is None or self.frames_expected is None:
            return None
        return self.first_us + int((self.frames_expected - 1 - self.first_frame) * self.interval_us)

    def stats(self) -> PresentationStats:
        dropped = None
        if self.frames_expected is not None:
            inside = sum(1 for i in self._indices if 0 <= i < self.frames_expected)
            dropped = max(0, int(self.frames_expected) - inside)
        return PresentationStats(
            frames_shown=self.shown, frames_expected=self.frames_expected, frames_dropped=dropped,
            frames_late=self.late, worst_interval_ms=None if self.worst_us is None else self.worst_us / 1000.0,
            frame_interval_ms=self.interval_us / 1000.0, onset_us=self.first_us, offset_us=self.last_us,
            planned_onset_us=self.planned_onset_us, planned_offset_us=self.planned_offset_us)


def presentation_stats(frames: np.ndarray, *, fps: float, time_scale: float = 1.0,
                       frames_expected: Optional[int] = None, planned_onset_us: Optional[int] = None,
                       planned_offset_us: Optional[int] = None) -> PresentationStats:
    """:class:`PresentationStats` of one presentation's log rows (``frame``, ``t_us``, in order)."""
    tr = PresentationTracker(fps=fps, time_scale=time_scale, frames_expected=frames_expected,
                             planned_onset_us=planned_onset_us, planned_offset_us=planned_offset_us)
    for f, t in zip(frames["frame"], frames["t_us"]):
        tr.add(int(f), int(t))
    return tr.stats()


def read_presentation_log(path) -> Optional[np.ndarray]:
    """A ``stimulus_frames.tsv`` as (frame, t_us) rows; None when there is none. A partial last
    line (a crash mid-write) or a row that is not two whole numbers ends the reading: what is
    whole is returned."""
    path = Path(path)
    if not path.is_file():
        return None
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:2] != ["frame", "t_us"]:
            from ..errors import SessionFormatError

            raise SessionFormatError(f"{path}: header {header!r} is not 'frame, t_us'")
        for line in f:
            if not line.endswith("\n"):
                break
            parts = line.rstrip("\n").split("\t")
            try:
                rows.append((int(parts[0]), int(parts[1])))
            except (ValueError, IndexError):
                break
    return np.array(rows, dtype=_LOG_DT) if rows else np.zeros(0, _LOG_DT)


def last_presentation(frames: np.ndarray) -> np.ndarray:
    """The rows of the last presentation in a log (a clip restarted after a pause appends a new
    run of frames that begins again at a lower index)."""
    if len(frames) < 2:
        return frames
    back = np.nonzero(np.diff(frames["frame"]) <= 0)[0]
    return frames[back[-1] + 1:] if len(back) else frames


def trial_presentation(reader) -> List[dict]:
    """Per trial of a session: its presentation figures recomputed from its presentation log
    and plan (``trial``, ``stimulus_id`` and :meth:`PresentationStats.as_dict`, plus
    ``problems``; ``log``: False when the trial has no presentation log). Trials that never
    reached their clip are left out."""
    meta = reader.meta
    plan = {int(p["trial"]): p for p in meta.get("plan") or [] if isinstance(p, dict) and "trial" in p}
    stored = {int(t["trial"]): t for t in meta.get("trials") or [] if isinstance(t, dict) and "trial" in t}
    time_scale = float(meta.get("time_scale") or (meta.get("timing") or {}).get("time_scale") or 1.0)
    out = []
    for seg in reader.trial_segments():
        n = seg.trial
        p, st = plan.get(n, {}), stored.get(n, {})
        fps = float(p.get("fps") or 25.0)
        expected = int(round(float(p["duration_s"]) * fps)) if p.get("duration_s") else st.get("frames_expected")
        frames = read_presentation_log(seg.path / STIMULUS_FRAMES_TSV)
        if frames is None:
            if st.get("planned_onset_us") is None and st.get("t_onset_us") is None:
                continue                       # the trial ended before its clip was due
            stats = PresentationTracker(fps=fps, time_scale=time_scale, frames_expected=expected,
                                        planned_onset_us=st.get("planned_onset_us"),
                                        planned_offset_us=st.get("planned_offset_us")).stats()
        else:
            stats = presentation_stats(last_presentation(frames), fps=fps, time_scale=time_scale,
                                       frames_expected=expected, planned_onset_us=st.get("planned_onset_us"),
                                       planned_offset_us=st.get("planned_offset_us"))
        out.append({"trial": n, "stimulus_id": seg.stimulus_id, "log": frames is not None, **stats.as_dict(),
                    "problems": stats.problems()})
    return out


def format_presentation(row: dict) -> str:
    """One line per trial for ``emer-live info``."""
    def num(v, fmt="{:.0f}"):
        return "-" if v is None else fmt.format(v)

    shown = f"{row['frames_shown']}/{num(row['frames_expected'], '{}')}"
    text = (f"  {row['trial']:>3} {row['stimulus_id'] or '':<16} shown {shown:>9}  dropped "
            f"{num(row['frames_dropped'], '{}'):>3}  late {row['frames_late']:>3}  worst "
            f"{num(row['worst_interval_ms']):>4} ms  onset {num(row['onset_delay_ms'], '{:+.0f}'):>4} ms")
    if not row["log"]:
        text += "  (no presentation log)"
    if row["problems"]:
        text += "  PROBLEM: " + "; ".join(row["problems"])
    return text
