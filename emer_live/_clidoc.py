"""Render ``docs/cli.md`` from the argparse parsers, so the CLI reference stays in step with --help.

``python -m emer_live._clidoc > docs/cli.md`` regenerates it; a test fails when it is stale.
"""

from __future__ import annotations

import argparse
import os


def render() -> str:
    from .cli import build_parser

    os.environ["COLUMNS"] = "100"  # fixed width: the generated file must not depend on the terminal
    parser = build_parser()
    parser.formatter_class = argparse.HelpFormatter
    out = ["# emer-live command-line reference", "",
           "Generated from the program's own `--help` (`python -m emer_live._clidoc > docs/cli.md`);",
           "a test keeps it in step. Errors caused by input are printed as one line",
           "`emer-live: error: ...` with a non-zero exit code (2 bad input, 3 device unavailable, 4 disk full,",
           "5 forget could not write, remove or read, 6 a session folder is in use by a recorder,",
           "7 `info` found damage).",
           "", "```", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        out += [f"## emer-live {name}", "", "```", p.format_help().rstrip(), "```", ""]
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        for n in nested:
            for sname, sp in n.choices.items():
                out += [f"### emer-live {name} {sname}", "", "```", sp.format_help().rstrip(), "```", ""]
    from .ui.main import build_parser as app_parser

    out += ["## python main.py (the desktop app)", "", "```", app_parser().format_help().rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
