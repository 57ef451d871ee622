"""The ``emer-live`` command line: one module that dispatches to the stages.

Each stage module listed in ``_COMMAND_MODULES`` defines ``register(subparsers)``, which adds its
sub-command(s) and sets ``func`` (``args -> int exit code``) as the parser default. User mistakes
(:class:`~emer_live.errors.EmerError`) are printed as one line ``emer-live: error: ...`` with a
non-zero exit; anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings
from typing import List, Optional

from . import __version__
from .errors import DiskFullError, EmerError

# One line per stage; order = order in --help.
_COMMAND_MODULES = [
    "emer_live.demo",                 # demo
    "emer_live.recording.commands",   # record, info, repair
    "emer_live.session.commands",     # session, collect-synthetic
    "emer_live.features.commands",    # windows
    "emer_live.live.commands",        # live
    "emer_live.session.stimuli_commands",   # stimuli check, placeholders, plan
    "emer_live.model.commands",       # import-official, model-info
    "emer_live.model.fer_commands",   # import-fer, fer
    "emer_live.training.commands",    # train, evaluate
    "emer_live.doctor",               # doctor
    "emer_live.session.forget",       # forget (participant data rights)
]


class OneLineParser(argparse.ArgumentParser):
    """An option error is one line and exit 2, like every other error caused by input (argparse
    prints the whole usage first); sub-command parsers inherit this class."""

    def error(self, message: str):
        self.exit(2, f"emer-live: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="emer-live",
        description="Eye tracker + webcam emotion recognition (EMER/EMERT): record, replay, "
                    "analyse live, train and evaluate. Runs with synthetic devices when no hardware is present.",
    )
    parser.add_argument("--version", action="version", version=f"emer-live {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_default_formatwarning = warnings.formatwarning


def _formatwarning(message, category, filename, lineno, line=None):
    """The project's own warnings reach the operator as one line, like its errors (no source
    path, no code line); other libraries' warnings keep Python's format."""
    if os.path.abspath(str(filename)).startswith(_PACKAGE_DIR + os.sep):
        return f"emer-live: warning: {message}\n"
    return _default_formatwarning(message, category, filename, lineno, line)


def report_error(exc: EmerError) -> int:
    """Print a user-facing error as one line; returns its exit code."""
    print(f"emer-live: error: {exc}", file=sys.stderr)
    return exc.exit_code


def main(argv: Optional[List[str]] = None) -> int:
    warnings.formatwarning = _formatwarning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EmerError as exc:
        return report_error(exc)
    except OSError as exc:
        # a full disk is the operator's to fix, not a programming error: one line, exit 4
        if exc.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        print(f"emer-live: error: disk full{where}; what was written before is kept - free space, then run "
              "`emer-live repair` on a recording this interrupted", file=sys.stderr)
        return DiskFullError.exit_code
    except KeyboardInterrupt:
        print("emer-live: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
