"""The collection-session state machine, UI-agnostic (DESIGN sec. 3; issue 3).

``setup -> (calibration) -> baseline -> [fixation -> stimulus -> SAM -> rest] x N -> end``

The controller is *driven*: call :meth:`SessionController.tick` often (a Qt timer in the GUI, a
loop in headless runs) and feed it the operator's and participant's actions (:meth:`submit_sam`,
:meth:`pause`, :meth:`resume`, :meth:`abort`). It never blocks and never touches a widget; the
UI learns about changes through :attr:`listeners` (``fn(phase, trial_or_None)``). Every
transition is an ``events.tsv`` row on the session clock; footage follows the trial boundaries
(``trials/NN_<stimulus>/`` from the fixation cross to the SAM answer, ``between/`` otherwise).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Protocol

from ..errors import ConfigError
from ..recording import format as rfmt
from ..recording.presentation import STIMULUS_FRAMES_TSV, PresentationStats, PresentationTracker
from ..recording.writer import Recorder
from .sam import SamAnswer, SamTable

__all__ = ["Phase", "SessionTiming", "SessionController", "Presenter", "SimulatedPresenter", "TrialSpec"]


class Phase(str, enum.Enum):
    SETUP = "setup"
    CALIBRATION = "calibration"
    BASELINE = "baseline"
    FIXATION = "fixation"
    STIMULUS = "stimulus"
    SAM = "sam"
    REST = "rest"
    PAUSED = "paused"
    DONE = "done"
    ABORTED = "aborted"


@dataclass(frozen=True)
class SessionTiming:
    """Phase durations in seconds (real clips play their own length); ``time_scale`` shrinks every
    phase for tests and demos (0.05 = 20x shorter)."""

    baseline_s: float = 60.0
    fixation_s: float = 3.0
    rest_s: float = 10.0
    sam_timeout_s: Optional[float] = None    # None: wait for the participant
    sam_answer_s: float = 4.0                # how long an automatic (synthetic) participant takes
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("baseline_s", "fixation_s", "rest_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 seconds")
        if not 0 < self.time_scale <= 10:
            raise ConfigError(f"time_scale must be in (0, 10], got {self.time_scale}")

    def us(self, seconds: float) -> int:
        return int(round(seconds * self.time_scale * 1e6))


@dataclass(frozen=True)
class TrialSpec:
    trial: int                 # 1-based
    stimulus_id: str
    category: str
    duration_s: float          # the clip's own length (before time_scale)
    fps: float = 25.0
    path: Optional[str] = None


class Presenter(Protocol):
    """What shows things on the participant's screen. The GUI implements it with Qt; headless
    runs use :class:`SimulatedPresenter`. ``play`` reports presented frames through
    ``on_frame(frame_index, t_us)`` and the end through the controller's tick (duration)."""

    def show_fixation(self) -> None: ...

    def prepare(self, trial: TrialSpec, *, due_us: Optional[int] = None) -> None:
        """Load ``trial``'s clip now (during the fixation cross) so playback starts at once;
        ``due_us``: the session time the clip is due (its planned onset). A presenter may start
        the clip by itself then, ahead of the controller's :meth:`play` (which comes at the
        controller's next tick), and report the frames it presented meanwhile from ``play``."""

    def play(self, trial: TrialSpec, on_frame: Callable[[int, int], None], *, onset_us: int) -> None:
        """Start the clip; ``onset_us`` is the session time the controller logged as its onset."""

    def poll(self, now_us: int) -> None: ...

    def stop(self) -> None: ...

    def show_blank(self) -> None: ...


