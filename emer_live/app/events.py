"""Typed events a :class:`~emer_live.app.run.Run` delivers to its subscribers.

Events are made on any thread (device threads, the model worker, the caller) and queued; the
run hands them to subscribers inside :meth:`Run.poll`, on the thread that polls (the GUI thread
in the desktop app, the main thread in the CLI). So a subscriber never runs on a worker thread
and may touch widgets.
"""

from __future__ import annotations

import traceback as _tb
from dataclasses import dataclass, field
from typing import Dict, Optional

__all__ = ["RunEvent", "RunStarted", "PredictionMade", "PhaseChanged", "DeviceEvent", "DeviceFailed",
           "RunError", "RunNote", "Progress", "RunFinished", "format_exception"]


def format_exception(exc: BaseException) -> str:
    return "".join(_tb.format_exception(type(exc), exc, exc.__traceback__))


@dataclass(frozen=True)
class RunEvent:
    t_us: int                       # session clock when it happened (or was noticed)


@dataclass(frozen=True)
class RunStarted(RunEvent):
    kind: str
    session_dir: Optional[str]
    t_origin_us: int
    devices: Dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictionMade(RunEvent):
    prediction: object              # emer_live.live.prediction.Prediction


@dataclass(frozen=True)
class PhaseChanged(RunEvent):
    phase: str                      # emer_live.session.controller.Phase value
    trial: Optional[int]


@dataclass(frozen=True)
class DeviceEvent(RunEvent):
    """Something a device reported (gap, stall, disconnect, reconnect, overflow...)."""

    device_kind: str
    detail: Dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceFailed(RunEvent):
    """A device's capture thread ended with an error; what the run does next is its policy."""

    device: str
    error: BaseException
    traceback: str
    action: str                     # what the run did: "stopped", "aborted", "continues"


@dataclass(frozen=True)
class RunError(RunEvent):
    """An error in a worker (engine, recorder, a subscriber): kept as the exception object."""

    where: str
    error: BaseException
    traceback: str

    def __str__(self) -> str:
        return f"{self.where}: {type(self.error).__name__}: {self.error}"


@dataclass(frozen=True)
class RunNote(RunEvent):
    """Something the operator should know (e.g. a checkpoint trained on other windows)."""

    text: str


@dataclass(frozen=True)
class Progress(RunEvent):
    """About once a second: elapsed time and per-stream counters."""

    elapsed_s: float
    duration_s: Optional[float]
    counters: Dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFinished(RunEvent):
    status: str                     # complete | aborted | error | disk_full
    reason: str
    summary: Dict[str, object] = field(default_factory=dict)
