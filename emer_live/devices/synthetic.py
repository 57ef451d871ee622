"""Synthetic eye tracker and microphone: hardware-free devices behind the :class:`Device` contract.

:class:`SyntheticTracker` streams the phantom's gaze (:mod:`emer_live.phantom`) at an exact
nominal rate; :class:`SyntheticMic` streams room noise with occasional sounds. The synthetic
camera lives in :mod:`emer_live.devices.synthetic_camera`.

Both run on a *live* clock only (a :class:`~emer_live.clock.SessionClock`, or a
:class:`~emer_live.clock.ReplayClock` with a finite speed): the device starts sampling when
``start()`` is called, and its thread wakes every ~10 ms and delivers every record whose nominal
time has passed, so the rate is exact and time stamps sit on the nominal grid.

Like real hardware they buffer only so much (``max_lag_s``, default 1 s): a thread starved of
the CPU for longer (a loaded machine) finds its oldest records gone. Those are never delivered
with invented stamps; they are counted (``counters.dropped``, ``samples_lost``/``blocks_lost``),
reported as a ``buffer_overflow`` event and a ``gap`` event over the hole, and the stream's gap
counter sees the jump (not for a loss before the very first record: nothing precedes it, and the
run's loss summary counts it from the run's origin) - so a load test sees what a starved host
would lose. The buffer is real time: on a replay clock running ``speed`` times faster it holds
``speed`` times more session time.

A ``ReplayClock(speed=None)`` never advances by itself and is refused with a ConfigError;
for offline data use :meth:`Phantom.generate_gaze` and :func:`synthetic_audio` instead.
"""

from __future__ import annotations

import abc
import zlib
from typing import List, Optional

import numpy as np

from ..clock import ReplayClock, SessionClock
from ..errors import ConfigError
from ..schema import GAZE_DTYPE, audio_block_dtype
from ..streams import Stream
from .base import Device, EventSink, buffer_on_clock_us

__all__ = ["SyntheticTracker", "SyntheticMic", "synthetic_audio", "TRACKER_RATES_HZ"]

TRACKER_RATES_HZ = (60, 120, 250)   # what a Tobii Pro Fusion offers
_WAKE_S = 0.01
_MAX_CHUNK_S = 0.5
_LOOKAHEAD_S = 0.06
_RENDER_LOST_S = 10.0        # lost audio up to this long is rendered and discarded (continuity)


def _check_live_clock(clock: Optional[SessionClock], what: str) -> None:
    if isinstance(clock, ReplayClock) and clock.as_fast_as_possible:
        raise ConfigError(f"{what} runs on a live clock; a ReplayClock(speed=None) never advances by itself - "
                          f"use a real-time clock, or generate data offline (Phantom.generate_gaze, synthetic_audio)")


_MIN_LAG_S = 5 * _WAKE_S     # a buffer shorter than a few wake-ups would lose data on every wake


def _check_lag(max_lag_s) -> None:
    if isinstance(max_lag_s, bool) or not isinstance(max_lag_s, (int, float)) or \
            not _MIN_LAG_S <= max_lag_s <= 60:
        raise ConfigError(f"max_lag_s must be within {_MIN_LAG_S:g}..60 seconds, got {max_lag_s!r}")


