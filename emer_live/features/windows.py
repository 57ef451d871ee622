"""Build EMERT's three inputs for a time window - one code path for live streams and recordings.

A window ``[t_end - W, t_end)`` gives ``face (8,3,112,112)``, ``eye (32,39)`` and
``fixation (32,2)`` float32 arrays plus masks and quality figures (DESIGN sec. 7-9, 11).

Sources hide where data comes from: :class:`StreamSource` reads the live ring buffers,
:class:`RecordingSource` a session folder. Both hand the same gaze records (float32 values
round-trip exactly through gaze.tsv) and the same frames to the same :class:`FaceSampler`:
face crops are taken from the frames at fixed sample times (the latest frame at or before each
of the 8 sample points), processed in time order by one stateful face pipeline and cached by
frame time, so consecutive windows reuse crops and a window built live equals the one built
from the recording. When the live source is also being recorded, frames pass through the same
JPEG encoding the recorder uses (``jpeg_quality``), so the face pipeline sees the same pixels.
"""

from __future__ import annotations

import abc
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from .eye import EyeConfig, analyse, eye_window
from .fixation import fixation_sequence

__all__ = ["Window", "WindowSpec", "WindowSource", "StreamSource", "RecordingSource", "FaceSampler",
           "WindowBuilder", "window_ends", "N_FACE", "N_STEPS"]

N_FACE = 8
N_STEPS = 32
FACE_SIZE = 112


@dataclass(frozen=True)
class WindowSpec:
    """Window length, hop and sampling (stored with features and checkpoints)."""

    window_s: float = 8.0
    hop_s: float = 1.0
    n_face: int = N_FACE
    steps: int = N_STEPS

    def __post_init__(self) -> None:
        if not 0.5 <= self.window_s <= 600:
            raise ConfigError(f"--window {self.window_s}: must be 0.5..600 seconds")
        if not 0.05 <= self.hop_s <= 600:
            raise ConfigError(f"--hop {self.hop_s}: must be 0.05..600 seconds")
        if self.n_face < 1 or self.steps < 2:
            raise ConfigError("n_face must be >= 1 and steps >= 2")

    @property
    def window_us(self) -> int:
        return int(round(self.window_s * 1e6))

    @property
    def hop_us(self) -> int:
        return int(round(self.hop_s * 1e6))


@dataclass
class Window:
    t_start_us: int
    t_end_us: int
    face: np.ndarray            # (8,3,112,112) float32 RGB in [0, 1]; zeros where no face
    face_mask: np.ndarray       # (8,) bool: a face was found in that frame
    eye: np.ndarray             # (32,39) float32, raw (not yet normalised with checkpoint stats)
    eye_mask: np.ndarray        # (32,) bool
    fixation: np.ndarray        # (32,2) float32, stimulus coordinates 0..1
    fixation_mask: np.ndarray   # (32,) bool
    quality: Dict[str, float] = field(default_factory=dict)
    trial: int = -1
    timing_ms: Dict[str, float] = field(default_factory=dict)   # assemble (reading data) / features
    # grid sample times of the face frames (sliding windows on the shared sampler): frames with
    # the same time are the same crop in every window, so per-frame model work can be reused
    face_times: Optional[Tuple[int, ...]] = None

    @property
    def modalities(self) -> Tuple[bool, bool, bool]:
        """(face, eye, fixation) present in this window."""
        return bool(self.face_mask.any()), bool(self.eye_mask.any()), bool(self.fixation_mask.any())


def window_ends(t_first_us: int, t_last_us: int, spec: WindowSpec) -> List[int]:
    """Window end times: first one full window after ``t_first_us``, then every hop while the
    window fits inside the data (the end may equal the last sample's time plus a sample)."""
    ends = []
    t = t_first_us + spec.window_us
    while t <= t_last_us + 1:
        ends.append(t)
        t += spec.hop_us
    return ends


