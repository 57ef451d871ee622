"""CLI: ``emer-live record``, ``info`` and ``repair``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import ConfigError, DiskFullError, SessionExistsError
from ..devices.factory import CAMERA_HELP, MIC_HELP, TRACKER_HELP

__all__ = ["register", "parse_speed", "StopFlag"]


def parse_speed(text: str):
    """``1`` / ``2.5`` / ``max`` -> float or None (as fast as possible)."""
    if str(text).lower() in ("max", "fast", "inf"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"--speed {text!r}: use a factor like 1 or 2.5, or 'max'") from None
    if v <= 0:
        raise ConfigError(f"--speed {text!r}: must be > 0")
    return v


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag so recordings stop cleanly (files closed, status kept)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name
        self.event.set()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def register(sub) -> None:
    p = sub.add_parser("record", help="record tracker + camera + microphone to a session folder",
                       description="Record gaze, video and audio into a new session folder (format v1). "
                                   "Without hardware use the synthetic participant; replay:DIR re-records a session.")
    p.add_argument("--tracker", default="synthetic", help=f"eye tracker: {TRACKER_HELP} (default synthetic)")
    p.add_argument("--camera", default="synthetic", help=f"webcam: {CAMERA_HELP} (default synthetic)")
    p.add_argument("--mic", default="none", help=f"microphone: {MIC_HELP} (default none)")
    p.add_argument("--rate", type=float, default=250.0, help="tracker rate in Hz: 60, 120 or 250 (default 250)")
    p.add_argument("--fps", type=float, default=30.0, help="camera frames per second (default 30)")
    p.add_argument("--size", default="1280x720", help="camera frame size WxH (default 1280x720)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to record (default: until Ctrl-C, or the end of a replay)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic participant (default 0)")
    p.add_argument("--participant", default="P00", help="pseudonymous participant ID, e.g. P01 (never a name)")
    p.add_argument("--speed", default="1", help="replay speed factor, or 'max' (replay devices only; default 1)")
    p.add_argument("--out", required=True, help="new session folder to create (refused if it already holds files)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("info", help="summarise a recorded session",
                       description="Per stream: samples, duration, rate, gaps, dropped, first/last t_us; and the trials.")
    p.add_argument("session", help="session folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("repair", help="make an interrupted session readable again",
                       description="Cut files back to their last complete record after a crash; cut bytes are "
                                   "moved to repair_lost/, and the report is stored in session.json.")
    p.add_argument("session", help="session folder")
    p.set_defaults(func=cmd_repair)


def _validate_participant(pid: str) -> str:
    from ..session.ids import validate_participant_id

    return validate_participant_id(pid)


def cmd_record(args) -> int:
    from ..devices.factory import make_devices, parse_size
    from ..recording.writer import record_device_set

    size = parse_size(args.size)
    speed = parse_speed(args.speed)
    participant = _validate_participant(args.participant)
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration {args.duration}: must be > 0 seconds")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SessionExistsError(f"{out} already exists and is not empty; refusing to overwrite - choose a new --out folder")

    ds = make_devices(tracker=args.tracker, camera=args.camera, mic=args.mic, rate=args.rate, fps=args.fps,
                      size=size, seed=args.seed, participant=participant, speed=speed)
    ds.open_all()   # raises DeviceUnavailable before anything is written
    rec = record_device_set(ds, out, meta={"participant": participant, "session_id": out.name,
                                           "kind": "recording", "seed": args.seed})
    return _run_recording(args, ds, rec, speed)


def _run_recording(args, ds, rec, speed) -> int:
    duration = args.duration
    if duration is None and ds.replay is not None:
        duration = ds.replay.duration_s + 0.001
    status = "complete"
    with StopFlag() as stop:
        if speed is None:
            rec.start(thread=False)
            src = ds.replay
            t = src.t_start_us
            t_end = src.t_start_us + int(duration * 1e6)
            step = 100_000
            while t < t_end and not stop.event.is_set():
                t = min(t + step, t_end)
                src.advance_to(t)
                try:
                    rec.drain()
                except (OSError, DiskFullError):
                    break   # recorded in rec.error (e.g. disk full); stop cleanly below
                _progress(args, ds, rec, (t - src.t_start_us) / 1e6, duration)
        else:
            rec.start()
            ds.start_all()
            t0 = ds.clock.now_us()
            last = 0.0
            while not stop.event.is_set():
                elapsed = (ds.clock.now_us() - t0) / 1e6
                if duration is not None and elapsed >= duration:
                    break
                if ds.replay is not None and ds.replay.finished:
                    break
                if rec.error is not None or any(d.error is not None for d in ds.all):
                    break
                if elapsed - last >= 1.0:
                    _progress(args, ds, rec, elapsed, duration)
                    last = elapsed
                stop.event.wait(0.05)
        if stop.event.is_set():
            status = "aborted"
            rec.log_event("abort", reason=f"signal {stop.signal}")
    ds.stop_all()
    failed = [d for d in ds.all if d.error is not None]
    for d in failed:
        rec.log_event("error", device=d.name, message=str(d.error))
    if failed and status == "complete":
        status = "error"
    if ds.phantom is not None and hasattr(ds.phantom, "close_truth"):
        ds.phantom.close_truth()
    meta = rec.stop(status=status)
    if not args.quiet:
        sys.stderr.write("\n")
    w = meta["written"]
    print(f"recorded {rec.path}: status {meta['status']}, gaze {w['gaze']} samples, camera {w['camera']} frames, "
          f"audio {w['audio_samples']} samples")
    if rec.error is not None:
        print(f"emer-live: error: {rec.error}", file=sys.stderr)
        return 4
    for d in failed:
        print(f"emer-live: error: device {d.name} failed: {d.error}", file=sys.stderr)
    return 0 if status in ("complete", "aborted") and not failed else 1


def _progress(args, ds, rec, elapsed: float, duration) -> None:
    if args.quiet:
        return
    parts = [f"{elapsed:7.1f}" + (f"/{duration:.1f} s" if duration else " s")]
    for label, dev in (("gaze", ds.tracker), ("camera", ds.camera), ("audio", ds.mic)):
        if dev is None or dev.stream is None:
            continue
        c = dev.stream.counters
        parts.append(f"{label} {c.samples}" + (f" gaps {c.gaps}" if c.gaps else "") + (f" dropped {c.dropped}" if c.dropped else ""))
    line = "  ".join(parts)
    if sys.stderr.isatty():
        sys.stderr.write("\r" + line[:150].ljust(100))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def cmd_info(args) -> int:
    from .reader import SessionReader

    s = SessionReader(args.session).summary()
    if args.json:
        print(json.dumps(s, indent=2))
        _warn_problems(s)
        return 0
    print(f"{s['path']}  (format {s['format']['name']} v{s['format']['version']}, status {s['status']}, "
          f"participant {s['participant']})")
    print(f"{'stream':12} {'samples':>9} {'duration_s':>11} {'rate_hz':>9} {'gaps':>5} {'dropped':>8}  first_t_us .. last_t_us")
    for name, st in s["streams"].items():
        rate = f"{st['rate_hz']:.2f}" if st["rate_hz"] else "-"
        print(f"{name:12} {st['samples']:>9} {st['duration_s']:>11.3f} {rate:>9} {st['gaps']:>5} {st['dropped']:>8}  "
              f"{st['first_t_us']} .. {st['last_t_us']}")
    drift = s["streams"].get("gaze", {}).get("device_clock_drift_ppm")
    if drift is not None:
        print(f"tracker clock vs session clock: {drift:+.1f} ppm (from the gaze time stamps)")
    cs = s.get("tracker_clock_sync")
    if cs and cs.get("device_clock_drift_ppm") is not None:
        print(f"tracker time-sync packets: {cs['packets']} over {cs['span_s']:.0f} s, "
              f"device clock {cs['device_clock_drift_ppm']:+.1f} ppm")
    if s["trials"]:
        print(f"trials: {len(s['trials'])}")
        for t in s["trials"]:
            extra = ""
            if "sam_er7" in t:
                extra += f"  SAM {t['sam_er7']:<9}"
            if "predicted_er7" in t:
                extra += f"  model ER {t['predicted_er7']:<9} FER {t['predicted_fer7']}"
            print(f"  {t['trial']:>3} {t['stimulus_id']:<16} {t.get('status') or '':<9} frames {t['frames']:>5}{extra}")
    _warn_problems(s)
    return 0


def _warn_problems(summary: dict) -> None:
    """What is wrong with the folder goes to stderr (the table and --json stay parseable)."""
    for msg in summary.get("problems", []):
        print(f"emer-live: warning: {msg}", file=sys.stderr)


def cmd_repair(args) -> int:
    from .repair import repair_session

    rep = repair_session(args.session)
    if not rep.changed and not rep.lost:
        print(f"{rep.path}: nothing to repair")
        return 0
    for a in rep.actions:
        print(f"repaired: {a}")
    for lost in rep.lost:
        print(f"lost: {lost}")
    print(f"{rep.path}: readable again; the report is in session.json (repairs)")
    return 0
