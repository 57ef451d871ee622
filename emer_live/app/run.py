"""One run of the instrument, assembled from a :class:`~emer_live.app.config.RunConfig`.

The CLI commands and the desktop app are two skins over this class::

    run = Run(RunConfig(kind="live", checkpoint="models/emert_demo_synthetic.pt"))
    run.subscribe(print)            # typed events (emer_live.app.events), delivered inside poll()
    run.start()                     # opens devices, recorder, engine, controller; returns at once
    while run.poll():               # does what is due, hands queued events to subscribers
        time.sleep(run.poll_interval_s)
    run.summary()

``start()``, ``poll()`` and ``stop()`` never block for long: real-time runs do their work on
device, recorder and model threads and ``poll()`` only checks on them; as-fast-as-possible runs
(``speed=None`` replays, ``fast`` synthetic sessions) do a bounded slice of work per ``poll()``
so a GUI stays responsive.

Device-failure policy (one per run kind, :data:`FAILURE_POLICY`):

* ``record`` - **stop**: a recording is only useful whole; the run ends with status ``error``.
* ``session`` - **abort**: a trial without its tracker or camera is no data; the controller
  aborts (trials already done stay complete, the running one is marked aborted).
* ``live`` - **continue**: recognition goes on with the modalities left (face only, eyes only);
  the run ends with status ``error`` only when no device is left.

A recorder error (disk full) always ends the run (status ``disk_full`` or ``error``), keeping
what was written. Every failure is an event (:class:`DeviceFailed`, :class:`RunError`) with the
exception object and its traceback.
"""

from __future__ import annotations

import enum
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..errors import ConfigError, DiskFullError, SessionExistsError
from .config import RunConfig
from .events import (DeviceEvent, DeviceFailed, PhaseChanged, PredictionMade, Progress, RunError, RunEvent,
                     RunFinished, RunNote, RunStarted, format_exception)

__all__ = ["Run", "RunState", "FAILURE_POLICY", "default_checkpoint"]

FAILURE_POLICY = {"record": "stop", "session": "abort", "live": "continue"}
MAX_NOTE_CHARS = 2000          # an operator note: a line or two, not a report

#: wall time one poll() of an as-fast-as-possible run may spend working
FAST_SLICE_S = 0.05


def default_checkpoint() -> Path:
    """The demo checkpoint shipped in ``models/``."""
    return Path(__file__).resolve().parents[2] / "models" / "emert_demo_synthetic.pt"


def checkpoint_face_config(model):
    """The face pipeline configuration a checkpoint's crops came from: its provenance says so
    (``face_config``); checkpoints from before the landmark pipeline (no such entry) were trained
    on the Haar pipeline's crops, so they get that pipeline live too."""
    from ..features.face import FaceConfig

    prov = getattr(model, "provenance", None) or {}
    fc = prov.get("face_config")
    if isinstance(fc, dict):
        return FaceConfig.from_dict(fc)
    return FaceConfig(detector="haar")


