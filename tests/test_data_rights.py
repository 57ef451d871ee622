"""Participant data protection (issue 22, items 1-5): `forget` removes exactly what emer_live wrote
about one participant - copies and linked folders included - and nothing of the lab's; locks on
folders being written; the audit line before any removal; private files by default."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emer_live import cli
from emer_live.clock import ReplayClock
from emer_live.recording import Recorder
from emer_live.session.forget import AUDIT_FILE, plan_forget

try:
    from tests.fakes.sessions import crash_lock, make_session
except ImportError:  # pragma: no cover - rootdir on sys.path differs
    from fakes.sessions import crash_lock, make_session

WHO = "P07"
REPO = Path(__file__).resolve().parents[1]
POSIX = sys.platform != "win32"


def _tree(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("emer-live: error: "), err
    return lines[0]


@pytest.fixture
def lab(tmp_path):
    """A lab-like recordings folder: three participants, and the lab's own files about them."""
    root = tmp_path / "recordings"
    for who in ("P01", WHO, "P08"):
        make_session(root / who / "S20261201-100000", participant=who)
    (root / "participants_key.csv").write_text(
        "pseudonym,name,email\nP01,Ana María López,ana@example.org\nP07,Jonas Weber,jw@example.org\n"
        "P08,Li Wei,li@example.org\n", encoding="utf-8")
    (root / "lab_notes.txt").write_text("2026-12-01 P01, P07 and P08 recorded; P07 came late\n", encoding="utf-8")
    (root / f"{WHO}_consent_scan.pdf").write_bytes(b"%PDF-1.4\n\x00\x01binary scan\n")
    return root


