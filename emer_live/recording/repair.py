"""Make a crashed session readable again and report what was lost.

What a crash (SIGKILL, power loss) can leave: a table whose last line has no line end; a frame
index whose last rows point past the flushed JPEG bytes; JPEG bytes with no index row; a WAV whose
RIFF sizes lag the data; ``session.json`` still saying ``recording``. Repair cuts each file back to
its last complete record. Bytes it cuts are moved to ``repair_lost/`` - never deleted - and the
report is stored in ``session.json`` under ``repairs``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from ..clock import utc_now_iso
from ..errors import DiskFullError, SessionFormatError
from . import format as fmt
from .lock import SessionLock, refuse_if_locked
from .perms import GROUP_READABLE, PRIVATE, apply_modes
from .reader import SessionReader

__all__ = ["repair_session", "RepairReport"]


@dataclass
class RepairReport:
    path: str
    actions: List[str] = field(default_factory=list)
    lost: List[str] = field(default_factory=list)
    #: damage repair cannot undo (records missing against session.json's counts, a stream that
    #: ends early, overwritten frames): what `info` goes on warning about
    remaining: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def as_dict(self) -> dict:
        return {"path": self.path, "actions": self.actions, "lost": self.lost, "repaired_utc": utc_now_iso()}


def _save_tail(root: Path, file: Path, keep_bytes: int, report: RepairReport, why: str) -> None:
    """Move the bytes after ``keep_bytes`` of ``file`` into repair_lost/ and truncate."""
    size = file.stat().st_size
    if keep_bytes >= size:
        return
    lost_dir = root / fmt.LOST_DIR
    lost_dir.mkdir(exist_ok=True)
    rel = file.relative_to(root).as_posix().replace("/", "__")
    dest = lost_dir / f"{rel}.tail"
    k = 1
    while dest.exists():
        dest = lost_dir / f"{rel}.tail{k}"
        k += 1
    with open(file, "rb") as f:
        f.seek(keep_bytes)
        tail = f.read()
    try:
        with open(dest, "xb") as out:
            out.write(tail)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        # the cut bytes must be safe before the file is cut: leave both as they were
        try:
            dest.unlink()
        except OSError:
            pass
        if fmt.is_disk_full(exc):
            raise DiskFullError(f"disk full: repair of {root} needs {len(tail)} bytes free to keep the bytes it "
                                f"cuts from {file.relative_to(root)}; nothing was cut from that file - free space "
                                "and run repair again") from None
        raise
    with open(file, "r+b") as f:
        f.truncate(keep_bytes)
        f.flush()
        os.fsync(f.fileno())
    report.actions.append(f"{file.relative_to(root)}: cut {size - keep_bytes} bytes ({why}); kept in {dest.relative_to(root)}")


def _write_small(root: Path, file: Path, data: bytes) -> None:
    try:
        with open(file, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if fmt.is_disk_full(exc):
            raise DiskFullError(f"disk full: repair of {root} cannot write {file.relative_to(root)}; "
                                "free space and run repair again") from None
        raise


def _repair_table(root: Path, file: Path, columns, report: RepairReport, what: str) -> int:
    """Cut a TSV back to its last complete line with ``len(columns)`` fields; return data rows kept."""
    ncols = len(columns)
    if not file.is_file():
        return 0
    data = file.read_bytes()
    if not data:
        # created but its header never reached the disk (a full disk, a crash at once): an
        # empty table with its header is the truth - no rows were kept
        _write_small(root, file, ("\t".join(columns) + "\n").encode())
        report.actions.append(f"{file.relative_to(root)}: was empty (0 bytes, no header); header written, no rows")
        return 0
    keep = len(data)
    if not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
    # drop trailing lines with a wrong field count (e.g. a torn write at the end)
    lines = data[:keep].split(b"\n")[:-1]
    good = len(lines)
    while good > 1 and len(lines[good - 1].split(b"\t")) != ncols:
        good -= 1
    keep_bytes = sum(len(ln) + 1 for ln in lines[:good])
    bad_inside = [i + 1 for i, ln in enumerate(lines[1:good], start=1) if len(ln.split(b"\t")) != ncols]
    if bad_inside:
        raise SessionFormatError(f"{file}: lines {bad_inside[:5]} are malformed in the middle of the file; "
                                 "this is not crash damage - inspect the file by hand")
    if keep_bytes < len(data):
        n_partial = data[keep_bytes:].count(b"\n") + (0 if data.endswith(b"\n") else 1)
        report.lost.append(f"{file.relative_to(root)}: {n_partial} incomplete {what} line(s) at the end")
        _save_tail(root, file, keep_bytes, report, "incomplete last line")
        if keep_bytes == 0:   # not even the header was complete
            _write_small(root, file, ("\t".join(columns) + "\n").encode())
            report.actions.append(f"{file.relative_to(root)}: header written (its own was incomplete), no rows")
    return max(good - 1, 0)


def _index_rows(path: Path):
    """(lines, rows) of a frame or audio-block index after its table was cut back: the data lines
    and their whole numbers (none negative)."""
    try:
        text = path.read_bytes().decode("utf-8").split("\n")[1:-1]
    except UnicodeDecodeError as exc:
        raise SessionFormatError(f"{path}: not UTF-8 text ({exc.reason}); this is not crash damage - inspect the "
                                 "file by hand") from None
    rows = _int_rows(path, text)
    for i, r in enumerate(rows):
        if any(v < 0 for v in r):
            raise SessionFormatError(f"{path}: line {i + 2} holds a negative offset or size; this is not crash "
                                     "damage - inspect the file by hand")
    return text, rows


def _int_rows(path: Path, lines) -> list:
    """Index rows as lists of ints; a row that is not numbers (a repeated header, garbage) is not
    crash damage, which repair only cuts at the end."""
    rows = []
    for i, ln in enumerate(lines):
        try:
            rows.append(list(map(int, ln.split("\t"))))
        except ValueError:
            raise SessionFormatError(f"{path}: line {i + 2} is not a row of whole numbers; this is not crash "
                                     "damage - inspect the file by hand") from None
    return rows


def _repair_video(root: Path, seg: Path, report: RepairReport) -> None:
    idx_path, vid_path = seg / fmt.FRAMES_TSV, seg / fmt.VIDEO_FILE
    if not idx_path.is_file() and not vid_path.is_file():
        return
    if not idx_path.is_file():
        report.lost.append(f"{vid_path.relative_to(root)}: frames without an index (no timestamps) - moved aside")
        _save_tail(root, vid_path, 0, report, "no frame index")
        return
    _repair_table(root, idx_path, fmt.FRAME_COLUMNS, report, "frame index")
    size = vid_path.stat().st_size if vid_path.is_file() else 0
    text, rows = _index_rows(idx_path)
    # keep index rows whose JPEG lies wholly inside the flushed bytes and ends with EOI (FF D9)
    good = len(rows)
    with open(vid_path, "rb") if vid_path.is_file() else open(os.devnull, "rb") as f:
        while good > 0:
            off, n = rows[good - 1][3], rows[good - 1][4]
            if off + n <= size:
                f.seek(off + n - 2)
                if f.read(2) == b"\xff\xd9":
                    break
            good -= 1
    if good < len(rows):
        keep_lines = "\n".join(["\t".join(fmt.FRAME_COLUMNS)] + text[:good]) + "\n"
        report.lost.append(f"{idx_path.relative_to(root)}: {len(rows) - good} frame(s) indexed but not fully written")
        _save_tail(root, idx_path, len(keep_lines.encode()), report, "frames not fully written")
    end = rows[good - 1][3] + rows[good - 1][4] if good else 0
    if size > end:
        report.lost.append(f"{vid_path.relative_to(root)}: {size - end} bytes of frames written after the last index flush")
        _save_tail(root, vid_path, end, report, "frames without index rows")


def _repair_audio(root: Path, seg: Path, report: RepairReport, channels: int, rate: int) -> None:
    idx_path, wav_path = seg / fmt.AUDIO_TSV, seg / fmt.AUDIO_FILE
    if not idx_path.is_file() or not wav_path.is_file():
        return
    _repair_table(root, idx_path, fmt.AUDIO_COLUMNS, report, "audio block")
    text, rows = _index_rows(idx_path)
    frame_bytes = 2 * channels
    have = (wav_path.stat().st_size - fmt.WAV_HEADER_BYTES) // frame_bytes
    good = len(rows)
    while good > 0 and rows[good - 1][3] + rows[good - 1][2] > have:
        good -= 1
    if good < len(rows):
        keep_lines = "\n".join(["\t".join(fmt.AUDIO_COLUMNS)] + text[:good]) + "\n"
        report.lost.append(f"{idx_path.relative_to(root)}: {len(rows) - good} audio block(s) indexed but not written")
        _save_tail(root, idx_path, len(keep_lines.encode()), report, "audio not fully written")
    n_frames = rows[good - 1][3] + rows[good - 1][2] if good else 0
    _save_tail(root, wav_path, fmt.WAV_HEADER_BYTES + n_frames * frame_bytes, report, "audio without index rows")
    with open(wav_path, "r+b") as f:
        head = f.read(fmt.WAV_HEADER_BYTES)
        want = fmt.wav_header(rate=rate, channels=channels, n_frames=n_frames)
        if head != want:
            f.seek(0)
            f.write(want)
            report.actions.append(f"{wav_path.relative_to(root)}: WAV header sizes set to {n_frames} frames")


def repair_session(path) -> RepairReport:
    """Repair a session folder in place (see module docstring); returns what was done and lost.

    A folder whose writer still holds its lock (``recording.lock``) is refused
    (:class:`~emer_live.errors.SessionLockedError`): a live recording is not crash damage. A
    stale lock (its writer crashed) is taken over for the repair and removed at its end; repair
    holds a lock of its own while it works either way.

    Raises :class:`~emer_live.errors.DiskFullError` when the disk cannot take what repair must
    write (nothing is cut then), and :class:`~emer_live.errors.SessionFormatError` when the
    folder is still not readable afterwards (the report is stored first)."""
    root = Path(path)
    reader = SessionReader(root)          # refuses non-session folders with a clear message
    stale = refuse_if_locked(root, action="repair")
    lock = SessionLock.acquire(root, purpose="repair", take_over_stale=True)
    try:
        report = _repair_locked(root, reader, stale)
    finally:
        lock.release()
    return report


def _repair_locked(root: Path, reader: SessionReader, stale) -> RepairReport:
    meta = reader.meta
    report = RepairReport(str(root))
    if stale is not None:
        report.actions.append(f"{stale.path.name}: the writer's lock was stale ({stale.describe()}); taken over "
                              "for the repair and removed")
    reserve = root / fmt.RESERVE_FILE
    if reserve.is_file():
        # the recorder's disk reserve, left by a crash: not data, and its space lets repair work
        reserve.unlink()
        report.actions.append(f"{fmt.RESERVE_FILE}: removed the recorder's disk reserve left by the crash")
    for kind, (file, dtype) in fmt.TABLES.items():
        _repair_table(root, root / file, dtype.names, report, kind.replace("_", " "))
    _repair_table(root, root / fmt.EVENTS_TSV, fmt.EVENT_COLUMNS, report, "event")
    audio = meta.get("streams", {}).get("audio", {})
    for seg in reader.segments():
        _repair_video(root, seg.path, report)
        _repair_audio(root, seg.path, report, int(audio.get("channels", 1)), int(audio.get("sample_rate_hz", 48000)))
    events = _events_or_none(reader)
    if meta.get("status") == "recording":
        # a recorder that stopped but could not rewrite session.json (a full disk) left its
        # final status and the cause in events.tsv: keep them where readers look
        stop = next((e for e in reversed(events or []) if e["kind"] == "recording_stop"), None)
        cause = next((e["detail"].get("message") for e in reversed(events or []) if e["kind"] == "error"
                      and e["detail"].get("message")), None)
        if stop is not None and stop["detail"].get("status"):
            meta["status"] = str(stop["detail"]["status"])
            report.actions.append(f"session.json: status 'recording' -> {meta['status']!r} (from the recording_stop "
                                  "event; session.json could not be rewritten when the recording stopped)")
        else:
            meta["status"] = "interrupted"
            report.actions.append("session.json: status 'recording' -> 'interrupted' (the recorder did not stop cleanly)")
        if cause and not meta.get("error"):
            meta["error"] = cause
    _settle_trials(meta, events, report)
    if (root / fmt.LOST_DIR).is_dir():
        # the cut bytes are the participant's data too: as private as the session folder
        group = bool(root.stat().st_mode & 0o050)
        apply_modes(root / fmt.LOST_DIR, GROUP_READABLE if group else PRIVATE)
    if report.changed or report.lost:
        meta.setdefault("repairs", []).append(report.as_dict())
        try:
            fmt.write_json_atomic(root / fmt.SESSION_JSON, meta)
        except OSError as exc:
            if fmt.is_disk_full(exc):
                raise DiskFullError(f"disk full: repair of {root} cut its files but cannot rewrite session.json "
                                    "(the cut bytes are in repair_lost/); free space and run repair again") from None
            raise
    problems = verify_readable(root)
    if not problems:
        report.remaining = [p["message"] for p in SessionReader(root).problems()
                            if p["kind"] in ("count", "ends_early", "corrupt")]
    if problems:
        raise SessionFormatError(f"{root}: still not readable after repair - {problems[0]}"
                                 + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                                 + ("" if "by hand" in problems[0] else "; inspect the file by hand"))
    return report


def _events_or_none(reader: SessionReader):
    try:
        return reader.events()
    except SessionFormatError:
        return None


#: the event that ends a trial -> the trial's status (the controller's words)
ENDED_TRIAL = {"trial_end": "complete", "trial_aborted": "aborted", "trial_skipped": "skipped"}


def _settle_trials(meta: dict, events, report: RepairReport) -> None:
    """Trials the plan still lists as ``pending``/``running`` in a session that has ended get
    the status the events show: ``interrupted`` (begun, never ended) or ``not_run``."""
    trials = meta.get("trials")
    if not isinstance(trials, list) or meta.get("status") == "recording":
        return
    begun, ended = set(), {}
    for e in events or []:
        if e["trial"] is None:
            continue
        if e["kind"] == "stimulus_onset":
            begun.add(e["trial"])
        elif e["kind"] in ENDED_TRIAL:
            ended[e["trial"]] = ENDED_TRIAL[e["kind"]]
    changed = []
    for t in trials:
        if not isinstance(t, dict) or t.get("status") not in ("pending", "running"):
            continue
        n = t.get("trial")
        new = ended.get(n) or ("interrupted" if n in begun or t.get("status") == "running" else "not_run")
        changed.append(f"{n}: {t['status']} -> {new}")
        t["status"] = new
    if changed:
        report.actions.append("session.json: trial status " + ", ".join(changed) + " (the session ended before them)")


def verify_readable(path) -> list:
    """Every table, frame index and audio index of a session read the way the tools read them;
    returns the problems (empty when the folder is readable)."""
    problems = []
    try:
        reader = SessionReader(path)
    except SessionFormatError as exc:
        return [str(exc)]
    checks = [reader.events, reader.eye_openness, reader.time_sync]
    if reader.has_gaze():
        checks.append(reader.gaze)
    for seg in reader.segments():
        checks.append(lambda seg=seg: reader.frame_index(seg))
        checks.append(lambda seg=seg: reader.audio_blocks(seg))
    for check in checks:
        try:
            check()
        except SessionFormatError as exc:
            problems.append(str(exc))
    return problems
