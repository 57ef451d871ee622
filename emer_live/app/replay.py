"""Replay and review of a recorded session, without Qt (the model behind ``emer_live.ui.replay``).

:class:`ReplaySession` loads a session folder once and answers "what was there at time t" for
every view: the gaze sample, the face frame, the stimulus frame, the trials and SAM answers.
Every lookup takes the **last record at or before t** - what a viewer at t had last seen.
:func:`compare_predictions` sets re-analysed predictions beside recorded ones, and
:class:`Reanalysis` runs a checkpoint over the recording (replay devices, as fast as the CPU
allows) in small slices so a GUI thread or a worker can drive it, stop it and read progress.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import SessionFormatError
from ..labels import ER7_CLASSES
from ..recording.reader import Segment, SessionReader
from ..recording.presentation import read_presentation_log

__all__ = ["ReplaySession", "TrialRow", "compare_predictions", "Reanalysis", "load_stimulus_frames",
           "TRIAL_TABLE_COLUMNS", "read_only_reason", "damage_lines"]

#: columns of the trial table (the app's list and its TSV export)
TRIAL_TABLE_COLUMNS = ("trial", "stimulus_id", "category", "status", "onset_us", "offset_us", "sam_emotion",
                       "sam_valence", "sam_arousal", "sam_dominance", "pred_er_top", "pred_fer_top",
                       "planned_onset_us", "planned_offset_us", "frames_shown", "frames_expected", "frames_dropped",
                       "frames_late", "worst_interval_ms")


@dataclass
class TrialRow:
    trial: int
    stimulus_id: str
    category: Optional[str]
    status: Optional[str]
    onset_us: Optional[int]
    offset_us: Optional[int]
    sam_emotion: Optional[str] = None
    sam_valence: Optional[int] = None
    sam_arousal: Optional[int] = None
    sam_dominance: Optional[int] = None
    pred_er_top: Optional[str] = None
    pred_fer_top: Optional[str] = None
    # presentation timing (session.json trials; onset/offset above are the observed first and
    # last presented frames, recording/presentation.py)
    planned_onset_us: Optional[int] = None
    planned_offset_us: Optional[int] = None
    frames_shown: Optional[int] = None
    frames_expected: Optional[int] = None
    frames_dropped: Optional[int] = None
    frames_late: Optional[int] = None
    worst_interval_ms: Optional[float] = None
    clip_path: Optional[str] = None
    clip_fps: Optional[float] = None
    stimulus_frames: Optional[np.ndarray] = None     # (frame, t_us) structured, or None
    segment: Optional[Segment] = None

    def cells(self) -> List[str]:
        return ["" if getattr(self, c) is None else str(getattr(self, c)) for c in TRIAL_TABLE_COLUMNS]

    def shown_until_us(self) -> Optional[int]:
        """When the clip left the screen. ``offset_us`` is the last presented frame's time and
        that frame stays up for (at least) one frame interval, taken from the presentation log
        (its median interval, so time-scaled sessions count too); without a log ``offset_us``
        is already the clip's end (recordings before presentation logs)."""
        sf = self.stimulus_frames
        if self.offset_us is None or sf is None or len(sf) < 2:
            return self.offset_us
        return int(self.offset_us + np.median(np.diff(sf["t_us"])))


def load_stimulus_frames(path: Path) -> Optional[np.ndarray]:
    """A trial's stimulus_frames.tsv as (frame, t_us) rows; None when absent; a partial last
    line (a crash mid-write) is left out: replay shows what is whole."""
    return read_presentation_log(path)


def read_only_reason(problems: List[dict]) -> Optional[str]:
    """One banner line for a damaged folder, or None when nothing is damaged."""
    if not problems:
        return None
    kinds = sorted({p["kind"] for p in problems})
    return "damaged (" + ", ".join(kinds) + "): " + problems[0]["message"]


def damage_lines(problems: List[dict], load_notes: List[str], *, limit: int = 6) -> List[str]:
    """The banner's lines for a damaged folder: each problem once (the same message from two
    checks is said once), then what loading left out that the problems do not already say."""
    out: List[str] = []
    for text in [p["message"] for p in problems] + list(load_notes):
        if text not in out and not any(text in o or o in text for o in out):
            out.append(text)
    if len(out) > limit:
        out = out[:limit - 1] + [f"and {len(out) - limit + 1} more (`emer-live info` lists them all)"]
    return out


