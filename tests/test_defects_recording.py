"""Issue 17 defects in recording, repair, the readers and the pre-session check.

Each test names the defect it covers; each failed before its fix. The disk-full tests mount a
small tmpfs (root only); where that is impossible they are skipped with the reason.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from emer_live.clock import ReplayClock
from emer_live.errors import SessionFormatError
from emer_live.recording import Recorder, SessionReader
from emer_live.recording import format as fmt
from emer_live.recording.repair import repair_session
from emer_live.schema import GAZE_DTYPE, frame_dtype
from emer_live.streams import Stream

try:
    from tests.fakes.sessions import crash_lock
except ImportError:  # pragma: no cover - rootdir on sys.path differs
    from fakes.sessions import crash_lock

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "emer_live.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


# ---------------------------------------------------------------------------- a small session
def _gaze(t_us):
    g = np.zeros(len(t_us), GAZE_DTYPE)
    g["t_us"] = g["system_time_stamp"] = t_us
    g["device_time_stamp"] = t_us + 1000
    for eye in ("left", "right"):
        g[f"{eye}_gaze_point_on_display_area_x"] = 0.5
        g[f"{eye}_gaze_point_on_display_area_y"] = 0.5
        g[f"{eye}_pupil_diameter"] = 3.0
        g[f"{eye}_pupil_validity"] = 1
        g[f"{eye}_gaze_point_validity"] = 1
    return g


def make_session(path, *, seconds=4, trial=True, stop=True):
    """Gaze at 250 Hz and 64x48 video at 30 fps; one trial from 1 s to 3 s."""
    gaze = Stream("gaze", GAZE_DTYPE, 5000, nominal_rate_hz=250)
    cam = Stream("camera", frame_dtype(64, 48), 400, nominal_rate_hz=30)
    clock = ReplayClock(0, speed=None)
    rec = Recorder(path, clock=clock, meta={"participant": "P01"})
    rec.attach("gaze", gaze)
    rec.attach("camera", cam)
    rec.start(thread=False)
    rec.begin_between("baseline", t_us=0)
    end = seconds * 1_000_000
    gaze.extend(_gaze(np.arange(0, end, 4000, dtype=np.int64)))
    for t in range(0, end, 33_333):
        f = np.zeros(1, cam.dtype)
        f["t_us"], f["frame_index"] = t, t // 33_333
        f["image"][0] = 80 + (t // 100_000) % 100
        cam.extend(f)
    if trial:
        rec.begin_trial(1, "hap_01", t_us=1_000_000)
        rec.log_event("stimulus_onset", trial=1, t_us=1_000_000, stimulus_id="hap_01")
        rec.log_event("stimulus_offset", trial=1, t_us=3_000_000)
        rec.begin_between("sam_01", t_us=3_000_000)
    clock.advance_to(end)
    rec.drain()
    if stop:
        rec.stop()
    else:
        crash_lock(path)        # as a crashed writer leaves its lock: stale
    return rec


@pytest.fixture
def session(tmp_path):
    p = tmp_path / "s"
    make_session(p)
    return p


# ---------------------------------------------------------------------------- tmpfs (defect 1)
# `small_disk` (a 3 MB tmpfs) is in tests/conftest.py


def fill_disk(folder: Path) -> Path:
    """Take every free byte of ``folder``'s file system; returns the filler file."""
    filler = folder / f"filler_{uuid.uuid4().hex[:6]}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        for block in (65536, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * block)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def test_disk_full_record_ends_cleanly_with_status(small_disk):
    """Defect 1: `record` into a small disk: exit 4, one clear line, no traceback, and
    session.json itself says disk_full with the cause."""
    out = small_disk / "s1"
    p = run_cli("record", "--duration", "8", "--out", out, "--quiet")
    assert p.returncode == 4, p.stderr
    assert "Traceback" not in p.stderr and "emer-live: error: disk full" in p.stderr
    meta = json.loads((out / "session.json").read_text())
    assert meta["status"] == "disk_full" and "disk full" in meta["error"]
    assert not (out / fmt.RESERVE_FILE).exists()
    stops = [ln for ln in (out / "events.tsv").read_text().splitlines() if "\trecording_stop\t" in ln]
    assert stops and '"disk_full"' in stops[-1]


def test_disk_full_start_leaves_nothing(small_disk):
    """Defect 1: starting on a full disk: exit 4, the clear message, no folder left behind."""
    filler = fill_disk(small_disk)
    p = run_cli("record", "--duration", "2", "--out", small_disk / "s2", "--quiet")
    assert p.returncode == 4, p.stderr
    assert "Traceback" not in p.stderr and "disk full" in p.stderr
    assert not (small_disk / "s2").exists()
    filler.unlink()


