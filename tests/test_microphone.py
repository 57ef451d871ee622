"""MicrophoneDevice: block stamping from synthetic PortAudio callbacks, device resolution against
a fake sounddevice module, the truth on this machine, and a paced PulseAudio null-sink input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from emer_live.devices.microphone import MicrophoneDevice, audio_status, list_input_devices
from emer_live.errors import DeviceUnavailable

RATE, BLOCK = 48000, 1024
BLOCK_US = BLOCK * 1e6 / RATE            # 21333.3 us


class ManualClock:
    def __init__(self):
        self.t = 0

    def now_us(self):
        return self.t


class FakeInputStream:
    def __init__(self, **kw):
        self.kw = kw
        self.latency = 0.042
        self.started = self.closed = False

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


class FakeSD:
    """The parts of the sounddevice module the device uses."""

    class PortAudioError(Exception):
        pass

    def __init__(self, devices, default_input=-1, refuse_rate=None):
        self._devices = devices
        self.default = SimpleNamespace(device=[default_input, -1])
        self.refuse_rate = refuse_rate
        self.streams = []

    def query_devices(self, device=None, kind=None):
        if device is None:
            return list(self._devices)
        matches = [i for i, d in enumerate(self._devices)
                   if (device == i if isinstance(device, int) else device.lower() in d["name"].lower())
                   and (kind != "input" or d["max_input_channels"] > 0)]
        if len(matches) != 1:
            raise ValueError(f"No input device matching {device!r}" if not matches else "Multiple input devices")
        return dict(self._devices[matches[0]], index=matches[0])

    def query_hostapis(self, index=None):
        apis = ({"name": "ALSA"},)
        return apis if index is None else apis[index]

    def check_input_settings(self, device, channels, samplerate, dtype):
        if samplerate == self.refuse_rate:
            raise self.PortAudioError("Invalid sample rate [PaErrorCode -9997]")

    def get_portaudio_version(self):
        return (1, "fake PortAudio")

    def InputStream(self, **kw):
        s = FakeInputStream(**kw)
        self.streams.append(s)
        return s


def dev_entry(name, ins, rate=48000.0):
    return {"name": name, "hostapi": 0, "max_input_channels": ins, "max_output_channels": 2,
            "default_samplerate": rate}


DEVICES = [dev_entry("HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2), dev_entry("HDMI 0", 0),
           dev_entry("USB Microphone (hw:1,0)", 1), dev_entry("pulse", 32), dev_entry("default", 32)]


def opened(sd=None, **kw):
    sd = sd or FakeSD(DEVICES, default_input=4)
    clock = ManualClock()
    mic = MicrophoneDevice(sd=sd, clock=clock, on_event=kw.pop("on_event", None), **kw)
    mic.open()
    return mic, clock, sd


def feed(mic, clock, capture_us, deliver_us, *, pa_epoch=1795305871.0, adc=True, overflow_at=()):
    """Call the PortAudio callback as PortAudio would: block k captured at capture_us[k] (session
    clock), delivered at deliver_us[k]; PortAudio's clock has another epoch."""
    for k, (tc, td) in enumerate(zip(capture_us, deliver_us)):
        clock.t = int(td)
        info = SimpleNamespace(currentTime=pa_epoch + td / 1e6,
                               inputBufferAdcTime=(pa_epoch + tc / 1e6) if adc else 0.0)
        status = SimpleNamespace(input_overflow=k in overflow_at)
        mic._callback(np.full((BLOCK, 1), k, np.float32), BLOCK, info, status)
        if k % 7 == 6:
            mic._drain()
    mic._drain()
    return mic.stream.latest(10**6)


def test_adc_time_mapping_is_exact():
    mic, clock, _ = opened()
    k = np.arange(200)
    cap = 5_000_000 + k * BLOCK_US
    rng = np.random.default_rng(0)
    dlv = cap + BLOCK_US + 30_000 + rng.uniform(0, 8000, len(k))       # latency + scheduling jitter
    r = feed(mic, clock, cap, dlv)
    assert np.abs(r["t_us"] - cap).max() <= 2
    assert (r["block_index"] == k).all() and (r["samples"][:, 0, 0] == k).all() and (r["n"] == BLOCK).all()
    assert mic.fallback_blocks == 0 and mic.stream.counters.gaps == 0


