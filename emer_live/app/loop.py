"""The plain loop the CLI commands drive a :class:`~emer_live.app.run.Run` with, and the signal
flag that turns Ctrl-C / SIGTERM into a clean stop (files closed, status ``aborted``)."""

from __future__ import annotations

import signal
import threading
from typing import Optional

__all__ = ["StopFlag", "drive", "signal_exit_code", "format_losses"]


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag so recordings stop cleanly (files closed, status kept).
    Only the main thread can own signal handlers; elsewhere it is a plain event."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: Optional[str] = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name
        self.event.set()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def drive(run, *, stop_event: Optional[threading.Event] = None, signals: bool = True):
    """Start ``run`` and poll it to the end; Ctrl-C/SIGTERM (or ``stop_event``) stop it cleanly.
    Returns the run. An exception escaping the loop still finalises the session folder."""
    flag = StopFlag()
    wait = stop_event or threading.Event()
    with (flag if signals else _Null()):
        run.start()
        try:
            while run.poll():
                if flag.event.is_set():
                    run.stop(f"signal {flag.signal}")
                elif stop_event is not None and stop_event.is_set():
                    run.stop("stop requested (signal or API)")
                interval = run.poll_interval_s
                if interval > 0:
                    (flag.event if signals else wait).wait(interval)
        finally:
            if run.running:   # an exception in a subscriber or the loop itself
                run.close("error in the run loop")
    run.signal = flag.signal
    return run


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def signal_exit_code(run) -> int:
    """128 + the signal number when Ctrl-C/SIGTERM stopped ``run`` (the shell convention), else 0:
    a run stopped by a signal is ``aborted`` and its exit status says so too."""
    sig = getattr(run, "signal", None)
    return 128 + int(getattr(signal, sig)) if sig else 0


def format_losses(losses: dict) -> list:
    """One line per stream for the end of a run: what was expected, kept and lost."""
    lines = []
    for name, l in losses.items():
        exp = l.get("expected")
        lost = "" if exp is None else f"expected {exp}, kept {l['kept']}, missing {l['missing']}"
        if exp is None:
            lost = f"kept {l['kept']}"
        extra = [f"{k} {l[k]}" for k in ("gaps", "dropped", "overruns", "non_monotonic") if l.get(k)]
        flag = "" if not (l.get("missing") or extra) else "  <- LOSS"
        lines.append(f"losses {name:<7} over {l['span_s']:.1f} s: {lost}"
                     + (f"; {', '.join(extra)}" if extra else "") + flag)
    return lines
