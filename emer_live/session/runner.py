"""Run a whole collection session without a screen (headless), and many of them for a corpus.

The GUI drives :class:`~emer_live.session.controller.SessionController` from a Qt timer with a
real presenter and SAM dialog; headless runs drive the same controller from a loop, simulate
playback on the clock and let the synthetic participant answer the SAM.
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import ConfigError
from .controller import SessionController, SessionTiming, TrialSpec
from .ids import validate_participant_id
from .plan import make_plan
from .sam import SamAnswer

__all__ = ["HeadlessSessionConfig", "run_headless_session", "resolve_library", "new_session_dir"]

REPO_STIMULI = Path(__file__).resolve().parents[2] / "stimuli"


def resolve_library(stimuli: str):
    """``placeholder`` -> the built-in 28-clip EMER design (clips simulated, 90 s each);
    a folder -> its manifest (files must exist)."""
    from .stimuli import StimulusLibrary, emer_design_clips, load_manifest

    if stimuli == "placeholder":
        return StimulusLibrary(manifest_path=REPO_STIMULI / "manifest.toml", root=REPO_STIMULI,
                               clips=tuple(emer_design_clips(duration_s=90.0)), placeholder=True,
                               title="built-in EMER design (simulated placeholder clips)")
    folder = Path(stimuli)
    if not folder.is_dir():
        raise ConfigError(f"--stimuli {stimuli}: no such folder (use 'placeholder' or a library folder; "
                          "`emer-live stimuli placeholders --out DIR` makes one)")
    lib = load_manifest(folder)
    # every clip must exist and decode (a 0-byte or text-as-.mp4 file must not reach a session):
    # the same check as `emer-live stimuli check`, before any device or folder
    from .stimuli import check_library

    report = check_library(folder)
    if not report.ok:
        first = report.problems[0]
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise ConfigError(f"--stimuli {folder}: {first}{more}; run `emer-live stimuli check {folder}`")
    return lib


def new_session_dir(root: Path, participant: str) -> Path:
    """``ROOT/<participant>/S<UTC date-time>`` (a suffix keeps it unique)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("S%Y%m%d-%H%M%S")
    base = Path(root) / participant
    p = base / stamp
    k = 2
    while p.exists():
        p = base / f"{stamp}-{k}"
        k += 1
    return p


@dataclass(frozen=True)
class HeadlessSessionConfig:
    participant: str
    out_root: str = "recordings"
    tracker: str = "synthetic"
    camera: str = "synthetic"
    mic: str = "none"
    stimuli: str = "placeholder"
    n_trials: int = 14
    time_scale: float = 1.0
    seed: int = 0
    rate: float = 250.0
    fps: float = 30.0
    size: tuple = (1280, 720)
    mask_rate: float = 0.4
    participant_index: Optional[int] = None
    session_dir: Optional[str] = None      # exact folder instead of ROOT/<participant>/<id>
    fast: bool = False                     # synthetic only: run on a virtual clock, as fast as possible
    checkpoint: Optional[str] = None       # run EMERT live (sliding windows + one prediction per trial)
    window_s: float = 8.0
    hop_s: float = 1.0

    def __post_init__(self) -> None:
        validate_participant_id(self.participant)
        if not 1 <= self.n_trials <= 28:
            raise ConfigError(f"--trials {self.n_trials}: must be 1..28")
        if self.fast and (self.tracker != "synthetic" or self.camera not in ("synthetic", "none") or self.mic != "none"):
            raise ConfigError("--fast runs the synthetic participant on a virtual clock: use --tracker synthetic, "
                              "--camera synthetic|none and --mic none")


