"""`emer-live record / info / repair` as a user runs them (issue 2 "Done when")."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emer_live.cli import main
from emer_live.recording import SessionReader

EMER = [sys.executable, "-m", "emer_live.cli"]


def run_cli(*args, timeout=120):
    return subprocess.run(EMER + list(args), capture_output=True, text=True, timeout=timeout)


def test_record_20s_info_json(recorded20):
    p = run_cli("info", str(recorded20), "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    from emer_live.recording.format import FORMAT_VERSION

    assert info["format"]["version"] == FORMAT_VERSION
    g, c, a = info["streams"]["gaze"], info["streams"]["camera"], info["streams"]["audio"]
    assert abs(g["samples"] - 5000) <= 25, g           # within 0.5 % of 5000
    assert abs(c["rate_hz"] - 30) <= 1, c
    assert a["samples"] > 0 and abs(a["rate_hz"] - 48000) < 500, a
    for st in (g, c, a):
        assert st["strictly_increasing"] and st["dropped"] == 0 and st["gaps"] == 0, st
        assert st["first_t_us"] < st["last_t_us"]
    # the table form reads well too
    p = run_cli("info", str(recorded20))
    assert "gaze" in p.stdout and "camera" in p.stdout and "audio" in p.stdout


def test_replay_rerecord_identical_gaze_rows(recorded20, tmp_path):
    out = tmp_path / "again"
    p = run_cli("record", "--tracker", f"replay:{recorded20}", "--camera", "replay", "--mic", "replay",
                "--speed", "max", "--out", str(out), "--quiet")
    assert p.returncode == 0, p.stderr
    a = (recorded20 / "gaze.tsv").read_text().splitlines()
    b = (out / "gaze.tsv").read_text().splitlines()
    assert len(a) > 4000 and a == b
    ra, rb = SessionReader(recorded20), SessionReader(out)
    assert np.array_equal(ra.camera_times(), rb.camera_times())
    sa = np.concatenate([ra.audio(s) for s in ra.segments() if s.has_audio])
    sb = np.concatenate([rb.audio(s) for s in rb.segments() if s.has_audio])
    assert np.array_equal(sa, sb)


def test_sigkill_then_repair(tmp_path):
    d = tmp_path / "killed"
    proc = subprocess.Popen(EMER + ["record", "--tracker", "synthetic", "--camera", "synthetic", "--rate", "250",
                                    "--duration", "60", "--out", str(d), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait until ~10 s of gaze are on disk, then kill without warning
    t0 = time.time()
    while time.time() - t0 < 40:
        g = d / "gaze.tsv"
        if g.exists() and g.stat().st_size > 0 and g.read_bytes().count(b"\n") > 10.3 * 250:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    p = run_cli("repair", str(d))
    assert p.returncode == 0, p.stderr
    info = json.loads(run_cli("info", str(d), "--json").stdout)
    assert info["status"] == "interrupted"
    assert info["streams"]["gaze"]["duration_s"] >= 9.0
    assert info["streams"]["camera"]["duration_s"] >= 9.0
    r = SessionReader(d)
    seg = r.segments()[0]
    r.read_frame(seg, len(r.frame_index(seg)) - 1)   # the last kept frame decodes


def test_bad_input_messages(tmp_path, recorded20, capsys):
    cases = [
        (["record", "--tracker", "eyelink", "--out", str(tmp_path / "a")], "unknown --tracker"),
        (["record", "--camera", "webcam9", "--out", str(tmp_path / "b")], "unknown --camera"),
        (["record", "--duration", "1", "--out", str(recorded20)], "refusing to overwrite"),
        (["info", str(tmp_path)], "not a session folder"),
        (["repair", str(tmp_path)], "not a session folder"),
        (["info", str(tmp_path / "missing")], "no such folder"),
        (["record", "--tracker", "replay:" + str(tmp_path / "nothing"), "--out", str(tmp_path / "c")], "no such folder"),
    ]
    before = (recorded20 / "gaze.tsv").read_bytes()
    for argv, msg in cases:
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc != 0, argv
        assert msg in err and err.count("\n") == 1, (argv, err)
    assert (recorded20 / "gaze.tsv").read_bytes() == before
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_info_reports_tracker_clock_drift(recorded20):
    info = json.loads(run_cli("info", str(recorded20), "--json").stdout)
    drift = info["streams"]["gaze"]["device_clock_drift_ppm"]
    assert 5 < drift < 40      # the phantom's tracker clock runs 12-28 ppm fast