class ReplaySession:
    """A recorded session, loaded for review.

    Damage never keeps it from opening: ``problems`` (from :meth:`SessionReader.problems`) lists
    what is wrong, ``damaged`` is True then, and a table that cannot be read is left empty with
    the reason in ``load_errors``. An aborted or interrupted session shows what it holds.
    """

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.reader = SessionReader(self.path)      # raises SessionFormatError for a non-session
        self.meta = self.reader.meta
        self.status = self.reader.status
        self.load_errors: List[str] = []
        #: what a partial read of a damaged table shows (the banner says it once)
        self.load_notes: List[str] = []
        try:
            self.problems = self.reader.problems()
        except SessionFormatError as exc:
            self.problems = [{"kind": "unreadable", "stream": None, "message": str(exc)}]
        # a stream that merely ends early (a device that stopped) is shown and re-analysable
        self.damaged = any(p["kind"] not in SessionReader.WARNING_ONLY for p in self.problems)
        self._load_gaze()
        self._load_predictions()
        self._load_events()
        self._load_video_index()
        self.trials = self._load_trials()
        self.t0_us, self.t1_us = self._span()

    # ------------------------------------------------------------------ loading
    def _guard(self, what: str, fn, default):
        try:
            return fn()
        except (SessionFormatError, OSError, ValueError) as exc:
            self.load_errors.append(f"{what}: {exc}")
            return default

    def _load_gaze(self) -> None:
        from ..schema import GAZE_DTYPE

        g = None
        if self.reader.has_gaze():
            try:
                g = self.reader.gaze()
            except SessionFormatError:
                # a damaged file: show its whole rows (problems say what is wrong with the rest)
                try:
                    g, left_out = self.reader.intact_records("gaze")
                except (SessionFormatError, OSError) as exc:
                    self.load_errors.append(f"gaze: {exc}")
                else:
                    self.load_notes.append(self._partial_note("gaze", g, left_out))
        if g is None:
            g = np.zeros(0, GAZE_DTYPE)
        # a damaged file may hold stamps out of order; lookups need them sorted
        if len(g) > 1 and np.any(np.diff(g["t_us"]) < 0):
            g = g[np.argsort(g["t_us"], kind="stable")]
        self.gaze = g
        self.gaze_t = g["t_us"].astype(np.int64)
        lx, ly = g["left_gaze_point_on_display_area_x"], g["left_gaze_point_on_display_area_y"]
        rx, ry = g["right_gaze_point_on_display_area_x"], g["right_gaze_point_on_display_area_y"]
        lv = (g["left_gaze_point_validity"] == 1) & np.isfinite(lx) & np.isfinite(ly)
        rv = (g["right_gaze_point_validity"] == 1) & np.isfinite(rx) & np.isfinite(ry)
        n = lv.astype(float) + rv.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.gaze_x = np.where(n > 0, (np.where(lv, lx, 0.0) + np.where(rv, rx, 0.0)) / n, np.nan)
            self.gaze_y = np.where(n > 0, (np.where(lv, ly, 0.0) + np.where(rv, ry, 0.0)) / n, np.nan)
        self.pupil_left = np.where(g["left_pupil_validity"] == 1, g["left_pupil_diameter"], np.nan)
        self.pupil_right = np.where(g["right_pupil_validity"] == 1, g["right_pupil_diameter"], np.nan)

    def _partial_note(self, what: str, records: np.ndarray, left_out: int) -> str:
        start = (self.meta.get("clock") or {}).get("start_t_us")
        if len(records) and isinstance(start, int):
            upto = f" (to {(int(records['t_us'].max()) - start) / 1e6:.1f} s)"
        else:
            upto = ""
        return (f"{what}: showing the {len(records)} whole rows{upto}; {left_out} damaged line(s) left out"
                if len(records) else f"{what}: no whole row to show; {left_out} damaged line(s)")

    def _load_predictions(self) -> None:
        df = self._guard("predictions", self.reader.predictions, None)
        self.predictions = df
        if df is None or not len(df):
            self.windows = None
            self.trial_predictions = None
            return
        self.windows = df[df["kind"] == "window"].reset_index(drop=True)
        self.trial_predictions = df[df["kind"] == "trial"].reset_index(drop=True)

    def _load_events(self) -> None:
        try:
            self.events = self.reader.events()
        except SessionFormatError:
            # a damaged events.tsv: its whole rows (trials, notes) are still shown
            try:
                self.events, left_out = self.reader.intact_events()
            except (SessionFormatError, OSError) as exc:
                self.load_errors.append(f"events: {exc}")
                self.events = []
            else:
                self.load_notes.append(f"events: showing the {len(self.events)} whole rows; {left_out} damaged "
                                       "line(s) left out")

    def _load_video_index(self) -> None:
        segs = []
        # privacy mode: a crops session shows its kept face crops where the video would be
        self.face_video = self.reader.face_video
        self.face_is_crop = self.face_video != "full"
        self._crop_pixels: Dict[str, np.ndarray] = {}
        for s in self.reader.segments():
            if self.face_is_crop:
                if not s.has_crops:
                    continue
                idx = self._guard(f"{s.relpath} face crops", lambda s=s: self.reader.crop_index(s), None)
                pix = self._guard(f"{s.relpath} face crops", lambda s=s: self.reader.read_crops(s), None)
                if idx is not None and pix is not None and len(idx):
                    self._crop_pixels[s.relpath] = pix
                    segs.append((s, idx[:len(pix)]))
                continue
            if not s.has_video:
                continue
            try:
                idx = self.reader.frame_index(s)
            except SessionFormatError:
                # a damaged index: the frames of its whole rows are still shown
                try:
                    idx, left_out = self.reader.intact_frame_index(s)
                except (SessionFormatError, OSError) as exc:
                    self.load_errors.append(f"{s.relpath} frame index: {exc}")
                    idx = None
                else:
                    self.load_notes.append(f"{s.relpath}: showing the {len(idx)} frames of the whole index rows; "
                                           f"{left_out} damaged line(s) left out")
            if idx is None or not len(idx):
                continue
            vid = s.path / "face.mjpeg"
            size = vid.stat().st_size if vid.is_file() else 0
            # frames past the end of a truncated file, or whose bytes were overwritten, are not
            # shown (the banner names them)
            idx = idx[idx["offset"] + idx["size"] <= size]
            bad = self.reader.corrupt_frames.get(s.relpath)
            if bad:
                idx = idx[~np.isin(idx["frame"], np.fromiter(bad, np.int64))]
            if len(idx):
                segs.append((s, idx))
        segs.sort(key=lambda si: int(si[1]["t_us"][0]))
        self.video_segments = segs
        if segs:
            self.face_t = np.concatenate([i["t_us"] for _, i in segs]).astype(np.int64)
            self.face_seg = np.concatenate([np.full(len(i), k) for k, (_, i) in enumerate(segs)])
            self.face_row = np.concatenate([np.arange(len(i)) for _, i in segs])
            order = np.argsort(self.face_t, kind="stable")
            self.face_t, self.face_seg, self.face_row = self.face_t[order], self.face_seg[order], self.face_row[order]
        else:
            self.face_t = np.zeros(0, np.int64)
            self.face_seg = self.face_row = np.zeros(0, np.int64)

    def _stimulus_library_dir(self) -> Optional[Path]:
        lib = (self.meta.get("stimuli") or {}).get("library")
        if not lib:
            return None
        p = Path(lib)
        return p.parent if p.suffix else p

    def _load_trials(self) -> List[TrialRow]:
        plan = {int(p["trial"]): p for p in self.meta.get("plan", []) or [] if "trial" in p}
        status = {int(t["trial"]): t for t in self.meta.get("trials", []) or [] if "trial" in t}
        intervals = {iv["trial"]: iv for iv in self.reader.stimulus_intervals(self.events)}
        segs = {s.trial: s for s in self.reader.segments() if s.kind == "trial"}
        sam = self._guard("sam.tsv", self.reader.sam, None)
        lib_dir = self._stimulus_library_dir()
        numbers = sorted(set(plan) | set(status) | set(intervals) | set(segs))
        rows = []
        for n in numbers:
            p, st, iv, seg = plan.get(n, {}), status.get(n, {}), intervals.get(n, {}), segs.get(n)
            sid = p.get("stimulus_id") or st.get("stimulus_id") or iv.get("stimulus_id") or \
                (seg.stimulus_id if seg else "") or ""
            row = TrialRow(trial=n, stimulus_id=sid, category=p.get("category") or st.get("category")
                           or iv.get("category"), status=st.get("status") or iv.get("status"),
                           onset_us=st.get("t_onset_us", iv.get("onset_us")),
                           offset_us=st.get("t_offset_us", iv.get("offset_us")),
                           clip_fps=p.get("fps"), segment=seg, planned_onset_us=st.get("planned_onset_us"),
                           planned_offset_us=st.get("planned_offset_us"), frames_shown=st.get("frames_presented"),
                           frames_expected=st.get("frames_expected"), frames_dropped=st.get("frames_dropped"),
                           frames_late=st.get("frames_late"), worst_interval_ms=st.get("worst_interval_ms"))
            clip = p.get("path")
            if clip and not Path(clip).is_file() and lib_dir is not None:
                clip = str(lib_dir / Path(clip).name)       # the library moved with its manifest
            if not clip and lib_dir is not None and sid:
                cands = sorted(lib_dir.glob(f"{sid}.*"))
                clip = str(cands[0]) if cands else None
            row.clip_path = clip if clip and Path(clip).is_file() else None
            if seg is not None:
                row.stimulus_frames = self._guard(f"{seg.relpath} stimulus frames",
                                                  lambda seg=seg: load_stimulus_frames(seg.path / "stimulus_frames.tsv"),
                                                  None)
            if sam is not None and len(sam):
                m = sam[sam["trial"] == n]
                if len(m):
                    r = m.iloc[0]
                    row.sam_emotion = str(r["sam_emotion"])
                    row.sam_valence, row.sam_arousal, row.sam_dominance = (
                        int(r["sam_valence"]), int(r["sam_arousal"]), int(r["sam_dominance"]))
            if self.trial_predictions is not None and len(self.trial_predictions):
                m = self.trial_predictions[self.trial_predictions["trial"] == n]
                if len(m):
                    row.pred_er_top = str(m["er_top"].iloc[-1])
                    fer = m["fer_top"].iloc[-1]
                    row.pred_fer_top = None if (isinstance(fer, float) and math.isnan(fer)) else str(fer)
            rows.append(row)
        return rows

    def _span(self) -> Tuple[int, int]:
        clock = self.meta.get("clock", {}) or {}
        starts, ends = [], []
        for arr in (self.gaze_t, self.face_t):
            if len(arr):
                starts.append(int(arr[0]))
                ends.append(int(arr[-1]))
        if self.events:
            starts.append(min(e["t_us"] for e in self.events))
            ends.append(max(e["t_us"] for e in self.events))
        if clock.get("start_t_us") is not None:
            starts.append(int(clock["start_t_us"]))
        if clock.get("end_t_us") is not None:
            ends.append(int(clock["end_t_us"]))
        if not starts:
            return 0, 1
        t0, t1 = min(starts), max(ends)
        return t0, max(t1, t0 + 1)

    # ------------------------------------------------------------------ lookups at t
    @property
    def duration_s(self) -> float:
        return (self.t1_us - self.t0_us) / 1e6

    @staticmethod
    def _last_at_or_before(t: np.ndarray, t_us: int) -> int:
        """Index of the last stamp <= t_us, or -1 when none."""
        return int(np.searchsorted(t, int(t_us), side="right")) - 1

    def gaze_index_at(self, t_us: int) -> int:
        return self._last_at_or_before(self.gaze_t, t_us)

    def gaze_at(self, t_us: int) -> Optional[Tuple[int, float, float]]:
        """(row, x, y) of the gaze.tsv sample shown at t: the last one at or before t; x, y are the
        mean of the valid eyes on the display (0..1, top-left origin), NaN when neither is valid."""
        i = self.gaze_index_at(t_us)
        if i < 0:
            return None
        return i, float(self.gaze_x[i]), float(self.gaze_y[i])

    def face_at(self, t_us: int) -> Optional[Tuple[Segment, int, int]]:
        """(segment, frame number in its face_frames.tsv, t_us of that frame) shown at t, or None."""
        i = self._last_at_or_before(self.face_t, t_us)
        if i < 0:
            return None
        seg, idx = self.video_segments[int(self.face_seg[i])]
        row = int(self.face_row[i])
        return seg, int(idx["frame"][row]), int(idx["t_us"][row])

    def face_image(self, t_us: int, *, reduce: int = 1) -> Optional[np.ndarray]:
        """The BGR face frame shown at t (None before the first frame); ``reduce`` 2, 4 or 8 decodes
        it at 1/reduce size (the JPEG decoder does that much faster than a full decode). A
        privacy-mode session (``face_is_crop``) gives its kept face crop instead."""
        import cv2

        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}[int(reduce)]
        hit = self.face_at(t_us)
        if hit is None:
            return None
        seg, frame, _ = hit
        idx = self.video_segments[[s.relpath for s, _ in self.video_segments].index(seg.relpath)][1]
        if self.face_is_crop:
            # the aligned crop as kept (RGB, no face found: all zeros); never reduced, it is small
            return np.ascontiguousarray(self._crop_pixels[seg.relpath][int(frame)][:, :, ::-1])
        r = idx[idx["frame"] == frame][0]
        with open(seg.path / "face.mjpeg", "rb") as f:
            f.seek(int(r["offset"]))
            data = f.read(int(r["size"]))
        return cv2.imdecode(np.frombuffer(data, np.uint8), flag)

    def trial_at(self, t_us: int) -> Optional[TrialRow]:
        """The trial whose clip was on screen at t (onset <= t < offset)."""
        for tr in self.trials:
            if tr.onset_us is None:
                continue
            end = tr.shown_until_us()
            if end is None:
                end = self.t1_us
            if tr.onset_us <= t_us < end:
                return tr
        return None

    def stimulus_frame_at(self, t_us: int) -> Optional[Tuple[TrialRow, int]]:
        """(trial, clip frame index) on screen at t: the last stimulus_frames.tsv row at or
        before t while the clip ran; without a log, onset + index / fps."""
        tr = self.trial_at(t_us)
        if tr is None:
            return None
        sf = tr.stimulus_frames
        if sf is not None and len(sf):
            i = self._last_at_or_before(sf["t_us"], t_us)
            return (tr, int(sf["frame"][i])) if i >= 0 else None
        if tr.clip_fps:
            return tr, int((t_us - tr.onset_us) * tr.clip_fps // 1_000_000)
        return None

    def fixation_points(self, t_us: int, *, since_us: Optional[int] = None) -> np.ndarray:
        """Valid gaze points (n, 2) from ``since_us`` (default: the onset of the trial on screen at
        t, else 5 s back) to t - what the heatmap accumulates."""
        if since_us is None:
            tr = self.trial_at(t_us)
            since_us = tr.onset_us if tr is not None else t_us - 5_000_000
        a = int(np.searchsorted(self.gaze_t, since_us, side="left"))
        b = self.gaze_index_at(t_us) + 1
        x, y = self.gaze_x[a:b], self.gaze_y[a:b]
        ok = np.isfinite(x) & np.isfinite(y)
        return np.column_stack([x[ok], y[ok]])

    def gaze_missing(self, t0_us: int, t1_us: int, *, max_step_us: int = 100_000) -> Optional[str]:
        """In words, how much of [t0, t1] the loaded gaze does not cover (no sample for longer than
        ``max_step_us``), with the reason when the folder is damaged; None when it is covered."""
        span = max(int(t1_us) - int(t0_us), 1)
        t = self.gaze_t[(self.gaze_t >= t0_us) & (self.gaze_t <= t1_us)]
        edges = np.concatenate([[int(t0_us)], t, [int(t1_us)]]).astype(np.int64)
        steps = np.diff(edges)
        missing = int(steps[steps > max_step_us].sum())
        if missing == 0:
            return None
        why = next((p["message"] for p in self.problems if p.get("stream") == "gaze"), None)
        text = f"no gaze for {missing / 1e6:.1f} of {span / 1e6:.1f} s"
        if not self.reader.has_gaze():
            text += " (this session has no gaze.tsv)"
        elif why:
            text += f" ({why})"
        return text

    @property
    def stimulus_rect(self) -> Tuple[float, float, float, float]:
        """Where clips were shown on the display (x0, y0, x1, y1, normalised); the whole display
        when the session does not say."""
        r = self.meta.get("stimulus_rect")
        if r and len(r) == 4:
            return tuple(float(v) for v in r)
        return 0.0, 0.0, 1.0, 1.0

    # ------------------------------------------------------------------ tables
    def write_trial_table(self, path) -> Path:
        path = Path(path)
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(TRIAL_TABLE_COLUMNS)
            for tr in self.trials:
                w.writerow(tr.cells())
        return path

    @property
    def live_settings(self) -> Dict[str, object]:
        return dict(self.meta.get("live") or {})


# ---------------------------------------------------------------------- comparison
@dataclass
class Comparison:
    """Re-analysed windows beside recorded ones, matched on (t_start_us, t_end_us). :meth:`text`
    names windows by their end in seconds from ``t0_us`` (the session's start, where the replay
    plots put 0) and by their trial."""

    matched: int
    only_recorded: int
    only_new: int
    max_abs_diff: np.ndarray                     # per matched window: max |er7, fer7| difference
    t_end_us: np.ndarray
    changed_er_top: List[Tuple[int, str, str]] = field(default_factory=list)   # (t_end, recorded, new)
    changed_fer_top: List[Tuple[int, str, str]] = field(default_factory=list)
    trials_recorded: int = 0                     # whole-trial predictions: recorded, re-analysed, matched
    trials_new: int = 0
    trial_max_abs_diff: Dict[int, float] = field(default_factory=dict)   # trial -> max |difference|
    changed_trial_top: List[Tuple[int, str, str]] = field(default_factory=list)   # (trial, recorded, new)
    t0_us: int = 0                               # where the session's time axis starts
    window_trial: Dict[int, int] = field(default_factory=dict)   # t_end -> trial (-1: none)
    # model inputs (predictions.tsv n_gaze, eye_crc, face_crc; recorded since 2026-12-07): how many
    # matched windows had them on both sides, and (t_end, what differed) where they were not equal
    inputs_compared: int = 0
    inputs_differ: List[Tuple[int, str]] = field(default_factory=list)
    trial_inputs_differ: List[Tuple[int, str]] = field(default_factory=list)   # (trial, what)

    def _when(self, t_end_us: int) -> str:
        trial = self.window_trial.get(int(t_end_us), -1)
        return f"{(t_end_us - self.t0_us) / 1e6:.1f} s" + (f" (trial {trial})" if trial >= 0 else "")

    @property
    def overall_max(self) -> float:
        return float(np.nanmax(self.max_abs_diff)) if len(self.max_abs_diff) else float("nan")

    def text(self) -> str:
        lines = [f"{self.matched} windows matched ({self.only_recorded} only recorded, {self.only_new} only new)"]
        if self.matched:
            lines.append(f"max |difference| of the ER/FER probabilities: {self.overall_max:.2e} "
                         f"(median per window {float(np.nanmedian(self.max_abs_diff)):.2e})")
        lines.append(f"ER top class changed in {len(self.changed_er_top)} windows, FER top class in "
                     f"{len(self.changed_fer_top)}")
        if self.trials_recorded or self.trials_new:
            worst = max(self.trial_max_abs_diff.values()) if self.trial_max_abs_diff else float("nan")
            lines.append(f"whole-trial predictions: {self.trials_recorded} recorded, {self.trials_new} re-analysed, "
                         f"{len(self.trial_max_abs_diff)} matched (max |difference| {worst:.2e}); ER top class "
                         f"changed in {len(self.changed_trial_top)}")
            for n, a, b in self.changed_trial_top[:8]:
                lines.append(f"  trial {n}: {a} -> {b}")
        if self.inputs_compared:
            if self.inputs_differ or self.trial_inputs_differ:
                lines.append(f"model inputs differed in {len(self.inputs_differ)} of {self.inputs_compared} windows"
                             f" and {len(self.trial_inputs_differ)} whole-trial windows (the data differed, "
                             "not the arithmetic)")
                for t, what in self.inputs_differ[:4]:
                    lines.append(f"  inputs at {self._when(t)}: {what}")
                for n, what in self.trial_inputs_differ[:4]:
                    lines.append(f"  inputs of trial {n}: {what}")
            else:
                lines.append(f"model inputs equal in all {self.inputs_compared} windows compared")
        for t, a, b in self.changed_er_top[:8]:
            lines.append(f"  ER  at {self._when(t)}: {a} -> {b}")
        for t, a, b in self.changed_fer_top[:8]:
            lines.append(f"  FER at {self._when(t)}: {a} -> {b}")
        return "\n".join(lines)


def _inputs_differ(row, p) -> Optional[str]:
    """None when a recorded row and a re-analysed prediction had the same model inputs (or either
    does not say), else what differed."""
    got = getattr(p, "inputs", None) or {}
    rec = {}
    for k in ("n_gaze", "eye_crc", "face_crc"):
        v = row.get(k) if hasattr(row, "get") else None
        if v is None or (isinstance(v, float) and math.isnan(v)) or int(v) < 0 or k not in got:
            return None
        rec[k] = int(v)
    what = []
    if rec["n_gaze"] != int(got["n_gaze"]):
        what.append(f"gaze samples {rec['n_gaze']} recorded, {int(got['n_gaze'])} now")
    elif rec["eye_crc"] != int(got["eye_crc"]):
        what.append("eye/fixation features")
    if rec["face_crc"] != int(got["face_crc"]):
        what.append("face crops")
    return ", ".join(what)


def _probs(row, prefix: str) -> np.ndarray:
    return np.array([float(row[f"{prefix}_{c}"]) for c in ER7_CLASSES], float)


def compare_predictions(recorded, new: List[object], recorded_trials=None, *, t0_us: int = 0) -> Comparison:
    """``recorded``: the session's window rows (DataFrame); ``new``: re-analysed
    :class:`~emer_live.live.prediction.Prediction` objects; ``recorded_trials``: the session's
    whole-trial rows (DataFrame), compared with the re-analysed ones trial by trial; ``t0_us``:
    the session's start (:attr:`ReplaySession.t0_us`), from which the summary counts seconds."""
    rec = {}
    if recorded is not None:
        for _, r in recorded.iterrows():
            rec[(int(r["t_start_us"]), int(r["t_end_us"]))] = r
    got = {(int(p.t_start_us), int(p.t_end_us)): p for p in new if p.kind == "window"}
    keys = sorted(set(rec) & set(got), key=lambda k: k[1])
    diffs, ends, ch_er, ch_fer, compared, differ = [], [], [], [], 0, []
    for k in keys:
        r, p = rec[k], got[k]
        what = _inputs_differ(r, p)
        if what is not None:
            compared += 1
            if what:
                differ.append((k[1], what))
        d = np.abs(_probs(r, "er7") - np.asarray(p.er7, float))
        if p.fer7 is not None:
            d = np.concatenate([d, np.abs(_probs(r, "fer7") - np.asarray(p.fer7, float))])
        diffs.append(float(np.nanmax(d)))
        ends.append(k[1])
        if str(r["er_top"]) != p.er_top:
            ch_er.append((k[1], str(r["er_top"]), p.er_top))
        if p.fer_top is not None and str(r["fer_top"]) != p.fer_top:
            ch_fer.append((k[1], str(r["fer_top"]), p.fer_top))
    out = Comparison(matched=len(keys), only_recorded=len(set(rec) - set(got)), only_new=len(set(got) - set(rec)),
                     max_abs_diff=np.array(diffs, float), t_end_us=np.array(ends, np.int64),
                     changed_er_top=ch_er, changed_fer_top=ch_fer, t0_us=int(t0_us),
                     window_trial={k[1]: int(rec[k]["trial"]) if "trial" in rec[k] else int(got[k].trial)
                                   for k in keys}, inputs_compared=compared, inputs_differ=differ)
    rec_tr = {}
    if recorded_trials is not None:
        for _, r in recorded_trials.iterrows():
            rec_tr[int(r["trial"])] = r            # the last row of a trial (a restarted clip) counts
    new_tr = {int(p.trial): p for p in new if p.kind == "trial"}
    out.trials_recorded, out.trials_new = len(rec_tr), len(new_tr)
    for n in sorted(set(rec_tr) & set(new_tr)):
        r, p = rec_tr[n], new_tr[n]
        what = _inputs_differ(r, p)
        if what:
            out.trial_inputs_differ.append((n, what))
        out.trial_max_abs_diff[n] = float(np.nanmax(np.abs(_probs(r, "er7") - np.asarray(p.er7, float))))
        if str(r["er_top"]) != p.er_top:
            out.changed_trial_top.append((n, str(r["er_top"]), p.er_top))
    return out


# ---------------------------------------------------------------------- re-analysis
class Reanalysis:
    """Score a recording again with a checkpoint: a ``live`` run over replay devices at
    ``speed=None`` (no folder written), driven by :meth:`step`; each call does at most ~50 ms of
    work (the run layer's slice). Windows use the recording's own window length, hop and grid
    origin (session.json ``live``) unless given."""

    def __init__(self, session: ReplaySession, checkpoint, *, window_s: Optional[float] = None,
                 hop_s: Optional[float] = None, model_device: str = "cpu") -> None:
        from .config import RunConfig
        from .run import Run

        live = session.live_settings
        self.session = session
        self.predictions: List[object] = []
        self.error: Optional[BaseException] = None
        cam = "replay" if session.video_segments else "none"
        self.config = RunConfig(kind="live", tracker=f"replay:{session.path}", camera=cam, mic="none", speed=None,
                                checkpoint=str(checkpoint), model_device=model_device,
                                window_s=float(window_s or live.get("window_s", 8.0)),
                                hop_s=float(hop_s or live.get("hop_s", 1.0)))
        self.run = Run(self.config)
        self.run.subscribe(self._on_event)
        self.started = False

    def _on_event(self, ev) -> None:
        from .events import PredictionMade, RunError

        if isinstance(ev, PredictionMade):
            self.predictions.append(ev.prediction)
        elif isinstance(ev, RunError) and self.error is None:
            self.error = ev.error

    @property
    def progress(self) -> float:
        """0..1: the newest re-analysed window's end within the recording."""
        s = self.session
        if not self.predictions:
            return 0.0
        return min(1.0, max(0.0, (self.predictions[-1].t_end_us - s.t0_us) / max(1, s.t1_us - s.t0_us)))

    def step(self) -> bool:
        """Do a slice of work; False once finished."""
        if not self.started:
            self.started = True
            self.run.start()
            self._schedule_trials()
        return bool(self.run.poll())

    def _schedule_trials(self) -> None:
        """Announce the recorded clips to the engine as the session controller did live, so
        windows get their trial tags and each clip its whole-trial prediction."""
        eng = self.run.engine
        if eng is None:
            return
        # live announced a clip at its onset with its last frame's due time and may have scored
        # it before a late last frame set the observed offset: predictions.tsv records the span
        # each whole-trial prediction used (the last row of a trial counts, as in the comparison)
        scored = {}
        tp = self.session.trial_predictions
        if tp is not None:
            for _, r in tp.iterrows():
                scored[int(r["trial"])] = (int(r["t_start_us"]), int(r["t_end_us"]))
        for tr in self.session.trials:
            span = scored.get(tr.trial)
            if span is None and tr.onset_us is not None and tr.offset_us is not None:
                span = (int(tr.onset_us), int(tr.offset_us))
            if span is not None and span[1] > span[0]:
                eng.schedule_trial(tr.trial, *span)

    def cancel(self) -> None:
        self.run.stop("cancelled by the user", status="aborted")

    def close(self) -> None:
        self.run.close("closed")

    @property
    def status(self) -> Optional[str]:
        return self.run.status
