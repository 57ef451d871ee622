"""TobiiTracker against the fake SDK (any Python): sample handling, gaps, reconnection, errors.

The fake (tests/fakes/fake_tobii_research.py) calls back from its own thread at the tracker rate;
its virtual clock runs faster than real time so a 60 s recording takes a few seconds.
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np
import pytest

from emer_live.errors import DeviceUnavailable
from emer_live.devices import tobii
from emer_live.devices.tobii import TobiiTracker, find_trackers, sdk_status
from emer_live.geometry import DisplayGeometry
from emer_live.schema import GAZE_DTYPE

try:
    from tests.fakes import fake_tobii_research as fk
    from tests.fakes import wait_for as run_until
except ImportError:  # tests/ itself on sys.path
    from fakes import fake_tobii_research as fk
    from fakes import wait_for as run_until


@pytest.fixture
def sdk():
    fk.fake_reset(speed=1.0)
    yield fk
    fk.fake_reset()


class Events:
    def __init__(self):
        self.items = []

    def __call__(self, t_us, kind, detail):
        self.items.append((t_us, kind, detail))

    def of(self, kind):
        return [d for _, k, d in self.items if k == kind]


def make(sdk, events=None, **kw):
    kw.setdefault("frequency", 250)
    kw.setdefault("capacity_s", 80)
    return TobiiTracker(sdk=sdk, clock=sdk.fake_clock(), on_event=events, **kw)


# ----------------------------------------------------------------------------- done-when
def test_250hz_60s_zero_loss_across_connection_loss(sdk):
    """60 s at 250 Hz (20x real time) with a 1 s connection loss: every delivered sample is in the
    stream, the inter-sample interval median is 4.0 ms, and the loss is one gap event."""
    sdk.fake_reset(speed=20.0)
    et = sdk.fake_add_tracker(duration_s=60.0, disconnect_at_s=25.0, disconnect_for_s=1.0)
    ev = Events()
    tr = make(sdk, ev, stall_timeout_s=30.0)
    tr.open()
    tr.start()
    assert run_until(lambda: et.fake_done, timeout=60), "the fake did not finish its 60 s"
    time.sleep(0.1)
    tr.stop()

    g = tr.stream.latest(10**6)
    delivered = np.array(et.fake_delivered_gaze, dtype=np.int64)
    # The fake's pump starts with the first stream subscription (time sync), so a sample or two can
    # pass before the gaze subscription exists; count by time stamps, not by the wall clock: every
    # 4 ms slot from the first delivered sample to the last is there except the 1 s outage.
    slots = int(round((delivered[-1] - delivered[0]) / 4000)) + 1
    assert len(delivered) == slots - 250
    assert len(delivered) >= 15000 - 250 - 25     # at most 0.1 s missed at the start
    assert len(g) == len(delivered)
    assert np.array_equal(g["system_time_stamp"], delivered)    # zero loss, same order
    assert np.array_equal(g["t_us"], g["system_time_stamp"])    # session clock = SDK clock
    dt = np.diff(g["t_us"])
    assert (dt > 0).all()
    assert abs(np.median(dt) - 4000) <= 5
    assert tr.isi_median_ms() == pytest.approx(4.0, abs=0.005)

    gaps = ev.of("gap")
    assert len(gaps) == 1, gaps
    assert gaps[0]["reason"] == "connection_lost"
    assert gaps[0]["duration_ms"] == pytest.approx(1004, abs=5)
    assert gaps[0]["missing"] == 250
    assert len(ev.of("device_disconnect")) == 1 and len(ev.of("device_connect")) == 1
    assert not ev.of("buffer_overflow")
    c = tr.stream.counters
    assert (c.gaps, c.missing, c.dropped, c.non_monotonic) == (1, 250, 0, 0)
    # the recorded values are the SDK's values
    i = len(g) // 3
    assert np.isfinite(g["left_pupil_diameter"][g["left_pupil_validity"] == 1]).all()
    assert np.isnan(g["left_pupil_diameter"][g["left_pupil_validity"] == 0]).all()
    assert (g["left_pupil_validity"] == 0).any()                 # the fake blinks
    assert g["device_time_stamp"][i] != g["system_time_stamp"][i]
    assert np.isnan(g["left_gaze_origin_in_trackbox_coordinate_system_x"]).all()   # not in SDK 2.x dicts
    # clean unsubscribe
    assert not et._subs and not et._notif_subs
    assert run_until(lambda: not et.fake_pump_running, 5)
    # drift from the time-sync packets (fake device clock runs 25 ppm fast)
    cs = tr.clock_sync()
    assert cs["n"] >= 55 and cs["drift_ppm"] == pytest.approx(25.0, abs=0.5)


def test_stale_subscriptions_after_restore_are_renewed(sdk):
    # speed 2, not 10: the renewal runs on wall time (0.1 s); at 10x a loaded CI machine let the
    # fake tracker finish before the adapter got round to it
    sdk.fake_reset(speed=2.0)
    et = sdk.fake_add_tracker(duration_s=8.0, disconnect_at_s=2.0, disconnect_for_s=0.5, resume_after_restore=False)
    ev = Events()
    tr = make(sdk, ev, resubscribe_after_s=0.1, stall_timeout_s=30.0)
    tr.open()
    tr.start()
    assert run_until(lambda: et.fake_done, timeout=30)
    time.sleep(0.1)
    tr.stop()
    g = tr.stream.latest(10**6)
    delivered = np.array(et.fake_delivered_gaze, dtype=np.int64)
    assert np.array_equal(g["system_time_stamp"], delivered)
    assert g["t_us"][-1] - g["t_us"][0] > 7.0e6           # data flowed again after the renewal
    notes = [n for n in ev.of("note") if "re-subscribed" in n.get("message", "")]
    assert notes and notes[0]["ok"] is True
    gaps = ev.of("gap")
    assert gaps[0]["reason"] == "connection_lost" and gaps[0]["duration_ms"] > 500


def test_stream_buffer_overflow_is_an_event_and_counted(sdk):
    sdk.fake_reset(speed=10.0)
    et = sdk.fake_add_tracker(duration_s=3.0, overflow_at_s=1.0, overflow_samples=10)
    ev = Events()
    tr = make(sdk, ev)
    tr.open()
    tr.start()
    assert run_until(lambda: et.fake_done, timeout=20)
    time.sleep(0.05)
    tr.stop()
    ov = ev.of("buffer_overflow")
    assert len(ov) == 1 and ov[0]["source"] == sdk.EYETRACKER_GAZE_DATA
    assert tr.stream.counters.dropped == 10
    gap = ev.of("gap")
    assert len(gap) == 1 and gap[0]["reason"] == "buffer_overflow" and gap[0]["missing"] == 10
    assert tr.stats()["overflow_notifications"] == 1


def test_silent_stall_reported_and_resubscribed(sdk):
    sdk.fake_reset(speed=5.0)
    et = sdk.fake_add_tracker(duration_s=1.0)          # stops sending, no notification
    ev = Events()
    tr = make(sdk, ev, stall_timeout_s=0.2)
    tr.open()
    tr.start()
    assert run_until(lambda: len(ev.of("device_disconnect")) >= 1, timeout=10)
    assert run_until(lambda: tr.stats()["resubscriptions"] >= 1, timeout=5)
    assert "no gaze data" in tr.status
    tr.stop()
    d = ev.of("device_disconnect")[0]
    assert d["reason"].startswith("no gaze data for")
    gaps = ev.of("gap")
    assert gaps and gaps[-1]["reason"].startswith("no_data")
    assert len(tr.stream.latest(10**6)) == len(et.fake_delivered_gaze)


def test_callback_ring_overflow_counted(sdk):
    sdk.fake_add_tracker()
    ev = Events()
    tr = make(sdk, ev)
    tr.open()
    d = sdk.find_all_eyetrackers()[0]._gaze_sample(1_000_000, 5, 0, random.Random(0))
    n = tobii._RING + 500
    for i in range(n):                       # the device thread never ran: the ring wraps
        tr._on_gaze(dict(d, system_time_stamp=1_000_000 + 4000 * i))
    got = tr._drain_gaze()
    lost = n - (tobii._RING - tobii._SAFETY)
    assert got == n - lost
    assert tr.stream.counters.dropped == lost
    assert ev.of("buffer_overflow")[0]["dropped"] == lost
    t = tr.stream.latest(10**6)["system_time_stamp"]
    assert (np.diff(t) == 4000).all() and t[-1] == 1_000_000 + 4000 * (n - 1)


# ----------------------------------------------------------------------------- open / errors
def test_open_sets_frequency_and_reports_info(sdk):
    et = sdk.fake_add_tracker(frequency=120.0)
    tr = make(sdk)
    tr.open()
    assert et.get_gaze_output_frequency() == 250.0
    info = tr.info()
    for key in ("model", "serial_number", "firmware_version", "address", "frequencies_hz", "display_area",
                "capabilities", "sdk_version"):
        assert info[key], key
    assert info["frequencies_hz"] == [60.0, 120.0, 250.0] and info["frequency_hz"] == 250.0
    geo = DisplayGeometry.from_dict(info["display_area"])
    assert geo == tr.display_geometry()
    assert geo.width_mm == pytest.approx(531.0)
    assert info["eye_openness"] is False and tr.openness is None
    assert tr.stream.dtype == GAZE_DTYPE and tr.stream.nominal_rate_hz == 250.0
    assert not et._subs and not et._notif_subs            # open() subscribes nothing


@pytest.mark.parametrize("case", ["no_tracker", "bad_address", "bad_rate"])
def test_open_fails_with_one_clear_line(sdk, case):
    kw = {}
    if case != "no_tracker":
        sdk.fake_add_tracker()
    if case == "bad_address":
        kw["address"] = "tobii-prp://NOPE-1"
    if case == "bad_rate":
        kw["frequency"] = 600
    tr = make(sdk, **kw)
    with pytest.raises(DeviceUnavailable) as ei:
        tr.open()
    msg = str(ei.value)
    assert "\n" not in msg
    expect = {"no_tracker": "no Tobii eye tracker found",
              "bad_address": "tobii-prp://NOPE-1",
              "bad_rate": "offers 60, 120, 250 Hz, not 600 Hz"}[case]
    assert expect in msg
    if case == "bad_address":
        assert "TPFC2-010202524041" in msg                 # says which trackers exist
    assert tr.stream is None and not tr.online


def test_sdk_missing_reasons(monkeypatch):
    monkeypatch.setitem(sys.modules, "tobii_research", None)     # import fails with ModuleNotFoundError
    monkeypatch.setattr(tobii, "SDK_PYTHON", (2, 7))
    with pytest.raises(DeviceUnavailable, match=r"only for CPython 3\.10 and this is CPython"):
        TobiiTracker().open()
    st = sdk_status()
    assert not st.available and "CPython 3.10" in st.reason
    monkeypatch.setattr(tobii, "SDK_PYTHON", sys.version_info[:2])
    with pytest.raises(DeviceUnavailable, match=r"not installed .*pip install tobii-research"):
        TobiiTracker().open()
    broken = ImportError("libfoo.so: cannot open shared object file", name="tobiiresearch.interop.python3.x")
    assert "installed but failed to load" in tobii._why_no_sdk(broken)


def test_lazy_import_picks_up_the_module(sdk, monkeypatch):
    monkeypatch.setitem(sys.modules, "tobii_research", sdk)
    sdk.fake_add_tracker()
    assert sdk_status().available and sdk_status().version == sdk.__version__
    tr = TobiiTracker(clock=sdk.fake_clock())
    tr.open()
    assert tr.sdk is sdk


def test_find_trackers_describes_capabilities(sdk):
    sdk.fake_add_tracker(eye_openness=True)
    (t,) = find_trackers(sdk=sdk)
    assert t["model"] == "Tobii Pro Fusion" and t["eye_openness"] and t["screen_based_calibration"]
    assert t["frequencies_hz"] == [60.0, 120.0, 250.0] and t["errors"] == []


def test_eye_openness_when_offered_and_absent(sdk):
    sdk.fake_reset(speed=10.0)
    et = sdk.fake_add_tracker(eye_openness=True, duration_s=1.0)
    tr = make(sdk)
    tr.open()
    tr.start()
    assert run_until(lambda: et.fake_done, 20)
    time.sleep(0.05)
    tr.stop()
    o = tr.openness.latest(10**6)
    # openness is subscribed just before gaze and the fake streams from the first subscription,
    # so on a loaded machine openness can hold a sample or two from before the first gaze sample
    first_gaze = et.fake_delivered_gaze[0]
    assert (o["system_time_stamp"] < first_gaze).sum() <= 25
    o = o[o["system_time_stamp"] >= first_gaze]
    assert len(o) == len(et.fake_delivered_gaze) and (o["left_eye_openness_value"] > 0).all()
    assert tr.info()["eye_openness_recorded"] is True

    sdk.fake_reset(speed=10.0)
    et = sdk.fake_add_tracker(eye_openness=False, duration_s=0.5)
    tr = make(sdk)
    tr.open()
    tr.start()
    assert run_until(lambda: et.fake_done, 20)
    tr.stop()
    assert tr.openness is None and sdk.EYETRACKER_EYE_OPENNESS_DATA not in et.fake_subscribe_calls


def test_recording_keeps_eye_openness_and_clock_sync(sdk, tmp_path, capsys):
    """A Tobii session folder holds eye_openness.tsv and time_sync.tsv beside gaze.tsv, and
    session.json ends with the tracker's final clock sync (the fake's device clock runs 25 ppm
    fast); a torn last line of the new tables is cut by repair like gaze.tsv's."""
    from emer_live.devices.factory import DeviceSet
    from emer_live.recording import format as fmt
    from emer_live.recording.reader import SessionReader
    from emer_live.recording.repair import repair_session
    from emer_live.recording.writer import record_device_set

    sdk.fake_reset(speed=10.0)
    et = sdk.fake_add_tracker(eye_openness=True, duration_s=12.0, frequency=120.0)
    tr = make(sdk, frequency=120)
    ds = DeviceSet(clock=sdk.fake_clock(), tracker=tr)
    ds.open_all()
    rec = record_device_set(ds, tmp_path / "S", meta={"participant": "P01"})
    rec.start()
    ds.start_all()
    assert run_until(lambda: et.fake_done, 30)
    time.sleep(0.1)
    ds.stop_all()
    meta = rec.stop()

    r = SessionReader(tmp_path / "S")
    g, o, ts = r.gaze(), r.eye_openness(), r.time_sync()
    assert len(g) == len(et.fake_delivered_gaze) > 1000
    # one openness record per gaze sample (openness may start a sample or two earlier: see above)
    assert (o["system_time_stamp"] < g["system_time_stamp"][0]).sum() <= 25
    assert np.array_equal(o["system_time_stamp"][o["system_time_stamp"] >= g["system_time_stamp"][0]],
                          g["system_time_stamp"])
    assert (o["left_eye_openness_value"][o["left_eye_validity"] == 1] > 0).all()
    assert 10 <= len(ts) <= 14                                                     # one packet a second
    assert (np.diff(ts["t_us"]) > 0).all()
    cs = meta["devices"]["gaze"]["clock_sync"]                                    # the final, not the first, info
    assert cs["n"] == len(ts) and cs["drift_ppm"] == pytest.approx(25.0, abs=1.0)
    s = r.summary()["streams"]
    summary = r.summary()
    assert summary["tracker_clock_sync"]["packets"] == len(ts)
    assert summary["tracker_clock_sync"]["device_clock_drift_ppm"] == pytest.approx(25.0, abs=1.0)
    assert s["eye_openness"]["samples"] == len(o)
    from emer_live.cli import main
    assert main(["info", str(tmp_path / "S")]) == 0
    out = capsys.readouterr().out
    assert "eye_openness" in out and "time-sync packets" in out
    assert meta["written"]["eye_openness"] == len(o) and meta["written"]["time_sync"] == len(ts)

    # a crash mid-line in eye_openness.tsv: repair keeps every complete row and moves the rest
    p = tmp_path / "S" / fmt.EYE_OPENNESS_TSV
    with open(p, "ab") as f:
        f.write(b"123\t45")
    rep = repair_session(tmp_path / "S")
    assert any("eye openness" in x for x in rep.lost)
    assert len(SessionReader(tmp_path / "S").eye_openness()) == len(o)


