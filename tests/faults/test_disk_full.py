"""The recording disk fills during a synthetic `record`: exit 4 with one clear line, session.json
says disk_full with the cause, `info` reads the folder and flags the early stop, and what was
captured before the disk filled is on disk (up to the last flush before the stop)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from emer_live.recording import SessionReader

ROOT = Path(__file__).resolve().parents[2]


def test_disk_fills_while_recording(small_disk, fault_table):
    out = small_disk / "s"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "emer_live.cli", "record", "--tracker", "synthetic", "--camera",
                        "synthetic", "--mic", "synthetic", "--size", "320x240", "--duration", "60", "--out", str(out),
                        "--quiet"], capture_output=True, text=True, timeout=120, env=env)
    meta = json.loads((out / "session.json").read_text())
    r = SessionReader(out)
    stop = [e for e in r.events() if e["kind"] == "recording_stop"]
    summary = r.summary()
    last = max(s["last_t_us"] for k, s in summary["streams"].items() if s["last_t_us"] is not None)
    lag = (stop[-1]["t_us"] - summary["streams"]["gaze"]["last_t_us"]) / 1e6 if stop else float("nan")
    recorded = (last - summary["streams"]["gaze"]["first_t_us"]) / 1e6
    fault_table.add("disk full while recording", f"3 MB tmpfs fills after {recorded:.1f} s",
                    f"exit {p.returncode}, status {meta['status']}, info problems {len(summary['problems'])}",
                    lag, "exit 4, one line, gaze kept to <= 1 s before the stop")
    assert p.returncode == 4 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith("emer-live: error: disk full")
    assert meta["status"] == "disk_full" and "disk full" in meta["error"]
    assert any("stopped early" in m for m in summary["problems"])
    assert recorded > 1.0 and 0 <= lag <= 1.0
