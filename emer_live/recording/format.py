"""Names, columns and text encoding of the session format (v2); shared by writer, reader, repair.

All tables are UTF-8, tab-separated, one header row, ``\\n`` line ends, ``NaN`` for missing
numbers. Floats are written with ``%.9g`` (exact for float32), integers in decimal.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..schema import EYE_OPENNESS_DTYPE, GAZE_DTYPE, TIME_SYNC_DTYPE

FORMAT_NAME = "emer_live.session"
# 2 (2026-12-07): ``face_video`` in session.json and, in privacy mode, face crop segments
# (face_crops.tsv / .rgb / face_landmarks.f32, emer_live.recording.crops) instead of face.mjpeg
FORMAT_VERSION = 2

SESSION_JSON = "session.json"
GAZE_TSV = "gaze.tsv"
EYE_OPENNESS_TSV = "eye_openness.tsv"   # trackers that offer eye openness
TIME_SYNC_TSV = "time_sync.tsv"         # the tracker's device-vs-system clock packets
EVENTS_TSV = "events.tsv"
SAM_TSV = "sam.tsv"
PREDICTIONS_TSV = "predictions.tsv"
TRUTH_TSV = "truth.tsv"
TRIALS_DIR = "trials"        # per-trial segments: trials/NN_<stimulus_id>/
BETWEEN_DIR = "between"      # footage outside trials: between/KK_<label>/
VIDEO_FILE = "face.mjpeg"    # concatenated JPEG frames (plays as raw MJPEG in ffmpeg/VLC)
FRAMES_TSV = "face_frames.tsv"
AUDIO_FILE = "audio.wav"
AUDIO_TSV = "audio_blocks.tsv"
LOST_DIR = "repair_lost"     # bytes repair cut off are moved here, never deleted
# Space a recorder sets aside while it records and gives back when the disk fills, so the final
# session.json (status disk_full) and the last events can still be written; repair removes one
# a crash left behind.
RESERVE_FILE = ".emer_reserve"
RESERVE_BYTES = 256 * 1024

EVENT_COLUMNS = ("t_us", "kind", "trial", "detail")
FRAME_COLUMNS = ("frame", "t_us", "camera_frame_index", "offset", "size")
AUDIO_COLUMNS = ("block", "t_us", "n_samples", "sample_offset")

_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_name(text: str, max_len: int = 40) -> str:
    """A file-system-safe label (ASCII letters, digits, - and _)."""
    out = _SAFE.sub("_", str(text)).strip("_")[:max_len]
    return out or "x"


def row_formatter(dtype: np.dtype):
    """Return ``fmt(records) -> str`` that renders structured records as TSV lines."""
    parts = []
    for name in dtype.names:
        kind = dtype[name].kind
        parts.append("%d" if kind in "iub" else "%.9g")
    fmt = "\t".join(parts) + "\n"

    def render(records: np.ndarray) -> str:
        if len(records) == 0:
            return ""
        cols = [records[n].tolist() for n in dtype.names]
        text = "".join(fmt % row for row in zip(*cols))
        return text.replace("nan", "NaN")

    return render


#: Append-only per-sample tables a recorder writes, by stream kind: file name and record layout.
TABLES = {
    "gaze": (GAZE_TSV, GAZE_DTYPE),
    "eye_openness": (EYE_OPENNESS_TSV, EYE_OPENNESS_DTYPE),
    "time_sync": (TIME_SYNC_TSV, TIME_SYNC_DTYPE),
}


def clean_cell(value) -> str:
    """TSV-safe text: no tabs, newlines or carriage returns."""
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def tsv_line(values: Sequence) -> str:
    return "\t".join(clean_cell(v) for v in values) + "\n"


def write_json_atomic(path: Path, data: dict, *, mode: Optional[int] = None) -> None:
    """Write JSON via a temp file + rename so a crash never leaves half a session.json.

    The new file gets ``mode`` when given, else the mode of the file it replaces (a private
    session.json stays private when repair or an update rewrites it), else the umask's."""
    path = Path(path)
    tmp = path.parent / f".tmp_{os.getpid()}_{uuid.uuid4().hex[:12]}.json"
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = None
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            if mode is not None:
                os.chmod(tmp, mode)     # before any byte is written
            json.dump(data, f, indent=2, sort_keys=False, default=json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def is_disk_full(exc: BaseException) -> bool:
    """True for the errors a full disk (or a quota) raises."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def wav_header(*, rate: int, channels: int, n_frames: int) -> bytes:
    """44-byte RIFF/WAVE header for 16-bit PCM."""
    import struct

    data_bytes = n_frames * channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
            + b"data" + struct.pack("<I", data_bytes))


WAV_HEADER_BYTES = 44
