"""``python main.py`` start-up (issue 21): every bad option is one line and exit 2 before any window
opens and before any folder is made; options that do not apply are refused; --quit-when-done ends
the app even when a start is refused before a run exists."""

import shutil
import types

import pytest

pytest.importorskip("pytestqt")
from PyQt6 import QtCore, QtGui  # noqa: E402

from emer_live.ui import main as app_main  # noqa: E402


@pytest.fixture
def no_window(monkeypatch):
    """Fail the test if the console window is built."""
    from emer_live.ui import console

    def refuse(*a, **k):
        raise AssertionError("the console window was opened")

    monkeypatch.setattr(console, "OperatorConsole", refuse)


def _bad_library(clip_library, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(clip_library, lib)
    (lib / "sad_01.mp4").write_bytes(b"")          # a 0-byte clip
    return lib


@pytest.mark.parametrize("case", ["fps", "time_scale", "participant", "no_stimuli", "bad_stimuli",
                                  pytest.param("checkpoint", marks=pytest.mark.torch),  # else: "needs PyTorch"
                                  "screen", "session_only", "session_only_flag", "not_a_number", "replay_session",
                                  "replay_options", "quit_after", "screenshot", "tracker", "camera"])
def test_bad_start_options_are_one_line_exit_2_before_any_window(case, qapp, no_window, tmp_path, clip_library,
                                                                  capsys):
    out = tmp_path / "out"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint\n")
    session = ["--session", "--stimuli", str(clip_library)]
    argv, expect = {
        "fps": (["--fps", "-5"], "--fps"),
        "time_scale": (session + ["--time-scale", "-1"], "--time-scale"),
        "participant": (["--participant", "Jane Doe"], "pseudonyms"),
        "no_stimuli": (["--session", "--stimuli", str(tmp_path / "nope")], "no such folder"),
        "bad_stimuli": (["--session", "--stimuli", str(_bad_library(clip_library, tmp_path))], "empty file"),
        "checkpoint": (["--checkpoint", str(notes)], "notes.txt"),
        "screen": (session + ["--participant-screen", "5"],
                   f"there are {len(QtGui.QGuiApplication.screens())}: 0 = "),
        "session_only": (["--trials", "3", "--time-scale", "0.5"], "--trials, --time-scale only apply to a "
                                                                    "collection session"),
        "session_only_flag": (["--no-calibration"], "--no-calibration only applies"),
        "not_a_number": (["--fps", "fast"], "argument --fps"),
        "replay_session": (["--session", "--replay", str(tmp_path)], "choose one"),
        "replay_options": (["--fps", "15", "--replay", str(tmp_path)], "--out, --fps, --quit-when-done: not used by "
                                                                         "the replay window"),
        "quit_after": (["--quit-after", "0"], "--quit-after"),
        "screenshot": (["--screenshot", str(tmp_path / "shot.xyz")], "Qt cannot write .xyz images"),
        # device names (a console that could only refuse them at Start, or never: no autostart)
        "tracker": (["--tracker", "eyelink"], "unknown --tracker 'eyelink'"),
        "camera": (["--camera", "webcam9"], "unknown --camera 'webcam9'"),
    }[case]
    try:
        rc = app_main.main(argv + ["--out", str(out), "--quit-when-done"])
    except SystemExit as exc:          # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("emer-live: error: ") and expect in err[0], err
    assert not out.exists()


def test_headless_demo_refuses_options_it_would_ignore(monkeypatch, capsys):
    monkeypatch.setattr(app_main, "display_available", lambda: (False, "no display (test)"))
    assert app_main.main(["--session", "--participant", "P01"]) == 2
    assert "needs a display" in capsys.readouterr().err
    monkeypatch.setattr(app_main, "display_available", lambda: (True, "display (test)"))
    assert app_main.main(["--session", "--headless"]) == 2      # a display, but --headless asked
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--session and --headless: choose one" in err[0]
    monkeypatch.setattr(app_main, "display_available", lambda: (False, "no display (test)"))
    assert app_main.main(["--fps", "15"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fps: not used by the headless demo" in err[0]


def test_headless_demo_checks_the_checkpoint_before_naming_a_folder(monkeypatch, tmp_path, capsys):
    """Without a display, `main.py --checkpoint notes.txt` is refused in one line (exit 2) before
    the demo announces a recording folder that would never be made."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint\n")
    monkeypatch.setattr(app_main, "display_available", lambda: (False, "no display (test)"))
    assert app_main.main(["--checkpoint", str(notes)]) == 2
    out, err = capsys.readouterr()
    assert "recording to" not in out, out
    err = err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emer-live: error: ")
    assert "notes.txt" in err[0] or "needs PyTorch" in err[0]      # the 3.10 lane has no torch


def _in_a_fresh_process(body: str, tmp_path, *extra) -> None:
    """Run ``body`` (a function of this module) in a new interpreter. ``run_gui`` runs and quits
    the application's event loop, as the app does once per process; in the test process that
    quit left later tests' media playback dead (their clips never played)."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve()
    code = (f"import sys; sys.path.insert(0, {str(here.parent)!r}); import test_main_options as t; "
            f"from pathlib import Path; t.{body}(Path({str(tmp_path)!r}), *{[str(e) for e in extra]!r})")
    p = subprocess.run([sys.executable, "-c", code], cwd=here.parents[1], capture_output=True, text=True,
                       timeout=120, env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]


def _run_gui_captured(args):
    """``run_gui(args)`` with a guard against hanging; its exit code, stdout and stderr."""
    import contextlib
    import io

    from PyQt6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    QtCore.QTimer.singleShot(60_000, app.quit)       # a guard: the check fails instead of hanging
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = app_main.run_gui(args)
    return rc, out.getvalue(), err.getvalue()


def _quit_when_done_body(tmp_path):
    from emer_live.ui.console import ConsoleOptions

    opts = ConsoleOptions(participant="Jane Doe", out=str(tmp_path / "out"), checkpoint="", demo=True)
    app_main.console_options = lambda args: (opts, None)
    args = types.SimpleNamespace(quit_when_done=True, quit_after=None, screenshot=None, no_autostart=False,
                                 settings=str(tmp_path / "layout.ini"))
    rc, out, err = _run_gui_captured(args)
    assert rc == 2, (rc, out, err)
    assert "pseudonyms" in err, err
    assert not (tmp_path / "out").exists()


def test_quit_when_done_ends_the_app_when_the_start_is_refused(tmp_path):
    """A Start refused before a run exists (here: a participant ID made bad after the checks,
    as the Devices dialog could) still ends the app with --quit-when-done, exit 2."""
    _in_a_fresh_process("_quit_when_done_body", tmp_path)


def _screenshot_fails_body(tmp_path, clip_library):
    from emer_live.recording import SessionReader
    from emer_live.ui import console
    from emer_live.ui.console import ConsoleOptions

    # a session (it runs without a checkpoint), still in its baseline at the 2 s quit
    opts = ConsoleOptions(tracker="synthetic", camera="none", rate=60.0, checkpoint="", participant="P01",
                          out=str(tmp_path / "out"), session=True, stimuli=str(clip_library), n_trials=1,
                          time_scale=0.05, calibrate=False, demo=True)
    app_main.console_options = lambda args: (opts, None)

    def disk_full(self, path):
        raise OSError(f"could not write the screenshot {path}")

    console.OperatorConsole.screenshot = disk_full
    args = types.SimpleNamespace(quit_when_done=False, quit_after=2.0, screenshot=str(tmp_path / "shot.png"),
                                 no_autostart=False, settings=str(tmp_path / "layout.ini"))
    rc, out, err = _run_gui_captured(args)
    assert rc == 1, (out, err)
    assert err.strip().splitlines() == [f"emer-live: error: could not write the screenshot {tmp_path / 'shot.png'}"], err
    (folder,) = (tmp_path / "out" / "P01").iterdir()
    status = SessionReader(folder).status
    assert status in ("aborted", "complete") and f"run: status {status}" in out, out


def test_a_screenshot_that_cannot_be_saved_still_closes_the_run(tmp_path, clip_library):
    """--screenshot at --quit-after: a save that fails (a full disk) is one error line and exit 1;
    the run is still stopped and its folder finalised (it was left `recording`)."""
    _in_a_fresh_process("_screenshot_fails_body", tmp_path, clip_library)


def test_one_folder_rule_for_live_runs_and_sessions(tmp_path):
    """--out ROOT (+ --participant): ROOT/<participant>/L<UTC time> for a live run and
    ROOT/<participant>/S<UTC time> for a session; demo mode's default root is recordings/demo."""
    from emer_live.app import Run
    from emer_live.ui.console import REPO_ROOT, ConsoleOptions

    live = ConsoleOptions(out=str(tmp_path), participant="P03", checkpoint="x.pt").run_config()
    folder = tmp_path / live.out
    assert folder.parent == tmp_path / "P03" and folder.name.startswith("L") and not folder.exists()
    cfg = ConsoleOptions(out=str(tmp_path), participant="P03", session=True, checkpoint="", camera="none",
                         rate=60.0, n_trials=1, time_scale=0.05, calibrate=False, stimuli="placeholder").run_config()
    run = Run(cfg)
    run.check()
    assert not (tmp_path / "P03").exists()        # nothing made by the checks
    run.start()
    run.close("test")
    assert run.session_dir.parent == tmp_path / "P03" and run.session_dir.name.startswith("S")
    demo = ConsoleOptions(participant="P00", checkpoint="x.pt", demo=True)
    assert demo.out_root == REPO_ROOT / "recordings" / "demo"
    assert demo.run_config().out.startswith(str(REPO_ROOT / "recordings" / "demo" / "P00" / "L"))


def test_main_py_from_a_python_without_the_packages_says_what_to_run():
    """`python main.py` with the system Python (here: the environment's Python without its
    site-packages, -S) ends in one line naming .venv/bin/python, not a traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-S", "main.py", "--quit-after", "1"], cwd=root, capture_output=True,
                       text=True, timeout=60, env={**env, "QT_QPA_PLATFORM": "offscreen"})
    assert p.returncode == 2, p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emer-live: error: this Python") and ".venv/bin/python main.py" in err[0]


def test_main_py_keeps_a_module_missing_inside_the_app_as_its_own_error(monkeypatch):
    """Only a Python without the app's packages gets the "run .venv/bin/python" line; a module
    missing later (an optional driver, with the packages installed in the system Python, as labs
    on Windows often do) is not blamed on the Python."""
    import runpy
    import sys
    from pathlib import Path

    def missing_driver(argv):
        raise ModuleNotFoundError("No module named 'some_driver'", name="some_driver")

    monkeypatch.setattr(app_main, "main", missing_driver)
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)        # a system Python, not a venv
    with pytest.raises(ModuleNotFoundError, match="some_driver"):
        runpy.run_path(str(Path(__file__).resolve().parents[1] / "main.py"), run_name="__main__")


def test_a_refused_screen_is_one_line_on_the_process_stderr(clip_library, tmp_path):
    """What the terminal shows, Qt's own log lines included (the in-process tests see only
    Python's stderr): Qt Multimedia's PipeWire warnings no longer precede the one line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "QT_LOGGING_RULES"}
    p = subprocess.run([sys.executable, "main.py", "--session", "--stimuli", str(clip_library),
                        "--participant-screen", "5", "--out", str(tmp_path / "out")], cwd=root, capture_output=True,
                       text=True, timeout=120, env={**env, "QT_QPA_PLATFORM": "offscreen"})
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emer-live: error: --participant-screen 5"), err
    assert not (tmp_path / "out").exists()
