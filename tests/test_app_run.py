"""The UI-neutral run layer (emer_live.app): config validation, typed events, failure policies,
and the boundaries the GUI relies on (no Qt in the core, no private reach-ins)."""

import math
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from emer_live.app import (DeviceFailed, PhaseChanged, Progress, Run, RunConfig, RunError, RunFinished, RunStarted,
                           drive)
from emer_live.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EMER = [sys.executable, "-m", "emer_live.cli"]


@pytest.mark.parametrize("field,value", [
    ("time_scale", 0), ("time_scale", -1), ("time_scale", math.nan), ("time_scale", 1e9),
    ("window_s", 0), ("hop_s", -1), ("hop_s", math.nan), ("duration_s", math.nan), ("duration_s", math.inf),
    ("duration_s", 1e308), ("duration_s", 0), ("rate", math.nan), ("speed", math.inf), ("n_trials", 0),
])
def test_config_refuses_bad_numbers(field, value):
    with pytest.raises(ConfigError):
        RunConfig(kind="session", participant="P01", **{field: value})


def test_config_kind_rules():
    with pytest.raises(ConfigError, match="checkpoint"):
        RunConfig(kind="live", checkpoint=None)
    with pytest.raises(ConfigError, match="--out"):
        RunConfig(kind="record")
    with pytest.raises(ConfigError, match="hop"):
        RunConfig(kind="live", checkpoint="x.pt", window_s=2, hop_s=3)
    with pytest.raises(ConfigError, match="participant|ID|pseudonym"):
        RunConfig(kind="record", out="x", participant="John Smith")


@pytest.mark.parametrize("bad", [["--time-scale", "nan"], ["--time-scale", "0"], ["--window", "0"], ["--hop", "-1"]])
def test_session_cli_bad_option_creates_no_folder(tmp_path, bad):
    p = subprocess.run(EMER + ["session", "--headless", "--participant", "P01", "--out", str(tmp_path / "root")] + bad,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert p.stderr.strip().startswith("emer-live: error:"), p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "root").exists()


def _fast_session_cfg(tmp_path, **kw):
    base = dict(kind="session", participant="P04", out_root=str(tmp_path), camera="none", rate=60, n_trials=2,
                time_scale=0.05, seed=3, fast=True)
    base.update(kw)
    return RunConfig(**base)


def test_run_delivers_typed_events_in_order_on_the_polling_thread(tmp_path):
    run = Run(_fast_session_cfg(tmp_path))
    seen, threads = [], set()

    def sub(ev):
        seen.append(ev)
        threads.add(threading.get_ident())

    run.subscribe(sub)
    drive(run, signals=False)
    assert run.status == "complete"
    assert isinstance(seen[0], RunStarted) and isinstance(seen[-1], RunFinished)
    assert seen[-1].status == "complete"
    phases = [e.phase for e in seen if isinstance(e, PhaseChanged)]
    assert phases[0] == "baseline" and phases[-1] == "done"
    assert phases.count("stimulus") == 2 and phases.count("sam") == 2
    assert threads == {threading.get_ident()}
    assert any(isinstance(e, Progress) for e in seen)


def test_a_failing_subscriber_does_not_starve_the_others(tmp_path):
    run = Run(_fast_session_cfg(tmp_path))
    got = []

    def bad(ev):
        if isinstance(ev, PhaseChanged):
            raise ValueError("subscriber bug")

    run.subscribe(bad)
    run.subscribe(got.append)
    drive(run, signals=False)
    assert run.status == "complete"
    phases = [e for e in got if isinstance(e, PhaseChanged)]
    assert len(phases) >= 8                      # the good subscriber heard every phase change
    errs = [e for e in got if isinstance(e, RunError)]
    assert errs and isinstance(errs[0].error, ValueError)
    assert "subscriber bug" in errs[0].traceback and "Traceback" in errs[0].traceback


def test_stop_aborts_a_session_and_finalises_it(tmp_path):
    from emer_live.recording import SessionReader

    run = Run(_fast_session_cfg(tmp_path, n_trials=3))
    run.subscribe(lambda ev: run.stop("operator test") if isinstance(ev, PhaseChanged) and ev.phase == "stimulus"
                  and ev.trial == 2 else None)
    drive(run, signals=False)
    assert run.status == "aborted"
    r = SessionReader(run.session_dir)
    assert r.status == "aborted"
    assert [t["status"] for t in r.meta["trials"]][:2] == ["complete", "aborted"]


