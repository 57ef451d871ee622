"""Synthetic tracker and microphone: the Device contract, exact rates on a live clock, and the same
samples as their offline twins."""

from __future__ import annotations

import time

import numpy as np
import pytest

from emer_live.clock import ReplayClock, SessionClock
from emer_live.devices.base import Device
from emer_live.devices.synthetic import SyntheticMic, SyntheticTracker, synthetic_audio
from emer_live.errors import ConfigError
from emer_live.phantom import Phantom
from emer_live.schema import GAZE_DTYPE, audio_block_dtype


def _run(device: Device, seconds: float) -> None:
    device.open()
    assert device.online and device.stream is not None
    device.start()
    assert device.running
    time.sleep(seconds)
    device.stop(timeout=2.0)
    assert not device.running and device.status == "stopped"
    assert device.error is None


def test_tracker_exact_rate_on_the_real_clock_and_same_samples_as_offline():
    ph = Phantom(seed=4, participant="P04")
    dev = SyntheticTracker(ph, rate_hz=250, clock=SessionClock(use_sdk=False))
    _run(dev, 2.0)
    g = dev.stream.latest(10**6)
    assert g.dtype == GAZE_DTYPE
    assert len(g) >= 400                                     # ~2 s at 250 Hz, nothing lost
    assert len(g) == dev.samples_generated
    assert g["t_us"][0] == dev.t0_us
    np.testing.assert_array_equal(np.diff(g["t_us"]), 4000)   # exact nominal spacing, strictly increasing
    np.testing.assert_array_equal(g["system_time_stamp"], g["t_us"])
    c = dev.stream.counters
    assert c.gaps == 0 and c.missing == 0 and c.non_monotonic == 0
    assert np.all(np.diff(g["device_time_stamp"]) > 0)
    # the thread's samples are what the offline generator gives for the same times
    twin = Phantom(seed=4, participant="P04")
    off = twin.gaze_at(g["t_us"])
    for name in GAZE_DTYPE.names:
        np.testing.assert_array_equal(g[name], off[name], err_msg=name)


