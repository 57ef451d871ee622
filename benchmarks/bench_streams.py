"""Stream ring buffer vs a ``collections.deque`` of tuples (the obvious baseline), same run.

Measures: appending 250 Hz-like batches of gaze records, reading an 8 s time window, and reading
the latest N records. Prints absolute times and the ratio (baseline / ours; > 1 = ours faster).
"""

from __future__ import annotations

import bisect
import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emer_live.schema import GAZE_DTYPE  # noqa: E402
from emer_live.streams import Stream  # noqa: E402

RATE = 250
SECONDS = 120
CAP = RATE * 30
BATCH = 3  # the synthetic tracker appends a few samples every ~10 ms


def make_data(n):
    g = np.zeros(n, GAZE_DTYPE)
    g["t_us"] = np.arange(n, dtype=np.int64) * 4000
    for name in GAZE_DTYPE.names[3:]:
        g[name] = np.random.default_rng(0).random(n)
    return g


def bench(fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    n = RATE * SECONDS
    data = make_data(n)
    tuples = [tuple(r) for r in data.tolist()]
    batches = [data[i:i + BATCH] for i in range(0, n, BATCH)]
    tuple_batches = [tuples[i:i + BATCH] for i in range(0, n, BATCH)]

    def ours_append():
        s = Stream("gaze", GAZE_DTYPE, CAP, nominal_rate_hz=RATE)
        for b in batches:
            s.extend(b)
        return s

    def deque_append():
        d = collections.deque(maxlen=CAP)
        for b in tuple_batches:
            d.extend(b)
        return d

    s = ours_append()
    d = deque_append()
    t_end = int(data["t_us"][-1])
    t0 = t_end - 8_000_000

    def ours_window():
        for _ in range(200):
            s.window(t0, t_end)

    def deque_window():
        for _ in range(200):
            snap = list(d)  # a reader must copy under the writer's feet
            times = [r[0] for r in snap]
            lo = bisect.bisect_left(times, t0)
            hi = bisect.bisect_left(times, t_end)
            np.array(snap[lo:hi], dtype=GAZE_DTYPE)

    def ours_latest():
        for _ in range(2000):
            s.latest(250)

    def deque_latest():
        for _ in range(2000):
            np.array(list(d)[-250:], dtype=GAZE_DTYPE)

    rows = [("append 120 s @250 Hz (batches of 3)", ours_append, deque_append),
            ("window 8 s x200", ours_window, deque_window),
            ("latest 250 x2000", ours_latest, deque_latest)]
    print(f"{'operation':40} {'Stream ms':>10} {'deque ms':>10} {'ratio':>7}")
    for name, a, b in rows:
        ta, tb = bench(a), bench(b)
        print(f"{name:40} {ta * 1e3:10.1f} {tb * 1e3:10.1f} {tb / ta:7.2f}x")
    print("ratio = deque time / Stream time (> 1: the ring buffer is faster)")
    per = bench(ours_append) / len(batches)
    print(f"Stream append costs {per * 1e6:.1f} us per call (numpy overhead; the deque only stores references): "
          f"at the tracker's ~100 appends/s that is {per * 100 * 100:.2f}% of one core, while every reader gets "
          "typed arrays without a Python-level copy.")


if __name__ == "__main__":
    main()
