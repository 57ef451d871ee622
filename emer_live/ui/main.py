"""``python main.py``: the desktop app (operator console), or the headless demo without a display.

With no hardware the console starts in demo mode by itself (synthetic participant, the demo
checkpoint, a visible banner). ``--screenshot FILE --quit-after S`` saves the window after S
seconds and quits (docs, tests).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

__all__ = ["main", "display_available", "build_parser"]


def display_available() -> Tuple[bool, str]:
    """Whether a window can be shown here, and if not, why (one line)."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return True, f"Qt platform {os.environ['QT_QPA_PLATFORM']} (QT_QPA_PLATFORM)"
    if sys.platform in ("win32", "darwin"):
        return True, "desktop session"
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return True, "X11/Wayland display"
    return False, "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"


#: options that only a collection session uses (refused without --session), with their defaults
SESSION_ONLY = {"stimuli": ("--stimuli", "stimuli/placeholder"), "trials": ("--trials", 14),
                "time_scale": ("--time-scale", 1.0), "participant_screen": ("--participant-screen", None),
                "no_calibration": ("--no-calibration", False), "calibration_points": ("--calibration-points", 5)}
#: what the headless demo (no display) honours; any other option given is refused there
HEADLESS_OPTIONS = ("checkpoint", "seed", "headless")
#: what the replay window honours
REPLAY_OPTIONS = ("replay", "screenshot", "quit_after", "settings")


def build_parser() -> argparse.ArgumentParser:
    from ..cli import OneLineParser     # option errors: one line, exit 2
    from ..recording.crops import FACE_VIDEO_HELP, FACE_VIDEO_MODES

    p = OneLineParser(
        prog="python main.py",
        description="emer_live desktop app: the operator console with live ER/FER plots and the emotion gap. "
                    "With no eye tracker it starts in demo mode (synthetic participant). Without a display it "
                    "runs the headless demo instead.")
    p.add_argument("--tracker", default="auto",
                   help="eye tracker: auto (a Tobii when found, else synthetic), synthetic, tobii[:ADDRESS], replay:DIR")
    p.add_argument("--camera", default="synthetic", help="webcam: synthetic, an index, a video file, replay, none")
    p.add_argument("--mic", default="none", help="microphone: none, synthetic, default, an index or name")
    p.add_argument("--checkpoint", default=None, help="EMERT checkpoint (default: the demo checkpoint in models/)")
    p.add_argument("--participant", default="P00", help="pseudonymous participant ID (never a name)")
    p.add_argument("--out", default=None, metavar="ROOT",
                   help="recordings root: every run records into ROOT/<participant>/S<UTC time> (a session) or "
                        "ROOT/<participant>/L<UTC time> (a live run); default recordings, demo mode recordings/demo")
    p.add_argument("--size", default="1280x720", help="camera frame size (default 1280x720)")
    p.add_argument("--fps", type=float, default=30.0, help="camera fps (default 30)")
    p.add_argument("--rate", type=float, default=250.0, help="tracker rate in Hz (default 250)")
    p.add_argument("--seed", type=int, default=0, help="synthetic participant seed")
    p.add_argument("--window", type=float, default=8.0, help="live window length in seconds (default 8)")
    p.add_argument("--hop", type=float, default=1.0, help="live hop in seconds (default 1)")
    p.add_argument("--device", default="auto", help="model device: auto, cpu, cuda, mps")
    p.add_argument("--fer-model", default="auto", metavar="FER.pt|auto|emert",
                   help="FER source: auto (the pretrained FER model for a real camera or video, EMERT's own "
                        "face head for the synthetic camera), emert, or a FER checkpoint")
    p.add_argument("--session", action="store_true",
                   help="a collection session: clips on the participant screen, SAM after each (default: a live run)")
    p.add_argument("--stimuli", default=None,
                   help="--session: stimulus library folder (default stimuli/placeholder; `emer-live stimuli "
                        "placeholders --out stimuli/placeholder` makes one)")
    p.add_argument("--trials", type=int, default=None, help="--session: number of trials (default 14)")
    p.add_argument("--time-scale", type=float, default=None,
                   help="--session: shrink every phase (clips play faster to fit), e.g. 0.25 for a quick demo")
    p.add_argument("--participant-screen", type=int, default=None, metavar="N",
                   help="--session: screen number for the participant window, 0 = the first (default: a screen "
                        "other than the console's; a plain window when there is only one)")
    p.add_argument("--no-calibration", action="store_true",
                   help="--session: skip the calibration/validation at the start (e.g. calibrated elsewhere)")
    p.add_argument("--calibration-points", type=int, default=None, choices=(5, 9),
                   help="--session: calibration points (default 5)")
    p.add_argument("--consent-version", default=None, metavar="V",
                   help="the consent form the participant signed (stored in session.json)")
    p.add_argument("--consent-date", default=None, metavar="YYYY-MM-DD",
                   help="the day consent was given (default: today, with --consent-version)")
    p.add_argument("--group-readable", action="store_true",
                   help="recorded folders 0750 and files 0640 for a lab sharing data through a Unix group "
                        "(default: private, 0700/0600; docs/data-rights.md)")
    p.add_argument("--face-video", default="full", choices=FACE_VIDEO_MODES, help=FACE_VIDEO_HELP)
    p.add_argument("--quit-when-done", action="store_true", help="close the app when the run or session ends")
    p.add_argument("--no-autostart", action="store_true", help="wait for Start even in demo mode")
    p.add_argument("--screenshot", default=None, metavar="FILE", help="save the window as an image before quitting")
    p.add_argument("--quit-after", type=float, default=None, metavar="SECONDS",
                   help="close the app after this many seconds (with --screenshot: the moment of the picture)")
    p.add_argument("--settings", default=None, metavar="INI",
                   help="keep the window layout in this file instead of the user's settings")
    p.add_argument("--headless", action="store_true",
                   help="run the headless demo (`emer-live demo`; it takes --checkpoint and --seed) even when a "
                        "display is present")
    p.add_argument("--replay", default=None, metavar="DIR",
                   help="open a recorded session folder in the replay window instead of the console")
    return p


