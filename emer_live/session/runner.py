"""Run a whole collection session without a screen (headless), and where sessions find their
stimuli and folders.

A session is a :class:`~emer_live.app.Run` of kind ``session``; the GUI polls it from a Qt timer
with a real presenter and SAM dialog, :func:`run_headless_session` from a plain loop with
simulated playback and the synthetic participant answering the SAM.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Optional

from ..errors import ConfigError
from .controller import Phase

__all__ = ["session_run", "run_headless_session", "resolve_library"]

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


def session_run(cfg, *, on_phase: Optional[Callable] = None, abort_after_trials: Optional[int] = None):
    """A :class:`~emer_live.app.Run` for a session config (``RunConfig(kind="session", ...)``):
    ``on_phase(phase, trial)`` hears every phase change; ``abort_after_trials`` (tests) aborts
    once that many trials are complete and a new one runs."""
    from ..app import PhaseChanged, Run

    run = Run(cfg)

    def hear(ev):
        if not isinstance(ev, PhaseChanged):
            return
        if on_phase is not None:
            on_phase(Phase(ev.phase), ev.trial)
        ctrl = run.controller
        if abort_after_trials is not None and ev.phase in ("fixation", "stimulus") \
                and sum(t.status == "complete" for t in ctrl.trials) >= abort_after_trials:
            run.stop("abort_after_trials (test)")

    run.subscribe(hear)
    return run


def run_headless_session(cfg, *, stop_event: Optional[threading.Event] = None,
                         on_phase: Optional[Callable] = None, abort_after_trials: Optional[int] = None) -> Path:
    """Run one session to the end (or until ``stop_event``) from a plain loop; returns its folder."""
    from ..app import drive

    run = session_run(cfg, on_phase=on_phase, abort_after_trials=abort_after_trials)
    drive(run, stop_event=stop_event, signals=False)
    return run.session_dir
