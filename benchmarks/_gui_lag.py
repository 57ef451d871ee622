"""The GUI event-loop lag probe shared by bench_gui.py and bench_replay_gui.py: a precise 10 ms
timer in the event loop; lag = how late each probe fires beyond its 10 ms."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["measure", "stats"]


def measure(app, seconds: float, until=None) -> np.ndarray:
    """Run ``app``'s event loop for ``seconds`` (or until ``until()`` turns true); the lags in ms."""
    from PyQt6 import QtCore

    lags = []
    last = [time.perf_counter()]
    probe = QtCore.QTimer()
    probe.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    probe.setInterval(10)

    def fire():
        now = time.perf_counter()
        lags.append(max(0.0, (now - last[0]) * 1e3 - 10.0))
        last[0] = now

    probe.timeout.connect(fire)
    probe.start()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not (until and until()):
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.001)
    probe.stop()
    return np.asarray(lags[5:], float)      # the first probes see window creation


def stats(v: np.ndarray) -> str:
    return f"p50 {np.percentile(v, 50):6.1f}  p95 {np.percentile(v, 95):6.1f}  max {v.max():7.1f} ms  (n={len(v)})"