def _tracker(spec: str) -> str:
    if spec != "auto":
        return spec
    from ..demo import _tracker_spec   # tobii when the SDK finds one, else synthetic

    return _tracker_spec()


def _given(args, parser: argparse.ArgumentParser) -> List[str]:
    """The options given on the command line (those whose value differs from the default)."""
    return [k for k, v in vars(args).items() if v != parser.get_default(k)]


def check_options(args, parser: argparse.ArgumentParser, *, headless: bool) -> None:
    """Refuse options that do not apply to what will run (one line, exit 2): session options
    without ``--session``, ``--session`` with ``--replay`` or without a display, and every
    option the replay window or the headless demo would ignore."""
    from ..errors import ConfigError

    given = _given(args, parser)
    flag = lambda k: "--" + k.replace("_", "-")  # noqa: E731
    if args.replay is not None:
        if args.session:
            raise ConfigError("--session and --replay: choose one (--replay DIR opens a recorded session for review)")
        stray = [flag(k) for k in given if k not in REPLAY_OPTIONS]
        if stray:
            raise ConfigError(f"{', '.join(stray)}: not used by the replay window (--replay takes --screenshot, "
                              "--quit-after and --settings; the checkpoint for re-analysis is chosen in its "
                              "'Re-analyse with a checkpoint' panel)")
        return
    if not args.session:
        stray = [SESSION_ONLY[k][0] for k in SESSION_ONLY if k in given]
        if stray:
            one = len(stray) == 1
            raise ConfigError(f"{', '.join(stray)} only appl{'ies' if one else 'y'} to a collection session: "
                              f"add --session, or leave {'it' if one else 'them'} out")
    if headless:
        if args.session:
            why = "--session and --headless: choose one" if args.headless else \
                "--session needs a display for the participant screen"
            raise ConfigError(f"{why}; a session without a screen is `emer-live session --headless --participant ID` "
                              "(docs/running-a-session.md)")
        stray = [flag(k) for k in given if k not in HEADLESS_OPTIONS]
        if stray:
            raise ConfigError(f"{', '.join(stray)}: not used by the headless demo (no display, or --headless); "
                              "`emer-live live --headless` takes the device and model options")


def check_screenshot(path: Optional[str]) -> None:
    """``--screenshot FILE`` must name an image format Qt writes (checked before any window: a
    failed save at the end would leave the run unfinished)."""
    if path is None:
        return
    from PyQt6.QtGui import QImageWriter

    from ..errors import ConfigError

    writable = sorted(bytes(f).decode() for f in QImageWriter.supportedImageFormats())
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in writable:
        what = f"Qt cannot write .{suffix} images" if suffix else "the name has no image type"
        others = ", .".join(f for f in writable if f != "png")
        raise ConfigError(f"--screenshot {path}: {what}; end it in .png (or .{others})")


def main(argv: Optional[List[str]] = None) -> int:
    from ..cli import report_error
    from ..errors import EmerError

    parser = build_parser()
    args = parser.parse_args(argv)
    ok, why = display_available()
    headless = args.replay is None and (args.headless or not ok)
    try:
        check_options(args, parser, headless=headless)
        check_screenshot(args.screenshot)
    except EmerError as exc:
        return report_error(exc)
    for key, (_, default) in SESSION_ONLY.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.replay is not None:
        from .replay import run_replay

        return run_replay(args, ok, why)
    if headless:
        if not args.headless:
            print(f"emer-live: {why}: running the headless demo (set DISPLAY or use xvfb-run for the app)",
                  flush=True)
        from ..cli import main as cli_main

        extra = (["--checkpoint", args.checkpoint] if args.checkpoint else []) + \
            ["--seed", str(args.seed), "--face-video", args.face_video]
        return cli_main(["demo"] + extra)
    return run_gui(args)


