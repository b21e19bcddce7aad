#!/usr/bin/env bash
# The GPU speed check, prepared to run in one go (at most 8 minutes; installs nothing):
#   1. train_throughput.py on the GPU: brainae against the plain PyTorch loop, and inference images/s;
#   2. the study's AE recipe, 40 epochs of batch 16 (preset seed), timed, eager and with --compile;
#   3. a timed slice of the study's search (AE, the study's grid, TPE + pruning, --trials-per-device K);
# then one table. Results (JSON and the table) go to OUT_DIR.
#   bash benchmarks/gpu_check.sh DATA_DIR OUT_DIR
# DATA_DIR: the real Training data, e.g. .device_data/brain-tumor-mri (benchmarks/export_png.py writes it).
# For a rehearsal on a CPU: PYTHON=.venv/bin/python ACCEL=cpu EPOCHS=1 LIMIT=64 IMAGE_SIZE=32 SWEEP_SECONDS=20 bash benchmarks/gpu_check.sh phantom:200 /tmp/gc
set -euo pipefail
DATA=$1; OUT=$2
ACCEL=${ACCEL:-cuda}; EPOCHS=${EPOCHS:-40}; LIMIT=${LIMIT:-0}; IMAGE_SIZE=${IMAGE_SIZE:-128}
PY=${PYTHON:-python3}; SWEEP_SECONDS=${SWEEP_SECONDS:-100}; K=${TRIALS_PER_DEVICE:-4}; TAG=${TAG:-gpu}; BUDGET=${BUDGET:-470}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 BENCH_RESULTS=$OUT
export BRAINAE_CACHE=${BRAINAE_CACHE:-$(mktemp -d)}
mkdir -p "$OUT"
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
step() { local t; t=$(left); if [ "$t" -lt 20 ]; then echo "skipped (time budget spent): $*" >&2; return 0; fi
         timeout "$t" "$@" || echo "failed or cut at the time budget ($?): $*" >&2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
COMMON=(--data "$DATA" --accelerator "$ACCEL" --image-size "$IMAGE_SIZE")
[ "$LIMIT" != 0 ] && COMMON+=(--limit "$LIMIT")

step "$PY" benchmarks/train_throughput.py "${COMMON[@]}" --epochs 2 --rounds 2 --tag "$TAG" > "$OUT/throughput.log"
for mode in eager compile; do
  flags=(); [ "$mode" = compile ] && flags=(--compile)
  step "$PY" -m brainae train --preset seed "${COMMON[@]}" --epochs "$EPOCHS" --no-progress "${flags[@]}" \
       --out "$OUT/recipe_$mode" > "$OUT/recipe_$mode.log"
done
SW=$(( $(left) - 15 < SWEEP_SECONDS ? $(left) - 15 : SWEEP_SECONDS ))
if [ "$SW" -gt 10 ]; then
  step "$PY" -m brainae sweep --model ae --space seed --trials 17 --trials-per-device "$K" "${COMMON[@]}" \
       --timeout "$SW" --no-progress --out "$OUT/sweep_ae" > "$OUT/sweep_ae.log"
fi
"$PY" - "$OUT" "$SW" "$EPOCHS" <<'EOF'
import json, sys
from pathlib import Path
out, sweep_seconds, epochs = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
rows = []
tp = next(out.glob("train_throughput_*.json"), None)
if tp:
    t = json.loads(tp.read_text())["training"]
    for k, v in t.items():
        rows.append((f"throughput {k}", f"{v['images_per_second']} img/s ({v['precision']})"
                     + (f", {v['speedup_vs_plain']}x plain" if "speedup_vs_plain" in v else "")))
for mode in ("eager", "compile"):
    m = out / f"recipe_{mode}" / "metrics.json"
    if m.is_file():
        r = json.loads(m.read_text())
        rows.append((f"study AE recipe, {epochs} epochs, {mode}",
                     f"{r['seconds']} s, {r['seconds_per_epoch']} s/epoch, best val PSNR {r['best_val_psnr']:.2f} dB"))
s = out / "sweep_ae" / "sweep.json"
if s.is_file():
    r = json.loads(s.read_text())
    done = r["states"]["complete"] + r["states"]["pruned"]
    rows.append(("study search slice (AE)", f"{done} trials finished in {sweep_seconds:.0f} s "
                 f"({r['epochs']['run']} epochs run); 78 trials at this rate: {78 * sweep_seconds / max(done, 1) / 60:.1f} min"))
width = max(len(a) for a, _ in rows) if rows else 0
table = "\n".join(f"{a:<{width}}  {b}" for a, b in rows) or "no results"
(out / "gpu_check.txt").write_text(table + "\n")
print(table)
EOF
echo "total $(( $(date +%s) - START )) s"