class WindowSource(abc.ABC):
    """Where a window's data comes from."""

    @abc.abstractmethod
    def gaze(self, t0_us: int, t1_us: int) -> Optional[np.ndarray]:
        """Gaze records with ``t0_us <= t < t1_us`` (None when there is no tracker)."""

    @abc.abstractmethod
    def frame_times(self, t0_us: int, t1_us: int) -> np.ndarray:
        """Times of the frames with ``t0_us <= t < t1_us``."""

    @abc.abstractmethod
    def frame_at(self, t_us: int) -> Optional[np.ndarray]:
        """The BGR frame recorded at exactly ``t_us`` (None if no longer available)."""

    def delivered_through(self) -> Dict[str, Optional[int]]:
        """Per stream still being delivered: the time of its newest record (None before the
        first). Streams keep their records in time order, so every record older than this is
        already here. The live engine waits on these watermarks: ``gaze``, and every other entry
        as the face stream (``camera`` frames, or ``face_crops`` made from them in privacy mode),
        so a live source must name each stream it reads. A recording has nothing in flight:
        ``{}``."""
        return {}

    stimulus_rect: Optional[Sequence[float]] = None
    #: privacy mode: the source holds the face pipeline's results (crops kept by the recording,
    #: or made on the recording path) instead of frames; :meth:`face_result_at` gives them
    precomputed_crops: bool = False

    def face_result_at(self, t_us: int):
        """The kept face result (a FaceResult) of the frame at exactly ``t_us`` (crop sources)."""
        return None


class StreamSource(WindowSource):
    """Live ring buffers (gaze + camera streams)."""

    def __init__(self, gaze_stream=None, camera_stream=None, *, jpeg_quality: Optional[int] = None,
                 stimulus_rect=None) -> None:
        self.gaze_stream = gaze_stream
        self.camera_stream = camera_stream
        self.jpeg_quality = jpeg_quality
        self.stimulus_rect = stimulus_rect

    def gaze(self, t0_us, t1_us):
        return None if self.gaze_stream is None else self.gaze_stream.window(t0_us, t1_us)

    def frame_times(self, t0_us, t1_us):
        if self.camera_stream is None:
            return np.zeros(0, np.int64)
        return self.camera_stream.window(t0_us, t1_us, fields=["t_us"])["t_us"]

    def delivered_through(self):
        out = {}
        for name, stream in (("gaze", self.gaze_stream), ("camera", self.camera_stream)):
            if stream is not None:
                out[name] = stream.last_t_us
        return out

    def frame_at(self, t_us):
        if self.camera_stream is None:
            return None
        rec = self.camera_stream.window(t_us, t_us + 1, fields=["image"])
        if not len(rec):
            return None
        img = rec["image"][0]
        if self.jpeg_quality is not None:
            import cv2

            ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(self.jpeg_quality)])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img