def test_disk_full_session_cli(small_disk):
    """Defect 1: `session` on a disk that fills: exit 4 and the message, not a traceback."""
    p = run_cli("session", "--headless", "--participant", "P01", "--trials", "2", "--time-scale", "0.05",
                "--out", small_disk / "root", timeout=180)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "disk full" in p.stderr
    (folder,) = (small_disk / "root" / "P01").iterdir()
    assert json.loads((folder / "session.json").read_text())["status"] == "disk_full"


def test_recorder_stop_on_full_disk_does_not_raise(small_disk):
    """Defect 1: Recorder.stop() after the disk filled writes status disk_full (via the
    reserve it set aside) instead of raising OSError."""
    rec = make_session(small_disk / "s", seconds=2, stop=False)
    filler = fill_disk(small_disk)
    rec.log_event("note", text="x" * 20000)     # cannot be written: remembered, not raised
    meta = rec.stop()
    assert meta["status"] == "disk_full"
    on_disk = json.loads((small_disk / "s" / "session.json").read_text())
    assert on_disk["status"] == "disk_full" and "disk full" in on_disk["error"]
    filler.unlink()


def test_repair_on_full_disk_is_clear_and_changes_nothing(small_disk):
    """Defect 1: `repair` on a full disk: exit 4, clear line, no 0-byte .tail, nothing cut; it
    works once space is free."""
    s = small_disk / "s"
    make_session(s, seconds=2, stop=False)          # a crash: status recording
    with open(s / "gaze.tsv", "a") as f:
        f.write("123\t4")                            # a torn last line
    (s / fmt.RESERVE_FILE).unlink()                  # (repair would free it first)
    before = (s / "gaze.tsv").read_bytes()
    filler = fill_disk(small_disk)
    p = run_cli("repair", s)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "disk full" in p.stderr
    assert (s / "gaze.tsv").read_bytes() == before
    lost = s / fmt.LOST_DIR
    assert not lost.exists() or all(f.stat().st_size > 0 for f in lost.iterdir())
    filler.unlink()
    p = run_cli("repair", s)
    assert p.returncode == 0, p.stderr
    assert SessionReader(s).status == "interrupted" and len(SessionReader(s).gaze()) == 500


def test_repair_frees_a_leftover_reserve(tmp_path):
    """A crash leaves the recorder's reserve; repair removes it (its space is repair's room)."""
    s = tmp_path / "s"
    make_session(s, seconds=2, stop=False)
    assert (s / fmt.RESERVE_FILE).is_file()
    rep = repair_session(s)
    assert not (s / fmt.RESERVE_FILE).exists() and any(fmt.RESERVE_FILE in a for a in rep.actions)


def test_repair_keeps_disk_full_status_from_events(tmp_path):
    """Defect 1: a recorder that could not rewrite session.json left the cause in events.tsv;
    repair carries it into session.json instead of a bare 'interrupted'."""
    s = tmp_path / "s"
    rec = make_session(s, seconds=2, stop=False)
    rec.log_event("error", message="disk full while writing X")
    rec._events.write(fmt.tsv_line((2_000_000, "recording_stop", "", json.dumps({"status": "disk_full"}))))
    rec._events.flush()
    repair_session(s)
    meta = SessionReader(s).meta
    assert meta["status"] == "disk_full" and meta["error"] == "disk full while writing X"


# ---------------------------------------------------------------------------- defect 2
def test_repair_makes_a_zero_byte_frame_index_readable(session):
    """Defect 2: a trial's face_frames.tsv of 0 bytes (its header never reached the disk):
    repair must leave a folder info and windows read, and say nothing to repair the second time."""
    seg = session / "trials" / "01_hap_01"
    (seg / fmt.FRAMES_TSV).write_bytes(b"")
    rep = repair_session(session)
    assert rep.changed
    r = SessionReader(session)
    r.summary()                                        # raised "header does not match" before
    assert len(r.frame_index(r.trial_segments()[0])) == 0
    assert (session / fmt.LOST_DIR / "trials__01_hap_01__face.mjpeg.tail").stat().st_size > 0
    again = repair_session(session)
    assert not again.changed and not again.lost


def test_repair_does_not_claim_success_on_an_unreadable_folder(session):
    """Defect 2: damage repair cannot undo (a foreign header) is an error, not 'readable again'."""
    (session / "gaze.tsv").write_text("foo\tbar\n1\t2\n")
    p = run_cli("repair", session)
    assert p.returncode != 0
    assert "still not readable" in p.stderr and "readable again" not in p.stdout


