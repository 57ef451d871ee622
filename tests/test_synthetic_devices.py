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


# ------------------------------------------------------------------ a stalled host (defect 17.8)
class _JumpClock(SessionClock):
    """A real-time clock that can leap forward: what the device thread sees after the host
    starved it for ``dt`` seconds."""

    def __init__(self) -> None:
        super().__init__(use_sdk=False)
        self.offset_us = 0

    def now_us(self) -> int:
        return super().now_us() + self.offset_us


def _run_with_stall(make, stall_us: int, before_s: float = 0.3, after_s: float = 0.3):
    """Start ``make(clock, on_event)``, let it run, starve it for ``stall_us`` (the clock leaps),
    let it run again and stop it; returns the device and the events it sent."""
    clock, got = _JumpClock(), []
    dev = make(clock, lambda t, kind, detail: got.append((t, kind, detail)))
    dev.open()
    dev.start()
    time.sleep(before_s)
    clock.offset_us += stall_us
    time.sleep(after_s)
    dev.stop()
    assert dev.error is None
    return dev, got


def _tracker(clock, sink):
    return SyntheticTracker(Phantom(seed=2, participant="P02"), rate_hz=250, clock=clock, on_event=sink)


def test_tracker_stall_longer_than_its_buffer_shows_as_a_counted_reported_gap():
    """Before: samples were back-filled with regular stamps after any stall, so a starved host
    never showed a gaze gap. Now the 1 s device buffer is kept; older samples are lost - counted,
    reported and visible as a gap - and nothing gets an invented stamp."""
    dev, got = _run_with_stall(_tracker, 3_000_000)     # the thread was starved for 3 s
    g = dev.stream.latest(10**6)
    t = g["t_us"]
    k = (t - dev.t0_us) * 250 // 1_000_000        # every stamp is still on the nominal grid
    np.testing.assert_array_equal(t, dev.t0_us + (k * 1_000_000 + 125) // 250)
    c = dev.stream.counters
    assert c.gaps == 1 and c.non_monotonic == 0
    # 3 s stall - 1 s buffer = 2 s at 250 Hz, plus whatever the wake-up after the leap was late
    assert 500 <= c.missing <= 550
    assert c.dropped == dev.samples_lost == c.missing
    assert len(g) + dev.samples_lost == dev.samples_generated
    kinds = [kind for _, kind, _ in got]
    assert kinds == ["buffer_overflow", "gap"]
    gap = got[1][2]
    assert gap["missing"] == c.missing and gap["stream"] == "gaze"
    # the event's hole is the stream's: from the first lost sample to the first kept one
    assert abs(np.diff(t).max() - (gap["t_end_us"] - gap["t_start_us"]) - 4000) <= 1
    # the kept samples are what the phantom's eyes did at those times
    off = Phantom(seed=2, participant="P02").gaze_at(t)
    for name in GAZE_DTYPE.names:
        np.testing.assert_array_equal(g[name], off[name], err_msg=name)


def test_tracker_stall_within_its_buffer_loses_nothing():
    dev, got = _run_with_stall(_tracker, 600_000, 0.2, 0.2)
    c = dev.stream.counters
    assert c.gaps == 0 and c.dropped == 0 and got == []
    assert len(dev.stream.latest(10**6)) == dev.samples_generated


def _hold_gil(seconds: float) -> None:
    """Keep every other Python thread from running for ``seconds`` (a starved host)."""
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        end, x = time.monotonic() + seconds, 0
        while time.monotonic() < end:          # pure Python: keeps the GIL
            x += 1
    finally:
        sys.setswitchinterval(old)


def test_tracker_samples_from_start_until_stop_even_when_its_thread_is_late():
    """The device samples from start() to stop(), whatever its thread's timing: a thread that
    first runs 0.3 s late delivers the start from its buffer (before: the first stamp was when
    the thread first ran), and the samples up to the stop are delivered too."""
    dev = SyntheticTracker(Phantom(seed=5, participant="P05"), rate_hz=120)
    dev.open()
    t_start = dev.clock.now_us()
    dev.start()
    _hold_gil(0.3)                              # the new thread cannot run yet
    time.sleep(0.2)
    t_stop = dev.clock.now_us()
    dev.stop()
    t = dev.stream.latest(10**6)["t_us"]
    assert t[0] == dev.t0_us and 0 <= t[0] - t_start < 20_000
    assert dev.stream.counters.gaps == 0 and dev.samples_lost == 0
    assert t[-1] >= t_stop - 1_000_000 // 120      # the last wake-up before the stop is not the end


def test_gil_starved_tracker_reports_the_loss():
    """A real starvation, not a clock trick: the main thread holds the GIL for 2 s, so the
    tracker thread cannot run; with a 0.5 s buffer ~1.5 s is lost and shows as one gap of the
    counted size."""
    dev = SyntheticTracker(Phantom(seed=3, participant="P03"), rate_hz=250, max_lag_s=0.5)
    dev.open()
    dev.start()
    time.sleep(0.2)
    _hold_gil(2.0)
    time.sleep(0.2)
    dev.stop()
    c = dev.stream.counters
    assert c.gaps >= 1 and c.dropped == dev.samples_lost > 0
    assert c.missing == c.dropped                  # what the stream saw missing is what was reported
    assert 250 * 1.0 <= dev.samples_lost <= 250 * 2.0


def test_mic_stall_longer_than_its_buffer_is_counted_and_the_sound_stays_continuous():
    dev, got = _run_with_stall(lambda clock, sink: SyntheticMic(seed=3, rate_hz=16000, blocksize=512, clock=clock,
                                                                on_event=sink), 2_500_000)
    recs = dev.stream.latest(10**6)
    c = dev.stream.counters
    assert c.gaps == 1 and c.dropped == dev.blocks_lost == c.missing
    assert 1.5 * 16000 / 512 - 1 <= dev.blocks_lost <= 1.7 * 16000 / 512    # 2.5 s stall - 1 s buffer
    assert [k for _, k, _ in got] == ["buffer_overflow", "gap"]
    assert len(recs) + dev.blocks_lost == dev.blocks_generated
    # kept blocks carry the offline signal at their own sample positions
    full = synthetic_audio(seed=3, n_samples=dev.blocks_generated * 512, rate_hz=16000)
    for r in recs[::7]:
        b = int(r["block_index"])
        np.testing.assert_array_equal(r["samples"], full[b * 512:(b + 1) * 512])


def test_mic_blocks_longer_than_the_buffer_are_delivered():
    """A block is due at its end: its age counts from its last sample, so 1.37 s blocks with a
    1 s buffer are delivered, not all lost."""
    dev = SyntheticMic(seed=1, rate_hz=48000, blocksize=65536)
    _run(dev, 3.2)
    assert dev.blocks_lost == 0 and dev.stream.counters.dropped == 0
    assert len(dev.stream.latest(10**6)) == dev.blocks_generated >= 2


def test_buffer_is_real_time_on_a_fast_replay_clock():
    """On a clock running 50x real time the 1 s buffer holds 50 s of session time: the wake-ups
    (10 ms real = 0.5 s session) lose nothing."""
    clock = ReplayClock(0, speed=50.0)
    tr = SyntheticTracker(Phantom(seed=1, participant="P01"), rate_hz=250, clock=clock)
    mic = SyntheticMic(seed=1, rate_hz=16000, blocksize=512, clock=clock)
    for dev in (tr, mic):
        _run(dev, 0.5)
        assert dev.stream.counters.dropped == 0 and dev.stream.counters.gaps == 0
    assert tr.samples_lost == 0 and tr.samples_generated > 250 * 15


def test_mic_after_a_long_sleep_skips_instead_of_rendering_and_stops_promptly():
    """A laptop asleep for 20 minutes: the lost audio is counted, not rendered (seconds of CPU),
    and the device goes on at once."""
    t = time.perf_counter()
    dev, got = _run_with_stall(lambda clock, sink: SyntheticMic(seed=3, rate_hz=48000, blocksize=1024, clock=clock,
                                                                on_event=sink), 20 * 60 * 1_000_000)
    assert time.perf_counter() - t < 3.0          # 0.6 s of sleeps + a little work, not 20 min of audio
    assert abs(dev.blocks_lost - (20 * 60 - 1) * 48000 / 1024) <= 0.05 * 48000 / 1024 * 60
    recs = dev.stream.latest(10**6)
    assert dev.stream.counters.gaps == 1 and len(recs) > 0
    assert np.isfinite(recs["samples"]).all() and np.abs(recs["samples"]).max() <= 1.0


def test_a_running_device_refuses_a_second_start():
    dev = SyntheticTracker(Phantom(seed=1, participant="P01"), rate_hz=60)
    dev.open()
    dev.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            dev.start()
    finally:
        dev.stop()


def test_synthetic_devices_refuse_a_bad_buffer():
    for bad in (0, -1, 0.001, float("nan"), float("inf"), 61, "1", True):
        with pytest.raises(ConfigError):
            SyntheticTracker(Phantom(seed=1, participant="P01"), max_lag_s=bad)
        with pytest.raises(ConfigError):
            SyntheticMic(seed=1, max_lag_s=bad)