class RecordingSource(WindowSource):
    """A recorded session folder (via :class:`~emer_live.recording.SessionReader`)."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self._gaze = reader.gaze() if reader.has_gaze() else None
        # privacy mode (face_video crops): the kept crops stand in for the frames; "none" keeps
        # no pixels, so such a session has no face modality offline
        self.precomputed_crops = reader.face_video != "full"
        if self.precomputed_crops:
            index = [(reader.crop_index(s), s) for s in reader.segments() if s.has_crops]
            self._crops = {s.relpath: reader.read_crops(s) for _, s in index}
            index = [(i, s) for i, s in index if self._crops[s.relpath] is not None]
        else:
            index = [(reader.frame_index(s), s) for s in reader.segments() if s.has_video]
        self._index = {s.relpath: i for i, s in index}
        self._frame_t = np.concatenate([i["t_us"] for i, _ in index]) if index else np.zeros(0, np.int64)
        self._frame_loc = [(s, k) for i, s in index for k in range(len(i))]
        self.stimulus_rect = reader.meta.get("stimulus_rect")

    @property
    def t_range(self) -> Tuple[int, int]:
        ts = []
        if self._gaze is not None and len(self._gaze):
            ts += [int(self._gaze["t_us"][0]), int(self._gaze["t_us"][-1])]
        if len(self._frame_t):
            ts += [int(self._frame_t[0]), int(self._frame_t[-1])]
        if not ts:
            raise ConfigError(f"{self.reader.path}: the session has neither gaze nor video")
        return min(ts[0::2]), max(ts[1::2])

    def gaze(self, t0_us, t1_us):
        if self._gaze is None:
            return None
        t = self._gaze["t_us"]
        return self._gaze[np.searchsorted(t, t0_us):np.searchsorted(t, t1_us)]

    def frame_times(self, t0_us, t1_us):
        t = self._frame_t
        return t[np.searchsorted(t, t0_us):np.searchsorted(t, t1_us)]

    def frame_at(self, t_us):
        if self.precomputed_crops:
            return None
        i = int(np.searchsorted(self._frame_t, t_us))
        if i >= len(self._frame_t) or self._frame_t[i] != t_us:
            return None
        seg, k = self._frame_loc[i]
        return self.reader.read_frame(seg, k)

    def face_result_at(self, t_us):
        if not self.precomputed_crops:
            return None
        i = int(np.searchsorted(self._frame_t, t_us))
        if i >= len(self._frame_t) or self._frame_t[i] != t_us:
            return None
        seg, k = self._frame_loc[i]
        from .face_crops import result_from_record

        r = self._index[seg.relpath][k]
        return result_from_record(int(r["t_us"]), bool(r["found"]), self._crops[seg.relpath][k], box=r["box"],
                                  eyes=r["eyes"], method=str(r["method"]), pose=r["pose"],
                                  landmark_conf=float(r["landmark_conf"]))


class FaceSampler:
    """Face crops at sample times, computed once per sample time, in time order, by one pipeline.

    A crop for sample time ``ts`` comes from the latest frame at or before ``ts`` (within a
    look-back); results are cached by ``ts``. Callers ask for times in increasing order (the
    window grid guarantees it), so the stateful face pipeline (tracking between detections)
    sees the same frame sequence live and offline.
    """

    def __init__(self, pipeline=None, *, max_cache: int = 4096) -> None:
        if pipeline is None:
            from .face import FacePipeline

            pipeline = FacePipeline()
        self.pipeline = pipeline
        self._cache: "OrderedDict[int, Optional[np.ndarray]]" = OrderedDict()
        self._max = max_cache
        self.frames_processed = 0
        self.last_result = None      # the pipeline's FaceResult for the newest frame it processed
        self.read_s = 0.0            # time spent fetching/decoding frames (the "assemble" stage)
        # a fast replay computes crops ahead in a second thread (live.fast_replay); the pipeline
        # is stateful, so one crop is made at a time
        self._lock = threading.RLock()

    def has(self, ts: int) -> bool:
        return int(ts) in self._cache

    def crops(self, source: WindowSource, sample_times: Sequence[int], *, lookback_us: int
              ) -> Tuple[np.ndarray, np.ndarray, int]:
        """Return ``(crops (n,112,112,3) uint8, found (n,) bool, n_frames_in_range)``."""
        n = len(sample_times)
        out = np.zeros((n, FACE_SIZE, FACE_SIZE, 3), np.uint8)
        found = np.zeros(n, bool)
        if n == 0:
            return out, found, 0
        t0 = time.perf_counter()
        times = source.frame_times(int(min(sample_times)) - lookback_us, int(max(sample_times)) + 1)
        self.read_s += time.perf_counter() - t0
        for i, ts in enumerate(sample_times):
            crop = self.crop_at(source, int(ts), lookback_us=lookback_us, times=times)
            if crop is not None:
                out[i] = crop
                found[i] = True
        return out, found, int(len(times))

    def crop_at(self, source: WindowSource, ts: int, *, lookback_us: int, times=None,
                count_read: bool = True) -> Optional[np.ndarray]:
        """The crop for sample time ``ts`` (computed now if not cached). ``count_read=False``: a
        helper thread working ahead; its reading is no window's "assemble" time."""
        with self._lock:
            return self._crop_at(source, ts, lookback_us, times, count_read)

    def _crop_at(self, source: WindowSource, ts: int, lookback_us: int, times, count_read: bool) -> Optional[np.ndarray]:
        if ts in self._cache:
            return self._cache[ts]
        t0 = time.perf_counter()
        if times is None:
            times = source.frame_times(ts - lookback_us, ts + 1)
        j = int(np.searchsorted(times, ts, side="right")) - 1
        frame = None
        if j >= 0 and times[j] >= ts - lookback_us and not source.precomputed_crops:
            frame = source.frame_at(int(times[j]))
        if count_read:
            self.read_s += time.perf_counter() - t0
        crop = None
        res = None
        if j >= 0 and times[j] >= ts - lookback_us and source.precomputed_crops:
            # privacy mode: the crop was made on the recording path (live) or kept (replay)
            res = source.face_result_at(int(times[j]))
        elif frame is not None:
            res = self.pipeline.process(frame, int(times[j]))
        if res is not None:
            self.frames_processed += 1
            self.last_result = res     # for displays (face box); replaced, never mutated
            crop = res.crop_rgb if res.found else None
        self._cache[ts] = crop
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return crop


