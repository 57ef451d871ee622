"""Read a recorded session folder (FORMAT v1) without the devices or the GUI.

Every table is also plain TSV that pandas (``pd.read_csv(p, sep="\\t")``) or R
(``read.delim(p)``) read without this module; this API adds types, segments and frames.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np

from ..errors import SessionFormatError
from ..clock import fit_clock_sync
from . import format as fmt

__all__ = ["SessionReader", "Segment", "is_session_dir", "read_tsv_checked"]


def is_session_dir(path) -> bool:
    p = Path(path) / fmt.SESSION_JSON
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("format") == fmt.FORMAT_NAME
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class Segment:
    """One video/audio segment of a session (a trial or footage between trials)."""

    relpath: str
    kind: str                    # "trial" | "between"
    trial: Optional[int]
    stimulus_id: Optional[str]
    label: Optional[str]
    t_start_us: int
    path: Path

    @property
    def has_video(self) -> bool:
        return (self.path / fmt.FRAMES_TSV).is_file()

    @property
    def has_audio(self) -> bool:
        return (self.path / fmt.AUDIO_TSV).is_file()


def read_tsv_checked(path: Path, columns, *, what: str) -> "list[list[str]]":
    """Read a TSV whose header must equal ``columns``; every line must be complete.

    A truncated last line (the mark of a crash) raises SessionFormatError pointing at ``repair``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionFormatError(f"{path}: missing ({what})") from None
    except UnicodeDecodeError as exc:
        raise SessionFormatError(f"{path}: not UTF-8 text ({exc.reason}); run `emer-live repair {path.parent}`") from None
    lines = text.split("\n")
    if text == "":
        raise SessionFormatError(f"{path}: empty (0 bytes, not even its header - written when the disk was "
                                 f"full or the recorder crashed at once); run `emer-live repair {_session_root(path)}`")
    if not lines or lines[0].split("\t") != list(columns):
        raise SessionFormatError(f"{path}: header does not match the {what} columns of format v{fmt.FORMAT_VERSION}")
    body = lines[1:]
    if body and body[-1] == "":
        body.pop()
    elif body:
        raise SessionFormatError(f"{path}: last line ({len(body) + 1}) is truncated (no line end) - "
                                 f"the recording was interrupted; run `emer-live repair {_session_root(path)}`")
    rows = [ln.split("\t") for ln in body]
    ncol = len(columns)
    for i, r in enumerate(rows):
        if len(r) != ncol:
            raise SessionFormatError(f"{path}: line {i + 2} has {len(r)} of {ncol} fields; "
                                     f"run `emer-live repair {_session_root(path)}`")
    return rows


def _int_rows(rows, path: Path, columns) -> "list[tuple]":
    """Rows of whole numbers as int tuples; a field that is not one is a format error naming its
    line (a duplicated header, garbage written over a row)."""
    out = []
    for i, r in enumerate(rows):
        try:
            out.append(tuple(int(v) for v in r))
        except ValueError:
            bad = next((c for c, v in zip(columns, r) if not _is_int(v)), "?")
            raise SessionFormatError(f"{path}: line {i + 2}, column {bad!r} is not a whole number; "
                                     f"run `emer-live repair {_session_root(path)}`") from None
    return out


def _is_int(v: str) -> bool:
    try:
        int(v)
    except ValueError:
        return False
    return True


