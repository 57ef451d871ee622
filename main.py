"""`python main.py` starts the emer_live desktop app (the operator console; demo mode with a
synthetic participant when no hardware is present). Without a display it runs the headless demo
and says why. `python main.py --help` lists the options. Run it with the set-up environment's
Python: `.venv/bin/python main.py` (`make setup` makes `.venv`; `make console` runs this)."""

import sys

if __name__ == "__main__":
    try:
        from emer_live.ui.main import exit_now, main

        rc = main(sys.argv[1:])
    except ModuleNotFoundError as exc:
        if sys.prefix != sys.base_prefix:      # inside a virtual environment: a real defect, keep the traceback
            raise
        # the system Python without the project's packages (the usual slip: `python main.py`)
        print(f"emer-live: error: this Python ({sys.executable}) has no module {exc.name!r}: run the app with the "
              "set-up environment, `.venv/bin/python main.py` (Windows: .venv\\Scripts\\python main.py); "
              "`make setup` makes it", file=sys.stderr)
        sys.exit(2)
    exit_now(rc)
