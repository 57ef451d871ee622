"""What the face fallback costs at inference: ``LoadedModel.predict`` with a stored fallback
against the same checkpoint's single fused pass, measured in the same run, round-robin.

The fallback scores the windows that have a face and eyes a second time with the eyes masked;
the face encoder's output is reused (``EMERT.encode_face``), so only the projection, LSTMs,
MAFD and the transformer run twice. Also times the naive second pass (the ResNet run again),
to show what the reuse saves. Prints medians and ratios to the fused pass (> 1 = slower).

    python benchmarks/bench_face_fallback.py [--checkpoint models/emert_demo_synthetic.pt] [--threads 1] [--batch 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emer_live.model import load_checkpoint, select_device  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(Path(__file__).resolve().parents[1] / "models/emert_demo_synthetic.pt"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1, help="windows per call (the live engine: usually 1)")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    dev = select_device("auto", num_threads=args.threads)
    torch.set_num_threads(args.threads)
    m = load_checkpoint(args.checkpoint, device=dev)
    if m.face_fallback is None:  # time the mechanism even for a checkpoint without one
        m = type(m)(**{**m.__dict__, "inference": {"face_fallback": {"threshold": 0.5}}})
    rng = np.random.default_rng(0)
    b = args.batch
    face = rng.random((b, 8, 3, 112, 112), dtype=np.float32)
    eye = rng.standard_normal((b, 32, 39), dtype=np.float32)
    fix = rng.standard_normal((b, 32, 2), dtype=np.float32)
    face_mask = np.tile([True, False, False], (b, 1))

    def fused():
        m.predict(face, eye, fix, face_fallback=False)

    def fallback():
        m.predict(face, eye, fix)

    def naive():  # what the fallback would cost without reusing the face encoder
        m.predict(face, eye, fix, face_fallback=False)
        m.predict(face, eye, fix, modality_mask=face_mask, face_fallback=False)

    fns = [fused, fallback, naive]
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(args.rounds):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[i].append(time.perf_counter() - t0)
    med = [statistics.median(t) * 1e3 for t in times]
    print(f"device {dev} | threads {torch.get_num_threads()} | batch {b} | {args.rounds} rounds | {Path(args.checkpoint).name}")
    print(f"  fused pass (baseline)        {med[0]:7.1f} ms  1.00x")
    print(f"  with face fallback           {med[1]:7.1f} ms  {med[1] / med[0]:.2f}x")
    print(f"  naive second pass (no reuse) {med[2]:7.1f} ms  {med[2] / med[0]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
