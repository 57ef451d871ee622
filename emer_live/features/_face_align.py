"""Eye localisation, illumination normalisation and eye-line alignment for the face pipeline.

Private helpers of :mod:`emer_live.features.face`; all work on numpy/OpenCV arrays and are
stateless (the pipeline keeps the state).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import EmerError

Point = Tuple[float, float]
Box = Tuple[int, int, int, int]

# geometric fallback: where eyes sit in a Haar frontal-face box (fractions of its width/height)
EYE_FALLBACK = ((0.31, 0.40), (0.69, 0.40))


def load_cascade(name: str) -> "cv2.CascadeClassifier":
    """Load one of OpenCV's bundled Haar cascades, with a clear error when it is missing."""
    base = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not base:
        raise EmerError(f"OpenCV {cv2.__version__} ships no Haar cascades (cv2.data.haarcascades is missing); "
                        f"the face pipeline needs {name}: install opencv-python-headless>=4.8,<5")
    path = Path(base) / name
    casc = cv2.CascadeClassifier(str(path))
    if casc.empty():
        raise EmerError(f"cannot load the Haar cascade {path}; reinstall opencv-python-headless>=4.8,<5")
    return casc


def clip_box(box: Sequence[float], width: int, height: int) -> Optional[Box]:
    """Integer box (x, y, w, h) clipped to the frame, or None when nothing is left."""
    x0 = max(int(math.floor(box[0])), 0)
    y0 = max(int(math.floor(box[1])), 0)
    x1 = min(int(math.ceil(box[0] + box[2])), width)
    y1 = min(int(math.ceil(box[1] + box[3])), height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


def expand_box(box: Sequence[float], margin: float) -> Tuple[float, float, float, float]:
    """Box grown by ``margin`` x its size on every side."""
    x, y, w, h = box
    return x - margin * w, y - margin * h, w * (1 + 2 * margin), h * (1 + 2 * margin)


def shrink_factor(scale: float) -> int:
    """Integer shrink factor closest to ``1 / scale`` (>= 1)."""
    return max(1, int(round(1.0 / scale))) if scale < 1.0 else 1


def resize_by(img: np.ndarray, scale: float, *, exact: bool = False) -> Tuple[np.ndarray, float]:
    """Resize by about ``scale``: shrinking by an *integer* factor with area averaging (OpenCV's
    fast path, ~5-10x quicker than a fractional area resize) unless ``exact``, enlarging
    bilinearly by exactly ``scale``. Returns ``(image, actual scale)``; pixel ``u`` of the result
    covers ``[u / s, (u + 1) / s)`` of the input (the last ``< n`` rows/columns may be dropped)."""
    h, w = img.shape[:2]
    if exact and scale < 1.0:
        size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA), size[0] / float(w)
    if scale >= 1.0:
        if abs(scale - 1.0) < 1e-3:
            return img, 1.0
        size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
        return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR), size[0] / float(w)
    n = shrink_factor(scale)
    if n == 1:
        return img, 1.0
    if w < n or h < n:
        n = max(1, min(w, h))
    return cv2.resize(img[: (h // n) * n, : (w // n) * n], (w // n, h // n), interpolation=cv2.INTER_AREA), 1.0 / n


def to_gray(img_bgr: np.ndarray, scale: float, *, exact: bool = False) -> Tuple[np.ndarray, float]:
    """Grey version of ``img_bgr`` resized by about ``scale`` (see :func:`resize_by`)."""
    return resize_by(cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY), scale, exact=exact)


class EyeBand:
    """The band of a face box where the eyes are (15-62 % down), grey, shrunk so that the box is
    ``face_px`` wide. Band pixel ``(u, v)`` covers frame pixels ``[x0 + u / s, x0 + (u + 1) / s)``."""

    __slots__ = ("gray", "x0", "y0", "s")

    def __init__(self, gray: np.ndarray, x0: int, y0: int, s: float) -> None:
        self.gray, self.x0, self.y0, self.s = gray, x0, y0, s

    def to_frame(self, u: float, v: float) -> Point:
        return self.x0 + (u + 0.5) / self.s - 0.5, self.y0 + (v + 0.5) / self.s - 0.5

    def to_band(self, x: float, y: float) -> Point:
        return (x - self.x0 + 0.5) * self.s - 0.5, (y - self.y0 + 0.5) * self.s - 0.5


def eye_band(frame_bgr: np.ndarray, box: Box, *, face_px: int) -> Optional[EyeBand]:
    """Cut out and shrink the eye band of ``box`` (None when it lies outside the frame)."""
    x, y, w, h = box
    H, W = frame_bgr.shape[:2]
    y0, y1 = max(y + int(0.15 * h), 0), min(y + int(0.62 * h), H)
    x0, x1 = max(x, 0), min(x + w, W)
    if y1 - y0 < 4 or x1 - x0 < 4:
        return None
    # exact scale: the eye cascade needs eyes of >= 20 px; grey bands are small, so cheap
    gray, s = to_gray(frame_bgr[y0:y1, x0:x1], face_px / float(w), exact=True)
    return EyeBand(gray, x0, y0, s)


def find_eyes(band: EyeBand, box: Box, cascade: "cv2.CascadeClassifier", *,
              face_px: int) -> Optional[Tuple[Point, Point]]:
    """Eye centres (image-left, image-right) in frame pixels from the Haar eye cascade.

    ``face_px`` is nominal; the sizes searched follow the band's actual scale.

    Runs the cascade over the eye band (eyes 18-38 % of the face width), refines each hit to
    the centre of its iris (:func:`_dark_centre`) and keeps the best left/right pair with
    plausible geometry (25-70 % of the box width apart, eye line within 30 degrees of
    horizontal, close to where eyes sit in a face box). Returns None when no such pair exists
    (closed eyes, occlusion, strong pose).
    """
    x, y, w, h = box
    fw = w * band.s
    lo, hi = max(int(0.18 * fw), 12), int(0.38 * fw) + 1
    if min(band.gray.shape) < lo or hi <= lo:
        return None
    cands = cascade.detectMultiScale(band.gray, scaleFactor=1.1, minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi))
    if len(cands) < 2:
        return None
    pts = []
    for ex, ey, ew, eh in cands:
        u, v = _dark_centre(band.gray, ex, ey, ew, eh)
        fx, fy = band.to_frame(u, v)
        pts.append((fx, fy, ew / band.s))
    cx = x + w / 2.0
    left = [p for p in pts if p[0] < cx]
    right = [p for p in pts if p[0] >= cx]
    best, best_cost = None, float("inf")
    ref_l = (x + EYE_FALLBACK[0][0] * w, y + EYE_FALLBACK[0][1] * h)
    ref_r = (x + EYE_FALLBACK[1][0] * w, y + EYE_FALLBACK[1][1] * h)
    for pl in left:
        for pr in right:
            d = math.hypot(pr[0] - pl[0], pr[1] - pl[1])
            if not (0.25 * w <= d <= 0.70 * w):
                continue
            if abs(math.degrees(math.atan2(pr[1] - pl[1], pr[0] - pl[0]))) > 30.0:
                continue
            cost = (math.hypot(pl[0] - ref_l[0], pl[1] - ref_l[1]) + math.hypot(pr[0] - ref_r[0], pr[1] - ref_r[1])
                    + 0.5 * abs(pl[2] - pr[2]))
            if cost < best_cost:
                best, best_cost = ((pl[0], pl[1]), (pr[0], pr[1])), cost
    return best


class EyeTemplates:
    """Grey patches around both eyes, cut from the band where the cascade last found them."""

    __slots__ = ("patches", "centres", "s")

    def __init__(self, patches, centres, s) -> None:
        self.patches, self.centres, self.s = patches, centres, s


def eye_templates(band: EyeBand, eyes: Tuple[Point, Point], *, face_px: int) -> Optional[EyeTemplates]:
    """Patches (0.3 x 0.2 of the face width) centred on each eye, for :func:`track_eyes`."""
    fw = band.gray.shape[1]
    hw, hh = max(int(0.15 * fw), 4), max(int(0.10 * fw), 3)
    patches, centres = [], []
    gh, gw = band.gray.shape
    for ex, ey in eyes:
        u, v = band.to_band(ex, ey)
        u0, v0 = int(round(u)) - hw, int(round(v)) - hh
        if u0 < 0 or v0 < 0 or u0 + 2 * hw > gw or v0 + 2 * hh > gh:
            return None
        patches.append(band.gray[v0:v0 + 2 * hh, u0:u0 + 2 * hw].copy())
        centres.append((u - u0, v - v0))
    return EyeTemplates(patches, centres, band.s)


def track_eyes(band: EyeBand, predicted: Tuple[Point, Point], tmpl: EyeTemplates, *, face_px: int,
               min_score: float) -> Optional[Tuple[Point, Point]]:
    """Follow both eyes from their predicted positions by normalised cross-correlation with the
    templates (search radius 10 % of the face width). None when either eye correlates below
    ``min_score`` (a blink, a big pose change) or the pair's geometry changed implausibly."""
    if abs(tmpl.s - band.s) > 0.01 * band.s:
        return None
    gh, gw = band.gray.shape
    r = max(int(0.10 * gw), 2)
    out = []
    for patch, (cu, cv), (px, py) in zip(tmpl.patches, tmpl.centres, predicted):
        u, v = band.to_band(px, py)
        th, tw = patch.shape
        u0, v0 = int(round(u - cu)) - r, int(round(v - cv)) - r
        u1, v1 = u0 + tw + 2 * r, v0 + th + 2 * r
        u0c, v0c, u1c, v1c = max(u0, 0), max(v0, 0), min(u1, gw), min(v1, gh)
        if u1c - u0c < tw + 2 or v1c - v0c < th + 2:
            return None
        res = cv2.matchTemplate(band.gray[v0c:v1c, u0c:u1c], patch, cv2.TM_CCOEFF_NORMED)
        _, score, _, loc = cv2.minMaxLoc(res)
        if not math.isfinite(score) or score < min_score:
            return None
        out.append(band.to_frame(u0c + loc[0] + cu, v0c + loc[1] + cv))
    (lx, ly), (rx, ry) = out
    (plx, ply), (prx, pry) = predicted
    d_new, d_old = math.hypot(rx - lx, ry - ly), math.hypot(prx - plx, pry - ply)
    if d_old <= 0 or abs(d_new / d_old - 1.0) > 0.15:
        return None
    return out[0], out[1]


def _dark_centre(gray: np.ndarray, ex: int, ey: int, ew: int, eh: int) -> Tuple[float, float]:
    """Refine a Haar eye box to the centre of its darkest blob (iris and pupil).

    The cascade's boxes wander by a few pixels relative to the eye from frame to frame (a few
    degrees of eye-line angle); the iris is the darkest compact thing in the box's central part.
    Darkness-weighted centroid of the pixels below the 12th percentile, over the box without its
    top quarter (where brows sneak in) and side margins; falls back to the box centre when the
    box has no contrast.
    """
    x0, x1 = ex + int(0.12 * ew), ex + ew - int(0.12 * ew)
    y0, y1 = ey + int(0.28 * eh), ey + eh - int(0.12 * eh)
    patch = gray[y0:y1, x0:x1]
    centre = (ex + (ew - 1) / 2.0, ey + (eh - 1) / 2.0)
    if patch.size < 16:
        return centre
    patch = cv2.GaussianBlur(patch, (3, 3), 0).astype(np.float32)
    thr = float(np.percentile(patch, 12))
    if float(patch.max()) - thr < 12.0:
        return centre
    w = np.maximum(thr - patch, 0.0) + (patch <= thr)
    tot = float(w.sum())
    ys, xs = np.mgrid[0:patch.shape[0], 0:patch.shape[1]]
    return x0 + float((w * xs).sum()) / tot, y0 + float((w * ys).sum()) / tot


def alignment_matrix(eyes: Tuple[Point, Point], *, size: int, eye_y: float, eye_dist: float) -> np.ndarray:
    """2x3 similarity transform (frame px -> crop px) that puts the eyes level at
    ``(0.5 -+ eye_dist / 2) * size, eye_y * size``."""
    (lx, ly), (rx, ry) = eyes
    ang = math.atan2(ry - ly, rx - lx)
    d = max(math.hypot(rx - lx, ry - ly), 1e-6)
    k = eye_dist * size / d
    c, s = k * math.cos(-ang), k * math.sin(-ang)
    mx, my = (lx + rx) / 2.0, (ly + ry) / 2.0
    # [x'; y'] = [[c, -s], [s, c]] @ ([x; y] - m) + target
    tx, ty = 0.5 * size, eye_y * size
    return np.array([[c, -s, tx - (c * mx - s * my)], [s, c, ty - (s * mx + c * my)]], np.float64)


def _invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def normalise_illumination(roi_bgr: np.ndarray, *, method: str, clahe: Optional["cv2.CLAHE"],
                           stretch_pct: Tuple[float, float]) -> np.ndarray:
    """Illumination normalisation on the luminance of a face region; returns YCrCb.

    ``method`` is ``"stretch+clahe"`` (default), ``"clahe"`` or ``"none"``. The stretch maps the
    ``stretch_pct`` percentiles of the luminance in the central half of the region (the inner
    face) onto 8..247, removing a global gain/offset; chroma is scaled by the same gain so
    colours do not wash out. CLAHE then evens out the remaining local differences (side light,
    shadows) within tiles.
    """
    ycc = cv2.cvtColor(roi_bgr, cv2.COLOR_BGR2YCrCb)
    if method == "none":
        return ycc
    y, cr, cb = cv2.split(ycc)
    if method == "stretch+clahe":
        h, w = y.shape
        inner = y[h // 4: h - h // 4, w // 4: w - w // 4]
        hist = np.bincount(inner.ravel(), minlength=256)
        cdf = np.cumsum(hist)
        n = cdf[-1]
        if n > 16:
            lo = int(np.searchsorted(cdf, stretch_pct[0] / 100.0 * n))
            hi = int(np.searchsorted(cdf, stretch_pct[1] / 100.0 * n))
            if hi - lo >= 8:
                gain = (247.0 - 8.0) / (hi - lo)
                lut = np.clip((np.arange(256) - lo) * gain + 8.0, 0, 255).astype(np.uint8)
                mean_before = float(inner.mean())
                y = cv2.LUT(y, lut)
                g = float(np.clip(float(lut[int(round(mean_before))]) / max(mean_before, 1.0), 0.5, 2.0))
                if abs(g - 1.0) > 0.02:
                    clut = np.clip((np.arange(256) - 128.0) * g + 128.0, 0, 255).astype(np.uint8)
                    cr, cb = cv2.LUT(cr, clut), cv2.LUT(cb, clut)
    if clahe is not None:
        y = clahe.apply(y)
    return cv2.merge([y, cr, cb])


def aligned_crop(frame_bgr: np.ndarray, eyes: Tuple[Point, Point], *, size: int, eye_y: float, eye_dist: float,
                 method: str, clahe: Optional["cv2.CLAHE"], stretch_pct: Tuple[float, float],
                 work_oversample: float = 1.25) -> Tuple[np.ndarray, np.ndarray]:
    """Normalise illumination on the face region, then rotate/scale/crop it to ``size``.

    Returns ``(crop_rgb uint8 (size, size, 3), M)`` with ``M`` the 2x3 transform frame px -> crop px.

    The region of the frame that the crop covers is cut out axis-aligned, shrunk by the integer
    factor that brings it closest to ``work_oversample`` x the crop's resolution (area averaging:
    no aliasing in the final bilinear warp, and normalisation works on few pixels), normalised,
    and only then warped so the eyes are level.
    """
    H, W = frame_bgr.shape[:2]
    m = alignment_matrix(eyes, size=size, eye_y=eye_y, eye_dist=eye_dist)
    inv = _invert(m)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
    x0 = max(int(math.floor(corners[:, 0].min())) - 2, 0)
    y0 = max(int(math.floor(corners[:, 1].min())) - 2, 0)
    x1 = min(int(math.ceil(corners[:, 0].max())) + 2, W)
    y1 = min(int(math.ceil(corners[:, 1].max())) + 2, H)
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise ValueError("the face lies outside the frame")
    k = math.hypot(m[0, 0], m[1, 0])                     # crop px per frame px
    roi, f = resize_by(frame_bgr[y0:y1, x0:x1], work_oversample * k)   # integer shrink, or none
    fx = fy = f
    ycc = normalise_illumination(roi, method=method, clahe=clahe, stretch_pct=stretch_pct)
    rgb = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    # crop px = m @ frame px; frame px = (x0 + u / fx, y0 + v / fy) for region px (u, v)
    a = m[:, :2] @ np.diag([1.0 / fx, 1.0 / fy])
    b = m[:, :2] @ np.array([x0, y0], np.float64) + m[:, 2]
    m_roi = np.hstack([a, b[:, None]])
    crop = cv2.warpAffine(rgb, m_roi, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m
