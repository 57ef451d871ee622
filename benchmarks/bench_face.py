"""Benchmark: the face pipeline against detect-every-frame at full resolution, same run, one thread.

Renders a synthetic 1280x720 webcam sequence (the phantom face renderer: head moving through the
yaw/pitch/roll, position, size and lighting ranges the phantom produces, changing expressions,
blinks) and times, per frame,

* **pipeline**: :class:`emer_live.features.face.FacePipeline` with its defaults (whole-frame
  detection on a 320-pixel-wide copy only when no face is known, template tracking between region
  re-detections every 10 frames, eye cascade, illumination normalisation, 112x112 crop);
* **baseline**: the same pipeline reset before every frame with ``detect_width`` = frame width, so
  every frame runs the Haar face cascade over the full-resolution frame (then the same eyes,
  normalisation and crop).

Rendering is not timed (it is reported separately). Prints ms/frame (mean, p50, p95, max), fps,
the speed-up and the fraction of frames with a face for both, and whether the pipeline sustains
the camera rate (mean and p95 under the frame period). Absolute times depend on the machine;
compare the ratio.

Usage::

    python benchmarks/bench_face.py [--frames 300] [--baseline-every 5] [--size 1280x720] [--fps 30]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import cv2
import numpy as np

from emer_live.features.face import FaceConfig, FacePipeline
from emer_live.phantom.face_render import render_face
from emer_live.phantom.face_state import EMOTIONS7, FaceState


def states(n: int, fps: float, seed: int):
    """A smooth, varied sequence: every pose/lighting variable drifts on its own slow sinusoids."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.05, 0.35, (9, 2))          # Hz, two components per variable
    ph = rng.uniform(0, 2 * np.pi, (9, 2))
    blink_at = set()
    t = 0.0
    while t < n / fps:
        t += rng.uniform(2.4, 6.0)               # 10-25 blinks a minute
        k = int(t * fps)
        blink_at.update(range(k, k + int(rng.integers(3, 8))))
    for k in range(n):
        t = k / fps

        def wave(i):
            return 0.5 * (math.sin(2 * np.pi * f[i, 0] * t + ph[i, 0]) + math.sin(2 * np.pi * f[i, 1] * t + ph[i, 1]))

        seg = int(t // 3.0)                      # a new expression every 3 s, 1 s transitions
        cur, prev = EMOTIONS7[seg % 7], EMOTIONS7[(seg - 1) % 7]
        w = min((t - 3.0 * seg) / 1.0, 1.0)
        yield FaceState(expression=prev if w < 1 else cur, blend_expression=cur if w < 1 and seg > 0 else None,
                        blend=w if w < 1 and seg > 0 else 0.0, intensity=0.4 + 0.6 * abs(wave(8)),
                        eye_openness=0.0 if k in blink_at else 1.0,
                        yaw_deg=15 * wave(0), pitch_deg=15 * wave(1), roll_deg=10 * wave(2),
                        cx=0.5 + 0.1 * wave(3), cy=0.5 + 0.1 * wave(4), scale=1.0 + 0.15 * wave(5),
                        light_gain=0.95 + 0.35 * wave(6), light_gradient=0.5 * wave(7))


def summary(name: str, ms: np.ndarray, found: int, n: int) -> str:
    return (f"{name:<10} {ms.mean():7.2f} ms/frame (p50 {np.percentile(ms, 50):6.2f}, "
            f"p95 {np.percentile(ms, 95):6.2f}, "
            f"max {ms.max():6.2f})  {1000.0 / ms.mean():7.1f} fps  face found {found}/{n} = {found / n:.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="frames in the sequence (default 300 = 10 s)")
    ap.add_argument("--baseline-every", type=int, default=5,
                    help="run the (slow) baseline on every k-th frame of the same sequence (default 5)")
    ap.add_argument("--size", default="1280x720", help="frame size WxH (default 1280x720)")
    ap.add_argument("--fps", type=float, default=30.0, help="camera rate to sustain (default 30)")
    ap.add_argument("--seed", type=int, default=1, help="motion seed (default 1)")
    args = ap.parse_args(argv)
    if args.frames < 10 or args.baseline_every < 1 or args.fps <= 0:
        ap.error("--frames must be >= 10, --baseline-every >= 1, --fps > 0")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size {args.size!r}: expected WIDTHxHEIGHT")
    cv2.setNumThreads(1)

    pipe = FacePipeline(FaceConfig())
    base = FacePipeline(FaceConfig(detect_width=max(width, 64)))
    frame = np.empty((height, width, 3), np.uint8)
    render_ms, pipe_ms, base_ms = [], [], []
    pipe_found = base_found = 0
    n_base = 0
    for k, s in enumerate(states(args.frames, args.fps, args.seed)):
        t0 = time.perf_counter()
        render_face(s, width=width, height=height, out=frame)
        t1 = time.perf_counter()
        res = pipe.process(frame, int(k * 1e6 / args.fps))
        t2 = time.perf_counter()
        render_ms.append((t1 - t0) * 1e3)
        pipe_ms.append((t2 - t1) * 1e3)
        pipe_found += res.found
        if k % args.baseline_every == 0:
            base.reset()
            t3 = time.perf_counter()
            r = base.process(frame, int(k * 1e6 / args.fps))
            base_ms.append((time.perf_counter() - t3) * 1e3)
            base_found += r.found
            n_base += 1
    pipe_ms, base_ms, render_ms = np.array(pipe_ms), np.array(base_ms), np.array(render_ms)
    period = 1000.0 / args.fps
    print(f"face pipeline benchmark: {args.frames} frames {width}x{height}, 1 thread, OpenCV {cv2.__version__}")
    print(summary("pipeline", pipe_ms, pipe_found, args.frames))
    print(summary("baseline", base_ms, base_found, n_base) + "   (Haar on every full-resolution frame)")
    print(f"speed-up   {base_ms.mean() / pipe_ms.mean():7.1f}x  (baseline mean / pipeline mean)")
    c = pipe.counts
    print(f"pipeline paths: whole-frame detections {c['detect_full']}, region re-detections {c['detect_roi']}, "
          f"tracked {c['tracked']}, lost {c['lost']}; eyes: cascade {c['eyes_cascade']}, "
          f"tracked {c['eyes_tracked']}, carried {c['eyes_carried']}, geometric {c['eyes_geometric']}")
    print(f"renderer   {render_ms.mean():7.2f} ms/frame (p95 {np.percentile(render_ms, 95):.2f}) (not included above)")
    sustained = pipe_ms.mean() < period and np.percentile(pipe_ms, 95) < period
    print(f"sustains {args.fps:g} fps: {'yes' if sustained else 'NO'} (frame period {period:.1f} ms; pipeline mean "
          f"{pipe_ms.mean():.2f} ms, p95 {np.percentile(pipe_ms, 95):.2f} ms = "
          f"{100 * pipe_ms.mean() / period:.0f}% of one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
