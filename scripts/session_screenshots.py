"""Screenshots of a demo collection session for docs/running-a-session.md: the participant
screen in each phase (calibration target, fixation, stimulus, SAM while the synthetic participant
answers), the operator's calibration result and the
operator console during the session. Run by scripts/screenshots.sh under Xvfb; never edit the
images by hand.

    python scripts/session_screenshots.py STIMULI_DIR OUT_DIR
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv) -> int:
    stimuli, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    from PyQt6 import QtCore, QtWidgets

    from emer_live.ui.console import ConsoleOptions, OperatorConsole

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    tmp = Path(tempfile.mkdtemp(prefix="shots_"))
    opts = ConsoleOptions(session=True, stimuli=str(stimuli), n_trials=2, time_scale=0.5, demo=True,
                          participant="P01", out=str(tmp / "rec"))
    win = OperatorConsole(opts, autostart=True,
                          settings=QtCore.QSettings(str(tmp / "layout.ini"), QtCore.QSettings.Format.IniFormat))
    win.resize(1600, 980)
    win.show()
    taken = {}

    def shoot():
        scr = win.participant_screen
        run = win.run
        if scr is None or run is None:
            return
        if "size" not in taken:
            # one Xvfb screen: the app put the console on its left half, the participant window on
            # the right (docs/running-a-session.md); the docs show the console at 1600x980
            taken["size"] = (win.geometry().width(), scr.geometry().x())
            win.resize(1600, 980)
            scr.resize(1024, 640)         # the participant pictures as on a 16:10 display
        page = scr.page
        if page == "target" and win.calibration.procedure is not None and "target" not in taken \
                and win.presenter is not None:
            taken["target"] = scr.grab().save(str(out / "participant-target.png"))
        elif win.calibration.passes >= 1 and not win.calibration.accepted and "calibration" not in taken:
            dock = win.docks["calibration"]
            taken["calibration"] = dock.grab().save(str(out / "calibration-result.png"))
        elif page == "fixation" and run.controller is not None and run.controller.trial is not None \
                and "fixation" not in taken:
            taken["fixation"] = scr.grab().save(str(out / "participant-fixation.png"))
        elif page == "stimulus" and win.presenter.frames_shown > 20 and "stimulus" not in taken:
            taken["stimulus"] = scr.grab().save(str(out / "participant-stimulus.png"))
            win.refresh_mirror()          # the mirror as of now, not up to 0.5 s old
            taken["console"] = win.grab().save(str(out / "console-session.png"))
        elif page == "sam" and scr.sam.values["dominance"] is not None and "sam" not in taken:
            taken["sam"] = scr.grab().save(str(out / "participant-sam.png"))
        if len(taken) == 7 or not run.running:
            win.close_without_asking()        # mid-session: no question to answer
            app.quit()

    timer = QtCore.QTimer()
    timer.timeout.connect(shoot)
    timer.start(50)
    QtCore.QTimer.singleShot(180_000, app.quit)
    app.exec()
    console_w, participant_x = taken.pop("size", (None, None))
    print(f"one screen: the console was placed {console_w} px wide, the participant window at x = {participant_x}")
    for name in sorted(taken):
        print(f"screenshot {name}: {'ok' if taken[name] else 'FAILED'}")
    return 0 if len(taken) == 6 and all(taken.values()) else 1


if __name__ == "__main__":
    from emer_live.ui.main import exit_now

    exit_now(main(sys.argv[1:]))  # no Python teardown of Qt objects: see exit_now