def run_headless_session(cfg: HeadlessSessionConfig, *, stop_event: Optional[threading.Event] = None,
                         on_phase: Optional[Callable] = None, abort_after_trials: Optional[int] = None,
                         quiet: bool = True) -> Path:
    """Run one session to the end (or until ``stop_event``); returns the session folder."""
    from ..devices.factory import make_devices
    from ..recording.writer import record_device_set

    lib = resolve_library(cfg.stimuli)
    plan = make_plan(lib, participant=cfg.participant, n_trials=cfg.n_trials, seed=cfg.seed,
                     participant_index=cfg.participant_index)
    trials = [TrialSpec(trial=t.number, stimulus_id=t.clip_id, category=t.category,
                        duration_s=lib.clip(t.clip_id).duration_s,
                        path=str(lib.path_of(t.clip_id))) for t in plan]
    out = Path(cfg.session_dir) if cfg.session_dir else new_session_dir(Path(cfg.out_root), cfg.participant)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} already holds files; refusing to overwrite")
    model = None
    if cfg.checkpoint:   # before any device or file: a bad checkpoint leaves nothing behind
        from ..model import load_checkpoint

        model = load_checkpoint(cfg.checkpoint)
    if cfg.fast:
        return _run_fast(cfg, lib, plan, trials, out, model, stop_event=stop_event, on_phase=on_phase)
    ds = make_devices(tracker=cfg.tracker, camera=cfg.camera, mic=cfg.mic, rate=cfg.rate, fps=cfg.fps,
                      size=tuple(cfg.size), seed=cfg.seed, participant=cfg.participant, mask_rate=cfg.mask_rate)
    ds.open_all()
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = record_device_set(ds, out, meta=_session_meta(cfg, lib, plan, out))
    sam_source = None
    if ds.phantom is not None:
        sam_source = lambda trial: SamAnswer(**ds.phantom.sam_answer(trial))  # noqa: E731
    ctrl = SessionController(recorder=rec, trials=trials,
                             timing=SessionTiming(time_scale=cfg.time_scale),
                             sam_source=sam_source, phantom=ds.phantom)
    if on_phase is not None:
        ctrl.listeners.append(on_phase)
    status = "complete"
    stop_event = stop_event or threading.Event()
    rec.start()
    ds.start_all()
    eng = None
    try:
        if model is not None:
            eng = _attach_live(cfg, model, rec, ctrl, ds.tracker.stream if ds.tracker else None,
                               ds.camera.stream if ds.camera else None, ds.clock, ds.clock.now_us())
            eng.start()
        ctrl.start()
        while not ctrl.finished:
            if stop_event.is_set():
                ctrl.abort("stop requested (signal or API)")
                break
            if abort_after_trials is not None and sum(t.status == "complete" for t in ctrl.trials) >= abort_after_trials \
                    and ctrl.phase.value in ("fixation", "stimulus"):
                ctrl.abort("abort_after_trials (test)")
                break
            failed = [d for d in ds.all if d.error is not None]
            if failed or rec.error is not None:
                ctrl.abort(f"device/recorder failure: {failed[0].error if failed else rec.error}")
                break
            ctrl.tick()
            stop_event.wait(0.01)
        if ctrl.phase.value == "aborted":
            status = "aborted"
    except BaseException:
        ctrl.abort("error")
        status = "error"
        raise
    finally:
        if eng is not None:
            eng.stop(timeout=60.0)   # the worker scores what is still queued before the log closes
            eng.finish_trials()      # e.g. the partial trial of an aborted session
            eng.log.close()
        ds.stop_all()
        ctrl.close()
        if ds.phantom is not None:
            ds.phantom.close_truth()
        rec.stop(status=status)
    return out