def _stop_kinds(folder):
    """(kind, detail) of the events.tsv rows that end a session."""
    from emer_live.recording import SessionReader

    return [(e["kind"], e["detail"]) for e in SessionReader(folder).events()
            if e["kind"] in ("abort", "recording_stop")]


def test_a_session_stopped_as_complete_mid_way_is_aborted_everywhere(tmp_path, capsys):
    """Issue 21: a stop that asks for "complete" (the console's old close path) before every trial
    completed ends the session aborted: session.json, events.tsv and `info` agree, each trial
    with its own state (complete / aborted / not_run)."""
    import json

    from emer_live.cli import main
    from emer_live.recording import SessionReader

    run = Run(_fast_session_cfg(tmp_path, n_trials=4))
    run.subscribe(lambda ev: run.stop("console window closed", status="complete")
                  if isinstance(ev, PhaseChanged) and ev.phase == "stimulus" and ev.trial == 2 else None)
    drive(run, signals=False)
    assert run.status == "aborted" and "aborted" in run.reason
    r = SessionReader(run.session_dir)
    assert r.status == "aborted"
    assert [t["status"] for t in r.meta["trials"]] == ["complete", "aborted", "not_run", "not_run"]
    assert [k for k, _ in _stop_kinds(run.session_dir)] == ["abort", "recording_stop"]
    assert _stop_kinds(run.session_dir)[-1][1]["status"] == "aborted"
    capsys.readouterr()
    assert main(["info", str(run.session_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["status"] == "aborted"
    # every planned trial with its state, those never begun too
    assert [(t["trial"], t["status"]) for t in info["trials"]] == [
        (1, "complete"), (2, "aborted"), (3, "not_run"), (4, "not_run")]
    assert main(["info", str(run.session_dir)]) == 0
    text = capsys.readouterr().out
    assert "status aborted" in text and "trials: 4 (1 complete, 1 aborted, 2 not_run)" in text


def test_only_a_session_with_every_trial_done_is_complete(tmp_path):
    """A session that ends on an error mid-way gets its trials settled too (none left `running`
    or `pending`), and a whole session is complete."""
    from emer_live.recording import SessionReader

    run = Run(_fast_session_cfg(tmp_path / "a", n_trials=2))
    drive(run, signals=False)
    assert run.status == "complete"
    assert [t["status"] for t in SessionReader(run.session_dir).meta["trials"]] == ["complete", "complete"]

    run = Run(_fast_session_cfg(tmp_path / "b", n_trials=3))

    def boom(ev):
        if isinstance(ev, PhaseChanged) and ev.phase == "fixation" and ev.trial == 2:
            run.controller.tick = lambda: (_ for _ in ()).throw(RuntimeError("injected"))
    run.subscribe(boom)
    with pytest.raises(RuntimeError, match="injected"):
        drive(run, signals=False)
    assert run.status == "error"
    r = SessionReader(run.session_dir)
    assert r.status == "error"
    assert [t["status"] for t in r.meta["trials"]] == ["complete", "aborted", "not_run"]


def test_speed_factor_is_refused_without_replay_devices(tmp_path, capsys):
    """--speed 2 with synthetic devices is refused (it cannot be honoured), not silently ignored."""
    from emer_live.cli import main

    with pytest.raises(ConfigError, match="replay devices only"):
        RunConfig(kind="live", checkpoint="x.pt", speed=2.0)
    RunConfig(kind="live", checkpoint="x.pt", speed=1.0)          # real time is what they do
    assert main(["record", "--speed", "2", "--duration", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emer-live: error: --speed 2:")
    assert not (tmp_path / "r").exists()


def test_a_file_on_the_recording_path_is_refused_before_any_device(tmp_path, capsys):
    """`--out README.md` (a file where the recordings' folder should be) is one line, exit 2, from
    the checks, not a NotADirectoryError once the devices are open."""
    from emer_live.cli import main

    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")
    for cfg in (RunConfig(kind="record", out=str(notes / "r"), duration_s=1.0),
                _fast_session_cfg(notes),
                RunConfig(kind="live", checkpoint="x.pt", out=str(notes / "P00" / "L1"))):
        with pytest.raises(ConfigError, match="notes.txt is a file, not a folder"):
            Run(cfg).check()
    capsys.readouterr()
    assert main(["session", "--headless", "--participant", "P01", "--out", str(notes)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"emer-live: error: cannot record into {notes}")
    assert notes.read_text() == "not a folder\n"


def test_cli_option_errors_are_one_line(capsys):
    from emer_live.cli import main

    with pytest.raises(SystemExit) as ex:
        main(["live", "--fps", "fast"])
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emer-live: error: argument --fps") and "live --help" in err[0]


def test_record_device_failure_policy_stops_the_recording(tmp_path):
    """record: a device whose thread dies ends the recording with status error, reported as an
    event carrying the exception object and its traceback."""
    run = Run(RunConfig(kind="record", out=str(tmp_path / "S"), camera="none", rate=60, duration_s=30))
    events = []
    run.subscribe(events.append)
    run.start()

    def boom():
        raise OSError("USB cable pulled (test)")

    run.devices.tracker._run = boom          # the next start of its thread fails
    run.devices.tracker.stop()
    run.devices.tracker.start()
    while run.poll():
        threading.Event().wait(0.02)
    failed = [e for e in events if isinstance(e, DeviceFailed)]
    assert failed and failed[0].action == "stopped" and isinstance(failed[0].error, OSError)
    assert "USB cable pulled" in failed[0].traceback
    assert run.status == "error"
    import json

    assert json.loads((tmp_path / "S" / "session.json").read_text())["status"] == "error"


def test_engine_errors_are_exception_objects_and_callbacks_are_isolated(random_checkpoint, tmp_path):
    """A raising prediction callback neither skips the callbacks after it nor loses its traceback."""
    from emer_live.model import load_checkpoint

    cfg = RunConfig(kind="live", checkpoint=str(random_checkpoint), camera="none", rate=60, window_s=2, hop_s=1,
                    duration_s=4, model_device="cpu")
    run = Run(cfg, model=load_checkpoint(random_checkpoint, device="cpu"))
    run.start()
    after = []

    def first(p):
        raise RuntimeError("callback bug")

    run.engine.callbacks.insert(0, first)
    run.engine.callbacks.append(after.append)
    while run.poll():
        threading.Event().wait(0.05)
    assert run.status == "complete"
    assert len(after) >= 2
    errs = run.engine.errors
    assert errs and isinstance(errs[0].error, RuntimeError) and "callback bug" in errs[0].traceback
    assert any(isinstance(e, RunError) and isinstance(e.error, RuntimeError) for e in run.errors)


def test_core_imports_without_pyqt6():
    """Every module outside emer_live.ui imports with PyQt6 and pyqtgraph blocked."""
    code = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PyQt6', 'pyqtgraph'):
            raise ImportError('blocked for the test: ' + name)
sys.meta_path.insert(0, Block())
import emer_live
names = [m.name for m in pkgutil.walk_packages(emer_live.__path__, 'emer_live.')]
core = [n for n in names if not n.startswith('emer_live.ui')]
torch_ok = ('emer_live.model', 'emer_live.live', 'emer_live.training')   # may need torch (3.10 lane)
for n in core:
    try:
        importlib.import_module(n)
    except ModuleNotFoundError as exc:
        if not (exc.name == 'torch' and n.startswith(torch_ok)):
            raise
assert not any(k.split('.')[0] in ('PyQt6', 'pyqtgraph') for k in sys.modules)
print(len(core))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert int(p.stdout.strip()) > 50


# Reads of another object's private state that stay: a reader class beside its buffer in one
# module, and argparse, whose sub-parsers have no public accessor.
ALLOWED_PRIVATE = {("emer_live/streams.py", "s._lock"), ("emer_live/streams.py", "s._total"),
                   ("emer_live/streams.py", "s._take"), ("emer_live/_clidoc.py", "parser._actions"),
                   ("emer_live/_clidoc.py", "p._actions"), ("emer_live/_clidoc.py", "argparse._SubParsersAction"),
                   ("emer_live/ui/main.py", "os._exit")}     # a documented stdlib function, not a reach-in


def test_no_private_reach_ins_between_modules():
    """No module touches another object's private attributes (``obj._name``, not ``self._name``):
    the engine's schedule, the controller's phase end, the phantom's look-ahead and the rest have
    public methods; and the controller does not special-case the simulated presenter."""
    pattern = re.compile(r"(?<![\w.])([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\.(_[a-z]\w*)")
    hits = []
    for path in sorted((ROOT / "emer_live").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if code.lstrip().startswith(("from ", "import ")) or '"""' in code or "``" in code:
                continue
            for m in pattern.finditer(code):
                owner, name = m.group(1), m.group(2)
                if owner in ("self", "cls") or owner.startswith("emer_live") \
                        or (rel, f"{owner}.{name}") in ALLOWED_PRIVATE:
                    continue
                hits.append(f"{rel}:{i}: {owner}.{name}")
            if "isinstance(self.presenter, SimulatedPresenter)" in code:
                hits.append(f"{rel}:{i}: presenter special case")
    assert not hits, "\n".join(hits)


def test_skip_trial_ends_it_without_sam_and_the_session_goes_on(tmp_path):
    from emer_live.recording import SessionReader

    run = Run(_fast_session_cfg(tmp_path, n_trials=3))
    run.subscribe(lambda ev: run.controller.skip_trial("test") if isinstance(ev, PhaseChanged)
                  and ev.phase == "stimulus" and ev.trial == 2 else None)
    drive(run, signals=False)
    assert run.status == "complete"
    r = SessionReader(run.session_dir)
    assert [t["status"] for t in r.meta["trials"]] == ["complete", "skipped", "complete"]
    assert list(r.sam()["trial"]) == [1, 3]
    kinds = [line.split("\t")[1] for line in (run.session_dir / "events.tsv").read_text().splitlines()[1:]]
    assert kinds.count("trial_skipped") == 1 and kinds.count("stimulus_offset") == 3


def test_every_run_ends_with_a_loss_summary(tmp_path):
    """record: expected vs kept per stream in session.json and printed; a gap cut into a
    recording shows up as missing samples when it is re-recorded."""
    import json

    src = tmp_path / "src"
    p = subprocess.run(EMER + ["record", "--camera", "none", "--rate", "120", "--duration", "3", "--out", str(src),
                               "--quiet"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "losses gaze" in p.stdout and "missing 0" in p.stdout
    losses = json.loads((src / "session.json").read_text())["losses"]["gaze"]
    assert losses["missing"] == 0 and losses["kept"] == losses["expected"] > 300
    # cut 60 rows (0.5 s) out of the middle of gaze.tsv and re-record it through the replay devices
    lines = (src / "gaze.tsv").read_text().splitlines(keepends=True)
    (src / "gaze.tsv").write_text("".join(lines[:150] + lines[210:]))
    out = tmp_path / "again"
    p = subprocess.run(EMER + ["record", "--tracker", f"replay:{src}", "--camera", "none", "--speed", "max",
                               "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lost = json.loads((out / "session.json").read_text())["losses"]["gaze"]
    assert lost["gaps"] == 1 and 55 <= lost["missing"] <= 65, lost
    assert "LOSS" in p.stdout


def test_segments_without_footage_are_flagged_empty(tmp_path):
    """A session without camera or microphone writes no footage: session.json must not list its
    between/ and trial segments as folders that exist."""
    import json

    run = Run(_fast_session_cfg(tmp_path))
    drive(run, signals=False)
    segs = json.loads((run.session_dir / "session.json").read_text())["segments"]
    assert segs and all("empty" in s for s in segs)
    for s in segs:
        assert s["empty"] == (not (run.session_dir / s["path"]).is_dir()), s
    assert any(s["empty"] for s in segs if s["path"].startswith("between/"))


def test_consent_is_validated_first_and_stored(tmp_path):
    import json

    with pytest.raises(ConfigError, match="consent"):
        RunConfig(kind="record", out=str(tmp_path / "x"), consent_version="2026-03", consent_date="yesterday")
    with pytest.raises(ConfigError, match="consent-version"):
        RunConfig(kind="record", out=str(tmp_path / "x"), consent_date="2026-01-05")
    p = subprocess.run(EMER + ["record", "--camera", "none", "--rate", "60", "--duration", "1", "--quiet",
                               "--consent-version", "v2.1", "--consent-date", "2026-11-30", "--out", str(tmp_path / "S")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    meta = json.loads((tmp_path / "S" / "session.json").read_text())
    assert meta["consent"] == {"version": "v2.1", "date": "2026-11-30"}
