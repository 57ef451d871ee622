"""CLI: ``emer-live record``, ``info`` and ``repair``."""

from __future__ import annotations

import json
import sys
from collections import Counter

from ..devices.factory import CAMERA_HELP, MIC_HELP, TRACKER_HELP
from ..recording.crops import FACE_VIDEO_HELP, FACE_VIDEO_MODES

__all__ = ["register", "DAMAGED_EXIT"]

#: `info`'s exit code for a folder it could read but found damaged (the problems are on stderr)
DAMAGED_EXIT = 7  # not 6: that is a locked session folder (errors.SessionLockedError)


def register(sub) -> None:
    p = sub.add_parser("record", help="record tracker + camera + microphone to a session folder",
                       description="Record gaze, video and audio into a new session folder (format v2). "
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
    p.add_argument("--participant", default=None,
                   help="pseudonymous participant ID, e.g. P01 (never a name); default P00, or for a replay the "
                        "replayed session's participant (a re-recording is the same person's data)")
    p.add_argument("--speed", default="1", help="replay speed factor, or 'max' (replay devices only; default 1)")
    p.add_argument("--out", required=True, help="new session folder to create (refused if it already holds files)")
    p.add_argument("--consent-version", default=None, metavar="V",
                   help="the consent form the participant signed (stored in session.json), e.g. 2026-03")
    p.add_argument("--consent-date", default=None, metavar="YYYY-MM-DD",
                   help="the day consent was given (default: today, with --consent-version)")
    p.add_argument("--group-readable", action="store_true",
                   help="folders 0750 and files 0640 for a lab sharing data through a Unix group (default: "
                        "private, 0700/0600; docs/data-rights.md)")
    p.add_argument("--face-video", default="full", choices=FACE_VIDEO_MODES,
                   help=FACE_VIDEO_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("info", help="summarise a recorded session",
                       description="Per stream: samples, duration, rate, gaps, dropped, first/last t_us; and every "
                                   "planned trial with its state (complete, skipped, aborted, not_run) and a count of each. "
                                   "Every table and segment is checked against the counts session.json records. "
                                   "Damage is warned about on stderr, one line each with its numbers ('problems' "
                                   "in --json): a crashed folder not yet repaired, a stop on a full disk, a declared "
                                   "stream whose file is missing, fewer (or more) rows or frames than were written, "
                                   "a stream that ends early against the others, a truncated face.mjpeg or "
                                   "overwritten frames in it, a foreign audio.wav header, time stamps out of order; "
                                   "the table then shows what can be read. Exit 0 when the folder is intact (a "
                                   "stream that ends early, or a clip shown with dropped or late frames, alone is a "
                                   f"warning: what happened is recorded faithfully), {DAMAGED_EXIT} when damage was "
                                   "found, 6 while a recording still writes the folder (its recording.lock is "
                                   "held), 2 when it cannot be read at all.")
    p.add_argument("session", help="session folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("repair", help="make an interrupted session readable again",
                       description="Cut files back to their last complete record after a crash; cut bytes are "
                                   "moved to repair_lost/, and the report is stored in session.json. Fails "
                                   "(exit 2) if the folder is still not readable afterwards, and (exit 4) "
                                   "without cutting anything when the disk is too full to keep the cut bytes. "
                                   "Refuses (exit 6, changing nothing) a folder whose recorder still holds its "
                                   "lock; a stale lock (the recorder crashed) is taken over and removed.")
    p.add_argument("session", help="session folder")
    p.set_defaults(func=cmd_repair)


def cmd_record(args) -> int:
    from ..app import Progress, Run, RunConfig, drive, parse_speed, signal_exit_code
    from ..app.events import RunStarted
    from ..devices.factory import parse_size

    cfg = RunConfig(kind="record", participant=_record_participant(args), tracker=args.tracker,
                    camera=args.camera, mic=args.mic, rate=args.rate, fps=args.fps, size=parse_size(args.size),
                    seed=args.seed, speed=parse_speed(args.speed), duration_s=args.duration, out=args.out,
                    consent_version=args.consent_version, consent_date=args.consent_date,
                    group_readable=args.group_readable, face_video=args.face_video)
    run = Run(cfg)
    if not args.quiet:
        run.subscribe(lambda ev: _progress(run, ev) if isinstance(ev, Progress) else None)
    run.subscribe(lambda ev: _replay_source_warnings(run) if isinstance(ev, RunStarted) else None)
    drive(run)
    rec = run.recorder
    meta = rec.meta
    if not args.quiet:
        sys.stderr.write("\n")
    w = meta["written"]
    face = (f"camera {w['camera']} frames" if "face_crops" not in w else
            f"face {'crops' if meta.get('face_video') == 'crops' else 'measurements (no images)'} of "
            f"{w['face_crops']} frames (no face video)")
    print(f"recorded {rec.path}: status {meta['status']}, gaze {w['gaze']} samples, {face}, "
          f"audio {w['audio_samples']} samples")
    from ..app import format_losses

    for line in format_losses(run.losses):
        print(line)
    if rec.error is not None:
        print(f"emer-live: error: {rec.error}", file=sys.stderr)
        return 4
    for name, err in run.failed.items():
        print(f"emer-live: error: device {name} failed: {err}", file=sys.stderr)
    if run.failed or meta["status"] not in ("complete", "aborted"):
        return 1
    return signal_exit_code(run)


def _record_participant(args) -> str:
    """``--participant``, or for a replay the replayed session's participant: the copy is the
    same person's data, and ``forget`` must find it (docs/data-rights.md). A different
    ``--participant`` for a replay is refused."""
    from ..errors import ConfigError
    from .provenance import source_participant

    source = next((spec.split(":", 1)[1] for spec in (args.tracker, args.camera, args.mic)
                   if str(spec).lower().startswith("replay:") and spec.split(":", 1)[1]), None)
    owner = source_participant(source) if source else None
    if owner is not None and args.participant is not None and args.participant != owner:
        raise ConfigError(f"--participant {args.participant}: the replayed session {source} is {owner}'s; a "
                          f"re-recording is the same person's data and keeps {owner} - leave out --participant")
    return args.participant or owner or "P00"


def _replay_source_warnings(run) -> None:
    """A replayed recording that is short of what its session.json says was written replays as
    it is (the holes show in this recording's loss summary); say so, with the numbers, on stderr
    and in the new session.json (``replay_source_problems``)."""
    src = run.devices.replay if run.devices is not None else None
    if src is None:
        return
    found = src.warnings()
    for msg in found:
        print(f"emer-live: warning: replay source: {msg}", file=sys.stderr)
    if found and run.recorder is not None:
        run.recorder.update_meta(replay_source_problems=found)


def _progress(run, ev) -> None:
    dur = ev.duration_s
    if dur is None and run.devices is not None and run.devices.replay is not None:
        dur = run.devices.replay.duration_s
    parts = [f"{ev.elapsed_s:7.1f}" + (f"/{dur:.1f} s" if dur else " s")]
    for label in ("gaze", "camera", "audio"):
        c = ev.counters.get(label)
        if c is None:
            continue
        parts.append(f"{label} {c['samples']}" + (f" gaps {c['gaps']}" if c["gaps"] else "")
                     + (f" dropped {c['dropped']}" if c["dropped"] else ""))
    line = "  ".join(parts)
    if sys.stderr.isatty():
        sys.stderr.write("\r" + line[:150].ljust(100))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def cmd_info(args) -> int:
    from .reader import SessionReader

    reader = SessionReader(args.session)
    s = reader.summary()
    s["presentation"] = _presentation(reader, s)
    if args.json:
        print(json.dumps(s, indent=2))
        return _warn_problems(s)
    print(f"{s['path']}  (format {s['format']['name']} v{s['format']['version']}, status {s['status']}, "
          f"participant {s['participant']})")
    if s.get("face_video", "full") != "full":
        print(f"privacy mode: face video {s['face_video']} - "
              + ("face crops and measurements kept, no face video" if s["face_video"] == "crops"
                 else "face measurements only, no face images"))
    print(f"{'stream':12} {'samples':>9} {'duration_s':>11} {'rate_hz':>9} {'gaps':>5} {'dropped':>8}  first_t_us .. last_t_us")
    for name, st in s["streams"].items():
        rate = f"{st['rate_hz']:.2f}" if st["rate_hz"] else "-"
        print(f"{name:12} {st['samples']:>9} {st['duration_s']:>11.3f} {rate:>9} {st['gaps']:>5} {st['dropped']:>8}  "
              f"{_or_dash(st['first_t_us'])} .. {_or_dash(st['last_t_us'])}")
    drift = s["streams"].get("gaze", {}).get("device_clock_drift_ppm")
    if drift is not None:
        print(f"tracker clock vs session clock: {drift:+.1f} ppm (from the gaze time stamps)")
    cs = s.get("tracker_clock_sync")
    if cs and cs.get("device_clock_drift_ppm") is not None:
        print(f"tracker time-sync packets: {cs['packets']} over {cs['span_s']:.0f} s, "
              f"device clock {cs['device_clock_drift_ppm']:+.1f} ppm")
    if s["trials"]:
        states = Counter(t.get("status") or "unknown" for t in s["trials"])
        print(f"trials: {len(s['trials'])} ({', '.join(f'{n} {state}' for state, n in states.items())})")
        for t in s["trials"]:
            extra = ""
            if "sam_er7" in t:
                extra += f"  SAM {t['sam_er7']:<9}"
            if "predicted_er7" in t:
                extra += f"  model ER {t['predicted_er7']:<9} FER {t['predicted_fer7']}"
            print(f"  {t['trial']:>3} {t['stimulus_id'] or '':<16} {t.get('status') or '':<9} "
                  f"frames {t['frames']:>5}{extra}")
    if s["presentation"]:
        from .presentation import LATE_FACTOR, format_presentation

        print(f"stimulus presentation (stimulus_frames.tsv; frames shown/in the clip, late: more than "
              f"{LATE_FACTOR:g} frame intervals after the previous, onset: first frame minus planned):")
        for row in s["presentation"]:
            print(format_presentation(row))
    return _warn_problems(s)


def _or_dash(value) -> str:
    """A table cell: '-' where there is nothing (a stream without records has no first time)."""
    return "-" if value is None else str(value)


def _presentation(reader, summary: dict) -> list:
    """Per trial, what the participant screen presented (recording/presentation.py); a trial
    whose clip did not play as planned becomes a warning."""
    from ..errors import SessionFormatError
    from .presentation import trial_presentation

    try:
        rows = trial_presentation(reader)
    except (SessionFormatError, OSError, ValueError) as exc:
        _add_problem(summary, f"presentation logs not readable: {exc}", "unreadable")
        return []
    for row in rows:
        if row["problems"]:
            _add_problem(summary, f"trial {row['trial']} ({row['stimulus_id']}): stimulus presentation: "
                         + "; ".join(row["problems"]), "presentation")
    return rows


def _add_problem(summary: dict, text: str, kind: str) -> None:
    """One more warning for ``info``, with its kind (recording/reader.py WARNING_ONLY decides
    which kinds make ``info`` exit non-zero)."""
    summary.setdefault("problems", []).append(text)
    summary.setdefault("problem_kinds", []).append(kind)


def _warn_problems(summary: dict) -> int:
    """What is wrong with the folder goes to stderr (the table and --json stay parseable), one
    line each, then one error line; returns the exit code."""
    from .reader import SessionReader

    problems = summary.get("problems", [])
    for msg in problems:
        print(f"emer-live: warning: {msg}", file=sys.stderr)
    kinds = summary.get("problem_kinds", ["unreadable"] * len(problems))
    damage = [k for k in kinds if k not in SessionReader.WARNING_ONLY]
    if not damage:
        return 0
    from ..errors import SessionLockedError
    from .lock import read_lock

    held = read_lock(summary["path"])
    if held is not None and not held.stale:   # still being written: not damage (yet)
        print(f"emer-live: error: {summary['path']}: in use ({held.describe()}); the summary shows what was "
              "written so far", file=sys.stderr)
        return SessionLockedError.exit_code
    print(f"emer-live: error: {summary['path']}: damaged - see the warnings above; the summary shows only what "
          "can be read", file=sys.stderr)
    return DAMAGED_EXIT


def cmd_repair(args) -> int:
    from .repair import repair_session

    rep = repair_session(args.session)
    if not rep.changed and not rep.lost:
        print(f"{rep.path}: nothing to repair" + (" - but see the damage below, which repair cannot undo"
                                                  if rep.remaining else ""))
    else:
        for a in rep.actions:
            print(f"repaired: {a}")
        for lost in rep.lost:
            print(f"lost: {lost}")
        print(f"{rep.path}: readable again; the report is in session.json (repairs)")
    for msg in rep.remaining:
        print(f"emer-live: warning: not repairable: {msg}", file=sys.stderr)
    return 0
