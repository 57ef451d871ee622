"""Recording throughput: synthetic 250 Hz gaze + 30 fps 1280x720 video + 48 kHz audio for 60 s.

Reports samples lost, CPU share (psutil, this process) and bytes written per second, against a
baseline measured in the same run: the same devices running for the same time with nothing
recording (so the ratio shows what recording itself costs).

    python benchmarks/bench_recording.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emer_live.devices.factory import make_devices  # noqa: E402
from emer_live.recording import Recorder, SessionReader  # noqa: E402


def run(seconds: float, record: bool, folder: Path):
    ds = make_devices(tracker="synthetic", camera="synthetic", mic="synthetic", rate=250, fps=30, size=(1280, 720))
    ds.open_all()
    rec = None
    if record:
        rec = Recorder(folder, clock=ds.clock)
        rec.attach("gaze", ds.tracker.stream)
        rec.attach("camera", ds.camera.stream)
        rec.attach("audio", ds.mic.stream)
        rec.start()
    proc = psutil.Process()
    proc.cpu_percent(None)
    t0 = time.perf_counter()
    ds.start_all()
    time.sleep(seconds)
    cpu = proc.cpu_percent(None)
    ds.stop_all()
    wall = time.perf_counter() - t0
    out = {"cpu_percent": cpu, "wall_s": wall,
           "gaze": ds.tracker.stream.counters.samples, "frames": ds.camera.stream.counters.samples,
           "audio_blocks": ds.mic.stream.counters.samples}
    if rec is not None:
        meta = rec.stop()
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        info = SessionReader(folder).summary()["streams"]
        out.update(bytes_per_s=size / wall, written=meta["written"],
                   lost={k: out_k - info[k]["samples"] for k, out_k in
                         (("gaze", out["gaze"]), ("camera", out["frames"]))},
                   audio_lost=out["audio_blocks"] - info["audio"]["blocks"],
                   overruns={k: v["counters"]["recorder_overruns"] for k, v in meta["streams"].items()})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_rec_"))
    try:
        base = run(a.seconds, False, tmp / "none")
        rec = run(a.seconds, True, tmp / "rec")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cores = psutil.cpu_count() or 1
    print(f"devices only (baseline): CPU {base['cpu_percent']:.0f}% of one core "
          f"({base['cpu_percent'] / cores:.0f}% of {cores} cores)")
    print(f"devices + recorder:      CPU {rec['cpu_percent']:.0f}% of one core "
          f"({rec['cpu_percent'] / cores:.0f}% of {cores} cores); ratio {rec['cpu_percent'] / max(base['cpu_percent'], 1e-9):.2f}x")
    print(f"samples lost: gaze {rec['lost']['gaze']}, camera {rec['lost']['camera']}, audio blocks {rec['audio_lost']}; "
          f"recorder overruns {rec['overruns']}")
    print(f"written: {rec['written']}; {rec['bytes_per_s'] / 1e6:.2f} MB/s")


if __name__ == "__main__":
    main()
