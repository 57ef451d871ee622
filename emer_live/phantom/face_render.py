"""Draw the phantom's face into a webcam-like BGR frame (what the synthetic camera delivers).

:func:`render_face` turns a :class:`~emer_live.phantom.face_state.FaceState` into a frame: a static,
slightly out-of-focus room (cached per frame size), a torso, and a head drawn with OpenCV polygons
from a small 3-D face model (features sit on an ellipsoid, so yaw and pitch move them across the
face and roll turns everything), shaded so that the contrasts a real face shows under a ceiling
light are there: dark eye band and brows, bright cheeks and nose bridge, a shadow under the nose and
the lower lip. That is also what OpenCV's Haar face cascade keys on, so the pipeline in
:mod:`emer_live.features.face` finds this face the way it finds a real one.

The person's look (skin, hair, iris, lip and shirt colours, face width, eye spacing, brow weight)
is a :class:`FaceAppearance`; :meth:`FaceAppearance.for_participant` draws one per synthetic
participant so a synthetic session population is not a single identity.

Expressions are built from a handful of action-unit-like parameters (brow raise, inner-brow raise,
brow lowering/drawing together, upper/lower lid, mouth corners, mouth stretch, jaw drop, lip press,
upper-lip raise, nose wrinkle, cheek raise); each of the 7 classes is a fixed vector of these,
loosely following FACS prototypes (happiness AU6+12(+25), sadness AU1+4+15, fear AU1+2+4+5+20+25,
surprise AU1+2+5+26, disgust AU9+10, anger AU4+5+7+23, neutral none). The rendered parameter vector
is ``intensity * ((1 - blend) * P[expression] + blend * P[blend_expression])``.

Conventions
-----------
Positive ``yaw_deg`` turns the face towards image-right (the nose moves right), positive
``pitch_deg`` tilts it up, positive ``roll_deg`` rotates it counter-clockwise in the image.
``light_gradient`` > 0 makes the image-right side brighter (a frame-wide ramp of +-35 % x gradient
at the frame edges and a stronger +-45 % x gradient across the face, whose surface turns towards the
light). Sensor noise (sigma ~2 grey levels) comes from a precomputed tile whose row offset derives
from the state, so the same state always gives the same frame.
"""

from __future__ import annotations

import math
import threading
import zlib
from dataclasses import astuple, dataclass
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from .face_state import EMOTIONS7, FaceState

__all__ = ["render_face", "expression_params", "face_geometry", "FaceAppearance", "DEFAULT_APPEARANCE", "PARAM_NAMES"]

# --------------------------------------------------------------------------- expression model
PARAM_NAMES = (
    "brow_raise",       # + both brows up (AU1+2), - brows lowered (AU4)
    "brow_inner",       # + inner ends up (AU1, oblique "sad" brows), - inner ends down (V of anger)
    "brow_draw",        # + brows drawn together (AU4)
    "upper_lid",        # + eyes wide (AU5), - upper lids drooping
    "lower_lid",        # + lower lids raised/tensed (AU6/AU7), narrows the eye from below
    "corner_up",        # + mouth corners up (AU12), - down (AU15)
    "stretch",          # + mouth stretched sideways (AU20), - narrowed/rounded
    "open",             # jaw drop / lips parted (AU25/26)
    "press",            # lips pressed thin (AU23/24)
    "upper_lip",        # upper lip raised (AU10)
    "lower_lip_up",     # lower lip pushed up (AU17, pout)
    "teeth",            # teeth visible when the mouth is open
    "nose_wrinkle",     # AU9
    "nasolabial",       # deepened nasolabial folds (AU6/9/10/12)
    "cheek_raise",      # AU6
)

_EXPRESSIONS: Dict[str, Dict[str, float]] = {
    "happiness": dict(corner_up=1.0, stretch=0.45, open=0.45, teeth=1.0, lower_lid=0.55,
                      cheek_raise=1.0, nasolabial=1.0, brow_raise=0.1),
    "sadness": dict(brow_inner=1.0, brow_raise=-0.15, brow_draw=0.35, upper_lid=-0.4,
                    corner_up=-0.9, lower_lip_up=0.6, stretch=-0.1),
    "fear": dict(brow_raise=0.6, brow_inner=0.6, brow_draw=0.55, upper_lid=0.9, lower_lid=0.3,
                 open=0.35, stretch=0.8, teeth=0.6, corner_up=-0.25),
    "surprise": dict(brow_raise=1.0, brow_inner=0.15, upper_lid=1.0, open=1.0, stretch=-0.45),
    "disgust": dict(nose_wrinkle=1.0, upper_lip=1.0, brow_raise=-0.5, brow_draw=0.45,
                    lower_lid=0.6, corner_up=-0.45, nasolabial=0.8, open=0.08, teeth=0.4),
    "anger": dict(brow_raise=-1.0, brow_draw=1.0, brow_inner=-0.6, upper_lid=0.25, lower_lid=0.6,
                  press=1.0, stretch=-0.2, corner_up=-0.2),
    "neutral": dict(),
}
_PVEC = {k: np.array([v.get(n, 0.0) for n in PARAM_NAMES], np.float64) for k, v in _EXPRESSIONS.items()}
assert set(_PVEC) == set(EMOTIONS7)


