#!/usr/bin/env bash
# The GPU measurements in benchmarks/results: the AE recipe benchmark (fp32 and bf16-mixed) and the
# study with the study's own settings (preset seed: 40 epochs each) on the real Training folder.
#   bash benchmarks/gpu_run.sh DATA_DIR OUT_DIR [extra study flags]
# DATA_DIR: the real data, e.g. ../shared/data/brain-tumor-mri, or its 128 px PNG export (benchmarks/export_png.py).
set -euo pipefail
DATA=$1; OUT=$2; shift 2
ACCEL=${ACCEL:-cuda}
TAG=${TAG:-gpu}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} BRAINAE_CACHE=$(mktemp -d) PYTHONUNBUFFERED=1 BENCH_RESULTS=$OUT
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 benchmarks/train_real.py --data "$DATA" --epochs 2 --accelerator "$ACCEL" --tag "$TAG" ${BENCH_FLAGS:-} >/dev/null
python3 benchmarks/train_real.py --data "$DATA" --epochs 2 --accelerator "$ACCEL" --precision bf16-mixed --tag "$TAG-bf16" ${BENCH_FLAGS:-} >/dev/null
tail -n 3 "$OUT"/train_real_*.json
STUDY=${STUDY_DIR:-$OUT/study_seed}
python3 -m brainae study --preset seed --no-sweep --data "$DATA" --accelerator "$ACCEL" --no-progress --out "$STUDY" "$@"
[ "$STUDY" = "$OUT/study_seed" ] && exit 0
cp "$STUDY/summary.json" "$OUT/study_seed_summary.json"
cp "$STUDY/report.html" "$OUT/study_seed_report.html"
for m in ae vae; do cp "$STUDY/runs/$m/history.csv" "$OUT/study_seed_${m}_history.csv"; done