def test_zero_adc_time_falls_back_on_callback_time():
    mic, clock, _ = opened()
    k = np.arange(300)
    cap = 1_000_000 + k * BLOCK_US
    rng = np.random.default_rng(1)
    jitter = rng.uniform(0, 6000, len(k))
    dlv = cap + BLOCK_US + 20_000 + jitter
    r = feed(mic, clock, cap, dlv, adc=False)
    assert mic.fallback_blocks == 300
    t = r["t_us"]
    d = np.diff(t)
    assert (d > 0).all() and np.abs(d - BLOCK_US).max() < 0.051 * BLOCK_US     # smooth, slew-limited
    # after the window filled, stamps sit at capture + latency + median jitter (block duration removed)
    late = slice(100, None)
    err = t[late] - (cap[late] + 20_000 + np.median(jitter))
    assert np.abs(err).max() < 2500


def test_soundcard_drift_is_followed():
    mic, clock, _ = opened(capacity_s=40)
    k = np.arange(1500)                                   # 32 s
    cap = 2_000_000 + k * BLOCK_US * (1 + 100e-6)         # the card's clock runs 100 ppm slow
    dlv = cap + BLOCK_US + 25_000
    r = feed(mic, clock, cap, dlv)
    # the 64-block median lags a linear drift by ~32 blocks: 32 * 2.13 us = 68 us (3 samples); the
    # blocks held at start-up share one offset, off by up to ~50 blocks of drift (~100 us)
    assert np.abs(r["t_us"][100:] - cap[100:]).max() < 80
    assert np.abs(r["t_us"] - cap).max() < 150
    assert abs(np.polyfit(k, r["t_us"], 1)[0] / BLOCK_US - (1 + 100e-6)) < 2e-6     # the rate is followed


def test_overflow_reanchors_and_shows_as_gap():
    """Block 50 comes while the first 64 blocks are still held for the offset to settle."""
    events = []
    mic, clock, _ = opened(on_event=lambda t, k, d: events.append((k, d)))
    k = np.arange(100)
    cap = 3_000_000 + (k + 5 * (k >= 50)) * BLOCK_US      # 5 blocks of samples lost before block 50
    dlv = cap + BLOCK_US + 30_000
    r = feed(mic, clock, cap, dlv, overflow_at={50})
    assert np.abs(r["t_us"] - cap).max() <= 2
    c = mic.stream.counters
    assert mic.overflows == 1 and c.dropped == 1 and c.gaps == 1 and c.missing == 5
    assert [d["source"] for kind, d in events if kind == "buffer_overflow"] == ["portaudio input overflow"]
    assert mic.reanchors == 1


def test_unflagged_loss_is_detected():
    mic, clock, _ = opened()
    k = np.arange(200)
    cap = 3_000_000 + (k + 5 * (k >= 100)) * BLOCK_US     # 5 blocks lost before block 100, no flag
    dlv = cap + BLOCK_US + 30_000
    r = feed(mic, clock, cap, dlv)
    t = r["t_us"]
    assert (np.diff(t) > 0).all()
    assert mic.reanchors == 1 and mic.stream.counters.gaps == 1
    assert np.abs(t[:100] - cap[:100]).max() <= 2 and np.abs(t[107:] - cap[107:]).max() <= 2
    assert (cap[100:107] - t[100:107]).max() < 5.1 * BLOCK_US     # early by at most the loss


def test_device_resolution_and_reasons():
    mic, _, sd = opened()
    assert mic.device_info["name"] == "default" and sd.streams[0].kw["samplerate"] == 48000
    assert sd.streams[0].kw["blocksize"] == 1024 and sd.streams[0].kw["channels"] == 1
    mic, _, _ = opened(device="usb")
    assert mic.device_info["index"] == 2 and mic.info()["device_name"].startswith("USB Microphone")
    mic, _, _ = opened(device=0, channels=2)
    assert mic.info()["channels"] == 2 and mic.stream.dtype["samples"].shape == (1024, 2)
    with pytest.raises(DeviceUnavailable, match=r"'nope' not found .*inputs: 0: HDA"):
        opened(device="nope")
    with pytest.raises(DeviceUnavailable, match="has 1 channel"):
        opened(device="usb", channels=2)
    with pytest.raises(DeviceUnavailable, match="cannot record 44100 Hz"):
        opened(sd=FakeSD(DEVICES, default_input=4, refuse_rate=44100), rate_hz=44100)
    with pytest.raises(DeviceUnavailable, match="no audio input device .*--mic none"):
        opened(sd=FakeSD([dev_entry("HDMI 0", 0)]))
    # no default input set: the first input is used
    mic, _, _ = opened(sd=FakeSD(DEVICES, default_input=-1))
    assert mic.device_info["index"] == 0
    st = audio_status(sd=FakeSD(DEVICES, default_input=4))
    assert st["available"] and [d["index"] for d in st["inputs"]] == [0, 2, 3, 4]
    assert [d["default"] for d in list_input_devices(sd=FakeSD(DEVICES, default_input=4))] == [0, 0, 0, 1]


