"""CLI: ``emer-live live`` - real-time (or as-fast-as-possible replay) recognition."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..devices.factory import CAMERA_HELP, TRACKER_HELP

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
    p.add_argument("--headless", action="store_true", help="no GUI: print predictions (the only mode until the GUI lands)")
    p.add_argument("--out", default=None, help="also write every prediction as one JSON line to this file")
    p.add_argument("--record", default=None, metavar="SESSION_DIR",
                   help="record the session while analysing (predictions go to its predictions.tsv)")
    p.add_argument("--rate", type=float, default=250.0, help="tracker rate in Hz (default 250)")
    p.add_argument("--fps", type=float, default=30.0, help="camera fps (default 30)")
    p.add_argument("--size", default="1280x720", help="camera frame size (default 1280x720)")
    p.add_argument("--seed", type=int, default=0, help="synthetic participant seed")
    p.add_argument("--participant", default="P00", help="pseudonymous participant ID")
    p.add_argument("--device", default="auto", help="model device: auto, cpu, cuda, mps (default auto)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=cmd_live)


def default_checkpoint() -> Path:
    return Path(__file__).resolve().parents[2] / "models" / "emert_demo_synthetic.pt"


def cmd_live(args) -> int:
    from ..errors import ConfigError, SessionExistsError
    from ..recording.commands import parse_speed

    if args.hop < 0.25:
        raise ConfigError(f"--hop {args.hop}: must be at least 0.25 s")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration must be > 0 seconds")
    speed = parse_speed(args.speed)
    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint {ckpt} not found; pass --checkpoint PATH (see models/README.md)")
    out_path = Path(args.out) if args.out else None
    if out_path is not None and out_path.exists():
        raise SessionExistsError(f"--out {out_path} exists; refusing to overwrite - choose a new file")
    if args.record and Path(args.record).exists() and any(Path(args.record).iterdir()):
        raise SessionExistsError(f"--record {args.record} already holds files; choose a new folder")
    from ..model import load_checkpoint

    model = load_checkpoint(ckpt, device=args.device)
    from ..model.fer import WithFER, load_fer_checkpoint, resolve_fer_model

    fer_path = resolve_fer_model(args.fer_model, args.camera)
    if fer_path is not None:
        model = WithFER(model, load_fer_checkpoint(fer_path))
    if not args.quiet:
        print(f"FER source: {getattr(model, 'fer_source', 'emert')}", file=sys.stderr)
    from .runner import LiveRun

    run = LiveRun(args=args, model=model, speed=speed, out_path=out_path)
    return run.run()