# ---------------------------------------------------------------------------------- item 1
def test_the_labs_key_and_notes_survive_with_their_rows(lab, capsys):
    kept = {n: (lab / n).read_bytes() for n in ("participants_key.csv", "lab_notes.txt", f"{WHO}_consent_scan.pdf")}
    assert cli.main(["forget", WHO, "--root", str(lab), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for name in kept:
        assert f"LAB      {name}" in out and "never touched" in out
    assert cli.main(["forget", WHO, "--root", str(lab), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 session(s)" in out and "3 file(s) not written by emer_live mention the pseudonym" in out
    for name, data in kept.items():
        assert (lab / name).read_bytes() == data, name          # every row, byte for byte
    assert not (lab / WHO).exists()
    assert (lab / "P01" / "S20261201-100000" / "session.json").is_file()


def test_emer_live_files_are_recognised_by_their_own_format(tmp_path):
    """The headers forget recognises are the writers' own (kept in step with them)."""
    from emer_live.session.forget import EMER_LIVE_TABLE_HEADERS, emer_live_kind
    from emer_live.live.prediction import PREDICTION_COLUMNS
    from emer_live.phantom.truth import TRUTH_COLUMNS
    from emer_live.recording import format as fmt
    from emer_live.session.sam import SAM_COLUMNS

    evaluate = pytest.importorskip("emer_live.training.evaluate")
    app_replay = pytest.importorskip("emer_live.app.replay")
    from emer_live.features import _face_cache

    for cols in (evaluate.SAMPLE_COLUMNS, PREDICTION_COLUMNS, app_replay.TRIAL_TABLE_COLUMNS, SAM_COLUMNS,
                 TRUTH_COLUMNS, _face_cache._TSV_COLUMNS, fmt.EVENT_COLUMNS, fmt.FRAME_COLUMNS, fmt.AUDIO_COLUMNS):
        p = tmp_path / "t.tsv"
        p.write_text("\t".join(cols) + "\n")
        assert emer_live_kind(p) == "emer_live table", cols
    assert len(EMER_LIVE_TABLE_HEADERS) >= 9
    (tmp_path / "key.tsv").write_text("pseudonym\tname\nP07\tJonas\n")
    (tmp_path / "eval.json").write_text(json.dumps({"format": "emer_live.evaluation", "participants": [WHO]}))
    (tmp_path / "mine.json").write_text(json.dumps({"participants": [WHO]}))
    (tmp_path / "pred.jsonl").write_text(json.dumps({"kind": "window", "t_start_us": 0, "t_end_us": 8, "er7": [],
                                                     "checkpoint": "x"}) + "\n")
    np.savez(tmp_path / "w.npz", t_end_us=np.zeros(2), eye=np.zeros((2, 3)))
    np.savez(tmp_path / "other.npz", participant=np.array([WHO]))
    assert emer_live_kind(tmp_path / "key.tsv") is None and emer_live_kind(tmp_path / "mine.json") is None
    assert emer_live_kind(tmp_path / "other.npz") is None
    assert emer_live_kind(tmp_path / "eval.json") == "emer_live evaluation file"
    assert emer_live_kind(tmp_path / "pred.jsonl") == "emer_live prediction log"
    assert emer_live_kind(tmp_path / "w.npz") == "emer_live window arrays"


# ---------------------------------------------------------------------------------- item 2: copies
def test_a_replay_copy_carries_the_participant_and_is_removed(lab, capsys):
    src = lab / WHO / "S20261201-100000"
    copy = lab / "pilot" / "copy_a"
    assert cli.main(["record", "--tracker", f"replay:{src}", "--camera", "replay", "--mic", "none",
                     "--speed", "max", "--out", str(copy), "--quiet"]) == 0
    meta = json.loads((copy / "session.json").read_text())
    assert meta["participant"] == WHO                          # not record's default P00
    assert meta["derived_from"]["path"] == str(src.resolve()) and meta["derived_from"]["participant"] == WHO
    # a copy made before the link existed: labelled P00, found through its replay devices' source
    old = lab / "pilot" / "copy_old"
    shutil.copytree(copy, old)
    m = json.loads((old / "session.json").read_text())
    m["participant"] = "P00"
    del m["derived_from"]
    (old / "session.json").write_text(json.dumps(m))
    # a different --participant for a replay is refused: the copy is still P07's data
    capsys.readouterr()
    assert cli.main(["record", "--tracker", f"replay:{src}", "--camera", "replay", "--mic", "none",
                     "--speed", "max", "--participant", "P09", "--out", str(lab / "pilot" / "c3"), "--quiet"]) == 2
    assert "is P07's" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["forget", WHO, "--root", str(lab), "--yes"]) == 0
    assert "removed 3 session(s)" in capsys.readouterr().out
    assert not copy.exists() and not old.exists() and not (lab / WHO).exists()
    assert (lab / "P08" / "S20261201-100000" / "session.json").is_file()


# ---------------------------------------------------------------------------------- item 2: links
def test_a_symlinked_participant_folder_has_its_sessions_removed(tmp_path, capsys):
    root = tmp_path / "recordings"
    store = tmp_path / "disk2" / "P07_real"
    for k in (1, 2):
        make_session(store / f"S2026120{k}-100000", participant=WHO)
    (store / "lab_readme.txt").write_text("P07's folder on the second disk\n")
    make_session(root / "P08" / "S20261201-100000", participant="P08")
    os.symlink(store, root / WHO)
    other = tmp_path / "stimuli"
    other.mkdir()
    os.symlink(other, root / "stimuli")
    assert cli.main(["forget", WHO, "--root", str(root), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "removed 2 session(s)" in out
    assert f"LINK     {WHO}  (link to {store.resolve()}, outside the root: followed" in out
    assert "LINK     stimuli  (link to" in out and "not followed" in out
    assert not (store / "S20261201-100000").exists() and not (store / "S20261202-100000").exists()
    assert (store / "lab_readme.txt").read_text().startswith("P07's folder")     # the lab's, listed
    assert "LAB      P07/lab_readme.txt" in out


def test_a_symlink_inside_the_root_to_a_damaged_session(tmp_path, capsys):
    root = tmp_path / "recordings"
    real = root / ".store" / "x"
    make_session(real / "S1", participant=WHO)
    (real / "S1" / "session.json").write_text("{ damaged")
    os.symlink(real, root / WHO)
    plan = plan_forget(root, WHO)
    assert [p.name for p, _ in plan.sessions] == ["S1"]
    assert cli.main(["forget", WHO, "--root", str(root), "--yes"]) == 0
    assert not (real / "S1").exists() and not os.path.lexists(root / WHO)


# ---------------------------------------------------------------------------------- item 2: invalid field
def test_an_invalid_participant_field_is_reported_not_taken_for_someone_else(tmp_path, capsys):
    root = tmp_path / "recordings"
    for name, value in (("list_p07", ["P07"]), ("number", 7), ("p08", "P08")):
        make_session(root / "pilot" / name, participant=value)
    assert cli.main(["forget", WHO, "--root", str(root), "--yes"]) == 5
    cap = capsys.readouterr()
    assert "session  pilot/list_p07/" in cap.out and 'participant field ["P07"] is not a pseudonym string' in cap.out
    assert "INVALID  pilot/number/  (participant field 7 is not a pseudonym string" in cap.out
    assert "unclear participant" in _one_error_line(cap.err)
    assert not (root / "pilot" / "list_p07").exists()
    assert (root / "pilot" / "number" / "session.json").is_file() and (root / "pilot" / "p08").is_dir()
    # forgetting someone else reports it too: it might be theirs
    assert cli.main(["forget", "P08", "--root", str(root), "--dry-run"]) == 0
    assert "INVALID  pilot/number/" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- item 2: settings
def test_the_replay_windows_settings_hold_no_pseudonym(qtbot, tmp_path):
    pytest.importorskip("pytestqt")
    from PyQt6 import QtCore

    from emer_live.ui.replay import ReplayWindow

    root = tmp_path / "recordings"
    s7 = root / WHO / "S20261201-100000"
    make_session(s7, participant=WHO)
    make_session(root / "P08" / "S20261201-100000", participant="P08")
    ini = tmp_path / "replay.ini"
    w = ReplayWindow(settings=QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.open_session(str(s7))
    w.open_session(str(root / "P08" / "S20261201-100000"))
    w.settings.sync()

    def mentions(who: str) -> bool:
        raw = ini.read_bytes()
        s = QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat)
        values = " ".join(str(s.value(k)) for k in s.allKeys())
        return any(who.encode(e) in raw for e in ("utf-8", "utf-16-be", "utf-16-le")) or who in values

    assert not mentions(WHO) and not mentions("P08")
    w2 = ReplayWindow(settings=QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(w2)
    assert [a.text() for a in w2.recent_menu.actions()] == [str((root / "P08" / "S20261201-100000").resolve()),
                                                            str(s7.resolve())]
    assert cli.main(["forget", WHO, "--root", str(root), "--yes"]) == 0
    w3 = ReplayWindow(settings=QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(w3)
    assert [a.text() for a in w3.recent_menu.actions()] == [str((root / "P08" / "S20261201-100000").resolve())]
    # a list an older version kept (plain paths) is rewritten without the pseudonym at start
    old = QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat)
    old.setValue("recent", [str(root / "P08" / "S20261201-100000")])
    old.sync()
    w4 = ReplayWindow(settings=QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(w4)
    assert not mentions("P08") and len(w4.recent_menu.actions()) == 1


@pytest.mark.skipif(not POSIX, reason="HOME and file modes are POSIX notions; Windows uses %APPDATA% and ACLs")
def test_settings_are_private_and_never_written_to_the_filesystem_root(tmp_path):
    code = ("from emer_live.ui.replay import ReplayWindow\n"
            "from PyQt6 import QtWidgets\n"
            "app = QtWidgets.QApplication([])\n"
            "w = ReplayWindow()\n"
            "w.settings.setValue('probe', 1); w.settings.sync()\n"
            "print(w.settings.fileName())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CONFIG_HOME", "EMER_LIVE_CONFIG_DIR")}
    env.update(PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    where = p.stdout.strip().splitlines()[-1]
    assert not where.startswith("/.config") and where.startswith(os.path.realpath(os.environ.get("TMPDIR", "/tmp")))
    shutil.rmtree(Path(where).parent, ignore_errors=True)
    env["HOME"] = str(tmp_path / "home")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    ini = Path(p.stdout.strip().splitlines()[-1])
    assert ini == tmp_path / "home" / ".config" / "emer_live" / "replay.ini"
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600 and stat.S_IMODE(ini.parent.stat().st_mode) == 0o700


# ---------------------------------------------------------------------------------- item 3: locks
def test_forget_repair_and_a_second_writer_refuse_a_folder_being_recorded(tmp_path, capsys):
    from emer_live.errors import SessionLockedError
    from emer_live.recording.lock import LOCK_FILE, read_lock

    root = tmp_path / "recordings"
    live = root / WHO / "S20261201-100000"
    rec = Recorder(live, clock=ReplayClock(0, speed=None), meta={"participant": WHO})
    rec.start(thread=False)
    info = read_lock(live)
    assert info is not None and info.pid == os.getpid() and not info.stale and info.started_utc
    before = _tree(root)
    assert cli.main(["forget", WHO, "--root", str(root), "--yes"]) == 6
    line = _one_error_line(capsys.readouterr().err)
    assert "in use" in line and f"pid {os.getpid()}" in line and "nothing was removed" in line
    assert cli.main(["repair", str(live)]) == 6
    assert "repair refused" in _one_error_line(capsys.readouterr().err)
    assert _tree(root) == before and not (root / AUDIT_FILE).exists()
    assert (live / ".emer_reserve").exists()                      # repair did not take the writer's reserve
    with pytest.raises(SessionLockedError, match="in use"):
        Recorder(live, clock=ReplayClock(0, speed=None))
    rec.stop()
    assert not (live / LOCK_FILE).exists()
    assert json.loads((live / "session.json").read_text())["status"] == "complete"


def test_a_stale_lock_is_named_and_repair_takes_it_over(tmp_path, capsys):
    from emer_live.errors import SessionLockedError
    from emer_live.recording.lock import LOCK_FILE, read_lock

    root = tmp_path / "recordings"
    crashed = root / WHO / "S20261201-100000"
    make_session(crashed, participant=WHO, stop=False)            # a crashed writer's stale lock
    info = read_lock(crashed)
    assert info.stale and "no longer runs" in info.why
    assert cli.main(["forget", WHO, "--root", str(root), "--dry-run"]) == 0
    assert "LOCK     P07/S20261201-100000/  (pid" in capsys.readouterr().out
    with pytest.raises(SessionLockedError, match="holds a crashed recording .*run `emer-live repair"):
        Recorder(crashed, clock=ReplayClock(0, speed=None))
    assert cli.main(["repair", str(crashed)]) == 0
    out = capsys.readouterr().out
    assert "recording.lock: the writer's lock was stale" in out and "taken over" in out
    assert not (crashed / LOCK_FILE).exists()
    assert cli.main(["forget", WHO, "--root", str(root), "--yes"]) == 0
    assert not crashed.exists()


# ---------------------------------------------------------------------------------- item 4: ordering
def test_an_audit_path_that_cannot_be_written_refuses_before_removing(lab, capsys):
    (lab / AUDIT_FILE).mkdir()
    before = _tree(lab)
    assert cli.main(["forget", WHO, "--root", str(lab), "--yes"]) == 5
    assert "cannot write the audit line" in _one_error_line(capsys.readouterr().err)
    assert _tree(lab) == before


@pytest.mark.skipif(not POSIX, reason="POSIX permissions")
def test_a_user_who_cannot_write_the_root_gets_exit_5_and_one_line(lab, capsys, monkeypatch):
    before = _tree(lab)
    if os.geteuid() == 0:
        # root writes anywhere: make the audit file's open fail the way it fails for other users
        real_open = builtins.open

        def open_denied(file, *a, **kw):
            if str(file).endswith(AUDIT_FILE):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, *a, **kw)

        monkeypatch.setattr(builtins, "open", open_denied)
    else:
        os.chmod(lab, 0o555)
    try:
        rc = cli.main(["forget", WHO, "--root", str(lab), "--yes"])
    finally:
        os.chmod(lab, 0o700)
    assert rc == 5
    assert "Permission denied" in _one_error_line(capsys.readouterr().err)
    assert _tree(lab) == before


def test_the_audit_line_is_written_before_removal_and_stands_when_removal_fails(lab, capsys, monkeypatch):
    seen = []

    def failing_rmtree(path, *a, **kw):
        seen.append((lab / AUDIT_FILE).is_file() and "planned" in (lab / AUDIT_FILE).read_text())
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", failing_rmtree)
    assert cli.main(["forget", WHO, "--root", str(lab), "--yes"]) == 5
    assert "could not remove 1 path(s)" in _one_error_line(capsys.readouterr().err)
    assert seen == [True]                                          # the line was there before the attempt
    lines = (lab / AUDIT_FILE).read_text().splitlines()
    rows = [dict(zip(lines[0].split("\t"), ln.split("\t"))) for ln in lines[1:]]
    assert [r["stage"] for r in rows] == ["planned", "done"] and rows[1]["failed"] == "1"
    assert WHO not in "".join(lines)


# ---------------------------------------------------------------------------------- item 5: modes
def _modes(root: Path):
    out = {}
    for p in [root] + sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return out


@pytest.mark.skipif(not POSIX, reason="POSIX file modes (Windows: the folder's access list)")
def test_recordings_are_private_whatever_the_umask(tmp_path, capsys):
    from emer_live.session.ids import claim_session_dir
    from emer_live.session.sam import SamAnswer, SamTable

    old = os.umask(0o022)
    try:
        root = tmp_path / "recordings"
        s = claim_session_dir(root, WHO)
        assert stat.S_IMODE(root.stat().st_mode) == 0o700 and stat.S_IMODE((root / WHO).stat().st_mode) == 0o700
        rec = make_session(s, participant=WHO, stop=False)
        with SamTable(s / "sam.tsv") as t:       # written by the session controller, not the recorder
            t.append(trial=1, stimulus_id="hap_01", category="happiness", answer=SamAnswer(7, 5, 5, "happiness", ""),
                     answered_t_us=2_000_000)
        assert stat.S_IMODE((s / "gaze.tsv").stat().st_mode) == 0o600       # from the start, not only at stop
        rec.stop()
        cli_rec = tmp_path / "cli_rec"
        assert cli.main(["record", "--duration", "0.4", "--size", "64x48", "--fps", "10", "--rate", "60",
                         "--out", str(cli_rec), "--quiet"]) == 0
        shared = tmp_path / "shared"
        assert cli.main(["record", "--duration", "0.4", "--size", "64x48", "--fps", "10", "--rate", "60",
                         "--group-readable", "--out", str(shared), "--quiet"]) == 0
    finally:
        os.umask(old)
    for folder in (s, cli_rec):
        modes = _modes(folder)
        assert len(modes) > 5
        for rel, mode in modes.items():
            want = 0o700 if (folder / rel).is_dir() else 0o600
            assert mode == want, (folder, rel, oct(mode))
    assert {"gaze.tsv", "session.json", "events.tsv", "sam.tsv"} <= {p.name for p in s.rglob("*")}
    assert any(p.name == "face.mjpeg" for p in cli_rec.rglob("*"))
    for rel, mode in _modes(shared).items():
        assert mode == (0o750 if (shared / rel).is_dir() else 0o640), (rel, oct(mode))
    # doctor: a root others may read is warned about; a private one is not
    from emer_live.doctor import check_privacy

    assert check_privacy(root).status == "ok"
    os.chmod(root, 0o755)
    c = check_privacy(root)
    assert c.status == "warn" and "other accounts" in c.summary and "chmod" in c.action


# ------------------------------------------------------------- item 1/5: `emer-live windows` exports
def test_a_windows_export_is_found_by_forget_and_private(lab, capsys):
    """A `windows` export holds the participant's face crops and gaze: it names the participant
    and session inside (whatever the file is called), so forget finds it; it is 0600 like the
    session it came from. (Before: no participant inside, 0644 - `exports/w_p07.npz` survived.)"""
    out = lab / "exports" / "pilot_windows.npz"
    for who, name in ((WHO, out), ("P08", lab / "exports" / "other.npz")):
        old = os.umask(0o022)
        try:
            assert cli.main(["windows", str(lab / who / "S20261201-100000"), "--no-face", "--window", "2",
                             "--hop", "1", "--out", str(name)]) == 0
        finally:
            os.umask(old)
    with np.load(out, allow_pickle=False) as z:
        assert str(z["participant"][0]) == WHO and str(z["session_id"][0]) == "S20261201-100000"
    if POSIX:
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    capsys.readouterr()
    assert cli.main(["windows", str(lab / WHO / "S20261201-100000"), "--no-face", "--window", "2",
                     "--out", str(lab / "lab_notes.txt" / "w.npz")]) == 2      # a file on the path: one line
    assert "is a file, not a folder" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["forget", WHO, "--root", str(lab), "--yes"]) == 0
    assert "exports/pilot_windows.npz" in capsys.readouterr().out
    assert not out.exists() and (lab / "exports" / "other.npz").is_file()


def test_info_on_a_folder_being_recorded_says_so_instead_of_advising_repair(tmp_path, capsys):
    """`info` during a recording: the lock's writer is named and exit 6 (a locked folder), not
    "did not stop cleanly (a crash?); run repair" and exit 7 - repair would refuse it anyway."""
    live = tmp_path / "recordings" / WHO / "S20261201-100000"
    rec = Recorder(live, clock=ReplayClock(0, speed=None), meta={"participant": WHO})
    rec.start(thread=False)
    try:
        capsys.readouterr()
        assert cli.main(["info", str(live)]) == 6
        err = capsys.readouterr().err
        assert "being recorded now" in err and f"pid {os.getpid()}" in err
        assert "repair" not in err and "crash" not in err and "damaged" not in err
    finally:
        rec.stop()
    crashed = tmp_path / "crashed"
    make_session(crashed, participant=WHO, stop=False)            # a stale lock: repair is the advice
    assert cli.main(["info", str(crashed)]) == 7
    assert "run `emer-live repair" in capsys.readouterr().err


@pytest.mark.skipif(not POSIX, reason="POSIX file modes (Windows: the folder's access list)")
def test_window_and_reference_caches_in_a_cache_dir_are_private(tmp_path):
    """`--cache-dir` caches hold a participant's face crops and gaze windows in folders named
    after them: 0700/0600 whatever the umask, like the session (before: 0755/0644)."""
    from emer_live.training.dataset import SampleSpec, session_samples

    s = tmp_path / "recordings" / WHO / "S20261201-100000"
    make_session(s, participant=WHO, trials=2)
    caches = tmp_path / "caches"
    old = os.umask(0o022)
    try:
        session_samples(s, SampleSpec(kind="trial", use_face=False), cache_dir=caches)
    finally:
        os.umask(old)
    modes = _modes(caches)
    assert any(rel.endswith(".npz") for rel in modes) and len(modes) >= 3, modes
    for rel, mode in modes.items():
        assert mode == (0o700 if (caches / rel).is_dir() else 0o600), (rel, oct(mode))


@pytest.mark.torch          # a `live` run with the demo checkpoint
def test_a_live_out_log_of_a_replay_names_the_participant_and_is_private(lab, capsys):
    """`live --out` re-analysing P07's session: the log is P07's data (predictions per window),
    so every line names them and forget finds it whatever it is called; a new folder for it is
    made (before: FileNotFoundError traceback), 0700, the log 0600."""
    src = lab / WHO / "S2"
    assert cli.main(["record", "--duration", "2.5", "--size", "64x48", "--fps", "10", "--rate", "60",
                     "--participant", WHO, "--out", str(src), "--quiet"]) == 0
    out = lab / "analysis" / "run1.jsonl"
    old = os.umask(0o022)
    try:
        assert cli.main(["live", "--headless", "--quiet", "--tracker", f"replay:{src}", "--camera", "replay",
                         "--speed", "max", "--window", "2", "--hop", "0.25", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert lines and all(q["participant"] == WHO for q in lines)
    if POSIX:
        assert stat.S_IMODE(out.stat().st_mode) == 0o600 and stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    capsys.readouterr()
    assert cli.main(["forget", WHO, "--root", str(lab), "--yes"]) == 0
    assert "analysis/run1.jsonl" in capsys.readouterr().out and not out.exists()


def test_a_recent_entry_holds_no_pseudonym_when_the_session_id_names_it(tmp_path):
    """`record --out ROOT/P07_pilot` makes the session id "P07_pilot": the recent-sessions entry
    must not keep it in plain (before: "session_id": "P07_pilot" in the settings)."""
    pytest.importorskip("PyQt6")
    from emer_live.ui.settings import recent_entry, resolve_recent_entry

    s = tmp_path / "recordings" / f"{WHO}_pilot"
    make_session(s, participant=WHO, meta={"session_id": s.name})
    other = tmp_path / "recordings" / "P08_pilot"
    make_session(other, participant="P08", meta={"session_id": other.name})
    entry = recent_entry(s)
    assert WHO not in entry and WHO.lower() not in entry.lower(), entry
    assert resolve_recent_entry(entry) == str(s.resolve())
    assert resolve_recent_entry(recent_entry(other)) == str(other.resolve())
    assert cli.main(["forget", WHO, "--root", str(tmp_path / "recordings"), "--yes"]) == 0
    assert resolve_recent_entry(entry) is None


def test_recent_entries_with_a_plain_session_id_are_rewritten_at_start(qtbot, tmp_path):
    from PyQt6 import QtCore

    from emer_live.ui.replay import RECENT_KEY, ReplayWindow

    s = tmp_path / "recordings" / f"{WHO}_pilot"
    make_session(s, participant=WHO, meta={"session_id": s.name})
    meta = json.loads((s / "session.json").read_text())
    ini = tmp_path / "replay.ini"
    old = QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat)
    old.setValue(RECENT_KEY, json.dumps([json.dumps({"glob": str(s.parent / "*_pilot"), "session_id": s.name,
                                                     "created_utc": meta["created_utc"]})]))
    old.sync()
    w = ReplayWindow(settings=QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.settings.sync()
    assert WHO not in ini.read_text() and [a.text() for a in w.recent_menu.actions()] == [str(s.resolve())]


@pytest.mark.skipif(not POSIX, reason="symbolic links need privileges on Windows")
def test_a_link_to_a_file_of_the_participants_session_is_listed_for_the_lab(lab, capsys):
    """docs/data-rights.md: links to files are listed as LAB when they lead to the participant -
    also when the target (their gaze.tsv) does not spell the pseudonym (before: not listed)."""
    (lab / "exports").mkdir()
    os.symlink(lab / WHO / "S20261201-100000" / "gaze.tsv", lab / "exports" / "g.tsv")
    os.symlink(lab / "P08" / "S20261201-100000" / "gaze.tsv", lab / "exports" / "h.tsv")
    assert cli.main(["forget", WHO, "--root", str(lab), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "LAB      exports/g.tsv" in out and "exports/h.tsv" not in out
