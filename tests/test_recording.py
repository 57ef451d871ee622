"""Recorder -> reader round trip, segments, repair and bad input, driven without devices."""

import json

import numpy as np
import pytest

from emer_live.clock import ReplayClock
from emer_live.errors import SessionExistsError, SessionFormatError
from emer_live.recording import Recorder, SessionReader
from emer_live.recording.repair import repair_session
from emer_live.schema import GAZE_DTYPE, audio_block_dtype, frame_dtype
from emer_live.streams import Stream


def make_gaze(t_us):
    rng = np.random.default_rng(len(t_us))
    g = np.zeros(len(t_us), GAZE_DTYPE)
    g["t_us"] = g["system_time_stamp"] = t_us
    g["device_time_stamp"] = t_us + 123_456
    for eye in ("left", "right"):
        g[f"{eye}_gaze_point_on_display_area_x"] = rng.random(len(t_us))
        g[f"{eye}_gaze_point_on_display_area_y"] = rng.random(len(t_us))
        g[f"{eye}_pupil_diameter"] = 3 + rng.random(len(t_us))
        g[f"{eye}_pupil_validity"] = 1
        g[f"{eye}_gaze_point_validity"] = 1
    g["left_pupil_diameter"][::50] = np.nan   # invalid samples are NaN
    g["left_pupil_validity"][::50] = 0
    return g