def expression_params(state: FaceState) -> Dict[str, float]:
    """The action-unit-like parameters the renderer draws for ``state``.

    Parameters
    ----------
    state : FaceState
        Displayed expression, intensity and blend.

    Returns
    -------
    dict
        ``{name: value}`` for every name in :data:`PARAM_NAMES`;
        ``intensity * ((1 - blend) * P[expression] + blend * P[blend_expression])``.
    """
    intensity = _unit("intensity", state.intensity)
    blend = _unit("blend", state.blend)
    p = (1.0 - blend) * _PVEC[state.expression]
    if state.blend_expression is not None:
        p = p + blend * _PVEC[state.blend_expression]
    else:
        p = p + blend * _PVEC[state.expression]
    return dict(zip(PARAM_NAMES, (intensity * p).tolist()))


# --------------------------------------------------------------------------- appearance
# Colours are BGR. Skin gray level ~185, eye sockets ~150, brows/hair ~45: the contrasts of a face
# lit from above and in front.
_SCLERA = (208.0, 214.0, 220.0)
_PUPIL = (14.0, 14.0, 16.0)
_LASH = (28.0, 28.0, 34.0)
_MOUTH_IN = (38.0, 30.0, 66.0)
_TEETH = (212.0, 222.0, 228.0)

_FACE_UNIT = 0.155          # head half-width in pixels = _FACE_UNIT * frame height * scale
_HEAD_RY = 1.32             # head half-height / half-width
_CANVAS_X = (-1.65, 1.65)   # canvas extent in face units around the face centre
_CANVAS_Y = (-1.80, 2.15)
_SHIFT = 4                  # fixed-point bits for sub-pixel polygon vertices
_NOISE_SIGMA = 2.0
_NOISE_ROWS = 64


@dataclass(frozen=True)
class FaceAppearance:
    """What a (synthetic) person looks like: colours (BGR, 0..255) and a few proportions.

    Parameters
    ----------
    skin, hair, iris, lips, shirt : (float, float, float)
        BGR colours; ``skin`` is the lit skin tone, shading is derived from it.
    face_width : float
        Head width relative to the default (0.9..1.1).
    eye_spacing : float
        Half the distance between the eye centres in head half-widths (0.36..0.44).
    brow_weight : float
        Eyebrow thickness multiplier (0.6..1.5).
    """

    skin: Tuple[float, float, float] = (138.0, 165.0, 214.0)
    hair: Tuple[float, float, float] = (34.0, 42.0, 58.0)
    iris: Tuple[float, float, float] = (38.0, 58.0, 80.0)
    lips: Tuple[float, float, float] = (100.0, 106.0, 178.0)
    shirt: Tuple[float, float, float] = (112.0, 82.0, 52.0)
    face_width: float = 1.0
    eye_spacing: float = 0.40
    brow_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("skin", "hair", "iris", "lips", "shirt"):
            v = tuple(float(c) for c in getattr(self, name))
            if len(v) != 3 or not all(0.0 <= c <= 255.0 for c in v):
                raise ValueError(f"FaceAppearance.{name} must be 3 BGR values in 0..255, got {getattr(self, name)!r}")
            object.__setattr__(self, name, v)
        for name, lo, hi in (("face_width", 0.9, 1.1), ("eye_spacing", 0.36, 0.44), ("brow_weight", 0.6, 1.5)):
            v = float(getattr(self, name))
            if not lo <= v <= hi:
                raise ValueError(f"FaceAppearance.{name} must be in [{lo}, {hi}], got {v!r}")

    @classmethod
    def for_participant(cls, seed: int, participant: str) -> "FaceAppearance":
        """A look drawn deterministically from ``(seed, participant)``: skin tones from light to
        medium-dark, black/brown/blond/grey hair, brown/blue/green irises, face proportions."""
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(str(participant).encode("utf-8")), 0xFACE])
        t = float(rng.uniform(0.0, 1.0))
        light, dark = np.array([150.0, 182.0, 228.0]), np.array([78.0, 108.0, 152.0])
        skin = (light * (1 - t) + dark * t) * rng.uniform(0.97, 1.03, 3)
        hairs = [(22, 22, 26), (34, 42, 58), (42, 62, 92), (78, 118, 160), (120, 122, 126)]
        hair = np.array(hairs[int(rng.choice(5, p=[0.3, 0.3, 0.2, 0.1, 0.1]))], float) * rng.uniform(0.9, 1.1)
        irises = [(38, 58, 80), (30, 40, 52), (110, 90, 60), (70, 100, 80)]
        iris = irises[int(rng.choice(4, p=[0.45, 0.25, 0.2, 0.1]))]
        lips = np.array([100.0, 106.0, 178.0]) * (0.8 + 0.2 * (1 - t)) * rng.uniform(0.95, 1.05)
        shirt = rng.uniform(40.0, 170.0, 3)
        def col(v):
            return tuple(round(float(c), 1) for c in np.clip(v, 0, 255))

        return cls(skin=col(skin), hair=col(hair), iris=col(iris), lips=col(lips), shirt=col(shirt),
                   face_width=round(float(rng.uniform(0.92, 1.08)), 3),
                   eye_spacing=round(float(rng.uniform(0.37, 0.43)), 3),
                   brow_weight=round(float(rng.uniform(0.7, 1.35)), 3))


DEFAULT_APPEARANCE = FaceAppearance()


