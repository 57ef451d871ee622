"""Timestamped ring buffers shared between one producer thread and any number of readers.

A :class:`Stream` is a preallocated ring of numpy structured records whose first field is
``t_us`` (int64, session clock). The producer appends single records or batches; readers either
ask for a time range (:meth:`Stream.window`) or the latest ``n`` records and get a *copy*, or
hold a :class:`StreamCursor` that returns everything new since its last read and says how many
records it lost to overruns. Video uses the same class with an ``image`` sub-array field; pass
``fields=`` to copy only the columns you need.

Counters (:class:`StreamCounters`) track samples, gaps against the nominal rate, device-reported
drops and reader overruns; the UI and the session report show them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, asdict
from typing import Iterable, Optional, Sequence

import numpy as np

__all__ = ["Stream", "StreamCursor", "StreamCounters", "CursorRead"]


@dataclass
class StreamCounters:
    samples: int = 0          # records ever appended
    gaps: int = 0             # intervals longer than 1.5 nominal periods
    missing: int = 0          # samples missing inside those gaps (vs the nominal rate)
    dropped: int = 0          # drops the device itself reported (buffer overflow, lost frames)
    overruns: int = 0         # records cursors lost because the ring wrapped before they read
    non_monotonic: int = 0    # appended records whose t_us went backwards (refused)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CursorRead:
    records: np.ndarray
    lost: int                 # records overwritten before this cursor could read them


class Stream:
    """Fixed-capacity ring of structured records; thread-safe, single producer.

    Parameters
    ----------
    name : str
        Stream name (``gaze``, ``camera``, ``audio``, ...).
    dtype : numpy dtype
        Structured dtype whose first field is ``t_us`` (int64).
    capacity : int
        Number of records kept.
    nominal_rate_hz : float, optional
        Expected rate; enables gap counting.
    """

    def __init__(self, name: str, dtype, capacity: int, *, nominal_rate_hz: Optional[float] = None) -> None:
        dtype = np.dtype(dtype)
        if dtype.names is None or dtype.names[0] != "t_us" or dtype["t_us"] != np.dtype(np.int64):
            raise ValueError(f"stream {name!r}: dtype must be structured with first field t_us int64")
        if capacity < 2:
            raise ValueError(f"stream {name!r}: capacity must be >= 2, got {capacity}")
        if nominal_rate_hz is not None and nominal_rate_hz <= 0:
            raise ValueError(f"stream {name!r}: nominal_rate_hz must be > 0")
        self.name = name
        self.dtype = dtype
        self.capacity = int(capacity)
        self.nominal_rate_hz = nominal_rate_hz
        self._buf = np.zeros(self.capacity, dtype=dtype)
        # byte view of the ring: writes are plain memcpy instead of field-by-field copies
        self._raw = self._buf.view(np.uint8).reshape(self.capacity, dtype.itemsize)
        self._total = 0
        self._last_t: Optional[int] = None
        self._lock = threading.Lock()
        self._new_data = threading.Condition(self._lock)
        self.counters = StreamCounters()
        self.closed = False

    # ------------------------------------------------------------------ producer side
    def append(self, record) -> None:
        """Append one record (tuple in field order, ``np.void`` or dict)."""
        if isinstance(record, dict):
            row = np.zeros(1, self.dtype)
            for k, v in record.items():
                row[k] = v
        else:
            row = np.array([record] if not isinstance(record, np.ndarray) else record, dtype=self.dtype).reshape(1)
        self.extend(row)

    def extend(self, records: np.ndarray) -> None:
        """Append a batch (structured array of this stream's dtype, time-ordered)."""
        records = np.asarray(records)
        if records.dtype != self.dtype:
            records = records.astype(self.dtype)
        n = len(records)
        if n == 0:
            return
        t = records["t_us"]
        with self._lock:
            prev = self._last_t
            dt = np.diff(t) if n > 1 else None
            if (prev is not None and t[0] < prev) or (dt is not None and (dt < 0).any()):
                # Refuse records that go back in time: every reader relies on ordered t_us. A
                # record is kept when it is not older than everything appended before it.
                floor = np.iinfo(np.int64).min if prev is None else prev
                before = np.maximum.accumulate(np.concatenate(([floor], t[:-1])))
                keep = t >= before
                self.counters.non_monotonic += int((~keep).sum())
                records, t = records[keep], t[keep]
                n = len(records)
                if n == 0:
                    return
                dt = np.diff(t) if n > 1 else None
            if self.nominal_rate_hz:
                limit = 1.5e6 / self.nominal_rate_hz
                if prev is not None and t[0] - prev > limit:
                    self._count_gap(t[0] - prev)
                if dt is not None:
                    late = dt > limit
                    if late.any():
                        for d in dt[late]:
                            self._count_gap(d)
            raw = np.ascontiguousarray(records).view(np.uint8).reshape(n, self.dtype.itemsize)
            if n >= self.capacity:
                raw = raw[-self.capacity:]
                start = (self._total + n - self.capacity) % self.capacity
                k = self.capacity - start
                self._raw[start:] = raw[:k]
                self._raw[:start] = raw[k:]
            else:
                start = self._total % self.capacity
                end = start + n
                if end <= self.capacity:
                    self._raw[start:end] = raw
                else:
                    k = self.capacity - start
                    self._raw[start:] = raw[:k]
                    self._raw[: n - k] = raw[k:]
            self._total += n
            self._last_t = int(t[-1])
            self.counters.samples += n
            self._new_data.notify_all()

    def _count_gap(self, dt_us) -> None:
        period = 1e6 / self.nominal_rate_hz
        self.counters.gaps += 1
        self.counters.missing += int(round(float(dt_us) / period)) - 1

    def count_dropped(self, n: int = 1) -> None:
        """Record drops the device reported itself (e.g. SDK buffer overflow)."""
        with self._lock:
            self.counters.dropped += int(n)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._new_data.notify_all()

    # ------------------------------------------------------------------ reader side
    @property
    def total(self) -> int:
        """Number of records ever appended (the sequence number of the next record)."""
        return self._total

    @property
    def last_t_us(self) -> Optional[int]:
        return self._last_t

    def __len__(self) -> int:
        return min(self._total, self.capacity)

    def _ordered_indices(self, first_seq: int, last_seq: int) -> np.ndarray:
        return np.arange(first_seq, last_seq) % self.capacity

    def _take(self, first_seq: int, last_seq: int, fields: Optional[Sequence[str]]) -> np.ndarray:
        idx = self._ordered_indices(first_seq, last_seq)
        if fields is None:
            return self._buf[idx]  # fancy indexing copies
        # field by field: indexing a multi-field view would copy whole records (a camera ring's
        # images) only to drop them
        out = np.empty(len(idx), np.dtype([(f, self.dtype[f]) for f in fields]))
        for f in fields:
            out[f] = self._buf[f][idx]
        return out

    def latest(self, n: int, *, fields: Optional[Sequence[str]] = None) -> np.ndarray:
        """Copy of the newest ``n`` records (fewer if fewer exist)."""
        with self._lock:
            last = self._total
            first = max(last - min(n, self.capacity), 0)
            return self._take(first, last, fields)

    def oldest_t_us(self) -> Optional[int]:
        with self._lock:
            if self._total == 0:
                return None
            first = max(self._total - self.capacity, 0)
            return int(self._buf["t_us"][first % self.capacity])

    def window(self, t0_us: int, t1_us: int, *, fields: Optional[Sequence[str]] = None) -> np.ndarray:
        """Copy of the records with ``t0_us <= t_us < t1_us`` still held by the ring.

        Use :meth:`covers` to tell whether the ring still held all of ``[t0_us, ...)``.
        """
        with self._lock:
            last = self._total
            first = max(last - self.capacity, 0)
            if last == first:
                return np.zeros(0, self.dtype if fields is None else [(f, self.dtype[f]) for f in fields])
            times = self._buf["t_us"][self._ordered_indices(first, last)]
            lo = int(np.searchsorted(times, t0_us, side="left"))
            hi = int(np.searchsorted(times, t1_us, side="left"))
            return self._take(first + lo, first + max(hi, lo), fields)

    def covers(self, t0_us: int) -> bool:
        """True when no record at or after ``t0_us`` has been overwritten yet."""
        with self._lock:
            if self._total <= self.capacity:
                return True
            oldest = int(self._buf["t_us"][self._total % self.capacity])
            return oldest <= t0_us

    def cursor(self, *, from_start: bool = False) -> "StreamCursor":
        """A reader that returns every record appended after its creation (or all held ones)."""
        with self._lock:
            start = max(self._total - self.capacity, 0) if from_start else self._total
        return StreamCursor(self, start)

    def wait_for_data(self, seq: int, timeout: float) -> bool:
        """Block until ``total > seq`` or the stream is closed; returns True if new data exists."""
        with self._new_data:
            if self._total > seq or self.closed:
                return self._total > seq
            self._new_data.wait(timeout)
            return self._total > seq


class StreamCursor:
    """Destructive-style reader: each :meth:`read` returns what arrived since the previous one."""

    def __init__(self, stream: Stream, start_seq: int) -> None:
        self.stream = stream
        self.seq = start_seq
        self.lost = 0

    def read(self, max_records: Optional[int] = None, *, fields: Optional[Sequence[str]] = None) -> CursorRead:
        s = self.stream
        with s._lock:
            last = s._total
            oldest = max(last - s.capacity, 0)
            lost = 0
            if self.seq < oldest:
                lost = oldest - self.seq
                s.counters.overruns += lost
                self.seq = oldest
            end = last if max_records is None else min(last, self.seq + max_records)
            out = s._take(self.seq, end, fields)
            self.seq = end
        self.lost += lost
        return CursorRead(out, lost)

    def pending(self) -> int:
        return self.stream.total - self.seq

    def wait(self, timeout: float) -> bool:
        return self.stream.wait_for_data(self.seq, timeout)