def fill(clock, gaze, cam, mic, t0, t1):
    ts = np.arange(t0, t1, 4000, dtype=np.int64)
    gaze.extend(make_gaze(ts))
    for t in range(t0, t1, 33_333):
        f = np.zeros(1, cam.dtype)
        f["t_us"], f["frame_index"] = t, t // 33_333
        f["image"][0] = (t // 1000) % 255
        cam.extend(f)
    for t in range(t0, t1, 21_333):
        b = np.zeros(1, mic.dtype)
        b["t_us"], b["block_index"], b["n"] = t, t // 21_333, 1024
        b["samples"][0, :, 0] = np.sin(np.arange(1024) / 10) * 0.5
        mic.extend(b)
    clock.advance_to(t1)


@pytest.fixture
def streams():
    gaze = Stream("gaze", GAZE_DTYPE, 5000, nominal_rate_hz=250)
    cam = Stream("camera", frame_dtype(64, 48), 100, nominal_rate_hz=30)
    mic = Stream("audio", audio_block_dtype(1024), 200, nominal_rate_hz=48000 / 1024)
    return gaze, cam, mic


def record(path, streams, *, trials=True):
    gaze, cam, mic = streams
    clock = ReplayClock(0, speed=None)
    rec = Recorder(path, clock=clock, meta={"participant": "P01"})
    rec.attach("gaze", gaze)
    rec.attach("camera", cam)
    rec.attach("audio", mic)
    rec.start(thread=False)
    if trials:
        rec.begin_between("baseline", t_us=0)
    fill(clock, gaze, cam, mic, 0, 1_000_000)
    rec.drain()
    if trials:
        rec.begin_trial(1, "hap_01", t_us=1_000_000)
        rec.log_event("stimulus_onset", trial=1, t_us=1_000_000, stimulus_id="hap_01")
    fill(clock, gaze, cam, mic, 1_000_000, 2_000_000)
    rec.drain()
    if trials:
        rec.begin_between("sam_01", t_us=2_000_000)
    fill(clock, gaze, cam, mic, 2_000_000, 2_500_000)
    rec.stop()
    return rec


def test_round_trip_and_segments(tmp_path, streams):
    rec = record(tmp_path / "s", streams)
    r = SessionReader(tmp_path / "s")
    g = r.gaze()
    expect = make_gaze(np.arange(0, 1_000_000, 4000, dtype=np.int64))
    assert len(g) == 625
    for name in GAZE_DTYPE.names:
        np.testing.assert_array_equal(g[name][:250], expect[name], err_msg=name)
    segs = r.segments()
    assert [s.kind for s in segs] == ["between", "trial", "between"]
    trial = r.trial_segments()[0]
    fi = r.frame_index(trial)
    assert len(fi) == len(range(1_000_000, 2_000_000, 33_333)) and fi["t_us"].min() >= 1_000_000 and fi["t_us"].max() < 2_000_000
    img = r.read_frame(trial, 0)
    assert img.shape == (48, 64, 3) and abs(int(img.mean()) - (1_000_000 // 1000) % 255) <= 2
    audio = r.audio(trial)
    assert audio.shape == (len(range(1_000_000, 2_000_000, 21_333)) * 1024, 1)
    assert abs(audio[:1024, 0] - np.sin(np.arange(1024) / 10) * 0.5).max() < 1e-3
    info = r.summary()
    assert info["streams"]["gaze"]["samples"] == 625 and info["streams"]["gaze"]["gaps"] == 0
    n_frames = sum(len(range(a, b, 33_333)) for a, b in ((0, 10**6), (10**6, 2 * 10**6), (2 * 10**6, 25 * 10**5)))
    assert info["streams"]["camera"]["samples"] == n_frames
    assert info["trials"][0]["stimulus_id"] == "hap_01"
    ev = [e["kind"] for e in r.events()]
    assert "stimulus_onset" in ev and ev[-1] == "recording_stop"
    assert r.status == "complete"
    # plain pandas reads the tables too
    import pandas as pd
    df = pd.read_csv(tmp_path / "s" / "gaze.tsv", sep="\t")
    assert df["left_pupil_diameter"].isna().sum() == 13


def test_refuses_existing_session_and_non_session(tmp_path, streams):
    record(tmp_path / "s", streams, trials=False)
    before = (tmp_path / "s" / "gaze.tsv").read_bytes()
    with pytest.raises(SessionExistsError, match="refusing to overwrite"):
        Recorder(tmp_path / "s", clock=ReplayClock(0, speed=None))
    assert (tmp_path / "s" / "gaze.tsv").read_bytes() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hi")
    with pytest.raises(SessionFormatError, match="not a session folder"):
        SessionReader(tmp_path / "other")
    with pytest.raises(SessionFormatError, match="not a session folder"):
        repair_session(tmp_path / "other")


def test_truncated_gaze_line_then_repair(tmp_path, streams):
    record(tmp_path / "s", streams, trials=False)
    p = tmp_path / "s" / "gaze.tsv"
    data = p.read_bytes()
    p.write_bytes(data[:-40])  # cut the last line in the middle, as a crash would
    with pytest.raises(SessionFormatError, match="truncated.*repair"):
        SessionReader(tmp_path / "s").gaze()
    rep = repair_session(tmp_path / "s")
    assert any("incomplete gaze" in x for x in rep.lost)
    g = SessionReader(tmp_path / "s").gaze()
    assert len(g) == 624
    lost = list((tmp_path / "s" / "repair_lost").iterdir())
    assert lost and lost[0].read_bytes() == data[len(p.read_bytes()):-40]
    meta = json.loads((tmp_path / "s" / "session.json").read_text())
    assert meta["repairs"]
    assert repair_session(tmp_path / "s").changed is False  # idempotent


def test_repair_cuts_partial_video_and_fixes_wav(tmp_path, streams):
    record(tmp_path / "s", streams, trials=False)
    seg = tmp_path / "s" / "between" / "00_recording"
    vid = seg / "face.mjpeg"
    data = vid.read_bytes()
    vid.write_bytes(data[:-100])             # last frame half-written
    wav = seg / "audio.wav"
    w = wav.read_bytes()
    wav.write_bytes(w[:4] + b"\0\0\0\0" + w[8:40] + b"\0\0\0\0" + w[44:-1000])  # header zeroed + tail cut
    repair_session(tmp_path / "s")
    r = SessionReader(tmp_path / "s")
    s = r.segments()[0]
    n_frames = sum(len(range(a, b, 33_333)) for a, b in ((0, 10**6), (10**6, 2 * 10**6), (2 * 10**6, 25 * 10**5)))
    assert len(r.frame_index(s)) == n_frames - 1
    r.read_frame(s, n_frames - 2)
    import wave
    with wave.open(str(wav)) as wf:
        assert wf.getnframes() == r.audio_blocks(s)["n_samples"].sum() == len(r.audio(s))


def test_non_session_json_and_future_version(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    (d / "session.json").write_text('{"format": "something-else"}')
    with pytest.raises(SessionFormatError, match="not an emer_live session"):
        SessionReader(d)
    (d / "session.json").write_text('{"format": "emer_live.session", "format_version": 99}')
    with pytest.raises(SessionFormatError, match="version 99"):
        SessionReader(d)


def test_disk_full_in_an_unthreaded_drain_is_reported(tmp_path, streams, monkeypatch):
    """A write error while the caller drives the recorder (fast replays, virtual-clock sessions)
    must end in status disk_full, not 'complete'."""
    import errno

    from emer_live.errors import DiskFullError

    gaze, cam, mic = streams
    clock = ReplayClock(0, speed=None)
    rec = Recorder(tmp_path / "s", clock=clock)
    rec.attach("gaze", gaze)
    rec.start(thread=False)
    fill(clock, gaze, cam, mic, 0, 500_000)
    rec.drain()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rec._tables["gaze"], "write", full)
    fill(clock, gaze, cam, mic, 500_000, 1_000_000)
    with pytest.raises(DiskFullError, match="disk full"):
        rec.drain()
    meta = rec.stop(status="complete")
    assert meta["status"] == "disk_full"
    r = SessionReader(tmp_path / "s")
    assert r.status == "disk_full" and len(r.gaze()) == 125   # what was written before is kept
