"""Benchmark: the landmark face pipeline against the Haar pipeline it replaced, same run, one thread.

Three parts, each timing both pipelines on the same frames (rendering/loading not timed):

1. **Real faces** (scikit-image's astronaut + LFW, 127 frames with rotations, scales and lighting
   changes; ``emer_live.features.face_fixtures``): the fraction of frames where each pipeline finds
   a face (each frame on its own).
2. **Astronaut video** (the synthetic 1280x720 "webcam", ``astronaut_video_frames``): ms per frame
   and fps for *tracked* frames and for all frames, the ratio of the landmark pipeline to the Haar
   one, and the alignment of tracked crops (eye-centre error of a fresh detection mapped into the
   tracked crop, pixels at 112x112).
3. **Phantom sequence** (the phantom renderer: head moving through the yaw/pitch/roll, position,
   size and lighting ranges the phantom produces, changing expressions, blinks): ms per frame and
   faces found for both.

Absolute times depend on the machine; compare the ratios.

Usage::

    python benchmarks/bench_face.py [--frames 300] [--video-frames 150] [--size 1280x720] [--fps 30]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import cv2
import numpy as np

from emer_live.features.face import FaceConfig, FacePipeline
from emer_live.features.face_fixtures import astronaut_video_frames, fixture_set
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


PIPES = (("landmarks", "landmarks (new)"), ("haar", "Haar (old)"))


def real_faces() -> None:
    fx = fixture_set()
    print(f"1. real faces: {len(fx)} frames (astronaut x27: rotations -20/0/+20, scales 0.75/1/1.5, 3 lightings; "
          f"LFW x100: upscaled 8x, rotations -15..15, 4 lightings)")
    rates = {}
    for det, label in PIPES:
        p = FacePipeline(FaceConfig(detector=det))
        found, ms, missed = 0, [], []
        for f in fx:
            p.reset()
            t0 = time.perf_counter()
            r = p.process(f.image, 0)
            ms.append((time.perf_counter() - t0) * 1e3)
            found += r.found
            if not r.found:
                missed.append(f.name)
        rates[det] = found / len(fx)
        print(f"   {label:<16} found {found}/{len(fx)} = {found / len(fx):.3f}   {np.mean(ms):6.2f} ms/frame"
              f"   missed: {', '.join(missed[:6])}{' ...' if len(missed) > 6 else ''}")
    print(f"   detection rate new - old: {rates['landmarks'] - rates['haar']:+.3f}")


def video(n: int, width: int, height: int, fps: float) -> None:
    frames = list(astronaut_video_frames(n, width=width, height=height, fps=fps))
    print(f"2. astronaut video: {n} frames {width}x{height} at {fps:g} fps, 1 thread")
    res = {}
    for det, label in PIPES:
        p = FacePipeline(FaceConfig(detector=det))
        ms, methods = [], []
        for t, frame in frames:
            t0 = time.perf_counter()
            r = p.process(frame, t)
            ms.append((time.perf_counter() - t0) * 1e3)
            methods.append(r.method)
        ms = np.array(ms)
        tracked = ms[np.array(methods) == "tracked"]
        res[det] = (ms, tracked)
        found = sum(m != "none" for m in methods)
        print(f"   {label:<16} all frames {ms.mean():6.2f} ms ({1000 / ms.mean():6.1f} fps, p95 "
              f"{np.percentile(ms, 95):6.2f} ms); tracked frames {len(tracked)}/{n}: "
              f"{tracked.mean():6.2f} ms = {1000 / tracked.mean():6.1f} fps; found {found}/{n}")
    new, old = res["landmarks"], res["haar"]
    print(f"   tracked fps new/old: {old[1].mean() / new[1].mean():.2f}x   all frames new/old: "
          f"{old[0].mean() / new[0].mean():.2f}x   (goal: new tracked >= 100 fps: "
          f"{'yes' if 1000 / new[1].mean() >= 100 else 'NO'})")
    cfg = FaceConfig()
    want = np.array([[(0.5 - cfg.eye_dist / 2) * cfg.output_size, cfg.eye_y * cfg.output_size],
                     [(0.5 + cfg.eye_dist / 2) * cfg.output_size, cfg.eye_y * cfg.output_size]])
    p, fresh = FacePipeline(cfg), FacePipeline(cfg)
    errs = []
    for k, (t, frame) in enumerate(frames):
        r = p.process(frame, t)
        if k % 3 == 2 and r.method == "tracked":
            fresh.reset()
            f = fresh.process(frame, t)
            if f.found:
                got = np.array([r.transform @ np.array([x, y, 1.0]) for x, y in f.eyes])
                errs.append(float(np.linalg.norm(got - want, axis=1).max()))
    errs = np.array(errs)
    print(f"   tracked-crop alignment (landmarks): eye-centre error vs a fresh detection, px at "
          f"{cfg.output_size}x{cfg.output_size}: mean {errs.mean():.2f}, p95 {np.percentile(errs, 95):.2f}, "
          f"max {errs.max():.2f} over {len(errs)} frames")


def phantom(n: int, width: int, height: int, fps: float, seed: int) -> None:
    print(f"3. phantom sequence: {n} frames {width}x{height}, 1 thread")
    pipes = {det: FacePipeline(FaceConfig(detector=det)) for det, _ in PIPES}
    ms = {det: [] for det in pipes}
    found = {det: 0 for det in pipes}
    frame = np.empty((height, width, 3), np.uint8)
    for k, s in enumerate(states(n, fps, seed)):
        render_face(s, width=width, height=height, out=frame)
        for det, p in pipes.items():
            t0 = time.perf_counter()
            r = p.process(frame, int(k * 1e6 / fps))
            ms[det].append((time.perf_counter() - t0) * 1e3)
            found[det] += r.found
    for det, label in PIPES:
        print("   " + summary(label[:10], np.array(ms[det]), found[det], n))
    c = pipes["landmarks"].counts
    print(f"   landmarks paths: detections {c['detect_full']}, tracked {c['tracked']}, "
          f"confidence drops {c['landmark_lost']}, lost {c['lost']}")
    print(f"   ratio new/old ms per frame: {np.mean(ms['landmarks']) / np.mean(ms['haar']):.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="phantom sequence frames (default 300 = 10 s)")
    ap.add_argument("--video-frames", type=int, default=150, help="astronaut video frames (default 150)")
    ap.add_argument("--size", default="1280x720", help="frame size WxH (default 1280x720)")
    ap.add_argument("--fps", type=float, default=30.0, help="camera rate (default 30)")
    ap.add_argument("--seed", type=int, default=1, help="phantom motion seed (default 1)")
    args = ap.parse_args(argv)
    if args.frames < 10 or args.video_frames < 10 or args.fps <= 0:
        ap.error("--frames and --video-frames must be >= 10, --fps > 0")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size {args.size!r}: expected WIDTHxHEIGHT")
    cv2.setNumThreads(1)
    print(f"face pipeline benchmark: OpenCV {cv2.__version__}, 1 thread")
    real_faces()
    video(args.video_frames, width, height, args.fps)
    phantom(args.frames, width, height, args.fps, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
