"""``emer-live stimuli ...``: check a stimulus library, generate placeholder clips, preview a
trial plan."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import ConfigError, StimulusError

__all__ = ["register"]


def _size(text: str) -> tuple:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text!r}") from None
    return w, h


def register(subparsers) -> None:
    """Add ``stimuli check``, ``stimuli placeholders`` and ``stimuli plan``."""
    p = subparsers.add_parser(
        "stimuli", help="check a stimulus library, make placeholder clips, preview trial plans",
        description="Stimulus libraries: a folder of videos plus manifest.toml (docs/stimuli.md).")
    sub = p.add_subparsers(dest="stimuli_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = sub.add_parser(
        "check", help="validate a library: every problem with file name and reason",
        description="Check manifest fields and counts, then each file: present, a decodable video, "
                    "duration and sha256 as in the manifest; video files the manifest does not "
                    "list are problems too. Exit 0 with a one-line summary when all is well, "
                    "otherwise one line per problem on stderr and a non-zero exit.")
    c.add_argument("directory", metavar="DIR", help="the library folder")
    c.add_argument("--manifest", metavar="M", default=None,
                   help="manifest to check against (default DIR/manifest.toml)")
    c.add_argument("--full", action="store_true",
                   help="decode every frame of every clip (slow; finds damage mid-file in clips "
                        "without a sha256)")
    c.set_defaults(func=_cmd_check)

    g = sub.add_parser(
        "placeholders", help="generate labelled placeholder clips with sound + manifest",
        description="One short procedurally drawn H.264/AAC MP4 per manifest entry, clearly "
                    "labelled PLACEHOLDER, plus DIR/manifest.toml with durations and sha256s. "
                    "For demos and tests: they are not emotion stimuli.")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (empty or new)")
    g.add_argument("--duration", type=float, default=6.0, metavar="S",
                   help="seconds per clip (default 6)")
    g.add_argument("--size", type=_size, default=(640, 360), metavar="WxH",
                   help="frame size (default 640x360)")
    g.add_argument("--fps", type=int, default=25, help="frame rate (default 25)")
    g.add_argument("--manifest", metavar="M", default=None,
                   help="mirror this manifest's clips (default: the built-in EMER design, "
                        "hap_01 ... neu_04)")
    g.add_argument("--force", action="store_true",
                   help="replace an earlier placeholder set in DIR")
    g.set_defaults(func=_cmd_placeholders)

    pl = sub.add_parser(
        "plan", help="print a participant's trial plan",
        description="Print the trial plan make_plan() gives (scheme in docs/stimuli.md). Use the "
                    "same --seed for every participant of a study. The library is checked first as a "
                    "session's start checks it: a missing, empty or undecodable clip is one line on "
                    "stderr each and no plan (exit 2).")
    pl.add_argument("directory", metavar="DIR", help="library folder (or a manifest file)")
    pl.add_argument("--participant", required=True, help="participant pseudonym, e.g. P01")
    pl.add_argument("--trials", type=int, default=14, help="number of trials (default 14)")
    pl.add_argument("--seed", type=int, required=True, help="study seed")
    pl.add_argument("--index", type=int, default=None,
                    help="Latin-square row (default: the participant ID's number minus 1)")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")
    pl.add_argument("--manifest-only", action="store_true",
                    help="plan from the manifest alone, without checking the clip files (a design whose "
                         "videos are not there yet, e.g. the repository's stimuli/)")
    pl.set_defaults(func=_cmd_plan)


def _cmd_check(args) -> int:
    from .stimuli import check_library

    report = check_library(args.directory, manifest=args.manifest, full=args.full)
    if report.ok:
        for w in report.warnings:
            print(f"warning: {w}")
        print(report.summary())
        return 0
    for problem in report.problems:   # the problems first: a warning must not hide them
        print(problem, file=sys.stderr)
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    return StimulusError.exit_code


def _cmd_placeholders(args) -> int:
    from .stimuli import make_placeholders

    t0 = time.perf_counter()
    width, height = args.size

    def progress(i, n, clip):
        print(f"\r[{i}/{n}] {clip.id}", end="", file=sys.stderr, flush=True)

    lib = make_placeholders(args.out, manifest=args.manifest, duration_s=args.duration,
                            width=width, height=height, fps=args.fps, force=args.force,
                            progress=progress if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"wrote {len(lib.clips)} placeholder clips ({width}x{height} {args.fps} fps, "
          f"{args.duration:g} s, H.264 + AAC) and {lib.manifest_path} in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_plan(args) -> int:
    from .plan import make_plan
    from .stimuli import check_library, load_manifest

    if args.trials is None or args.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {args.trials}")
    # the manifest first: no folder or no manifest is its own one-line error, not "1 bad file"
    lib = load_manifest(args.directory)
    # a plan is only worth printing for a library a session would accept: the same check as the
    # session's start (missing, empty or undecodable clips), one line per bad file
    where = Path(args.directory)
    folder, manifest = (where.parent, where) if where.is_file() else (where, None)
    report = None if args.manifest_only else check_library(folder, manifest=manifest)
    if report is not None and not report.ok:
        by_file: dict = {}
        for problem in report.problems:      # one line per bad file, its reasons joined
            by_file.setdefault(problem.file, []).append(problem.reason)
        for name, reasons in by_file.items():
            print(f"{name}: {'; '.join(reasons)}", file=sys.stderr)
        n = len(by_file)
        # every clip missing: most likely a design whose videos are not there yet
        hint = "; --manifest-only plans from the manifest alone" if n == len(lib.clips) and all(
            r.startswith("missing") for rs in by_file.values() for r in rs) else ""
        print(f"emer-live: error: no plan: {n} bad file{'s' if n != 1 else ''} in the library {folder}; fix "
              f"{'them' if n != 1 else 'it'} (`emer-live stimuli check {folder}` says the same){hint}", file=sys.stderr)
        return StimulusError.exit_code
    plan = make_plan(lib, participant=args.participant, n_trials=args.trials, seed=args.seed,
                     participant_index=args.index)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    print(f"# participant {plan.participant} (Latin-square row {plan.participant_index}), "
          f"seed {plan.seed}, {plan.n_trials} trials, scheme {plan.scheme}")
    for t in plan.trials:
        print(f"{t.number:3d}  {t.clip_id:<12s} {t.category:<10s} {Path(lib.clip(t.clip_id).file)}")
    return 0
