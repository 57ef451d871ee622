"""Damaged session folders: every reading command gives one clear error line or a clearly flagged
partial read - never a traceback - and leaves the folder as it found it (repair excepted)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from emer_live import cli
from emer_live.errors import EmerError
from emer_live.recording import SessionReader

try:
    from tests.fakes.sessions import make_session
except ImportError:  # pragma: no cover
    from fakes.sessions import make_session


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    p = tmp_path_factory.mktemp("pristine") / "s"
    make_session(p, participant="P01", seconds=4, trials=2)
    from emer_live.session.sam import SamAnswer, SamTable

    with SamTable(p / "sam.tsv") as t:
        t.append(trial=1, stimulus_id="hap_01", category="happiness", answer=SamAnswer(7, 5, 5, "happiness", "ok"),
                 answered_t_us=2_000_000)
    return p


def _cut_mid_row(s: Path) -> str:
    g = s / "gaze.tsv"
    data = g.read_bytes()
    g.write_bytes(data[: len(data) - 40])
    return "gaze.tsv: last row cut 40 bytes short"


def _garbage_rows(s: Path) -> str:
    g = s / "gaze.tsv"
    lines = g.read_bytes().split(b"\n")
    lines[300:300] = [b"garbage\tnot\ta\trow", b"1.5e999\t\t\t", b"\t".join([b"x"] * 40)]
    g.write_bytes(b"\n".join(lines))
    return "gaze.tsv: 3 garbage rows inserted mid-file"


def _truncated_mjpeg(s: Path) -> str:
    v = s / "trials" / "01_hap_01" / "face.mjpeg"
    v.write_bytes(v.read_bytes()[: v.stat().st_size // 2])
    return "trial 1 face.mjpeg cut to half"


def _out_of_order(s: Path) -> str:
    g = s / "gaze.tsv"
    lines = g.read_bytes().split(b"\n")
    body = lines[1:-1]
    body[500:500] = body[100:150]  # 50 rows repeated 1.6 s later
    g.write_bytes(b"\n".join([lines[0]] + body + [b""]))
    return "gaze.tsv: 50 rows repeated out of time order"


def _missing_stream(s: Path) -> str:
    (s / "gaze.tsv").unlink()
    return "gaze.tsv deleted (session.json declares gaze)"


def _future_version(s: Path) -> str:
    m = json.loads((s / "session.json").read_text())
    m["format_version"] = 99
    (s / "session.json").write_text(json.dumps(m))
    return "session.json format_version 99"


def _non_utf8(s: Path) -> str:
    for name in ("gaze.tsv", "events.tsv"):
        p = s / name
        lines = p.read_bytes().split(b"\n")
        lines[2] = lines[2][:5] + b"\xff\xfe\xc3\x28" + lines[2][5:]
        p.write_bytes(b"\n".join(lines))
    return "invalid UTF-8 bytes in a row of gaze.tsv and events.tsv"


def _huge_line(s: Path) -> str:
    p = s / "gaze.tsv"
    lines = p.read_bytes().split(b"\n")
    lines[400:400] = [b"1234\t" * (2 << 20)]
    p.write_bytes(b"\n".join(lines))
    return "a 10 MB line in gaze.tsv"


def _symlink_out(s: Path) -> str:
    outside = s.parent / "outside_secret.mjpeg"
    v = s / "trials" / "01_hap_01" / "face.mjpeg"
    shutil.copyfile(v, outside)
    v.unlink()
    os.symlink(outside, v)
    return "trial 1 face.mjpeg is a symlink out of the folder"


def _session_json_garbage(s: Path) -> str:
    p = s / "session.json"
    p.write_bytes(p.read_bytes()[:100])
    return "session.json cut after 100 bytes"


# found by the fuzzer (tests/faults/test_fuzz.py); each was a traceback before the reader's fixes
def _dup_header_frames(s: Path) -> str:
    p = s / "trials" / "01_hap_01" / "face_frames.tsv"
    lines = p.read_bytes().split(b"\n")
    p.write_bytes(b"\n".join([lines[0]] + lines))
    return "face_frames.tsv header row duplicated"


def _dup_header_events(s: Path) -> str:
    p = s / "events.tsv"
    lines = p.read_bytes().split(b"\n")
    p.write_bytes(b"\n".join([lines[0]] + lines))
    return "events.tsv header row duplicated"


def _sam_damaged(s: Path) -> str:
    (s / "sam.tsv").write_bytes(b"\x00" + b"trial\tstimulus_id\n1\thap_01\n")
    return "sam.tsv without its columns"


def _segments_wrong_shape(s: Path) -> str:
    m = json.loads((s / "session.json").read_text())
    m["segments"][1] = {"path": m["segments"][1]["path"]}
    (s / "session.json").write_text(json.dumps(m))
    return "session.json segment without kind/t_start_us"


def _segment_path_escape(s: Path) -> str:
    m = json.loads((s / "session.json").read_text())
    m["segments"][1]["path"] = "../../elsewhere"
    (s / "session.json").write_text(json.dumps(m))
    return "session.json segment path ../../elsewhere"


def _mjpeg_deleted(s: Path) -> str:
    (s / "trials" / "01_hap_01" / "face.mjpeg").unlink()
    return "trial 1 face.mjpeg deleted, its index kept"


DAMAGE = {f.__name__.lstrip("_"): f for f in (
    _cut_mid_row, _garbage_rows, _truncated_mjpeg, _out_of_order, _missing_stream, _future_version, _non_utf8,
    _huge_line, _symlink_out, _session_json_garbage, _dup_header_frames, _dup_header_events, _sam_damaged,
    _segments_wrong_shape, _segment_path_escape, _mjpeg_deleted)}
_NO_VIDEO_READ = ("truncated_mjpeg", "symlink_out", "mjpeg_deleted", "sam_damaged", "dup_header_frames")

FLAGS = ("warning", "problem", "run `emer-live repair", "repaired", "cut", "moved")


def _digest(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def _run(argv, capsys):
    """Run a command in-process: anything but an EmerError escaping cli.main is a traceback."""
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _verdict(rc, out, err, *, as_json=False):
    """'error' (one clear line), 'flagged' (exit 0 with a warning/problem), or 'clean'."""
    if rc != 0:
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("emer-live: error:")]
        assert lines, f"exit {rc} without a one-line error: {err[-500:]}"
        assert len(lines[-1]) < 2000, "the error line is not one readable line"
        return "error"
    if as_json:
        return "flagged" if json.loads(out)["problems"] else "clean"
    text = (out + err).lower()
    return "flagged" if any(f in text for f in FLAGS) else "clean"


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_folder(name, pristine, tmp_path, capsys, fault_table, recwarn):
    s = tmp_path / "s"
    shutil.copytree(pristine, s, symlinks=True)
    injected = DAMAGE[name](s)
    before = _digest(tmp_path)

    verdicts = {}
    verdicts["info"] = _verdict(*_run(["info", s], capsys))
    verdicts["info --json"] = _verdict(*_run(["info", s, "--json"], capsys), as_json=True)
    verdicts["windows"] = _verdict(*_run(["windows", s, "--window", "1", "--hop", "1", "--no-face",
                                          "--out", tmp_path / "w.npz"], capsys))
    try:  # the Python reader: a SessionFormatError (an EmerError) or a flagged read
        r = SessionReader(s)
        summary = r.summary()
        for seg in r.segments():
            for _ in r.iter_frames(seg):
                pass
        verdicts["reader"] = "flagged" if summary["problems"] or recwarn.list else "clean"
    except EmerError:
        verdicts["reader"] = "error"
    # nothing read changed anything (the windows output aside)
    after = _digest(tmp_path)
    after.pop(str(tmp_path / "w.npz"), None)
    assert after == before, "a reading command changed the damaged folder"
    verdicts["repair"] = _verdict(*_run(["repair", s], capsys))

    short = {"error": "err", "flagged": "flag", "clean": "ok"}
    detected = " ".join(f"{k.replace('info --json', 'json')}:{short[v]}" for k, v in verdicts.items())
    fault_table.add(f"damaged: {name}", injected, detected, None, "error or flagged, no traceback")
    # every damage must be noticed by info and by the reader, not passed over silently
    assert "clean" not in (verdicts["info"], verdicts["info --json"], verdicts["reader"]), verdicts
    assert verdicts["windows"] != "clean" or name in _NO_VIDEO_READ, verdicts