class _Palette:
    """Colours derived from an appearance (cached per appearance)."""

    def __init__(self, a: FaceAppearance) -> None:
        self.a = a
        self.skin_base = np.array(a.skin)
        self.hair = a.hair
        self.hair_light = tuple(min(c * 1.4 + 6, 255.0) for c in a.hair)
        self.brow = tuple(min(c * 1.05, 255.0) for c in np.minimum(np.array(a.hair), self.skin_base * 0.32))
        self.iris = a.iris
        self.lip = a.lips
        self.lip_up = tuple(c * 0.9 for c in a.lips)
        self.shirt = a.shirt
        self.shirt_dark = tuple(c * 0.8 for c in a.shirt)

    def skin(self, f: float) -> Tuple[float, float, float]:
        c = np.minimum(self.skin_base * f, 255.0)
        return float(c[0]), float(c[1]), float(c[2])


_PALETTES: Dict[FaceAppearance, _Palette] = {}


def _palette(a: FaceAppearance) -> _Palette:
    pal = _PALETTES.get(a)
    if pal is None:
        if len(_PALETTES) > 64:
            _PALETTES.clear()
        pal = _PALETTES[a] = _Palette(a)
    return pal


def _unit(name: str, v: float) -> float:
    v = float(v)
    if not math.isfinite(v) or v < -1e-6 or v > 1 + 1e-6:
        raise ValueError(f"FaceState.{name} must be in [0, 1], got {v!r}")
    return min(max(v, 0.0), 1.0)


# --------------------------------------------------------------------------- static scene cache
class _Scene:
    """Per frame-size constants: background, its ramp product, noise tiles."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.bg = _draw_room(width, height)
        ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
        self.bg_ramp = np.clip(self.bg.astype(np.float32) * ramp + 0.5, 0, 255).astype(np.uint8)
        rng = np.random.default_rng(20240917)
        n = np.rint(rng.normal(0.0, _NOISE_SIGMA, (height + _NOISE_ROWS, width, 3))).astype(np.int16)
        n = np.clip(n, -12, 12)
        self.noise_pos = np.maximum(n, 0).astype(np.uint8)
        self.noise_neg = np.maximum(-n, 0).astype(np.uint8)


_SCENES: Dict[Tuple[int, int], _Scene] = {}
_SCENES_LOCK = threading.Lock()


def _scene(width: int, height: int) -> _Scene:
    key = (width, height)
    with _SCENES_LOCK:
        sc = _SCENES.get(key)
        if sc is None:
            if len(_SCENES) >= 4:
                _SCENES.pop(next(iter(_SCENES)))
            sc = _SCENES[key] = _Scene(width, height)
        return sc


def _draw_room(w: int, h: int) -> np.ndarray:
    """A plain office wall seen behind a participant: door frame, a shelf, a picture, a lamp."""
    rng = np.random.default_rng(7)
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    top = np.array([200.0, 203.0, 206.0], np.float32)
    bottom = np.array([168.0, 176.0, 184.0], np.float32)
    img = (top * (1 - y) + bottom * y) * np.ones((1, w, 1), np.float32)
    # low-frequency wall texture
    tex = rng.normal(0.0, 1.0, (max(h // 40, 2), max(w // 40, 2))).astype(np.float32)
    tex = cv2.resize(tex, (w, h), interpolation=cv2.INTER_CUBIC)
    img += 4.0 * tex[:, :, None]
    img = np.clip(img, 0, 255).astype(np.uint8)

    def r(x0, y0, x1, y1, col, thick=-1):
        cv2.rectangle(img, (int(x0 * w), int(y0 * h)), (int(x1 * w), int(y1 * h)), col, thick, cv2.LINE_AA)

    # ceiling edge
    r(0.0, 0.0, 1.0, 0.045, (214, 216, 218))
    cv2.line(img, (0, int(0.045 * h)), (w, int(0.045 * h)), (150, 155, 160), max(1, h // 360), cv2.LINE_AA)
    # door on the left: frame, leaf, handle
    r(0.025, 0.12, 0.19, 1.0, (92, 112, 132))
    r(0.038, 0.15, 0.177, 1.0, (128, 152, 176))
    r(0.05, 0.2, 0.165, 0.52, (120, 143, 166), max(1, h // 360))
    r(0.05, 0.58, 0.165, 0.98, (120, 143, 166), max(1, h // 360))
    cv2.circle(img, (int(0.155 * w), int(0.62 * h)), max(2, h // 110), (70, 90, 110), -1, cv2.LINE_AA)
    # picture on the right (abstract landscape: sky band, hills)
    r(0.76, 0.16, 0.95, 0.42, (60, 60, 62))
    r(0.77, 0.178, 0.94, 0.402, (205, 180, 150))
    pts = np.array([[0.77, 0.33], [0.82, 0.29], [0.87, 0.32], [0.91, 0.28], [0.94, 0.31], [0.94, 0.402],
                    [0.77, 0.402]]) * [w, h]
    cv2.fillPoly(img, [pts.astype(np.int32)], (90, 140, 110), cv2.LINE_AA)
    # shelf with books on the right, lower half
    r(0.70, 0.62, 0.99, 0.645, (80, 100, 120))
    x = 0.72
    while x < 0.96:
        bw = float(rng.uniform(0.008, 0.018))
        bh = float(rng.uniform(0.09, 0.14))
        col = tuple(int(c) for c in rng.integers(40, 200, 3))
        r(x, 0.62 - bh, x + bw, 0.62, col)
        x += bw + 0.002
    # a standing lamp at the far left edge of the wall between door and participant
    cv2.line(img, (int(0.27 * w), int(0.38 * h)), (int(0.27 * w), h), (60, 60, 60), max(2, h // 180), cv2.LINE_AA)
    lamp = np.array([[0.245, 0.38], [0.295, 0.38], [0.283, 0.30], [0.257, 0.30]]) * [w, h]
    cv2.fillPoly(img, [lamp.astype(np.int32)], (196, 226, 236), cv2.LINE_AA)
    # out of focus, as a webcam focused on the face would see it
    k = max(3, int(h / 160) * 2 + 1)
    return cv2.GaussianBlur(img, (k, k), 0)


# --------------------------------------------------------------------------- geometry
class _Pose:
    """Orthographic projection of face-model points (x right, y down, z towards the camera,
    units of head half-width) into canvas pixels."""

    def __init__(self, state: FaceState, unit_px: float, origin: Tuple[float, float], fw: float = 1.0) -> None:
        yaw, pitch, roll = (math.radians(state.yaw_deg), math.radians(state.pitch_deg),
                            math.radians(state.roll_deg))
        cy_, sy_ = math.cos(yaw), math.sin(yaw)
        cp, sp = math.cos(pitch), math.sin(pitch)
        cr, sr = math.cos(roll), math.sin(roll)
        ry = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
        rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        rz = np.array([[cr, sr, 0], [-sr, cr, 0], [0, 0, 1]])
        self.rot = (rz @ rx @ ry)[:2]            # only x', y' are needed
        self.roll2 = rz[:2, :2]
        self.s = unit_px
        self.o = np.array(origin, np.float64)
        self.yaw_s = sy_
        self.fw = fw                              # head half-width (x radius of the ellipsoid)

    def surface(self, x: np.ndarray, y: np.ndarray, dz: float = 0.0) -> np.ndarray:
        """Points on the face surface (ellipsoid) plus a depth offset -> canvas px (N, 2)."""
        z = np.sqrt(np.maximum(0.0, 1.0 - (x / self.fw) ** 2 - (y / _HEAD_RY) ** 2)) * 0.95 + dz
        p = np.stack([x, y, z])
        return (self.rot @ p).T * self.s + self.o

    def flat(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Points rotated in the image plane only (silhouette shapes) -> canvas px."""
        return (self.roll2 @ np.stack([x, y])).T * self.s + self.o