def _nominal_times(t0: int, k0: int, k1: int, num: int, den: int) -> np.ndarray:
    """``t0 + round(k * num / den)`` for ``k0 <= k < k1`` (integer arithmetic, exact)."""
    k = np.arange(k0, k1, dtype=np.int64)
    return t0 + (k * num + den // 2) // den


class _PacedDevice(Device):
    """What the synthetic tracker and microphone share: sampling starts when :meth:`start` is
    called - whenever the thread first gets the CPU, so a late thread delivers the start from its
    buffer or reports it lost, never shifting the time base - and the thread delivers what is due
    every ``_WAKE_S``, once more at the stop. Subclasses give ``_reset`` and ``_deliver(now)``."""

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        if self.stream is None:
            self.open()
        self._lag_us = buffer_on_clock_us(self.max_lag_s, self.clock)
        self.t0_us = self.clock.now_us()
        self._reset()
        super().start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._deliver(self.clock.now_us())
            self._stop.wait(_WAKE_S)
        self._deliver(self.clock.now_us())     # what was sampled up to the stop is delivered too

    @abc.abstractmethod
    def _reset(self) -> None:
        """Forget the previous run's position (called by start, before the thread runs)."""

    @abc.abstractmethod
    def _deliver(self, now: int) -> None:
        """Deliver what is due by ``now``; count and report what the buffer lost."""


class SyntheticTracker(_PacedDevice):
    """An eye tracker that reports what the phantom's eyes do.

    Parameters
    ----------
    phantom : Phantom
        The synthetic participant (shared with the synthetic camera and the session controller).
    rate_hz : {60, 120, 250}
        Sampling rate; anything else is a ConfigError.
    clock : SessionClock, optional
        Live session clock (default: the process clock).
    on_event : callable, optional
        ``(t_us, kind, detail)`` sink for device events.
    capacity_s : float
        Seconds of samples the ring keeps.
    max_lag_s : float
        The device buffer: how long a sample waits for a stalled thread before it is lost
        (0.05..60 s; default 1 s).

    Notes
    -----
    Samples lie at exactly ``t0 + round(k * 1e6 / rate_hz)`` on the session clock;
    ``system_time_stamp`` equals ``t_us`` and ``device_time_stamp`` runs on the phantom's
    simulated tracker clock (offset, ~20 ppm drift).
    """

    kind = "tracker"

    def __init__(self, phantom, *, rate_hz: float = 250, clock: Optional[SessionClock] = None,
                 on_event: Optional[EventSink] = None, capacity_s: float = 30.0,
                 max_lag_s: float = 1.0) -> None:
        from ..phantom.participant import Phantom

        if not isinstance(phantom, Phantom):
            raise ConfigError(f"SyntheticTracker needs a Phantom, got {type(phantom).__name__}")
        try:
            rate = float(rate_hz)
        except (TypeError, ValueError):
            rate = float("nan")
        if rate not in TRACKER_RATES_HZ:
            raise ConfigError(f"synthetic tracker rate {rate_hz!r} Hz is not offered; use one of "
                              f"{', '.join(map(str, TRACKER_RATES_HZ))}")
        if not capacity_s > 0:
            raise ConfigError(f"capacity_s must be > 0, got {capacity_s!r}")
        _check_lag(max_lag_s)
        _check_live_clock(clock, "the synthetic tracker")
        super().__init__(name="synthetic-tracker", clock=clock, on_event=on_event)
        self.phantom = phantom
        self.rate_hz = int(rate)
        self.capacity_s = float(capacity_s)
        self.max_lag_s = float(max_lag_s)
        self.t0_us: Optional[int] = None
        self.samples_generated = 0      # index of the next sample (delivered + lost)
        self.samples_lost = 0

    def _open(self) -> None:
        self.stream = Stream("gaze", GAZE_DTYPE, max(int(self.capacity_s * self.rate_hz), 16),
                             nominal_rate_hz=float(self.rate_hz))

    def _sample_time(self, k: int) -> int:
        """Nominal time of sample ``k``: ``t0 + round(k * 1e6 / rate)`` (integer arithmetic)."""
        return self.t0_us + (k * 1_000_000 + self.rate_hz // 2) // self.rate_hz

    def _reset(self) -> None:
        self._k = 0
        self._pre = np.zeros(0, GAZE_DTYPE)
        self._pre_epoch = -1

    def _deliver(self, now: int) -> None:
        """Deliver every sample due by ``now``; what has waited longer than ``max_lag_s`` is lost."""
        if self.stream.closed:       # a stop() that gave up waiting for this thread
            return
        rate, t0, ph = self.rate_hz, self.t0_us, self.phantom
        k = self._k
        # sample j is due when t0 + round(j * 1e6 / rate) <= now (integer arithmetic, no arrays)
        k_end = -(-((now - t0 + 1) * rate - rate // 2) // 1_000_000)
        # the oldest sample the device buffer still holds: t0 + round(j * 1e6 / rate) >= now - lag
        k_keep = -(-((now - self._lag_us - t0) * rate - rate // 2) // 1_000_000)
        if k_keep > k:
            self._lose(k, min(k_keep, k_end), now)
            k = self._k
        n = k_end - k
        if n <= 0:
            return
        pre, pre_epoch = self._pre, self._pre_epoch
        if len(pre) >= n and ph.commit(int(pre["t_us"][n - 1]), pre_epoch):
            self.stream.extend(pre[:n])
            pre = pre[n:]
        else:  # nothing usable ahead (or the phantom's state changed): compute now
            pre = pre[:0]
            times = _nominal_times(t0, k, k_end, 1_000_000, rate)
            step = int(_MAX_CHUNK_S * rate)
            for i in range(0, n, step):
                self.stream.extend(ph.gaze_at(times[i:i + step]))
        k = self._k = k_end
        self.samples_generated = k
        if len(pre) < max(int(2.5 * _WAKE_S * rate), 1) and not self._stop.is_set():
            # compute the next ~60 ms in one call: far fewer calls than wake-ups keeps the
            # thread cheap; delivered only if the phantom's state has not changed by then
            k_from = k + len(pre)
            more, epoch = ph.peek_gaze(_nominal_times(t0, k_from, k + max(int(_LOOKAHEAD_S * rate), 1),
                                                      1_000_000, rate))
            first_ok = len(more) > 0 and more["t_us"][0] == self._sample_time(k_from)
            if first_ok and (len(pre) == 0 or epoch == pre_epoch):
                pre = np.concatenate([pre, more]) if len(pre) else more
                pre_epoch = epoch
        self._pre, self._pre_epoch = pre, pre_epoch

    def _lose(self, k: int, k_keep: int, now: int) -> None:
        """Samples ``k .. k_keep-1`` overflowed the device buffer while this thread was stalled:
        counted and reported, as the Tobii SDK reports a buffer overflow; the stream sees the hole."""
        n = k_keep - k
        t_from, t_to = self._sample_time(k), self._sample_time(k_keep)
        self.stream.count_dropped(n)
        self.samples_lost += n
        self._pre = self._pre[:0]
        self._k = k_keep
        self.emit("buffer_overflow", device=self.name, source="synthetic tracker buffer (host stalled)",
                  dropped=n, behind_ms=round((now - t_from) / 1000.0, 1))
        self.emit("gap", device=self.name, stream="gaze", t_start_us=t_from, t_end_us=t_to,
                  duration_ms=round((t_to - t_from) / 1000, 3), missing=n, reason="buffer_overflow")

    def info(self) -> dict:
        d = super().info()
        serial = f"SPF-{zlib.crc32(self.phantom.participant.encode('utf-8')) & 0xFFFFFFFF:08X}"
        d.update({
            "model": "Synthetic Pro Fusion", "serial_number": serial, "serial": serial,
            "address": "synthetic://phantom", "firmware_version": "synthetic",
            "frequency_hz": float(self.rate_hz), "nominal_rate_hz": float(self.rate_hz),
            "display_area": self.phantom.display.to_dict(), "synthetic": True,
            "phantom": {"seed": self.phantom.seed, "participant": self.phantom.participant,
                        "mask_rate": self.phantom.mask_rate, "origin_us": self.phantom.origin_us},
        })
        return d


# ===================================================================== microphone
class _RoomSound:
    """Deterministic room sound, rendered block after block in order.

    Pink-ish noise (spectrally shaped Gaussian noise, overlap-added with a sine window so its
    variance is stationary) at about -50 dBFS, a faint mains hum, and every few seconds an event:
    a click, a tone (beep) or a speech-like burst (harmonics of a gliding F0 under formant
    envelopes, amplitude-modulated at a syllable rate).
    """

    _FRAME = 4096

    def __init__(self, seed: int, rate_hz: int, channels: int) -> None:
        ss = np.random.SeedSequence([int(seed), 0x4D1C])
        noise_ss, event_ss, setup_ss = ss.spawn(3)
        self.rate = rate_hz
        self.channels = channels
        self._noise_rng = np.random.default_rng(noise_ss)
        self._ev_rng = np.random.default_rng(event_ss)
        r = np.random.default_rng(setup_ss)
        n = self._FRAME
        f = np.fft.rfftfreq(n, 1.0 / rate_hz)
        g = 1.0 / np.sqrt(np.maximum(f, 20.0))
        g[f > 0.45 * rate_hz] *= 0.1
        mean_g2 = (g[0] ** 2 + 2.0 * np.sum(g[1:-1] ** 2) + g[-1] ** 2) / n
        self._gain = g / np.sqrt(mean_g2) * 10 ** (r.uniform(-54.0, -46.0) / 20.0)
        self._win = np.sin(np.pi * (np.arange(n) + 0.5) / n)[:, None]
        self._tail = np.zeros((n // 2, channels))
        self._buf = np.zeros((0, channels))
        self._hum_f = 50.0 if r.random() < 0.6 else 60.0
        self._hum_amp = 10 ** (r.uniform(-72.0, -62.0) / 20.0)
        self._hum_phase = r.uniform(0, 2 * np.pi)
        self._ch_gain = r.uniform(0.85, 1.0, channels)
        self._pos = 0                      # next sample index to render
        self._events: List[dict] = []
        self._next_event = int(self._ev_rng.exponential(4.0) * rate_hz)

    def _noise(self, n: int) -> np.ndarray:
        half = self._FRAME // 2
        while len(self._buf) < n:
            white = self._noise_rng.standard_normal((self._FRAME, self.channels))
            frame = np.fft.irfft(np.fft.rfft(white, axis=0) * self._gain[:, None], n=self._FRAME, axis=0) * self._win
            hop = self._tail + frame[:half]
            self._tail = frame[half:]
            self._buf = np.concatenate([self._buf, hop])
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _new_event(self, start: int) -> dict:
        r, sr = self._ev_rng, self.rate
        kind = ("click", "tone", "speech")[int(r.choice(3, p=[0.35, 0.25, 0.4]))]
        if kind == "click":
            ev = {"length": int(0.03 * sr), "f": r.uniform(1500.0, 4000.0), "decay": r.uniform(0.002, 0.008),
                  "amp": 10 ** (r.uniform(-30.0, -16.0) / 20.0)}
        elif kind == "tone":
            ev = {"length": int(r.uniform(0.1, 0.4) * sr), "f": r.uniform(300.0, 1200.0),
                  "amp": 10 ** (r.uniform(-40.0, -28.0) / 20.0), "phase": r.uniform(0, 2 * np.pi)}
        else:
            ev = {"length": int(r.uniform(0.5, 2.0) * sr), "f0": r.uniform(95.0, 220.0),
                  "formants": (r.uniform(350.0, 800.0), r.uniform(1000.0, 2200.0), r.uniform(2400.0, 3000.0)),
                  "syll": r.uniform(3.5, 5.5), "amp": 10 ** (r.uniform(-38.0, -26.0) / 20.0)}
        ev.update(kind=kind, start=start, pan=r.uniform(0.7, 1.0, self.channels))
        return ev

    def _render_event(self, ev: dict, n: np.ndarray) -> np.ndarray:
        sr = self.rate
        t = n / sr
        dur = ev["length"] / sr
        if ev["kind"] == "click":
            return ev["amp"] * np.exp(-t / ev["decay"]) * np.sin(2 * np.pi * ev["f"] * t)
        ramp = np.clip(np.minimum(t, dur - t) / 0.01, 0.0, 1.0)
        env = 0.5 - 0.5 * np.cos(np.pi * ramp)
        if ev["kind"] == "tone":
            return ev["amp"] * env * np.sin(2 * np.pi * ev["f"] * t + ev["phase"])
        f0 = ev["f0"]
        # F0 with vibrato-like wobble and declination; phase is its analytic integral
        wob, fw = 0.06, 0.8
        phase = 2 * np.pi * f0 * (t + wob * (1 - np.cos(2 * np.pi * fw * t)) / (2 * np.pi * fw) - 0.05 * t * t / dur)
        n_h = int(min(25, 0.45 * sr / f0))
        h = np.arange(1, n_h + 1)
        fh = h * f0
        w = sum(np.exp(-0.5 * ((fh - F) / bw) ** 2) for F, bw in zip(ev["formants"], (90.0, 140.0, 200.0)))
        w = (w + 0.05) / h
        w = w / np.sqrt(np.sum(w ** 2) / 2)
        voiced = np.sin(phase[:, None] * h[None, :]) @ w
        syl = (0.5 - 0.5 * np.cos(2 * np.pi * ev["syll"] * t)) ** 1.5
        return ev["amp"] * env * syl * voiced

    def skip(self, n: int) -> None:
        """Jump ``n`` samples ahead without rendering them (a long loss): the noise starts afresh
        after the jump and the event schedule moves on, so from here the sound is no longer
        sample-identical to :func:`synthetic_audio` - it is still the same room."""
        self._pos += int(n)
        self._buf = np.zeros((0, self.channels))
        self._tail = np.zeros((self._FRAME // 2, self.channels))
        self._events = [ev for ev in self._events if ev["start"] + ev["length"] > self._pos]
        if self._next_event < self._pos:
            self._next_event = self._pos + int(self._ev_rng.exponential(4.0) * self.rate)

    def render(self, n: int) -> np.ndarray:
        """The next ``n`` samples, ``(n, channels)`` float32 in -1..1."""
        a, b = self._pos, self._pos + n
        x = self._noise(n)
        idx = np.arange(a, b)
        hum = self._hum_amp * (np.sin(2 * np.pi * self._hum_f * idx / self.rate + self._hum_phase)
                               + 0.3 * np.sin(2 * np.pi * 3 * self._hum_f * idx / self.rate))
        x = x + hum[:, None]
        while self._next_event < b:
            ev = self._new_event(self._next_event)
            self._events.append(ev)
            self._next_event = ev["start"] + ev["length"] + int(self._ev_rng.exponential(6.0) * self.rate)
        keep = []
        for ev in self._events:
            s, e = ev["start"], ev["start"] + ev["length"]
            lo, hi = max(s, a), min(e, b)
            if hi > lo:
                y = self._render_event(ev, np.arange(lo - s, hi - s))
                x[lo - a:hi - a] += y[:, None] * ev["pan"][None, :]
            if e > b:
                keep.append(ev)
        self._events = keep
        self._pos = b
        return np.clip(x * self._ch_gain, -1.0, 1.0).astype(np.float32)


def synthetic_audio(*, seed: int, n_samples: int, rate_hz: int = 48000, channels: int = 1) -> np.ndarray:
    """The first ``n_samples`` of :class:`SyntheticMic` ``seed``'s sound, ``(n, channels)`` float32.

    Offline twin of the device (same seed, same samples regardless of block size).
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    return _RoomSound(seed, int(rate_hz), int(channels)).render(int(n_samples))


class SyntheticMic(_PacedDevice):
    """A microphone in a quiet lab: room noise plus occasional clicks, beeps and speech-like bursts.

    Parameters
    ----------
    seed : int
        Determines every sample (``synthetic_audio`` gives the same signal offline).
    rate_hz : int
        Sample rate (8000..192000).
    blocksize : int
        Samples per block (16..65536); one stream record per block.
    channels : int
        1..8.
    clock, on_event
        As for every device; a live clock only.
    capacity_s : float
        Seconds of audio the ring keeps.
    max_lag_s : float
        The card's buffer: blocks whose last sample is older than this when the thread gets
        the CPU are lost, counted and reported (0.05..60 s; default 1 s).

    Notes
    -----
    Block ``b`` carries samples ``b * blocksize ...``; its ``t_us`` (time of its first sample) is
    ``t0 + round(b * blocksize * 1e6 / rate_hz)``, and it is delivered once its last sample's
    time has passed, as a sound card would.
    """

    kind = "mic"

    def __init__(self, *, seed: int, rate_hz: int = 48000, blocksize: int = 1024, channels: int = 1,
                 clock: Optional[SessionClock] = None, on_event: Optional[EventSink] = None,
                 capacity_s: float = 30.0, max_lag_s: float = 1.0) -> None:
        def as_int(name, v, lo, hi):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or float(v) != int(v) \
                    or not lo <= int(v) <= hi:
                raise ConfigError(f"synthetic microphone {name} must be an integer within {lo}..{hi}, got {v!r}")
            return int(v)

        seed = as_int("seed", seed, 0, 2**63 - 1)
        rate_hz = as_int("rate_hz", rate_hz, 8000, 192000)
        blocksize = as_int("blocksize", blocksize, 16, 65536)
        channels = as_int("channels", channels, 1, 8)
        if not capacity_s > 0:
            raise ConfigError(f"capacity_s must be > 0, got {capacity_s!r}")
        _check_lag(max_lag_s)
        _check_live_clock(clock, "the synthetic microphone")
        super().__init__(name="synthetic-mic", clock=clock, on_event=on_event)
        self.seed, self.rate_hz, self.blocksize, self.channels = seed, rate_hz, blocksize, channels
        self.capacity_s = float(capacity_s)
        self.max_lag_s = float(max_lag_s)
        self.t0_us: Optional[int] = None
        self.blocks_generated = 0       # index of the next block (delivered + lost)
        self.blocks_lost = 0
        self._sound: Optional[_RoomSound] = None

    def _open(self) -> None:
        self._sound = _RoomSound(self.seed, self.rate_hz, self.channels)
        blocks_per_s = self.rate_hz / self.blocksize
        self.stream = Stream("audio", audio_block_dtype(self.blocksize, self.channels),
                             max(int(self.capacity_s * blocks_per_s), 8), nominal_rate_hz=blocks_per_s)

    def _reset(self) -> None:
        self._b = 0

    def _deliver(self, now: int) -> None:
        """Deliver every block complete by ``now``; blocks whose last sample is older than
        ``max_lag_s`` overflowed the card's buffer while this thread was stalled: counted,
        reported, not sent."""
        if self.stream.closed:       # a stop() that gave up waiting for this thread
            return
        rate, bs, t0, b = self.rate_hz, self.blocksize, self.t0_us, self._b
        # block b is complete when the time of sample (b + 1) * bs has passed
        b_due = ((now - t0) * rate) // (1_000_000 * bs) + 2
        ends = _nominal_times(t0, b + 1, b_due + 1, bs * 1_000_000, rate)
        n = int(np.sum(ends <= now))
        if not n:
            return
        starts = _nominal_times(t0, b, b + n, bs * 1_000_000, rate)
        n_lost = int(np.sum(ends[:n] < now - self._lag_us))
        if n_lost:
            if n_lost * bs <= _RENDER_LOST_S * rate:
                for i in range(0, n_lost, 64):   # the room went on sounding: keep the signal continuous
                    self._sound.render(min(64, n_lost - i) * bs)
            else:                                # minutes asleep: do not spend seconds rendering them
                self._sound.skip(n_lost * bs)
            self.stream.count_dropped(n_lost)
            self.blocks_lost += n_lost
            t_to = int(starts[n_lost]) if n_lost < n else int(ends[n - 1])
            self.emit("buffer_overflow", device=self.name, source="synthetic microphone buffer (host stalled)",
                      dropped=n_lost, behind_ms=round((now - int(starts[0])) / 1000.0, 1))
            self.emit("gap", device=self.name, stream="audio", t_start_us=int(starts[0]), t_end_us=t_to,
                      duration_ms=round((t_to - int(starts[0])) / 1000, 3), missing=n_lost, reason="buffer_overflow")
            b += n_lost
            n -= n_lost
        if n:
            recs = np.zeros(n, self.stream.dtype)
            recs["t_us"] = starts[len(starts) - n:]
            recs["block_index"] = np.arange(b, b + n)
            recs["n"] = bs
            recs["samples"] = self._sound.render(n * bs).reshape(n, bs, self.channels)
            self.stream.extend(recs)
            b += n
        self._b = b
        self.blocks_generated = b

    def info(self) -> dict:
        d = super().info()
        d.update({"model": "Synthetic microphone", "sample_rate_hz": self.rate_hz, "blocksize": self.blocksize,
                  "channels": self.channels, "nominal_rate_hz": self.rate_hz / self.blocksize, "seed": self.seed,
                  "synthetic": True})
        return d
