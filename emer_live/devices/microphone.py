"""Microphone capture through ``sounddevice`` (PortAudio), imported lazily.

The PortAudio callback only copies the block into a preallocated slot ring and notes three
times: the session clock at callback entry, and PortAudio's ``currentTime`` and
``inputBufferAdcTime`` (the capture time of the block's first sample, on the stream's clock).
The device thread turns those into block time stamps on the session clock:

Mapping
-------
1. Raw stamp of block *k*: ``raw_k = now_k - (currentTime_k - inputBufferAdcTime_k)`` - the session
   time at the callback minus how long ago, by the stream's own clock, the first sample was
   captured. Only a *difference* of PortAudio times is used, so their (host-API specific) epoch
   does not matter. Some host APIs report ``inputBufferAdcTime = 0`` (or nonsense); then the
   fallback is the callback time minus the block's duration, ``now_k - frames/rate``
   (counted in :meth:`MicrophoneDevice.info` as ``stamp_fallback_blocks``).
2. Sample counting keeps the stamps regular: ``t_k = S_k / rate + offset``, where ``S_k`` is the
   number of samples delivered before block *k*. The first blocks are held back until the
   offsets ``raw_k - S_k / rate`` have settled (at least 64 blocks, ~1.4 s, and the last 32 agree
   within one block; at most ~5 s) and are then all stamped with the median of the last 32: at
   start-up PulseAudio reports latencies ~100 ms off and corrects them a second or two later,
   while the callbacks show that no audio was lost. Afterwards the offset follows the running median of
   the last 64 offsets (~1.4 s), moving at most 5 % of a block per block, so sound-card clock
   drift is followed, scheduling jitter is not, and stamps stay strictly increasing. The median
   lags a linear drift by half the window: about 70 us for a card 100 ppm off.
3. Lost audio re-anchors the offset forwards, so the loss shows as a gap in the stream: at once
   when PortAudio flags an input overflow, and otherwise when the floor of the callback-time
   offsets (``now_k - S_k / rate``, which only rises when samples are missing) jumps by more than
   two blocks over eight blocks (PulseAudio drops audio without a flag when starved of CPU); the
   few blocks before such a jump are then stamped up to the loss too early.

No input device -> :class:`~emer_live.errors.DeviceUnavailable` with the reason; the session can
go on without audio.
"""

from __future__ import annotations

import collections
import math
import time
from types import ModuleType
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ..errors import DeviceUnavailable
from ..schema import audio_block_dtype
from ..streams import Stream
from .base import Device, EventSink

__all__ = ["MicrophoneDevice", "load_sounddevice", "list_input_devices", "audio_status"]

_RING = 256                 # blocks between two device-thread passes (5 s at 1024/48 kHz)
_MASK = _RING - 1
_POLL_S = 0.02
_OFFSET_WINDOW = 64
_WARMUP_BLOCKS = 64         # blocks held at the start until the ADC offset settles (>= ~1.4 s) ...
_SETTLE_BLOCKS = 32         # ... i.e. the last 32 offsets agree within one block ...
_WARMUP_MAX_BLOCKS = 240    # ... or ~5 s have passed


def load_sounddevice() -> ModuleType:
    """Import ``sounddevice`` or raise :class:`DeviceUnavailable` saying why."""
    try:
        import sounddevice  # noqa: PLC0415 - optional native dependency, imported where used
    except OSError as exc:          # sounddevice raises OSError when libportaudio is missing
        raise DeviceUnavailable(f"audio unavailable: sounddevice cannot load the PortAudio library ({exc}); "
                                "on Debian/Ubuntu install it with `sudo apt-get install libportaudio2`") from exc
    except ImportError as exc:
        raise DeviceUnavailable("audio unavailable: the sounddevice package is not installed "
                                "(`pip install sounddevice`)") from exc
    return sounddevice


def _hostapi_name(sd, idx: int) -> str:
    try:
        return str(sd.query_hostapis(idx)["name"])
    except Exception:  # an unknown host API index only loses the label
        return "?"