def test_start_stop_and_silence_watchdog():
    events = []
    mic, clock, sd = opened(on_event=lambda t, k, d: events.append((k, d)), stall_timeout_s=0.1)
    mic.start()
    assert sd.streams[0].started
    t0 = time.monotonic()
    while not any(k == "device_disconnect" for k, _ in events) and time.monotonic() - t0 < 5:
        time.sleep(0.02)
    assert any(k == "device_disconnect" for k, _ in events)         # no callbacks at all -> reported
    while mic.restarts < 1 and time.monotonic() - t0 < 5:
        time.sleep(0.02)
    assert mic.restarts >= 1 and len(sd.streams) >= 2 and sd.streams[0].closed
    feed(mic, clock, [1e6], [1e6 + 50_000])                          # audio again
    t1 = time.monotonic()
    while not any(k == "device_connect" for k, _ in events) and time.monotonic() - t1 < 5:
        time.sleep(0.02)
    mic.stop()
    assert any(k == "device_connect" for k, _ in events)
    assert all(s.closed for s in sd.streams)


def test_bad_arguments():
    for kw in ({"rate_hz": 10}, {"channels": 0}, {"blocksize": 3}, {"device": 1.5}):
        with pytest.raises(ValueError):
            MicrophoneDevice(**kw)


def test_this_machine_tells_the_truth():
    """Whatever PortAudio lists here decides: no inputs -> DeviceUnavailable with the reason."""
    sd = pytest.importorskip("sounddevice")
    inputs = [d for d in sd.query_devices() if d["max_input_channels"] > 0]
    mic = MicrophoneDevice()
    if inputs:
        mic.open()
        mic.stop()
    else:
        with pytest.raises(DeviceUnavailable, match="no audio input device"):
            mic.open()
        assert mic.stream is None


# ----------------------------------------------------------------------------- PulseAudio
PROBE = textwrap.dedent("""
    import json, time, numpy as np
    from emer_live.devices.microphone import MicrophoneDevice, audio_status
    st = audio_status()
    mic = MicrophoneDevice(device="pulse")
    mic.open()
    t_start = mic.clock.now_us()
    mic.start()
    t0 = time.monotonic()
    while mic.blocks < 150 and time.monotonic() - t0 < 20:
        time.sleep(0.05)
    mic.stop()
    t_stop = mic.clock.now_us()
    r = mic.stream.latest(10**6)
    print(json.dumps({"inputs": [d["name"] for d in st["inputs"]], "blocks": int(len(r)),
        "dt": np.diff(r["t_us"]).tolist(), "t_first": int(r["t_us"][0]), "t_last": int(r["t_us"][-1]),
        "t_start": t_start, "t_stop": t_stop, "absmax": float(np.abs(r["samples"]).max()),
        "counters": mic.stream.counters.as_dict(), "info": mic.info()}))
""")


@pytest.fixture
def pulse_env(tmp_path):
    exe = shutil.which("pulseaudio")
    if exe is None:
        pytest.skip("pulseaudio is not installed (scripts/system-deps.sh installs it)")
    home, run = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    run.mkdir(mode=0o700)
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(run))
    env.pop("PULSE_SERVER", None)
    proc = subprocess.Popen(
        [exe, "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--log-level=error",
         "-L", "module-native-protocol-unix", "-L", "module-null-sink sink_name=null rate=48000",
         "-L", "module-always-sink"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sock = run / "pulse" / "native"
    t0 = time.monotonic()
    while not sock.exists() and proc.poll() is None and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    if not sock.exists():
        proc.kill()
        raise RuntimeError(f"pulseaudio did not start: {proc.stderr.read().decode(errors='replace')[-500:]}")
    yield env
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_paced_pulseaudio_null_sink_input(pulse_env):
    out = subprocess.run([sys.executable, "-c", PROBE], env=pulse_env, capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert "pulse" in res["inputs"]
    assert res["blocks"] >= 150
    dt = np.array(res["dt"])
    assert abs(np.median(dt) - BLOCK_US) < 0.01 * BLOCK_US            # paced at 48 kHz
    assert (dt > 0).all()
    # every gap is a loss the device detected (none on an idle machine; PulseAudio drops audio
    # without a flag when the CPU is starved)
    assert res["counters"]["gaps"] <= res["info"]["stamp_reanchors"]
    assert res["counters"]["dropped"] == res["info"]["overflows"]
    assert res["t_start"] <= res["t_first"] and res["t_last"] <= res["t_stop"]
    assert res["absmax"] < 1e-3                                        # the null sink's monitor is silent
    assert res["info"]["device_name"] == "pulse"
