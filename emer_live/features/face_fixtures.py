"""Real-face test material made offline from scikit-image's bundled images (tests, benchmarks).

scikit-image (the ``test`` extra) ships two sets of real photographs that need no download:
``astronaut()`` (Eileen Collins, NASA, public domain; 512x512 RGB, face ~95 px wide) and
``lfw_subset()`` (Labeled Faces in the Wild: 100 face crops then 100 non-face crops, 25x25 grey).

:func:`fixture_set` turns them into 127 frames with documented changes:

* **astronaut**, 27 frames: the whole image, rotated in the image plane by -20, 0, +20 degrees
  about the face, scaled by 0.75, 1.0, 1.5 (face ~70, 95, 140 px) on a 640x640 grey canvas,
  and lit three ways: as is, dim (gain 0.5), and a left-to-right light gradient (x0.4..x1.4).
* **LFW**, 100 frames: each face crop (tight: brows to chin) upscaled 8x bicubic to 200x200, set
  in a 320x320 canvas (mid grey), face ``i`` rotated by (-15, -7.5, 0, 7.5, 15)[i % 5] degrees
  and lit by (as is, gain 0.6, gain 1.4, gradient)[i % 4].

:func:`astronaut_video_frames` makes the synthetic "webcam": the astronaut, scaled 1.8x (face
~170 px), moving over a 1280x720 frame (Lissajous path, 420 px x 200 px), swaying +-8 degrees and
scaling +-8 %, with the lighting drifting +-20 %, at 30 fps. :func:`write_astronaut_video`
stores it as an MP4 (``emer-live live --camera astronaut.mp4``).

All outputs are BGR uint8 (as cameras deliver them).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, List, NamedTuple, Tuple, Union

import cv2
import numpy as np

from ..errors import ConfigError

__all__ = ["FixtureImage", "fixture_set", "astronaut_bgr", "astronaut_video_frames", "write_astronaut_video",
           "ASTRONAUT_FACE_CENTRE"]

#: The astronaut's face centre in the 512x512 image (between the eyes and the mouth, px).
ASTRONAUT_FACE_CENTRE = (225.0, 120.0)


class FixtureImage(NamedTuple):
    name: str            # e.g. "astronaut_rot-20_scale1.5_dim", "lfw007_rot7.5_gain1.4"
    image: np.ndarray    # BGR uint8


def _skimage_data():
    try:
        from skimage import data
    except ImportError:
        raise ConfigError("the real-face fixtures need scikit-image (the project's `test` extra): "
                          "pip install -e '.[test]' or `make setup`") from None
    return data


def astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(_skimage_data().astronaut(), cv2.COLOR_RGB2BGR)


def _light(img: np.ndarray, kind: str) -> np.ndarray:
    f = img.astype(np.float32)
    if kind == "dim":
        f *= 0.5
    elif kind.startswith("gain"):
        f *= float(kind[4:])
    elif kind == "gradient":
        f *= np.linspace(0.4, 1.4, img.shape[1], dtype=np.float32)[None, :, None]
    return np.clip(f, 0, 255).astype(np.uint8)


def _place(img: np.ndarray, centre: Tuple[float, float], angle: float, scale: float, size: Tuple[int, int],
           fill: int = 128) -> np.ndarray:
    """``img`` rotated by ``angle`` degrees and scaled about ``centre``, which lands in the middle
    of a ``size`` (w, h) canvas."""
    w, h = size
    m = cv2.getRotationMatrix2D(centre, angle, scale)
    m[:, 2] += (w / 2.0 - centre[0], h / 2.0 - centre[1])
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(fill, fill, fill))


def fixture_set() -> List[FixtureImage]:
    """The 127 real-face frames described in the module notes (every one holds one face)."""
    data = _skimage_data()
    out: List[FixtureImage] = []
    astro = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for rot in (-20, 0, 20):
        for scale in (0.75, 1.0, 1.5):
            for light in ("asis", "dim", "gradient"):
                img = _place(astro, ASTRONAUT_FACE_CENTRE, rot, scale, (640, 640))
                out.append(FixtureImage(f"astronaut_rot{rot:+d}_scale{scale}_{light}", _light(img, light)))
    lfw = data.lfw_subset()[:100]                   # the first 100 are the faces
    rots = (-15.0, -7.5, 0.0, 7.5, 15.0)
    lights = ("asis", "gain0.6", "gain1.4", "gradient")
    for i, face in enumerate(lfw):
        g = np.clip(np.asarray(face, np.float64) * 255.0, 0, 255).astype(np.uint8)
        g = cv2.resize(g, (200, 200), interpolation=cv2.INTER_CUBIC)
        bgr = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
        rot, light = rots[i % 5], lights[i % 4]
        img = _place(bgr, (99.5, 99.5), rot, 1.0, (320, 320))
        out.append(FixtureImage(f"lfw{i:03d}_rot{rot:+g}_{light}", _light(img, light)))
    return out


def astronaut_video_frames(n: int = 150, *, width: int = 1280, height: int = 720,
                           fps: float = 30.0) -> Iterator[Tuple[int, np.ndarray]]:
    """``(t_us, frame BGR)`` of the moving astronaut (module notes); deterministic."""
    astro = astronaut_bgr()
    bg = np.empty((height, width, 3), np.uint8)
    bg[:] = (96, 104, 112)
    yy = np.linspace(0.85, 1.1, height, dtype=np.float32)[:, None, None]
    bg = np.clip(bg * yy, 0, 255).astype(np.uint8)           # a wall with some shading
    for k in range(n):
        t = k / fps
        cx = width / 2.0 + 210.0 * math.sin(2 * math.pi * t / 4.0)
        cy = height / 2.0 + 100.0 * math.sin(2 * math.pi * t / 3.0 + 0.5)
        ang = 8.0 * math.sin(2 * math.pi * t / 2.5)
        sc = 1.8 * (1.0 + 0.08 * math.sin(2 * math.pi * t / 3.5))
        m = cv2.getRotationMatrix2D(ASTRONAUT_FACE_CENTRE, ang, sc)
        m[:, 2] += (cx - ASTRONAUT_FACE_CENTRE[0], cy - ASTRONAUT_FACE_CENTRE[1])
        frame = cv2.warpAffine(astro, m, (width, height), dst=bg.copy(), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_TRANSPARENT)
        gain = 1.0 + 0.2 * math.sin(2 * math.pi * t / 5.0)
        frame = cv2.convertScaleAbs(frame, alpha=gain)
        yield int(round(t * 1e6)), frame


def write_astronaut_video(path: Union[str, Path], n: int = 150, *, width: int = 1280, height: int = 720,
                          fps: float = 30.0) -> Path:
    """Write :func:`astronaut_video_frames` to ``path`` (MP4, OpenCV's mp4v codec)."""
    path = Path(path)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not w.isOpened():
        raise ConfigError(f"{path}: OpenCV cannot write an MP4 here (mp4v codec); choose a .avi path")
    try:
        for _, frame in astronaut_video_frames(n, width=width, height=height, fps=fps):
            w.write(frame)
    finally:
        w.release()
    return path
