#!/usr/bin/env bash
# Reproduce models/emert_demo_synthetic.pt and the modality-ablation table of its model card
# (models/emert_demo_synthetic.md).
#
#   models/make_demo_checkpoint.sh [CORPUS_DIR] [WORK_DIR]
#
# CORPUS_DIR (default recordings/synthetic_demo) receives a synthetic corpus of 20 participants x
# 28 trials; WORK_DIR (default build/demo) the ablation models, their evaluations and the table.
# CPU only. On 2 shared cores: corpus ~12 min, window caches ~7 min, each of the 15 trainings
# 10-20 min with --threads 1 (the numbers in the card were made so; more threads are faster but
# round differently). Two trainings can run side by side: JOBS=2 (default 1).
# Everything is seeded: the same code gives the same corpus and the same numbers (up to
# floating-point differences between machines / thread counts).
# STAGE=confirm models/make_demo_checkpoint.sh [CORPUS_DIR] [WORK_DIR] afterwards trains the
# confirmation runs of the card (face only and the demo recipe on folds 4-5; 4 more trainings).
# STAGE=fresh models/make_demo_checkpoint.sh [CORPUS_DIR] [WORK_DIR] after that: the face fallback
# (docs/training.md) tuned on the validation participants of the fold 4-5 models, and every model
# scored on two cohorts of 8 new synthetic participants that no model or choice has seen
# (WORK_DIR/cohort_seed1, WORK_DIR/cohort_p21; ~15 min each to record, ~30 min of evaluations).
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=${1:-recordings/synthetic_demo}
WORK=${2:-build/demo}
EMER=${EMER_LIVE:-emer-live}
JOBS=${JOBS:-1}
mkdir -p "$WORK"

if [ ! -d "$CORPUS" ] || [ -z "$(ls -A "$CORPUS" 2>/dev/null)" ]; then
  "$EMER" collect-synthetic --participants 20 --trials 28 --time-scale 0.3 --seed 0 --mask-rate 0.4 --out "$CORPUS"
fi

# One split for all models: 5 folds by participant (seed 0); folds 1-3 are trained (12 held-out
# participants in all). alpha/beta/lr differ from the paper's (0.3 / 0.1 / 1e-4): see the card.
COMMON=(--data "$CORPUS" --task multi --folds 5 --samples both --window 8 --hop 4
        --epochs 80 --patience 25 --batch-size 16 --lr 1e-3 --alpha 0.05 --beta 1.0
        --face-train none --seed 0 --threads 1 --quiet --face-fallback off)
# (--face-fallback off: the tables compare the trained models as they are; the face fallback is
# tuned afterwards with `tune-fallback`, STAGE=fresh and the shipped checkpoint below)
mods_of() {
  case $1 in
    face) echo "--modalities face --eye-reference none" ;;
    eye_fixation) echo "--modalities eye,fixation --eye-reference session" ;;
    all) echo "--modalities face,eye,fixation --eye-reference session" ;;
    all_dropout) echo "--modalities face,eye,fixation --eye-reference session --face-dropout 0.25 --eye-dropout 0.25" ;;
    all_dropout_eye50) echo "--modalities face,eye,fixation --eye-reference session --face-dropout 0.15 --eye-dropout 0.5" ;;
  esac
}

train() {  # name fold
  local out="$WORK/$1.fold$2.pt"
  [ -f "$out" ] && return 0
  # shellcheck disable=SC2046
  "$EMER" train "${COMMON[@]}" $(mods_of "$1") --only-fold "$2" --out "$out" > "$WORK/$1.fold$2.log" 2>&1
}

