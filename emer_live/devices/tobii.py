"""Tobii Pro screen-based eye trackers (Pro Fusion, Spark, Spectrum) through ``tobii_research``.

The SDK is imported lazily inside this module: everything else in emer_live works without it, and
when it is missing :func:`load_sdk` says exactly why (the SDK exists only for CPython 3.10; it is
not installed; it failed to load). ``tobii-research`` is proprietary: this adapter uses its public
API only.

Threading model
---------------
* The SDK delivers gaze samples (``subscribe_to(EYETRACKER_GAZE_DATA, cb, as_dictionary=True)``)
  on its own thread. Our callback stores the reference to the dict the SDK just built into a
  preallocated slot ring and bumps a counter - three bytecode-level operations, no logging, no
  allocation, no locks of ours, no Qt. (The SDK creates a fresh dict per sample and never touches
  it again, so keeping the reference is safe.) ``benchmarks/bench_tobii_fake.py`` measures this
  against writing each sample into a preallocated numpy row and against ``Stream.append``.
* The device thread wakes every 10 ms, converts the new dicts column-wise into preallocated gaze
  records (:data:`~emer_live.schema.GAZE_DTYPE`) and ``extend``s the gaze stream in one batch. It
  also handles notifications (connection lost/restored, stream-buffer overflow, faults), counts
  gaps from inter-sample intervals, re-subscribes when data stops, and estimates clock drift.

Time
----
``t_us`` is the sample's ``system_time_stamp`` - the SDK clock, which is the session clock when
the SDK is present (see :mod:`emer_live.clock`). When the session clock is a different clock, the
constant offset between the two is measured at :meth:`TobiiTracker.open` (smallest-round-trip of
a few paired reads) and added; it is reported in :meth:`TobiiTracker.info` as ``time_offset_us``
(0 when both clocks agree within 1 ms, as on Linux where both are CLOCK_MONOTONIC).
``device_time_stamp`` (the tracker's clock) is kept in every record; the SDK's time
synchronisation packets give the device-vs-system offset and drift (:meth:`TobiiTracker.clock_sync`).
"""

from __future__ import annotations

import collections
import platform
import sys
import time
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..clock import fit_clock_sync
from ..errors import DeviceUnavailable
from ..geometry import DEFAULT_DISPLAY, DisplayGeometry
from ..schema import EYE_OPENNESS_DTYPE, GAZE_DTYPE, TIME_SYNC_DTYPE
from ..streams import Stream
from .base import Device, EventSink

__all__ = [
    "TobiiTracker", "SdkStatus", "sdk_status", "load_sdk", "find_trackers", "describe_tracker",
    "EYE_OPENNESS_DTYPE", "TIME_SYNC_DTYPE", "SDK_PYTHON",
]

#: The only Python (major, minor) the Tobii Pro SDK is published for.
SDK_PYTHON = (3, 10)

_RING = 8192                 # callback slots: 32 s at 250 Hz between two device-thread passes
_MASK = _RING - 1
_SAFETY = 64                 # slots never read when the ring overflowed (the writer may be there)
_POLL_S = 0.010
_SYNC_CAPACITY = 100_000     # time-sync packets kept (one a second or so)
_ISI_BINS = 100_000          # inter-sample interval histogram: 1 us bins up to 100 ms (+1 overflow)

# SDK dict key -> GAZE_DTYPE columns (SDK 2.x keys; trackbox origins are optional: SDK 1.x had them)
_VECTOR_KEYS: List[Tuple[str, Tuple[str, ...], bool]] = []
_SCALAR_KEYS: List[Tuple[str, str]] = []
for _eye in ("left", "right"):
    _VECTOR_KEYS += [
        (f"{_eye}_gaze_point_on_display_area", (f"{_eye}_gaze_point_on_display_area_x",
                                                 f"{_eye}_gaze_point_on_display_area_y"), True),
        (f"{_eye}_gaze_point_in_user_coordinate_system",
         tuple(f"{_eye}_gaze_point_in_user_coordinate_system_{c}" for c in "xyz"), True),
        (f"{_eye}_gaze_origin_in_user_coordinate_system",
         tuple(f"{_eye}_gaze_origin_in_user_coordinate_system_{c}" for c in "xyz"), True),
        (f"{_eye}_gaze_origin_in_trackbox_coordinate_system",
         tuple(f"{_eye}_gaze_origin_in_trackbox_coordinate_system_{c}" for c in "xyz"), False),
    ]
    _SCALAR_KEYS += [(f"{_eye}_{k}", f"{_eye}_{k}") for k in
                     ("gaze_point_validity", "pupil_diameter", "pupil_validity", "gaze_origin_validity")]
del _eye

