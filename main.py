"""`python main.py` starts the emer_live desktop app (the operator console; demo mode with a
synthetic participant when no hardware is present). Without a display it runs the headless demo
and says why. `python main.py --help` lists the options. Run it with the set-up environment's
Python: `.venv/bin/python main.py` (`make setup` makes `.venv`; `make console` runs this)."""

import sys

if __name__ == "__main__":
    try:
        # the packages every start needs: a Python without them is the wrong one (the usual slip,
        # the system's `python main.py`); a module missing later is the app's own error
        import numpy  # noqa: F401
        import PyQt6  # noqa: F401

        from emer_live.ui.main import exit_now, main
    except ModuleNotFoundError as exc:
        print(f"emer-live: error: this Python ({sys.executable}) has no module {exc.name!r}: run the app with the "
              "set-up environment, `.venv/bin/python main.py` (Windows: .venv\\Scripts\\python main.py); "
              "`make setup` makes it", file=sys.stderr)
        sys.exit(2)
    exit_now(main(sys.argv[1:]))
