"""`python main.py` starts emer_live (the desktop app when a display is present; see --help)."""

import sys

from emer_live.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["demo"]))
