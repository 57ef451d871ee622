"""CLI: ``emer-live session`` (headless collection sessions) and ``collect-synthetic``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..devices.factory import CAMERA_HELP, MIC_HELP, TRACKER_HELP
from ..recording.crops import FACE_VIDEO_HELP, FACE_VIDEO_MODES

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("session", help="run a collection session (stimuli, SAM, recording)",
                       description="Run a full session: baseline, then per trial fixation cross -> stimulus -> SAM "
                                   "-> rest, recorded to ROOT/<participant>/<session_id>/. --headless simulates "
                                   "playback on the clock and lets the synthetic participant answer the SAM.")
    p.add_argument("--headless", action="store_true",
                   help="no screen: playback simulated on the clock, the synthetic participant answers the SAM "
                        "(required here; sessions on a participant screen: python main.py --session)")
    p.add_argument("--participant", required=True, help="pseudonymous ID like P01 (never a name)")
    p.add_argument("--tracker", default="synthetic", help=f"eye tracker: {TRACKER_HELP}")
    p.add_argument("--camera", default="synthetic", help=f"webcam: {CAMERA_HELP}")
    p.add_argument("--mic", default="none", help=f"microphone: {MIC_HELP}")
    p.add_argument("--stimuli", default="placeholder", help="'placeholder' (built-in design, simulated) or a library folder")
    p.add_argument("--trials", type=int, default=14, help="number of trials (default 14: two per category)")
    p.add_argument("--time-scale", type=float, default=1.0, help="shrink every phase, e.g. 0.05 for tests (default 1)")
    p.add_argument("--seed", type=int, default=0, help="study seed (plan randomisation, synthetic participant)")
    p.add_argument("--rate", type=float, default=250.0, help="tracker rate (default 250)")
    p.add_argument("--fps", type=float, default=30.0, help="camera fps (default 30)")
    p.add_argument("--size", default="1280x720", help="camera frame size (default 1280x720)")
    p.add_argument("--mask-rate", type=float, default=0.4, help="synthetic participant: share of masked trials")
    p.add_argument("--checkpoint", default=None,
                   help="run EMERT live during the session: sliding-window and per-trial predictions "
                        "go to the session's predictions.tsv")
    p.add_argument("--window", type=float, default=8.0, help="live window length in seconds (default 8)")
    p.add_argument("--hop", type=float, default=1.0, help="live hop in seconds (default 1)")
    p.add_argument("--fast", action="store_true",
                   help="synthetic participant only: run on a virtual clock as fast as the CPU allows")
    p.add_argument("--out", default="recordings", help="recordings root (default recordings/)")
    p.add_argument("--consent-version", default=None, metavar="V",
                   help="the consent form the participant signed (stored in session.json), e.g. 2026-03")
    p.add_argument("--consent-date", default=None, metavar="YYYY-MM-DD",
                   help="the day consent was given (default: today, with --consent-version)")
    p.add_argument("--group-readable", action="store_true", help="folders 0750 and files 0640 for a lab sharing data through a Unix group (default: private, 0700/0600; docs/data-rights.md)")
    p.add_argument("--face-video", default="full", choices=FACE_VIDEO_MODES,
                   help=FACE_VIDEO_HELP)
    p.set_defaults(func=cmd_session)

    p = sub.add_parser("collect-synthetic", help="record many headless synthetic sessions (a labelled corpus)",
                       description="Run one headless session per synthetic participant P01..PNN (in parallel where "
                                   "cores allow) into ROOT, for training and tests. A participant is determined by "
                                   "--seed and its name, so P05 of seed 0 is the same person in every corpus.")
    p.add_argument("--participants", type=int, default=12, help="number of participants (default 12)")
    p.add_argument("--first", type=int, default=1, metavar="N",
                   help="number of the first participant (default 1: P01..); e.g. --first 21 adds P21.. - new people "
                        "of the same population (same --seed) for a test set whose names differ from the training "
                        "corpus's")
    p.add_argument("--trials", type=int, default=14)
    p.add_argument("--time-scale", type=float, default=0.1, help="phase shrink factor (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="640x360", help="camera frame size (default 640x360)")
    p.add_argument("--fps", type=float, default=15.0, help="camera fps (default 15)")
    p.add_argument("--rate", type=float, default=120.0, help="tracker rate (default 120)")
    p.add_argument("--mask-rate", type=float, default=0.4)
    p.add_argument("--jobs", type=int, default=0, help="parallel sessions (default: CPU cores)")
    p.add_argument("--real-time", action="store_true",
                   help="run the synthetic devices in real time (default: a virtual clock, as fast as the CPU allows)")
    p.add_argument("--face-video", default="full", choices=FACE_VIDEO_MODES, help=FACE_VIDEO_HELP)
    p.add_argument("--out", required=True, help="corpus root (new or empty folder)")
    p.set_defaults(func=cmd_collect)


def session_config(args):
    """The :class:`~emer_live.app.RunConfig` of ``emer-live session`` options (validated before
    any folder is made)."""
    from ..app import RunConfig
    from ..devices.factory import parse_size

    return RunConfig(kind="session", participant=args.participant, out_root=args.out, tracker=args.tracker,
                     camera=args.camera, mic=args.mic, stimuli=args.stimuli, n_trials=args.trials,
                     time_scale=args.time_scale, seed=args.seed, rate=args.rate, fps=args.fps,
                     size=parse_size(args.size), mask_rate=args.mask_rate, checkpoint=args.checkpoint,
                     window_s=args.window, hop_s=args.hop, fast=args.fast,
                     consent_version=args.consent_version, consent_date=args.consent_date,
                     group_readable=args.group_readable, face_video=args.face_video)


def cmd_session(args) -> int:
    from ..app import drive, signal_exit_code
    from ..errors import ConfigError
    from .runner import session_run

    if not args.headless:
        raise ConfigError("a session on a participant screen runs in the desktop app: "
                          "python main.py --session --participant ID --stimuli DIR; here use --headless")
    cfg = session_config(args)

    def on_phase(phase, trial):
        if phase.value in ("fixation", "sam", "done", "aborted", "baseline"):
            label = f"trial {trial}" if trial is not None else ""
            print(f"  {phase.value:<9} {label}", flush=True)

    run = drive(session_run(cfg, on_phase=on_phase))
    from ..recording.reader import SessionReader

    r = SessionReader(run.session_dir)
    sam = r.sam()
    print(f"session {run.session_dir}: status {r.status}, {0 if sam is None else len(sam)} SAM answers")
    from ..app import format_losses

    for line in format_losses(run.losses):
        print(line)
    if r.status == "disk_full":
        from ..errors import DiskFullError

        raise DiskFullError(r.meta.get("error") or f"disk full while writing {run.session_dir}; what was written "
                                                   "is kept - free space and start a new session")
    if r.status not in ("complete", "aborted"):
        return 1
    return signal_exit_code(run)


def _collect_one(job):
    from ..app import RunConfig
    from .runner import run_headless_session

    return str(run_headless_session(RunConfig(kind="session", **job)))


def cmd_collect(args) -> int:
    import concurrent.futures as cf

    from ..devices.factory import parse_size
    from ..errors import ConfigError

    root = Path(args.out)
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} already holds files; give a new corpus folder")
    if not 1 <= args.participants <= 999:
        raise ConfigError("--participants must be 1..999")
    if not 1 <= args.first <= 999 - args.participants + 1:
        raise ConfigError(f"--first must be 1..{999 - args.participants + 1} (participant numbers end at 999)")
    size = parse_size(args.size)
    numbers = range(args.first - 1, args.first - 1 + args.participants)
    jobs = [dict(participant=f"P{i + 1:02d}", out_root=str(root), n_trials=args.trials, time_scale=args.time_scale,
                 seed=args.seed, size=size, fps=args.fps, rate=args.rate, mask_rate=args.mask_rate,
                 participant_index=i, mic="none", fast=not args.real_time, face_video=args.face_video)
            for i in numbers]
    n_jobs = args.jobs or max(1, min(os.cpu_count() or 1, 4))
    done = 0
    with cf.ProcessPoolExecutor(max_workers=n_jobs) as ex:
        for path in ex.map(_collect_one, jobs):
            done += 1
            print(f"[{done}/{len(jobs)}] {path}", flush=True)
    print(f"corpus {root}: {done} sessions")
    return 0
