"""The device contract every capture source follows (synthetic, replay, real hardware).

A device is constructible even when its hardware is missing; :meth:`Device.open` raises
:class:`~emer_live.errors.DeviceUnavailable` with the reason, and :attr:`Device.status` says it.
Once started, a producer thread appends records to :attr:`Device.stream` stamped on the session
clock; device-side events (disconnect, overflow, stall) go to the optional ``on_event`` callback
as ``(t_us, kind, detail_dict)`` so a recorder can log them. Devices never call the UI.
"""

from __future__ import annotations

import abc
import threading
from typing import Callable, Optional

from ..clock import SessionClock, system_clock
from ..streams import Stream

__all__ = ["Device", "EventSink", "buffer_on_clock_us"]

EventSink = Callable[[int, str, dict], None]


def buffer_on_clock_us(seconds: float, clock) -> int:
    """A device buffer of ``seconds`` real time in session-clock microseconds: on a replay clock
    running ``speed`` times real time the same buffer holds ``speed`` times more session time."""
    speed = getattr(clock, "speed", 1.0) or 1.0
    return int(round(seconds * 1e6 * max(1.0, float(speed))))


class Device(abc.ABC):
    """Base class. Subclasses set ``kind`` and implement ``_open``, ``_run`` (thread body) and
    optionally ``_close``; ``_run`` must return promptly once ``self._stop`` is set."""

    kind: str = "device"          # "tracker" | "camera" | "mic"

    def __init__(self, *, name: str, clock: Optional[SessionClock] = None,
                 on_event: Optional[EventSink] = None) -> None:
        self.name = name
        self.clock = clock or system_clock()
        self.on_event = on_event
        self.stream: Optional[Stream] = None
        self.online = False
        self.status = "not opened"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        """Connect to the source and create :attr:`stream`; raises DeviceUnavailable."""
        self._open()
        self.online = True
        self.status = "open"

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        if self.stream is None:
            self.open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._thread_main, name=f"{self.kind}:{self.name}", daemon=True)
        self._thread.start()
        self.status = "running"

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():      # kept, so running stays true and start() refuses
                self.emit("error", device=self.name, message=f"the device thread did not stop within {timeout:g} s")
            else:
                self._thread = None
        self._close()
        if self.stream is not None:
            self.stream.close()
        self.online = False
        self.status = "stopped"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """True when a finite source (a replay) has delivered everything."""
        return False

    def info(self) -> dict:
        """Description stored in session.json (model, serial, rates, sizes...)."""
        return {"kind": self.kind, "name": self.name}

    def emit(self, kind: str, **detail) -> None:
        if self.on_event is not None:
            self.on_event(self.clock.now_us(), kind, detail)

    # -- for subclasses ----------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced through status/error, never silently
            self.error = exc
            self.status = f"failed: {exc}"
            self.emit("error", device=self.name, message=str(exc))

    @abc.abstractmethod
    def _open(self) -> None:
        """Connect and create ``self.stream``; raise DeviceUnavailable with the reason."""

    @abc.abstractmethod
    def _run(self) -> None:
        """Producer loop: append to ``self.stream`` until ``self._stop`` is set."""

    def _close(self) -> None:
        pass
