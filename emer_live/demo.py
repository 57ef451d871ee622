"""CLI: ``emer-live demo`` - the app's main job with whatever hardware is present.

The headless demo (``python main.py`` opens the desktop app instead when a display is present, and
falls back to this without one): it picks the Tobii tracker when the SDK and
a tracker are there (else the synthetic participant), the synthetic camera, records a session
under ``recordings/demo/`` while the live engine prints ER vs FER and the emotion gap once a
second, then prints the session summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("demo", help="live demo: record + recognise with real or synthetic devices",
                       description="Record a short session and run EMERT live on it, printing what the face shows "
                                   "(FER) against what face and eyes reveal (ER). Uses synthetic devices when no "
                                   "hardware is present.")
    p.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    p.add_argument("--out", default=None,
                   help="session folder (default recordings/demo/P00/L<UTC time>, the app's folder rule)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: models/emert_demo_synthetic.pt)")
    p.add_argument("--seed", type=int, default=0, help="synthetic participant seed")
    from .recording.crops import FACE_VIDEO_HELP, FACE_VIDEO_MODES

    p.add_argument("--face-video", default="full", choices=FACE_VIDEO_MODES, help=FACE_VIDEO_HELP)
    p.set_defaults(func=cmd_demo)


def _tracker_spec() -> str:
    """``tobii`` when the SDK is importable and finds a tracker, else ``synthetic``."""
    from .devices.tobii import find_trackers, sdk_status
    from .errors import DeviceUnavailable

    if not sdk_status().available:
        return "synthetic"
    try:
        return "tobii" if find_trackers() else "synthetic"
    except DeviceUnavailable:
        return "synthetic"


def cmd_demo(args) -> int:
    from .app import Run, RunConfig, default_checkpoint
    from .live.commands import run_live
    from .recording.commands import cmd_info
    from .session.ids import session_stamp

    # the app's rule: ROOT/<participant>/L<UTC time> for a live run, demo ROOT recordings/demo
    stamp = session_stamp(prefix="L")
    root = Path(__file__).resolve().parents[1] / "recordings" / "demo" / "P00"
    out = Path(args.out) if args.out else root / stamp
    tracker = _tracker_spec()
    ckpt = args.checkpoint or str(default_checkpoint())
    cfg = RunConfig(kind="live", tracker=tracker, camera="synthetic", checkpoint=ckpt, duration_s=args.duration,
                    out=str(out), seed=args.seed, participant="P00", face_video=args.face_video)
    run = Run(cfg)
    run.check()      # a bad checkpoint is refused before a folder is named that will never exist
    print(f"emer-live demo: tracker {tracker}, camera synthetic, checkpoint {ckpt}; recording to {out}")
    rc = run_live(cfg, run=run)
    print()
    cmd_info(argparse.Namespace(session=str(out), json=False))
    return rc