def list_input_devices(*, sd: Optional[ModuleType] = None) -> List[Dict[str, Any]]:
    """PortAudio's input devices: index, name, host API, channels, default rate, default flag."""
    sd = sd or load_sounddevice()
    default_in = sd.default.device[0] if sd.default.device is not None else -1
    out = []
    for i, d in enumerate(sd.query_devices()):
        if d["max_input_channels"] > 0:
            out.append({"index": i, "name": d["name"], "hostapi": _hostapi_name(sd, d["hostapi"]),
                        "max_input_channels": int(d["max_input_channels"]),
                        "default_samplerate": float(d["default_samplerate"]), "default": i == default_in})
    return out


def audio_status(*, sd: Optional[ModuleType] = None) -> Dict[str, Any]:
    """PortAudio version, host APIs, device counts and input devices (or why there are none)."""
    try:
        sd = sd or load_sounddevice()
    except DeviceUnavailable as exc:
        return {"available": False, "reason": str(exc), "inputs": []}
    devices = sd.query_devices()
    apis = [str(a["name"]) for a in sd.query_hostapis()]
    inputs = list_input_devices(sd=sd)
    out = {"available": bool(inputs), "portaudio": sd.get_portaudio_version()[1], "hostapis": apis,
           "n_devices": len(devices), "inputs": inputs}
    if not inputs:
        out["reason"] = (f"no audio input device: PortAudio lists {len(devices)} device(s), none with inputs "
                         f"(host APIs: {', '.join(apis) or 'none'})")
    return out


