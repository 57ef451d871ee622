"""EMERT forward speed: what inference_mode, channels-last, torch.compile and bf16/fp16 buy.

Measures, on the available device, the latency of one window (batch 1) and the throughput of a
batch of windows (default 32), each against the plain eager fp32 forward under ``torch.no_grad``
measured in the same run. Prints ratios (speed-up vs the baseline; > 1 is faster), the
baseline's share of the live hop (DESIGN sec. 12: one window must take well under the 1 s hop
on CPU), and how far each variant's outputs move from the baseline's.

    python benchmarks/bench_model.py                 # defaults: threads = CPUs - 1, batch 32
    python benchmarks/bench_model.py --threads 1 --batch 8 --no-compile
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from emer_live.model import EMERT, EMERTConfig, select_device  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def _inputs(b: int, dev: torch.device) -> Tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(b)
    face = torch.rand(b, 8, 3, 112, 112, generator=g)
    eye = torch.randn(b, 32, 39, generator=g)
    fix = torch.randn(b, 32, 2, generator=g)
    return face.to(dev), eye.to(dev), fix.to(dev)


def _interleaved(fns: List[Callable[[], object]], dev: torch.device, *, warmup: int,
                 rounds: int) -> List[float]:
    """Median time of each fn, timed round-robin so that background load hits all alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    _sync(dev)
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: CPUs - 1, >= 1)")
    ap.add_argument("--batch", type=int, default=32, help="batch size of the throughput test")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations at batch 1 (default 20 CPU / 50 GPU)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = ap.parse_args(argv)

    dev = select_device(args.device, num_threads=args.threads)  # sets torch threads on CPU
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # explicit on every device (CPU-side work on GPUs too)
    gpu = dev.type in ("cuda", "mps")
    it1 = args.iters or (50 if gpu else 20)
    itb = max(5, it1 // 3)
    print(f"device {dev} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"CPUs available {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}")

    torch.manual_seed(0)
    base_model = EMERT(EMERTConfig()).to(dev).eval()
    x1 = _inputs(1, dev)
    xb = _inputs(args.batch, dev)

    def run(model, x, ctx):
        with ctx():
            return model(*x)

    variants: List[Tuple[str, Callable]] = []
    variants.append(("eager fp32, no_grad (baseline)", lambda x: run(base_model, x, torch.no_grad)))
    variants.append(("grad enabled (no no_grad)", lambda x: run(base_model, x, torch.enable_grad)))
    variants.append(("inference_mode", lambda x: run(base_model, x, torch.inference_mode)))

    cl_model = EMERT(EMERTConfig()).to(dev).eval()
    cl_model.load_state_dict(base_model.state_dict())
    cl_model = cl_model.to(memory_format=torch.channels_last)
    variants.append(("channels_last + inference_mode", lambda x: run(cl_model, x, torch.inference_mode)))

    if gpu:
        for name, dtype in (("bf16 autocast + inference_mode", torch.bfloat16),
                            ("fp16 autocast + inference_mode", torch.float16)):
            def _amp(x, dtype=dtype):
                with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype):
                    return base_model(*x)
            variants.append((name, _amp))

    compiled = None
    compile_note = "skipped (--no-compile)"
    if not args.no_compile:
        try:
            t0 = time.perf_counter()
            compiled = torch.compile(base_model)
            with torch.inference_mode():
                compiled(*x1)
                compiled(*xb)
            compile_note = f"compiled in {time.perf_counter() - t0:.0f} s (first calls, both batch sizes)"
            variants.append(("torch.compile + inference_mode", lambda x: run(compiled, x, torch.inference_mode)))
        except Exception as exc:  # noqa: BLE001 - report why compile is unavailable here
            msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            compile_note = f"FAILED: {type(exc).__name__}: {msg}"

    ref1 = run(base_model, x1, torch.no_grad)["er7"].float()
    t1 = _interleaved([lambda fn=fn: fn(x1) for _, fn in variants], dev, warmup=2, rounds=it1)
    tb = _interleaved([lambda fn=fn: fn(xb) for _, fn in variants], dev, warmup=1, rounds=itb)
    base1, baseb = t1[0], tb[0]
    rows = []
    for (name, fn), a, b in zip(variants, t1, tb):
        diff = (fn(x1)["er7"].float() - ref1).abs().max().item()
        rows.append((name, base1 / a, baseb / b, diff))

    print(f"torch.compile: {compile_note}")
    print(f"baseline: one window takes {base1 / 1.0:.3f} of the 1 s live hop (median of {it1}); "
          f"batch {args.batch} runs {args.batch * base1 / baseb:.2f}x the windows/s of batch 1")
    print(f"{'variant':34s} {'b1 speed-up':>12s} {f'b{args.batch} speed-up':>13s} {'max |dlogit|':>13s}")
    for name, r1, rb, diff in rows:
        print(f"{name:34s} {r1:12.2f} {rb:13.2f} {diff:13.2e}")
    if not gpu:
        print("bf16/fp16: not measured (GPU only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
