"""The UI-neutral run layer (DESIGN sec. 16): a typed config -> devices, recorder, live engine and
session controller, driven by ``start()`` / ``poll()`` / ``stop()`` with typed events. The CLI
commands and the desktop app (``emer_live.ui``) are two skins over it. Imports without Qt."""

from .config import RUN_KINDS, RunConfig, parse_speed
from .events import (DeviceEvent, DeviceFailed, PhaseChanged, PredictionMade, Progress, RunError, RunEvent,
                     RunFinished, RunNote, RunStarted)
from .loop import StopFlag, drive, format_losses, signal_exit_code
from .run import FAILURE_POLICY, Run, RunState, default_checkpoint

__all__ = ["RunConfig", "RUN_KINDS", "parse_speed", "Run", "RunState", "FAILURE_POLICY", "default_checkpoint",
           "StopFlag", "drive", "signal_exit_code", "format_losses", "RunEvent", "RunStarted", "PredictionMade", "PhaseChanged", "DeviceEvent",
           "DeviceFailed", "RunError", "RunNote", "Progress", "RunFinished"]