class MicrophoneDevice(Device):
    """An audio input as a :class:`~emer_live.streams.Stream` of sample blocks.

    Parameters
    ----------
    device : int, str or None
        PortAudio device index, (part of a) name, or None for the default input.
    rate_hz : int
        Sampling rate (48 kHz default).
    channels : int
        Number of channels (mono default).
    blocksize : int
        Samples per block (one stream record).
    clock : SessionClock, optional
    on_event : callable, optional
        ``(t_us, kind, detail)`` sink: ``buffer_overflow``, ``device_disconnect``, ``device_connect``.
    capacity_s : float
        Seconds of audio kept in the ring.
    latency : str or float
        PortAudio latency (``"high"`` is the safe default for recording).
    sd : module, optional
        Use this module instead of importing ``sounddevice`` (tests).
    stall_timeout_s : float
        Without callbacks for this long the stream is reported lost and restarted with back-off.
    """

    kind = "mic"

    def __init__(self, *, device: Union[int, str, None] = None, rate_hz: int = 48000, channels: int = 1,
                 blocksize: int = 1024, clock=None, on_event: Optional[EventSink] = None, capacity_s: float = 10.0,
                 latency: Union[str, float] = "high", sd: Optional[ModuleType] = None,
                 stall_timeout_s: float = 2.0) -> None:
        if isinstance(device, bool) or not (device is None or isinstance(device, (int, str))):
            raise ValueError(f"device must be an index, a name or None, got {device!r}")
        if isinstance(device, str) and device.strip().isdigit():
            device = int(device.strip())
        if not (isinstance(rate_hz, (int, float)) and 1000 <= rate_hz <= 384000):
            raise ValueError(f"rate_hz must be within 1000..384000, got {rate_hz!r}")
        if not (isinstance(channels, int) and 1 <= channels <= 64):
            raise ValueError(f"channels must be within 1..64, got {channels!r}")
        if not (isinstance(blocksize, int) and 16 <= blocksize <= 65536):
            raise ValueError(f"blocksize must be within 16..65536, got {blocksize!r}")
        if capacity_s <= 0 or stall_timeout_s <= 0:
            raise ValueError("capacity_s and stall_timeout_s must be > 0")
        super().__init__(name="mic" if device is None else f"mic:{device}", clock=clock, on_event=on_event)
        self.device = device
        self.rate_hz = int(rate_hz)
        self.channels = int(channels)
        self.blocksize = int(blocksize)
        self.capacity_s = float(capacity_s)
        self.latency = latency
        self.stall_timeout_s = float(stall_timeout_s)
        self._sd_given = sd
        self._sd: Optional[ModuleType] = None
        self._pa = None
        self.device_info: Dict[str, Any] = {}
        self._prepare_buffers()

    # ------------------------------------------------------------------ buffers and stamping
    def _prepare_buffers(self) -> None:
        self._blocks = np.zeros((_RING, self.blocksize, self.channels), np.float32)
        self._nframes = np.zeros(_RING, np.int64)
        self._cb_now = np.zeros(_RING, np.int64)
        self._adc = np.zeros(_RING, np.float64)
        self._cur = np.zeros(_RING, np.float64)
        self._flag = np.zeros(_RING, np.bool_)
        self._w = 0
        self._r = 0
        self._samples = 0                     # samples delivered before the next block
        self._offsets: collections.deque = collections.deque(maxlen=_OFFSET_WINDOW)
        self._cb_offsets: collections.deque = collections.deque(maxlen=_OFFSET_WINDOW)
        self._offset: Optional[float] = None
        self._held: List[tuple] = []
        self._warm = 0
        self._released: List[np.ndarray] = []
        self._raw_last = 0.0
        self._last_t: Optional[int] = None
        self.blocks = 0
        self.overflows = 0
        self.ring_dropped = 0
        self.fallback_blocks = 0
        self.reanchors = 0
        self._resid: collections.deque = collections.deque(maxlen=512)
        self._last_cb_wall = time.monotonic()
        self._lost = False
        self.restarts = 0

    def _callback(self, indata, frames, time_info, status) -> None:
        """PortAudio thread: copy and note the times; nothing else."""
        now = self.clock.now_us()
        i = self._w
        s = i & _MASK
        self._blocks[s, :frames] = indata
        self._nframes[s] = frames
        self._cb_now[s] = now
        self._adc[s] = time_info.inputBufferAdcTime
        self._cur[s] = time_info.currentTime
        self._flag[s] = bool(status.input_overflow) if status else False
        self._w = i + 1

    def _stamp(self, s: int) -> Optional[int]:
        """Time stamp of the block in slot ``s`` (None while warming up: stamped later)."""
        frames = int(self._nframes[s])
        block_us = self.blocksize * 1e6 / self.rate_hz
        lag = self._cur[s] - self._adc[s]
        if self._adc[s] > 0 and self._cur[s] > 0 and 0.0 <= lag < 2.0:
            raw = self._cb_now[s] - lag * 1e6
        else:
            raw = self._cb_now[s] - frames / self.rate_hz * 1e6
            self.fallback_blocks += 1
        counted = self._samples * 1e6 / self.rate_hz
        self._samples += frames
        o = raw - counted
        ocb = self._cb_now[s] - counted           # callback-time offset: its floor moves only on loss
        self._raw_last = raw
        if self._flag[s] and (self._offset is not None or self._offsets):
            # PortAudio says samples were lost: jump (forwards only) to this block's own stamp
            # (during warm-up, the blocks held so far are stamped first with what they had).
            if self._offset is None:
                self._offset = float(np.median(self._offsets))
                self._released.extend(self._release_held())
            self._reanchor(max(o, self._offset), o, ocb)
        else:
            self._offsets.append(o)
            self._cb_offsets.append(ocb)
            if self._offset is None:
                self._warm += 1
                last = np.asarray(self._offsets)[-_SETTLE_BLOCKS:]
                settled = (self._warm >= _WARMUP_BLOCKS
                           and np.percentile(last, 90) - np.percentile(last, 10) < block_us)
                if not settled and self._warm < _WARMUP_MAX_BLOCKS:
                    return None                    # hold the first blocks until the offset settles
                self._offset = float(np.median(last))
                self._released.extend(self._release_held())
            else:
                cb = list(self._cb_offsets)
                if len(cb) > 16 and min(cb[-8:]) - min(cb[:-8]) > 2 * block_us:
                    # the callbacks' floor jumped: audio was lost without an overflow flag
                    self._reanchor(self._offset + (min(cb[-8:]) - min(cb[:-8])), o, ocb, keep=8)
                else:
                    target = float(np.median(self._offsets))
                    step = 0.05 * block_us
                    self._offset += min(max(target - self._offset, -step), step)
        return self._finish_stamp(counted, raw)

    def _reanchor(self, offset: float, o: float, ocb: float, keep: int = 0) -> None:
        recent_o = list(self._offsets)[-keep:] if keep else []
        recent_cb = list(self._cb_offsets)[-keep:] if keep else []
        self._offsets.clear()
        self._cb_offsets.clear()
        self._offsets.extend(recent_o or [o])
        self._cb_offsets.extend(recent_cb or [ocb])
        self._offset = offset
        self.reanchors += 1

    def _finish_stamp(self, counted: float, raw: float) -> int:
        t = int(round(counted + self._offset))
        if self._last_t is not None and t <= self._last_t:
            t = self._last_t + 1
        self._resid.append(raw - t)
        self._last_t = t
        return t

    def _release_held(self) -> List[np.ndarray]:
        """Stamp the blocks held during warm-up with the settled offset."""
        if not self._held:
            return []
        if self._offset is None:
            self._offset = float(np.median(self._offsets)) if self._offsets else 0.0
        for rec, counted, raw in self._held:
            rec["t_us"] = self._finish_stamp(counted, raw)
        out = [r for r, _, _ in self._held]
        self._held = []
        return out

    def _drain(self, final: bool = False) -> int:
        w, r = self._w, self._r
        if w - r > _RING - 2:
            lost = w - r - (_RING - 2)
            r += lost
            self.ring_dropped += lost
            self.stream.count_dropped(lost)
            self.emit("buffer_overflow", device=self.name, source="emer_live callback ring", dropped=lost)
        n = w - r
        rec = np.zeros(n, self.stream.dtype)
        keep = np.ones(n, bool)
        for j in range(n):
            s = (r + j) & _MASK
            if self._flag[s]:
                self.overflows += 1
                self.stream.count_dropped(1)
                if self.overflows <= 20 or self.overflows % 100 == 0:
                    self.emit("buffer_overflow", device=self.name, source="portaudio input overflow",
                              count=self.overflows)
            counted = self._samples * 1e6 / self.rate_hz
            rec["block_index"][j] = self.blocks + j
            rec["n"][j] = self._nframes[s]
            rec["samples"][j] = self._blocks[s]
            t = self._stamp(s)
            if t is None:                           # warming up: stamped when the offset settles
                self._held.append((rec[j:j + 1].copy(), counted, self._raw_last))
                keep[j] = False
            else:
                rec["t_us"][j] = t
        self._r = w
        self.blocks += n
        if final:
            self._released.extend(self._release_held())
        for held in self._released:                 # the held blocks come before everything newer
            self.stream.extend(held)
        self._released = []
        if keep.any():
            self.stream.extend(rec[keep])
        return n

    # ------------------------------------------------------------------ open / run
    def _resolve(self, sd) -> Dict[str, Any]:
        devices = sd.query_devices()
        inputs = [(i, d) for i, d in enumerate(devices) if d["max_input_channels"] > 0]
        if not inputs:
            apis = ", ".join(str(a["name"]) for a in sd.query_hostapis()) or "none"
            raise DeviceUnavailable(
                f"audio unavailable: no audio input device (PortAudio lists {len(devices)} device(s), none with "
                f"inputs; host APIs: {apis}) - connect a microphone (on Linux check that PulseAudio/PipeWire runs); "
                "the session can go on without audio (--mic none)")
        listing = "; ".join(f"{i}: {d['name']}" for i, d in inputs)
        if self.device is None:
            idx = sd.default.device[0] if sd.default.device is not None else -1
            if idx is None or idx < 0 or devices[idx]["max_input_channels"] <= 0:
                idx = inputs[0][0]
        else:
            try:
                idx = int(sd.query_devices(self.device, kind="input")["index"])
            except (ValueError, sd.PortAudioError) as exc:
                raise DeviceUnavailable(f"audio input {self.device!r} not found ({exc}); inputs: {listing}") from exc
        info = dict(devices[idx])
        info["index"] = idx
        if info["max_input_channels"] < self.channels:
            raise DeviceUnavailable(f"audio input {info['name']!r} has {info['max_input_channels']} channel(s), "
                                    f"{self.channels} requested")
        try:
            sd.check_input_settings(device=idx, channels=self.channels, samplerate=self.rate_hz, dtype="float32")
        except Exception as exc:  # PortAudio says why the format is refused
            raise DeviceUnavailable(f"audio input {info['name']!r} cannot record {self.rate_hz} Hz x {self.channels} "
                                    f"ch ({exc}); its default rate is {info['default_samplerate']:g} Hz") from exc
        info["hostapi_name"] = _hostapi_name(sd, info["hostapi"])
        return info

    def _make_stream(self, sd, idx: int):
        return sd.InputStream(device=idx, samplerate=self.rate_hz, channels=self.channels, dtype="float32",
                              blocksize=self.blocksize, latency=self.latency, callback=self._callback)

    def _open(self) -> None:
        sd = self._sd_given if self._sd_given is not None else load_sounddevice()
        info = self._resolve(sd)
        try:
            pa = self._make_stream(sd, info["index"])
        except Exception as exc:  # device busy, format refused by the host API
            raise DeviceUnavailable(f"audio input {info['name']!r} cannot be opened: {exc}") from exc
        self._sd, self._pa = sd, pa
        self.device_info = info
        self.name = f"mic:{info['name']}"
        self._prepare_buffers()
        n = max(int(math.ceil(self.capacity_s * self.rate_hz / self.blocksize)), 4)
        self.stream = Stream("audio", audio_block_dtype(self.blocksize, self.channels), n,
                             nominal_rate_hz=self.rate_hz / self.blocksize)

    def start(self) -> None:
        if self.stream is None:
            self.open()
        if self._pa is None:            # started again after a stop
            self._pa = self._make_stream(self._sd, self.device_info["index"])
        self._last_cb_wall = time.monotonic()
        self._pa.start()
        super().start()

    def _run(self) -> None:
        backoff = self.stall_timeout_s
        next_try = 0.0
        seen = self._w
        self._last_cb_wall = time.monotonic()
        try:
            while not self._stop.wait(_POLL_S):
                self._drain()
                now = time.monotonic()
                if self._w != seen:
                    seen = self._w
                    self._last_cb_wall = now
                    if self._lost:
                        self._lost = False
                        backoff = self.stall_timeout_s
                        self.status = "running"
                        self.emit("device_connect", device=self.name, reason="audio flows again", reconnected=True)
                    continue
                if not self._lost and now - self._last_cb_wall >= self.stall_timeout_s:
                    self._lost = True
                    self.status = "no audio: restarting the input stream"
                    self.emit("device_disconnect", device=self.name,
                              reason=f"no audio block for {now - self._last_cb_wall:.1f} s")
                    next_try = now
                if self._lost and now >= next_try:
                    self._restart()
                    next_try = now + backoff
                    backoff = min(backoff * 2, 10.0)
        finally:
            self._stop_pa()
            self._drain(final=True)

    def _restart(self) -> None:
        self.restarts += 1
        self._stop_pa()
        try:
            self._pa = self._make_stream(self._sd, self.device_info["index"])
            self._pa.start()
        except Exception as exc:  # still gone: try again later
            self._pa = None
            self.emit("note", device=self.name, message=f"restarting the audio input failed: {exc}")

    def _stop_pa(self) -> None:
        pa, self._pa = self._pa, None
        if pa is None:
            return
        try:
            pa.stop()
        except Exception:  # already broken; closing is what matters
            pass
        try:
            pa.close()
        except Exception:  # nothing left to release
            pass

    def _close(self) -> None:
        self._stop_pa()

    # ------------------------------------------------------------------ public surface
    def stamp_jitter_us(self) -> Optional[float]:
        """Median absolute difference between raw block stamps and the smoothed ones."""
        return None if not self._resid else float(np.median(np.abs(np.asarray(self._resid))))

    def info(self) -> dict:
        d = super().info()
        di = self.device_info
        d.update({"device": self.device, "device_name": di.get("name"), "device_index": di.get("index"),
                  "hostapi": di.get("hostapi_name"), "rate_hz": self.rate_hz, "channels": self.channels,
                  "blocksize": self.blocksize, "latency_s": None if self._pa is None else float(self._pa.latency),
                  "blocks": self.blocks, "overflows": self.overflows, "callback_ring_dropped": self.ring_dropped,
                  "stamp_fallback_blocks": self.fallback_blocks, "stamp_reanchors": self.reanchors,
                  "stamp_jitter_us": self.stamp_jitter_us(), "restarts": self.restarts, "status": self.status,
                  "stamping": "PortAudio inputBufferAdcTime mapped to the session clock, sample-count smoothed "
                              "(callback time - block duration when the ADC time is 0)"})
        return d