run_lanes() {  # name:fold ... - dealt round-robin to JOBS lanes that run side by side
  local runs=("$@")
  for ((lane = 0; lane < JOBS; lane++)); do
    (
      for ((i = lane; i < ${#runs[@]}; i += JOBS)); do
        train "${runs[$i]%%:*}" "${runs[$i]##*:}"
      done
    ) &
  done
  wait
}

# STAGE=confirm (or all) trains face-only and the demo recipe on folds 4-5 as well: 8 participants
# held out from every model the recipe was chosen among, so the choice is checked on unseen data.
STAGE=${STAGE:-ablation}
if [ "$STAGE" = fresh ]; then
  # two cohorts no model or choice has seen: 8 people of another population (seed 1, named P01-P08
  # like training participants - evaluate warns by name; they are other people) and 8 more people
  # of the training population (seed 0, P21-P28)
  cohort_opts() { case $1 in seed1) echo "--seed 1" ;; p21) echo "--seed 0 --first 21" ;; esac; }
  for c in seed1 p21; do
    dir="$WORK/cohort_$c"
    if [ ! -d "$dir" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
      # shellcheck disable=SC2086
      "$EMER" collect-synthetic --participants 8 --trials 28 --time-scale 0.3 --mask-rate 0.4 --jobs 1 \
          $(cohort_opts $c) --out "$dir"
    fi
  done
  for f in 4 5; do
    [ -f "$WORK/fallback.fold$f.pt" ] || "$EMER" tune-fallback --checkpoint "$WORK/all_dropout_eye50.fold$f.pt" \
        --data "$CORPUS" --threads 1 --out "$WORK/fallback.fold$f.pt" > "$WORK/fallback.fold$f.log"
  done
  ev() {  # cohort name checkpoint-stem [evaluate options] - both fold models score every new participant
    local c=$1 name=$2 stem=$3; shift 3
    rm -rf "$WORK/${c}_$name"
    "$EMER" evaluate --checkpoint "$WORK/$stem".fold{4,5}.pt --data "$WORK/cohort_$c" --split all --samples trial \
        --out-dir "$WORK/${c}_$name" "$@" > "$WORK/${c}_$name.txt"
  }
  for c in seed1 p21; do
    ev $c face face
    ev $c eyes_of_fused all_dropout_eye50 --modalities eye,fixation
    ev $c fused all_dropout_eye50
    ev $c fused_fallback fallback
  done
  rm -rf "$WORK/confirm_fused_fallback"
  "$EMER" evaluate --checkpoint "$WORK"/fallback.fold{4,5}.pt --data "$CORPUS" --samples trial \
      --out-dir "$WORK/confirm_fused_fallback" > "$WORK/confirm_fused_fallback.txt"
  for c in seed1 p21; do
    for head in er7 fer7; do
      echo "$head, cohort $c: whole-trial samples of 8 new participants, each scored by the fold-4 and the fold-5 model:"
      echo
      "$EMER" compare face="$WORK/${c}_face" eyes_of_fused="$WORK/${c}_eyes_of_fused" fused="$WORK/${c}_fused" \
          fused_fallback="$WORK/${c}_fused_fallback" --baseline face --head "$head"
      echo
    done
  done | tee "$WORK/fresh.md"
  for head in er7 fer7; do
    echo "$head, held-out participants of folds 4-5 (the confirmation's):"
    "$EMER" compare face="$WORK/confirm_face" fused="$WORK/confirm_all_dropout_eye50" \
        fused_fallback="$WORK/confirm_fused_fallback" --baseline face --head "$head"
  done | tee -a "$WORK/fresh.md"
  exit 0
fi
if [ "$STAGE" = confirm ]; then
  train face 4
  run_lanes all_dropout_eye50:4 face:5 all_dropout_eye50:5
  for m in face all_dropout_eye50; do
    rm -rf "$WORK/confirm_$m"
    "$EMER" evaluate --checkpoint "$WORK/$m".fold{4,5}.pt --data "$CORPUS" --samples trial \
        --out-dir "$WORK/confirm_$m" > "$WORK/confirm_$m.txt"
  done
  for head in er7 fer7; do
    echo "$head, whole-trial samples of the held-out participants of folds 4-5:"
    echo
    "$EMER" compare face="$WORK/confirm_face" all_dropout_eye50="$WORK/confirm_all_dropout_eye50" \
        --baseline face --head "$head"
    echo
  done | tee "$WORK/confirm.md"
  exit 0
fi

# the first training builds the window caches (with face crops; the others reuse them), alone;
# then the other fourteen
train face 1
run_lanes eye_fixation:1 all:1 all_dropout:1 all_dropout_eye50:1 face:2 eye_fixation:2 all:2 all_dropout:2 \
          all_dropout_eye50:2 face:3 eye_fixation:3 all:3 all_dropout:3 all_dropout_eye50:3

for m in face eye_fixation all all_dropout all_dropout_eye50; do
  rm -rf "$WORK/eval_$m"
  "$EMER" evaluate --checkpoint "$WORK/$m".fold{1,2,3}.pt --data "$CORPUS" --samples trial \
      --out-dir "$WORK/eval_$m" > "$WORK/eval_$m.txt"
done

{
  echo "ER 7-class (SAM answers), whole-trial samples of the held-out participants of folds 1-3:"
  echo
  "$EMER" compare face="$WORK/eval_face" eye_fixation="$WORK/eval_eye_fixation" all="$WORK/eval_all" \
      all_dropout="$WORK/eval_all_dropout" all_dropout_eye50="$WORK/eval_all_dropout_eye50" --baseline face --head er7
  echo
  echo "FER 7-class (displayed expression):"
  echo
  "$EMER" compare face="$WORK/eval_face" eye_fixation="$WORK/eval_eye_fixation" all="$WORK/eval_all" \
      all_dropout="$WORK/eval_all_dropout" all_dropout_eye50="$WORK/eval_all_dropout_eye50" --baseline face --head fer7
} | tee "$WORK/ablation.md"

# the shipped checkpoint: fold 1 of the demo recipe with its face fallback tuned on its validation participants
"$EMER" tune-fallback --checkpoint "$WORK/all_dropout_eye50.fold1.pt" --data "$CORPUS" --threads 1 \
    --out "$WORK/demo_fallback.fold1.pt"
cp -n "$WORK/demo_fallback.fold1.pt" models/emert_demo_synthetic.pt 2>/dev/null \
  || echo "models/emert_demo_synthetic.pt exists; the new model is $WORK/demo_fallback.fold1.pt"
