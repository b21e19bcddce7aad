#!/usr/bin/env bash
# The GPU speed check, prepared to run in one go (at most BUDGET seconds, 540 by default; installs nothing):
#   0. graph_check.py: does the CUDA-graph fast path learn what the eager path learns;
#   1. gpu_profile.py: seconds per epoch of the study's AE recipe with and without the fast path
#      (training/graphs.py), deterministic or not, bf16 or float32, and the bare step's floor;
#   FAST (default "--cuda-graphs on"): the flags steps 2-4 run with, so they measure the fast path
#   (FAST= measures brainae's defaults);
#   2. the study's AE and VAE recipes, 40 epochs of batch 16 each (preset seed), timed;
#   3. the study's whole search (17 AE + 61 VAE trials, its grid, TPE + pruning), the final training
#      and the report: `brainae study --preset seed`, cut after 320 s (the goal is 300);
#   4. train_throughput.py: brainae against the plain PyTorch loop, and inference images/s;
# then one table. Results (JSON, logs and the table) go to OUT_DIR.
#   bash benchmarks/gpu_check.sh DATA_DIR OUT_DIR
# DATA_DIR: the real Training data, e.g. .device_data/brain-tumor-mri (benchmarks/export_png.py writes it).
# For a rehearsal on a CPU (no graphs there): FAST= PYTHON=.venv/bin/python ACCEL=cpu EPOCHS=1 LIMIT=64 IMAGE_SIZE=32 BUDGET=150 bash benchmarks/gpu_check.sh phantom:200 /tmp/gc
set -uo pipefail
DATA=$1; OUT=$2
ACCEL=${ACCEL:-cuda}; EPOCHS=${EPOCHS:-40}; LIMIT=${LIMIT:-0}; IMAGE_SIZE=${IMAGE_SIZE:-128}
PY=${PYTHON:-python3}; TAG=${TAG:-gpu}; BUDGET=${BUDGET:-540}; FAST=${FAST---cuda-graphs on}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 BENCH_RESULTS=$OUT
export BRAINAE_CACHE=${BRAINAE_CACHE:-$(mktemp -d)}
mkdir -p "$OUT"
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# step SECONDS CMD...: run CMD for at most SECONDS (and never past the budget); a failure is noted, not fatal
step() { local cap=$1 t; shift; t=$(left); [ "$cap" -lt "$t" ] && t=$cap
         if [ "$t" -lt 20 ]; then echo "skipped (time budget spent): $*" >&2; return 0; fi
         local s=$(date +%s); timeout "$t" "$@"; local rc=$?
         echo "$(( $(date +%s) - s )) s, exit $rc: ${*:1:5}" | tee -a "$OUT/steps.txt" >&2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
COMMON=(--data "$DATA" --accelerator "$ACCEL" --image-size "$IMAGE_SIZE")
[ "$LIMIT" != 0 ] && COMMON+=(--limit "$LIMIT")
PROFILE=(--data "$DATA" --accelerator "$ACCEL" --image-size "$IMAGE_SIZE" --epochs 3)

# first the check that the fast path learns what the eager path learns (GPU only)
[ "$ACCEL" = cpu ] || step 90 "$PY" benchmarks/graph_check.py --data "$DATA" > "$OUT/graph_check.log" 2>&1
step 90 "$PY" benchmarks/gpu_profile.py "${PROFILE[@]}" --tag "$TAG" > "$OUT/profile.log" 2>&1
for model in ae vae; do
  step 60 "$PY" -m brainae train --model "$model" --preset seed "${COMMON[@]}" $FAST --epochs "$EPOCHS" --no-progress \
       --out "$OUT/recipe_$model" > "$OUT/recipe_$model.log" 2>&1
done
STUDY_START=$(date +%s)
step 320 "$PY" -m brainae study --preset seed "${COMMON[@]}" $FAST --out "$OUT/study" > "$OUT/study.log" 2>&1
STUDY_SECONDS=$(( $(date +%s) - STUDY_START ))
step 100 "$PY" benchmarks/train_throughput.py "${COMMON[@]}" ${FAST:+--cuda-graphs on} --epochs 2 --rounds 1 --infer-rounds 1 --tag "$TAG" > "$OUT/throughput.log" 2>&1
"$PY" benchmarks/gpu_check_table.py "$OUT" "$EPOCHS" "$STUDY_SECONDS" | tee "$OUT/gpu_check.txt"
echo "total $(( $(date +%s) - START )) s"
