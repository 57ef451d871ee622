"""The face pipeline (DESIGN sec. 9): detection, tracking, illumination normalisation, eye-line
alignment and 112x112 RGB crops, cheap enough for 30 fps on one core.

Two ways to find the face and the eyes (``FaceConfig.detector``); steps 3-4 below are common.

**"landmarks" (default)**: MediaPipe's BlazeFace detector and 468-point face landmark model,
run by OpenCV's DNN module (:mod:`._mediapipe`; the model files are fetched at set-up into
models/third_party/). With no face known BlazeFace searches the frame (letterboxed to 128x128;
if that finds nothing in a wide frame, square tiles of the frame's height too, for smaller
faces); the landmark model then runs on a square region 1.5x the detected box, rotated so the
eyes are level, and once more on the region of those landmarks (a detected frame is as exact
as a tracked one). On the next frames the region comes from the previous frame's landmarks (as
MediaPipe's face mesh does): no detector runs while the landmark model's face confidence stays
at or above ``min_landmark_conf``; below it, or after a time gap, the frame is re-detected. Eye
centres are the means of the landmarks' eye contours; head pose (yaw, pitch, roll) comes from
the 3-D landmarks; both and the confidence are in :class:`FaceResult`. Measured on real faces
(benchmarks/bench_face.py) it finds more faces than the Haar pipeline and follows head pose.

**"haar"** (the previous pipeline, kept selectable: it needs no model files and its crops are
what the demo checkpoint was trained on):

Per frame, :meth:`FacePipeline.process`

1. **finds the face** without running a detector on every frame. With no face known it runs
   OpenCV's Haar ``frontalface_default`` cascade on the whole frame shrunk to
   ``detect_width`` pixels (largest face wins). Once a face is known, it *tracks* it: normalised
   cross-correlation of a small grey template of the last detected face within a search window
   around its last box (~0.1 ms). Every ``detect_every_n`` frames, or when the correlation drops
   below ``track_min_score``, it re-detects inside a region around the last box, shrunk so the
   face is ``roi_face_px`` wide (~0.2 ms); only if that fails does it fall back to a whole-frame
   detection, and only if that fails too is the frame reported as ``found=False``.
2. **finds the eyes** with the Haar eye cascade in the band of the face box where eyes are,
   shrunk to ``eye_face_px`` (each hit refined to the centre of its darkest blob, the iris);
   between cascade runs (every ``eyes_every_n`` frames, ~1.3 ms each) both eyes are followed by
   template matching (~0.05 ms). When the eyes are not found (a blink, glasses, pose) the eye
   positions of the last success are carried along with the box; without any, a geometric
   estimate from the face box is used (no roll correction then). ``eyes_method`` says which.
3. **normalises illumination before alignment**, as the EMER paper does: on the face region
   (cut out axis-aligned and shrunk to ~1.25x the crop's resolution) a percentile stretch of
   the luminance (Y of YCrCb) over the inner face removes the global gain and offset of the
   lighting, chroma is scaled alongside so colours keep their saturation, and CLAHE (contrast-
   limited adaptive histogram equalisation, clip 2.0 on a 4x4 grid) evens out what a global
   map cannot: a lamp on one side, shadows under the brows. Luminance only, because lighting
   changes brightness far more than hue, and equalising colour channels separately shifts skin
   colour. CLAHE alone would not do: its clip limit (which keeps it from amplifying noise) also
   keeps it from undoing a 2x gain difference, hence the stretch first.
4. **aligns**: a similarity transform puts the eyes level at ``eye_y`` of the crop height,
   ``eye_dist`` of the crop width apart, and the crop is resampled to ``output_size`` square RGB.

Frames without a face give ``found=False`` and no crop; they are never replaced by a neighbour.
:func:`to_tensor_layout` turns crops into the float32 ``(N, 3, 112, 112)`` ImageNet-normalised
layout the ResNet-18 face encoder takes (numpy only). :class:`FaceCropCache` stores a trial's
crops on disk so windows and training never re-detect.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from ..errors import ConfigError
from . import _face_align as A

__all__ = ["FaceConfig", "FaceResult", "FacePipeline", "FaceCropCache", "to_tensor_layout",
           "IMAGENET_MEAN", "IMAGENET_STD", "ILLUMINATION_METHODS", "FACE_METHODS", "DETECTORS",
           "default_pipeline"]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
ILLUMINATION_METHODS = ("stretch+clahe", "clahe", "none")
FACE_METHODS = ("detected", "tracked", "none")
DETECTORS = ("landmarks", "haar")
# 2: detector + landmark settings (a version-1 dict is the Haar pipeline, which was all there was)
_CONFIG_VERSION = 2


@dataclass(frozen=True)
class FaceConfig:
    """Parameters of the face pipeline (saved with caches and sessions).

    Parameters
    ----------
    detector : {"landmarks", "haar"}
        ``"landmarks"`` (default): MediaPipe's BlazeFace detector and 468-point landmark model
        (models/third_party/, fetched at set-up), landmarks tracked from frame to frame, eyes from
        the landmarks, head pose and landmark confidence per frame. ``"haar"``: the OpenCV Haar
        cascade pipeline (detection, template tracking, eye cascade); the parameters from
        ``detect_width`` to ``eye_track_min_score`` apply to it only, except
        ``lost_detect_every_n`` and ``max_track_gap_us``, which both pipelines follow. The DNN
        models run on OpenCV's thread pool: callers set ``cv2.setNumThreads``.
    min_detect_score : float
        BlazeFace score (0..1) a detection needs (landmarks pipeline).
    min_landmark_conf : float
        Landmark-model face confidence (0..1) below which the tracked face counts as lost and the
        frame is re-detected (as MediaPipe's face mesh does); a detection whose landmarks score
        below it is not taken.
    landmark_roi_scale : float
        The landmark model's square region is this times the detected box (or the bounding box
        of the previous landmarks).
    detect_tiles : bool
        When whole-frame BlazeFace finds nothing in a wide (or tall) frame, also search square
        tiles of the short side (smaller faces; ~3 extra detector runs at 16:9).
    detect_width : int
        Whole-frame detection runs on the frame shrunk to about this width (by the integer
        factor closest to frame width / detect_width; never enlarged). All shrinking in the
        pipeline uses integer factors: OpenCV's area resize is several times faster then.
    scale_factor : float
        Haar ``scaleFactor`` of whole-frame detection (> 1).
    min_neighbors : int
        Haar ``minNeighbors`` (higher = fewer false faces, more misses).
    min_face_frac : float
        Smallest face searched in whole-frame detection, as a fraction of the frame height
        (and never below the cascade's 24-pixel window in the shrunk frame).
    detect_every_n : int
        While tracking, re-detect in a region around the face every ``n`` frames.
    lost_detect_every_n : int
        With no face known, run whole-frame detection on every ``n``-th frame (1 = every frame;
        larger values save CPU in live use while nobody sits in front of the camera, at the price
        of reporting ``found=False`` for frames that were not searched).
    roi_margin : float
        Region re-detection searches the last box grown by this fraction of its size per side.
    roi_face_px : int
        Region re-detection shrinks the region so the last face is about this wide (pixels).
    track_px : int
        About the width of the tracking template (the last detected face, grey, shrunk).
    track_search : float
        Tracking searches the last box grown by this fraction of its size per side.
    track_min_score : float
        Normalised cross-correlation below which the track is distrusted (re-detect).
    max_track_gap_us : int
        Template tracking assumes consecutive frames; when more time than this passed since the
        previous frame (sparse sampling, a dropped stretch) the face is re-detected instead.
    eye_face_px : int
        Eye detection and eye tracking work on the eye band shrunk so the face is about this
        wide (enlarged to exactly this width when the face is smaller).
    eyes_every_n : int
        While the face is tracked, the eyes are followed by template matching and the eye
        cascade runs only every ``n`` frames (always on detection frames and when the eye
        templates stop matching).
    eye_track_min_score : float
        Normalised cross-correlation below which an eye template is not trusted (blink).
    illumination : {"stretch+clahe", "clahe", "none"}
        Illumination normalisation on the luminance before alignment (see module notes).
    stretch_pct : (float, float)
        Luminance percentiles of the inner face mapped onto 8..247 by the stretch.
    clahe_clip : float
        CLAHE clip limit.
    clahe_grid : int
        CLAHE tiles per side of the face region.
    output_size : int
        Crop side in pixels (112 for EMERT).
    eye_y : float
        Height of the eye line in the crop (fraction of the side, from the top).
    eye_dist : float
        Distance between the eye centres in the crop (fraction of the side).
    """

    detector: str = "landmarks"
    min_detect_score: float = 0.5
    min_landmark_conf: float = 0.5
    landmark_roi_scale: float = 1.5
    detect_tiles: bool = True
    detect_width: int = 320
    scale_factor: float = 1.1
    min_neighbors: int = 4
    min_face_frac: float = 0.15
    detect_every_n: int = 10
    lost_detect_every_n: int = 1
    roi_margin: float = 0.5
    roi_face_px: int = 60
    track_px: int = 48
    track_search: float = 0.25
    track_min_score: float = 0.6
    max_track_gap_us: int = 200_000
    eye_face_px: int = 100
    eyes_every_n: int = 5
    eye_track_min_score: float = 0.7
    illumination: str = "stretch+clahe"
    stretch_pct: Tuple[float, float] = (1.0, 99.0)
    clahe_clip: float = 2.0
    clahe_grid: int = 4
    output_size: int = 112
    eye_y: float = 0.38
    eye_dist: float = 0.33

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"FaceConfig.{name} = {getattr(self, name)!r}: {what}")

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        need(self.detector in DETECTORS, "detector", f"expected one of {DETECTORS}")
        need(0.05 <= float(self.min_detect_score) < 1.0, "min_detect_score", "expected 0.05..1")
        need(0.0 <= float(self.min_landmark_conf) < 1.0, "min_landmark_conf", "expected 0..1")
        need(1.0 <= float(self.landmark_roi_scale) <= 3.0, "landmark_roi_scale", "expected 1..3")
        need(isinstance(self.detect_tiles, (bool, np.bool_)), "detect_tiles", "expected True or False")
        need(is_int(self.detect_width) and 64 <= self.detect_width <= 4096, "detect_width", "expected an int 64..4096")
        need(1.01 <= float(self.scale_factor) <= 2.0, "scale_factor", "expected 1.01..2.0")
        need(is_int(self.min_neighbors) and 0 <= self.min_neighbors <= 50, "min_neighbors", "expected an int 0..50")
        need(0.0 < float(self.min_face_frac) <= 1.0, "min_face_frac", "expected 0 < value <= 1")
        need(is_int(self.detect_every_n) and self.detect_every_n >= 1, "detect_every_n", "expected an int >= 1")
        need(is_int(self.lost_detect_every_n) and self.lost_detect_every_n >= 1, "lost_detect_every_n",
             "expected an int >= 1")
        need(0.1 <= float(self.roi_margin) <= 3.0, "roi_margin", "expected 0.1..3.0")
        need(is_int(self.roi_face_px) and 30 <= self.roi_face_px <= 400, "roi_face_px", "expected an int 30..400")
        need(is_int(self.track_px) and 12 <= self.track_px <= 256, "track_px", "expected an int 12..256")
        need(0.05 <= float(self.track_search) <= 2.0, "track_search", "expected 0.05..2.0")
        need(-1.0 <= float(self.track_min_score) <= 1.0, "track_min_score", "expected -1..1")
        need(is_int(self.max_track_gap_us) and self.max_track_gap_us >= 0, "max_track_gap_us", "expected an int >= 0")
        need(is_int(self.eye_face_px) and 60 <= self.eye_face_px <= 400, "eye_face_px", "expected an int 60..400")
        need(is_int(self.eyes_every_n) and self.eyes_every_n >= 1, "eyes_every_n", "expected an int >= 1")
        need(-1.0 <= float(self.eye_track_min_score) <= 1.0, "eye_track_min_score", "expected -1..1")
        need(self.illumination in ILLUMINATION_METHODS, "illumination", f"expected one of {ILLUMINATION_METHODS}")
        pct = tuple(self.stretch_pct)
        need(len(pct) == 2 and 0.0 <= float(pct[0]) < float(pct[1]) <= 100.0, "stretch_pct",
             "expected (low, high) percentiles with 0 <= low < high <= 100")
        object.__setattr__(self, "stretch_pct", (float(pct[0]), float(pct[1])))
        need(float(self.clahe_clip) > 0, "clahe_clip", "expected > 0")
        need(is_int(self.clahe_grid) and 1 <= self.clahe_grid <= 32, "clahe_grid", "expected an int 1..32")
        need(is_int(self.output_size) and 16 <= self.output_size <= 1024, "output_size", "expected an int 16..1024")
        need(0.1 <= float(self.eye_y) <= 0.7, "eye_y", "expected 0.1..0.7")
        need(0.1 <= float(self.eye_dist) <= 0.8, "eye_dist", "expected 0.1..0.8")

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict (JSON-ready) including a ``version`` key."""
        d = asdict(self)
        d["stretch_pct"] = list(self.stretch_pct)
        d["version"] = _CONFIG_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FaceConfig":
        """Inverse of :meth:`to_dict`; unknown keys are a ConfigError."""
        d = dict(d)
        version = d.pop("version", _CONFIG_VERSION)
        if version == 1:
            d.setdefault("detector", "haar")      # version 1 had only the Haar pipeline
        elif version != _CONFIG_VERSION:
            raise ConfigError(f"face config version {version!r} is not supported (expected <= {_CONFIG_VERSION}); "
                              f"update emer_live")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown face config keys {unknown}")
        if "stretch_pct" in d:
            d["stretch_pct"] = tuple(d["stretch_pct"])
        return cls(**d)


Point = Tuple[float, float]


@dataclass(frozen=True)
class FaceResult:
    """What the pipeline made of one frame.

    Attributes
    ----------
    t_us : int
        Frame time (session clock).
    found : bool
        Whether a face was found; when False every other field is None/NaN and ``method`` "none".
    crop_rgb : ndarray or None
        ``(S, S, 3)`` uint8 RGB, illumination-normalised, eyes level (S = ``output_size``).
    box : (x, y, w, h) or None
        Face box in frame pixels (ints; may extend past the frame edges while tracking).
    eyes : ((x, y), (x, y)) or None
        Eye centres in frame pixels: the image-left eye first.
    method : {"detected", "tracked", "none"}
        "detected": a detector found the face in this frame (BlazeFace; or a Haar cascade, region
        or whole frame); "tracked": landmarks from the previous landmarks (or Haar template
        tracking) since the last detection.
    eyes_method : {"landmarks", "cascade", "tracked", "carried", "geometric", "none"}
        Where the eye positions came from: the landmark model (landmarks pipeline); for the Haar
        pipeline the eye cascade in this frame, eye templates
        followed from the last cascade hit, carried along with the face box (eyes not visible,
        e.g. a blink), or a fixed position in the face box (no roll correction).
    roll_deg : float
        Angle of the eye line in the frame (degrees, positive = the image-right eye lower),
        i.e. the rotation the alignment removed; NaN when not found.
    score : float
        Landmarks pipeline: the BlazeFace score on detected frames, the landmark confidence on
        tracked ones. Haar: tracking correlation for tracked frames, 1.0 for detected.
    transform : ndarray or None
        2x3 affine mapping frame pixels to crop pixels.
    yaw_deg, pitch_deg : float
        Head pose from the 3-D landmarks (landmarks pipeline; NaN otherwise): yaw positive when
        the face turns towards the image's right (nose moves right), pitch positive when it tilts
        up (see ``_mediapipe.head_pose``; the phantom's conventions).
    landmark_conf : float
        The landmark model's face confidence (0..1; NaN for the Haar pipeline).
    landmarks : ndarray or None
        ``(468, 3)`` landmark points in frame pixels (z on the x scale, smaller = nearer).
    """

    t_us: int
    found: bool
    crop_rgb: Optional[np.ndarray] = None
    box: Optional[Tuple[int, int, int, int]] = None
    eyes: Optional[Tuple[Point, Point]] = None
    method: str = "none"
    eyes_method: str = "none"
    roll_deg: float = float("nan")
    score: float = float("nan")
    transform: Optional[np.ndarray] = field(default=None, repr=False)
    yaw_deg: float = float("nan")
    pitch_deg: float = float("nan")
    landmark_conf: float = float("nan")
    landmarks: Optional[np.ndarray] = field(default=None, repr=False)


class _Track:
    __slots__ = ("box", "template", "t_scale", "t_off", "eyes_rel", "since_detect", "missed", "eye_tmpl",
                 "since_eye_cascade")

    def __init__(self, box, template, t_scale, t_off) -> None:
        self.box = box                  # (x, y, w, h) float, frame px
        self.template = template        # grey uint8, the face at t_scale
        self.t_scale = t_scale
        self.t_off = t_off              # template origin - box origin (frame px)
        self.eyes_rel: Optional[Tuple[Point, Point]] = None   # eye centres relative to the box
        self.eye_tmpl: Optional[A.EyeTemplates] = None
        self.since_eye_cascade = 0
        self.since_detect = 0
        self.missed = 0                 # scheduled re-detections that failed in a row


class FacePipeline:
    """Detect, track, normalise and align faces frame by frame (one instance per video stream).

    Parameters
    ----------
    config : FaceConfig
        Pipeline parameters.

    Notes
    -----
    Stateful (it tracks): feed the frames of one stream in time order; call :meth:`reset` at a
    discontinuity (new trial, seek). Not thread-safe; use one instance per thread. ``counts``
    holds how often each path ran (whole-frame detections, region detections, tracked, lost,
    and the eye sources).
    """

    def __init__(self, config: FaceConfig = FaceConfig()) -> None:
        if not isinstance(config, FaceConfig):
            raise ConfigError(f"config must be a FaceConfig, got {type(config).__name__}")
        self.config = config
        self._det = self._lmk = self._face = self._eye = None
        if config.detector == "landmarks":
            from . import _mediapipe as MP
            self._det = MP.BlazeFace(min_score=config.min_detect_score)
            self._lmk = MP.FaceLandmarker()
        else:
            self._face = A.load_cascade("haarcascade_frontalface_default.xml")
            self._eye = A.load_cascade("haarcascade_eye.xml")
        self._roi = None            # landmarks pipeline: the next frame's landmark region
        self._clahe = (cv2.createCLAHE(clipLimit=float(config.clahe_clip),
                                       tileGridSize=(config.clahe_grid, config.clahe_grid))
                       if config.illumination in ("stretch+clahe", "clahe") else None)
        self._track: Optional[_Track] = None
        self._shape: Optional[Tuple[int, int]] = None
        self._lost_frames = 0
        self._last_t: Optional[int] = None
        self.counts: Dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the tracked face (the next frame runs a whole-frame detection)."""
        self._track = None
        self._roi = None
        self._shape = None
        self._lost_frames = 0
        self._last_t = None
        self.counts = {k: 0 for k in ("frames", "detect_full", "detect_roi", "tracked", "lost",
                                      "eyes_cascade", "eyes_tracked", "eyes_carried", "eyes_geometric",
                                      "eyes_landmarks", "landmark_lost")}

    # ------------------------------------------------------------------ detection / tracking
    def _detect_full(self, frame: np.ndarray) -> Optional[Tuple[float, float, float, float]]:
        c = self.config
        H, W = frame.shape[:2]
        gray, s = A.to_gray(frame, c.detect_width / float(W))
        ms = max(24, int(round(c.min_face_frac * gray.shape[0])))
        if ms > min(gray.shape):
            return None
        self.counts["detect_full"] += 1
        faces = self._face.detectMultiScale(gray, scaleFactor=float(c.scale_factor), minNeighbors=int(c.min_neighbors),
                                            minSize=(ms, ms))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda r: r[2] * r[3])
        return x / s, y / s, w / s, h / s

    def _detect_roi(self, frame: np.ndarray, box) -> Optional[Tuple[float, float, float, float]]:
        c = self.config
        H, W = frame.shape[:2]
        reg = A.clip_box(A.expand_box(box, c.roi_margin), W, H)
        if reg is None:
            return None
        rx, ry, rw, rh = reg
        gray, s = A.to_gray(frame[ry:ry + rh, rx:rx + rw], min(c.roi_face_px / float(box[2]), 1.0))
        lo = max(24, int(0.65 * box[2] * s))
        hi = int(1.6 * box[2] * s) + 1
        if lo > min(gray.shape):
            return None
        self.counts["detect_roi"] += 1
        faces = self._face.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=int(c.min_neighbors),
                                            minSize=(lo, lo), maxSize=(hi, hi))
        if len(faces) == 0:
            return None
        cands = [(rx + x / s, ry + y / s, w / s, h / s) for x, y, w, h in faces]
        return max(cands, key=lambda b: _iou(b, box))

    def _start_track(self, frame: np.ndarray, box) -> _Track:
        c = self.config
        H, W = frame.shape[:2]
        t_scale = 1.0 / A.shrink_factor(c.track_px / float(box[2]))
        b = A.clip_box(box, W, H)
        template, off = None, (0.0, 0.0)
        if b is not None and b[2] >= 0.9 * box[2] and b[3] >= 0.9 * box[3]:
            x, y, w, h = b
            template, t_scale = A.to_gray(frame[y:y + h, x:x + w], t_scale)
            off = (x - box[0], y - box[1])
        tr = _Track(tuple(float(v) for v in box), template, t_scale, off)
        old = self._track
        if old is not None and old.eyes_rel is not None:
            tr.eyes_rel = old.eyes_rel
        return tr

    def _track_step(self, frame: np.ndarray, tr: _Track) -> Tuple[Optional[Tuple[float, ...]], float]:
        c = self.config
        if tr.template is None:
            return None, float("nan")
        H, W = frame.shape[:2]
        clipped = A.clip_box(tr.box, W, H)
        reg = A.clip_box(A.expand_box(tr.box, c.track_search), W, H)
        if reg is None or clipped is None:
            return None, float("nan")
        rx, ry, rw, rh = reg
        gray, _ = A.to_gray(frame[ry:ry + rh, rx:rx + rw], tr.t_scale)
        th, tw = tr.template.shape
        if gray.shape[0] < th or gray.shape[1] < tw:
            return None, float("nan")
        res = cv2.matchTemplate(gray, tr.template, cv2.TM_CCOEFF_NORMED)
        _, score, _, loc = cv2.minMaxLoc(res)
        if not math.isfinite(score) or score < c.track_min_score:
            return None, float(score)
        x = rx + loc[0] / tr.t_scale - tr.t_off[0]
        y = ry + loc[1] / tr.t_scale - tr.t_off[1]
        return (x, y, tr.box[2], tr.box[3]), float(score)

    def _locate(self, frame: np.ndarray, gap_ok: bool) -> Tuple[Optional[Tuple[float, ...]], str, float]:
        c = self.config
        tr = self._track
        if tr is not None:
            due = tr.since_detect + 1 >= c.detect_every_n or not gap_ok
            if not due:
                box, score = self._track_step(frame, tr)
                if box is not None:
                    tr.box = box
                    tr.since_detect += 1
                    return box, "tracked", score
            box = self._detect_roi(frame, tr.box)
            if box is not None:
                self._track = self._start_track(frame, box)
                return box, "detected", 1.0
            if due and gap_ok and tr.missed < c.detect_every_n:
                # the scheduled re-detection missed (the cascade drops real faces now and then):
                # keep tracking and retry next frame, but not for ever on an unconfirmed track
                tr.missed += 1
                box, score = self._track_step(frame, tr)
                if box is not None:
                    tr.box = box
                    return box, "tracked", score
        if tr is None and self._lost_frames % c.lost_detect_every_n != 0:
            return None, "none", float("nan")
        box = self._detect_full(frame)
        if box is not None:
            self._track = self._start_track(frame, box)
            return box, "detected", 1.0
        self._track = None
        return None, "none", float("nan")

    # ------------------------------------------------------------------ per frame
    def process(self, frame_bgr: np.ndarray, t_us: int) -> FaceResult:
        """Find, normalise and align the face in one BGR frame.

        Parameters
        ----------
        frame_bgr : ndarray
            ``(H, W, 3)`` uint8 BGR frame (as the camera stream delivers it).
        t_us : int
            Frame time on the session clock (copied into the result).

        Returns
        -------
        FaceResult
            ``found=False`` (and no crop) when no face was found in this frame.
        """
        frame = np.asarray(frame_bgr)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame_bgr must be an (H, W, 3) uint8 BGR image, got {frame.shape} {frame.dtype}")
        if frame.shape[0] < 24 or frame.shape[1] < 24:
            raise ValueError(f"frame_bgr is too small ({frame.shape[1]}x{frame.shape[0]}); need >= 24x24")
        t_us = int(t_us)
        c = self.config
        if self._shape != frame.shape[:2]:
            self._track = None
            self._roi = None
            self._shape = frame.shape[:2]
        self.counts["frames"] += 1
        gap_ok = self._last_t is not None and 0 <= t_us - self._last_t <= c.max_track_gap_us
        self._last_t = t_us
        if self._lmk is not None:
            return self._process_landmarks(frame, t_us, gap_ok)
        box, method, score = self._locate(frame, gap_ok)
        if box is None:
            self._lost_frames += 1
            self.counts["lost"] += 1
            return FaceResult(t_us=t_us, found=False)
        self._lost_frames = 0
        if method == "tracked":
            self.counts["tracked"] += 1
        tr = self._track
        x, y, w, h = box
        ibox = (int(round(x)), int(round(y)), int(round(w)), int(round(h)))
        eyes, eyes_method = None, "none"
        predicted = None if tr.eyes_rel is None else tuple((x + u * w, y + v * h) for u, v in tr.eyes_rel)
        band = A.eye_band(frame, ibox, face_px=c.eye_face_px)
        if band is not None:
            if (method == "tracked" and tr.eye_tmpl is not None and predicted is not None
                    and tr.since_eye_cascade + 1 < c.eyes_every_n):
                eyes = A.track_eyes(band, predicted, tr.eye_tmpl, face_px=c.eye_face_px,
                                    min_score=c.eye_track_min_score)
                if eyes is not None:
                    eyes_method = "tracked"
                    tr.since_eye_cascade += 1
            if eyes is None:
                eyes = A.find_eyes(band, ibox, self._eye, face_px=c.eye_face_px)
                if eyes is not None:
                    eyes_method = "cascade"
                    tr.eye_tmpl = A.eye_templates(band, eyes, face_px=c.eye_face_px)
                    tr.since_eye_cascade = 0
        if eyes is not None:
            tr.eyes_rel = tuple(((ex - x) / w, (ey - y) / h) for ex, ey in eyes)
        elif predicted is not None:
            eyes_method = "carried"
            eyes = predicted
        else:
            eyes_method = "geometric"
            eyes = tuple((x + u * w, y + v * h) for u, v in A.EYE_FALLBACK)
        self.counts["eyes_" + eyes_method] += 1
        try:
            crop, m = A.aligned_crop(frame, eyes, size=c.output_size, eye_y=c.eye_y, eye_dist=c.eye_dist,
                                     method=c.illumination, clahe=self._clahe, stretch_pct=c.stretch_pct)
        except ValueError:          # the face left the frame between detection and now
            self._track = None
            self.counts["lost"] += 1
            return FaceResult(t_us=t_us, found=False)
        (lx, ly), (rx, ry) = eyes
        roll = math.degrees(math.atan2(ry - ly, rx - lx))
        return FaceResult(t_us=t_us, found=True, crop_rgb=crop, box=ibox,
                          eyes=((float(lx), float(ly)), (float(rx), float(ry))), method=method,
                          eyes_method=eyes_method, roll_deg=roll, score=float(score), transform=m)


    # ------------------------------------------------------------------ landmarks pipeline
    def _process_landmarks(self, frame: np.ndarray, t_us: int, gap_ok: bool) -> FaceResult:
        from . import _mediapipe as MP
        c = self.config
        H, W = frame.shape[:2]
        pts, conf, method, score = None, float("nan"), "tracked", float("nan")
        roi = self._roi if gap_ok else None
        if roi is not None and roi.inside_fraction(W, H) >= 0.25:
            pts, conf = self._lmk.run(frame, roi)
            score = conf
            if conf < c.min_landmark_conf:
                self.counts["landmark_lost"] += 1
                pts = None
        if pts is None:
            self._roi = None
            if roi is None and self._lost_frames % c.lost_detect_every_n != 0:
                return self._lost(t_us)
            self.counts["detect_full"] += 1
            dets = self._det.detect_tiled(frame) if c.detect_tiles else self._det.detect(frame)
            if not dets:
                return self._lost(t_us)
            det = max(dets, key=lambda d: d.box[2] * d.box[3])       # the nearest face wins
            pts, conf = self._lmk.run(frame, MP.roi_from_detection(det, c.landmark_roi_scale))
            if conf < c.min_landmark_conf:
                return self._lost(t_us)
            # once more from the landmarks' own region: the detector's box and eye keypoints are
            # coarse, and a detected frame should be as exact as a tracked one (measured: eye
            # centres ~2x closer to the tracked ones on the astronaut video)
            pts2, conf2 = self._lmk.run(frame, MP.roi_from_landmarks(pts, c.landmark_roi_scale))
            if conf2 >= c.min_landmark_conf:
                pts, conf = pts2, conf2
            method, score = "detected", det.score
        else:
            self.counts["tracked"] += 1
        self._roi = MP.roi_from_landmarks(pts, c.landmark_roi_scale)
        eyes = MP.eye_centres(pts)
        yaw, pitch, _ = MP.head_pose(pts)
        try:
            crop, m = A.aligned_crop(frame, eyes, size=c.output_size, eye_y=c.eye_y, eye_dist=c.eye_dist,
                                     method=c.illumination, clahe=self._clahe, stretch_pct=c.stretch_pct)
        except ValueError:          # the face left the frame
            self._roi = None
            return self._lost(t_us)
        self._lost_frames = 0
        self.counts["eyes_landmarks"] += 1
        x0, y0 = np.floor(pts[:, :2].min(0)).astype(int)
        x1, y1 = np.ceil(pts[:, :2].max(0)).astype(int)
        (lx, ly), (rx, ry) = eyes
        return FaceResult(t_us=t_us, found=True, crop_rgb=crop, box=(int(x0), int(y0), int(x1 - x0), int(y1 - y0)),
                          eyes=eyes, method=method, eyes_method="landmarks",
                          roll_deg=math.degrees(math.atan2(ry - ly, rx - lx)), score=float(score), transform=m,
                          yaw_deg=float(yaw), pitch_deg=float(pitch), landmark_conf=float(conf), landmarks=pts)

    def _lost(self, t_us: int) -> FaceResult:
        self._lost_frames += 1
        self.counts["lost"] += 1
        return FaceResult(t_us=t_us, found=False)


def default_pipeline() -> "FacePipeline":
    """The face pipeline used where no configuration is given (``emer-live fer``)."""
    return FacePipeline()


def _iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def to_tensor_layout(crops: np.ndarray, *, normalization: str = "imagenet") -> np.ndarray:
    """Crops -> the face encoder's input layout.

    Parameters
    ----------
    crops : ndarray
        ``(S, S, 3)`` or ``(N, S, S, 3)`` uint8 RGB crops.
    normalization : {"imagenet", "none"}
        ``"imagenet"``: pixel / 255, minus the ImageNet mean, divided by the ImageNet std per RGB
        channel (the statistics torchvision's ResNet-18 was trained with); ``"none"``: pixel / 255,
        i.e. RGB in [0, 1] (for a model that normalises its input itself).

    Returns
    -------
    ndarray
        float32 ``(N, 3, S, S)``, C-contiguous.
    """
    x = np.asarray(crops)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"crops must be (N, S, S, 3) or (S, S, 3) uint8 RGB, got {x.shape} {x.dtype}")
    if normalization == "imagenet":
        scale = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32)
        offset = (IMAGENET_MEAN / IMAGENET_STD).astype(np.float32)
    elif normalization == "none":
        out = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        out /= 255.0
        return out
    else:
        raise ValueError(f"normalization must be 'imagenet' or 'none', got {normalization!r}")
    out = np.empty((x.shape[0], 3, x.shape[1], x.shape[2]), np.float32)
    for ch in range(3):
        np.multiply(x[..., ch], scale[ch], out=out[:, ch], casting="unsafe")
        out[:, ch] -= offset[ch]
    return out


from ._face_cache import FaceCropCache  # noqa: E402  (re-exported; it needs FacePipeline above)
