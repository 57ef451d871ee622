#!/usr/bin/env bash
# Reproduce models/emert_demo_synthetic.pt and its modality-ablation table (models/emert_demo_synthetic.md).
#
#   models/make_demo_checkpoint.sh [CORPUS_DIR] [WORK_DIR]
#
# CORPUS_DIR (default recordings/synthetic_demo) receives a synthetic corpus of 14 participants x 28
# trials; WORK_DIR (default build/demo) the ablation models and evaluation reports. CPU only; on
# 2 shared cores: corpus ~15 min, window caches ~4 min, each training 8-14 min (--threads 1, as the
# numbers in the card were made; more threads are faster but round differently).
# Everything is seeded: the same code gives the same corpus and the same numbers (up to
# floating-point differences between machines / thread counts).
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=${1:-recordings/synthetic_demo}
WORK=${2:-build/demo}
EMER=${EMER_LIVE:-emer-live}
mkdir -p "$WORK"

if [ ! -d "$CORPUS" ] || [ -z "$(ls -A "$CORPUS" 2>/dev/null)" ]; then
  "$EMER" collect-synthetic --participants 14 --trials 28 --time-scale 0.3 --seed 0 --mask-rate 0.4 \
      --jobs 1 --out "$CORPUS"
fi

# One split for all models: 4 folds by participant (seed 0), fold 1 trained and held out.
# alpha/beta/lr differ from the paper's (0.3 / 0.1 / 1e-4): see the model card.
COMMON=(--data "$CORPUS" --task multi --folds 4 --run-folds 1 --samples both --window 8 --hop 4
        --epochs 80 --patience 25 --batch-size 16 --lr 1e-3 --alpha 0.05 --beta 1.0
        --face-train none --seed 0 --threads 1 --quiet)

"$EMER" train "${COMMON[@]}" --modalities face,eye,fixation --out "$WORK/all.pt"
"$EMER" train "${COMMON[@]}" --modalities face --out "$WORK/face.pt"
"$EMER" train "${COMMON[@]}" --modalities eye,fixation --out "$WORK/eye_fixation.pt"
"$EMER" train "${COMMON[@]}" --modalities eye,fixation --eye-reference baseline --out "$WORK/eye_fixation_ref.pt"
"$EMER" train "${COMMON[@]}" --modalities face,eye,fixation --eye-reference baseline --out "$WORK/all_ref.pt"

for m in all face eye_fixation eye_fixation_ref all_ref; do
  rm -rf "$WORK/eval_$m"
  "$EMER" evaluate --checkpoint "$WORK/$m.pt" --data "$CORPUS" --samples trial --out-dir "$WORK/eval_$m" > /dev/null
done

"${PYTHON:-python3}" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
rows = [("face only", "face"), ("eye + fixation", "eye_fixation"),
        ("eye + fixation, baseline ref.", "eye_fixation_ref"), ("face + eye + fixation (the demo model)", "all"),
        ("face + eye + fixation, baseline ref.", "all_ref")]
def g(fold, head, sub=None):
    m = (fold["subsets"][sub]["heads"] if sub else fold["heads"]).get(head, {})
    return f"{m['uar']:.3f}" if m.get("n") else "-"
print("| modalities | ER7 UAR | ER7 WAR | ER7 F1w | ER7 UAR masked | ER7 UAR unmasked | ER3 UAR | FER7 UAR | FER7 UAR masked |")
print("|---|---|---|---|---|---|---|---|---|")
for name, key in rows:
    f = json.load(open(f"{work}/eval_{key}/evaluation.json"))["folds"][0]
    er = f["heads"]["er7"]
    print(f"| {name} | {g(f, 'er7')} | {er['war']:.3f} | {er['weighted_f1']:.3f} | {g(f, 'er7', 'masked')} | "
          f"{g(f, 'er7', 'unmasked')} | {g(f, 'er3')} | {g(f, 'fer7')} | {g(f, 'fer7', 'masked')} |")
f = json.load(open(f"{work}/eval_all/evaluation.json"))["folds"][0]
print(f"\nheld-out participants: {', '.join(f['participants'])}; whole-trial samples: {f['n_scored']} "
      f"({f['subsets'].get('masked', {}).get('n_samples', 0)} masked)")
PY

cp -n "$WORK/all.pt" models/emert_demo_synthetic.pt 2>/dev/null || echo "models/emert_demo_synthetic.pt exists; new model left in $WORK/all.pt"