def _recorded_live_meta(*specs: str) -> dict:
    """The ``live`` block of the session.json a replay spec points at ({} if none)."""
    import json

    for spec in specs:
        kind, _, path = str(spec).partition(":")
        if kind.lower() == "replay" and path:
            try:
                meta = json.loads((Path(path) / "session.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return meta.get("live") or {}
    return {}


def _limit_library_threads() -> None:
    """OpenCV's own worker pool would compete with the run's threads (capture, recorder, face
    pipeline, model) for the cores; each of those is one thread already. The model's torch
    threads are set where the checkpoint is loaded (emer_live.model.checkpoint)."""
    try:
        import cv2
    except ImportError:     # no OpenCV, nothing to limit
        return
    cv2.setNumThreads(1)


def _clip_fps(path, default: float = 25.0) -> float:
    """A stimulus clip's frame rate from the file (a trial's frame count and frame interval
    depend on it); ``default`` for the simulated placeholder library, whose clips are not files."""
    from ..session.stimuli import StimulusError, probe_video

    if not Path(path).is_file():
        return default
    try:
        fps = probe_video(path).fps
    except (StimulusError, OSError):
        return default
    return float(fps) if fps and fps > 0 else default


def _check_folder_can_be_made(path: Path) -> None:
    """Refuse, before any device opens, a recording folder that cannot be made: a file on its
    path (``--out README.md``) or a parent that is not writable."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise ConfigError(f"cannot record into {path}: {existing} is a file, not a folder; give a folder")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"cannot record into {path}: {existing} is not writable for this user; give another folder")


class RunState(str, enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    FINISHED = "finished"


class Run:
    """A record, live or session run (see the module docstring).

    Parameters
    ----------
    config : RunConfig
    model : LoadedModel, optional
        An already loaded checkpoint (else ``config.checkpoint`` is loaded in :meth:`start`).
    presenter : Presenter, optional
        What shows the session on the participant's screen (default: simulated playback).
    sam_source : "phantom", callable or None
        Who answers the SAM: ``"phantom"`` = the synthetic participant when there is one (else the
        run waits for :meth:`submit_sam`), a callable ``trial -> SamAnswer``, or None (always wait).
    """

    def __init__(self, config: RunConfig, *, model=None, presenter=None, sam_source="phantom") -> None:
        if not isinstance(config, RunConfig):
            raise TypeError("Run needs a RunConfig")
        self.config = config
        self.model = model
        self.presenter = presenter
        self._sam_source = sam_source
        self.state = RunState.IDLE
        self.status: Optional[str] = None           # final status once finished
        self.reason = ""
        self.session_dir: Optional[Path] = None
        self.devices = None                         # DeviceSet (real time / replay)
        self.stepped = None                         # SteppedSynthetic (fast session)
        self.recorder = None
        self.engine = None
        self.controller = None
        self.library = None
        self.plan = None
        self.clock = None
        self.t_origin_us: Optional[int] = None
        self.errors: List[RunError] = []
        self.failed: Dict[str, BaseException] = {}
        self._subscribers: List[Callable[[RunEvent], None]] = []
        self._queue: "queue.SimpleQueue[RunEvent]" = queue.SimpleQueue()
        self._stop_request: Optional[tuple] = None   # (status, reason)
        self._checked = False
        self.base_model = model     # the checkpoint as loaded, before a FER model is attached
        self._claimed: List[Path] = []    # folders this run created, innermost first
        self.fer_model_path: Optional[str] = None
        # privacy mode (--face-video crops|none): the face pipeline on the recording path
        self.face_stage = None          # FaceCropStage: camera frames -> face crop stream
        self._crops_stream = None       # what the recorder and the engine read instead of frames
        self.face_video = config.face_video
        self.losses: Dict[str, dict] = {}
        self._jsonl = None
        self._jsonl_lock = threading.Lock()
        self._log_participant: Optional[str] = None     # named in every live --out line
        self._last_progress = -1.0
        self._fast_t_stop: Optional[int] = None
        self._fast_span_s = 0.0
        self._fast_direct = None                    # fast replay: direct window source (live.fast_replay)
        self._fast_pending: list = []               # fast replay: windows built, not yet scored
        self._fast_batch = 1
        self._wall_start: Optional[float] = None
        self.wall_s = 0.0
        self._elapsed_final: Optional[float] = None

    # ------------------------------------------------------------------ events
    def subscribe(self, fn: Callable[[RunEvent], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for every event, inside :meth:`poll`; returns an unsubscribe function."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def _now(self) -> int:
        return self.clock.now_us() if self.clock is not None else 0

    def _emit(self, event: RunEvent) -> None:
        self._queue.put(event)     # thread-safe; delivered by poll()

    def _error(self, where: str, exc: BaseException) -> RunError:
        e = RunError(t_us=self._now(), where=where, error=exc, traceback=format_exception(exc))
        self.errors.append(e)
        self._emit(e)
        return e

    def dispatch(self) -> int:
        """Hand queued events to subscribers (in order); returns how many. A subscriber that
        raises does not keep the others from their event; its error becomes a RunError."""
        n = 0
        while True:
            try:
                ev = self._queue.get_nowait()
            except queue.Empty:
                return n
            n += 1
            for fn in list(self._subscribers):
                try:
                    fn(ev)
                except Exception as exc:
                    if isinstance(ev, RunError) and ev.where.startswith("subscriber"):
                        print(f"emer-live: subscriber failed on its own error event: {exc!r}", file=sys.stderr)
                    else:
                        self._error(f"subscriber {getattr(fn, '__qualname__', fn)}", exc)

    # ------------------------------------------------------------------ properties for front ends
    @property
    def running(self) -> bool:
        return self.state is RunState.RUNNING

    @property
    def fast(self) -> bool:
        """True when the run works as fast as possible (no real-time pacing)."""
        return self.config.speed is None or self.config.fast

    @property
    def poll_interval_s(self) -> float:
        """How long a plain loop should wait between polls."""
        if self.fast:
            return 0.0
        return 0.01 if self.config.kind == "session" else 0.05

    @property
    def elapsed_s(self) -> float:
        """Session-clock seconds since the run's origin; frozen once the run has finished."""
        if self._elapsed_final is not None:
            return self._elapsed_final
        if self.t_origin_us is None or self.clock is None:
            return 0.0
        return max(0.0, (self.clock.now_us() - self.t_origin_us) / 1e6)

    @property
    def streams(self) -> Dict[str, object]:
        """The live streams by name (``gaze``, ``camera``, ``audio``) for displays."""
        out = {}
        if self.devices is not None:
            for name, dev in (("gaze", self.devices.tracker), ("camera", self.devices.camera),
                              ("audio", self.devices.mic)):
                if dev is not None and dev.stream is not None:
                    out[name] = dev.stream
        elif self.stepped is not None:
            out["gaze"] = self.stepped.gaze
            if self.stepped.camera is not None:
                out["camera"] = self.stepped.camera
        return out

    @property
    def phantom(self):
        if self.devices is not None:
            return self.devices.phantom
        return None if self.stepped is None else self.stepped.phantom

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Assemble and start the run; raises EmerError subclasses for bad input. Nothing is left
        behind then: outputs, the stimulus library, the devices (a damaged replay is refused when
        it is opened) and the model are all checked before any folder is made."""
        if self.state is not RunState.IDLE:
            raise RuntimeError(f"start() on a run that is {self.state.value}")
        cfg = self.config
        _limit_library_threads()
        try:
            self.check()
            fast_session = cfg.kind == "session" and cfg.fast
            if not fast_session:
                self._open_devices()
            if cfg.kind == "session" and self.session_dir is None:
                self._claim_session_dir()
            if fast_session:
                self._start_fast_session()
            else:
                self._setup_face_crops()
                self._make_recorder()
                if cfg.kind == "session":
                    self._make_controller(self.devices.phantom)
                if self.fast:
                    self._start_fast_replay()
                else:
                    self._start_realtime()
        except BaseException:
            self._teardown("error")
            self.state = RunState.FINISHED
            self.status = self.status or "error"
            # a start that failed leaves no empty session folder (nor the folders made for it)
            for folder in self._claimed:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise
        self.state = RunState.RUNNING
        self._wall_start = time.perf_counter()
        devices = {}
        if self.recorder is not None:
            devices = dict(self.recorder.meta.get("devices", {}))
        self._emit(RunStarted(t_us=self._now(), kind=cfg.kind,
                              session_dir=None if self.session_dir is None else str(self.session_dir),
                              t_origin_us=int(self.t_origin_us), devices=devices))
        if self.engine is not None:
            for note in self.engine.notes:
                self._emit(RunNote(t_us=self._now(), text=note))
        if self.controller is not None:
            try:
                self.controller.start()
            except BaseException:
                self._finish("error", "the session controller failed to start")
                raise

    def check(self) -> None:
        """What :meth:`start` refuses without opening a device or making a folder: outputs that
        exist, the stimulus library and its plan (sessions), the checkpoint and the FER model
        (loaded now; :meth:`start` uses them). Front ends call it before they open a window.
        Raises EmerError subclasses; runs once."""
        if self._checked:
            return
        from ..devices.factory import check_device_specs

        check_device_specs(self.config.tracker, self.config.camera, self.config.mic)
        self._check_outputs()
        if self.config.kind == "session":
            self._plan_session()
        self._load_model()
        self._checked = True

    def _check_outputs(self) -> None:
        cfg = self.config
        where = cfg.out or (cfg.out_root if cfg.kind == "session" else None)
        if where:
            _check_folder_can_be_made(Path(where))
        if cfg.predictions_jsonl and Path(cfg.predictions_jsonl).exists():
            raise SessionExistsError(f"--out {cfg.predictions_jsonl} exists; refusing to overwrite - choose a new file")
        if cfg.predictions_jsonl:
            _check_folder_can_be_made(Path(cfg.predictions_jsonl).parent)
        if cfg.kind == "session":
            if cfg.out:
                out = Path(cfg.out)
                if out.exists() and (not out.is_dir() or any(out.iterdir())):
                    raise SessionExistsError(f"{out} already holds files; refusing to overwrite - choose a new folder")
                self.session_dir = out     # else claimed once the plan and model are known good
        elif cfg.out:
            out = Path(cfg.out)
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                flag = "--record" if cfg.kind == "live" else "--out"
                raise SessionExistsError(f"{out} already exists and is not empty; refusing to overwrite - "
                                         f"choose a new {flag} folder")
            self.session_dir = out

    def _claim_session_dir(self) -> None:
        """``out_root/<participant>/S<date-time>[-k]``, created now, atomically: two sessions
        started in the same second get two ids."""
        from ..session.ids import claim_session_dir

        cfg = self.config
        root = Path(cfg.out_root)
        new_parents = [d for d in (root / cfg.participant, root) if not d.exists()]
        self.session_dir = claim_session_dir(root, cfg.participant, group_readable=cfg.group_readable)
        self._claimed = [self.session_dir] + new_parents

    def _load_model(self) -> None:
        cfg = self.config
        if self.model is None and cfg.checkpoint:
            ckpt = Path(cfg.checkpoint)
            if not ckpt.is_file():
                raise ConfigError(f"checkpoint {ckpt} not found; pass --checkpoint PATH (see models/README.md)")
            try:
                from ..model import load_checkpoint
            except ModuleNotFoundError as exc:
                if exc.name != "torch":
                    raise
                raise ConfigError("the EMERT model needs PyTorch, which this Python does not have (the Python "
                                  "3.10 Tobii lane runs without it): `pip install torch`, or run without "
                                  "--checkpoint") from None
            self.model = self.base_model = load_checkpoint(ckpt, device=cfg.model_device)
        if self.model is not None and cfg.kind in ("live", "session"):
            self._attach_fer()

    def _attach_fer(self) -> None:
        """FER from a pretrained FER model instead of EMERT's own face head, where --fer-model
        asks for it (``auto``: for a real camera; a replay takes what its recording used)."""
        from ..model.fer import WithFER, load_fer_checkpoint, resolve_fer_model

        cfg = self.config
        spec = cfg.fer_model
        if spec == "auto" and cfg.replay:
            recorded = _recorded_live_meta(cfg.tracker, cfg.camera)
            spec = recorded.get("fer_model") or "emert"
        path = resolve_fer_model(spec, cfg.camera)
        if path is None:
            return
        if not Path(path).is_file():
            raise ConfigError(f"FER model {path} not found; `emer-live import-fer` makes it (docs/face.md), "
                              "or pass --fer-model emert")
        self.model = WithFER(self.model, load_fer_checkpoint(path))
        self.fer_model_path = str(path)

    @property
    def fer_source(self) -> str:
        """Where this run's FER comes from (``emert`` = the EMERT checkpoint's own face head)."""
        return str(getattr(self.model, "fer_source", "emert")) if self.model is not None else "none"

    def _plan_session(self) -> None:
        from ..session.controller import TrialSpec
        from ..session.plan import make_plan
        from ..session.runner import resolve_library

        cfg = self.config
        self.library = lib = resolve_library(cfg.stimuli)
        self.plan = make_plan(lib, participant=cfg.participant, n_trials=cfg.n_trials, seed=cfg.seed,
                              participant_index=cfg.participant_index)
        self._trials = [TrialSpec(trial=t.number, stimulus_id=t.clip_id, category=t.category,
                                  duration_s=lib.clip(t.clip_id).duration_s, path=str(lib.path_of(t.clip_id)),
                                  fps=_clip_fps(lib.path_of(t.clip_id)))
                        for t in self.plan]

    def _meta(self) -> dict:
        cfg = self.config
        kind = {"record": "recording", "live": "live", "session": "session"}[cfg.kind]
        meta = {"participant": cfg.participant, "session_id": self.session_dir.name, "kind": kind, "seed": cfg.seed,
                "face_video": self.face_video}
        if cfg.consent_version is not None:
            from ..session.consent import consent_meta

            meta.update(consent_meta(cfg.consent_version, cfg.consent_date))
        if cfg.kind == "session":
            lib = self.library
            meta.update({"headless": self.presenter is None, "fast": cfg.fast,
                         "stimuli": {"library": str(lib.manifest_path), "placeholder": lib.placeholder,
                                     "title": lib.title},
                         "trial_plan": self.plan.to_dict(), "time_scale": cfg.time_scale})
        return meta

    def _open_devices(self) -> None:
        from ..devices.factory import make_devices

        cfg = self.config
        ds = make_devices(tracker=cfg.tracker, camera=cfg.camera, mic=cfg.mic, rate=cfg.rate, fps=cfg.fps,
                          size=tuple(cfg.size), seed=cfg.seed, participant=cfg.participant,
                          mask_rate=cfg.mask_rate, speed=cfg.speed)
        ds.open_all()      # raises DeviceUnavailable before anything is written
        self.devices = ds
        self.clock = ds.clock
        ds.events.targets.append(self._on_device_event)

    def _on_device_event(self, t_us: int, kind: str, detail: dict) -> None:
        self._emit(DeviceEvent(t_us=int(t_us), device_kind=kind, detail=dict(detail)))

    def _face_config(self):
        """The face pipeline configuration of this run's crops."""
        if self.fer_model_path is not None or self.model is None:
            # a real camera with the pretrained FER model: real faces need the landmark
            # pipeline (pose, confidence, robust detection); an EMERT trained on synthetic
            # faces is out of its depth there whichever crops it gets. Without a model (a
            # privacy-mode recording) the default pipeline makes the kept crops.
            from ..features.face import FaceConfig

            return FaceConfig()
        return checkpoint_face_config(self.model)

    def _setup_face_crops(self) -> None:
        """Privacy mode: crops are made once, on the recording path, for the recorder and the
        engine alike. A replayed crops session delivers its kept crops (and is recorded as crops:
        there is no face video to keep)."""
        cam = self.devices.camera if self.devices is not None else None
        if cam is None:
            return
        if getattr(cam, "delivers_crops", False):
            self._crops_stream = cam.stream
            if self.face_video == "full":
                self.face_video = "crops"
                if self.session_dir is not None:
                    self._emit(RunNote(t_us=self._now(), text="the replayed session kept face crops only "
                                                              "(--face-video crops): this recording keeps them too"))
            return
        if self.face_video == "full" or self.session_dir is None:
            return
        from ..features.face import FacePipeline
        from ..features.face_crops import FaceCropStage

        self.face_stage = FaceCropStage(cam.stream, FacePipeline(self._face_config()))
        self._crops_stream = self.face_stage.stream

    def _crops_info(self) -> dict:
        if self.face_stage is not None:
            return self.face_stage.info
        return dict(getattr(self.devices.camera, "face_info", {}) or {})

    def _make_recorder(self) -> None:
        if self.session_dir is None:
            return
        from ..recording.writer import record_device_set

        # the recorder creates missing parents itself, with the session's private modes
        self.recorder = record_device_set(self.devices, self.session_dir, meta=self._meta(),
                                          group_readable=self.config.group_readable,
                                          face_crops=self._crops_stream, face_video=self.face_video,
                                          face_info=None if self._crops_stream is None else self._crops_info())

    def _make_controller(self, phantom) -> None:
        from ..session.controller import SessionController, SessionTiming
        from ..session.sam import SamAnswer

        sam_source = self._sam_source
        if sam_source == "phantom":
            sam_source = None if phantom is None else (lambda trial: SamAnswer(**phantom.sam_answer(trial)))
        self.controller = SessionController(recorder=self.recorder, trials=self._trials,
                                            timing=SessionTiming(time_scale=self.config.time_scale),
                                            presenter=self.presenter, sam_source=sam_source, phantom=phantom,
                                            calibrate=self.config.calibrate)
        self.controller.listeners.append(self._on_phase)
        self.controller.presentation_listeners.append(self._on_presentation)

    def _on_phase(self, phase, trial) -> None:
        self._emit(PhaseChanged(t_us=self._now(), phase=phase.value, trial=trial))

    def _on_presentation(self, kind: str, tr) -> None:
        """The engine learns when clips were on screen - the observed times, as replay reads them
        from the record: whole-trial predictions, trial tags on windows. A clip that drops or
        delays frames is a warning in the console's event log while the session runs."""
        eng = self.engine
        if kind == "onset":
            if eng is not None:
                # announced with the time the last frame is due; if it comes at another time,
                # end_trial below moves the trial's end to it
                end = tr.tracker.last_frame_due_us() or tr.planned_offset_us
                eng.schedule_trial(tr.spec.trial, tr.t_onset_us, max(end, tr.t_onset_us + 1))
            return
        if eng is not None and tr.t_onset_us is not None:
            eng.end_trial(tr.spec.trial, max(tr.t_offset_us, tr.t_onset_us + 1))
        problems = tr.presentation.problems()
        if problems:
            self._emit(RunNote(t_us=self._now(), text=f"STIMULUS TIMING trial {tr.spec.trial} "
                                                      f"({tr.spec.stimulus_id}): " + "; ".join(problems)))

    def _make_engine(self, gaze, camera, origin: int, *, recompress: bool, stimulus_rect=None, source=None):
        """Source -> window builder -> engine -> (log, jsonl, events): the one place a live engine
        is wired, for live runs and sessions alike (``source``: a window source to read instead
        of the streams, e.g. a fast replay's direct reader)."""
        from ..features.windows import StreamSource, WindowBuilder, WindowSpec
        from ..live.engine import LiveEngine
        from ..live.prediction import PredictionLog

        cfg, rec = self.config, self.recorder
        spec = WindowSpec(window_s=cfg.window_s, hop_s=cfg.hop_s)
        # Frames being recorded pass through the recorder's JPEG so live crops equal offline ones;
        # replayed frames were decoded from that JPEG already and must not be compressed again.
        if source is None and self._crops_stream is not None:
            # privacy mode: the crops the recording path made (or a replay kept), not frames
            from ..features.face_crops import CropStreamSource

            source = CropStreamSource(gaze, self._crops_stream, stage=self.face_stage, stimulus_rect=stimulus_rect)
        if source is None:
            source = StreamSource(gaze, camera, jpeg_quality=rec.jpeg_quality if (rec is not None and recompress)
                                  else None, stimulus_rect=stimulus_rect)
        faces = None
        if camera is not None:
            from ..features.face import FacePipeline
            from ..features.windows import FaceSampler

            faces = FaceSampler(FacePipeline(self._face_config()))
        builder = WindowBuilder(source, spec=spec, use_face=camera is not None, grid_origin_us=origin,
                                face_sampler=faces)
        log = PredictionLog(rec.path / "predictions.tsv") if rec is not None else None
        eng = LiveEngine(builder=builder, model=self.model, clock=self.clock, t_origin_us=origin, log=log)
        eng.callbacks.append(self._on_prediction)
        eng.error_callbacks.append(lambda err: self._error(err.where, err.error))
        if rec is not None:
            rec.update_meta(live={"window_s": spec.window_s, "hop_s": spec.hop_s, "t_origin_us": origin,
                                  "checkpoint": self.model.id, "checkpoint_path": str(self.model.path),
                                  "fer_source": self.fer_source, "fer_model": self.fer_model_path})
        if self.config.predictions_jsonl:
            self._jsonl = self._open_prediction_log(Path(self.config.predictions_jsonl))
        self.engine = eng
        return eng

    def _open_prediction_log(self, path: Path):
        """``live --out``: whose predictions they are goes into every line (a replay's are its
        source's participant), so ``forget`` finds the log whatever it is called; the log is
        personal data, private like a session (docs/data-rights.md)."""
        from ..recording.perms import make_dirs, modes_for, open_new

        replay = getattr(self.devices, "replay", None)
        if replay is not None:
            from ..recording.provenance import derived_meta

            self._log_participant = derived_meta(replay.path, replay.reader.meta).get("participant")
        else:
            self._log_participant = self.config.participant
        modes = modes_for(self.config.group_readable)
        make_dirs(path.parent, modes)
        return open_new(path, "x", modes, encoding="utf-8")

    def _on_prediction(self, p) -> None:
        # model worker thread: file output here so it never depends on anyone polling
        if self._jsonl is not None:
            line = json.dumps({**p.to_dict(), "participant": self._log_participant}, allow_nan=False, default=float)
            with self._jsonl_lock:
                self._jsonl.write(line + "\n")
                self._jsonl.flush()
        self._emit(PredictionMade(t_us=int(p.t_end_us), prediction=p))

    def _wants_engine(self) -> bool:
        return self.model is not None and self.config.kind in ("live", "session")

    def _start_realtime(self) -> None:
        ds, rec = self.devices, self.recorder
        if rec is not None:
            rec.start()
        if self.face_stage is not None:
            self.face_stage.start()
        ds.start_all()
        self.t_origin_us = ds.clock.now_us()
        if self._wants_engine():
            from ..devices.replay import ReplayCamera

            rect = ds.replay.reader.meta.get("stimulus_rect") if ds.replay is not None else None
            eng = self._make_engine(ds.tracker.stream if ds.tracker else None,
                                    ds.camera.stream if ds.camera else None, self.t_origin_us,
                                    recompress=not isinstance(ds.camera, ReplayCamera), stimulus_rect=rect)
            eng.start()

    def _start_fast_replay(self) -> None:
        """Replay as fast as possible: move replay time to each moment the engine has work (face
        grid frame, window end) and let it do that work synchronously - the same sequence of work
        the live scheduler does, so the predictions are the same."""
        cfg, src, rec = self.config, self.devices.replay, self.recorder
        if rec is not None:
            rec.start(thread=False)
        live_meta = src.reader.meta.get("live") or {}
        self.t_origin_us = int(live_meta.get("t_origin_us", src.t_start_us)) if self._wants_engine() \
            else int(src.t_start_us)
        if cfg.kind == "record":
            duration = cfg.duration_s if cfg.duration_s is not None else src.duration_s + 0.001
            self._fast_t_stop = src.t_start_us + int(duration * 1e6)
            self._fast_t = src.t_start_us
            return
        # nothing records the replay: the windows read the recording directly (only the face grid's
        # frames decoded, their crops made ahead in a second thread) and are scored a few at a
        # time (issue 16; emer_live.live.fast_replay)
        from ..live.fast_replay import fast_batch_size, fast_replay_source

        self._fast_direct = None if rec is not None else fast_replay_source(self.devices)
        eng = self._make_engine(self.devices.tracker.stream if self.devices.tracker else None,
                                self.devices.camera.stream if self.devices.camera else None, self.t_origin_us,
                                recompress=False, stimulus_rect=src.reader.meta.get("stimulus_rect"),
                                source=self._fast_direct)
        eng.init_schedule()
        if self._fast_direct is not None:
            self._fast_direct.start_faces(eng.builder)
        self._fast_batch = fast_batch_size(eng)
        self._fast_t_stop = src.t_end_us if cfg.duration_s is None else \
            min(src.t_end_us, self.t_origin_us + int(cfg.duration_s * 1e6))

    def _start_fast_session(self) -> None:
        """The synthetic session on a virtual clock (see :mod:`emer_live.devices.stepped`)."""
        from ..devices.stepped import SteppedSynthetic
        from ..phantom.participant import Phantom
        from ..recording.writer import Recorder

        cfg = self.config
        phantom = Phantom(seed=cfg.seed, participant=cfg.participant, mask_rate=cfg.mask_rate)
        cam = (cfg.size[0], cfg.size[1], cfg.fps) if cfg.camera == "synthetic" else None
        sim = SteppedSynthetic(phantom, rate_hz=cfg.rate, camera=cam)
        self.stepped, self.clock = sim, sim.clock
        rec = Recorder(self.session_dir, clock=sim.clock, meta={**self._meta(), "synthetic": True},
                       group_readable=cfg.group_readable)
        self.recorder = rec
        rec.attach("gaze", sim.gaze, device_info=sim.tracker_info())
        if sim.camera is not None and self.face_video != "full":
            from ..features.face import FacePipeline
            from ..features.face_crops import FaceCropStage

            self.face_stage = FaceCropStage(sim.camera, FacePipeline(self._face_config()))
            self._crops_stream = self.face_stage.stream
            rec.attach("face_crops", self._crops_stream, device_info=sim.camera_info(), face_video=self.face_video,
                       face_info=self.face_stage.info)
        elif sim.camera is not None:
            rec.attach("camera", sim.camera, device_info=sim.camera_info())
        phantom.attach_truth_file(self.session_dir / "truth.tsv")
        self._make_controller(phantom)
        rec.start(thread=False)
        sim.advance_to(sim.t0_us)
        self.t_origin_us = sim.t0_us
        if self._wants_engine():
            self._make_engine(sim.gaze, sim.camera, sim.t0_us, recompress=True)
        self._fast_polls = 0

    # ------------------------------------------------------------------ poll
    def poll(self) -> bool:
        """Do what is due, deliver queued events; False once the run has finished."""
        if self.state is RunState.RUNNING:
            try:
                self._step()
            except (DiskFullError, OSError) as exc:
                if self.recorder is None or self.recorder.error is None:
                    self._error("run", exc)
                    self._finish("error", f"{type(exc).__name__}: {exc}")
                    self.dispatch()
                    raise
                # the recorder failed (disk full): keep what was written, end cleanly
                self._error("recorder", self.recorder.error)
                self._finish("disk_full" if isinstance(self.recorder.error, DiskFullError) else "error",
                             str(self.recorder.error))
            except BaseException as exc:
                self._error("run", exc)
                self._finish("error", f"{type(exc).__name__}: {exc}")
                self.dispatch()
                raise
        self.dispatch()
        return self.state is RunState.RUNNING

    def _step(self) -> None:
        if self._stop_request is not None and (self.controller is None or self.controller.finished):
            status, reason = self._stop_request
            self._finish(status, reason)
            return
        if self.config.kind == "session" and self.config.fast:
            self._step_fast_session()
        elif self.fast:
            self._step_fast_replay()
        else:
            self._step_realtime()
        if self.state is RunState.RUNNING:     # nothing may follow RunFinished
            self._progress()

    def _progress(self) -> None:
        el = self.elapsed_s
        if el - self._last_progress >= 1.0:
            self._last_progress = el
            counters = {k: s.counters.as_dict() for k, s in self.streams.items()}
            self._emit(Progress(t_us=self._now(), elapsed_s=el, duration_s=self.config.duration_s,
                                counters=counters))

    def _check_failures(self) -> bool:
        """Apply the run kind's failure policy; True when the run was ended or aborted."""
        ds, rec, kind = self.devices, self.recorder, self.config.kind
        for d in ds.all:
            if d.error is None or d.name in self.failed:
                continue
            self.failed[d.name] = d.error
            policy = FAILURE_POLICY[kind]
            alive = [x for x in ds.all if x.error is None]
            action = {"stop": "stopped", "abort": "aborted", "continue": "continues"}[policy]
            if policy == "continue" and not alive:
                action = "stopped"
            self._emit(DeviceFailed(t_us=self._now(), device=d.name, error=d.error,
                                    traceback=format_exception(d.error), action=action))
            if action == "stopped":
                self._finish("error", f"device {d.name} failed: {d.error}")
                return True
            if action == "aborted":
                self.controller.abort(f"device/recorder failure: {d.error}")
        stage = self.face_stage
        if stage is not None and stage.error is not None and "face_crops" not in self.failed:
            self.failed["face_crops"] = stage.error
            self._error("face crops", stage.error)
            if self.controller is not None:
                self.controller.abort(f"face crop failure: {stage.error}")
            self._finish("error", f"the face crops could not be made: {stage.error}")
            return True
        if rec is not None and rec.error is not None:
            if self.controller is not None:
                self.controller.abort(f"device/recorder failure: {rec.error}")
            self._finish("disk_full" if isinstance(rec.error, DiskFullError) else "error", str(rec.error))
            return True
        return False

    def _step_realtime(self) -> None:
        if self._check_failures():
            return
        cfg, ds = self.config, self.devices
        if self.controller is not None:
            self.controller.tick()
            if self.controller.finished:
                status = "aborted" if self.controller.phase.value == "aborted" else "complete"
                self._finish(status, "session " + ("aborted" if status == "aborted" else "complete"))
            return
        elapsed = self.elapsed_s
        duration = cfg.duration_s
        if cfg.kind == "record":
            if (duration is not None and elapsed >= duration) or (ds.replay is not None and ds.replay.finished):
                self._finish("complete", "duration reached" if duration is not None else "replay finished")
            return
        if duration is None and ds.replay is not None:
            duration = ds.replay.duration_s
        eng = self.engine
        # run until the window ending at `duration` has been assembled: once its data has been
        # delivered, or the engine gave up waiting for a stalled stream (docs/performance.md)
        last_due = self.t_origin_us + int(round(duration * 1e6)) if duration is not None else None
        if duration is not None and elapsed >= duration and (
                eng.next_window_end_us > last_due or elapsed >= duration + eng.max_wait_us / 1e6 + 0.1):
            self._finish("complete", "duration reached")
        elif ds.replay is not None and ds.replay.finished and eng.next_window_end_us > ds.replay.t_end_us + 1:
            self._finish("complete", "replay finished")   # and its last window has been assembled

    def _step_fast_replay(self) -> None:
        src, rec, eng = self.devices.replay, self.recorder, self.engine
        deadline = time.perf_counter() + FAST_SLICE_S
        while time.perf_counter() < deadline:
            if eng is None:    # a recording: copy in 100 ms steps
                if self._fast_t >= self._fast_t_stop:
                    self._finish("complete", "replay finished")
                    return
                self._fast_t = min(self._fast_t + 100_000, self._fast_t_stop)
                src.advance_to(self._fast_t)
                if self.face_stage is not None:
                    self.face_stage.pump()
                rec.drain()
                continue
            if eng.next_window_end_us > self._fast_t_stop + 1:
                self._score_fast()
                self._finish("complete", "replay finished")
                return
            due = eng.next_due_us()
            if self._fast_direct is None:
                src.advance_to(due)
            else:
                src.clock.advance_to(due)    # the devices' streams are not read
            if self.face_stage is not None:
                self.face_stage.pump()
            if rec is not None:
                rec.drain()
            eng.step(due, sync=True, defer=self._fast_pending)
            if len(self._fast_pending) >= self._fast_batch:
                self._score_fast()

    def _score_fast(self) -> None:
        """Score the fast replay's deferred windows (one batch)."""
        items, self._fast_pending = self._fast_pending, []
        preds = self.engine.score(items) if items else []
        if preds:
            self._fast_span_s = max(self._fast_span_s, (max(p.t_end_us for p in preds) - self.t_origin_us) / 1e6)

    def _step_fast_session(self) -> None:
        sim, ctrl, eng, rec = self.stepped, self.controller, self.engine, self.recorder
        step = 20_000
        deadline = time.perf_counter() + FAST_SLICE_S
        while time.perf_counter() < deadline:
            if ctrl.finished:
                if eng is not None:   # the last trial's prediction is due a grace period after its end
                    sim.advance_to(sim.clock.now_us() + eng.grace_us + step)
                    eng.step(sim.clock.now_us(), sync=True)
                status = "aborted" if ctrl.phase.value == "aborted" else "complete"
                self._finish(status, "session " + status)
                return
            sim.advance_to(sim.clock.now_us() + step)
            if self.face_stage is not None:
                self.face_stage.pump()
            ctrl.tick()
            if eng is not None:
                eng.step(sim.clock.now_us(), sync=True)
            self._fast_polls += 1
            if self._fast_polls % 10 == 0:
                rec.drain()

    # ------------------------------------------------------------------ stop
    def stop(self, reason: str = "operator", *, status: str = "aborted") -> None:
        """Ask the run to end; the next :meth:`poll` finishes it (files closed, status written).
        A session aborts its running trial, and ends ``aborted`` whatever ``status`` asks unless
        every trial had completed. ``status="complete"`` ends an open-ended recording or live run
        as complete (the operator's normal end)."""
        if self.state is not RunState.RUNNING or self._stop_request is not None:
            return
        self._stop_request = (status, reason)
        if self.controller is not None:
            self.controller.abort(reason)
        elif self.recorder is not None and status == "aborted":
            self.recorder.log_event("abort", reason=reason)

    def close(self, reason: str = "closed") -> None:
        """Stop now and finalise (e.g. a window closing); safe to call in any state."""
        if self.state is RunState.RUNNING:
            self.stop(reason)
            self.poll()
        self.dispatch()

    def submit_sam(self, answer, *, response_ms: Optional[dict] = None) -> None:
        """The participant's SAM answer (sessions whose SAM is answered on screen)."""
        if self.controller is None:
            raise RuntimeError("not a session")
        self.controller.submit_sam(answer, response_ms=response_ms)

    def add_note(self, text: str, *, t_us: Optional[int] = None) -> int:
        """An operator's note ("participant sneezed"), stored in events.tsv as a ``note`` event
        (``source: operator``, with the current trial) at ``t_us`` - default now; the console
        passes the moment typing began - and shown in the event log. Returns its time stamp.

        A note that looks like a name or an e-mail address gives an IdentifyingTextWarning:
        participants are pseudonymous (docs/data-rights.md)."""
        from ..session.ids import warn_if_identifying

        if not isinstance(text, str) or not text.strip():
            raise ConfigError("an operator note needs some text")
        text = text.strip()
        if len(text) > MAX_NOTE_CHARS:
            raise ConfigError(f"an operator note holds at most {MAX_NOTE_CHARS} characters (this one has "
                              f"{len(text)}); shorten it")
        if self.state is not RunState.RUNNING or self.recorder is None:
            raise RuntimeError("notes are stored with a running recording; this run "
                               + ("records nothing" if self.recorder is None and self.state is RunState.RUNNING
                                  else "is not running"))
        now = self._now()
        if t_us is not None and not (self.t_origin_us or 0) <= int(t_us) <= now:
            raise ConfigError(f"a note's time must lie between the run's start and now, got {t_us}")
        warn_if_identifying(text, "operator note")
        t = now if t_us is None else int(t_us)
        t = self.recorder.log_event("note", trial=self._trial_at(t), t_us=t, source="operator", text=text)
        self._emit(RunNote(t_us=t, text=f"operator: {text}"))
        return t

    def _trial_at(self, t_us: int) -> Optional[int]:
        """The session trial running at ``t_us`` (None outside trials and in other runs)."""
        for tr in getattr(self.controller, "trials", ()):
            if tr.t_start_us is not None and tr.t_start_us <= t_us and (tr.t_end_us is None or t_us < tr.t_end_us):
                return tr.spec.trial
        return None

    def _finish(self, status: str, reason: str) -> None:
        if self.state is RunState.FINISHED:
            return
        status, reason = self._settle_session(status, reason)
        self.wall_s = time.perf_counter() - (self._wall_start or time.perf_counter())
        self._elapsed_final = self.elapsed_s     # the run's length, not its teardown's
        status = self._teardown(status)
        self.status, self.reason = status, reason
        self.state = RunState.FINISHED
        self._emit(RunFinished(t_us=self._now(), status=status, reason=reason, summary=self.summary()))

    def _settle_session(self, status: str, reason: str) -> tuple:
        """A session is ``complete`` only when every trial completed; any earlier end (a stop
        asked as "complete", a closed window, an error) first aborts the controller, so each
        trial keeps its own state (complete, skipped, aborted, not_run) in session.json, and a
        "complete" asked for becomes ``aborted``."""
        ctrl = self.controller
        if ctrl is None:
            return status, reason
        if not ctrl.finished:
            try:
                ctrl.abort(reason)
            except Exception as exc:     # e.g. the disk is full: the recorder's stop says so
                self._error("session abort", exc)
        if status == "complete" and not ctrl.complete:
            status = "aborted"
            if "aborted" not in reason:
                reason = f"session aborted: {reason}"
        return status, reason

    def _teardown(self, status: str) -> str:
        """Stop everything that was started, in data-flow order; returns the final status."""
        eng, ds, ctrl, rec = self.engine, self.devices, self.controller, self.recorder
        steps = []
        if eng is not None:
            # the worker scores what is still queued before the log closes; an aborted clip
            # still gets its partial whole-trial prediction
            if self._fast_pending:
                steps.append(self._score_fast)
            if self._fast_direct is not None:
                steps.append(self._fast_direct.close)
            steps += [lambda: eng.stop(timeout=60.0), eng.finish_trials]
            if eng.log is not None:
                steps.append(eng.log.close)
        if ds is not None:
            steps.append(ds.stop_all)
        if self.face_stage is not None:
            steps.append(self.face_stage.stop)     # after the camera: its last frames are kept too
        if ctrl is not None:
            steps.append(ctrl.close)
        phantom = self.phantom
        if phantom is not None and hasattr(phantom, "close_truth"):
            steps.append(phantom.close_truth)
        for fn in steps:
            try:
                fn()
            except Exception as exc:   # keep closing; the recorder below must still finalise
                self._error(f"teardown {getattr(fn, '__qualname__', fn)}", exc)
        if ds is not None:
            for d in ds.all:
                if d.error is not None and d.name not in self.failed:
                    self.failed[d.name] = d.error
        self.losses = self.loss_summary()
        if rec is not None:
            try:
                rec.update_meta(losses=self.losses)
            except OSError:      # a full disk: the recorder's stop below reports it
                pass
            status = rec.stop(status=status)["status"]
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        return status

    def loss_summary(self) -> Dict[str, dict]:
        """Per stream: samples expected at the nominal rate over the run, samples kept, gaps and
        the samples missing in them, device-reported drops, reader overruns (what was lost, in
        numbers an operator can judge; stored in session.json as ``losses``)."""
        out = {}
        if self.t_origin_us is None or self.clock is None:
            return out
        for name, s in self.streams.items():
            c = s.counters
            first, last = s.oldest_t_us(), s.last_t_us
            rate = s.nominal_rate_hz
            # the span the stream covered (a ring may have dropped its oldest records; use the
            # run's origin as the earliest start)
            span_s = 0.0 if last is None else max(0.0, (last - min(first or last, self.t_origin_us)) / 1e6)
            expected = None if not rate else int(round(span_s * rate)) + (1 if last is not None else 0)
            kept = int(c.samples)
            out[name] = {"nominal_rate_hz": rate, "span_s": round(span_s, 3), "expected": expected, "kept": kept,
                         "missing": None if expected is None else max(0, expected - kept),
                         "gaps": int(c.gaps), "missing_in_gaps": int(c.missing), "dropped": int(c.dropped),
                         "overruns": int(c.overruns), "non_monotonic": int(c.non_monotonic)}
        return out

    # ------------------------------------------------------------------ report
    def summary(self) -> dict:
        """Status, written counts, per-stream counters and the engine's summary."""
        out = {"kind": self.config.kind, "status": self.status, "reason": self.reason,
               "session_dir": None if self.session_dir is None else str(self.session_dir),
               "elapsed_s": self.elapsed_s, "wall_s": self.wall_s,
               "errors": [str(e) for e in self.errors],
               "failed_devices": {k: str(v) for k, v in self.failed.items()},
               "streams": {k: s.counters.as_dict() for k, s in self.streams.items()},
               "losses": dict(self.losses)}
        if self.recorder is not None:
            out["written"] = dict(self.recorder.written)
        if self.engine is not None:
            out["engine"] = self.engine.summary()
        if self.fast and self._fast_span_s and self.wall_s:
            out["real_time_factor"] = self._fast_span_s / self.wall_s
            out["analysed_s"] = self._fast_span_s
        return out