_NOTIFICATION_NAMES = (
    "EYETRACKER_NOTIFICATION_CONNECTION_LOST", "EYETRACKER_NOTIFICATION_CONNECTION_RESTORED",
    "EYETRACKER_NOTIFICATION_STREAM_BUFFER_OVERFLOW", "EYETRACKER_NOTIFICATION_GAZE_OUTPUT_FREQUENCY_CHANGED",
    "EYETRACKER_NOTIFICATION_DISPLAY_AREA_CHANGED", "EYETRACKER_NOTIFICATION_DEVICE_FAULTS",
    "EYETRACKER_NOTIFICATION_DEVICE_WARNINGS",
)


# ----------------------------------------------------------------------------- the SDK itself
def _python_desc() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def _sdk_problem(exc: ImportError) -> Tuple[str, str]:
    """(why the SDK cannot be imported, what to do)."""
    if sys.implementation.name != "cpython" or sys.version_info[:2] != SDK_PYTHON:
        return (f"the Tobii Pro SDK (tobii-research) is published only for CPython 3.10 and this is {_python_desc()}",
                "run emer-live from a Python 3.10 environment with `pip install -e \".[tobii]\"` (see docs/hardware.md)")
    if getattr(exc, "name", None) in ("tobii_research", "tobiiresearch"):
        machine = platform.machine().lower()
        if sys.platform.startswith("linux") and machine not in ("x86_64", "amd64"):
            return (f"the Tobii Pro SDK is not installed, and its Linux wheel is for x86_64 only "
                    f"(this machine is {platform.machine()})", "use an x86_64 Linux, Windows or macOS computer")
        return (f"the Tobii Pro SDK is not installed in this Python 3.10 environment ({sys.executable})",
                "run `pip install tobii-research`")
    return (f"the Tobii Pro SDK is installed but failed to load ({type(exc).__name__}: {exc})",
            "reinstall it with `pip install --force-reinstall tobii-research`")


def _why_no_sdk(exc: ImportError) -> str:
    why, action = _sdk_problem(exc)
    return f"Tobii tracker unavailable: {why}; {action}"


def load_sdk() -> ModuleType:
    """Import ``tobii_research`` or raise :class:`DeviceUnavailable` saying why it is unavailable.

    Returns
    -------
    module
        The SDK module.
    """
    try:
        import tobii_research  # noqa: PLC0415 - lazy on purpose: optional, CPython 3.10 only
    except ImportError as exc:
        err = DeviceUnavailable(_why_no_sdk(exc))
        err.why, err.action = _sdk_problem(exc)
        raise err from exc
    return tobii_research


@dataclass(frozen=True)
class SdkStatus:
    """Whether the Tobii Pro SDK can be used here, and why not."""

    available: bool
    version: Optional[str]
    reason: Optional[str]           # why not (one line, also the DeviceUnavailable message)
    python: str
    why: Optional[str] = None       # the reason without the advice
    action: Optional[str] = None    # what to do

    def to_dict(self) -> dict:
        return asdict(self)


def sdk_status(*, sdk: Optional[ModuleType] = None) -> SdkStatus:
    """Availability and version of the SDK (``sdk`` substitutes a module, e.g. a test fake)."""
    try:
        mod = sdk if sdk is not None else load_sdk()
    except DeviceUnavailable as exc:
        return SdkStatus(False, None, str(exc), _python_desc(), getattr(exc, "why", str(exc)),
                         getattr(exc, "action", None))
    return SdkStatus(True, str(getattr(mod, "__version__", "unknown")), None, _python_desc())


def _display_geometry(area, display_px: Tuple[int, int]) -> DisplayGeometry:
    return DisplayGeometry(top_left=tuple(float(v) for v in area.top_left),
                           top_right=tuple(float(v) for v in area.top_right),
                           bottom_left=tuple(float(v) for v in area.bottom_left),
                           width_px=int(display_px[0]), height_px=int(display_px[1]))


def describe_tracker(et, *, sdk: ModuleType, display_px: Tuple[int, int] = (1920, 1080)) -> dict:
    """Identity and capabilities of one SDK ``EyeTracker`` as a plain dict (for doctor/session.json).

    Queries that fail are reported under ``errors`` rather than raised.
    """
    caps = [str(c) for c in getattr(et, "device_capabilities", ())]
    out: Dict[str, Any] = {
        "address": et.address, "model": et.model, "device_name": et.device_name,
        "serial_number": et.serial_number, "firmware_version": et.firmware_version,
        "runtime_version": getattr(et, "runtime_version", None), "capabilities": caps,
        "eye_openness": getattr(sdk, "CAPABILITY_HAS_EYE_OPENNESS_DATA", "?") in caps,
        "screen_based_calibration": getattr(sdk, "CAPABILITY_CAN_DO_SCREEN_BASED_CALIBRATION", "?") in caps,
        "errors": [],
    }
    queries = (("frequencies_hz", lambda: sorted(float(f) for f in et.get_all_gaze_output_frequencies())),
               ("frequency_hz", lambda: float(et.get_gaze_output_frequency())),
               ("display_area", lambda: _display_geometry(et.get_display_area(), display_px).to_dict()))
    for key, fn in queries:
        try:
            out[key] = fn()
        except Exception as exc:  # any SDK error: this is a report, the reason is kept
            out[key] = None
            out["errors"].append(f"{key}: {type(exc).__name__}: {exc}")
    return out


