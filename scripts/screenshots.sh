#!/usr/bin/env bash
# Regenerates the screenshots in docs/img/ under Xvfb (real xcb windows, not the offscreen
# platform), from the app's own --screenshot option. Never edit those images by hand.
#   scripts/screenshots.sh            (needs xvfb-run: scripts/system-deps.sh installs it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { timeout 300 xvfb-run -a -s "-screen 0 1920x1080x24" env -u QT_QPA_PLATFORM "$PY" "$@"; }
# the operator console in demo mode, 25 s after start (a fresh layout, a throwaway recording)
run main.py --screenshot docs/img/console.png --quit-after 25 --out "$tmp/rec" --settings "$tmp/layout.ini"

# a demo session: the participant screen in each phase and the console during the session
lib="$tmp/stimuli"
"$PY" -m emer_live.cli stimuli placeholders --out "$lib" --duration 6 >/dev/null
run scripts/session_screenshots.py "$lib" docs/img

# the replay window on a recorded synthetic session (re-analysed with its own checkpoint)
"$PY" -m emer_live.cli session --headless --fast --participant P01 --trials 3 --time-scale 0.5 --stimuli "$lib" \
  --checkpoint models/emert_demo_synthetic.pt --out "$tmp/replay" >/dev/null
run scripts/replay_screenshot.py "$(ls -d "$tmp"/replay/P01/*)" docs/img/replay.png
echo "screenshots: docs/img/participant-*.png docs/img/console-session.png docs/img/replay.png"