# ---------------------------------------------------------------------------- defect 3
def _truncate_video(session):
    vid = session / "between" / "00_baseline" / fmt.VIDEO_FILE
    with open(vid, "r+b") as f:
        f.truncate(vid.stat().st_size // 2)


def test_truncated_video_info_windows_replay(session, tmp_path):
    """Defect 3: info warns; windows and a replay give one clear error (no cv2 traceback) and
    the replay leaves no new session behind at status `recording`."""
    _truncate_video(session)
    s = SessionReader(session).summary()
    assert any("truncated" in p for p in s["problems"])
    p = run_cli("info", session)
    assert p.returncode == 7 and "warning" in p.stderr and "truncated" in p.stderr   # 7: damage found
    p = run_cli("windows", session, "--window", "1", "--hop", "1", "--out", tmp_path / "w.npz")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "truncated" in p.stderr
    out = tmp_path / "re"
    p = run_cli("record", "--tracker", f"replay:{session}", "--camera", f"replay:{session}", "--speed", "max",
                "--out", out, "--quiet")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "truncated" in p.stderr
    assert not out.exists() or SessionReader(out).status != "recording"


def test_truncated_frame_read_is_a_format_error(session):
    _truncate_video(session)
    r = SessionReader(session)
    seg = r.segments()[0]
    with pytest.raises(SessionFormatError, match="truncated"):
        r.read_frame(seg, len(r.frame_index(seg)) - 1)
    with pytest.raises(SessionFormatError, match="truncated"):
        list(r.iter_frames(seg))


# ---------------------------------------------------------------------------- defect 4
def _duplicate_gaze_rows(session, n=500):
    p = session / "gaze.tsv"
    lines = p.read_text().split("\n")
    head, body = lines[0], lines[1:-1]
    body = body[:700] + body[700 - n:700] + body[700:]
    p.write_text("\n".join([head] + body) + "\n")


@pytest.mark.torch          # `live` checks the checkpoint (PyTorch) before it opens the replay
def test_out_of_order_gaze_is_reported(session, tmp_path):
    """Defect 4: info counts the out-of-order stamps; windows and live replay refuse clearly."""
    from emer_live.features.commands import build_session_windows

    _duplicate_gaze_rows(session)
    s = SessionReader(session).summary()
    assert s["streams"]["gaze"]["out_of_order"] == 500
    assert any("out of order" in p for p in s["problems"])
    with pytest.raises(SessionFormatError, match="out of order"):
        build_session_windows(session, window_s=1.0, hop_s=1.0, use_face=False)
    p = run_cli("live", "--tracker", f"replay:{session}", "--camera", "none", "--speed", "max", "--headless",
                "--quiet")
    assert p.returncode != 0 and "out of order" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------------------- defect 5
def test_deleted_declared_gaze_is_reported(session):
    """Defect 5: a gaze stream session.json declares but whose file is gone is reported by
    info and refused by windows (it wrote windows with no valid gaze before)."""
    from emer_live.features.commands import build_session_windows

    (session / "gaze.tsv").unlink()
    s = SessionReader(session).summary()
    assert any("missing" in p and "gaze" in p for p in s["problems"])
    with pytest.raises(SessionFormatError, match="missing"):
        build_session_windows(session, window_s=1.0, hop_s=1.0, use_face=False)


def test_intact_session_has_no_problems(session):
    assert SessionReader(session).summary()["problems"] == []
    assert not (session / fmt.RESERVE_FILE).exists()     # given back at every stop


# ---------------------------------------------------------------------------- defect 10 (recording)
def test_session_json_mode_matches_other_files(session):
    """Defect 10: session.json was written 0600 (mkstemp) while every other file is 0644."""
    mode = stat.S_IMODE((session / "session.json").stat().st_mode)
    assert mode == stat.S_IMODE((session / "events.tsv").stat().st_mode)


def test_repair_settles_pending_trials(tmp_path):
    """Defect 10: after repair an unfinished trial no longer says `pending`."""
    s = tmp_path / "s"
    rec = make_session(s, seconds=2, stop=False)
    rec.update_meta(trials=[{"trial": 1, "stimulus_id": "hap_01", "status": "running"},
                            {"trial": 2, "stimulus_id": "sad_01", "status": "pending"}])
    repair_session(s)
    st = {t["trial"]: t["status"] for t in SessionReader(s).meta["trials"]}
    assert st == {1: "interrupted", 2: "not_run"}


def test_repair_takes_a_trial_s_end_from_events_tsv(tmp_path):
    """A crash after a trial's end was logged but before session.json said so: repair gives the
    trial the state events.tsv shows (complete, aborted, skipped), not `interrupted`."""
    s = tmp_path / "s"
    rec = make_session(s, seconds=2, stop=False)
    for n, kind in ((1, "trial_end"), (2, "trial_skipped"), (3, "trial_aborted")):
        rec.log_event(kind, trial=n)
    rec.update_meta(trials=[{"trial": n, "stimulus_id": f"hap_0{n}", "status": "running"} for n in (1, 2, 3)])
    repair_session(s)
    st = {t["trial"]: t["status"] for t in SessionReader(s).meta["trials"]}
    assert st == {1: "complete", 2: "skipped", 3: "aborted"}


# ---------------------------------------------------------------------------- defect 6, 10 (stimuli)
@pytest.mark.parametrize("damage", ["empty", "text"])
def test_broken_clip_stops_the_session_before_it_starts(clip_library, tmp_path, damage, capsys):
    """Defect 6: a 0-byte or text-as-.mp4 clip is caught by the pre-session check (only
    missing files were) - no session folder, no SAM rows for it."""
    from emer_live.cli import main

    lib = tmp_path / "lib"
    shutil.copytree(clip_library, lib)
    clip = lib / "hap_02.mp4"
    clip.write_bytes(b"" if damage == "empty" else b"this is not a video, just text\n" * 20)
    rc = main(["session", "--headless", "--participant", "P03", "--trials", "14", "--time-scale", "0.02",
               "--stimuli", str(lib), "--fast", "--out", str(tmp_path / "root")])
    err = capsys.readouterr().err
    assert rc == 2 and "hap_02.mp4" in err and "stimuli check" in err
    assert not (tmp_path / "root").exists()


def test_bad_toml_manifest_error_comes_first(clip_library, tmp_path, capsys):
    """Defect 10: a manifest that is not TOML gives its error first, not under 28 'video file
    not listed' lines."""
    from emer_live.cli import main

    lib = tmp_path / "lib"
    shutil.copytree(clip_library, lib)
    with open(lib / "manifest.toml", "a") as f:
        f.write("this is [not toml\n")
    capsys.readouterr()
    assert main(["stimuli", "check", str(lib)]) != 0
    lines = capsys.readouterr().err.splitlines()
    assert "not valid TOML" in lines[0]
    assert not any("not listed" in ln for ln in lines)


def test_two_sessions_in_the_same_second_get_different_ids(tmp_path):
    """Defect 10: session ids are claimed atomically - 8 threads starting in the same second get
    8 different folders (choosing a free name and creating it later gave two the same id)."""
    import datetime as dt
    import threading

    from emer_live.session.ids import claim_session_dir

    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    got, barrier = [], threading.Barrier(8)

    def start():
        barrier.wait()
        got.append(claim_session_dir(tmp_path, "P01", now=now))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8 and all(p.is_dir() and not any(p.iterdir()) for p in got)
    assert sorted(p.name for p in got)[0] == "S20260102-030405"


def test_random_bytes_checkpoint_is_not_called_pickled_objects(tmp_path):
    """Defect 10: random bytes are a corrupt file, not 'pickled Python objects'; no message
    suggests weights_only=False or carries terminal colour codes."""
    pytest.importorskip("torch")
    import fractions

    import torch

    from emer_live.errors import CheckpointError
    from emer_live.model import load_checkpoint

    rnd = tmp_path / "random.pt"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(rnd)
    msg = str(ei.value)
    assert "corrupt" in msg and "pickled" not in msg and "weights_only=False" not in msg.replace(" ", "")
    assert "set to `False`" not in msg and "\x1b" not in msg
    obj = tmp_path / "objects.pt"
    torch.save({"x": fractions.Fraction(1, 3)}, obj)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(obj)
    msg = str(ei.value)
    assert "pickled Python objects" in msg and "fractions.Fraction" in msg
    assert "\x1b" not in msg and "False" not in msg and "trust" not in msg


def test_train_warnings_are_one_line(tmp_path):
    """Defect 10: `train` on folders without trials: the project's warnings are one
    `emer-live: warning:` line, not a raw UserWarning with its source path and code line."""
    pytest.importorskip("torch")

    data = tmp_path / "data"
    make_session(data / "s", trial=False)
    p = run_cli("train", "--data", data, "--epochs", "1", "--out", tmp_path / "m.pt", "--quiet", timeout=300)
    err = p.stderr
    assert p.returncode != 0
    assert "UserWarning" not in err and ".py:" not in err
    assert "emer-live: warning:" in err


# ---------------------------------------------------------------------------- defect 9
def test_synthetic_camera_stall_marks_the_hole_with_a_gap():
    """Defect 9: docs/hardware.md says a stall's hole is marked by a `gap` event; the synthetic
    camera logged only `camera_stall`. A renderer slowed past max_lag_s must give both."""
    import threading
    import time

    from emer_live.devices.synthetic_camera import SyntheticCamera
    from emer_live.phantom.face_state import FaceState

    class Still:
        def face_state(self, t_us):
            return FaceState()

    events, lock = [], threading.Lock()

    def sink(t_us, kind, detail):
        with lock:
            events.append((kind, detail))

    cam = SyntheticCamera(Still(), width=64, height=48, fps=30.0, on_event=sink, max_lag_s=0.05,
                          appearance=None)
    slow = {"n": 0}

    def render(*a, **k):
        slow["n"] += 1
        if slow["n"] == 5:
            time.sleep(0.4)      # one frame takes 0.4 s: ~11 frames cannot be delivered
        return real(*a, **k)

    cam.open()
    real = cam._render
    cam._render = render
    cam.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(k == "gap" for k, _ in events):
        time.sleep(0.05)
    cam.stop()
    kinds = [k for k, _ in events]
    assert "camera_stall" in kinds and "gap" in kinds
    stall = next(d for k, d in events if k == "camera_stall")
    gap = next(d for k, d in events if k == "gap")
    assert gap["reason"] == "camera_stall" and gap["stream"] == "camera"
    assert gap["missing"] == stall["dropped"] and gap["t_end_us"] > gap["t_start_us"]
    assert "device_connect" not in kinds


# ---------------------------------------------------------------------------- defects 9 and 11 (docs)
def test_docs_state_holdback_missing_values_and_live_jsonl():
    """Defects 9/11: recording-format.md names the 0.3 s hold-back of video/audio, says which
    missing value each file uses (NaN / -1 / empty), and documents the live --out JSON lines."""
    text = (ROOT / "docs" / "recording-format.md").read_text(encoding="utf-8")
    assert "held back 0.3 s" in text
    assert "## Missing values" in text and "`-1`" in text and "empty cell" in text
    assert "live --out" in text and '"7": ["happiness"' in text


def test_live_json_line_names_its_classes():
    """Defect 11: the live --out JSON line's er7 was a bare list without class names."""
    from emer_live.live.prediction import Prediction
    from emer_live.session.labels import ER3_CLASSES, ER7_CLASSES

    p = Prediction(kind="window", t_start_us=0, t_end_us=8_000_000, trial=-1, checkpoint="abc",
                   er7=[0.1, 0.2, 0.1, 0.1, 0.1, 0.3, 0.1], er3=[0.2, 0.5, 0.3], er_va=[0.0, 0.1],
                   fer7=None, fer3=None, fer_va=None, fer_intensity=None, gap=None,
                   modalities={"face": True, "eye": True, "fixation": True}, quality={})
    d = json.loads(p.to_json())
    assert d["classes"]["7"] == list(ER7_CLASSES) and d["classes"]["3"] == list(ER3_CLASSES)
    assert d["classes"]["7"][int(np.argmax(d["er7"]))] == d["er_top"] == "anger"


def test_readme_train_recipe_and_help_texts():
    """Defect 11: README's train recipe uses the loss weights that train (not the defaults that
    leave every head at chance) and shows how eval_face is made; compare --help prints '95%'
    (not '95%%'); --eye-reference names its default."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    trains = [ln for ln in readme.splitlines() if " train --data" in ln]
    assert trains and all("--alpha 0.05 --beta 1.0" in ln for ln in trains)
    assert "--out-dir eval_face" in readme
    p = run_cli("compare", "--help")
    assert "95%%" not in p.stdout and "95%" in p.stdout
    p = run_cli("train", "--help")
    flat = " ".join(p.stdout.split())
    i = flat.index("--eye-reference {none,baseline,session} remove")
    assert "default none" in flat[i:i + 600]


def test_zero_byte_table_names_repair(session):
    """Defect 2: before repair, a 0-byte frame index is named as such with `repair` as the fix
    (it said only 'header does not match the frame index columns')."""
    (session / "trials" / "01_hap_01" / fmt.FRAMES_TSV).write_bytes(b"")
    p = run_cli("info", session)
    assert p.returncode == 2 and "0 bytes" in p.stderr and "emer-live repair" in p.stderr
