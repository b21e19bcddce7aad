#!/usr/bin/env bash
# Train the denoising benchmark's DAE on a GPU machine and pack its run folder for the trip back
# (checkpoint weights in 15 MB parts; benchmarks/denoise_bench.py --run reassembles them).
#   bash benchmarks/denoise_gpu_train.sh DATA_DIR OUT_DIR
# DATA_DIR: the real Training folder or its 128 px PNG export (benchmarks/export_png.py).
set -euo pipefail
DATA=$1; OUT=$2
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} BRAINAE_CACHE=$(mktemp -d) PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader
RUN=$(mktemp -d)/dae
python3 -m brainae train --model dae --noise gaussian:0.1,0.2,0.3 --data "$DATA" --preset seed \
  --accelerator cuda --no-progress --out "$RUN"
python3 - "$RUN" "$OUT" <<'PY'
import io, shutil, sys
from pathlib import Path
import torch
run, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
buf = io.BytesIO()
torch.save({"state_dict": state}, buf)
data, part = buf.getvalue(), 15_000_000
for i in range(0, len(data), part):
    (out / f"best.ckpt.part{i // part}").write_bytes(data[i:i + part])
for name in ("config.yaml", "history.csv", "metrics.json"):
    shutil.copy(run / name, out / name)
print("packed", len(data), "bytes")
PY
