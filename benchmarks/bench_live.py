"""Live engine benchmarks.

1. End-to-end real-time factor of ``emer-live live --speed max`` on a recorded synthetic session
   (the baseline is real time: the factor says how many seconds of recording one second of
   compute analyses; the same session is also run at ``--speed 1`` for the per-stage latency).
2. The emotion gap on masked vs unmasked synthetic trials (held-out synthetic participants).

    python benchmarks/bench_live.py [--checkpoint models/emert_demo_synthetic.pt] [--participants 4]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def emer(*args):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "emer_live.cli", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"emer-live {' '.join(args)} failed:\n{p.stderr}")
    return p.stdout, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "emert_demo_synthetic.pt"))
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--participants", type=int, default=4)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_live_"))
    sess = tmp / "S"
    out, wall = emer("live", "--headless", "--quiet", "--tracker", "synthetic", "--camera", "synthetic",
                     "--checkpoint", a.checkpoint, "--duration", str(a.seconds), "--record", str(sess))
    print(f"live at real time, {a.seconds:.0f} s (synthetic 250 Hz + 1280x720 30 fps, recorded):")
    print("  " + out.strip().splitlines()[-1])
    out, wall = emer("live", "--headless", "--quiet", "--tracker", f"replay:{sess}", "--camera", "replay",
                     "--speed", "max", "--checkpoint", a.checkpoint)
    rtf = re.search(r"real-time factor: ([0-9.]+)x", out)
    print(f"replay --speed max of the same session: real-time factor {rtf.group(1) if rtf else '?'}x "
          f"(process wall time incl. start-up {wall:.1f} s)")

    from emer_live.live.gap_study import collect_gap_corpus, gap_by_mask

    parts = [f"H{i + 1:02d}" for i in range(a.participants)]
    t0 = time.perf_counter()
    sessions = collect_gap_corpus(tmp / "gap", checkpoint=a.checkpoint, participants=parts)
    res = gap_by_mask(sessions)
    print(f"gap study: {len(sessions)} held-out synthetic participants, {res['n_masked']} masked and "
          f"{res['n_unmasked']} unmasked trials ({time.perf_counter() - t0:.0f} s)")
    print(f"  mean JSD(ER, FER): masked {res['gap_masked_mean']:.3f} vs unmasked {res['gap_unmasked_mean']:.3f} "
          f"-> ratio {res['gap_masked_mean'] / max(res['gap_unmasked_mean'], 1e-9):.2f}x; "
          f"P(masked gap > unmasked gap) = {res['auc_masked_gt_unmasked']:.2f}")
    print(f"  whole-trial ER top = true emotion {res['er_matches_truth']:.2f}; "
          f"FER top = displayed expression {res['fer_matches_displayed']:.2f}")


if __name__ == "__main__":
    main()
