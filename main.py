"""`python main.py` starts the emer_live desktop app (the operator console; demo mode with a
synthetic participant when no hardware is present). Without a display it runs the headless demo
and says why. `python main.py --help` lists the options."""

import sys

from emer_live.ui.main import exit_now, main

if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
