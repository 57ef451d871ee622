"""Ring buffer behaviour: windows, latest, cursors, counters, and a thread stress test."""

import threading
import time

import numpy as np
import pytest

from emer_live.streams import Stream

DT = np.dtype([("t_us", np.int64), ("a", np.int64), ("b", np.int64), ("c", np.float64)])


def rec(t):
    # every field derives from t, so a torn record (fields from two writes) is detectable
    return np.array([(t, 3 * t, -t, t / 7.0)], DT)


def test_dtype_must_start_with_t_us():
    with pytest.raises(ValueError, match="t_us"):
        Stream("x", [("a", np.int64)], 10)


def test_window_latest_and_wrap():
    s = Stream("x", DT, 8, nominal_rate_hz=1000)
    for t in range(0, 20_000, 1000):  # 20 records at 1 kHz into 8 slots
        s.extend(rec(t))
    assert s.total == 20 and len(s) == 8
    assert list(s.latest(3)["t_us"]) == [17000, 18000, 19000]
    w = s.window(13_000, 16_000)
    assert list(w["t_us"]) == [13000, 14000, 15000]
    assert s.covers(12_000) and not s.covers(11_000)
    assert len(s.window(0, 5000)) == 0  # overwritten long ago
    assert list(s.latest(2, fields=["t_us", "a"])["a"]) == [54000, 57000]


def test_gap_counting_and_non_monotonic_refused():
    s = Stream("x", DT, 100, nominal_rate_hz=250)
    t = np.array([0, 4000, 8000, 20000, 24000], np.int64)  # one gap with 2 missing samples
    arr = np.zeros(5, DT)
    arr["t_us"] = t
    s.extend(arr)
    assert s.counters.gaps == 1 and s.counters.missing == 2
    back = np.zeros(2, DT)
    back["t_us"] = [23000, 28000]
    s.extend(back)
    assert s.counters.non_monotonic == 1
    assert list(s.latest(2)["t_us"]) == [24000, 28000]


def test_cursor_reports_overrun():
    s = Stream("x", DT, 10)
    cur = s.cursor()
    for t in range(25):
        s.extend(rec(t))
    got = cur.read()
    assert got.lost == 15 and len(got.records) == 10
    assert list(got.records["t_us"]) == list(range(15, 25))
    assert s.counters.overruns == 15
    assert cur.read().records.size == 0


def test_big_batch_larger_than_capacity():
    s = Stream("x", DT, 5)
    arr = np.zeros(12, DT)
    arr["t_us"] = np.arange(12)
    s.extend(arr)
    assert list(s.latest(10)["t_us"]) == [7, 8, 9, 10, 11]
    assert s.total == 12


def test_thread_stress_one_writer_three_readers():
    """One writer at ~10 kHz (batches of 10 per ms), three readers: no torn reads, overrun reported."""
    cap = 2000
    s = Stream("x", DT, cap, nominal_rate_hz=10_000)
    stop = threading.Event()
    errors = []
    stats = {"windows": 0, "latest": 0, "cursor_records": 0, "cursor_lost": 0}

    def check(arr, where):
        if len(arr) == 0:
            return
        t = arr["t_us"]
        if not (np.all(arr["a"] == 3 * t) and np.all(arr["b"] == -t) and np.allclose(arr["c"], t / 7.0)):
            errors.append(f"torn record in {where}")
        if np.any(np.diff(t) != 100):
            errors.append(f"non-contiguous copy in {where}")

    def writer():
        t = 0
        next_wake = time.perf_counter()
        while not stop.is_set():
            ts = t + 100 * np.arange(10)
            batch = np.zeros(10, DT)
            batch["t_us"], batch["a"], batch["b"], batch["c"] = ts, 3 * ts, -ts, ts / 7.0
            s.extend(batch)
            t += 1000
            next_wake += 0.001
            delay = next_wake - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    def window_reader():
        while not stop.is_set():
            last = s.last_t_us
            if last is not None:
                check(s.window(last - 50_000, last), "window")
                stats["windows"] += 1

    def latest_reader():
        while not stop.is_set():
            check(s.latest(500), "latest")
            stats["latest"] += 1

    def slow_cursor_reader():
        cur = s.cursor(from_start=True)
        while not stop.is_set():
            got = cur.read()
            check(got.records, "cursor")
            stats["cursor_records"] += len(got.records)
            stats["cursor_lost"] += got.lost
            time.sleep(0.3)   # 0.3 s x 10 kHz = 3000 records > capacity: must overrun

    threads = [threading.Thread(target=f) for f in (writer, window_reader, latest_reader, slow_cursor_reader)]
    for th in threads:
        th.start()
    time.sleep(1.5)
    stop.set()
    for th in threads:
        th.join()
    assert not errors, errors[:5]
    assert stats["windows"] > 10 and stats["latest"] > 10
    assert stats["cursor_lost"] > 0, "the slow reader must be told it was overrun"
    assert s.counters.overruns == stats["cursor_lost"]
    assert stats["cursor_records"] + stats["cursor_lost"] <= s.total