def _attach_live(cfg: HeadlessSessionConfig, model, rec, ctrl, gaze_stream, camera_stream, clock, origin: int):
    """A live engine beside the session; the controller tells it when clips play."""
    from ..features.windows import StreamSource, WindowBuilder, WindowSpec
    from ..live.engine import LiveEngine
    from ..live.prediction import PredictionLog
    from .controller import Phase

    spec = WindowSpec(window_s=cfg.window_s, hop_s=cfg.hop_s)
    source = StreamSource(gaze_stream, camera_stream, jpeg_quality=rec.jpeg_quality)
    builder = WindowBuilder(source, spec=spec, use_face=camera_stream is not None, grid_origin_us=origin)
    eng = LiveEngine(builder=builder, model=model, clock=clock, t_origin_us=origin,
                     log=PredictionLog(rec.path / "predictions.tsv"))
    for note in eng.notes:
        print(f"note: {note}", file=sys.stderr)
    rec.update_meta(live={"window_s": spec.window_s, "hop_s": spec.hop_s, "t_origin_us": origin,
                          "checkpoint": model.id, "checkpoint_path": str(model.path)})

    def on_phase(phase, trial):
        tr = ctrl.trial
        if phase is Phase.STIMULUS and tr is not None:
            eng.schedule_trial(tr.spec.trial, tr.t_onset_us, ctrl._phase_end)
        elif phase in (Phase.SAM, Phase.ABORTED, Phase.PAUSED) and tr is not None and tr.t_onset_us is not None:
            end = tr.t_offset_us if tr.t_offset_us is not None else clock.now_us()
            eng.end_trial(tr.spec.trial, end)

    ctrl.listeners.append(on_phase)
    return eng


def _session_meta(cfg: HeadlessSessionConfig, lib, plan, out: Path) -> dict:
    return {"participant": cfg.participant, "session_id": out.name, "kind": "session", "headless": True,
            "seed": cfg.seed, "fast": cfg.fast,
            "stimuli": {"library": str(lib.manifest_path), "placeholder": lib.placeholder, "title": lib.title},
            "trial_plan": plan.to_dict(), "time_scale": cfg.time_scale}


def _run_fast(cfg: HeadlessSessionConfig, lib, plan, trials, out: Path, model, *, stop_event=None,
              on_phase=None) -> Path:
    """The synthetic session on a virtual clock (see :mod:`emer_live.devices.stepped`)."""
    from ..devices.stepped import SteppedSynthetic
    from ..phantom.participant import Phantom
    from ..recording.writer import Recorder

    phantom = Phantom(seed=cfg.seed, participant=cfg.participant, mask_rate=cfg.mask_rate)
    cam = (cfg.size[0], cfg.size[1], cfg.fps) if cfg.camera == "synthetic" else None
    sim = SteppedSynthetic(phantom, rate_hz=cfg.rate, camera=cam)
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = Recorder(out, clock=sim.clock, meta={**_session_meta(cfg, lib, plan, out), "synthetic": True})
    rec.attach("gaze", sim.gaze, device_info=sim.tracker_info())
    if sim.camera is not None:
        rec.attach("camera", sim.camera, device_info=sim.camera_info())
    phantom.attach_truth_file(out / "truth.tsv")
    ctrl = SessionController(recorder=rec, trials=trials, timing=SessionTiming(time_scale=cfg.time_scale),
                             sam_source=lambda trial: SamAnswer(**phantom.sam_answer(trial)), phantom=phantom)
    if on_phase is not None:
        ctrl.listeners.append(on_phase)
    rec.start(thread=False)
    sim.advance_to(sim.t0_us)
    eng = None
    status = "complete"
    step = 20_000
    try:
        if model is not None:
            eng = _attach_live(cfg, model, rec, ctrl, sim.gaze, sim.camera, sim.clock, sim.t0_us)
        ctrl.start()
        n = 0
        while not ctrl.finished:
            if stop_event is not None and stop_event.is_set():
                ctrl.abort("stop requested (signal or API)")
                break
            sim.advance_to(sim.clock.now_us() + step)
            ctrl.tick()
            if eng is not None:
                eng.step(sim.clock.now_us(), sync=True)
            n += 1
            if n % 10 == 0:
                rec.drain()
        if eng is not None:   # the last trial's prediction is due a grace period after its end
            sim.advance_to(sim.clock.now_us() + eng.grace_us + step)
            eng.step(sim.clock.now_us(), sync=True)
        if ctrl.phase.value == "aborted":
            status = "aborted"
    finally:
        if eng is not None:
            eng.log.close()
        ctrl.close()
        phantom.close_truth()
        rec.stop(status=status)
    return out