_T16 = np.linspace(0.0, 1.0, 16)
_T10 = np.linspace(0.0, 1.0, 10)
_ANG48 = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
_ANG24 = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)


def _bez(p0, pm, p2, t=_T16):
    """Quadratic Bezier from p0 to p2 passing through pm at t=0.5 -> (x array, y array)."""
    p0, pm, p2 = (np.asarray(v, np.float64) for v in (p0, pm, p2))
    c = 2 * pm - 0.5 * (p0 + p2)
    tt = t[:, None]
    pts = (1 - tt) ** 2 * p0 + 2 * (1 - tt) * tt * c + tt ** 2 * p2
    return pts[:, 0], pts[:, 1]


def _ellipse_xy(cx, cy, rx, ry, ang=_ANG24):
    return cx + rx * np.cos(ang), cy + ry * np.sin(ang)


def _head_outline(ang=_ANG48):
    """Egg-shaped head silhouette: narrower jaw and chin."""
    s = np.sin(ang)
    rx = 1.0 - 0.2 * np.maximum(s, 0.0) ** 2
    return rx * np.cos(ang), _HEAD_RY * s


def face_geometry(state: FaceState, *, width: int, height: int,
                  appearance: Optional[FaceAppearance] = None) -> Dict[str, Tuple[float, float]]:
    """Where the renderer puts the face in a ``width x height`` frame (for tests and truth).

    Returns
    -------
    dict
        ``centre``, ``left_eye``, ``right_eye`` (image-left / image-right eye centres), ``mouth``,
        in frame pixels (x, y), and ``unit_px`` (head half-width in pixels) as ``(value, value)``.
    """
    s = _FACE_UNIT * height * float(state.scale)
    c = (state.cx * width, state.cy * height)
    a = appearance or DEFAULT_APPEARANCE
    pose = _Pose(state, s, c, a.face_width)
    pts = pose.surface(np.array([-a.eye_spacing, a.eye_spacing, 0.0]), np.array([-0.12, -0.12, 0.62]), -0.06)
    return {"centre": c, "left_eye": tuple(pts[0]), "right_eye": tuple(pts[1]), "mouth": tuple(pts[2]),
            "unit_px": (s, s)}


# --------------------------------------------------------------------------- drawing helpers
def _poly(img, pts, col):
    cv2.fillPoly(img, [np.rint(pts * (1 << _SHIFT)).astype(np.int32)], col, cv2.LINE_AA, _SHIFT)


def _line(img, pts, col, thick):
    cv2.polylines(img, [np.rint(pts * (1 << _SHIFT)).astype(np.int32)], False, col,
                  max(1, int(round(thick))), cv2.LINE_AA, _SHIFT)


def _sym(x, y):
    """Mirror a right-side shape (x>0) to the left side: returns [(x, y) right, (x, y) left]."""
    return ((x, y), (-x, y))


