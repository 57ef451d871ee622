"""Read a recorded session folder (FORMAT v2) without the devices or the GUI.

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
from . import crops
from . import format as fmt

__all__ = ["SessionReader", "Segment", "is_session_dir", "read_tsv_checked", "read_tsv_intact"]


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

    @property
    def has_crops(self) -> bool:
        """Privacy mode: the segment holds face crops / measurements instead of video."""
        return (self.path / crops.CROPS_TSV).is_file()


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


def read_tsv_intact(path: Path, columns, *, what: str) -> "tuple[list[list[str]], list[int]]":
    """The complete rows of a damaged TSV and the line numbers left out.

    A row is left out when it has no line end (a cut file), the wrong number of fields or bytes
    that are not UTF-8; a missing file or a foreign header still raises SessionFormatError (no
    row can be trusted then). Readers that show what they can (replay, ``info``'s counts) use
    this; everything else reads with :func:`read_tsv_checked` and refuses damage."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SessionFormatError(f"{path}: missing ({what})") from None
    lines = data.split(b"\n")
    head = lines[0].decode("utf-8", "replace").split("\t")
    if head != list(columns):
        raise SessionFormatError(f"{path}: header does not match the {what} columns of format v{fmt.FORMAT_VERSION}")
    body = lines[1:]
    skipped = []
    if body and body[-1] == b"":
        body.pop()
    elif body:
        skipped.append(len(body) + 1)      # no line end: cut mid-line
        body.pop()
    rows = []
    ncol = len(columns)
    for i, ln in enumerate(body):
        try:
            r = ln.decode("utf-8").split("\t")
        except UnicodeDecodeError:
            skipped.append(i + 2)
            continue
        if len(r) != ncol:
            skipped.append(i + 2)
            continue
        rows.append(r)
    return rows, sorted(skipped)


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


def _records(rows, dtype: np.dtype) -> np.ndarray:
    """TSV rows (lists of text) as a structured array; ValueError when a field is not a number."""
    out = np.zeros(len(rows), dtype)
    if not rows:
        return out
    for name, col in zip(dtype.names, zip(*rows)):
        try:
            out[name] = np.array(col, dtype=np.int64 if dtype[name].kind in "iu" else np.float64)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"column {name!r} holds a value that is not a number ({exc})") from None
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
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            # a version no emer_live ever wrote: the file is damaged, a newer program would not help
            raise SessionFormatError(f"{meta_path}: format_version {version!r} is not a version number (1, 2, ...); "
                                     "the file is damaged or was not written by emer_live - restore it from a backup")
        if version > fmt.FORMAT_VERSION:
            raise SessionFormatError(f"{meta_path}: format version {version!r} is not supported by this "
                                     f"emer_live (reads 1..{fmt.FORMAT_VERSION}); update emer_live")
        _check_meta_shape(meta, meta_path)
        self.meta = meta
        self._gaze_cache: Optional[np.ndarray] = None
        self._frames_cache = {}
        self._intact_cache = {}
        self._problems = None          # problems() as require_intact last saw them
        #: per segment (relpath), the frame numbers whose JPEG bytes problems() found damaged
        self.corrupt_frames: dict = {}

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
            except (ValueError, OverflowError):
                raise _bad_cell(p, name, col, int if dtype[name].kind in "iu" else float) from None
        return out

    def intact_records(self, kind: str) -> "tuple[np.ndarray, int]":
        """The whole rows of a per-sample table that may be damaged, and how many lines were left
        out (cut mid-line, wrong field count, not UTF-8, not numbers). Replay shows these; an
        intact file gives the same records as the strict readers and 0."""
        file, dtype = fmt.TABLES[kind]
        p = self.path / file
        if not p.is_file():
            return np.zeros(0, dtype), 0
        self._inside(p)
        rows, skipped = read_tsv_intact(p, dtype.names, what=kind.replace("_", " "))
        try:
            return _records(rows, dtype), len(skipped)
        except ValueError:
            good = []
            for r in rows:
                try:
                    good.append(_records([r], dtype))
                except ValueError:
                    pass
            out = np.concatenate(good) if good else np.zeros(0, dtype)
            return out, len(skipped) + len(rows) - len(out)

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

    def stimulus_intervals(self, events: Optional[List[dict]] = None) -> List[dict]:
        """Per presented trial: ``trial, stimulus_id, onset_us, offset_us, status`` from events.tsv
        (or ``events`` already read; a trial whose clip was restarted after a pause keeps its last
        onset)."""
        out = {}
        for e in (self.events() if events is None else events):
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

    # ------------------------------------------------------------------ face crops (privacy mode)
    @property
    def face_video(self) -> str:
        """What the session kept of the camera: ``full`` (face.mjpeg), ``crops`` or ``none``."""
        return str(self.meta.get("face_video") or "full")

    @property
    def crop_size(self) -> int:
        return int((self.meta.get("streams", {}).get("face_crops") or {}).get("size") or 112)

    def crop_index(self, segment: Segment) -> np.ndarray:
        """The complete rows of a segment's face_crops.tsv (:func:`.crops.read_crop_index`)."""
        key = ("crops", segment.relpath)
        if key not in self._frames_cache:
            folder = self._inside(segment.path)
            self._frames_cache[key] = crops.read_crop_index(folder, size=self.crop_size)
        return self._frames_cache[key]

    def read_crops(self, segment: Segment) -> Optional[np.ndarray]:
        """A segment's crops ``(N, S, S, 3)`` uint8 RGB, memory-mapped (None: ``face_video none``)."""
        return crops.read_crops(self._inside(segment.path), self.crop_size, len(self.crop_index(segment)))

    def crop_times(self) -> np.ndarray:
        """t_us of every face crop row, all segments, in time order."""
        parts = [self.crop_index(s)["t_us"] for s in self.segments() if s.has_crops]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def intact_frame_index(self, segment: Segment) -> "tuple[np.ndarray, int]":
        """The whole rows of a segment's frame index that may be damaged, and how many lines
        were left out (see :meth:`intact_records`)."""
        dt = np.dtype([("frame", np.int64), ("t_us", np.int64), ("camera_frame_index", np.int64),
                       ("offset", np.int64), ("size", np.int64)])
        p = self._inside(segment.path / fmt.FRAMES_TSV)
        if not p.is_file():
            return np.zeros(0, dt), 0
        rows, skipped = read_tsv_intact(p, fmt.FRAME_COLUMNS, what="frame index")
        good = [tuple(int(v) for v in r) for r in rows if all(_is_int(v) for v in r)]
        return (np.array(good, dtype=dt) if good else np.zeros(0, dt)), len(skipped) + len(rows) - len(good)

    def intact_events(self) -> "tuple[List[dict], int]":
        """The whole rows of a damaged events.tsv (as :meth:`events` gives them) and how many
        lines were left out."""
        p = self._inside(self.path / fmt.EVENTS_TSV)
        rows, skipped = read_tsv_intact(p, fmt.EVENT_COLUMNS, what="events")
        out = []
        for t, kind, trial, detail in rows:
            if not _is_int(t) or (trial and not _is_int(trial)):
                skipped.append(-1)
                continue
            try:
                d = json.loads(detail) if detail else {}
            except ValueError:
                d = {"text": detail}
            out.append({"t_us": int(t), "kind": kind, "trial": int(trial) if trial else None,
                        "detail": d if isinstance(d, dict) else {"value": d}})
        return out, len(skipped)

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
        (a symbolic link that leads out of the folder; it is not read), ``count`` (fewer or more
        records than session.json says were written), ``ends_early`` (a stream ends more than
        :attr:`EARLY_END_S` before the other streams or the recorder's stop), ``corrupt``
        (overwritten JPEG frames, a WAV header that is not the one written)."""
        out = []

        def add(kind, stream, message):
            out.append({"kind": kind, "stream": stream, "message": message})

        held = None
        if self.status == "recording":
            from .lock import read_lock

            held = read_lock(self.path)
            held = None if held is None or held.stale else held
        if held is not None:   # a writer holds the folder: unfinished because it is still running
            add("unfinished", None, f"{self.path}: being recorded now ({held.describe()}); what is on disk so far "
                                    "is shown - look again after the recording ends")
        elif self.status == "recording":
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
        listed = {sg.get("path"): sg for sg in self.meta.get("segments") or [] if isinstance(sg, dict)}
        for seg in segs:
            if listed.get(seg.relpath, {}).get("empty") is False and not seg.path.is_dir():
                add("missing", "camera", f"{seg.path}: missing, but session.json records footage in this segment "
                                         "(the folder was deleted or moved); restore it from a backup")
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
        for seg in segs:        # privacy mode: the face crop index in place of the frame index
            if not seg.has_crops:
                continue
            try:
                idx = self.crop_index(seg)
            except SessionFormatError as exc:
                add("unreadable", "face_crops", str(exc))
                continue
            n_bad = len(_not_after_earlier(idx["t_us"]))
            if n_bad:
                add("order", "face_crops", f"{seg.path / crops.CROPS_TSV}: {n_bad} frame time stamp(s) out of order "
                                           "or repeated (not later than an earlier row)")
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
        self._check_video_bytes(add)
        self._check_wav_headers(add)
        found = self._found_counts()
        self._check_counts(found, add)
        self._check_coverage(found, add)
        return out

    # a stream that ends this much before the others (or the recorder's stop) lost its end; a
    # warning, not damage on its own: a device that stopped delivering is recorded faithfully
    EARLY_END_S = 2.0
    #: problems that are warnings only (``info`` exits 0 for them alone): a clip that played
    #: with dropped or late frames (``presentation``, added by ``info``) is recorded faithfully too
    WARNING_ONLY = ("ends_early", "presentation")

    def _found_counts(self) -> dict:
        """Per stream what the folder holds: ``rows`` (records readable, the whole rows of a
        damaged table included), ``last_t_us`` and ``unreadable`` (rows could not be counted:
        a foreign header, an unreadable index)."""
        found = {}
        for kind, (file, _dtype) in fmt.TABLES.items():
            if not (self.path / file).is_file():
                continue
            recs = self.readable_table(kind)
            if recs is None:
                found[kind] = {"rows": 0, "last_t_us": None, "unreadable": True}
                continue
            t = recs["t_us"] if "t_us" in recs.dtype.names else recs[recs.dtype.names[0]]
            found[kind] = {"rows": int(len(recs)), "last_t_us": int(t.max()) if len(t) else None,
                           "unreadable": False}
        frames, blocks, samples, unreadable = 0, 0, 0, False
        cam_last = aud_last = None
        for seg in self.segments():
            try:
                idx = self.frame_index(seg) if seg.has_video else None
                b = self.audio_blocks(seg) if seg.has_audio else None
            except SessionFormatError:
                unreadable = True
                continue
            if idx is not None and len(idx):
                frames += len(idx)
                cam_last = max(cam_last or 0, int(idx["t_us"].max()))
            if b is not None and len(b):
                blocks += len(b)
                samples += int(b["n_samples"].sum())
                aud_last = max(aud_last or 0, int(b["t_us"].max()))
        found["camera"] = {"rows": frames, "last_t_us": cam_last, "unreadable": unreadable}
        found["audio_blocks"] = {"rows": blocks, "last_t_us": aud_last, "unreadable": unreadable}
        found["audio_samples"] = {"rows": samples, "last_t_us": aud_last, "unreadable": unreadable}
        return found

    def _check_counts(self, found: dict, add) -> None:
        """Every table and segment set against the records session.json says were written."""
        written = self.meta.get("written") or {}
        streams = self.meta.get("streams") or {}
        what = {"camera": ("video frames", f"the segments' {fmt.FRAMES_TSV}"),
                "audio_blocks": ("audio blocks", f"the segments' {fmt.AUDIO_TSV}"),
                "audio_samples": ("audio samples", "the segments' audio"),
                **{k: ("rows", f) for k, (f, _dt) in fmt.TABLES.items()}}
        reported = []

        def add_count(kind, stream, message):
            reported.append({"message": message})
            add(kind, stream, message)

        for key, expected in sorted(written.items(), key=lambda kv: kv[0] == "audio_samples"):
            if key not in what or expected is None:
                continue
            expected = int(expected)
            got = found.get(key)
            unit, where = what[key]
            if got is None:
                if expected and key in fmt.TABLES:
                    add_count("count", key, f"{self.path / fmt.TABLES[key][0]}: missing, but session.json records "
                                      f"{expected} {unit} written; restore it from a backup")
                continue
            if got["unreadable"] or got["rows"] == expected:
                continue
            if key == "audio_samples" and any("audio blocks found" in r["message"] for r in reported):
                continue      # the blocks' line already says the audio is short
            stream = {"audio_blocks": "audio", "audio_samples": "audio"}.get(key, key)
            place = self.path / where if key in fmt.TABLES else f"{self.path}: {where}"
            if got["rows"] < expected:
                if key in ("camera", "audio_blocks", "audio_samples"):
                    cut = self._segments_ending_early("video" if key == "camera" else "audio")
                    if cut:
                        place = f"{self.path}: {where} ({'; '.join(cut)})"
                miss = expected - got["rows"]
                rate = (streams.get(stream) or {}).get("nominal_rate_hz")
                if key == "audio_samples":
                    rate = (streams.get("audio") or {}).get("sample_rate_hz")
                span = f" ({miss / rate:.1f} s at {rate:g} Hz)" if rate else ""
                add_count("count", stream, f"{place}: {got['rows']} {unit} found, session.json records {expected} "
                                     f"written - {miss} missing{span}; the file was cut or rows were removed "
                                     "after the recording; restore it from a backup")
            else:
                add_count("count", stream, f"{place}: {got['rows']} {unit} found, session.json records only {expected} "
                                     f"written - {got['rows'] - expected} more than were recorded (rows added "
                                     "or repeated after the recording)")

    def _segments_ending_early(self, what: str) -> List[str]:
        """Segments whose frames (``video``) or audio blocks end more than EARLY_END_S before the
        segment does (the next segment's start, or the recorder's stop): where records went."""
        segs = sorted(self.segments(), key=lambda sg: sg.t_start_us)
        stop = (self.meta.get("clock") or {}).get("end_t_us")
        out = []
        for i, seg in enumerate(segs):
            end = segs[i + 1].t_start_us if i + 1 < len(segs) else stop
            if not isinstance(end, int):
                continue
            try:
                if what == "video":
                    t = self.frame_index(seg)["t_us"] if seg.has_video else None
                else:
                    t = self.audio_blocks(seg)["t_us"] if seg.has_audio else None
            except SessionFormatError:
                continue
            if t is None or not len(t):
                continue
            gap = (end - int(t.max())) / 1e6
            if gap > self.EARLY_END_S:
                out.append(f"{seg.relpath} ends {gap:.1f} s before its segment does")
        return out

    def _check_coverage(self, found: dict, add) -> None:
        """A stream whose records end well before the other streams' (or the recorder's stop)
        lost its end, whatever the counts say (a repaired cut, a device that died)."""
        names = {"gaze": "gaze", "eye_openness": "eye openness", "camera": "camera", "audio_blocks": "audio"}
        ends = {names[k]: v["last_t_us"] for k, v in found.items()
                if k in names and v["last_t_us"] is not None and not v["unreadable"]}
        if not ends:
            return
        clock = self.meta.get("clock") or {}
        refs = dict(ends)
        if isinstance(clock.get("end_t_us"), int) and self.status != "recording":
            refs["recording stop"] = int(clock["end_t_us"])
        starts = [v for v in (clock.get("start_t_us"),) if isinstance(v, int)]
        t0 = min(starts) if starts else None
        for name, last in ends.items():
            ref_name, ref = max(((n, t) for n, t in refs.items() if n != name), key=lambda nt: nt[1],
                                default=(None, None))
            if ref is None or (ref - last) / 1e6 <= self.EARLY_END_S:
                continue
            rel = (lambda t: f"{(t - t0) / 1e6:.1f} s") if t0 is not None else (lambda t: f"t_us {t}")
            add("ends_early", name.replace(" ", "_"),
                f"{self.path}: {name} ends at {rel(last)}, {(ref - last) / 1e6:.1f} s before the {ref_name} "
                f"(at {rel(ref)}) - its last {(ref - last) / 1e6:.1f} s are missing")

    def _check_video_bytes(self, add) -> None:
        """Every indexed frame that lies inside its face.mjpeg is a whole JPEG: it starts with
        SOI, its headers chain to the scan, the scan holds no byte pattern a JPEG encoder never
        writes (what overwritten bytes leave) and it ends with EOI."""
        for seg in self.segments():
            vid = seg.path / fmt.VIDEO_FILE
            if not seg.has_video or not vid.is_file():
                continue
            try:
                idx = self.frame_index(seg)
            except SessionFormatError:
                continue       # reported as unreadable
            try:
                self._inside(vid)
            except SessionFormatError:
                continue       # reported as outside
            size = vid.stat().st_size
            bad = []
            with open(vid, "rb") as f:
                for r in idx:
                    off, n = int(r["offset"]), int(r["size"])
                    if off + n > size:
                        continue      # reported as truncated
                    f.seek(off)
                    why = jpeg_damage(f.read(n))
                    if why:
                        bad.append((int(r["frame"]), why))
            self.corrupt_frames[seg.relpath] = {b[0] for b in bad}
            if bad:
                add("corrupt", "camera", f"{vid}: {len(bad)} of {len(idx)} indexed frames are not whole JPEGs "
                                         f"(frame {bad[0][0]}: {bad[0][1]}) - their bytes were overwritten; "
                                         "replay leaves them out; restore the file from a backup")

    def _check_wav_headers(self, add) -> None:
        """audio.wav begins with the 16-bit PCM header of the stream session.json describes, its
        sizes those of the samples that follow (repair rewrites a lagging one)."""
        info = (self.meta.get("streams") or {}).get("audio") or {}
        ch, rate = int(info.get("channels", 1) or 1), int(info.get("sample_rate_hz", 48000) or 48000)
        for seg in self.segments():
            wav = seg.path / fmt.AUDIO_FILE
            if not wav.is_file():
                continue
            try:
                self._inside(wav)
            except SessionFormatError:
                continue       # reported as outside
            size = wav.stat().st_size
            with open(wav, "rb") as f:
                head = f.read(fmt.WAV_HEADER_BYTES)
            n_frames = max(size - fmt.WAV_HEADER_BYTES, 0) // (2 * ch)
            try:
                blocks = self.audio_blocks(seg)
            except SessionFormatError as exc:
                add("unreadable", "audio", str(exc))
                blocks = None
            past = 0
            if blocks is not None and len(blocks):
                past = int(np.count_nonzero(blocks["sample_offset"] + blocks["n_samples"] > n_frames))
                if past:
                    add("truncated", "audio", f"{wav}: truncated - {past} of {len(blocks)} indexed audio blocks lie "
                                              f"past the end of its {n_frames} samples; run `emer-live repair "
                                              f"{self.path}` (it moves the index rows of the missing blocks aside)")
            want = fmt.wav_header(rate=rate, channels=ch, n_frames=n_frames)
            if head == want:
                continue
            why = _wav_difference(head, want, size)
            if why == "sizes" and (self.status == "recording" or past):
                continue      # an unfinished recording rewrites its header at stop; a cut file: "truncated" says it
            add("corrupt", "audio", f"{wav}: the WAV header is not the one this recording wrote "
                                    f"({'its sizes disagree with the file' if why == 'sizes' else why}) - players "
                                    f"cannot read it; run `emer-live repair {self.path}` (it rewrites the header "
                                    "from the block index; the samples are kept)")

    def checked_problems(self) -> List[dict]:
        """:meth:`problems`, checked once per reader (it reads every frame's bytes)."""
        if self._problems is None:
            self._problems = self.problems()
        return self._problems

    #: the problems that make replay and windows wrong (or stop them midway)
    BREAKING = ("missing", "truncated", "order", "unreadable", "outside", "corrupt")

    def require_intact(self, streams=("gaze", "camera"), kinds=BREAKING) -> None:
        """Raise :class:`SessionFormatError` for a missing, truncated, out-of-order or overwritten
        stream among ``streams`` (``kinds`` of :meth:`problems`; a re-recording adds ``count``)."""
        for p in self.checked_problems():
            if p["stream"] in streams and p["kind"] in kinds:
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
        if self.has_gaze() and self.readable_table("gaze") is not None:
            g = self.readable_table("gaze")
            streams["gaze"] = _stream_stats(g["t_us"], self.meta.get("streams", {}).get("gaze", {}).get("nominal_rate_hz"),
                                            counters.get("gaze"))
            streams["gaze"]["device_clock_drift_ppm"] = _drift_ppm(g["t_us"], g["device_time_stamp"])
        if (self.path / fmt.EYE_OPENNESS_TSV).is_file() and self.readable_table("eye_openness") is not None:
            o = self.readable_table("eye_openness")
            streams["eye_openness"] = _stream_stats(
                o["t_us"], self.meta.get("streams", {}).get("eye_openness", {}).get("nominal_rate_hz"),
                counters.get("eye_openness"))
        clock_sync = None
        if (self.path / fmt.TIME_SYNC_TSV).is_file() and self.readable_table("time_sync") is not None:
            ts = self.readable_table("time_sync")
            fit = fit_clock_sync(ts["system_request_time_stamp"], ts["device_time_stamp"],
                                 ts["system_response_time_stamp"])
            drift = fit.get("drift_ppm")
            clock_sync = {"packets": fit["n"], "span_s": fit.get("span_s"),
                          "device_clock_drift_ppm": None if drift is None else round(drift, 2),
                          "device_minus_system_us": fit.get("offset_us")}
        if "face_crops" in self.meta.get("streams", {}):
            streams["face_crops"] = _stream_stats(
                self.crop_times(), self.meta["streams"]["face_crops"].get("nominal_rate_hz"), counters.get("face_crops"))
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
            fi = self.crop_index(s) if s.has_crops else self.frame_index(s)
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
        found = self.problems()
        return {"format": {"name": self.meta["format"], "version": self.format_version},
                "path": str(self.path), "status": self.status, "participant": self.meta.get("participant"),
                "face_video": self.face_video,
                "streams": streams, "tracker_clock_sync": clock_sync, "trials": trials,
                "problems": [p["message"] for p in found] + extra,
                "problem_kinds": [p["kind"] for p in found] + ["unreadable"] * len(extra)}

    def readable_table(self, kind: str) -> Optional[np.ndarray]:
        """A per-sample table for the summary: all of it, or its whole rows when it is damaged
        (problems() names the damage); None when not even those can be read."""
        try:
            return self.gaze() if kind == "gaze" else self._read_table(kind)
        except SessionFormatError:
            if kind not in self._intact_cache:
                try:
                    self._intact_cache[kind] = self.intact_records(kind)[0]
                except SessionFormatError:
                    self._intact_cache[kind] = None
            return self._intact_cache[kind]

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


def _bad_cell(p: Path, name: str, col, kind) -> SessionFormatError:
    """The error for a table cell that is not a number. It lies inside the file, where a crash
    never writes: ``repair`` (which cuts a torn end) cannot fix it, so it does not advise it."""
    line, value = None, None
    for i, v in enumerate(col):
        try:
            kind(v)
        except (ValueError, OverflowError):
            line, value = i + 2, v           # line 1 is the header
            break
    what = "a whole number" if kind is int else "a number"
    where = f"line {line}, " if line is not None else ""
    return SessionFormatError(f"{p}: {where}column {name!r} holds {value!r}, not {what} - the file is damaged "
                              f"inside (repair only cuts a torn end); restore {p.name} from a backup, or correct "
                              "or delete that line by hand")


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


def jpeg_damage(data: bytes) -> Optional[str]:
    """Why ``data`` is not a whole baseline JPEG as a recorder writes one, or None when it is.

    Checks the structure, not the picture: SOI, a chain of header segments up to the scan
    (SOS), no byte pattern an encoder never writes inside the scan (0xFF followed by a byte that
    is neither a stuffed 0x00 nor a marker, or a run of 0xFF - what overwritten bytes leave) and
    EOI at the end. Fast enough to run over every frame of a session."""
    n = len(data)
    if n < 4 or data[:2] != b"\xff\xd8":
        return f"starts with {data[:2].hex(' ') or 'nothing'}, not a JPEG start (ff d8)"
    if data[-2:] != b"\xff\xd9":
        return f"ends with {data[-2:].hex(' ')}, not a JPEG end (ff d9)"
    pos, sof = 2, False
    while True:
        if pos + 4 > n or data[pos] != 0xFF:
            return f"header broken at byte {pos}"
        marker = data[pos + 1]
        if marker == 0xFF:               # fill byte before a marker
            pos += 1
            continue
        seg_len = int.from_bytes(data[pos + 2:pos + 4], "big")
        if seg_len < 2 or pos + 2 + seg_len > n:
            return f"header segment ff {marker:02x} at byte {pos} runs past the frame"
        if marker in (0xC0, 0xC1, 0xC2) and seg_len >= 8:
            h, w, comps = (int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 7:pos + 9], "big"),
                           data[pos + 9])
            if not h or not w or comps not in (1, 3, 4):
                return f"its frame header says {w}x{h} pixels, {comps} components"
            sof = True
        pos += 2 + seg_len
        if marker == 0xDA:
            if not sof:
                return "no frame header (SOF) before the picture data"
            break
    if pos > n - 2:
        return "no picture data after its headers"
    scan = np.frombuffer(data, np.uint8, count=n - 2 - pos, offset=pos)
    ff = np.flatnonzero(scan[:-1] == 0xFF)
    nxt = scan[ff + 1]
    wrong = ff[(nxt != 0x00) & ~((nxt >= 0xC0) & (nxt <= 0xFE))]
    if len(wrong) and b"\xff" * 8 in data[pos:]:
        return "a run of ff bytes inside the picture data"
    if len(wrong):
        return f"byte ff {int(scan[wrong[0] + 1]):02x} at byte {pos + int(wrong[0])} inside the picture data"
    return None


def _wav_difference(head: bytes, want: bytes, size: int) -> str:
    """What differs between a WAV header and the expected one: 'sizes' (only the two size
    fields) or a description of the first foreign field."""
    if len(head) < fmt.WAV_HEADER_BYTES:
        return f"the file holds only {size} bytes"
    if head[:4] != b"RIFF" or head[8:16] != b"WAVEfmt " or head[36:40] != b"data":
        return "no RIFF/WAVE/fmt/data tags"
    if head[16:36] != want[16:36]:
        import struct

        _n, pcm, ch, rate, _br, _ba, bits = struct.unpack("<IHHIIHH", head[16:36])
        _n, pcm_w, ch_w, rate_w, _br, _ba, bits_w = struct.unpack("<IHHIIHH", want[16:36])
        return (f"it says format {pcm}, {ch} channel(s), {rate} Hz, {bits} bit; the recording is "
                f"format {pcm_w}, {ch_w} channel(s), {rate_w} Hz, {bits_w} bit")
    return "sizes"