class WindowBuilder:
    """Builds :class:`Window` objects from a :class:`WindowSource`.

    Parameters
    ----------
    source : WindowSource
    spec : WindowSpec
    eye_config : EyeConfig
    face_sampler : FaceSampler, optional
        Shared sampler (and face pipeline); a new one by default. Pass ``use_face=False`` to skip
        the face modality entirely (eye-only analyses).
    """

    def __init__(self, source: WindowSource, *, spec: WindowSpec = WindowSpec(),
                 eye_config: Optional[EyeConfig] = None, face_sampler: Optional[FaceSampler] = None,
                 use_face: bool = True, grid_origin_us: Optional[int] = None) -> None:
        self.source = source
        self.spec = spec
        self.eye_config = eye_config or EyeConfig()
        self.use_face = use_face
        self.faces = face_sampler if face_sampler is not None or not use_face else FaceSampler()
        self.grid_origin_us = grid_origin_us
        self.face_config = getattr(getattr(self.faces, "pipeline", None), "config", None)

    def face_lookback_us(self, window_us: Optional[int] = None) -> int:
        """How far back from a sample time a frame may be (one face bin, at least 200 ms)."""
        w = self.spec.window_us if window_us is None else window_us
        return max(int(w / self.spec.n_face), 200_000)

    def prefetch_face(self, ts: int) -> Optional[np.ndarray]:
        """Compute the crop of grid time ``ts`` now (live: while its frame is still in the ring);
        returns it (None: no face, or no face modality)."""
        if self.use_face:
            return self.faces.crop_at(self.source, int(ts), lookback_us=self.face_lookback_us())
        return None

    @property
    def face_step_us(self) -> int:
        return self.spec.window_us // self.spec.n_face

    def grid_times(self, t0_us: int, t1_us: int) -> List[int]:
        """Face sample times on the grid ``origin + (j + 0.5) * W/n`` inside ``[t0, t1)``."""
        step = self.face_step_us
        half = step // 2
        j0 = -((-(t0_us - self.grid_origin_us - half)) // step)   # ceil division
        out = []
        t = self.grid_origin_us + half + j0 * step
        while t < t1_us:
            out.append(int(t))
            t += step
        return out

    def face_sample_times(self, t0_us: int, t1_us: int, *, whole_trial: bool = False) -> List[int]:
        """Where the window's face frames are taken: the sample grid for sliding windows (so
        consecutive windows share crops), or the centres of ``n_face`` equal bins of
        ``[t0, t1)`` for a whole-trial window or when no grid origin is set."""
        n = self.spec.n_face
        if whole_trial or self.grid_origin_us is None:
            return [int(t0_us + (i + 0.5) * (t1_us - t0_us) / n) for i in range(n)]
        return self.grid_times(t0_us, t1_us)[:n]

    def trial_sampler(self) -> Optional[FaceSampler]:
        """A fresh sampler (own pipeline state) for one whole-trial window: live code fills it
        while the clip plays (:meth:`FaceSampler.crop_at` at :meth:`face_sample_times`), offline
        code lets :meth:`build` make one - either way the same frames in the same order."""
        if not self.use_face:
            return None
        return FaceSampler(_fresh_pipeline(self.faces.pipeline))

    def build(self, t_end_us: int, *, t_start_us: Optional[int] = None, trial: int = -1,
              face_sampler: Optional[FaceSampler] = None) -> Window:
        """The window ``[t_start_us, t_end_us)``; ``t_start_us`` defaults to ``t_end - W``
        (pass a trial's onset for the whole-trial mode)."""
        t1 = int(t_end_us)
        t0 = int(t1 - self.spec.window_us if t_start_us is None else t_start_us)
        if t1 <= t0:
            raise ConfigError(f"window end {t1} is not after its start {t0}")
        cfg = self.eye_config
        ctx = int(cfg.context_ms * 1000)
        start = time.perf_counter()
        gaze = self.source.gaze(t0 - ctx, t1)
        gaze_s = time.perf_counter() - start
        steps = self.spec.steps
        if gaze is not None and len(gaze):
            an = analyse(gaze, t0_us=t0, t1_us=t1, config=cfg)
            ew = eye_window(None, t0_us=t0, t1_us=t1, steps=steps, config=cfg, analysis=an)
            fix, fix_mask = fixation_sequence(None, t0_us=t0, t1_us=t1, steps=steps, config=cfg, analysis=an,
                                              stimulus_rect=self.source.stimulus_rect)
            eye, eye_mask = ew.features.astype(np.float32), ew.step_valid.astype(bool)
            valid_gaze, n_gaze, blinks = float(ew.valid_fraction), int(ew.n_samples), int(ew.blinks)
        else:
            eye = np.zeros((steps, 39), np.float32)
            eye_mask = np.zeros(steps, bool)
            fix = np.full((steps, 2), 0.5, np.float32)
            fix_mask = np.zeros(steps, bool)
            valid_gaze, n_gaze, blinks = 0.0, 0, 0
        n_face = self.spec.n_face
        face = np.zeros((n_face, 3, FACE_SIZE, FACE_SIZE), np.float32)
        face_mask = np.zeros(n_face, bool)
        n_frames = 0
        read_s = 0.0             # reading frames during this call only (a trial's prefetched crops are not)
        face_times = None
        if self.use_face:
            whole = t_start_us is not None
            times = self.face_sample_times(t0, t1, whole_trial=whole)
            # a whole-trial window gets its own pipeline state so it does not depend on history
            sampler = face_sampler if face_sampler is not None else (self.trial_sampler() if whole else self.faces)
            lookback = self.face_lookback_us(t1 - t0)
            read0 = sampler.read_s
            crops, found, n_frames = sampler.crops(self.source, times, lookback_us=lookback)
            read_s = sampler.read_s - read0
            face_mask[:len(found)] = found
            if sampler is self.faces and not whole and len(times) == n_face:
                face_times = tuple(int(t) for t in times)
            from .face import to_tensor_layout

            # the model's face contract: RGB in [0, 1], (n, 3, H, W); EMERT normalises it itself
            face[:len(found)] = to_tensor_layout(crops, normalization="none")
            face[~face_mask] = 0.0
        quality = {"valid_gaze_fraction": valid_gaze, "face_found_fraction": float(face_mask.mean()),
                   "n_gaze": n_gaze, "n_frames": n_frames, "blinks": blinks,
                   "fixation_fraction": float(fix_mask.mean())}
        total = time.perf_counter() - start
        # both measured inside this call, so features (the rest of it) is never negative
        assemble = min(gaze_s + read_s, total)
        return Window(t0, t1, face, face_mask, eye, eye_mask, np.asarray(fix, np.float32), fix_mask.astype(bool),
                      quality, trial, {"assemble": assemble * 1e3, "features": (total - assemble) * 1e3},
                      face_times=face_times)


def _fresh_pipeline(pipeline):
    """A new face pipeline with the same configuration (no tracking history)."""
    cfg = getattr(pipeline, "config", None)
    return type(pipeline)(cfg) if cfg is not None else type(pipeline)()
