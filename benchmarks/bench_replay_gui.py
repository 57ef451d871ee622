"""GUI event-loop lag of the replay window while it replays a >= 60 s session at 8x.

The probe is bench_gui.py's: a precise 10 ms timer in the window's event loop; lag = how late
each probe fires. Measured twice in one run: the window open on the session, paused (baseline),
and the window playing the whole session at 8x (stimulus clip decoded frame-exact + gaze point
+ heatmap, 1280x720 face video + face box, cursors on every plot), twice over. Prints
p50/p95/max of both and their ratio; the goal (issue 14) is replay p95 < 50 ms.

    python benchmarks/bench_replay_gui.py                 # records a synthetic session first (~1 min)
    python benchmarks/bench_replay_gui.py --session DIR   # an existing session folder

Runs on the display when there is one (xvfb-run works), else offscreen.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform.startswith("linux"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")     # no display: render offscreen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gui_lag import measure, stats  # noqa: E402


def make_session(tmp: Path, trials: int, time_scale: float) -> Path:
    """A synthetic session (1280x720 30 fps camera, 250 Hz gaze, the demo checkpoint live, real clips)."""
    emer = [sys.executable, "-m", "emer_live.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(emer + ["stimuli", "placeholders", "--out", str(tmp / "lib"), "--duration", "6", "--size", "640x360",
                           "--fps", "25"], check=True, capture_output=True, env=env)
    subprocess.run(emer + ["session", "--headless", "--fast", "--participant", "P01", "--trials", str(trials),
                           "--time-scale", str(time_scale), "--stimuli", str(tmp / "lib"), "--out", str(tmp / "rec"),
                           "--checkpoint", str(ROOT / "models" / "emert_demo_synthetic.pt")],
                   check=True, capture_output=True, env=env)
    (d,) = list((tmp / "rec" / "P01").iterdir())
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--session", default=None, help="session folder (default: record a synthetic one)")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--time-scale", type=float, default=0.5)
    ap.add_argument("--speed", type=float, default=8.0)
    ap.add_argument("--passes", type=int, default=2, help="times the whole session is played")
    a = ap.parse_args()

    from PyQt6 import QtCore, QtWidgets

    from emer_live.ui.replay import ReplayWindow

    tmp = Path(tempfile.mkdtemp(prefix="bench_replay_"))
    t = time.perf_counter()
    d = Path(a.session) if a.session else make_session(tmp, a.trials, a.time_scale)
    made = time.perf_counter() - t
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    settings = QtCore.QSettings(str(tmp / "replay.ini"), QtCore.QSettings.Format.IniFormat)
    win = ReplayWindow(d, settings=settings)
    win.resize(1500, 950)
    win.show()
    s = win.session
    idle = measure(app, 8.0)
    tl = win.timeline
    tl.set_speed(a.speed)
    play = []
    frames_seen = set()
    win.timeline.time_changed.connect(lambda _t: frames_seen.add(win.shown_face))
    for _ in range(a.passes):
        tl.seek(tl.t0_us)
        tl.play()
        play.append(measure(app, s.duration_s / a.speed + 5, until=lambda: not tl.playing))
    play = np.concatenate(play)
    meta = json.loads((d / "session.json").read_text())
    cam = meta.get("streams", {}).get("camera", {})
    win.close()
    print(f"machine: {os.cpu_count()} cores; platform {app.platformName()}; session {d.name}: {s.duration_s:.1f} s, "
          f"{len(s.trials)} trials, {len(s.gaze_t)} gaze samples, {len(s.face_t)} face frames "
          f"({cam.get('width', '?')}x{cam.get('height', '?')}), "
          f"{0 if s.windows is None else len(s.windows)} predictions" + (f" (recorded in {made:.0f} s)" if not a.session else ""))
    print(f"idle (paused)   : {stats(idle)}")
    print(f"replay at {a.speed:g}x   : {stats(play)}  over {a.passes} pass(es), {len(frames_seen)} distinct face frames shown")
    print(f"ratio replay/idle: p95 {np.percentile(play, 95) / max(np.percentile(idle, 95), 1e-3):.1f}x")
    p95 = float(np.percentile(play, 95))
    print(f"goal replay p95 < 50 ms: {'holds' if p95 < 50 else 'DOES NOT HOLD'} ({p95:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
