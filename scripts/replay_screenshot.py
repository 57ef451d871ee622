"""The replay window's screenshot for docs/img/replay.png (run by scripts/screenshots.sh under Xvfb).

    python scripts/replay_screenshot.py SESSION_DIR OUT.png [--checkpoint CKPT]

Opens the session, re-analyses it with CKPT (default: the checkpoint it was recorded with) so the
comparison shows, then seeks to 60 % into the second trial's clip - the gaze point and the
fixation heatmap over the stimulus, the face box on the face - and saves the window.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("session")
    ap.add_argument("out")
    ap.add_argument("--checkpoint", default=None)
    a = ap.parse_args()

    from PyQt6 import QtCore, QtWidgets

    from emer_live.ui.replay import ReplayWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    tmp = Path(tempfile.mkdtemp(prefix="replay_shot_"))
    win = ReplayWindow(a.session, settings=QtCore.QSettings(str(tmp / "r.ini"), QtCore.QSettings.Format.IniFormat))
    win.resize(1600, 980)
    win.show()

    def wait(cond, timeout_s):
        end = time.perf_counter() + timeout_s
        while not cond() and time.perf_counter() < end:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.01)
        return cond()

    wait(lambda: False, 1.0)
    if win.start_reanalysis(a.checkpoint):
        if not wait(lambda: win.worker is None, 600):
            print("re-analysis did not finish in 10 min", file=sys.stderr)
            return 1
    trials = [t for t in win.session.trials if t.onset_us is not None]
    tr = trials[1] if len(trials) > 1 else trials[0]
    win.trial_table.selectRow(win.session.trials.index(tr))
    win.seek(int(tr.onset_us + 0.6 * ((tr.offset_us or win.session.t1_us) - tr.onset_us)))
    wait(lambda: win.face_box_key == win.shown_face, 20)
    wait(lambda: False, 1.0)
    print(f"screenshot: {win.screenshot(a.out)} (trial {tr.trial}, gaze {win.shown_gaze}, "
          f"clip frame {win.shown_stimulus}, face box {win.shown_face_box})")
    win.close()
    return 0


if __name__ == "__main__":
    from emer_live.ui.main import exit_now

    exit_now(main())  # no Python teardown of Qt objects: see exit_now
