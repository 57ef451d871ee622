"""On-disk cache of per-frame face crops, so window building and training never re-detect.

Layout for a cache at ``PATH`` (conventionally ``SESSION/cache/face_crops_<trial>.npy``,
see :meth:`FaceCropCache.path_for`):

``PATH`` (``.npy``)
    ``(N, S, S, 3)`` uint8 RGB crops, one per input frame in input order; all zeros where no face
    was found. Opened memory-mapped on load.
``PATH`` with suffix ``.tsv``
    one row per frame: ``frame  t_us  camera_frame_index  found  method  eyes_method  box_x box_y
    box_w box_h  left_eye_x left_eye_y right_eye_x right_eye_y  roll_deg  yaw_deg pitch_deg
    landmark_conf`` (``-1``/``NaN`` when not found; head pose and landmark confidence ``NaN`` from
    the Haar pipeline); readable by pandas/R. Version 1 caches (no pose/confidence columns) still
    load.
``PATH`` with suffix ``.json``
    format name and version, frame count, found count, crop layout and the
    :class:`~emer_live.features.face.FaceConfig` used. Written last: a cache without it is
    incomplete and is not loaded.

Files are written under ``.partial`` names and renamed when complete, so an interrupted build
never leaves something that looks like a finished cache.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Iterable, Optional, Tuple, Union

import numpy as np

from ..errors import SessionFormatError

__all__ = ["FaceCropCache"]

FORMAT_NAME = "emer_live.face_crops"
# 2 (2026-12-03): yaw_deg, pitch_deg, landmark_conf appended (the landmark face pipeline)
FORMAT_VERSION = 2
_TSV_COLUMNS_V1 = ("frame", "t_us", "camera_frame_index", "found", "method", "eyes_method", "box_x", "box_y", "box_w",
                   "box_h", "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "roll_deg")
_TSV_COLUMNS = _TSV_COLUMNS_V1 + ("yaw_deg", "pitch_deg", "landmark_conf")


def _split_item(item) -> Tuple[int, int, np.ndarray]:
    """Accept ``(t_us, image)``, ``(t_us, camera_frame_index, image)`` (SessionReader.iter_frames)
    or a camera-stream record with fields ``t_us``, ``frame_index``, ``image``."""
    if isinstance(item, np.void) and item.dtype.names is not None:
        names = item.dtype.names
        if "t_us" not in names or "image" not in names:
            raise ValueError(f"frame record must have fields t_us and image, got {names}")
        k = int(item["frame_index"]) if "frame_index" in names else -1
        return int(item["t_us"]), k, item["image"]
    if isinstance(item, (tuple, list)):
        if len(item) == 2:
            return int(item[0]), -1, item[1]
        if len(item) == 3:
            return int(item[0]), int(item[1]), item[2]
    raise ValueError("frames must yield (t_us, image), (t_us, camera_frame_index, image) or camera records; "
                     f"got {type(item).__name__}")


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.2f}"


def _fmt3(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.3f}"


class _NpyWriter:
    """Streams ``(N, S, S, 3)`` uint8 rows into a ``.npy`` file whose length is known at the end."""

    def __init__(self, path: Path, row_shape: Tuple[int, ...]) -> None:
        self.path = path
        self.row_shape = row_shape
        self.n = 0
        self._f = open(path, "wb")
        self._hlen = len(self._header(0))
        self._f.write(b"\0" * self._hlen)

    def _header(self, n: int) -> bytes:
        b = io.BytesIO()
        np.lib.format.write_array_header_1_0(b, {"descr": "|u1", "fortran_order": False,
                                                 "shape": (n,) + tuple(self.row_shape)})
        return b.getvalue()

    def write(self, row: np.ndarray) -> None:
        self._f.write(np.ascontiguousarray(row, np.uint8).tobytes())
        self.n += 1

    def close(self) -> None:
        header = self._header(self.n)
        if len(header) == self._hlen:
            self._f.seek(0)
            self._f.write(header)
            self._f.close()
            return
        # header grew (very old numpy padding rules): rewrite the file behind a new header
        self._f.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(self.path, "rb") as src, open(tmp, "wb") as dst:
            src.seek(self._hlen)
            dst.write(header)
            while True:
                chunk = src.read(1 << 22)
                if not chunk:
                    break
                dst.write(chunk)
        os.replace(tmp, self.path)

    def abort(self) -> None:
        self._f.close()
        self.path.unlink(missing_ok=True)


class FaceCropCache:
    """Per-frame face crops plus found flags for one frame sequence (typically one trial).

    Attributes
    ----------
    crops : ndarray
        ``(N, S, S, 3)`` uint8 RGB (memory-mapped when loaded from disk); zeros where not found.
    t_us, camera_frame_index : ndarray
        ``(N,)`` int64 frame times and camera frame indices (-1 when the source had none).
    found : ndarray
        ``(N,)`` bool.
    boxes : ndarray
        ``(N, 4)`` int32 face boxes ``x, y, w, h`` (-1 when not found).
    eyes : ndarray
        ``(N, 2, 2)`` float32 eye centres (image-left eye first), NaN when not found.
    methods : ndarray
        ``(N,)`` str, "detected" / "tracked" / "none".
    config : FaceConfig
        The pipeline configuration the crops were made with.
    path : Path or None
        Where the crops live (None for an in-memory cache).
    """

    def __init__(self, *, crops: np.ndarray, t_us: np.ndarray, camera_frame_index: np.ndarray, found: np.ndarray,
                 boxes: np.ndarray, eyes: np.ndarray, methods: np.ndarray, config, path: Optional[Path] = None) -> None:
        n = len(t_us)
        for name, arr in (("crops", crops), ("camera_frame_index", camera_frame_index), ("found", found),
                          ("boxes", boxes), ("eyes", eyes), ("methods", methods)):
            if len(arr) != n:
                raise ValueError(f"FaceCropCache: {name} has {len(arr)} rows, t_us has {n}")
        self.crops = crops
        self.t_us = np.asarray(t_us, np.int64)
        self.camera_frame_index = np.asarray(camera_frame_index, np.int64)
        self.found = np.asarray(found, bool)
        self.boxes = np.asarray(boxes, np.int32)
        self.eyes = np.asarray(eyes, np.float32)
        self.methods = np.asarray(methods, dtype=str)
        self.config = config
        self.path = None if path is None else Path(path)

    # ------------------------------------------------------------------ paths
    @staticmethod
    def path_for(session_dir: Union[str, Path], trial: Union[int, str]) -> Path:
        """Conventional location: ``SESSION/cache/face_crops_<trial>.npy`` (``trial`` an int is
        written with two digits, like the trial folders)."""
        tag = f"{trial:02d}" if isinstance(trial, (int, np.integer)) else str(trial)
        if not tag or any(c in tag for c in "/\\\t\n"):
            raise ValueError(f"trial tag {trial!r} cannot be part of a file name")
        return Path(session_dir) / "cache" / f"face_crops_{tag}.npy"

    @staticmethod
    def _sidecars(path: Path) -> Tuple[Path, Path]:
        return path.with_suffix(".tsv"), path.with_suffix(".json")

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, frames: Iterable, *, path: Union[str, Path, None] = None, config=None,
              pipeline=None, overwrite: bool = False) -> "FaceCropCache":
        """Run the face pipeline over ``frames`` (in time order) and keep every frame's result.

        Parameters
        ----------
        frames : iterable
            Yields ``(t_us, image)``, ``(t_us, camera_frame_index, image)`` (what
            ``SessionReader.iter_frames`` yields) or camera-stream records; images are BGR uint8.
        path : str or Path, optional
            Write the cache there (``.npy`` plus ``.tsv`` and ``.json`` beside it) and return it
            memory-mapped; in memory when omitted.
        config : FaceConfig, optional
            Pipeline configuration (default ``FaceConfig()``); ignored when ``pipeline`` is given.
        pipeline : FacePipeline, optional
            Use this pipeline (it is :meth:`~FacePipeline.reset` first).
        overwrite : bool
            Replace an existing cache at ``path`` (otherwise FileExistsError).

        Returns
        -------
        FaceCropCache
        """
        from .face import FaceConfig, FacePipeline

        if pipeline is None:
            pipeline = FacePipeline(config if config is not None else FaceConfig())
        pipeline.reset()
        cfg = pipeline.config
        size = cfg.output_size
        writer = None
        final = None
        if path is not None:
            final = Path(path)
            if final.suffix != ".npy":
                raise ValueError(f"face crop cache path must end in .npy, got {final}")
            tsv, meta = cls._sidecars(final)
            if not overwrite and any(p.exists() for p in (final, tsv, meta)):
                raise FileExistsError(f"{final}: a face crop cache exists already (pass overwrite=True to replace it)")
            final.parent.mkdir(parents=True, exist_ok=True)
            writer = _NpyWriter(final.with_name(final.name + ".partial"), (size, size, 3))
        crops_mem = []
        rows = []
        t_list, k_list, found, boxes, eyes, methods = [], [], [], [], [], []
        blank = np.zeros((size, size, 3), np.uint8)
        last_t = None
        try:
            for i, item in enumerate(frames):
                t, k, img = _split_item(item)
                if last_t is not None and t < last_t:
                    raise ValueError(f"frames must come in time order: frame {i} at t_us={t} after {last_t}")
                last_t = t
                res = pipeline.process(np.asarray(img), t)
                crop = res.crop_rgb if res.found else blank
                if writer is not None:
                    writer.write(crop)
                else:
                    crops_mem.append(crop)
                t_list.append(t)
                k_list.append(k)
                found.append(res.found)
                boxes.append(res.box if res.found else (-1, -1, -1, -1))
                eyes.append(res.eyes if res.found else ((np.nan, np.nan), (np.nan, np.nan)))
                methods.append(res.method)
                if res.found:
                    (lx, ly), (rx, ry) = res.eyes
                    rows.append([i, t, k, 1, res.method, res.eyes_method, *res.box, _fmt(lx), _fmt(ly), _fmt(rx),
                                 _fmt(ry), _fmt(res.roll_deg), _fmt(res.yaw_deg), _fmt(res.pitch_deg),
                                 _fmt3(res.landmark_conf)])
                else:
                    rows.append([i, t, k, 0, "none", "none", -1, -1, -1, -1] + ["nan"] * 8)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        n = len(t_list)
        arrays = dict(t_us=np.array(t_list, np.int64), camera_frame_index=np.array(k_list, np.int64),
                      found=np.array(found, bool), boxes=np.array(boxes, np.int32).reshape(n, 4),
                      eyes=np.array(eyes, np.float32).reshape(n, 2, 2), methods=np.array(methods, dtype=str))
        if writer is None:
            crops = np.stack(crops_mem) if crops_mem else np.zeros((0, size, size, 3), np.uint8)
            return cls(crops=crops, config=cfg, **arrays)
        writer.close()
        tsv, meta = cls._sidecars(final)
        tsv_part = tsv.with_name(tsv.name + ".partial")
        with open(tsv_part, "w", encoding="utf-8", newline="\n") as f:
            f.write("\t".join(_TSV_COLUMNS) + "\n")
            for r in rows:
                f.write("\t".join(str(v) for v in r) + "\n")
        os.replace(writer.path, final)
        os.replace(tsv_part, tsv)
        info = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "n_frames": n, "n_found": int(arrays["found"].sum()),
                "crops": {"file": final.name, "shape": [n, size, size, 3], "dtype": "uint8", "layout": "NHWC",
                          "color": "RGB", "missing": "zeros, found=0"},
                "index": tsv.name, "face_config": cfg.to_dict()}
        meta_part = meta.with_name(meta.name + ".partial")
        meta_part.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(meta_part, meta)
        return cls.load(final)

    # ------------------------------------------------------------------ load
    @classmethod
    def load(cls, path: Union[str, Path]) -> "FaceCropCache":
        """Open a cache written by :meth:`build` (crops memory-mapped, read-only).

        Raises
        ------
        FileNotFoundError
            No complete cache at ``path``.
        SessionFormatError
            The files are inconsistent or of an unknown format version.
        """
        from .face import FaceConfig

        path = Path(path)
        tsv, meta = cls._sidecars(path)
        for p in (path, tsv, meta):
            if not p.is_file():
                raise FileNotFoundError(f"face crop cache {path}: {p.name} is missing (incomplete or not built); "
                                        f"rebuild it with FaceCropCache.build")
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SessionFormatError(f"{meta}: not readable JSON ({exc}); delete the cache files and rebuild") from None
        if info.get("format") != FORMAT_NAME or info.get("version") not in (1, FORMAT_VERSION):
            raise SessionFormatError(f"{meta}: format {info.get('format')!r} v{info.get('version')!r} is not "
                                     f"{FORMAT_NAME} v1..v{FORMAT_VERSION}; rebuild the cache")
        columns = _TSV_COLUMNS_V1 if info["version"] == 1 else _TSV_COLUMNS
        try:
            crops = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise SessionFormatError(f"{path}: not a readable .npy file ({exc}); delete the cache and "
                                     f"rebuild") from None
        n = int(info["n_frames"])
        size = int(info["crops"]["shape"][1])
        if crops.shape != (n, size, size, 3) or crops.dtype != np.uint8:
            raise SessionFormatError(f"{path}: crops are {crops.shape} {crops.dtype}, {meta.name} says "
                                     f"({n}, {size}, {size}, 3) uint8; delete the cache and rebuild")
        t, k, found, boxes, eyes, methods = [], [], [], [], [], []
        with open(tsv, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
            if tuple(header) != columns:
                raise SessionFormatError(f"{tsv}: unexpected columns {header}")
            for line_no, line in enumerate(f, start=2):
                v = line.rstrip("\n").split("\t")
                if len(v) != len(columns):
                    raise SessionFormatError(f"{tsv}:{line_no}: expected {len(columns)} columns, got {len(v)}")
                t.append(int(v[1]))
                k.append(int(v[2]))
                found.append(v[3] == "1")
                methods.append(v[4])
                boxes.append([int(x) for x in v[6:10]])
                eyes.append([float(x) for x in v[10:14]])
        if len(t) != n:
            raise SessionFormatError(f"{tsv}: {len(t)} rows, {meta.name} says {n}; delete the cache and rebuild")
        cfg = FaceConfig.from_dict(info["face_config"])
        return cls(crops=crops, t_us=np.array(t, np.int64), camera_frame_index=np.array(k, np.int64),
                   found=np.array(found, bool), boxes=np.array(boxes, np.int32).reshape(n, 4),
                   eyes=np.array(eyes, np.float32).reshape(n, 2, 2), methods=np.array(methods, dtype=str),
                   config=cfg, path=path)

    # ------------------------------------------------------------------ use
    def __len__(self) -> int:
        return len(self.t_us)

    @property
    def found_fraction(self) -> float:
        """Fraction of frames with a face (NaN for an empty cache)."""
        return float(self.found.mean()) if len(self.found) else float("nan")

    def nearest(self, t_us: int) -> int:
        """Index of the frame closest in time to ``t_us`` (-1 for an empty cache)."""
        if len(self.t_us) == 0:
            return -1
        i = int(np.searchsorted(self.t_us, t_us))
        if i == 0:
            return 0
        if i == len(self.t_us):
            return i - 1
        return i if self.t_us[i] - t_us < t_us - self.t_us[i - 1] else i - 1

    def window(self, t0_us: int, t1_us: int, *, n: int = 8) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` crops evenly spread over ``[t0_us, t1_us)``: for each bin centre
        ``t0 + (j + 0.5) (t1 - t0) / n`` the frame nearest to it inside the window.

        Returns
        -------
        crops : ndarray
            ``(n, S, S, 3)`` uint8 RGB (zeros where not found or no frame in the window).
        found : ndarray
            ``(n,)`` bool.
        index : ndarray
            ``(n,)`` int64 frame indices into this cache (-1 when the window holds no frame).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if t1_us <= t0_us:
            raise ValueError(f"empty window [{t0_us}, {t1_us})")
        size = self.crops.shape[1] if self.crops.ndim == 4 else self.config.output_size
        crops = np.zeros((n, size, size, 3), np.uint8)
        found = np.zeros(n, bool)
        index = np.full(n, -1, np.int64)
        lo = int(np.searchsorted(self.t_us, t0_us, side="left"))
        hi = int(np.searchsorted(self.t_us, t1_us, side="left"))
        if hi <= lo:
            return crops, found, index
        t = self.t_us[lo:hi]
        centres = t0_us + (np.arange(n) + 0.5) * ((t1_us - t0_us) / n)
        j = np.clip(np.searchsorted(t, centres), 1, len(t) - 1) if len(t) > 1 else np.zeros(n, np.int64)
        if len(t) > 1:
            left_closer = (centres - t[j - 1]) <= (t[j] - centres)
            j = np.where(left_closer, j - 1, j)
        index[:] = lo + j
        found[:] = self.found[index]
        crops[found] = self.crops[index[found]]
        return crops, found, index
