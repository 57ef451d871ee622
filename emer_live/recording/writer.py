"""The crash-safe session writer (FORMAT v2, see docs/recording-format.md).

A :class:`Recorder` owns a session folder. It reads the device streams through cursors on its
own thread (never the device threads, never the GUI thread), appends to the session's files and
flushes at least every ``flush_interval_s`` so a crash or SIGKILL loses at most that much. Video
and audio are split into segments (one per trial, plus ``between/`` segments outside trials) so a
crash corrupts at most the open segment, which ``repair`` recovers.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .. import __version__
from ..clock import SessionClock, utc_now_iso
from ..errors import DiskFullError, SessionExistsError, SessionLockedError
from ..streams import Stream, StreamCursor
from . import crops
from . import format as fmt
from .lock import SessionLock, read_lock
from .perms import PRIVATE, Modes, apply_modes, make_dirs, modes_for, open_new

__all__ = ["Recorder", "SegmentSpec", "record_device_set"]


@dataclass(frozen=True)
class SegmentSpec:
    """Where the footage from ``t_start_us`` on goes until the next segment begins."""

    t_start_us: int
    relpath: str                  # e.g. "trials/03_sad_02" or "between/04_sam_03"
    kind: str                     # "trial" | "between"
    trial: Optional[int] = None
    stimulus_id: Optional[str] = None
    label: Optional[str] = None


def _close_all(*files) -> None:
    """Close every file; re-raise the first error after trying them all."""
    first = None
    for f in files:
        try:
            f.close()
        except OSError as exc:
            first = first or exc
    if first is not None:
        raise first


class _VideoSegmentWriter:
    def __init__(self, folder: Path, quality: int, modes: Modes = PRIVATE) -> None:
        import cv2  # lazy: only recordings with a camera need it

        self._cv2 = cv2
        self._params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
        make_dirs(folder, modes)
        self.data = open_new(folder / fmt.VIDEO_FILE, "xb", modes)
        self.index = open_new(folder / fmt.FRAMES_TSV, "x", modes, encoding="utf-8", newline="\n")
        self.index.write("\t".join(fmt.FRAME_COLUMNS) + "\n")
        self.n = 0
        self.offset = 0

    def write(self, t_us: int, cam_index: int, image: np.ndarray) -> None:
        ok, buf = self._cv2.imencode(".jpg", image, self._params)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        b = buf.tobytes()
        self.data.write(b)
        self.index.write(f"{self.n}\t{t_us}\t{cam_index}\t{self.offset}\t{len(b)}\n")
        self.offset += len(b)
        self.n += 1

    def flush(self) -> None:
        # data before index: an index row never points past the flushed bytes
        self.data.flush()
        self.index.flush()

    def fsync(self) -> None:
        os.fsync(self.data.fileno())
        os.fsync(self.index.fileno())

    def close(self) -> None:
        try:
            self.flush()
        finally:   # a failed flush (full disk) must still release both files
            _close_all(self.data, self.index)


class _AudioSegmentWriter:
    def __init__(self, folder: Path, rate: int, channels: int, modes: Modes = PRIVATE) -> None:
        make_dirs(folder, modes)
        self.rate, self.channels = rate, channels
        self.data = open_new(folder / fmt.AUDIO_FILE, "x+b", modes)
        self.data.write(fmt.wav_header(rate=rate, channels=channels, n_frames=0))
        self.index = open_new(folder / fmt.AUDIO_TSV, "x", modes, encoding="utf-8", newline="\n")
        self.index.write("\t".join(fmt.AUDIO_COLUMNS) + "\n")
        self.blocks = 0
        self.frames = 0
        self._dirty = False

    def write(self, t_us: int, samples: np.ndarray) -> None:
        pcm = np.clip(np.asarray(samples, np.float32), -1.0, 1.0)
        pcm = (pcm * 32767.0).round().astype("<i2")
        self.data.write(pcm.tobytes())
        self.index.write(f"{self.blocks}\t{t_us}\t{len(pcm)}\t{self.frames}\n")
        self.blocks += 1
        self.frames += len(pcm)
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            # keep the RIFF sizes right at every flush so the file is always a valid WAV
            end = self.data.tell()
            self.data.seek(0)
            self.data.write(fmt.wav_header(rate=self.rate, channels=self.channels, n_frames=self.frames))
            self.data.seek(end)
            self._dirty = False
        self.data.flush()
        self.index.flush()

    def fsync(self) -> None:
        os.fsync(self.data.fileno())
        os.fsync(self.index.fileno())

    def close(self) -> None:
        try:
            self.flush()
        finally:   # a failed flush (full disk) must still release both files
            _close_all(self.data, self.index)


class _SegmentedSink:
    """Routes time-stamped records of one stream into the segment active at their time."""

    def __init__(self, recorder: "Recorder", make_writer) -> None:
        self._rec = recorder
        self._make = make_writer
        self._pos = -1                  # index into recorder.segments of the open segment
        self.writer = None
        self.written: Dict[str, int] = {}

    def writer_for(self, t_us: int):
        segs = self._rec.segments
        if not segs:  # nobody began a segment: a recording without trials is one segment
            self._rec.begin_between("recording", t_us=t_us)
        pos = self._pos
        # advance while the next segment has started at or before this record
        while pos + 1 < len(segs) and segs[pos + 1].t_start_us <= t_us:
            pos += 1
        if pos < 0:
            pos = 0                     # before the first segment: file it with the first one
        if pos != self._pos or self.writer is None:
            if self.writer is not None:
                self.writer.close()
            self._pos = pos
            self.writer = self._make(self._rec.path / segs[pos].relpath)
        return self.writer, segs[pos].relpath

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def fsync(self) -> None:
        if self.writer is not None:
            self.writer.fsync()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Recorder:
    """Writes one session folder (FORMAT v2).

    Parameters
    ----------
    path : path-like
        The session folder. It must not exist yet, or be empty; a folder that already holds
        anything is refused (:class:`SessionExistsError`) - nothing is ever overwritten.
    meta : dict
        Extra ``session.json`` fields (participant, devices, plan, notes, ...).
    clock : SessionClock
        The session clock (for event times and start/stop stamps).
    flush_interval_s : float
        Longest time written data stays in user-space buffers.
    group_readable : bool
        Folders 0750 and files 0640 (labs sharing through a Unix group) instead of the private
        0700/0600 (docs/data-rights.md). Set explicitly, whatever the umask.

    The recorder holds ``recording.lock`` (:mod:`emer_live.recording.lock`) from its first file
    to the end of :meth:`stop`: ``forget``, ``repair`` and a second writer refuse the folder
    meanwhile.
    """

    def __init__(self, path, *, meta: Optional[dict] = None, clock: SessionClock,
                 flush_interval_s: float = 0.25, fsync_interval_s: float = 5.0, jpeg_quality: int = 85,
                 holdback_s: float = 0.3, group_readable: bool = False) -> None:
        self.path = Path(path)
        self.modes = modes_for(group_readable)
        if self.path.exists():
            if not self.path.is_dir():
                raise SessionExistsError(f"{self.path} exists and is not a folder; choose a new --out path")
            lock = read_lock(self.path)
            if lock is not None:
                raise SessionLockedError(
                    f"{self.path}: in use ({lock.describe()}); refusing to write into it - choose a new --out folder"
                    if not lock.stale else
                    f"{self.path}: holds a crashed recording ({lock.describe()}); refusing to write into it - run "
                    f"`emer-live repair {self.path}` and choose a new --out folder")
            if any(self.path.iterdir()):
                what = "a session" if (self.path / fmt.SESSION_JSON).exists() else "files"
                raise SessionExistsError(
                    f"{self.path} already holds {what}; refusing to overwrite - choose a new --out folder")
        if not 0 < flush_interval_s <= 1.0:
            raise ValueError("flush_interval_s must be in (0, 1] (the format promises <= 1 s of loss)")
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        # Segmented streams (video, audio) are written only once they are this old: a segment
        # boundary is announced with the time it took effect, a moment after that time, and a
        # frame from that moment must still go to the new segment.
        self.holdback_us = int(holdback_s * 1e6)
        if flush_interval_s + holdback_s > 1.0:
            raise ValueError("flush_interval_s + holdback_s must be <= 1 s (the format promises <= 1 s of loss)")
        self._held: Dict[str, np.ndarray] = {}
        self.fsync_interval_s = fsync_interval_s
        self.jpeg_quality = int(jpeg_quality)
        self._streams: Dict[str, Stream] = {}
        self._cursors: Dict[str, StreamCursor] = {}
        self._sinks: Dict[str, _SegmentedSink] = {}
        self._segments: List[SegmentSpec] = []
        self._between_count = 0
        # Separate locks so a controller or device thread logging an event or beginning a
        # segment never waits for the writer encoding JPEGs: _lock guards data files (writer
        # thread, stop), _meta_lock session.json and the segment list, _events_lock events.tsv.
        # Order when nested: _lock -> _meta_lock.
        self._lock = threading.RLock()
        self._meta_lock = threading.RLock()
        self._events_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self.error: Optional[BaseException] = None
        self.written = {"gaze": 0, "camera": 0, "audio_blocks": 0, "audio_samples": 0}
        self._final_info: Dict[str, object] = {}
        self.overruns: Dict[str, int] = {}
        self._last_fsync = 0
        self.started_t_us: Optional[int] = None
        self.stopped = False
        self.meta_saved = True           # False when even the final session.json did not fit

        created = not self.path.exists()
        self._made_dirs = make_dirs(self.path, self.modes)
        os.chmod(self.path, self.modes.dir)   # also a folder claimed empty beforehand
        self._lock_file: Optional[SessionLock] = None
        self._reserve: Optional[Path] = None
        self.meta = {
            "format": fmt.FORMAT_NAME,
            "format_version": fmt.FORMAT_VERSION,
            "software": {"name": "emer_live", "version": __version__},
            "status": "recording",
            "created_utc": utc_now_iso(),
            "clock": {"source": clock.source, "unit": "us", "created_t_us": clock.now_us()},
            "participant": None,
            "face_video": "full",         # privacy mode: crops / none (set when face crops are attached)
            "devices": {},
            "streams": {},
            "notes": "",
        }
        if meta:
            self.meta.update(meta)
        self._events = None
        try:
            self._lock_file = SessionLock.acquire(self.path, purpose="recording", file_mode=self.modes.file)
            fmt.write_json_atomic(self.path / fmt.SESSION_JSON, self.meta, mode=self.modes.file)
            self._events = open_new(self.path / fmt.EVENTS_TSV, "x", self.modes, encoding="utf-8", newline="\n")
            self._events.write("\t".join(fmt.EVENT_COLUMNS) + "\n")
            self._events.flush()
            self._make_reserve()
        except OSError as exc:
            self._undo_start(created)
            if fmt.is_disk_full(exc):
                raise DiskFullError(f"disk full: cannot start a recording in {self.path} - nothing was recorded "
                                    "and nothing left behind; free space on that disk or choose another --out") from None
            raise
        self._tables: Dict[str, object] = {}    # kind -> open append-only TSV (gaze, eye_openness, ...)
        self._renderers: Dict[str, object] = {}

    @property
    def segments(self) -> List[SegmentSpec]:
        """The footage segments begun so far, in time order (the list itself: segment sinks on
        the writer thread read it as it grows)."""
        return self._segments

    # ------------------------------------------------------------------ disk space
    def _make_reserve(self) -> None:
        p = self.path / fmt.RESERVE_FILE
        with open_new(p, "xb", self.modes) as f:
            f.write(b"\0" * fmt.RESERVE_BYTES)
            f.flush()
            os.fsync(f.fileno())   # blocks allocated now, not when the disk is already full
        self._reserve = p

    def _release_reserve(self) -> None:
        if self._reserve is not None:
            try:
                self._reserve.unlink()
            except OSError:
                pass
            self._reserve = None

    def _undo_start(self, created: bool) -> None:
        """A start that failed (full disk) leaves nothing: remove what this recorder created."""
        if self._events is not None:
            try:
                self._events.close()
            except OSError:
                pass
        for name in (fmt.SESSION_JSON, fmt.EVENTS_TSV, fmt.RESERVE_FILE):
            try:
                (self.path / name).unlink()
            except OSError:
                pass
        if self._lock_file is not None:
            self._lock_file.release()
            self._lock_file = None
        if created:
            # the session folder and the parents this recorder made for it, innermost first
            for d in reversed(self._made_dirs or [self.path]):
                try:
                    d.rmdir()
                except OSError:
                    break

    def _cut_torn_lines(self) -> None:
        """After a full disk: the last buffered bytes of a table may have reached the disk only
        in part. Cut every TSV back to its last complete line (that row was never complete), so
        the folder reads without a repair; what was cut is noted in session.json."""
        cut = {}
        for p in sorted(self.path.rglob("*.tsv")):
            if p.name == fmt.EVENTS_TSV:
                continue          # still open; its last line is written after this
            try:
                n = _cut_torn_tail(p)
            except OSError:
                continue
            if n:
                cut[str(p.relative_to(self.path))] = n
        if cut:
            self.meta["torn_lines_cut_bytes"] = cut

    def note_disk_full(self, exc: BaseException) -> DiskFullError:
        """Remember a full disk as :attr:`error` (first error wins) and return it."""
        if not isinstance(self.error, DiskFullError):
            if self.error is None:
                self.error = DiskFullError(
                    f"disk full while writing {self.path}; recording stopped, everything written before is "
                    "kept - free space and start a new session")
        return self.error if isinstance(self.error, DiskFullError) else DiskFullError(str(exc))

    # ------------------------------------------------------------------ set-up
    def attach(self, kind: str, stream: Stream, *, device_info: Optional[dict] = None,
               final_info=None, face_video: str = "crops", face_info: Optional[dict] = None) -> None:
        """Record ``stream`` as ``kind`` (``gaze`` | ``eye_openness`` | ``time_sync`` | ``camera`` |
        ``audio`` | ``face_crops``). ``final_info``, a callable returning the device description, is
        asked again at :meth:`stop` so session.json ends with the device's final counters and clock
        sync. ``face_crops`` (privacy mode, :mod:`.crops`): ``face_video`` ``crops`` keeps the crop
        pixels, ``none`` only the per-frame measurements; ``face_info`` goes into its stream entry
        (the face pipeline's configuration)."""
        if kind not in ("camera", "audio", "face_crops") and kind not in fmt.TABLES:
            raise ValueError(f"unknown stream kind {kind!r}")
        if self._thread is not None:
            raise RuntimeError("attach streams before start()")
        with self._lock:
            self._streams[kind] = stream
            self._cursors[kind] = stream.cursor(from_start=True)
            self.overruns[kind] = 0
            info = {"stream": stream.name, "nominal_rate_hz": stream.nominal_rate_hz}
            if kind == "camera":
                h, w = stream.dtype["image"].shape[:2]
                info.update(width=w, height=h, file=fmt.VIDEO_FILE, codec="jpeg")
                self._sinks[kind] = _SegmentedSink(self, lambda p: _VideoSegmentWriter(p, self.jpeg_quality, self.modes))
            elif kind == "face_crops":
                # privacy mode: the face pipeline's crops (or only its measurements), never frames
                pixels = face_video == "crops"
                size = int(stream.dtype["crop"].shape[0])
                lmk = "landmarks" in stream.dtype.names
                info.update(size=size, index=crops.CROPS_TSV, file=crops.CROPS_FILE if pixels else None,
                            landmarks_file=crops.LANDMARKS_FILE if lmk else None, face_video=face_video,
                            layout="NHWC", color="RGB", **(face_info or {}))
                self._sinks[kind] = _SegmentedSink(
                    self, lambda p: crops.CropSegmentWriter(p, size=size, pixels=pixels, landmarks=lmk,
                                                     modes=self.modes))
                self.written["face_crops"] = 0
            elif kind == "audio":
                n, ch = stream.dtype["samples"].shape
                info.update(blocksize=n, channels=ch, file=fmt.AUDIO_FILE, encoding="pcm_s16le")
                rate = int(round(stream.nominal_rate_hz * n)) if stream.nominal_rate_hz else 48000
                info["sample_rate_hz"] = rate
                self._sinks[kind] = _SegmentedSink(self, lambda p: _AudioSegmentWriter(p, rate, ch, self.modes))
            else:
                file, dtype = fmt.TABLES[kind]
                if stream.dtype != dtype:
                    raise ValueError(f"{kind} stream {stream.name!r} has the wrong record layout for {file}")
                info.update(file=file)
                f = open_new(self.path / file, "x", self.modes, encoding="utf-8", newline="\n")
                self._tables[kind] = f
                try:
                    f.write("\t".join(dtype.names) + "\n")
                    f.flush()
                except OSError as exc:
                    if not fmt.is_disk_full(exc):
                        raise
                    self.stop(status="disk_full")
                    raise self.note_disk_full(exc) from None
                self._renderers[kind] = fmt.row_formatter(dtype)
                self.written.setdefault(kind, 0)
            # the face crops' device is the camera that made the frames (described, not recorded)
            device = "camera" if kind == "face_crops" else kind
            if final_info is not None:
                self._final_info[device] = final_info
            with self._meta_lock:
                if kind == "face_crops":
                    self.meta["face_video"] = face_video
                self.meta["streams"][kind] = info
                if device_info is not None:
                    self.meta["devices"][device] = device_info
                self._save_meta()

    def update_meta(self, **fields) -> None:
        """Merge fields into session.json (atomic rewrite; recorded data files are untouched)."""
        with self._meta_lock:
            self.meta.update(fields)
            self._save_meta()

    def _save_meta(self) -> None:
        try:
            fmt.write_json_atomic(self.path / fmt.SESSION_JSON, self.meta)
        except OSError as exc:
            if not fmt.is_disk_full(exc):
                raise
            # Not raised into the caller (a controller beginning a trial): the run loops stop on
            # :attr:`error`, and :meth:`stop` writes session.json once the reserve is given back.
            self.note_disk_full(exc)

    # ------------------------------------------------------------------ events and segments
    def log_event(self, kind: str, *, trial: Optional[int] = None, t_us: Optional[int] = None, **detail) -> int:
        """Append one row to events.tsv (written and flushed at once; thread-safe)."""
        t = self.clock.now_us() if t_us is None else int(t_us)
        text = json.dumps(detail, default=fmt.json_default, ensure_ascii=False) if detail else ""
        with self._events_lock:
            if self._events.closed:
                return t
            try:
                self._events.write(fmt.tsv_line((t, kind, "" if trial is None else int(trial), text)))
                self._events.flush()
            except OSError as exc:
                if not fmt.is_disk_full(exc):
                    raise
                self.note_disk_full(exc)
        return t

    def event_sink(self, t_us: int, kind: str, detail: dict) -> None:
        """Adapter for devices' ``on_event`` callbacks."""
        self.log_event(kind, t_us=t_us, **detail)

    def begin_trial(self, trial: int, stimulus_id: str, *, t_us: Optional[int] = None) -> SegmentSpec:
        """From ``t_us`` on, footage goes to ``trials/NN_<stimulus_id>/``."""
        t = self.clock.now_us() if t_us is None else int(t_us)
        spec = SegmentSpec(t, f"{fmt.TRIALS_DIR}/{int(trial):02d}_{fmt.safe_name(stimulus_id)}",
                           "trial", int(trial), stimulus_id, None)
        return self._add_segment(spec)

    def begin_between(self, label: str, *, t_us: Optional[int] = None) -> SegmentSpec:
        """From ``t_us`` on, footage goes to ``between/KK_<label>/`` (outside any trial)."""
        t = self.clock.now_us() if t_us is None else int(t_us)
        with self._meta_lock:
            k = self._between_count
            self._between_count += 1
        spec = SegmentSpec(t, f"{fmt.BETWEEN_DIR}/{k:02d}_{fmt.safe_name(label)}", "between", None, None, label)
        return self._add_segment(spec)

    def _add_segment(self, spec: SegmentSpec) -> SegmentSpec:
        with self._meta_lock:
            if self._segments and spec.t_start_us < self._segments[-1].t_start_us:
                raise ValueError("segments must begin in time order")
            if any(s.relpath == spec.relpath for s in self._segments):
                raise ValueError(f"segment {spec.relpath} already exists")
            self._segments.append(spec)
            self.meta.setdefault("segments", []).append(
                {"path": spec.relpath, "kind": spec.kind, "trial": spec.trial,
                 "stimulus_id": spec.stimulus_id, "label": spec.label, "t_start_us": spec.t_start_us})
            self._save_meta()
        return spec

    # ------------------------------------------------------------------ running
    def start(self, *, thread: bool = True) -> None:
        """Begin recording (and the first segment if none was begun). With ``thread=False`` the
        caller drives writing by calling :meth:`drain` (fast replays, tests)."""
        self.started_t_us = self.clock.now_us()
        self.log_event("recording_start", t_us=self.started_t_us)
        self.update_meta(clock={**self.meta["clock"], "start_t_us": self.started_t_us, "start_utc": utc_now_iso()})
        if thread:
            self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self._drain(False)
            except BaseException as exc:
                self._fail(exc)
                return
        try:
            self._drain(True)
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if fmt.is_disk_full(exc):
            self.note_disk_full(exc)
        elif self.error is None:
            self.error = exc
        try:
            self.log_event("error", message=str(self.error))
        except Exception:
            pass

    def drain(self, *, final: bool = False) -> int:
        """Write what is pending in the attached streams (video/audio older than the hold-back;
        everything when ``final``), then flush. Returns records written.

        A write error (a full disk) is recorded in :attr:`error` - so :meth:`stop` reports it in
        the session status - and raised (:class:`DiskFullError` for a full disk)."""
        try:
            return self._drain(final)
        except BaseException as exc:
            if self._thread is not None and threading.current_thread() is self._thread:
                raise  # the writer thread's loop reports it
            self._fail(exc)
            raise (self.error if isinstance(self.error, DiskFullError) else exc) from None

    def _drain(self, final: bool) -> int:
        n = 0
        watermark = None if final else self.clock.now_us() - self.holdback_us
        with self._lock:
            for kind, cur in self._cursors.items():
                got = cur.read()
                if got.lost:
                    self.overruns[kind] += got.lost
                    self.log_event("recorder_overrun", stream=kind, lost=int(got.lost))
                recs = got.records
                if kind in self._sinks:
                    held = self._held.pop(kind, None)
                    if held is not None and len(held):
                        recs = np.concatenate([held, recs]) if len(recs) else held
                    if watermark is not None and len(recs):
                        cut = int(np.searchsorted(recs["t_us"], watermark, side="left"))
                        if cut < len(recs):
                            self._held[kind] = recs[cut:]
                            recs = recs[:cut]
                if len(recs) == 0:
                    continue
                n += len(recs)
                if kind in self._tables:
                    self._tables[kind].write(self._renderers[kind](recs))
                    self.written[kind] += len(recs)
                elif kind == "camera":
                    sink = self._sinks[kind]
                    for r in recs:
                        w, _ = sink.writer_for(int(r["t_us"]))
                        w.write(int(r["t_us"]), int(r["frame_index"]), r["image"])
                    self.written["camera"] += len(recs)
                elif kind == "face_crops":
                    sink = self._sinks[kind]
                    for r in recs:
                        sink.writer_for(int(r["t_us"]))[0].write(r)
                    self.written["face_crops"] += len(recs)
                else:
                    sink = self._sinks[kind]
                    for r in recs:
                        w, _ = sink.writer_for(int(r["t_us"]))
                        k = int(r["n"])
                        w.write(int(r["t_us"]), r["samples"][:k])
                        self.written["audio_samples"] += k
                    self.written["audio_blocks"] += len(recs)
            self._flush()
        return n

    def _flush(self) -> None:
        for f in self._tables.values():
            f.flush()
        for s in self._sinks.values():
            s.flush()
        now = self.clock.now_us()
        if self.fsync_interval_s and now - self._last_fsync > self.fsync_interval_s * 1e6:
            self._last_fsync = now
            for f in self._tables.values():
                os.fsync(f.fileno())
            for s in self._sinks.values():
                s.fsync()

    def stop(self, *, status: str = "complete") -> dict:
        """Drain, close every file and write the final counters into session.json."""
        if self.stopped:
            return self.meta
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        elif self.error is None:
            try:
                self._drain(True)
            except BaseException as exc:
                self._fail(exc)
        end = self.clock.now_us()
        final_devices = {}
        for kind, ask in self._final_info.items():
            try:
                final_devices[kind] = ask()
            except Exception as exc:  # a device that cannot describe itself keeps its first description
                final_devices[kind] = {**self.meta["devices"].get(kind, {}), "final_info_error": repr(exc)}
        with self._lock, self._meta_lock, self._events_lock:
            # Data files first: their last buffered bytes may not fit on a full disk (a torn last
            # line, cut below), then the reserve is given back so the final events and
            # session.json - the status a reader sees - are still written.
            for close in [f.close for f in self._tables.values()] + [s.close for s in self._sinks.values()]:
                try:
                    close()
                except OSError as exc:
                    if fmt.is_disk_full(exc):
                        self.note_disk_full(exc)
            if isinstance(self.error, DiskFullError):
                self._cut_torn_lines()
            if self.error is not None:
                self._release_reserve()
            self.meta["devices"].update(final_devices)
            if self.error is not None:
                status = "disk_full" if isinstance(self.error, DiskFullError) else "error"
                self.meta["error"] = str(self.error)
            for kind, s in self._streams.items():
                info = self.meta["streams"].setdefault(kind, {})
                info["counters"] = {**s.counters.as_dict(), "recorder_overruns": self.overruns.get(kind, 0)}
            self.meta["written"] = dict(self.written)   # records handed to the OS (flushed)
            # a segment whose footage never came (a short rest, or any segment of a session without
            # camera and microphone) has no folder: say so instead of listing it as if it were there
            for seg in self.meta.get("segments", []):
                seg["empty"] = not (self.path / seg["path"]).is_dir()
            self.meta["status"] = status
            self.meta["clock"] = {**self.meta["clock"], "end_t_us": end, "end_utc": utc_now_iso()}
            try:
                if not self._events.closed:
                    self._events.write(fmt.tsv_line((end, "recording_stop", "", json.dumps({"status": status}))))
                self._events.close()
            except OSError as exc:
                if not fmt.is_disk_full(exc):
                    raise
            self._release_reserve()
            self.stopped = True
            try:
                fmt.write_json_atomic(self.path / fmt.SESSION_JSON, self.meta)
            except OSError as exc:
                if not fmt.is_disk_full(exc):
                    raise
                # even the reserve did not suffice: events.tsv keeps the cause; repair reads it
                self.note_disk_full(exc)
                self.meta_saved = False
            finally:
                # what others wrote into the folder (SAM table, predictions, truth, caches) gets
                # the session's modes too; then the lock goes, the very last step
                apply_modes(self.path, self.modes)
                if self._lock_file is not None:
                    self._lock_file.release()
                    self._lock_file = None
        return self.meta


def _cut_torn_tail(path: Path) -> int:
    """Cut a text table back to its last complete line; returns the bytes cut."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        back = min(size, 1 << 16)
        f.seek(size - back)
        tail = f.read(back)
        if tail.endswith(b"\n"):
            return 0
        nl = tail.rfind(b"\n")
        keep = size - back + nl + 1 if nl >= 0 else 0
        if nl < 0 and back < size:
            return 0            # a line longer than 64 KiB: leave it to repair
        f.truncate(keep)
        return size - keep


def record_device_set(ds, path, *, meta: dict, group_readable: bool = False, face_crops=None,
                      face_video: str = "full", face_info: Optional[dict] = None) -> Recorder:
    """A :class:`Recorder` for an opened :class:`~emer_live.devices.factory.DeviceSet`: every
    device's stream attached with its description, device events logged, and the phantom's
    truth written beside a synthetic session. A replayed session's copy carries the source's
    participant and a ``derived_from`` link (:mod:`emer_live.recording.provenance`). On failure
    the devices are stopped.

    ``face_crops`` (a face crop stream, privacy mode ``face_video`` ``crops``/``none``) is
    recorded instead of the camera's frames; the camera is still described in session.json."""
    meta = {**meta, "synthetic": ds.phantom is not None}
    if ds.replay is not None:
        from .provenance import derived_meta

        meta.update(derived_meta(ds.replay.path, ds.replay.reader.meta))
    try:
        rec = Recorder(path, clock=ds.clock, meta=meta, group_readable=group_readable)
    except BaseException:
        ds.stop_all()
        raise
    ds.events.targets.append(rec.event_sink)
    try:
        for kind, dev in (("gaze", ds.tracker), ("camera", ds.camera), ("audio", ds.mic)):
            if dev is None:
                continue
            if kind == "camera" and face_crops is not None:
                rec.attach("face_crops", face_crops, device_info=dev.info(), final_info=dev.info,
                           face_video=face_video, face_info=face_info)
                continue
            rec.attach(kind, dev.stream, device_info=dev.info(), final_info=dev.info)
        # a Tobii tracker's side streams: eye openness (when offered) and its clock-sync packets
        for kind, attr in (("eye_openness", "openness"), ("time_sync", "time_sync")):
            side = getattr(ds.tracker, attr, None) if ds.tracker is not None else None
            if isinstance(side, Stream):
                rec.attach(kind, side)
        if ds.phantom is not None:
            ds.phantom.attach_truth_file(Path(path) / "truth.tsv")
    except BaseException as exc:
        ds.stop_all()
        if not rec.stopped:
            rec.stop(status="error")
        if fmt.is_disk_full(exc):
            raise rec.note_disk_full(exc) from None
        raise
    return rec
