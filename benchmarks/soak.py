"""Soak: a long synthetic recording at 250 Hz gaze + 30 fps video + 48 kHz audio.

Reports samples lost (device deliveries vs rows on disk, and the device/recorder counters),
memory growth (RSS of this process, sampled every 10 s), CPU share (this process, and the
recorder thread alone) and MB written per minute - per minute and in total. Ratios are against
minute 1 of the same run (the baseline), so drift over the soak shows as a ratio != 1.

    python benchmarks/soak.py --minutes 60            # the full soak (docs/reliability.md)
    python benchmarks/soak.py --minutes 5 --check     # CI: exit 1 when a bound is broken
    python benchmarks/soak.py --minutes 3 --size 640x480

Devices and recorder run in this process (as in `emer-live record`); the synthetic camera
renders the phantom's face, which costs most of the CPU - the recorder thread's own share is
printed separately, and so is the machine's load average (a soak beside other jobs is a
different test from one on an idle machine). Losses are counted where they happen: a device
whose thread was starved longer than its buffer drops samples and reports them (counters
`dropped`, a gap in the stamps); what the recorder could not keep up with shows as
`recorder_overruns` and as deliveries missing on disk.

``--check`` applies the bounds below and exits 1 naming the broken one: per stream at most
``MAX_LOST_FRACTION`` of the samples the stamps' span calls for may be lost, every loss must be
accounted for by a counter, and memory may grow at most ``MAX_GROWTH_MB`` after minute 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emer_live.devices.factory import make_devices  # noqa: E402
from emer_live.recording import SessionReader  # noqa: E402
from emer_live.recording.writer import record_device_set  # noqa: E402

SAMPLE_S = 10.0
MAX_LOST_FRACTION = 0.01     # --check: a loaded CI machine may stall a device once; 1 % is far beyond that
MAX_GROWTH_MB = 64.0         # --check: growth of the RSS floor after minute 1 (buffers are full by then)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def thread_cpu_s(proc: psutil.Process, native_id) -> float:
    for t in proc.threads():
        if t.id == native_id:
            return t.user_time + t.system_time
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the soak (default 60)")
    ap.add_argument("--size", default="1280x720", help="camera frame size (default 1280x720)")
    ap.add_argument("--out", default=None, help="keep the recording here (default: a temporary folder, removed)")
    ap.add_argument("--check", action="store_true",
                    help=f"exit 1 when a stream lost more than {MAX_LOST_FRACTION:.0%} of its samples, a loss is "
                         f"not accounted for by a counter, or memory grew more than {MAX_GROWTH_MB:g} MB after minute 1")
    a = ap.parse_args(argv)
    if not a.minutes > 0:
        ap.error("--minutes must be > 0")
    w, h = (int(x) for x in a.size.lower().split("x"))
    tmp = None
    if a.out:
        folder = Path(a.out)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="soak_"))
        folder = tmp / "soak"
    try:
        return soak(a.minutes, (w, h), folder, check=a.check)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def load_1min() -> float:
    try:
        return psutil.getloadavg()[0]
    except (AttributeError, OSError):   # no load average on this platform
        return float("nan")


def soak(minutes: float, size, folder: Path, *, check: bool = False) -> int:
    import cv2

    cv2.setNumThreads(1)
    ds = make_devices(tracker="synthetic", camera="synthetic", mic="synthetic", rate=250, fps=30, size=size)
    ds.open_all()
    rec = record_device_set(ds, folder, meta={"participant": "SOAK01"})
    proc = psutil.Process()
    cores = psutil.cpu_count() or 1
    rec.start()
    rec.begin_between("recording")
    rec_tid = rec._thread.native_id  # the recorder's own thread (CPU share of recording alone)
    ds.start_all()
    t0 = time.perf_counter()
    cpu0 = sum(proc.cpu_times()[:2])
    rcpu0 = thread_cpu_s(proc, rec_tid)
    samples = []   # (t_s, rss_MB, proc_cpu_s, rec_cpu_s, bytes, load_1min)
    end = minutes * 60.0
    print(f"soak: {minutes:g} min at 250 Hz + 30 fps {size[0]}x{size[1]} + 48 kHz into {folder}", flush=True)
    while True:
        now = time.perf_counter() - t0
        samples.append((now, proc.memory_info().rss / 2**20, sum(proc.cpu_times()[:2]) - cpu0,
                        thread_cpu_s(proc, rec_tid) - rcpu0, folder_bytes(folder), load_1min()))
        if len(samples) % 6 == 1:
            s = samples[-1]
            print(f"  t={s[0]:7.0f} s  RSS {s[1]:7.1f} MB  written {s[4] / 2**20:8.1f} MB", flush=True)
        if now >= end:
            break
        time.sleep(min(SAMPLE_S, max(0.0, end - now)))
    ds.stop_all()
    delivered = {"gaze": ds.tracker.stream.counters.samples, "camera": ds.camera.stream.counters.samples,
                 "audio": ds.mic.stream.counters.samples}
    meta = rec.stop()
    wall = time.perf_counter() - t0
    dropped = {"gaze": ds.tracker.stream.counters.dropped, "camera": ds.camera.stream.counters.dropped,
               "audio": ds.mic.stream.counters.dropped}
    broken = report(samples, wall, delivered, dropped, meta, folder, cores)
    if check and broken:
        for b in broken:
            print(f"soak --check: {b}", file=sys.stderr)
        return 1
    if check:
        print("soak --check: every bound holds")
    return 0


def theil_sen(x, y) -> float:
    """Median of pairwise slopes: a trend that one transient spike (a GC, a burst) does not move."""
    if len(x) < 3:
        return float("nan")
    i, j = np.triu_indices(len(x), 1)
    dx = x[j] - x[i]
    ok = dx > 0
    return float(np.median((y[j] - y[i])[ok] / dx[ok]))


def report(samples, wall, delivered, dropped, meta, folder: Path, cores: int) -> list:
    """Print the per-minute table and totals; return the --check bounds that were broken."""
    broken = []
    s = np.array(samples)
    t, rss, cpu, rcpu, nbytes, load = s.T
    info = SessionReader(folder).summary()["streams"]
    on_disk = {"gaze": info["gaze"]["samples"], "camera": info["camera"]["samples"], "audio": info["audio"]["blocks"]}
    nominal = {"gaze": 250.0, "camera": 30.0}
    print("\nper minute (baseline = minute 1)")
    print(" minute   RSS MB   CPU % one core (rec thread)   MB written   load avg (1 min)")
    marks = [0.0] + [60.0 * k for k in range(1, int(t[-1] // 60) + 1)] + ([t[-1]] if t[-1] % 60 > 1 else [])
    rows = []
    for a, b in zip(marks[:-1], marks[1:]):
        i, j = int(np.searchsorted(t, a)), int(np.searchsorted(t, b))
        j = min(j, len(t) - 1)
        if j <= i:
            continue
        dt = t[j] - t[i]
        rows.append((b / 60.0, rss[j], 100 * (cpu[j] - cpu[i]) / dt, 100 * (rcpu[j] - rcpu[i]) / dt,
                     (nbytes[j] - nbytes[i]) / 2**20 * 60.0 / dt, float(np.nanmax(load[i:j + 1]))))
        print(f" {b / 60:6.1f}  {rss[j]:7.1f}   {rows[-1][2]:6.1f} ({rows[-1][3]:5.1f})"
              f"                  {rows[-1][4]:8.1f}/min   {rows[-1][5]:5.2f} (max)")
    base = rows[0]
    last = rows[-1]
    after1 = t >= min(60.0, t[-1] / 2)
    slope = theil_sen(t[after1] / 60.0, rss[after1])
    # Transient peaks (a burst of frames in flight, ~+50..120 MB for one sample) come and go; what
    # stays is the floor: the lowest RSS of the last minute against the lowest of the minute after
    # the buffers filled. Comparing the last sample instead flags a peak as a leak.
    in_first = (t >= 60.0) & (t < 120.0) if t[-1] >= 150.0 else after1
    in_last = t >= max(t[-1] - 60.0, float(t[after1][0]) if after1.any() else 0.0)
    floor0, floor1 = float(rss[in_first].min()), float(rss[in_last].min())
    growth = floor1 - floor0
    print("\ntotals")
    print(f"  length: {wall / 60:.2f} min")
    for k in ("gaze", "camera", "audio"):
        c = meta["streams"][k]["counters"]
        extra = ""
        # samples the device never delivered (dropped while starved) plus deliveries missing on disk
        lost = int(dropped[k]) + delivered[k] - on_disk[k]
        accounted = int(dropped[k]) + int(c.get("recorder_overruns", 0))
        expected = delivered[k] + int(dropped[k])
        if k in nominal:
            span = (info[k]["last_t_us"] - info[k]["first_t_us"]) / 1e6
            expected = int(round(span * nominal[k])) + 1
            extra = f", expected by the stamps' span {expected}"
            lost = max(lost, expected - on_disk[k])
        print(f"  {k:6s}: delivered {delivered[k]}, on disk {on_disk[k]} (lost {lost}){extra}; "
              f"counters gaps {c.get('gaps', 0)} missing {c.get('missing', 0)} dropped {c.get('dropped', 0)} "
              f"recorder_overruns {c.get('recorder_overruns', 0)}; info gaps {info[k]['gaps']}")
        if expected and lost > MAX_LOST_FRACTION * expected:
            broken.append(f"{k}: lost {lost} of {expected} samples ({lost / expected:.2%} > {MAX_LOST_FRACTION:.0%})")
        if lost > accounted:
            broken.append(f"{k}: {lost} samples lost but the counters account for {accounted} (dropped + overruns)")
    print(f"  memory: RSS {rss[0]:.1f} MB at start, {base[1]:.1f} MB after minute 1, {rss[-1]:.1f} MB at the end; "
          f"peak {rss.max():.1f} MB (transient); floor after minute 1 {floor0:.1f} MB, in the last minute "
          f"{floor1:.1f} MB: growth {growth:+.1f} MB ({slope:+.2f} MB/min, median of pairwise slopes)")
    tot_cpu = 100 * cpu[-1] / t[-1]
    print(f"  CPU: {tot_cpu:.1f}% of one core ({tot_cpu / cores:.1f}% of {cores} cores); recorder thread alone "
          f"{100 * rcpu[-1] / t[-1]:.1f}% of one core; last/first minute {last[2] / base[2]:.2f}x")
    print(f"  written: {nbytes[-1] / 2**20:.1f} MB, {nbytes[-1] / 2**20 / (t[-1] / 60):.1f} MB/min; "
          f"last/first minute {last[4] / base[4]:.2f}x")
    print(f"  machine load average (1 min): median {np.nanmedian(load):.2f}, max {np.nanmax(load):.2f} on {cores} cores")
    if growth > MAX_GROWTH_MB:
        broken.append(f"the memory floor grew {growth:.1f} MB after minute 1 (> {MAX_GROWTH_MB:g} MB)")
    return broken


if __name__ == "__main__":
    sys.exit(main())