def _check_meta_shape(meta: dict, where: Path) -> None:
    """The parts of session.json the readers index into have the shapes the writer gives them;
    a hand-edited or damaged file is refused here with what is wrong, not deep inside a tool."""
    def bad(what: str) -> SessionFormatError:
        return SessionFormatError(f"{where}: {what}; the file was edited or damaged - restore it from a backup "
                                  "(or run `emer-live repair` on a crashed recording)")

    def is_num(x) -> bool:
        return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))

    for key, kind in (("streams", dict), ("written", dict), ("segments", list), ("trials", list)):
        if key in meta and not isinstance(meta[key], kind):
            raise bad(f"{key!r} is not a {'JSON object' if kind is dict else 'list'}")
    if not isinstance(meta.get("status", ""), str):
        raise bad("'status' is not text")
    for name, info in (meta.get("streams") or {}).items():
        if not isinstance(info, dict) or not isinstance(info.get("counters", {}), dict) \
                or not is_num(info.get("nominal_rate_hz")):
            raise bad(f"streams.{name} is not a stream description")
        if not all(is_num(v) for v in info.get("counters", {}).values()):
            raise bad(f"streams.{name}.counters holds a value that is not a number")
    for i, seg in enumerate(meta.get("segments") or []):
        if not (isinstance(seg, dict) and isinstance(seg.get("path"), str) and seg["path"]
                and isinstance(seg.get("kind"), str) and isinstance(seg.get("t_start_us"), int)
                and not isinstance(seg.get("t_start_us"), bool)):
            raise bad(f"segments[{i}] lacks a path, kind or whole-number t_start_us")
        if Path(seg["path"]).is_absolute() or ".." in Path(seg["path"]).parts:
            raise bad(f"segments[{i}] path {seg['path']!r} leads out of the session folder")
    for i, t in enumerate(meta.get("trials") or []):
        if not isinstance(t, dict) or "trial" not in t:
            raise bad(f"trials[{i}] is not a trial entry")
    if not all(is_num(v) for v in (meta.get("written") or {}).values()):
        raise bad("'written' holds a count that is not a number")


def _session_root(p: Path) -> Path:
    for parent in [p.parent, *p.parents]:
        if (parent / fmt.SESSION_JSON).is_file():
            return parent
    return p.parent


