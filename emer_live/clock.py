"""The session clock: integer microseconds, monotonic, shared by every stream (DESIGN sec. 4).

When the Tobii SDK is importable its ``get_system_time_stamp`` is used, because the tracker stamps
``system_time_stamp`` on that clock; otherwise ``time.monotonic_ns() // 1000``. Replays substitute a
:class:`ReplayClock` that runs on the recorded time base.
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
import time
from typing import Callable, Optional

__all__ = ["SessionClock", "ReplayClock", "system_clock", "monotonic_us", "utc_now_iso", "fit_clock_sync"]


if sys.platform == "win32":
    # monotonic() ticks every ~15.6 ms on Windows before Python 3.13; perf_counter is fine-grained
    def monotonic_us() -> int:
        return time.perf_counter_ns() // 1000
else:
    def monotonic_us() -> int:
        return time.monotonic_ns() // 1000


def _tobii_clock() -> Optional[Callable[[], int]]:
    try:
        import tobii_research  # noqa: F401  (optional SDK; absent on most machines)
    except ImportError:
        return None
    return tobii_research.get_system_time_stamp


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class SessionClock:
    """Monotonic microsecond clock. ``source`` names where the time comes from."""

    def __init__(self, *, use_sdk: bool = True) -> None:
        fn = _tobii_clock() if use_sdk else None
        self._now = fn if fn is not None else monotonic_us
        self.source = ("tobii_research.get_system_time_stamp" if fn is not None else
                       "time.perf_counter_ns//1000" if sys.platform == "win32" else "time.monotonic_ns//1000")

    #: session-clock seconds per real second (a replay clock may run faster)
    speed: Optional[float] = 1.0

    def now_us(self) -> int:
        return int(self._now())

    def sleep_until(self, t_us: int) -> None:
        """Sleep until the clock reads ``t_us`` (returns at once if already past)."""
        while True:
            left = t_us - self.now_us()
            if left <= 0:
                return
            time.sleep(min(left / 1e6, 0.05))

    def describe(self) -> dict:
        return {"source": self.source, "unit": "us", "start_utc": utc_now_iso(), "start_t_us": self.now_us()}


class ReplayClock(SessionClock):
    """Runs on a recorded time base: ``now`` starts at ``t0_us`` and advances ``speed`` times
    real time; ``speed=None`` means "as fast as possible": time only moves when :meth:`advance_to`
    is called by the replay source that drives it."""

    def __init__(self, t0_us: int, *, speed: Optional[float] = 1.0) -> None:
        self.source = "replay"
        self._t0 = int(t0_us)
        self._speed = speed
        self._wall0 = monotonic_us()
        self._manual = int(t0_us)
        self._lock = threading.Lock()

    @property
    def as_fast_as_possible(self) -> bool:
        return self._speed is None

    @property
    def speed(self) -> Optional[float]:
        """Session-clock seconds per real second; None: as fast as possible."""
        return self._speed

    def now_us(self) -> int:
        if self._speed is None:
            with self._lock:
                return self._manual
        return self._t0 + int((monotonic_us() - self._wall0) * self._speed)

    def advance_to(self, t_us: int) -> None:
        with self._lock:
            if t_us > self._manual:
                self._manual = int(t_us)

    def sleep_until(self, t_us: int) -> None:
        if self._speed is None:
            return  # nobody waits in fast replay: time is whatever the data says
        super().sleep_until(t_us)


_default: Optional[SessionClock] = None


def system_clock() -> SessionClock:
    """The process-wide live session clock."""
    global _default
    if _default is None:
        _default = SessionClock()
    return _default


def fit_clock_sync(request_us, device_us, response_us) -> dict:
    """Device-vs-system clock from time-synchronisation packets (a request/response round trip
    with the device's time stamp inside it; all microseconds).

    Returns ``n``, and with 2 or more packets: ``offset_us`` (device minus system time at the
    latest packet, system time taken at the round trip's midpoint), ``drift_ppm`` (least-squares
    slope of that offset over time; packets whose round trip is above twice the median are left
    out because the midpoint is then uncertain), ``rtt_median_us`` and ``span_s``.
    """
    import numpy as np

    req = np.asarray(request_us, dtype=np.float64)
    resp = np.asarray(response_us, dtype=np.float64)
    dev = np.asarray(device_us, dtype=np.float64)
    out: dict = {"n": int(len(req)), "source": "time_synchronization_data"}
    if len(req) < 2:
        return out
    rtt = resp - req
    keep = rtt <= 2 * max(float(np.median(rtt)), 1.0)
    mid = (req + resp) / 2
    off = dev - mid
    x = mid[keep] - mid[keep][0]
    out.update(offset_us=float(off[-1]), rtt_median_us=float(np.median(rtt)), span_s=float((mid[-1] - mid[0]) / 1e6))
    if keep.sum() >= 2 and x[-1] > 0:
        slope = np.polyfit(x, off[keep] - off[keep][0], 1)[0]
        out["drift_ppm"] = float(slope * 1e6)
    return out