@pytest.mark.parametrize("rate", [60, 120])
def test_tracker_other_rates(rate):
    dev = SyntheticTracker(Phantom(seed=1, participant="P01"), rate_hz=float(rate))
    _run(dev, 0.4)
    t = dev.stream.latest(10**6)["t_us"]
    assert len(t) >= 0.3 * rate
    d = np.diff(t)
    assert set(np.unique(d)) <= {1_000_000 // rate, 1_000_000 // rate + 1}
    # no accumulated rounding: sample k sits at t0 + round(k * 1e6 / rate)
    k = np.arange(len(t))
    np.testing.assert_array_equal(t, t[0] + (k * 1_000_000 + rate // 2) // rate)
    assert dev.stream.nominal_rate_hz == rate


def test_tracker_refuses_bad_settings():
    ph = Phantom(seed=1, participant="P01")
    for bad in (100, 0, -250, "fast", None):
        with pytest.raises(ConfigError):
            SyntheticTracker(ph, rate_hz=bad)
    with pytest.raises(ConfigError):
        SyntheticTracker(ph, clock=ReplayClock(0, speed=None))
    with pytest.raises(ConfigError):
        SyntheticTracker(object())
    SyntheticTracker(ph, clock=ReplayClock(0, speed=1.0))    # a real-time replay clock is live


def test_tracker_info():
    a = SyntheticTracker(Phantom(seed=1, participant="P01"), rate_hz=120)
    b = SyntheticTracker(Phantom(seed=1, participant="P02"), rate_hz=120)
    ia, ib = a.info(), b.info()
    assert ia["model"] == "Synthetic Pro Fusion" and ia["kind"] == "tracker"
    assert ia["serial_number"] != ib["serial_number"]
    assert ia["serial_number"] == SyntheticTracker(Phantom(seed=9, participant="P01")).info()["serial_number"]
    assert ia["frequency_hz"] == 120.0 and ia["nominal_rate_hz"] == 120.0
    assert ia["display_area"] == a.phantom.display.to_dict()
    assert ia["phantom"]["seed"] == 1 and ia["phantom"]["participant"] == "P01"


def test_tracker_and_camera_threads_read_one_phantom_consistently():
    """The face is read (as the synthetic camera does) while the tracker thread runs."""
    ph = Phantom(seed=6, participant="P06")
    dev = SyntheticTracker(ph, rate_hz=250)
    dev.open()
    dev.start()
    states = []
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        t = dev.clock.now_us()
        states.append((t, ph.face_state(t).eye_openness))
        time.sleep(1 / 30)
    dev.stop()
    assert dev.error is None and len(states) > 10
    blinks = ph.blinks(0, 2**62)
    for t, openness in states:
        inside = np.any((blinks[:, 0] <= t) & (t < blinks[:, 1])) if len(blinks) else False
        if inside:
            assert openness <= 0.41


def test_mic_blocks_at_nominal_times_and_same_sound_as_offline():
    dev = SyntheticMic(seed=3, rate_hz=16000, blocksize=512, channels=2)
    _run(dev, 1.5)
    recs = dev.stream.latest(10**6)
    assert recs.dtype == audio_block_dtype(512, 2)
    assert len(recs) >= 0.9 * 1.0 * 16000 / 512
    np.testing.assert_array_equal(recs["block_index"], np.arange(len(recs)))
    b = np.arange(len(recs))
    np.testing.assert_array_equal(recs["t_us"], recs["t_us"][0] + (b * 512 * 1_000_000 + 8000) // 16000)
    assert np.all(recs["n"] == 512)
    assert dev.stream.counters.gaps == 0
    x = recs["samples"].reshape(-1, 2)
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0
    assert 1e-4 < np.sqrt(np.mean(x ** 2)) < 0.05                        # quiet room
    np.testing.assert_array_equal(x, synthetic_audio(seed=3, n_samples=len(x), rate_hz=16000, channels=2))
    info = dev.info()
    assert info["sample_rate_hz"] == 16000 and info["blocksize"] == 512 and info["channels"] == 2


def test_mic_sound_has_room_noise_and_occasional_events():
    x = synthetic_audio(seed=1, n_samples=16000 * 40, rate_hz=16000)[:, 0].astype(float)
    assert not np.array_equal(x, synthetic_audio(seed=2, n_samples=len(x), rate_hz=16000)[:, 0])
    frames = x[: len(x) // 800 * 800].reshape(-1, 800)            # 50 ms frames
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    assert np.max(rms) > 4 * np.median(rms)                         # sounds stand out of the noise floor
    assert np.mean(rms > 2 * np.median(rms)) < 0.5                  # ... occasionally
    spec = np.abs(np.fft.rfft(x[:65536])) ** 2
    f = np.fft.rfftfreq(65536, 1 / 16000)
    assert spec[(f > 50) & (f < 200)].mean() > 5 * spec[(f > 4000) & (f < 6000)].mean()   # pink-ish
    # block size does not change the signal
    s1 = SyntheticMic(seed=1, rate_hz=16000, blocksize=256)
    s1.open()
    y = np.concatenate([s1._sound.render(256) for _ in range(20)])[:, 0]
    np.testing.assert_array_equal(y, x[: len(y)])


def test_mic_refuses_bad_settings():
    for kw in ({"rate_hz": 100}, {"blocksize": 3}, {"channels": 0}, {"channels": 1.5}, {"seed": -1}):
        with pytest.raises(ConfigError):
            SyntheticMic(**{"seed": 1, **kw})
    with pytest.raises(ConfigError):
        SyntheticMic(seed=1, clock=ReplayClock(0, speed=None))


def test_tracker_samples_follow_state_changes_made_while_it_runs():
    """Trial start/end and luminance changes from another thread: what the tracker delivered equals
    an offline phantom given the same changes at the same (effective) times."""
    ph = Phantom(seed=8, participant="P08", mask_rate=0.0)
    dev = SyntheticTracker(ph, rate_hz=250)
    dev.open()
    dev.start()
    time.sleep(0.4)
    tt = ph.begin_trial(0, dev.clock.now_us(), category="fear")
    time.sleep(0.4)
    t_lum = ph.set_stimulus_luminance(dev.clock.now_us(), 0.95)
    time.sleep(0.4)
    t_end = ph.end_trial(dev.clock.now_us()).t_end_us
    time.sleep(0.3)
    dev.stop()
    assert dev.error is None
    g = dev.stream.latest(10**6)
    t = g["t_us"]
    twin = Phantom(seed=8, participant="P08", mask_rate=0.0)
    parts = [twin.gaze_at(t[t < tt.t_start_us])]
    assert twin.begin_trial(0, tt.t_start_us, category="fear").t_start_us == tt.t_start_us
    parts.append(twin.gaze_at(t[(t >= tt.t_start_us) & (t < t_lum)]))
    twin.set_stimulus_luminance(t_lum, 0.95)
    parts.append(twin.gaze_at(t[(t >= t_lum) & (t < t_end)]))
    twin.end_trial(t_end)
    parts.append(twin.gaze_at(t[t >= t_end]))
    off = np.concatenate(parts)
    for name in GAZE_DTYPE.names:
        np.testing.assert_array_equal(g[name], off[name], err_msg=name)
    assert ph.trial_truth(0) == twin.trial_truth(0)