class SessionReader:
    """Typed access to a session folder.

    Parameters
    ----------
    path : path-like
        A folder written by :class:`~emer_live.recording.Recorder` (or repaired).
    """

    def __init__(self, path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise SessionFormatError(f"{self.path}: no such folder")
        if not self.path.is_dir():
            raise SessionFormatError(f"{self.path}: not a folder; give a session folder (the one holding session.json)")
        meta_path = self.path / fmt.SESSION_JSON
        if not meta_path.is_file():
            raise SessionFormatError(f"{self.path}: not a session folder (no {fmt.SESSION_JSON}); "
                                     "give the folder that `emer-live record`/`session` wrote")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SessionFormatError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != fmt.FORMAT_NAME:
            raise SessionFormatError(f"{meta_path}: not an emer_live session (format field missing or foreign)")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > fmt.FORMAT_VERSION or version < 1:
            raise SessionFormatError(f"{meta_path}: format version {version!r} is not supported by this "
                                     f"emer_live (reads 1..{fmt.FORMAT_VERSION}); update emer_live")
        _check_meta_shape(meta, meta_path)
        self.meta = meta
        self._gaze_cache: Optional[np.ndarray] = None
        self._frames_cache = {}

    def _inside(self, p: Path) -> Path:
        """``p`` when it resolves inside the session folder; a symbolic link (or a segment path in
        session.json) that leads out of it is refused - a copied folder must not read whatever
        the link points at on this machine."""
        root = self.path.resolve()
        try:
            rp = p.resolve()
        except (OSError, RuntimeError):  # a link loop
            raise SessionFormatError(f"{p}: a symbolic link that cannot be resolved; replace it by the file") from None
        if rp != root and root not in rp.parents:
            raise SessionFormatError(f"{p}: leads out of the session folder (to {rp}); copy the file into the "
                                     "folder instead of linking to it")
        return p

    def _outside_links(self) -> List[Path]:
        """Symbolic links in the folder that lead out of it (links are not followed)."""
        root = self.path.resolve()
        out = []
        for dirpath, dirnames, filenames in os.walk(self.path, followlinks=False):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if p.is_symlink():
                    try:
                        rp = p.resolve()
                    except (OSError, RuntimeError):
                        out.append(p)
                        continue
                    if rp != root and root not in rp.parents:
                        out.append(p)
        return out

    # ------------------------------------------------------------------ metadata
    @property
    def format_version(self) -> int:
        return int(self.meta["format_version"])

    @property
    def status(self) -> str:
        return str(self.meta.get("status", "unknown"))

    def segments(self) -> List[Segment]:
        segs = []
        for s in self.meta.get("segments", []):
            segs.append(Segment(s["path"], s["kind"], s.get("trial"), s.get("stimulus_id"), s.get("label"),
                                int(s["t_start_us"]), self.path / s["path"]))
        return segs

    def trial_segments(self) -> List[Segment]:
        return [s for s in self.segments() if s.kind == "trial"]

    # ------------------------------------------------------------------ tables
    def has_gaze(self) -> bool:
        return (self.path / fmt.GAZE_TSV).is_file()

    def gaze(self) -> np.ndarray:
        """All gaze samples as a ``GAZE_DTYPE`` structured array (cached; returns a copy)."""
        if self._gaze_cache is None:
            self._gaze_cache = self._read_gaze()
        return self._gaze_cache.copy()

    def gaze_frame(self):
        """Gaze samples as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.gaze())

    def _read_gaze(self) -> np.ndarray:
        p = self.path / fmt.GAZE_TSV
        if not p.is_file():
            raise SessionFormatError(f"{p}: missing - this session has no gaze recording")
        self._inside(p)
        return self._read_table("gaze")

    def _read_table(self, kind: str) -> np.ndarray:
        """One of the per-sample tables (format.TABLES) as a structured array; empty when absent."""
        file, dtype = fmt.TABLES[kind]
        p = self.path / file
        if not p.is_file():
            return np.zeros(0, dtype)
        self._inside(p)
        rows = read_tsv_checked(p, dtype.names, what=kind.replace("_", " "))
        out = np.zeros(len(rows), dtype)
        if not rows:
            return out
        cols = list(zip(*rows))
        for name, col in zip(dtype.names, cols):
            try:
                if dtype[name].kind in "iu":
                    out[name] = np.array(col, dtype=np.int64)
                else:
                    out[name] = np.array(col, dtype=np.float64)
            except ValueError as exc:
                raise SessionFormatError(f"{p}: column {name!r} holds a value that is not a number ({exc}); "
                                         f"run `emer-live repair {self.path}`") from None
        return out

    def eye_openness(self) -> np.ndarray:
        """Eye openness records (``EYE_OPENNESS_DTYPE``); empty when the tracker offered none."""
        return self._read_table("eye_openness")

    def time_sync(self) -> np.ndarray:
        """The tracker's time-synchronisation packets (``TIME_SYNC_DTYPE``); empty when none."""
        return self._read_table("time_sync")

    def events(self) -> List[dict]:
        """events.tsv as a list of dicts (``detail`` parsed from JSON)."""
        p = self._inside(self.path / fmt.EVENTS_TSV)
        rows = read_tsv_checked(p, fmt.EVENT_COLUMNS, what="events")
        out = []
        for i, (t, kind, trial, detail) in enumerate(rows):
            try:
                d = json.loads(detail) if detail else {}
            except ValueError:
                d = {"text": detail}
            if not isinstance(d, dict):
                d = {"value": d}
            try:
                out.append({"t_us": int(t), "kind": kind, "trial": int(trial) if trial else None, "detail": d})
            except ValueError:
                raise SessionFormatError(f"{p}: line {i + 2}: t_us or trial is not a whole number; "
                                         f"run `emer-live repair {self.path}`") from None
        return out

    def stimulus_intervals(self) -> List[dict]:
        """Per presented trial: ``trial, stimulus_id, onset_us, offset_us, status`` from events.tsv
        (a trial whose clip was restarted after a pause keeps its last onset)."""
        out = {}
        for e in self.events():
            if e["kind"] == "stimulus_onset" and e["trial"] is not None:
                out[e["trial"]] = {"trial": e["trial"], "stimulus_id": e["detail"].get("stimulus_id"),
                                   "category": e["detail"].get("category"),
                                   "onset_us": e["t_us"], "offset_us": None, "status": "running"}
            elif e["kind"] == "stimulus_offset" and e["trial"] in out:
                out[e["trial"]]["offset_us"] = e["t_us"]
            elif e["kind"] == "trial_end" and e["trial"] in out:
                out[e["trial"]]["status"] = "complete"
            elif e["kind"] == "trial_aborted" and e["trial"] in out:
                out[e["trial"]]["status"] = "aborted"
        return [out[k] for k in sorted(out)]

    def _optional_table(self, name: str):
        import pandas as pd

        p = self._inside(self.path / name)
        if not p.is_file():
            return None
        try:
            return pd.read_csv(p, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SessionFormatError(f"{p}: not a readable table ({reason})") from None

    def sam(self):
        """sam.tsv as a DataFrame, or None if the session has no SAM answers."""
        return self._optional_table(fmt.SAM_TSV)

    def truth(self):
        """truth.tsv (synthetic sessions only) as a DataFrame, or None."""
        return self._optional_table(fmt.TRUTH_TSV)

    def predictions(self):
        return self._optional_table(fmt.PREDICTIONS_TSV)

    # ------------------------------------------------------------------ video
    def frame_index(self, segment: Segment) -> np.ndarray:
        """Per-frame (frame, t_us, camera_frame_index, offset, size) of a segment."""
        key = segment.relpath
        if key not in self._frames_cache:
            dt = np.dtype([("frame", np.int64), ("t_us", np.int64), ("camera_frame_index", np.int64),
                           ("offset", np.int64), ("size", np.int64)])
            p = self._inside(segment.path / fmt.FRAMES_TSV)
            if not p.is_file():
                self._frames_cache[key] = np.zeros(0, dt)
            else:
                rows = read_tsv_checked(p, fmt.FRAME_COLUMNS, what="frame index")
                arr = np.array(_int_rows(rows, p, fmt.FRAME_COLUMNS), dtype=dt) if rows else np.zeros(0, dt)
                self._frames_cache[key] = arr
        return self._frames_cache[key]

    def camera_times(self) -> np.ndarray:
        """t_us of every recorded frame, all segments, in time order."""
        parts = [self.frame_index(s)["t_us"] for s in self.segments() if s.has_video]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def read_frame(self, segment: Segment, i: int) -> np.ndarray:
        """Decode frame ``i`` of a segment (BGR uint8)."""
        import cv2

        idx = self.frame_index(segment)
        if not 0 <= i < len(idx):
            raise IndexError(f"{segment.relpath}: frame {i} out of range (0..{len(idx) - 1})")
        with self._open_video(segment) as f:
            f.seek(int(idx["offset"][i]))
            data = f.read(int(idx["size"][i]))
        if len(data) < int(idx["size"][i]):
            raise self._truncated(segment, i)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise SessionFormatError(f"{segment.path / fmt.VIDEO_FILE}: frame {i} is not a decodable JPEG; "
                                     f"run `emer-live repair {self.path}`")
        return img

    def iter_frames(self, segment: Optional[Segment] = None) -> Iterator[tuple]:
        """Yield ``(t_us, camera_frame_index, image)`` for one segment or the whole session."""
        import cv2

        segs = [segment] if segment is not None else [s for s in self.segments() if s.has_video]
        for seg in segs:
            idx = self.frame_index(seg)
            if len(idx) == 0:
                continue
            with self._open_video(seg) as f:
                for r in idx:
                    f.seek(int(r["offset"]))
                    data = f.read(int(r["size"]))
                    if len(data) < int(r["size"]):
                        raise self._truncated(seg, int(r["frame"]))
                    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                    if img is None:
                        raise SessionFormatError(f"{seg.path / fmt.VIDEO_FILE}: frame {int(r['frame'])} is not "
                                                 f"a decodable JPEG; run `emer-live repair {self.path}`")
                    yield int(r["t_us"]), int(r["camera_frame_index"]), img

    def _open_video(self, segment: Segment):
        p = self._inside(segment.path / fmt.VIDEO_FILE)
        try:
            return open(p, "rb")
        except FileNotFoundError:
            raise SessionFormatError(f"{p}: missing, but {fmt.FRAMES_TSV} beside it indexes frames; restore it from "
                                     "a backup") from None
        except IsADirectoryError:
            raise SessionFormatError(f"{p}: a folder, not the video file") from None

    def _truncated(self, segment: Segment, i: int) -> SessionFormatError:
        return SessionFormatError(f"{segment.path / fmt.VIDEO_FILE}: truncated - frame {i} and later lie past the "
                                  f"end of the file; run `emer-live repair {self.path}` (it moves the index rows of "
                                  "the missing frames aside)")

    # ------------------------------------------------------------------ checks
    def problems(self) -> List[dict]:
        """What is wrong with this folder that a reader would otherwise pass over silently.

        Returns dicts ``{"kind", "stream", "message"}`` with kind ``unfinished`` (status
        ``recording``: it crashed and was not repaired), ``stopped`` (disk full / error),
        ``missing`` (a stream session.json declares has no file), ``truncated`` (frames indexed
        past the end of face.mjpeg), ``order`` (time stamps that do not increase) or ``outside``
        (a symbolic link that leads out of the folder; it is not read)."""
        out = []

        def add(kind, stream, message):
            out.append({"kind": kind, "stream": stream, "message": message})

        if self.status == "recording":
            add("unfinished", None, f"{self.path}: status 'recording' - the recorder did not stop cleanly (a crash?); "
                                    f"run `emer-live repair {self.path}`")
        elif self.status in ("disk_full", "error"):
            add("stopped", None, f"{self.path}: the recording stopped early (status {self.status!r})"
                                 + (f": {self.meta['error']}" if self.meta.get("error") else ""))
        for link in self._outside_links():
            add("outside", _stream_of(link), f"{link}: a symbolic link out of the session folder; it is not read - "
                                             "copy the file into the folder instead of linking to it")
        declared = self.meta.get("streams", {}) or {}
        for kind, info in declared.items():
            if kind in fmt.TABLES and not (self.path / fmt.TABLES[kind][0]).is_file():
                add("missing", kind, f"{self.path / fmt.TABLES[kind][0]}: missing, but session.json declares a "
                                     f"{kind} stream - the file was deleted or moved; restore it from a backup")
        written = self.meta.get("written", {}) or {}
        segs = self.segments()
        if "camera" in declared and int(written.get("camera", 0) or 0) > 0 and not any(s.has_video for s in segs):
            add("missing", "camera", f"{self.path}: session.json records {written['camera']} video frames but no "
                                     f"segment holds a {fmt.FRAMES_TSV}; restore the segment folders from a backup")
        for seg in segs:
            vid = seg.path / fmt.VIDEO_FILE
            if not seg.has_video:
                if vid.is_file() and vid.stat().st_size:
                    add("missing", "camera", f"{seg.path / fmt.FRAMES_TSV}: missing beside {fmt.VIDEO_FILE} "
                                             f"(frames without time stamps); run `emer-live repair {self.path}`")
                continue
            try:
                idx = self.frame_index(seg)
            except SessionFormatError as exc:
                add("unreadable", "camera", str(exc))
                continue
            if not len(idx):
                continue
            size = vid.stat().st_size if vid.is_file() else 0
            past = int(np.count_nonzero(idx["offset"] + idx["size"] > size))
            if past:
                add("truncated", "camera", f"{vid}: truncated - {past} of {len(idx)} indexed frames lie past the end "
                                           f"of the file ({size} bytes); run `emer-live repair {self.path}`")
            n_bad = len(_not_after_earlier(idx["t_us"]))
            if n_bad:
                add("order", "camera", f"{seg.path / fmt.FRAMES_TSV}: {n_bad} frame time stamp(s) out of order or "
                                       "repeated (not later than an earlier row)")
        if (self.path / fmt.EVENTS_TSV).is_file():
            try:
                self.events()
            except SessionFormatError as exc:
                add("unreadable", None, str(exc))
        if self.has_gaze():
            try:
                t = self.gaze()["t_us"]
            except SessionFormatError as exc:
                add("unreadable", "gaze", str(exc))
            else:
                bad = _not_after_earlier(t)
                if len(bad):
                    add("order", "gaze", f"{self.path / fmt.GAZE_TSV}: {len(bad)} time stamp(s) out of order or "
                                         f"repeated (not later than an earlier row), the first at line "
                                         f"{int(bad[0]) + 3}; the gaze cannot be replayed or windowed in time order")
        return out

    def require_intact(self, streams=("gaze", "camera")) -> None:
        """Raise :class:`SessionFormatError` for a missing, truncated or out-of-order stream among
        ``streams`` (the checks of :meth:`problems` that make replay and windows wrong)."""
        for p in self.problems():
            if p["stream"] in streams and p["kind"] in ("missing", "truncated", "order", "unreadable", "outside"):
                raise SessionFormatError(p["message"])

    # ------------------------------------------------------------------ audio
    def audio_blocks(self, segment: Segment) -> np.ndarray:
        dt = np.dtype([("block", np.int64), ("t_us", np.int64), ("n_samples", np.int64), ("sample_offset", np.int64)])
        p = self._inside(segment.path / fmt.AUDIO_TSV)
        if not p.is_file():
            return np.zeros(0, dt)
        rows = read_tsv_checked(p, fmt.AUDIO_COLUMNS, what="audio block index")
        return np.array(_int_rows(rows, p, fmt.AUDIO_COLUMNS), dtype=dt) if rows else np.zeros(0, dt)

    def audio(self, segment: Segment) -> np.ndarray:
        """Samples of a segment as float32 (n, channels) in [-1, 1]."""
        info = self.meta.get("streams", {}).get("audio", {})
        ch = int(info.get("channels", 1))
        p = self._inside(segment.path / fmt.AUDIO_FILE)
        raw = np.fromfile(p, dtype="<i2", offset=fmt.WAV_HEADER_BYTES) if p.is_file() else np.zeros(0, "<i2")
        n = len(raw) // ch
        return (raw[: n * ch].reshape(n, ch).astype(np.float32) / 32767.0)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        """The ``emer-live info`` report: per-stream counts, rates, gaps and time range."""
        streams = {}
        counters = {k: v.get("counters", {}) for k, v in self.meta.get("streams", {}).items()}
        if self.has_gaze():
            g = self.gaze()
            streams["gaze"] = _stream_stats(g["t_us"], self.meta.get("streams", {}).get("gaze", {}).get("nominal_rate_hz"),
                                            counters.get("gaze"))
            streams["gaze"]["device_clock_drift_ppm"] = _drift_ppm(g["t_us"], g["device_time_stamp"])
        if (self.path / fmt.EYE_OPENNESS_TSV).is_file():
            o = self.eye_openness()
            streams["eye_openness"] = _stream_stats(
                o["t_us"], self.meta.get("streams", {}).get("eye_openness", {}).get("nominal_rate_hz"),
                counters.get("eye_openness"))
        clock_sync = None
        if (self.path / fmt.TIME_SYNC_TSV).is_file():
            ts = self.time_sync()
            fit = fit_clock_sync(ts["system_request_time_stamp"], ts["device_time_stamp"],
                                 ts["system_response_time_stamp"])
            drift = fit.get("drift_ppm")
            clock_sync = {"packets": fit["n"], "span_s": fit.get("span_s"),
                          "device_clock_drift_ppm": None if drift is None else round(drift, 2),
                          "device_minus_system_us": fit.get("offset_us")}
        cam_t = self.camera_times()
        if "camera" in self.meta.get("streams", {}) or len(cam_t):
            streams["camera"] = _stream_stats(cam_t, self.meta.get("streams", {}).get("camera", {}).get("nominal_rate_hz"),
                                              counters.get("camera"))
        audio_segs = [s for s in self.segments() if s.has_audio]
        if "audio" in self.meta.get("streams", {}) or audio_segs:
            blocks = [self.audio_blocks(s) for s in audio_segs]
            bt = np.concatenate([b["t_us"] for b in blocks]) if blocks else np.zeros(0, np.int64)
            nominal = self.meta.get("streams", {}).get("audio", {}).get("nominal_rate_hz")
            st = _stream_stats(bt, nominal, counters.get("audio"))
            n_samples = int(sum(int(b["n_samples"].sum()) for b in blocks))
            st["blocks"] = int(len(bt))
            st["samples"] = n_samples
            st["rate_hz"] = round(n_samples / st["duration_s"], 1) if st["duration_s"] else None
            streams["audio"] = st
        trials = []
        extra = []   # damaged side tables: the summary is a partial read, said so in problems
        sam = self._side_table(self.sam, ("trial", "er7"), extra)
        preds = self._side_table(self.predictions, ("kind", "trial", "er_top", "fer_top"), extra)
        status = {t["trial"]: t.get("status") for t in self.meta.get("trials", [])}
        for s in self.segments():
            if s.kind != "trial":
                continue
            fi = self.frame_index(s)
            row = {"trial": s.trial, "stimulus_id": s.stimulus_id, "segment": s.relpath,
                   "t_start_us": s.t_start_us, "frames": int(len(fi)), "status": status.get(s.trial)}
            # what the participant reported beside what the model said about the whole clip
            if sam is not None:
                m = sam[sam["trial"] == s.trial]
                if len(m):
                    row["sam_er7"] = str(m["er7"].iloc[0])
            if preds is not None:
                m = preds[(preds["kind"] == "trial") & (preds["trial"] == s.trial)]
                if len(m):
                    row["predicted_er7"] = str(m["er_top"].iloc[-1])
                    row["predicted_fer7"] = str(m["fer_top"].iloc[-1])
            trials.append(row)
        # trials that never got a segment (not_run, or skipped before their clip) are listed too,
        # so a stopped session shows its whole plan with each trial's state
        recorded = {row["trial"] for row in trials}
        for t in self.meta.get("trials", []):
            if isinstance(t["trial"], int) and t["trial"] not in recorded:
                trials.append({"trial": t["trial"], "stimulus_id": t.get("stimulus_id"), "segment": None,
                               "t_start_us": t.get("t_start_us"), "frames": 0, "status": t.get("status")})
        trials.sort(key=lambda row: row["trial"] if isinstance(row["trial"], int) else 0)
        return {"format": {"name": self.meta["format"], "version": self.format_version},
                "path": str(self.path), "status": self.status, "participant": self.meta.get("participant"),
                "streams": streams, "tracker_clock_sync": clock_sync, "trials": trials,
                "problems": [p["message"] for p in self.problems()] + extra}

    @staticmethod
    def _side_table(read, columns, extra: list):
        """A side table (sam.tsv, predictions.tsv) for the summary; a damaged one is left out and
        named in ``extra`` instead of failing the whole summary."""
        try:
            t = read()
        except SessionFormatError as exc:
            extra.append(f"{exc}; left out of this summary")
            return None
        if t is not None and not set(columns) <= set(t.columns):
            extra.append(f"a side table lacks column(s) {', '.join(c for c in columns if c not in t.columns)}; "
                         "left out of this summary")
            return None
        return t


def _stream_of(p: Path) -> Optional[str]:
    """Which stream a file belongs to (for problems()); None for metadata."""
    name = p.name
    if name in (fmt.VIDEO_FILE, fmt.FRAMES_TSV):
        return "camera"
    if name in (fmt.AUDIO_FILE, fmt.AUDIO_TSV):
        return "audio"
    for kind, (file, _dtype) in fmt.TABLES.items():
        if name == file:
            return kind
    return None


def _not_after_earlier(t: np.ndarray) -> np.ndarray:
    """Indices (into ``t[1:]``) of stamps not later than every stamp before them: each repeated
    or out-of-order row counts, not only the one step where time jumps back."""
    if len(t) < 2:
        return np.zeros(0, np.int64)
    return np.flatnonzero(t[1:] <= np.maximum.accumulate(t)[:-1])


def _drift_ppm(t_us: np.ndarray, device_us: np.ndarray):
    """How fast the tracker's clock runs against the session clock, in parts per million
    (least-squares slope of device time on session time); None when too short to tell."""
    if len(t_us) < 100 or t_us[-1] - t_us[0] < 1_000_000:
        return None
    x = (t_us - t_us[0]).astype(np.float64)
    y = (device_us - device_us[0]).astype(np.float64)
    slope = float(np.dot(x, y) / np.dot(x, x))
    return round((slope - 1.0) * 1e6, 2)


def _stream_stats(t: np.ndarray, nominal_rate_hz, counters) -> dict:
    n = int(len(t))
    out = {"samples": n, "duration_s": 0.0, "rate_hz": None, "gaps": 0, "dropped": 0,
           "first_t_us": int(t[0]) if n else None, "last_t_us": int(t[-1]) if n else None,
           "strictly_increasing": bool(np.all(np.diff(t) > 0)) if n > 1 else True,
           "out_of_order": int(len(_not_after_earlier(t)))}
    if n > 1:
        dur = (int(t[-1]) - int(t[0])) / 1e6
        out["duration_s"] = round(dur, 6)
        out["rate_hz"] = round((n - 1) / dur, 3) if dur > 0 else None
        period = 1e6 / nominal_rate_hz if nominal_rate_hz else float(np.median(np.diff(t)))
        out["gaps"] = int((np.diff(t) > 1.5 * period).sum())
    if counters:
        out["dropped"] = int(counters.get("dropped", 0)) + int(counters.get("recorder_overruns", 0))
    return out