def test_session_clock_offset_is_applied(sdk):
    sdk.fake_reset(speed=10.0)
    et = sdk.fake_add_tracker(duration_s=0.5)

    class Shifted:
        def now_us(self):
            return sdk.get_system_time_stamp() + 5_000_000

    tr = TobiiTracker(sdk=sdk, clock=Shifted(), frequency=250)
    tr.open()
    assert abs(tr.info()["time_offset_us"] - 5_000_000) < 1000
    tr.start()
    assert run_until(lambda: et.fake_done, 20)
    tr.stop()
    g = tr.stream.latest(10**6)
    assert len(g) and (g["t_us"] - g["system_time_stamp"] == tr.info()["time_offset_us"]).all()


def test_convert_accepts_sdk1_trackbox_keys(sdk):
    sdk.fake_add_tracker()
    tr = make(sdk)
    tr.open()
    base = sdk.find_all_eyetrackers()[0]._gaze_sample(10_000_000, 77, 0, random.Random(1))
    d = dict(base, left_gaze_origin_in_trackbox_coordinate_system=(0.4, 0.5, 0.6),
             right_gaze_origin_in_trackbox_coordinate_system=(0.6, 0.5, 0.6))
    r = tr._convert([d, d])
    assert r["left_gaze_origin_in_trackbox_coordinate_system_z"][1] == pytest.approx(0.6)
    assert r["right_gaze_point_on_display_area_x"][0] == pytest.approx(base["right_gaze_point_on_display_area"][0])
    assert r["device_time_stamp"][0] == 77 and r["t_us"][0] == 10_000_000


def test_record_with_tobii_fails_cleanly_without_sdk_or_tracker(tmp_path, capsys):
    """`emer-live record --tracker tobii` here (no SDK on 3.11; no tracker on the 3.10 lane): one
    line, exit code 3, nothing written."""
    from emer_live.cli import main

    out = tmp_path / "P01" / "S1"
    rc = main(["record", "--tracker", "tobii", "--camera", "none", "--duration", "1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == DeviceUnavailable.exit_code == 3
    assert len(err) == 1 and err[0].startswith("emer-live: error: Tobii tracker unavailable:")
    assert not out.exists() and not (tmp_path / "P01").exists()