class SimulatedPresenter:
    """Headless stand-in: "presents" a clip's frames at its fps on the session clock (scaled),
    each reported through ``on_frame`` as a screen would, so a headless session's presentation
    log and observed onsets follow the same rule as the app's. ``first_frame_delay_us`` delays
    the first frame (and the rest with it) as a slow display would (tests)."""

    def __init__(self, time_scale: float = 1.0, *, first_frame_delay_us: int = 0) -> None:
        self.time_scale = time_scale
        self.first_frame_delay_us = int(first_frame_delay_us)
        self._trial: Optional[TrialSpec] = None
        self._on_frame = None
        self._onset = 0
        self._next = 0
        self._n = 0

    def show_fixation(self) -> None:
        pass

    def prepare(self, trial: TrialSpec, *, due_us: Optional[int] = None) -> None:
        pass

    def show_blank(self) -> None:
        pass

    def play(self, trial: TrialSpec, on_frame, *, onset_us: int = 0) -> None:
        self._trial, self._on_frame, self._next = trial, on_frame, 0
        self._onset = onset_us + self.first_frame_delay_us
        self._n = clip_frames(trial)

    def poll(self, now_us: int) -> None:
        if self._trial is None:
            return
        period = 1e6 / self._trial.fps * self.time_scale
        while self._next < self._n and self._onset + int(self._next * period) <= now_us:
            self._on_frame(self._next, self._onset + int(self._next * period))
            self._next += 1

    def stop(self) -> None:
        self._trial = None


def clip_frames(spec: TrialSpec) -> int:
    """How many frames a trial's clip has (its duration x its frame rate)."""
    return int(round(spec.duration_s * spec.fps))


@dataclass
class _TrialState:
    spec: TrialSpec
    # pending | running while the session runs; at its end each trial says what happened to it:
    # complete | skipped (the operator's choice) | aborted (running at the stop) | not_run
    status: str = "pending"
    t_start_us: Optional[int] = None
    t_onset_us: Optional[int] = None      # observed: the first presented frame
    t_offset_us: Optional[int] = None     # observed: the last presented frame
    t_end_us: Optional[int] = None
    frames_presented: int = 0
    planned_onset_us: Optional[int] = None
    planned_offset_us: Optional[int] = None
    presentation: Optional[PresentationStats] = None     # the clip's figures, once it left the screen
    tracker: Optional[PresentationTracker] = None       # while the clip plays