# --------------------------------------------------------------------------- the face
def _draw_face(canvas: np.ndarray, mask: np.ndarray, state: FaceState, pose: _Pose,
               prm: Dict[str, float], openness: float, pal: _Palette) -> None:
    s = pose.s
    g = prm
    # neck (not turned by the head pose) -----------------------------------------------------
    nx = np.array([-0.44, 0.44, 0.5, 0.0, -0.5])
    ny = np.array([0.7, 0.7, 1.85, 1.97, 1.85])
    neck = pose.o + np.stack([nx, ny], 1) * s
    _poly(canvas, neck, pal.skin(0.72))
    _poly(mask, neck, 255)
    # hair behind the head ------------------------------------------------------------------
    ang = np.linspace(np.pi * 0.92, np.pi * 2.08, 30)
    hx = 1.12 * pose.fw * np.cos(ang) - 0.12 * pose.yaw_s
    hy = -0.1 + 1.45 * np.sin(ang)
    hx = np.concatenate([hx, np.array([1.08, 1.0, 0.9, -0.9, -1.0, -1.08]) * pose.fw])
    hy = np.concatenate([hy, [0.3, 0.42, 0.4, 0.4, 0.42, 0.3]])
    back = pose.flat(hx, hy)
    _poly(canvas, back, pal.hair)
    _poly(mask, back, 255)
    # ears -----------------------------------------------------------------------------------
    for sx in (1.0, -1.0):
        ctr = pose.surface(np.array([sx * 0.97 * pose.fw]), np.array([0.02]), -0.1)[0]
        ex, ey = _ellipse_xy(0.0, 0.02, 0.14, 0.26)
        el = pose.flat(ex, ey) - pose.o + ctr
        _poly(canvas, el, pal.skin(0.78))
        _poly(mask, el, 255)
    # head with soft shading (drawn flat, blurred below) -----------------------------------
    hx, hy = _head_outline()
    hx = hx * pose.fw
    head = pose.flat(hx, hy)
    _poly(canvas, head, pal.skin(0.80))
    _poly(mask, head, 255)
    for k, f in ((0.92, 0.88), (0.82, 0.95), (0.66, 1.0)):
        _poly(canvas, pose.surface(hx * k, hy * k * 0.95 - 0.02, 0.0), pal.skin(f))
    # forehead highlight
    fx, fy = _ellipse_xy(0.0, -0.72, 0.48, 0.2)
    _poly(canvas, pose.surface(fx, fy), pal.skin(1.05))
    # cheeks: raised and brighter with AU6
    cr = g["cheek_raise"]
    for x, _ in _sym(0.47, 0):
        cx_, cy_ = _ellipse_xy(x, 0.2 - 0.07 * cr, 0.24, 0.17)
        _poly(canvas, pose.surface(cx_, cy_), tuple(np.minimum(pal.skin_base * (1.03 + 0.05 * cr) + [0, -3, 5], 255)))
    # eye sockets: the dark band Haar cascades (and people) see
    for x, _ in _sym(pal.a.eye_spacing, 0):
        sx_, sy_ = _ellipse_xy(x, -0.17, 0.27, 0.16)
        _poly(canvas, pose.surface(sx_, sy_, -0.05), pal.skin(0.85))
        sx_, sy_ = _ellipse_xy(x + 0.01, -0.16, 0.21, 0.10)
        _poly(canvas, pose.surface(sx_, sy_, -0.06), pal.skin(0.75))
    # nose: side shadows, bright bridge, tip, shadow under the nose
    for sx in (1.0, -1.0):
        px_ = np.array([0.07, 0.16, 0.17, 0.10]) * sx
        py_ = np.array([-0.08, 0.12, 0.30, 0.30])
        _poly(canvas, pose.surface(px_, py_, 0.10), pal.skin(0.86))
    bx = np.array([-0.045, 0.045, 0.06, -0.06])
    by = np.array([-0.20, -0.20, 0.22, 0.22])
    _poly(canvas, pose.surface(bx, by, 0.16), pal.skin(1.12))
    tx, ty = _ellipse_xy(0.0, 0.24, 0.08, 0.065)
    _poly(canvas, pose.surface(tx, ty, 0.30), pal.skin(1.14))
    ux, uy = _ellipse_xy(0.0, 0.40, 0.19, 0.05)
    _poly(canvas, pose.surface(ux, uy, 0.02), pal.skin(0.74))
    # nasolabial folds and chin shadow
    nl = g["nasolabial"]
    cu = g["corner_up"]
    mw = 0.27 * (1 + 0.22 * g["stretch"])
    myc = 0.62 - 0.075 * cu
    if nl > 0.05:
        for sx in (1.0, -1.0):
            x, y = _bez((0.19 * sx, 0.30), ((mw * 0.9 + 0.06) * sx, 0.47), ((mw + 0.08) * sx, myc + 0.06), _T10)
            _line(canvas, pose.surface(x, y, 0.02), pal.skin(1 - 0.25 * nl), 0.045 * s)
    cx_, cy_ = _ellipse_xy(0.0, 0.86, 0.22, 0.07)
    _poly(canvas, pose.surface(cx_, cy_, 0.0), pal.skin(0.84))
    # blur the shading layer cheaply (downscale, blur, upscale)
    h, w = canvas.shape[:2]
    small = cv2.resize(canvas, (max(w // 4, 2), max(h // 4, 2)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (5, 5), 0)
    cv2.resize(small, (w, h), dst=canvas, interpolation=cv2.INTER_LINEAR)

    # ---- sharp features ---------------------------------------------------------------
    _draw_eyes(canvas, pose, g, openness, pal)
    _draw_brows(canvas, pose, g, pal)
    # nose: alae and nostrils
    for sx in (1.0, -1.0):
        x, y = _bez((0.08 * sx, 0.22), (0.16 * sx, 0.28), (0.10 * sx, 0.355), _T10)
        _line(canvas, pose.surface(x, y, 0.14), pal.skin(0.66), 0.022 * s)
        nx_, ny_ = _ellipse_xy(0.068 * sx, 0.345, 0.036, 0.017)
        _poly(canvas, pose.surface(nx_, ny_, 0.18), pal.skin(0.42))
    nw = g["nose_wrinkle"]
    if nw > 0.05:
        col = pal.skin(1 - 0.35 * nw)
        for yy in (-0.06, 0.0, 0.06):
            x = np.linspace(-0.09, 0.09, 6)
            _line(canvas, pose.surface(x, yy + 0.012 * np.cos(x * 30), 0.16), col, 0.018 * s)
    if g["brow_draw"] > 0.3:
        col = pal.skin(1 - 0.25 * min(g["brow_draw"], 1.0))
        for sx in (1.0, -1.0):
            y = np.linspace(-0.34, -0.22, 4)
            _line(canvas, pose.surface(0.045 * sx + 0 * y, y, 0.02), col, 0.018 * s)
    _draw_mouth(canvas, pose, g, pal)
    # hair over the forehead: between the head's top silhouette and the hairline
    ang = np.linspace(np.pi * 1.06, np.pi * 1.94, 20)
    ox, oy = _head_outline(ang)
    top = pose.flat(ox * 1.005 * pose.fw, oy * 1.005)
    hl_x = np.linspace(0.93, -0.93, 17) * pose.fw
    hl_y = (-0.80 + 0.34 * (np.abs(hl_x) / (0.93 * pose.fw)) ** 2.2 + 0.05 * hl_x     # side parting
            - 0.03 * np.exp(-((hl_x + 0.3) / 0.12) ** 2))
    hairline = pose.surface(hl_x, hl_y, 0.0)
    _poly(canvas, np.concatenate([top, hairline]), pal.hair)
    # a few strands for texture
    for k in range(-5, 6):
        x = np.array([k * 0.13 - 0.3, k * 0.15 - 0.18, k * 0.16 + 0.02])
        y = np.array([-1.28, -1.05, -0.84 + 0.28 * (abs(k) / 5) ** 2])
        _line(canvas, pose.surface(x, y), pal.hair_light, 0.012 * s)
    # camera softness
    cv2.GaussianBlur(canvas, (3, 3), 0, dst=canvas)


def _draw_eyes(canvas, pose: _Pose, g, openness: float, pal: _Palette) -> None:
    s = pose.s
    up, lo = g["upper_lid"], g["lower_lid"]
    hu_open = 0.105 * (1 + 0.45 * up)
    hl = 0.055 * (1 - 0.55 * lo)
    t = np.linspace(-1.0, 1.0, 13)
    for sx in (1.0, -1.0):
        ex, ey = pal.a.eye_spacing * sx, -0.12
        ew = 0.19
        x = ex + ew * t * sx                           # t=-1 inner corner, t=+1 outer corner
        tilt = -0.012 * t                              # outer corner slightly higher
        lower_y = ey + tilt + hl * (1 - t * t)
        open_y = ey + tilt - hu_open * (1 - t * t) ** 0.8 * (1 - 0.12 * t)
        upper_y = lower_y + (open_y - lower_y) * openness
        # the aperture (sclera) between the lids; iris and pupil clipped to it
        ap = pose.surface(np.concatenate([x, x[-2:0:-1]]), np.concatenate([upper_y, lower_y[-2:0:-1]]), -0.06)
        ap32 = ap.astype(np.float32)
        if openness > 0.02 and cv2.contourArea(ap32) > 1.0:
            _poly(canvas, ap, _SCLERA)
            for r, col, dz in ((0.078, pal.iris, -0.04), (0.034, _PUPIL, -0.03)):
                ix, iy = _ellipse_xy(ex - 0.01 * sx, ey - 0.005, r, r)
                area, inter = cv2.intersectConvexConvex(ap32, pose.surface(ix, iy, dz).astype(np.float32))
                if inter is not None and area > 0.5:
                    _poly(canvas, inter.reshape(-1, 2).astype(np.float64), col)
            gx, gy = _ellipse_xy(ex + 0.02 - 0.01 * sx, ey - 0.035, 0.013, 0.013, _ANG24[::3])
            glint = pose.surface(gx, gy, -0.02)
            if cv2.pointPolygonTest(ap32, tuple(float(v) for v in glint.mean(0)), False) > 0:
                _poly(canvas, glint, (235, 240, 245))
        # crease above the lid, lashes on the upper lid, lower lid line
        cy_ = ey + tilt - (hu_open + 0.065 - 0.02 * up) * (1 - t * t) ** 0.7
        _line(canvas, pose.surface(x[1:-1], cy_[1:-1], -0.04), pal.skin(0.62), 0.016 * s)
        _line(canvas, pose.surface(x, upper_y, -0.05), _LASH, (0.018 + 0.014 * openness) * s)
        _line(canvas, pose.surface(x[2:], lower_y[2:], -0.05), pal.skin(0.6), 0.014 * s)
        if lo > 0.3:  # crow's feet / lower-lid bulge of AU6-7
            col = pal.skin(1 - 0.2 * min(lo, 1.0))
            for dy in (-0.04, 0.03):
                xx = np.array([ex + 0.22 * sx, ex + 0.30 * sx])
                _line(canvas, pose.surface(xx, np.array([ey, ey + dy * 1.5]), -0.02), col, 0.014 * s)


def _draw_brows(canvas, pose: _Pose, g, pal: _Palette) -> None:
    raise_, inner, draw = g["brow_raise"], g["brow_inner"], g["brow_draw"]
    for sx in (1.0, -1.0):
        d = pal.a.eye_spacing - 0.40
        pi = (sx * (0.15 + d - 0.06 * draw), -0.335 - 0.10 * raise_ - 0.11 * inner + 0.02 * draw)
        pm = (sx * (0.40 + d - 0.02 * draw), -0.415 - 0.11 * raise_ - 0.025 * inner + 0.015 * draw)
        po = (sx * (0.64 + d), -0.35 - 0.08 * raise_ + 0.035 * inner)
        x, y = _bez(pi, pm, po, _T10)
        thick = np.linspace(0.075, 0.035, len(x)) * pal.a.brow_weight
        pts = pose.surface(np.concatenate([x, x[::-1]]), np.concatenate([y - thick * 0.5, (y + thick * 0.5)[::-1]]),
                           0.0)
        _poly(canvas, pts, pal.brow)


def _draw_mouth(canvas, pose: _Pose, g, pal: _Palette) -> None:
    s = pose.s
    cu, st, op, pr = g["corner_up"], g["stretch"], g["open"], g["press"]
    ul, lu, tt = g["upper_lip"], g["lower_lip_up"], g["teeth"]
    w = 0.27 * (1 + 0.22 * st)
    ymid = 0.62
    yc = ymid - 0.075 * cu
    ut = 0.05 * (1 - 0.65 * pr)
    lt = 0.068 * (1 - 0.6 * pr) * (1 + 0.2 * lu)
    gap = 0.21 * op + 0.035 * ul
    up_in = ymid - 0.045 * ul - 0.2 * gap + 0.01 * cu
    lo_in = ymid + 0.8 * gap - 0.02 * lu + 0.01 * cu
    L, R = (-w, yc), (w, yc)
    xu_i, yu_i = _bez(L, (0, up_in), R)
    xl_i, yl_i = _bez(L, (0, lo_in), R)
    xu_o, yu_o = _bez((-w - 0.01, yc), (0, up_in - ut), (w + 0.01, yc))
    xl_o, yl_o = _bez((-w - 0.01, yc), (0, lo_in + lt), (w + 0.01, yc))
    dz = 0.04
    # cupid's bow: a small dip in the middle of the upper lip's outline
    bow = 0.012 * np.exp(-((xu_o / 0.05) ** 2))
    yu_o = yu_o + bow
    if gap > 0.006:
        _poly(canvas, pose.surface(np.concatenate([xu_i, xl_i[::-1]]), np.concatenate([yu_i, yl_i[::-1]]), dz),
              _MOUTH_IN)
        if tt > 0.05:
            t = np.linspace(-1, 1, len(xu_i))
            th = min(0.075 * tt, gap * 0.7) * (1 - t * t)
            _poly(canvas, pose.surface(np.concatenate([xu_i, xu_i[::-1]]),
                                       np.concatenate([yu_i, (yu_i + th)[::-1]]), dz), _TEETH)
            _poly(canvas, pose.surface(np.concatenate([xl_i, xl_i[::-1]]),
                                       np.concatenate([yl_i, (yl_i - 0.35 * th)[::-1]]), dz),
                  (190, 200, 206))
    _poly(canvas, pose.surface(np.concatenate([xu_o, xu_i[::-1]]), np.concatenate([yu_o, yu_i[::-1]]), dz), pal.lip_up)
    _poly(canvas, pose.surface(np.concatenate([xl_i, xl_o[::-1]]), np.concatenate([yl_i, yl_o[::-1]]), dz), pal.lip)
    # lip line / corners
    col = (50, 48, 90) if gap <= 0.006 else (40, 34, 70)
    _line(canvas, pose.surface(xu_i, yu_i if gap > 0.006 else 0.5 * (yu_i + yl_i), dz), col, 0.018 * s)
    # shadow under the lower lip
    sx_, sy_ = _ellipse_xy(0.0, lo_in + lt + 0.05, 0.14, 0.03, _ANG24[::2])
    _poly(canvas, pose.surface(sx_, sy_, dz), pal.skin(0.80))


# --------------------------------------------------------------------------- public entry
def _noise_offset(state: FaceState) -> int:
    key = repr(astuple(state)).encode()
    return zlib.crc32(key) % _NOISE_ROWS


def render_face(state: FaceState, *, width: int, height: int, out: Optional[np.ndarray] = None,
                appearance: Optional[FaceAppearance] = None) -> np.ndarray:
    """Render one synthetic webcam frame showing the phantom's face.

    Parameters
    ----------
    state : FaceState
        Expression, blink, head pose, position, size and lighting at this instant.
    width, height : int
        Frame size in pixels (>= 64 x 48).
    out : ndarray, optional
        C-contiguous ``(height, width, 3)`` uint8 array to render into (no allocation).
    appearance : FaceAppearance, optional
        The person's look (default :data:`DEFAULT_APPEARANCE`; see
        :meth:`FaceAppearance.for_participant`).

    Returns
    -------
    ndarray
        ``(height, width, 3)`` uint8 BGR frame (``out`` when given). The same state and size
        always give the same frame.

    Notes
    -----
    Cost is dominated by two full-frame passes (lighting of the cached room and the noise tile)
    plus drawing on a canvas the size of the head; about 2-4 ms at 1280x720 on one core.
    """
    if not isinstance(state, FaceState):
        raise TypeError(f"state must be a FaceState, got {type(state).__name__}")
    width, height = int(width), int(height)
    if width < 64 or height < 48:
        raise ValueError(f"frame size must be at least 64x48, got {width}x{height}")
    for name in ("yaw_deg", "pitch_deg", "roll_deg", "cx", "cy", "scale", "light_gain", "light_gradient"):
        v = getattr(state, name)
        if not math.isfinite(float(v)):
            raise ValueError(f"FaceState.{name} must be finite, got {v!r}")
    if not (0.1 <= state.scale <= 5.0):
        raise ValueError(f"FaceState.scale must be in [0.1, 5], got {state.scale!r}")
    if not (0.0 <= state.light_gain <= 4.0):
        raise ValueError(f"FaceState.light_gain must be in [0, 4], got {state.light_gain!r}")
    if not (-1.0 <= state.light_gradient <= 1.0):
        raise ValueError(f"FaceState.light_gradient must be in [-1, 1], got {state.light_gradient!r}")
    openness = _unit("eye_openness", state.eye_openness)
    prm = expression_params(state)
    if appearance is None:
        appearance = DEFAULT_APPEARANCE
    elif not isinstance(appearance, FaceAppearance):
        raise TypeError(f"appearance must be a FaceAppearance, got {type(appearance).__name__}")
    pal = _palette(appearance)
    if out is None:
        out = np.empty((height, width, 3), np.uint8)
    elif out.shape != (height, width, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous ({height}, {width}, 3) uint8 array, "
                         f"got {out.shape} {out.dtype}")
    sc = _scene(width, height)
    gain, grad = float(state.light_gain), float(state.light_gradient)

    # 1. lit background: gain(x) = gain * (1 + k * grad * (2 r - 1)), r = x / width
    k = 0.35
    cv2.addWeighted(sc.bg, gain * (1 - k * grad), sc.bg_ramp, 2 * gain * k * grad, 0.0, dst=out)
    def frame_gain(xf: float) -> float:
        return gain * (1 + k * grad * (2 * xf - 1))

    s = _FACE_UNIT * height * float(state.scale)
    fx, fy = state.cx * width, state.cy * height
    # 2. torso (not turned by the head pose)
    tg = frame_gain(state.cx)
    tx = np.array([-0.55, -0.3, 0.0, 0.3, 0.55, 1.55, 2.25, 2.6, 2.8, -2.8, -2.6, -2.25, -1.55])
    ty = np.array([1.64, 1.81, 1.94, 1.81, 1.64, 1.88, 2.21, 2.86, 6.0, 6.0, 2.86, 2.21, 1.88])
    torso = np.stack([fx + tx * s, fy + ty * s], 1)
    _poly(out, torso, tuple(min(c * tg, 255) for c in pal.shirt))
    _line(out, torso[:5], tuple(min(c * tg, 255) for c in pal.shirt_dark), 0.05 * s)

    # 3. head on a small canvas, composited into its region of the frame
    x0 = int(math.floor(fx + _CANVAS_X[0] * s))
    y0 = int(math.floor(fy + _CANVAS_Y[0] * s))
    x1 = x0 + -(-int(math.ceil(fx + _CANVAS_X[1] * s - x0)) // 4) * 4    # sides multiples of 4: the
    y1 = y0 + -(-int(math.ceil(fy + _CANVAS_Y[1] * s - y0)) // 4) * 4    # shading blur shrinks by 4
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 - cx0 >= 2 and cy1 - cy0 >= 2:
        cw, ch = x1 - x0, y1 - y0
        canvas = np.empty((ch, cw, 3), np.uint8)
        cv2.rectangle(canvas, (0, 0), (cw, ch), pal.hair, -1)
        mask = np.zeros((ch, cw), np.uint8)
        pose = _Pose(state, s, (fx - x0, fy - y0), appearance.face_width)
        _draw_face(canvas, mask, state, pose, prm, openness, pal)
        # lighting: frame-wide ramp at the face plus a stronger ramp across the face
        xs = np.arange(x0, x1, dtype=np.float32)
        u = np.clip((xs - fx) / (1.1 * s), -1.0, 1.0)
        row = gain * (1 + k * grad * (2 * xs / width - 1)) * (1 + 0.45 * grad * u)
        sub = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        # (cv2 instead of numpy broadcasting: 3-channel broadcasts and uint8->float casts are
        # ~10x slower in numpy)
        face = np.ascontiguousarray(canvas[sub])
        g8 = np.clip(np.rint(row[sub[1]] * 100.0), 0, 255).astype(np.uint8)
        gain_img = cv2.repeat(np.repeat(g8[:, None], 3, 1)[None], face.shape[0], 1)
        cv2.multiply(face, gain_img, dst=face, scale=0.01)
        m = np.ascontiguousarray(mask[sub])
        w_face = cv2.multiply(m, 1.0 / 255.0, dtype=cv2.CV_32F)
        w_bg = cv2.multiply(cv2.bitwise_not(m), 1.0 / 255.0, dtype=cv2.CV_32F)
        roi = out[cy0:cy1, cx0:cx1]
        roi[:] = cv2.blendLinear(face, roi, w_face, w_bg)

    # 4. sensor noise from the precomputed tile
    o = _noise_offset(state)
    cv2.add(out, sc.noise_pos[o:o + height], dst=out)
    cv2.subtract(out, sc.noise_neg[o:o + height], dst=out)
    return out