def find_trackers(*, sdk: Optional[ModuleType] = None) -> List[dict]:
    """Every tracker the SDK finds (``find_all_eyetrackers``; takes about 2 s), described.

    Raises
    ------
    DeviceUnavailable
        When the SDK is unavailable (the message says why).
    """
    mod = sdk if sdk is not None else load_sdk()
    return [describe_tracker(et, sdk=mod) for et in mod.find_all_eyetrackers()]


# ----------------------------------------------------------------------------- the device
class TobiiTracker(Device):
    """A Tobii Pro screen-based eye tracker as a gaze :class:`~emer_live.streams.Stream`.

    Parameters
    ----------
    address : str, optional
        The tracker's address (``tobii-prp://...``); default: the first tracker found.
    frequency : float
        Gaze output frequency in Hz; must be one the tracker offers (Pro Fusion: 60/120/250).
    clock : SessionClock, optional
        Session clock (default: the process clock, which is the SDK clock when present).
    on_event : callable, optional
        ``(t_us, kind, detail)`` sink for ``device_connect``, ``device_disconnect``, ``gap``,
        ``buffer_overflow``, ``error`` and ``note`` events.
    capacity_s : float
        Seconds of gaze kept in the ring.
    display_px : (int, int), optional
        Resolution of the participant screen, for :meth:`display_geometry` (default 1920x1080).
    sdk : module, optional
        Use this module instead of importing ``tobii_research`` (tests use a fake).
    resubscribe_after_s : float
        After "connection restored", re-subscribe when no sample arrived within this time.
    stall_timeout_s : float
        Without samples (and without a connection-lost notification) for this long, report a
        disconnect and re-subscribe with back-off until data flows again.

    Notes
    -----
    ``open()`` only queries the tracker (nothing is subscribed, nothing written) and raises
    :class:`~emer_live.errors.DeviceUnavailable` with one line saying why when the SDK, the
    tracker or the frequency is not available. ``start()`` subscribes; ``stop()`` unsubscribes
    everything and keeps the samples already delivered.
    """

    kind = "tracker"

    def __init__(self, *, address: Optional[str] = None, frequency: float = 250, clock=None,
                 on_event: Optional[EventSink] = None, capacity_s: float = 30,
                 display_px: Optional[Tuple[int, int]] = None, sdk: Optional[ModuleType] = None,
                 resubscribe_after_s: float = 1.0, stall_timeout_s: float = 2.0) -> None:
        if not frequency or float(frequency) <= 0:
            raise ValueError(f"frequency must be > 0 Hz, got {frequency!r}")
        if not capacity_s or float(capacity_s) <= 0:
            raise ValueError(f"capacity_s must be > 0, got {capacity_s!r}")
        if address is not None and not str(address).strip():
            raise ValueError("address must be a non-empty string or None")
        if resubscribe_after_s <= 0 or stall_timeout_s <= 0:
            raise ValueError("resubscribe_after_s and stall_timeout_s must be > 0")
        super().__init__(name="tobii" if address is None else f"tobii:{address}", clock=clock, on_event=on_event)
        self.address = address
        self.requested_frequency = float(frequency)
        self.frequency = float(frequency)
        self.capacity_s = float(capacity_s)
        self.display_px = tuple(display_px) if display_px else (DEFAULT_DISPLAY.width_px, DEFAULT_DISPLAY.height_px)
        self.resubscribe_after_s = float(resubscribe_after_s)
        self.stall_timeout_s = float(stall_timeout_s)
        self._sdk_given = sdk
        self._sdk: Optional[ModuleType] = None
        self._et = None
        self._desc: Dict[str, Any] = {}
        self._geometry: Optional[DisplayGeometry] = None
        self._t_offset_us = 0
        self.openness: Optional[Stream] = None
        self.time_sync: Optional[Stream] = None
        self._subs: List[Tuple[str, Callable]] = []
        self._calibrating = False
        self._reset_runtime_state()

    def _reset_runtime_state(self) -> None:
        # callback -> device-thread hand-off (single writer: SDK thread; single reader: ours)
        self._gslots: List[Optional[dict]] = [None] * _RING
        self._gw = 0
        self._gr = 0
        self._oslots: List[Optional[dict]] = [None] * _RING
        self._ow = 0
        self._or = 0
        self._sync: collections.deque = collections.deque()   # packets not yet in the time_sync stream
        self._notes: collections.deque = collections.deque()
        # device-thread state
        self._last_t: Optional[int] = None
        self._isi_hist = np.zeros(_ISI_BINS + 1, np.int64)
        self._max_gap_us = 0
        self._lost = False
        self._gap_reason: Optional[str] = None   # why the next gap happened, when known
        self._lost_at_us: Optional[int] = None
        self._connection_losses = 0
        self._overflow_pending = False
        self._overflow_notes = 0
        self._ring_dropped = 0
        self._restored_wall: Optional[float] = None
        self._samples_at_restore = 0
        self._n_samples = 0
        self._last_data_wall = time.monotonic()
        self._stalled = False
        self._next_resub_wall = 0.0
        self._resub_backoff = 0.0
        self._resubscriptions = 0
        self._gap_events = 0
        self._gap_suppressed = 0
        self._gap_tokens = 20.0
        self._gap_tokens_wall = time.monotonic()
        self._stream_errors = 0

    # ------------------------------------------------------------------ open / describe
    def _sdk_call(self, fn: Callable, what: str):
        try:
            return fn()
        except Exception as exc:  # SDK exceptions become one user-facing line
            who = self._desc.get("model") or "Tobii tracker"
            raise DeviceUnavailable(f"{who} ({self._desc.get('serial_number', '?')}): {what} failed: "
                                    f"{type(exc).__name__}: {exc}") from exc

    def _connect(self, sdk: ModuleType):
        if self.address is not None:
            try:
                return sdk.EyeTracker(self.address)
            except Exception as exc:  # connection failed / invalid address
                try:
                    found = [et.address for et in sdk.find_all_eyetrackers()]
                except Exception:  # the listing is only a hint
                    found = []
                hint = (f"trackers found: {', '.join(found)}" if found else "no tracker was found at all")
                raise DeviceUnavailable(
                    f"Tobii tracker unavailable: no tracker answers at address {self.address!r} "
                    f"({type(exc).__name__}: {exc}); {hint} - check the address with `emer-live doctor`") from exc
        trackers = tuple(sdk.find_all_eyetrackers())
        if not trackers:
            raise DeviceUnavailable(
                f"Tobii tracker unavailable: no Tobii eye tracker found (tobii-research "
                f"{getattr(sdk, '__version__', '?')} searched for ~2 s): connect the tracker (Pro Fusion: USB-C, or "
                "USB-A with its power adapter), check that Tobii Pro Eye Tracker Manager sees it, then run "
                "`emer-live doctor`")
        gaze_cap = getattr(sdk, "CAPABILITY_HAS_GAZE_DATA", None)
        for et in trackers:
            if gaze_cap is None or gaze_cap in tuple(et.device_capabilities):
                return et
        raise DeviceUnavailable(f"Tobii tracker unavailable: the {len(trackers)} tracker(s) found offer no gaze data")

    def _open(self) -> None:
        sdk = self._sdk_given if self._sdk_given is not None else load_sdk()
        et = self._connect(sdk)
        self._desc = {"address": et.address, "model": et.model, "serial_number": et.serial_number}
        desc = self._sdk_call(lambda: describe_tracker(et, sdk=sdk, display_px=self.display_px),
                              "reading the tracker's description")
        self._desc = desc
        offered = desc.get("frequencies_hz")
        if not offered:
            raise DeviceUnavailable(f"{desc['model']} ({desc['serial_number']}): cannot read its gaze output "
                                    f"frequencies ({'; '.join(desc['errors']) or 'none offered'})")
        match = [f for f in offered if abs(f - self.requested_frequency) < 0.5]
        if not match:
            raise DeviceUnavailable(
                f"{desc['model']} ({desc['serial_number']}) offers {', '.join(f'{f:g}' for f in offered)} Hz, "
                f"not {self.requested_frequency:g} Hz: choose one of those rates (e.g. --rate {offered[-1]:g})")
        current = self._sdk_call(et.get_gaze_output_frequency, "reading the gaze output frequency")
        if abs(float(current) - match[0]) >= 0.5:
            self._sdk_call(lambda: et.set_gaze_output_frequency(match[0]), f"setting {match[0]:g} Hz")
            current = self._sdk_call(et.get_gaze_output_frequency, "reading the gaze output frequency back")
        if abs(float(current) - match[0]) >= 0.5:
            raise DeviceUnavailable(f"{desc['model']} ({desc['serial_number']}) stayed at {float(current):g} Hz "
                                    f"after being set to {match[0]:g} Hz")
        self.frequency = float(current)
        desc["frequency_hz"] = self.frequency
        self._geometry = DisplayGeometry.from_dict(desc["display_area"]) if desc.get("display_area") else None
        self._t_offset_us = self._measure_offset(sdk)
        self._reset_runtime_state()
        # Everything checked: create the streams.
        cap = max(int(self.capacity_s * self.frequency), 16)
        self.stream = Stream("gaze", GAZE_DTYPE, cap, nominal_rate_hz=self.frequency)
        self.openness = (Stream("eye_openness", EYE_OPENNESS_DTYPE, cap, nominal_rate_hz=self.frequency)
                         if desc.get("eye_openness") else None)
        # time-sync packets (about 1/s) as a stream: a recording keeps them and clock_sync() fits
        # them; 100k slots (3 MB) hold more than a day
        self.time_sync = Stream("time_sync", TIME_SYNC_DTYPE, _SYNC_CAPACITY)
        self._gout = np.zeros(_RING, GAZE_DTYPE)
        self._sdk, self._et = sdk, et
        self.name = f"tobii:{desc['serial_number']}"

    def _measure_offset(self, sdk: ModuleType) -> int:
        """Session clock minus SDK clock (us), 0 when they agree within 1 ms."""
        best = None
        for _ in range(7):
            a = self.clock.now_us()
            s = int(sdk.get_system_time_stamp())
            b = self.clock.now_us()
            if best is None or b - a < best[0]:
                best = (b - a, (a + b) // 2 - s)
        offset = best[1]
        return 0 if abs(offset) <= 1000 else int(offset)

    # ------------------------------------------------------------------ SDK callbacks (SDK thread)
    def _on_gaze(self, d: dict) -> None:
        i = self._gw
        self._gslots[i & _MASK] = d
        self._gw = i + 1

    def _on_openness(self, d: dict) -> None:
        i = self._ow
        self._oslots[i & _MASK] = d
        self._ow = i + 1

    def _on_sync(self, d: dict) -> None:
        self._sync.append((d["system_request_time_stamp"], d["device_time_stamp"], d["system_response_time_stamp"]))

    def _on_note(self, d: dict) -> None:
        self._notes.append(d)

    def _on_stream_error(self, d: dict) -> None:
        self._notes.append(("stream_error", d))

    # ------------------------------------------------------------------ subscriptions
    def start(self) -> None:
        """Subscribe to the tracker's streams and start the device thread."""
        if self.stream is None:
            self.open()
        self._subscribe_all()
        super().start()

    def _subscribe_all(self) -> None:
        sdk, et = self._sdk, self._et
        self._subs = []
        plan: List[Tuple[str, Callable, bool]] = []
        for name in _NOTIFICATION_NAMES:
            const = getattr(sdk, name, None)
            if const is not None:
                plan.append((const, self._on_note, False))
        if hasattr(sdk, "EYETRACKER_STREAM_ERRORS"):
            plan.append((sdk.EYETRACKER_STREAM_ERRORS, self._on_stream_error, False))
        if hasattr(sdk, "EYETRACKER_TIME_SYNCHRONIZATION_DATA"):
            plan.append((sdk.EYETRACKER_TIME_SYNCHRONIZATION_DATA, self._on_sync, False))
        if self.openness is not None:
            plan.append((sdk.EYETRACKER_EYE_OPENNESS_DATA, self._on_openness, False))
        plan.append((sdk.EYETRACKER_GAZE_DATA, self._on_gaze, True))
        for const, cb, required in plan:
            try:
                et.subscribe_to(const, cb, as_dictionary=True)
            except Exception as exc:  # a refused subscription: required -> fail, optional -> note
                self._forget(const, cb)
                if required:
                    self._unsubscribe_all()
                    raise DeviceUnavailable(f"{self._desc.get('model', 'Tobii tracker')} "
                                            f"({self._desc.get('serial_number', '?')}): subscribing to gaze data "
                                            f"failed: {type(exc).__name__}: {exc}") from exc
                if cb is self._on_openness:
                    self.openness = None
                self.emit("note", device=self.name, message=f"{const} unavailable: {type(exc).__name__}: {exc}")
                continue
            self._subs.append((const, cb))

    def _forget(self, const: str, cb: Callable) -> None:
        try:
            self._et.unsubscribe_from(const, cb)
        except Exception:  # nothing to forget
            pass

    def _unsubscribe_all(self) -> None:
        for const, cb in reversed(self._subs):
            self._forget(const, cb)
        self._subs = []

    def _resubscribe(self) -> None:
        """Drop and renew the data-stream subscriptions (gaze, openness, time sync)."""
        self._resubscriptions += 1
        data_cbs = (self._on_gaze, self._on_openness, self._on_sync)
        ok = True
        for const, cb in self._subs:
            if cb not in data_cbs:
                continue
            self._forget(const, cb)
            try:
                self._et.subscribe_to(const, cb, as_dictionary=True)
            except Exception as exc:  # tracker still away: try again later
                ok = False
                self._forget(const, cb)
                self.emit("error", device=self.name, message=f"re-subscribing to {const} failed: {exc}")
        self.emit("note", device=self.name, message="re-subscribed to the tracker's data streams",
                  attempt=self._resubscriptions, ok=ok)

    # ------------------------------------------------------------------ device thread
    def _run(self) -> None:
        self._last_data_wall = time.monotonic()
        try:
            while not self._stop.wait(_POLL_S):
                self._service()
        finally:
            self._unsubscribe_all()
            self._service(final=True)

    def _service(self, final: bool = False) -> None:
        self._handle_notes()
        n = self._drain_gaze()
        self._drain_openness()
        self._drain_sync()
        if final:
            if self._gap_reason is not None and self._last_t is not None:
                now = self.clock.now_us()
                self._emit_gap(self._last_t, now, int(round((now - self._last_t) * self.frequency / 1e6)),
                               f"{self._gap_reason} (data had not resumed at stop)", force=True)
                self._gap_reason = None
            return
        self._watchdog(n)

    def _drain_gaze(self) -> int:
        w = self._gw
        r = self._gr
        if w == r:
            return 0
        if w - r > _RING - _SAFETY:
            lost = w - r - (_RING - _SAFETY)
            r += lost
            self._ring_dropped += lost
            self.stream.count_dropped(lost)
            self.emit("buffer_overflow", device=self.name, source="emer_live callback ring", dropped=lost)
        slots = self._gslots
        batch = [slots[j & _MASK] for j in range(r, w)]
        self._gr = w
        recs = self._convert(batch)
        self._check_gaps(recs["t_us"])
        self.stream.extend(recs)
        self._n_samples += len(recs)
        return len(recs)

    def _convert(self, batch: List[dict]) -> np.ndarray:
        n = len(batch)
        out = self._gout[:n]
        out["system_time_stamp"] = [d["system_time_stamp"] for d in batch]
        out["device_time_stamp"] = [d["device_time_stamp"] for d in batch]
        for key, col in _SCALAR_KEYS:
            out[col] = [d[key] for d in batch]
        first = batch[0]
        for key, cols, required in _VECTOR_KEYS:
            if not required and key not in first:
                for c in cols:
                    out[c] = np.nan
                continue
            arr = np.array([d[key] for d in batch], dtype=np.float64).reshape(n, len(cols))
            for j, c in enumerate(cols):
                out[c] = arr[:, j]
        out["t_us"] = out["system_time_stamp"] + self._t_offset_us
        return out

    def _drain_openness(self) -> None:
        if self.openness is None:
            return
        w, r = self._ow, self._or
        if w == r:
            return
        if w - r > _RING - _SAFETY:
            lost = w - r - (_RING - _SAFETY)
            r += lost
            self.openness.count_dropped(lost)
        batch = [self._oslots[j & _MASK] for j in range(r, w)]
        self._or = w
        rec = np.zeros(len(batch), EYE_OPENNESS_DTYPE)
        for name in EYE_OPENNESS_DTYPE.names[1:]:
            rec[name] = [d[name] for d in batch]
        rec["t_us"] = rec["system_time_stamp"] + self._t_offset_us
        self.openness.extend(rec)

    def _drain_sync(self) -> None:
        if self.time_sync is None or not self._sync:
            return
        batch = []
        while self._sync:
            batch.append(self._sync.popleft())
        rec = np.zeros(len(batch), TIME_SYNC_DTYPE)
        arr = np.array(batch, dtype=np.int64)
        rec["system_request_time_stamp"], rec["device_time_stamp"], rec["system_response_time_stamp"] = arr.T
        rec["t_us"] = (arr[:, 0] + arr[:, 2]) // 2 + self._t_offset_us
        self.time_sync.extend(rec)

    def _check_gaps(self, t: np.ndarray) -> None:
        seq = t if self._last_t is None else np.concatenate(([self._last_t], t))
        if len(seq) >= 2:
            dt = np.diff(seq)
            np.add.at(self._isi_hist, np.clip(dt, 0, _ISI_BINS), 1)
            period = 1e6 / self.frequency
            for k in np.flatnonzero(dt > 1.5 * period):
                d = int(dt[k])
                self._max_gap_us = max(self._max_gap_us, d)
                missing = int(round(d / period)) - 1
                if self._gap_reason is not None:
                    reason, force = self._gap_reason, True
                    self._gap_reason = None
                elif self._overflow_pending:
                    reason, force = "buffer_overflow", True
                    self._overflow_pending = False
                    self.stream.count_dropped(missing)
                else:
                    reason, force = "interval", False
                self._emit_gap(int(seq[k]), int(seq[k + 1]), missing, reason, force=force)
        self._last_t = int(t[-1])

    def _emit_gap(self, t0: int, t1: int, missing: int, reason: str, *, force: bool = False) -> None:
        # Token bucket: at most ~5 gap events a second (bursts of 20); every gap is still counted
        # in the stream counters, and suppressed ones are reported in the next event.
        now = time.monotonic()
        self._gap_tokens = min(20.0, self._gap_tokens + (now - self._gap_tokens_wall) * 5.0)
        self._gap_tokens_wall = now
        if self._gap_tokens < 1.0 and not force:
            self._gap_suppressed += 1
            return
        self._gap_tokens = max(self._gap_tokens - 1.0, 0.0)
        self._gap_events += 1
        self.emit("gap", device=self.name, stream="gaze", t_start_us=t0, t_end_us=t1,
                  duration_ms=round((t1 - t0) / 1000.0, 3), missing=missing, reason=reason,
                  suppressed_before=self._gap_suppressed)
        self._gap_suppressed = 0

    def _handle_notes(self) -> None:
        sdk = self._sdk
        while self._notes:
            d = self._notes.popleft()
            if isinstance(d, tuple):
                self._stream_errors += 1
                err = d[1]
                if self._stream_errors <= 20 or self._stream_errors % 100 == 0:
                    self.emit("error", device=self.name, source=str(err.get("source")), error=str(err.get("error")),
                              message=str(err.get("message")), count=self._stream_errors)
                continue
            kind = d.get("notification_type")
            ts = d.get("system_time_stamp")
            t_us = None if ts is None else int(ts) + self._t_offset_us
            if kind == sdk.EYETRACKER_NOTIFICATION_CONNECTION_LOST:
                if not self._lost:
                    self._lost = True
                    self._gap_reason = "connection_lost"
                    self._lost_at_us = t_us
                    self._connection_losses += 1
                    self.status = "connection lost: waiting for the tracker (recording goes on)"
                    self.emit("device_disconnect", device=self.name, reason="connection lost", t_notified_us=t_us)
            elif kind == sdk.EYETRACKER_NOTIFICATION_CONNECTION_RESTORED:
                down_ms = None if (t_us is None or self._lost_at_us is None) else round((t_us - self._lost_at_us) / 1000, 1)
                self._lost = False
                self._stalled = False
                self._restored_wall = time.monotonic()
                self._samples_at_restore = self._n_samples
                self.status = "running"
                self.emit("device_connect", device=self.name, reason="connection restored", reconnected=True,
                          down_ms=down_ms, t_notified_us=t_us)
            elif kind == sdk.EYETRACKER_NOTIFICATION_STREAM_BUFFER_OVERFLOW:
                self._overflow_notes += 1
                self._overflow_pending = True
                self.emit("buffer_overflow", device=self.name, source=str(d.get("notification_source_stream")),
                          t_notified_us=t_us)
            elif kind == getattr(sdk, "EYETRACKER_NOTIFICATION_DEVICE_FAULTS", None):
                self.emit("error", device=self.name, faults=str(d.get("faults")), t_notified_us=t_us)
            elif kind == getattr(sdk, "EYETRACKER_NOTIFICATION_DEVICE_WARNINGS", None):
                self.emit("note", device=self.name, warnings=str(d.get("warnings")), t_notified_us=t_us)
            elif kind == getattr(sdk, "EYETRACKER_NOTIFICATION_GAZE_OUTPUT_FREQUENCY_CHANGED", None):
                f = d.get("gaze_output_frequency")
                if f is not None and abs(float(f) - self.frequency) >= 0.5:
                    self.emit("error", device=self.name, t_notified_us=t_us,
                              message=f"gaze output frequency changed to {float(f):g} Hz by another program "
                                      f"(recording at {self.frequency:g} Hz)")
            elif kind == getattr(sdk, "EYETRACKER_NOTIFICATION_DISPLAY_AREA_CHANGED", None):
                try:
                    self._geometry = _display_geometry(self._et.get_display_area(), self.display_px)
                    self._desc["display_area"] = self._geometry.to_dict()
                except Exception as exc:  # keep the old geometry, say why
                    self.emit("error", device=self.name, message=f"display area changed but cannot be read: {exc}")
                else:
                    self.emit("note", device=self.name, message="display area changed",
                              display_area=self._geometry.to_dict(), t_notified_us=t_us)

    def _watchdog(self, n_new: int) -> None:
        now = time.monotonic()
        if n_new:
            self._last_data_wall = now
            self._restored_wall = None
            self._resub_backoff = 0.0
            if self._stalled:
                self._stalled = False
                self.status = "running"
                self.emit("device_connect", device=self.name, reason="gaze data flows again", reconnected=True)
            return
        if self._lost or self._calibrating:
            return
        if self._restored_wall is not None:
            if now - self._restored_wall >= self.resubscribe_after_s:
                self._resubscribe()
                self._restored_wall = now
            return
        if not self._stalled and now - self._last_data_wall >= self.stall_timeout_s:
            self._stalled = True
            self._gap_reason = self._gap_reason or "no_data"
            self.status = "no gaze data: re-subscribing"
            self.emit("device_disconnect", device=self.name,
                      reason=f"no gaze data for {now - self._last_data_wall:.1f} s")
            self._next_resub_wall = now
            self._resub_backoff = self.stall_timeout_s
        if self._stalled and now >= self._next_resub_wall:
            self._resubscribe()
            self._next_resub_wall = now + self._resub_backoff
            self._resub_backoff = min(self._resub_backoff * 2, 10.0)

    def _close(self) -> None:
        for s in (self.openness, self.time_sync):
            if s is not None:
                s.close()

    # ------------------------------------------------------------------ public surface
    @property
    def sdk(self) -> Optional[ModuleType]:
        """The SDK module in use (after :meth:`open`)."""
        return self._sdk

    @property
    def eyetracker(self):
        """The SDK ``EyeTracker`` object (after :meth:`open`)."""
        return self._et

    def display_geometry(self) -> Optional[DisplayGeometry]:
        """The display area the tracker is configured for (UCS mm), or None when unreadable."""
        return self._geometry

    def screen_based_calibration(self):
        """A new SDK ``ScreenBasedCalibration`` for this tracker (see :mod:`.calibration`)."""
        if self._et is None:
            raise DeviceUnavailable("open the tracker before calibrating")
        if not self._desc.get("screen_based_calibration"):
            raise DeviceUnavailable(f"{self._desc.get('model')} ({self._desc.get('serial_number')}) "
                                    "does not offer screen-based calibration")
        return self._sdk.ScreenBasedCalibration(self._et)

    def set_calibration_mode(self, active: bool) -> None:
        """Tell the watchdog that the tracker is in calibration mode (no re-subscribing then)."""
        self._calibrating = bool(active)

    def time_sync_records(self) -> np.ndarray:
        """Every time-synchronisation packet the device thread has passed on (:data:`TIME_SYNC_DTYPE`)."""
        if self.time_sync is None:
            return np.zeros(0, TIME_SYNC_DTYPE)
        return self.time_sync.latest(_SYNC_CAPACITY)

    def clock_sync(self) -> dict:
        """Device-vs-system clock from the SDK's time synchronisation packets.

        Returns
        -------
        dict
            ``n`` packets, ``offset_us`` (device minus system time at the latest packet, from the
            request/response midpoint), ``drift_ppm`` (least-squares slope of that offset over
            time, packets with a round trip above twice the median left out), ``rtt_median_us``
            and ``span_s``. Only ``n`` when fewer than 2 packets arrived.
        """
        rec = self.time_sync_records()
        return fit_clock_sync(rec["system_request_time_stamp"], rec["device_time_stamp"],
                              rec["system_response_time_stamp"])

    def isi_median_ms(self) -> Optional[float]:
        """Median inter-sample interval of everything received (1 us resolution)."""
        total = int(self._isi_hist.sum())
        if total == 0:
            return None
        k = int(np.searchsorted(np.cumsum(self._isi_hist), (total + 1) / 2))
        return k / 1000.0

    def stats(self) -> dict:
        """Running counters for the UI and the session report."""
        c = self.stream.counters.as_dict() if self.stream is not None else {}
        return {**c, "isi_median_ms": self.isi_median_ms(), "max_gap_ms": round(self._max_gap_us / 1000, 3),
                "connection_losses": self._connection_losses, "overflow_notifications": self._overflow_notes,
                "callback_ring_dropped": self._ring_dropped, "resubscriptions": self._resubscriptions,
                "gap_events": self._gap_events, "stream_errors": self._stream_errors}

    def info(self) -> dict:
        d = super().info()
        sdk = self._sdk if self._sdk is not None else self._sdk_given
        d.update({"sdk": "tobii_research", "sdk_version": None if sdk is None else str(getattr(sdk, "__version__", "?")),
                  "requested_frequency_hz": self.requested_frequency, "frequency_hz": self.frequency,
                  "time_offset_us": self._t_offset_us, "status": self.status,
                  "eye_openness_recorded": self.openness is not None})
        for k in ("address", "model", "device_name", "serial_number", "firmware_version", "runtime_version",
                  "capabilities", "frequencies_hz", "display_area", "eye_openness", "screen_based_calibration"):
            if k in self._desc:
                d[k] = self._desc[k]
        if self.stream is not None:
            d["clock_sync"] = self.clock_sync()
            d["stats"] = self.stats()
        return d
