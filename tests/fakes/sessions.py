"""Small session folders written by the real :class:`~emer_live.recording.Recorder` on a
virtual clock (no devices, no threads): gaze at 250 Hz and 64x48 video at 30 fps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from emer_live.clock import ReplayClock
from emer_live.recording import Recorder
from emer_live.schema import GAZE_DTYPE, audio_block_dtype, frame_dtype
from emer_live.streams import Stream


def gaze_rows(t_us):
    g = np.zeros(len(t_us), GAZE_DTYPE)
    g["t_us"] = g["system_time_stamp"] = t_us
    g["device_time_stamp"] = np.asarray(t_us) + 1000
    for eye in ("left", "right"):
        g[f"{eye}_gaze_point_on_display_area_x"] = 0.5
        g[f"{eye}_gaze_point_on_display_area_y"] = 0.5
        g[f"{eye}_pupil_diameter"] = 3.0
        g[f"{eye}_pupil_validity"] = 1
        g[f"{eye}_gaze_point_validity"] = 1
    return g


_DEAD_PID = []


def dead_pid() -> int:
    """The pid of a process that has ended (a crashed writer's)."""
    if not _DEAD_PID:
        p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
        _DEAD_PID.append(int(p.stdout))
    return _DEAD_PID[0]


def crash_lock(path) -> None:
    """Make a session's lock look like its writer crashed (the pid of an ended process), as a
    SIGKILLed recorder leaves it; an in-process recorder that is never stopped still holds it."""
    lock = Path(path) / "recording.lock"
    d = json.loads(lock.read_text())
    d["pid"] = dead_pid()
    lock.write_text(json.dumps(d))


def make_session(path, *, participant="P01", seconds=3, trials=1, stop=True, meta=None, audio=False):
    """A session with ``trials`` one-second trials (from 1 s on, each followed by SAM footage).
    ``stop=False``: as a crash leaves it (status recording, a stale lock); ``audio``: also 16 kHz
    mono audio in 160-sample blocks (a quiet tone)."""
    end = max(seconds, trials + 1) * 1_000_000
    gaze = Stream("gaze", GAZE_DTYPE, max(5000, end // 4000 + 10), nominal_rate_hz=250)
    cam = Stream("camera", frame_dtype(64, 48), max(400, end // 33_333 + 10), nominal_rate_hz=30)
    clock = ReplayClock(0, speed=None)
    rec = Recorder(path, clock=clock, meta={"participant": participant, **(meta or {})})
    rec.attach("gaze", gaze)
    rec.attach("camera", cam)
    mic = None
    if audio:
        mic = Stream("audio", audio_block_dtype(160, 1), end // 10_000 + 10, nominal_rate_hz=100)
        rec.attach("audio", mic)
    rec.start(thread=False)
    rec.begin_between("baseline", t_us=0)
    gaze.extend(gaze_rows(np.arange(0, end, 4000, dtype=np.int64)))
    for t in range(0, end, 33_333):
        f = np.zeros(1, cam.dtype)
        f["t_us"], f["frame_index"] = t, t // 33_333
        f["image"][0] = 80 + (t // 100_000) % 100
        cam.extend(f)
    if mic is not None:
        blocks = np.zeros(end // 10_000, mic.dtype)
        blocks["t_us"] = np.arange(len(blocks)) * 10_000
        blocks["block_index"] = np.arange(len(blocks))
        blocks["n"] = 160
        blocks["samples"][:, :, 0] = 0.1 * np.sin(np.arange(160) * 2 * np.pi / 16)
        mic.extend(blocks)
    for k in range(1, trials + 1):
        t0 = k * 1_000_000
        rec.begin_trial(k, f"hap_{k:02d}", t_us=t0)
        rec.log_event("stimulus_onset", trial=k, t_us=t0, stimulus_id=f"hap_{k:02d}")
        rec.log_event("stimulus_offset", trial=k, t_us=t0 + 800_000)
        rec.begin_between(f"sam_{k:02d}", t_us=t0 + 800_000)
    clock.advance_to(end)
    rec.drain()
    if stop:
        rec.stop()
    else:
        crash_lock(path)
    return rec
