"""CLI: ``emer-live live`` - real-time (or as-fast-as-possible replay) recognition."""

from __future__ import annotations

import sys

from ..devices.factory import CAMERA_HELP, TRACKER_HELP
from ..recording.crops import FACE_VIDEO_HELP, FACE_VIDEO_MODES

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("live", help="run EMERT live on sliding windows (headless or for the GUI)",
                       description="Every hop, take the last W seconds of gaze and video, run EMERT in a worker "
                                   "thread and print one line per prediction: ER vs FER and the emotion gap. "
                                   "With a replay tracker and --speed max it re-analyses a recording as fast as possible.")
    p.add_argument("--tracker", default="synthetic", help=f"eye tracker: {TRACKER_HELP} (default synthetic)")
    p.add_argument("--camera", default="synthetic", help=f"webcam: {CAMERA_HELP} (default synthetic)")
    p.add_argument("--checkpoint", default=None,
                   help="EMERT checkpoint (.pt); default: the demo checkpoint in models/")
    p.add_argument("--fer-model", default="auto", metavar="FER.pt|auto|emert",
                   help="FER source: a pretrained FER checkpoint (emer-live import-fer), 'emert' (the checkpoint's "
                        "own FER head) or 'auto' (default: models/fer_mini_xception.pt for a real camera or a "
                        "video file, EMERT's head for synthetic/replay)")
    p.add_argument("--window", type=float, default=8.0, help="window length W in seconds (default 8)")
    p.add_argument("--hop", type=float, default=1.0, help="hop between windows in seconds (default 1; >= 0.25)")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C / end of replay)")
    p.add_argument("--speed", default="1", help="replay speed factor or 'max' (replay devices only)")
    p.add_argument("--headless", action="store_true",
                   help="print predictions in the terminal (the desktop app with live plots is `python main.py`)")
    p.add_argument("--out", default=None,
                   help="also write every prediction as one JSON line to this file (fields: docs/recording-format.md)")
    p.add_argument("--record", default=None, metavar="SESSION_DIR",
                   help="record the session while analysing (predictions go to its predictions.tsv)")
    p.add_argument("--rate", type=float, default=250.0, help="tracker rate in Hz (default 250)")
    p.add_argument("--fps", type=float, default=30.0, help="camera fps (default 30)")
    p.add_argument("--size", default="1280x720", help="camera frame size (default 1280x720)")
    p.add_argument("--seed", type=int, default=0, help="synthetic participant seed")
    p.add_argument("--participant", default="P00", help="pseudonymous participant ID")
    p.add_argument("--consent-version", default=None, metavar="V",
                   help="the consent form the participant signed (stored in session.json), e.g. 2026-03")
    p.add_argument("--consent-date", default=None, metavar="YYYY-MM-DD",
                   help="the day consent was given (default: today, with --consent-version)")
    p.add_argument("--group-readable", action="store_true", help="folders 0750 and files 0640 for a lab sharing data through a Unix group (default: private, 0700/0600; docs/data-rights.md)")
    p.add_argument("--face-video", default="full", choices=FACE_VIDEO_MODES,
                   help=FACE_VIDEO_HELP)
    p.add_argument("--device", default="auto", help="model device: auto, cpu, cuda, mps (default auto)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=cmd_live)


def live_config(args):
    """The :class:`~emer_live.app.RunConfig` of ``emer-live live`` options (validated)."""
    from ..app import RunConfig, default_checkpoint, parse_speed
    from ..devices.factory import parse_size

    return RunConfig(kind="live", participant=args.participant, tracker=args.tracker, camera=args.camera,
                     rate=args.rate, fps=args.fps, size=parse_size(args.size), seed=args.seed,
                     speed=parse_speed(args.speed), duration_s=args.duration, out=args.record,
                     checkpoint=args.checkpoint or str(default_checkpoint()), model_device=args.device,
                     window_s=args.window, hop_s=args.hop, predictions_jsonl=args.out, fer_model=args.fer_model,
                     consent_version=args.consent_version, consent_date=args.consent_date,
                     group_readable=args.group_readable, face_video=args.face_video)


def run_live(cfg, *, quiet: bool = False, run=None) -> int:
    """Drive a live run from the terminal: one line per prediction, a summary at the end.
    ``run``: a :class:`~emer_live.app.Run` of ``cfg`` made (and checked) by the caller."""
    from ..app import PredictionMade, Run, RunNote, RunStarted, drive

    run = run if run is not None else Run(cfg)

    def show(ev):
        if isinstance(ev, RunStarted) and not quiet:
            print(f"FER source: {run.fer_source}", file=sys.stderr)
        elif isinstance(ev, RunNote):
            print(f"note: {ev.text}", file=sys.stderr)
        elif isinstance(ev, PredictionMade) and not quiet:
            print(ev.prediction.compact(t0_us=run.t_origin_us), flush=True)

    run.subscribe(show)
    drive(run)
    return report_live(run)


def report_live(run) -> int:
    from ..app import signal_exit_code

    s = run.summary()
    eng = s.get("engine")
    if eng is None:
        return 1
    print(run.engine.summary_line())
    from ..app import format_losses

    for line in format_losses(run.losses):
        print(line)
    if "real_time_factor" in s:
        print(f"real-time factor: {s['real_time_factor']:.2f}x "
              f"({s['analysed_s']:.1f} s of recording analysed in {s['wall_s']:.1f} s)")
    for e in run.engine.errors[:5]:
        print(f"engine error: {e}", file=sys.stderr)
    for name, err in s["failed_devices"].items():
        print(f"device {name} failed: {err} (the live run carried on with the rest)", file=sys.stderr)
    if run.engine.errors or run.status not in ("complete", "aborted"):
        return 1
    return signal_exit_code(run)


def cmd_live(args) -> int:
    return run_live(live_config(args), quiet=args.quiet)
