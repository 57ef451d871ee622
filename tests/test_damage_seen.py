"""Damage is always seen (issue 21, item 4): `info`, replay and a re-recording check every table
and segment against the counts session.json records. `info` flags each damage with its numbers
(expected vs found) and exit 7; replay shows whatever can be read, with each problem said once;
an export says what it lacks; a re-recording refuses a bad source before it creates a folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emer_live import cli
from emer_live.app.replay import ReplaySession
from emer_live.recording import SessionReader
from emer_live.recording.commands import DAMAGED_EXIT
from emer_live.recording.repair import repair_session

try:
    from tests.fakes.sessions import make_session
except ImportError:  # pragma: no cover
    from fakes.sessions import make_session

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 20
GAZE_ROWS = SECONDS * 250          # what session.json records as written


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """20 s: 250 Hz gaze, 30 fps 64x48 video, 16 kHz audio, two trials (~1.6 MB, < 1 s to make)."""
    p = tmp_path_factory.mktemp("pristine") / "s"
    make_session(p, seconds=SECONDS, trials=2, audio=True)
    return p


# ---------------------------------------------------------------------------- damage builders
def _gaze_cut_mid_line(s: Path) -> int:
    """gaze.tsv cut mid-line at 60 % of its bytes; returns the whole rows left."""
    g = s / "gaze.tsv"
    data = g.read_bytes()
    cut = int(len(data) * 0.6)
    while data[cut - 1:cut] == b"\n":      # make sure the cut is inside a line
        cut -= 1
    g.write_bytes(data[:cut])
    return data[:cut].count(b"\n") - 1


def _gaze_header_only(s: Path) -> int:
    g = s / "gaze.tsv"
    data = g.read_bytes()
    g.write_bytes(data[:data.index(b"\n") + 1])
    return 0


def _gaze_half_rows(s: Path) -> int:
    """gaze.tsv cut at a line boundary to half its rows (nothing a parser would notice)."""
    g = s / "gaze.tsv"
    lines = g.read_bytes().split(b"\n")
    keep = (len(lines) - 2) // 2
    g.write_bytes(b"\n".join(lines[:1 + keep]) + b"\n")
    return keep


def _largest_video(s: Path) -> Path:
    return max(s.rglob("face.mjpeg"), key=lambda p: p.stat().st_size)


def _mjpeg_ff_block(s: Path) -> int:
    """200 KB of 0xFF written over the middle of face.mjpeg (a quarter of it when smaller)."""
    v = _largest_video(s)
    b = bytearray(v.read_bytes())
    n = min(200_000, len(b) // 4)
    mid = len(b) // 2
    b[mid:mid + n] = b"\xff" * n
    v.write_bytes(bytes(b))
    return n


def _wav_random_header(s: Path) -> int:
    w = next(s.rglob("audio.wav"))
    b = bytearray(w.read_bytes())
    b[:44] = np.random.default_rng(3).integers(0, 256, 44, dtype=np.uint8).tobytes()
    w.write_bytes(bytes(b))
    return 44


DAMAGE = {"gaze_cut_mid_line": _gaze_cut_mid_line, "gaze_header_only": _gaze_header_only,
          "gaze_half_rows": _gaze_half_rows, "mjpeg_ff_block": _mjpeg_ff_block,
          "wav_random_header": _wav_random_header}


def _damaged(pristine, tmp_path, name):
    s = tmp_path / name
    shutil.copytree(pristine, s)
    return s, DAMAGE[name](s)


def _info(s, capsys, *extra):
    capsys.readouterr()
    rc = cli.main(["info", str(s), *extra])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ---------------------------------------------------------------------------- info
def test_pristine_folder_is_clean(pristine, capsys):
    rc, out, err = _info(pristine, capsys)
    assert rc == 0 and "warning" not in err, err
    assert SessionReader(pristine).problems() == []


@pytest.mark.parametrize("name", list(DAMAGE))
def test_info_flags_each_damage_with_numbers(name, pristine, tmp_path, capsys):
    s, arg = _damaged(pristine, tmp_path, name)
    rc, out, err = _info(s, capsys)
    assert rc == DAMAGED_EXIT, (rc, err)
    warnings = [ln for ln in err.splitlines() if ln.startswith("emer-live: warning:")]
    assert warnings and err.strip().splitlines()[-1].startswith("emer-live: error:"), err
    text = "\n".join(warnings)
    if name.startswith("gaze"):
        rows = arg
        assert f"gaze.tsv: {rows} rows found, session.json records {GAZE_ROWS} written - {GAZE_ROWS - rows} " \
               f"missing ({(GAZE_ROWS - rows) / 250:.1f} s at 250 Hz)" in text, text
        assert "gaze" in out or rows == 0          # the table still shows what can be read
        assert "None" not in out, out               # an emptied table has no first/last time: '-'
    elif name == "mjpeg_ff_block":
        m = re.search(r"face\.mjpeg: (\d+) of (\d+) indexed frames are not whole JPEGs", text)
        assert m and 0 < int(m.group(1)) < int(m.group(2)), text
    else:
        assert "audio.wav: the WAV header is not the one this recording wrote (no RIFF/WAVE" in text, text
    rc, out, err = _info(s, capsys, "--json")
    import json

    assert rc == DAMAGED_EXIT and json.loads(out)["problems"], err


def test_cut_gaze_after_repair_still_flagged_with_coverage(pristine, tmp_path, capsys):
    """The issue's case: repair makes the cut gaze.tsv readable again (one line cut), after which
    `info` said nothing about the 40 % of gaze that is gone. Now: counts and coverage, and
    repair itself says what it cannot undo."""
    s, rows = _damaged(pristine, tmp_path, "gaze_cut_mid_line")
    rep = repair_session(s)
    assert any("gaze.tsv" in a for a in rep.actions)
    assert any(f"{rows} rows found, session.json records {GAZE_ROWS} written" in r for r in rep.remaining)
    rc, out, err = _info(s, capsys)
    assert rc == DAMAGED_EXIT, err
    last_s = (rows - 1) * 0.004
    assert f"gaze ends at {last_s:.1f} s, {SECONDS - last_s:.1f} s before the recording stop" in err, err
    assert f"{GAZE_ROWS - rows} missing" in err


def test_coverage_flags_a_stream_that_ends_early_without_counts(pristine, tmp_path, capsys):
    """A crashed-and-repaired folder has no counts in session.json: coverage against the other
    streams still finds a gaze stream that stopped 8 s before the camera, and says so."""
    import json

    s = tmp_path / "s"
    shutil.copytree(pristine, s)
    meta = json.loads((s / "session.json").read_text())
    del meta["written"]
    (s / "session.json").write_text(json.dumps(meta))
    _gaze_cut_to(s, 12.0)
    rc, out, err = _info(s, capsys)
    # a warning, not damage by itself (a tracker that stopped delivering is recorded faithfully)
    assert rc == 0 and "emer-live: warning:" in err and "gaze ends at 12.0 s, 8.0 s before the" in err, err


def _gaze_cut_to(s: Path, seconds: float) -> None:
    g = s / "gaze.tsv"
    lines = g.read_bytes().split(b"\n")
    keep = int(seconds * 250) + 1
    g.write_bytes(b"\n".join(lines[:1 + keep]) + b"\n")


# ---------------------------------------------------------------------------- replay
@pytest.mark.parametrize("name", list(DAMAGE))
def test_replay_shows_what_can_be_read(name, pristine, tmp_path):
    s, arg = _damaged(pristine, tmp_path, name)
    r = ReplaySession(s)
    assert r.damaged
    full = ReplaySession(pristine)
    if name.startswith("gaze"):
        # every intact row is shown, gaze and pupil both (before: none at all for a cut line)
        assert len(r.gaze_t) == arg
        assert np.array_equal(r.gaze_t, full.gaze_t[:arg])
        if arg:
            assert np.isfinite(r.pupil_left).sum() == arg and np.isfinite(r.gaze_x).sum() == arg
    else:
        assert np.array_equal(r.gaze_t, full.gaze_t)
    if name == "mjpeg_ff_block":
        bad = sum(len(v) for v in r.reader.corrupt_frames.values())
        assert bad and len(r.face_t) == len(full.face_t) - bad
        for t in r.face_t[::7]:             # every frame left in decodes
            assert r.face_image(int(t)) is not None
    else:
        assert len(r.face_t) == len(full.face_t)


@pytest.mark.parametrize("name", ["gaze_cut_mid_line", "mjpeg_ff_block"])
def test_replay_window_banner_says_each_problem_once(name, pristine, tmp_path, qtbot):
    from emer_live.ui.replay import ReplayWindow

    s, arg = _damaged(pristine, tmp_path, name)
    w = ReplayWindow(s, face_boxes=False)
    qtbot.addWidget(w)
    text = w.banner.text()
    assert w.banner.isVisibleTo(w) and "Damaged folder" in text
    bullets = text.split("&bull; ")[1:]
    problems = ReplaySession(s).problems
    assert len(bullets) >= len(problems)
    for p in problems:      # each problem's message appears exactly once
        assert text.count(p["message"].split(":", 1)[1].strip()[:60]) == 1, (p["message"], text)
    assert len(set(bullets)) == len(bullets)
    if name == "gaze_cut_mid_line":
        assert text.count("is truncated") == 1
        assert f"showing the {arg} whole rows" in text
        assert len(w.session.gaze_t) == arg


def test_export_clip_says_gaze_is_missing(pristine, tmp_path, clip_library):
    """"Export trial clip with gaze" of a trial whose gaze is gone writes the clip and says so
    (it used to write a clip without any gaze marker, silently)."""
    pytest.importorskip("av")
    from emer_live.ui.replay import export_trial_clip

    clip = sorted(clip_library.glob("*.mp4"))[0]
    for name, want_note in (("pristine", False), ("gaze_header_only", True)):
        if name == "pristine":
            s = pristine
        else:
            s, _ = _damaged(pristine, tmp_path, name)
        r = ReplaySession(s)
        tr = r.trials[0]
        tr.clip_path, tr.clip_fps = str(clip), 25.0
        notes = []
        with pytest.warns(UserWarning) if want_note else _no_warning():
            n = export_trial_clip(r, tr, tmp_path / f"{name}.mp4", notes=notes)
        assert n > 0 and (tmp_path / f"{name}.mp4").stat().st_size > 0
        if want_note:
            assert len(notes) == 1 and "no gaze for 0.8 of 0.8 s" in notes[0] and "5000 written" in notes[0], notes
        else:
            assert notes == []


class _no_warning:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", UserWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


# ---------------------------------------------------------------------------- re-recording
def _break_frame(s: Path, how: str) -> None:
    """Damage frame 200 of the largest face.mjpeg so that it does not decode: ``header``
    overwrites its header bytes (the structural check sees it), ``decoder`` makes its SOS name a
    component the frame does not have (the structure is intact: only the decoder sees it)."""
    v = _largest_video(s)
    r = SessionReader(s)
    seg = next(sg for sg in r.segments() if sg.path == v.parent)
    row = r.frame_index(seg)[200]
    b = bytearray(v.read_bytes())
    frame = bytes(b[row["offset"]:row["offset"] + row["size"]])
    if how == "decoder":
        i = frame.index(b"\xff\xda")
        b[row["offset"] + i + 5] = 9
    else:                                       # its header bytes overwritten
        b[row["offset"] + 2:row["offset"] + 40] = bytes(range(38))
    v.write_bytes(bytes(b))


@pytest.mark.parametrize("how", ["header", "decoder"])
def test_rerecord_refuses_a_bad_frame_before_creating_anything(how, pristine, tmp_path):
    """Before: the re-recording ran until playback reached the bad frame, then stopped and left
    a partial session. Now it is refused with one line naming the frame, and no folder exists."""
    s = tmp_path / "src"
    shutil.copytree(pristine, s)
    _break_frame(s, how)
    out = tmp_path / "re"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "emer_live.cli", "record", "--tracker", f"replay:{s}", "--camera",
                        "replay", "--speed", "max", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "face.mjpeg" in p.stderr and "frame 200" in p.stderr, p.stderr
    assert not out.exists()


def test_rerecord_of_a_short_gaze_table_says_what_is_missing(pristine, tmp_path, capsys):
    """Half the gaze rows gone: the re-recording replays what is there (its loss summary shows
    the rest as missing) and says, with the numbers, that its source is short - on stderr and in
    the new session.json."""
    import json

    s, rows = _damaged(pristine, tmp_path, "gaze_half_rows")
    out = tmp_path / "re"
    capsys.readouterr()
    assert cli.main(["record", "--tracker", f"replay:{s}", "--camera", "none", "--speed", "max",
                     "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    want = f"{rows} rows found, session.json records {GAZE_ROWS} written - {GAZE_ROWS - rows} missing"
    assert f"emer-live: warning: replay source: {s / 'gaze.tsv'}: {want}" in err, err
    meta = json.loads((out / "session.json").read_text())
    assert any(want in m for m in meta["replay_source_problems"])


@pytest.mark.parametrize("table", ["face_frames.tsv", "events.tsv"])
def test_replay_shows_the_whole_rows_of_a_cut_index_or_event_table(table, pristine, tmp_path):
    """A frame index or events.tsv cut mid-line: replay still shows every whole row's frame or
    event (before, the whole segment's video or every event and trial interval was dropped)."""
    s = tmp_path / "s"
    shutil.copytree(pristine, s)
    p = _largest_video(s).parent / table if table == "face_frames.tsv" else s / table
    data = p.read_bytes()
    p.write_bytes(data[:-7])                       # the last line loses its end
    whole = data[:-7].count(b"\n") - 1
    full, r = ReplaySession(pristine), ReplaySession(s)
    assert r.damaged and any("truncated" in pr["message"] for pr in r.problems)
    if table == "events.tsv":
        assert len(r.events) == whole == len(full.events) - 1
        assert [t.onset_us for t in r.trials] == [t.onset_us for t in full.trials]
        assert any(n.startswith(f"events: showing the {whole} whole rows") for n in r.load_notes)
    else:
        assert len(r.face_t) == len(full.face_t) - 1
    assert not r.load_errors, r.load_errors


def test_cut_audio_is_flagged_and_refused_by_a_replay_mic(pristine, tmp_path, capsys):
    """audio.wav cut to half: info names the blocks past its end (once; not also as a header
    whose sizes disagree); a replay microphone refuses it before the re-recording's folder exists
    (before: a shape error when playback reached the missing samples)."""
    s = tmp_path / "s"
    shutil.copytree(pristine, s)
    w = next(s.rglob("audio.wav"))
    w.write_bytes(w.read_bytes()[:w.stat().st_size // 2])
    rc, out, err = _info(s, capsys)
    assert rc == DAMAGED_EXIT and err.count("emer-live: warning:") == 1, err
    assert re.search(r"audio\.wav: truncated - 51 of 100 indexed audio blocks lie past the end", err), err
    out_dir = tmp_path / "re"
    assert cli.main(["record", "--tracker", f"replay:{s}", "--camera", "none", "--mic", "replay", "--speed", "max",
                     "--out", str(out_dir), "--quiet"]) == 2
    assert not out_dir.exists()


def test_a_short_segment_is_named(pristine, tmp_path, capsys):
    """A segment's frame index cut at a line boundary: the count names the segment it came from."""
    s = tmp_path / "s"
    shutil.copytree(pristine, s)
    seg = _largest_video(s).parent
    p = seg / "face_frames.tsv"
    lines = p.read_bytes().split(b"\n")
    n_rows = len(lines) - 2
    p.write_bytes(b"\n".join(lines[:200]) + b"\n")        # 199 rows kept
    rc, out, err = _info(s, capsys)
    total = SECONDS * 30 + 1
    assert rc == DAMAGED_EXIT, err
    assert f"({seg.relative_to(s).as_posix()} ends " in err and "before its segment does)" in err, err
    assert f"{total - (n_rows - 199)} video frames found, session.json records {total} written - " \
           f"{n_rows - 199} missing" in err, err


def test_a_deleted_segment_folder_is_named(pristine, tmp_path, capsys):
    s = tmp_path / "s"
    shutil.copytree(pristine, s)
    shutil.rmtree(s / "trials" / "01_hap_01")
    rc, out, err = _info(s, capsys)
    assert rc == DAMAGED_EXIT, err
    assert "trials/01_hap_01: missing, but session.json records footage in this segment" in err, err
    assert "577 video frames found, session.json records 601 written - 24 missing (0.8 s at 30 Hz)" in err
    assert "1920 audio blocks found, session.json records 2000 written - 80 missing (0.8 s at 100 Hz)" in err
    assert "audio samples found" not in err        # the audio's shortfall is said once


def test_a_stream_that_only_ends_early_is_shown_amber_and_stays_reanalysable(pristine, tmp_path, qtbot):
    """No counts broken (a crashed-and-repaired folder has none), gaze just stops 8 s early: the
    replay window says so once, amber, and keeps re-analysis on (it is not damage)."""
    import json

    from emer_live.ui.colors import WARN_COLOR
    from emer_live.ui.replay import ReplayWindow

    s = tmp_path / "s"
    shutil.copytree(pristine, s)
    meta = json.loads((s / "session.json").read_text())
    del meta["written"]
    (s / "session.json").write_text(json.dumps(meta))
    _gaze_cut_to(s, 12.0)
    w = ReplayWindow(s, face_boxes=False)
    qtbot.addWidget(w)
    assert not w.session.damaged and [p["kind"] for p in w.session.problems] == ["ends_early"]
    text = w.banner.text()
    assert "Damaged" not in text and text.count("gaze ends at 12.0 s") == 1, text
    assert WARN_COLOR in w.banner.styleSheet()
    assert w.btn_reanalyse.isEnabled()


def test_a_link_out_of_the_folder_stays_a_flagged_read(pristine, tmp_path, capsys):
    """The byte checks do not follow a face.mjpeg that links out of the folder: `info` still
    prints its table and the 'outside' warning (exit 7), not a one-line error (exit 2)."""
    s = tmp_path / "s"
    shutil.copytree(pristine, s)
    v = s / "trials" / "01_hap_01" / "face.mjpeg"
    outside = tmp_path / "outside.mjpeg"
    shutil.copyfile(v, outside)
    v.unlink()
    os.symlink(outside, v)
    rc, out, err = _info(s, capsys)
    assert rc == DAMAGED_EXIT and "a symbolic link out of the session folder" in err and "gaze" in out, err