class SessionController:
    """Drives one collection session.

    Parameters
    ----------
    recorder : Recorder
        The open session recorder (devices already attached and running).
    trials : list of TrialSpec
        The participant's plan, in order.
    timing : SessionTiming
    presenter : Presenter, optional
        Defaults to :class:`SimulatedPresenter`.
    sam_source : callable, optional
        ``trial_number -> SamAnswer``: answers automatically (synthetic participant). Without it
        the controller waits in the SAM phase for :meth:`submit_sam`.
    phantom : optional
        The synthetic participant, told when stimuli start and end.
    calibrate : bool
        Begin with a CALIBRATION phase: :meth:`start` enters it and returns at once; whoever runs
        the calibration (a worker thread, never the GUI thread) calls :meth:`finish_calibration`
        with the result, which goes into session.json, and the baseline follows.
    """

    def __init__(self, *, recorder: Recorder, trials: List[TrialSpec], timing: SessionTiming = SessionTiming(),
                 presenter=None, sam_source: Optional[Callable[[int], SamAnswer]] = None, phantom=None,
                 calibrate: bool = False) -> None:
        if not trials:
            raise ConfigError("a session needs at least one trial")
        self.rec = recorder
        self.clock = recorder.clock
        self.timing = timing
        self.presenter = presenter or SimulatedPresenter(timing.time_scale)
        self.sam_source = sam_source
        self.phantom = phantom
        self.calibrate = bool(calibrate)
        self.trials = [_TrialState(t) for t in trials]
        self.phase = Phase.SETUP
        self.current = -1                       # index into self.trials
        self._phase_end: Optional[int] = None   # t_us when the current timed phase ends
        self._paused_from: Optional[Phase] = None
        self._paused_left: Optional[int] = None
        self._lock = threading.RLock()
        self.listeners: List[Callable[[Phase, Optional[int]], None]] = []
        #: ``fn(kind, trial_state)`` when a clip's first frame was presented (``"onset"``) and when
        #: its presentation ended (``"offset"``, with ``trial_state.presentation`` filled in);
        #: called from the thread that reports frames (the GUI thread with the Qt presenter)
        self.presentation_listeners: List[Callable[[str, _TrialState], None]] = []
        self.sam = SamTable(recorder.path / rfmt.SAM_TSV)
        self.answers: dict = {}                 # trial -> SamAnswer given (for displays)
        self._stim_log = None
        self._sam_shown_us = 0
        self.rec.update_meta(timing=asdict(timing), plan=[asdict(t) for t in trials])

    # ------------------------------------------------------------------ helpers
    @property
    def trial(self) -> Optional[_TrialState]:
        return self.trials[self.current] if 0 <= self.current < len(self.trials) else None

    @property
    def phase_end_us(self) -> Optional[int]:
        """Session time at which the current timed phase ends (None: untimed, e.g. SAM)."""
        return self._phase_end

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.DONE, Phase.ABORTED)

    @property
    def complete(self) -> bool:
        """True when the session ran through its whole plan: it reached its end and every trial
        completed (a trial the operator skipped counts as done; its status says ``skipped``)."""
        return self.phase is Phase.DONE and all(t.status in ("complete", "skipped") for t in self.trials)

    def _set_phase(self, phase: Phase, duration_us: Optional[int] = None, now: Optional[int] = None) -> None:
        now = self.clock.now_us() if now is None else now
        self.phase = phase
        self._phase_end = None if duration_us is None else now + duration_us
        tr = self.trial.spec.trial if self.trial is not None and phase in (
            Phase.FIXATION, Phase.STIMULUS, Phase.SAM) else None
        for fn in list(self.listeners):
            fn(phase, tr)

    def _event(self, kind: str, t_us: Optional[int] = None, **detail) -> int:
        tr = self.trial.spec.trial if self.trial is not None and self.trial.status == "running" else None
        return self.rec.log_event(kind, trial=tr, t_us=t_us, **detail)

    def _save_trials(self) -> None:
        rows = []
        for t in self.trials:
            row = {"trial": t.spec.trial, "stimulus_id": t.spec.stimulus_id, "category": t.spec.category,
                   "status": t.status, "t_start_us": t.t_start_us, "t_onset_us": t.t_onset_us,
                   "t_offset_us": t.t_offset_us, "t_end_us": t.t_end_us, "frames_presented": t.frames_presented,
                   "planned_onset_us": t.planned_onset_us, "planned_offset_us": t.planned_offset_us}
            pres = t.presentation.as_dict() if t.presentation is not None else {}
            for k in ("frames_expected", "frames_dropped", "frames_late", "worst_interval_ms", "onset_delay_ms"):
                row[k] = pres.get(k)
            rows.append(row)
        self.rec.update_meta(trials=rows)

    # ------------------------------------------------------------------ operator actions
    def start(self) -> None:
        """Leave SETUP: calibration (if any), then the baseline."""
        with self._lock:
            if self.phase is not Phase.SETUP:
                raise RuntimeError(f"start() in phase {self.phase.value}")
            self._event("session_start", n_trials=len(self.trials))
            if self.calibrate:
                self._event("calibration", stage="start")
                self._set_phase(Phase.CALIBRATION)
                return
            self._begin_baseline()

    def finish_calibration(self, result: dict) -> None:
        """End the CALIBRATION phase with its result (stored in session.json) and begin the baseline."""
        with self._lock:
            if self.phase is not Phase.CALIBRATION:
                raise RuntimeError(f"finish_calibration() in phase {self.phase.value}")
            self.rec.update_meta(calibration=result)
            self._event("calibration", stage="end", result=result)
            self._begin_baseline()

    def _begin_baseline(self) -> None:
        self._save_trials()
        now = self._event("baseline_start")
        self.rec.begin_between("baseline", t_us=now)
        self.presenter.show_fixation()
        self._set_phase(Phase.BASELINE, self.timing.us(self.timing.baseline_s), now)

    def pause(self) -> None:
        with self._lock:
            if self.finished or self.phase in (Phase.PAUSED, Phase.SETUP):
                return
            now = self._event("pause", phase=self.phase.value)
            self._paused_from = self.phase
            self._paused_left = None if self._phase_end is None else max(self._phase_end - now, 0)
            if self.phase is Phase.STIMULUS:
                # a clip cannot be resumed mid-way meaningfully for the study: it restarts
                self.presenter.poll(now)
                self.presenter.stop()
                self._end_presentation(now, interrupted="pause")
            elif self.phase is Phase.FIXATION:
                self.presenter.stop()          # the clip is no longer due when it was
            self._set_phase(Phase.PAUSED, None, now)

    def resume(self) -> None:
        with self._lock:
            if self.phase is not Phase.PAUSED:
                return
            now = self._event("resume", phase=self._paused_from.value)
            phase, left = self._paused_from, self._paused_left
            self._paused_from = self._paused_left = None
            if phase is Phase.STIMULUS:
                self._begin_fixation(now, restart=True)
            else:
                if phase is Phase.FIXATION:
                    self.presenter.prepare(self.trial.spec, due_us=now + (left or 0))
                self._set_phase(phase, left, now)

    def abort(self, reason: str = "operator") -> None:
        """Stop now; trials done so far stay complete (or skipped), the running one is marked
        aborted and those not begun ``not_run`` - the words `emer-live repair` uses for a
        session that ended before them, so a folder says the same however the session ended."""
        with self._lock:
            if self.finished:
                return
            now = self.clock.now_us()
            tr = self.trial
            if tr is not None and tr.status == "running":
                self.presenter.stop()
                if tr.tracker is not None:
                    self._end_presentation(now, interrupted="abort")
                tr.status = "aborted"
                tr.t_end_us = now
                self.rec.log_event("trial_aborted", trial=tr.spec.trial, t_us=now, reason=reason,
                                   phase=(self._paused_from or self.phase).value)
            for t in self.trials:
                if t.status == "pending":
                    t.status = "not_run"
            self.rec.log_event("abort", t_us=now, reason=reason)
            self._close_stim_log()
            self._save_trials()
            self._set_phase(Phase.ABORTED, None, now)

    def skip_trial(self, reason: str = "operator") -> bool:
        """End the running trial now without a SAM answer (status ``skipped``): a clip that
        cannot be shown, a participant who needs a moment. The session goes on with the rest.
        Returns False when no trial is running."""
        with self._lock:
            tr = self.trial
            if self.finished or tr is None or tr.status != "running":
                return False
            now = self.clock.now_us()
            phase = self._paused_from if self.phase is Phase.PAUSED else self.phase
            if phase is Phase.STIMULUS and self.phase is not Phase.PAUSED:
                self.presenter.poll(now)
                self.presenter.stop()
            if tr.tracker is not None:
                if self.phantom is not None and tr.t_onset_us is not None:
                    self.phantom.end_trial(now)
                self._end_presentation(now, interrupted="skip")
            self._paused_from = self._paused_left = None
            self.rec.begin_between(f"rest_{tr.spec.trial:02d}", t_us=now)
            self._event("trial_skipped", t_us=now, reason=reason, phase=phase.value)
            tr.status, tr.t_end_us = "skipped", now
            self._save_trials()
            self.presenter.show_blank()
            if self.current == len(self.trials) - 1:
                self._finish(now)
            else:
                self._event("rest_start", t_us=now)
                self._set_phase(Phase.REST, self.timing.us(self.timing.rest_s), now)
            return True

    def submit_sam(self, answer: SamAnswer, *, response_ms: Optional[dict] = None) -> None:
        """The participant's SAM answer for the current trial; ``response_ms`` (per row, from
        the SAM being shown) goes into the ``sam_answered`` event."""
        with self._lock:
            if self.phase is not Phase.SAM:
                raise RuntimeError(f"no SAM is being asked (phase {self.phase.value})")
            tr = self.trial
            now = self.clock.now_us()
            # the trial's footage ends now: announce the boundary before anything slow (fsync)
            self.rec.begin_between(f"rest_{tr.spec.trial:02d}", t_us=now)
            self.sam.append(trial=tr.spec.trial, stimulus_id=tr.spec.stimulus_id, category=tr.spec.category,
                            answer=answer, answered_t_us=now)
            self.answers[tr.spec.trial] = answer
            extra = {} if not response_ms else {"response_ms": {k: round(float(v), 1) for k, v in response_ms.items()}}
            self._event("sam_answered", t_us=now, valence=answer.valence, arousal=answer.arousal,
                        dominance=answer.dominance, emotion=answer.emotion, **extra)
            self._event("trial_end", t_us=now)
            tr.status, tr.t_end_us = "complete", now
            self._save_trials()
            self.presenter.show_blank()
            last = self.current == len(self.trials) - 1
            if last:
                self._finish(now)
            else:
                self._event("rest_start", t_us=now)
                self._set_phase(Phase.REST, self.timing.us(self.timing.rest_s), now)

    # ------------------------------------------------------------------ the clock
    def tick(self) -> Phase:
        """Advance timed phases; call every ~10-50 ms. Returns the phase after the tick."""
        with self._lock:
            now = self.clock.now_us()
            if self.phase is Phase.STIMULUS:
                self.presenter.poll(now)
            if self._phase_end is None or now < self._phase_end or self.finished:
                if (self.phase is Phase.SAM and self.sam_source is not None
                        and now >= self._sam_shown_us + self.timing.us(self.timing.sam_answer_s)):
                    self.submit_sam(self.sam_source(self.trial.spec.trial))
                return self.phase
            end = self._phase_end
            if self.phase is Phase.BASELINE:
                self._event("baseline_end", t_us=end)
                self._next_trial(end)
            elif self.phase is Phase.FIXATION:
                self._begin_stimulus(end)
            elif self.phase is Phase.STIMULUS:
                self._end_stimulus(end)
            elif self.phase is Phase.REST:
                self._event("rest_end", t_us=end)
                self._next_trial(end)
            elif self.phase is Phase.SAM:   # timed out
                self._event("sam_timeout", t_us=end)
                self.abort("SAM not answered in time")
            return self.phase

    def _next_trial(self, now: int) -> None:
        self.current += 1
        tr = self.trial
        tr.status, tr.t_start_us = "running", now
        self.rec.begin_trial(tr.spec.trial, tr.spec.stimulus_id, t_us=now)
        self._event("trial_start", t_us=now, stimulus_id=tr.spec.stimulus_id, category=tr.spec.category)
        self._begin_fixation(now)

    def _begin_fixation(self, now: int, restart: bool = False) -> None:
        self._event("fixation_cross", t_us=now, restart=restart) if restart else self._event("fixation_cross", t_us=now)
        self.presenter.show_fixation()
        fixation = self.timing.us(self.timing.fixation_s)
        self.presenter.prepare(self.trial.spec, due_us=now + fixation)
        self._set_phase(Phase.FIXATION, fixation, now)

    def _begin_stimulus(self, now: int) -> None:
        """The clip is due now (the planned onset). Its observed onset is the first frame the
        presenter reports (:meth:`_on_frame`); ``stimulus_onset`` is written then."""
        tr = self.trial
        duration = self.timing.us(tr.spec.duration_s)
        tr.planned_onset_us, tr.planned_offset_us = now, now + duration
        tr.t_onset_us = tr.t_offset_us = None
        tr.frames_presented = 0
        tr.presentation = None
        tr.tracker = PresentationTracker(fps=tr.spec.fps, time_scale=self.timing.time_scale,
                                         frames_expected=clip_frames(tr.spec), planned_onset_us=now,
                                         planned_offset_us=now + duration)
        self._open_stim_log(tr)
        self.presenter.play(tr.spec, self._on_frame, onset_us=now)
        self._set_phase(Phase.STIMULUS, duration, now)

    def _end_stimulus(self, now: int) -> None:
        tr = self.trial
        self.presenter.poll(now)
        self.presenter.stop()
        if self.phantom is not None and tr.t_onset_us is not None:
            self.phantom.end_trial(now)
        self._end_presentation(now)
        self._event("sam_shown", t_us=now)
        self._sam_shown_us = now
        self._set_phase(Phase.SAM, None if self.timing.sam_timeout_s is None
                        else self.timing.us(self.timing.sam_timeout_s), now)

    def _finish(self, now: int) -> None:
        self._event("session_end", t_us=now)
        self._set_phase(Phase.DONE, None, now)

    # ------------------------------------------------------------------ presentation log
    def _open_stim_log(self, tr: _TrialState) -> None:
        folder = self.rec.path / rfmt.TRIALS_DIR / f"{tr.spec.trial:02d}_{rfmt.safe_name(tr.spec.stimulus_id)}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / STIMULUS_FRAMES_TSV
        new = not path.exists()   # a restarted clip appends to the same log
        self._stim_log = open(path, "a", encoding="utf-8", newline="\n")
        self._stim_flushed_us = -(10 ** 18)
        if new:
            self._stim_log.write("frame\tt_us\n")

    def _on_frame(self, frame_index: int, t_us: int) -> None:
        """The presenter put clip frame ``frame_index`` on the screen at ``t_us``."""
        with self._lock:
            tr = self.trial
            if tr is None or tr.tracker is None:
                return                       # a frame after the clip's end (or after an abort)
            tr.frames_presented += 1
            if self._stim_log is not None:
                self._stim_log.write(f"{frame_index}\t{t_us}\n")
                if t_us - self._stim_flushed_us >= 500_000:   # the format promises <= 1 s unflushed
                    self._stim_log.flush()
                    self._stim_flushed_us = t_us
            if not tr.tracker.add(frame_index, t_us):
                return
            # the observed onset: written now, so a crash mid-clip leaves it in events.tsv
            tr.t_onset_us = int(t_us)
            self._event("stimulus_onset", t_us=t_us, stimulus_id=tr.spec.stimulus_id, category=tr.spec.category,
                        planned_onset_us=tr.planned_onset_us, frame=int(frame_index))
            if self.phantom is not None:
                self.phantom.begin_trial(tr.spec.trial, int(t_us), category=tr.spec.category,
                                         stimulus_id=tr.spec.stimulus_id)
            for fn in list(self.presentation_listeners):
                fn("onset", tr)

    def _end_presentation(self, now: int, *, interrupted: Optional[str] = None) -> None:
        """The clip left the screen at ``now``: its observed offset (the last presented frame)
        and figures go to events.tsv (``stimulus_offset``, or ``stimulus_not_shown`` when no
        frame was presented) and the trial's state."""
        tr = self.trial
        stats = tr.tracker.stats()
        tr.tracker = None
        self._close_stim_log()
        tr.presentation = stats
        tr.t_offset_us = stats.offset_us
        extra = {} if interrupted is None else {"interrupted": interrupted}
        d = stats.as_dict()
        figures = {k: d[k] for k in ("frames_expected", "frames_dropped", "frames_late",
                                                   "worst_interval_ms", "onset_delay_ms")}
        if stats.offset_us is None:
            self._event("stimulus_not_shown", t_us=now, stimulus_id=tr.spec.stimulus_id,
                        planned_onset_us=tr.planned_onset_us, planned_offset_us=tr.planned_offset_us, **extra)
        else:
            self._event("stimulus_offset", t_us=stats.offset_us, stimulus_id=tr.spec.stimulus_id,
                        frames=stats.frames_shown, planned_offset_us=tr.planned_offset_us, **figures, **extra)
        for fn in list(self.presentation_listeners):
            fn("offset", tr)

    def _close_stim_log(self) -> None:
        if self._stim_log is not None:
            self._stim_log.close()
            self._stim_log = None

    def close(self) -> None:
        """Close the SAM table and logs (the recorder is the caller's to stop)."""
        self._close_stim_log()
        self.sam.close()