def console_options(args):
    """The console's :class:`ConsoleOptions` from the command line, checked as the first Start
    would check them - every value, the participant ID, the stimulus library and its plan, the
    checkpoint, the participant screen (the QApplication must exist) - without opening a device,
    a window or a folder. Returns ``(options, model)``: the checkpoint as loaded, for the first
    run. Raises EmerError subclasses."""
    from ..app import Run, default_checkpoint
    from ..devices.factory import parse_size
    from ..errors import ConfigError
    from .console import ConsoleOptions

    if args.quit_after is not None and not args.quit_after > 0:
        raise ConfigError(f"--quit-after {args.quit_after}: must be > 0 seconds")
    size = parse_size(args.size)
    tracker = _tracker(args.tracker)
    opts = ConsoleOptions(tracker=tracker, camera=args.camera, mic=args.mic,
                          checkpoint=args.checkpoint or str(default_checkpoint()), participant=args.participant,
                          out=args.out, size=size, fps=args.fps, rate=args.rate,
                          seed=args.seed, window_s=args.window, hop_s=args.hop, model_device=args.device,
                          fer_model=args.fer_model, session=args.session, stimuli=args.stimuli,
                          n_trials=args.trials, time_scale=args.time_scale,
                          participant_screen=args.participant_screen, calibrate=not args.no_calibration,
                          calibration_points=args.calibration_points, consent_version=args.consent_version,
                          consent_date=args.consent_date, group_readable=args.group_readable,
                          face_video=args.face_video,
                          demo=tracker == "synthetic")
    probe = Run(opts.run_config())        # RunConfig checks every value
    if opts.session and opts.participant_screen is not None:
        from .participant import choose_screen

        choose_screen(opts.participant_screen)    # needs the QApplication (no window yet)
    probe.check()                         # outputs, stimuli and plan, checkpoint and FER model
    return opts, probe.base_model


def run_gui(args) -> int:
    from ..cli import report_error
    from ..errors import EmerError

    # Qt Multimedia warns on every start that PipeWire's library is absent (audio goes through
    # PulseAudio/ALSA): two lines of noise before a refusal's one line; a user's own rules win
    quiet, rules = "qt.multimedia.symbolsresolver=false", os.environ.get("QT_LOGGING_RULES", "")
    if quiet not in rules:
        os.environ["QT_LOGGING_RULES"] = f"{quiet};{rules}" if rules else quiet
    from PyQt6 import QtCore, QtWidgets

    # the application first (the screens are known then), the window only once all is checked
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("emer_live")
    app.setOrganizationName("emer_live")
    try:
        opts, model = console_options(args)
    except EmerError as exc:
        return report_error(exc)

    from .console import OperatorConsole

    from .settings import app_settings

    # the user's settings file, never under / (HOME unset) and private (emer_live.ui.settings)
    settings = QtCore.QSettings(args.settings, QtCore.QSettings.Format.IniFormat) if args.settings \
        else app_settings("operator-console")
    win = OperatorConsole(opts, autostart=opts.demo and not args.no_autostart, settings=settings, model=model)
    win.show()
    result = {"rc": 0}

    def finish():
        if result.get("finished"):
            return
        result["finished"] = True
        if args.screenshot:
            try:
                print(f"screenshot: {win.screenshot(args.screenshot)}", flush=True)
            except OSError as exc:      # e.g. the disk is full: the run is still closed properly
                win.last_error = str(exc)
        win.close_without_asking()
        app.quit()

    if args.quit_after is not None:
        QtCore.QTimer.singleShot(int(args.quit_after * 1000), finish)
    if args.quit_when_done:
        def check_done():
            run = win.run
            if (run is not None and not run.running) or (run is None and win.start_error is not None):
                QtCore.QTimer.singleShot(1500, finish)    # let the last screen (or the refusal) be seen
            else:
                QtCore.QTimer.singleShot(250, check_done)

        QtCore.QTimer.singleShot(250, check_done)
    app.exec()
    run = win.run
    if run is not None:
        folder = run.session_dir
        where = f"folder {folder}" if folder is not None and folder.is_dir() else "nothing recorded"
        print(f"run: status {run.status}, {where}", flush=True)
        if run.status not in (None, "complete", "aborted"):
            result["rc"] = 1
    if win.last_error:
        print(f"emer-live: error: {win.last_error.splitlines()[0]}", file=sys.stderr)
        result["rc"] = 1
    if win.start_error is not None:
        result["rc"] = win.start_error.exit_code
    return result["rc"]


def exit_now(rc: int) -> None:
    """Leave the process with ``rc`` once the app has finished (the run is finalised, every file
    closed), skipping Python's teardown: there, Qt objects still owned by Python (the media
    player, its decoder threads, plot items) are destroyed in arbitrary order after the
    QApplication, which can crash at exit (seen: a segfault after a complete session)."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(rc or 0))


if __name__ == "__main__":
    exit_now(main())
