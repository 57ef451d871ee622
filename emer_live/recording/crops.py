"""Face crops instead of face video: the privacy mode's segment files (docs/recording-format.md).

With ``--face-video crops`` a session keeps, per camera frame, the aligned face crop the model
takes (``S x S`` RGB, S = 112) plus what the face pipeline measured (box, eyes, head pose,
landmark confidence; the 468 landmarks with the landmarks pipeline) - never the camera frame.
With ``--face-video none`` the same per-frame table and landmarks are kept, without any pixels.

Per segment folder (``trials/NN_<stimulus>/``, ``between/KK_<label>/``):

``face_crops.rgb``
    concatenated ``S x S x 3`` uint8 RGB crops, one per row of the index, no header (frame ``i``
    is at byte ``i * S * S * 3``; ``numpy.fromfile(p, np.uint8).reshape(-1, S, S, 3)``); zeros
    where no face was found. Absent with ``--face-video none``.
``face_landmarks.f32``
    landmarks pipeline only: ``468 x 3`` little-endian float32 per row (frame pixels), NaN where
    no face was found.
``face_crops.tsv``
    one row per camera frame: :data:`CROP_COLUMNS`.

Every file is append-only: a crash leaves at most a torn last row or crop, which the reader
leaves out (rows whose crop or landmarks are not complete are not read).

The recording layer knows only the record layout (:func:`face_crop_dtype`); the crops are made by
the face pipeline (``emer_live.features.face_crops``), which sits above it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import SessionFormatError
from .perms import PRIVATE, Modes, make_dirs, open_new

__all__ = ["FACE_VIDEO_MODES", "FACE_VIDEO_HELP", "CROPS_FILE", "LANDMARKS_FILE", "CROPS_TSV", "CROP_COLUMNS", "N_LANDMARKS",
           "METHODS", "face_crop_dtype", "CropSegmentWriter", "read_crop_index", "read_crops",
           "read_landmarks", "check_face_video"]

#: What a recording keeps of the camera: ``full`` the face video (face.mjpeg), ``crops`` the
#: model's aligned face crops and the per-frame face measurements, ``none`` the measurements only.
FACE_VIDEO_MODES = ("full", "crops", "none")

FACE_VIDEO_HELP = ("what the recording keeps of the camera: full = the face video (default); crops = only the "
                   "aligned face crops the model uses, with face landmarks and head pose per frame (no raw "
                   "face video is ever written; replay, re-analysis and training still work); none = only the "
                   "per-frame face measurements, no face images (docs/data-rights.md)")

CROPS_FILE = "face_crops.rgb"
LANDMARKS_FILE = "face_landmarks.f32"
CROPS_TSV = "face_crops.tsv"
CROP_COLUMNS = ("frame", "t_us", "camera_frame_index", "found", "method", "box_x", "box_y", "box_w", "box_h",
                "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "roll_deg", "yaw_deg", "pitch_deg",
                "landmark_conf")
N_LANDMARKS = 468
#: face pipeline ``method`` values by code (the stream record stores the code)
METHODS = ("none", "detected", "tracked")


def check_face_video(mode) -> str:
    """The mode, or a ValueError naming the choices."""
    if mode not in FACE_VIDEO_MODES:
        raise ValueError(f"--face-video {mode!r}: use one of {', '.join(FACE_VIDEO_MODES)}")
    return mode


def face_crop_dtype(size: int, *, landmarks: bool) -> np.dtype:
    """Ring record of the face crop stream: one per camera frame (found or not)."""
    fields = [("t_us", np.int64), ("frame_index", np.int64), ("found", np.uint8), ("method", np.uint8),
              ("crop", np.uint8, (size, size, 3)), ("box", np.int32, (4,)), ("eyes", np.float32, (2, 2)),
              ("pose", np.float32, (3,)), ("landmark_conf", np.float32)]     # pose: roll, yaw, pitch (deg)
    if landmarks:
        fields.append(("landmarks", np.float32, (N_LANDMARKS, 3)))
    return np.dtype(fields)


def _num(v: float, digits: int = 2) -> str:
    return "NaN" if not np.isfinite(v) else f"{float(v):.{digits}f}"


class CropSegmentWriter:
    """Appends face crop records to one segment folder (the recorder's segmented sink uses it)."""

    def __init__(self, folder: Path, *, size: int, pixels: bool, landmarks: bool, modes: Modes = PRIVATE) -> None:
        make_dirs(folder, modes)
        self.size = int(size)
        self.data = open_new(folder / CROPS_FILE, "xb", modes) if pixels else None
        self.lmk = open_new(folder / LANDMARKS_FILE, "xb", modes) if landmarks else None
        self.index = open_new(folder / CROPS_TSV, "x", modes, encoding="utf-8", newline="\n")
        self.index.write("\t".join(CROP_COLUMNS) + "\n")
        self.n = 0

    def write(self, r) -> None:
        found = bool(r["found"])
        if self.data is not None:
            self.data.write(np.ascontiguousarray(r["crop"], np.uint8).tobytes())
        if self.lmk is not None:
            self.lmk.write(np.ascontiguousarray(r["landmarks"], "<f4").tobytes())
        b, e, p = r["box"], r["eyes"], r["pose"]
        if found:
            cells = [self.n, int(r["t_us"]), int(r["frame_index"]), 1, METHODS[int(r["method"])], *(int(v) for v in b),
                     *(_num(v) for v in e.ravel()), _num(p[0]), _num(p[1]), _num(p[2]),
                     _num(r["landmark_conf"], 3)]
        else:
            cells = [self.n, int(r["t_us"]), int(r["frame_index"]), 0, "none", -1, -1, -1, -1] + ["NaN"] * 8
        # data before its index row, so a row never points past the written bytes
        self.index.write("\t".join(str(c) for c in cells) + "\n")
        self.n += 1

    def _files(self):
        return [f for f in (self.data, self.lmk, self.index) if f is not None]

    def flush(self) -> None:
        for f in self._files():
            f.flush()

    def fsync(self) -> None:
        for f in self._files():
            os.fsync(f.fileno())

    def close(self) -> None:
        first = None
        try:
            self.flush()
        finally:
            for f in self._files():
                try:
                    f.close()
                except OSError as exc:
                    first = first or exc
        if first is not None:
            raise first


_INDEX_DT = np.dtype([("frame", np.int64), ("t_us", np.int64), ("camera_frame_index", np.int64), ("found", bool),
                      ("method", "U8"), ("box", np.int32, (4,)), ("eyes", np.float32, (2, 2)),
                      ("pose", np.float32, (3,)), ("landmark_conf", np.float32)])


def read_crop_index(folder: Path, *, size: Optional[int] = None) -> np.ndarray:
    """The complete rows of a segment's face_crops.tsv (a torn last line, or rows whose crop
    bytes are missing after a crash, are left out). ``size``: the crop side, to check the
    crops file's length (None: not checked)."""
    p = Path(folder) / CROPS_TSV
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return np.zeros(0, _INDEX_DT)
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionFormatError(f"{p}: not readable ({exc})") from None
    if not text:
        return np.zeros(0, _INDEX_DT)       # created, header not yet written (a crash)
    lines = text.split("\n")
    if lines[0].split("\t") != list(CROP_COLUMNS):
        raise SessionFormatError(f"{p}: unexpected header {lines[0][:120]!r}; expected {' '.join(CROP_COLUMNS)}")
    body = lines[1:-1]          # the last piece is '' after a complete row, else a torn row
    rows = []
    for i, line in enumerate(body, start=2):
        v = line.split("\t")
        if len(v) != len(CROP_COLUMNS):
            raise SessionFormatError(f"{p}:{i}: expected {len(CROP_COLUMNS)} columns, got {len(v)}")
        try:
            rows.append((int(v[0]), int(v[1]), int(v[2]), v[3] == "1", v[4], [int(x) for x in v[5:9]],
                         [[float(v[9]), float(v[10])], [float(v[11]), float(v[12])]],
                         [float(v[13]), float(v[14]), float(v[15])], float(v[16])))
        except ValueError as exc:
            raise SessionFormatError(f"{p}:{i}: not a face crop row ({exc})") from None
    idx = np.array(rows, _INDEX_DT) if rows else np.zeros(0, _INDEX_DT)
    n = len(idx)
    if size is not None and (Path(folder) / CROPS_FILE).is_file():
        n = min(n, (Path(folder) / CROPS_FILE).stat().st_size // (int(size) * int(size) * 3))
    if (Path(folder) / LANDMARKS_FILE).is_file():
        n = min(n, (Path(folder) / LANDMARKS_FILE).stat().st_size // (N_LANDMARKS * 3 * 4))
    return idx[:n]


def read_crops(folder: Path, size: int, n: Optional[int] = None) -> Optional[np.ndarray]:
    """The segment's crops memory-mapped read-only, ``(N, S, S, 3)`` uint8 RGB; None when the
    segment has no crop pixels (``--face-video none``)."""
    p = Path(folder) / CROPS_FILE
    if not p.is_file():
        return None
    frame = int(size) * int(size) * 3
    total = p.stat().st_size // frame
    n = total if n is None else min(int(n), total)
    if n == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.memmap(p, dtype=np.uint8, mode="r", shape=(n, size, size, 3))


def read_landmarks(folder: Path, n: Optional[int] = None) -> Optional[np.ndarray]:
    """``(N, 468, 3)`` float32 landmarks of a segment (memory-mapped, read-only), or None when none
    were kept."""
    p = Path(folder) / LANDMARKS_FILE
    if not p.is_file():
        return None
    rows = p.stat().st_size // (N_LANDMARKS * 3 * 4)
    rows = rows if n is None else min(rows, int(n))
    if rows == 0:
        return np.zeros((0, N_LANDMARKS, 3), "<f4")
    return np.memmap(p, dtype="<f4", mode="r", shape=(rows, N_LANDMARKS, 3))   # ~5.6 kB a frame: not loaded
