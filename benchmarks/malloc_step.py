"""Benchmark: a CPU training step and inference with glibc's default allocator against ``keep_freed_memory``.

For three networks (the study's AE at 128 px, batch 16; the former quick preset's four-layer AE at
64 px, batch 16; the quick preset's two-layer AE at 64 px, batch 32) it times the bare step the trainer
runs (bf16 autocast where the CPU has native bf16, channels-last, fused Adam) in fresh processes, with and
without the tuning, alternating, and reports the median images/s. Then the same for inference:
evaluate's loop (``reconstructions``, batch 64) over 512 images, for the study's AE and the small
``skipae`` denoiser. Results go to benchmarks/results/malloc_cpu.{json,md}.

    python benchmarks/malloc_step.py [--rounds 3] [--steps 40] [--passes 5]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_real import command_line, machine, write_results  # noqa: E402

NETWORKS = {  # name: (ConvAE keyword arguments, batch size)
    "study AE, 128 px, batch 16": ({"image_size": 128}, 16),
    "former quick AE (4 layers), 64 px, batch 16": ({"image_size": 64, "channels": [32, 64, 128, 256]}, 16),
    "quick AE (2 layers), 64 px, batch 32": ({"image_size": 64, "channels": [32, 64]}, 32),
}

STEP = """
import json, sys, time, torch
from brainae.models.ae import ConvAE
from brainae.training.memory import keep_freed_memory
from brainae.training.precision import cpu_has_native_bf16
kwargs, batch, steps, tuned = json.loads(sys.argv[1])
if tuned:
    keep_freed_memory()
torch.manual_seed(0)
net = ConvAE(**kwargs).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
x = torch.rand(batch, 1, kwargs["image_size"], kwargs["image_size"]).to(memory_format=torch.channels_last)
def step():
    with torch.autocast("cpu", torch.bfloat16, enabled=cpu_has_native_bf16()):
        loss = torch.nn.functional.mse_loss(net(x).recon.float(), x)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
for _ in range(5):
    step()
times = []
for _ in range(steps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps(sorted(times)[len(times) // 2]))
"""


INFERENCE = {  # name: network, timed in evaluate's loop (reconstructions, batch 64) over 512 images
    "study AE, 128 px": "ae",
    "small skipae denoiser (channels 8-64), 128 px": "skipae",
}

INFER = """
import json, statistics, sys, time, numpy as np, torch
import brainae.training.precision as precision
from brainae.config import build_config
from brainae.models import build_model
name, passes, tuned = json.loads(sys.argv[1])
if not tuned:
    precision.keep_freed_memory = lambda: False  # the inference loop tunes the allocator itself
cfg = build_config(name, preset="seed", data="phantom")
if name == "skipae":
    cfg.model.channels, cfg.model.skips = [8, 16, 32, 64], [0, 1, 2]
torch.manual_seed(0)
net = build_model(cfg.model, 128).eval()
images = np.random.default_rng(0).integers(0, 256, (512, 128, 128), dtype=np.uint8)
precision.reconstructions(net, images, 64)
rates = []
for _ in range(passes):
    t = time.perf_counter(); precision.reconstructions(net, images, 64); rates.append(len(images) / (time.perf_counter() - t))
print(json.dumps(statistics.median(rates)))
"""


def run_fresh(code: str, args: list) -> float:
    """The number a fresh interpreter running ``code`` prints last."""
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def alternate(rounds: int, measure) -> dict:
    """``measure(tuned)`` ``rounds`` times per setting, alternating: the median of each and the speed-up."""
    rates = {"default": [], "tuned": []}
    for _ in range(rounds):
        for setting in rates:
            rates[setting].append(measure(setting == "tuned"))
    row = {k: round(float(np.median(v)), 1) for k, v in rates.items()}
    row["speed-up"] = round(row["tuned"] / row["default"], 2)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per network and setting, alternating")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per process (after 5 warm-up steps)")
    ap.add_argument("--passes", type=int, default=5, help="timed inference passes over 512 images per process")
    args = ap.parse_args()
    rows, inference = {}, {}
    for name, (kwargs, batch) in NETWORKS.items():
        rows[name] = alternate(args.rounds, lambda tuned: batch / run_fresh(STEP, [kwargs, batch, args.steps, tuned]))
        print(name, rows[name], flush=True)
    for name, net in INFERENCE.items():
        inference[name] = alternate(args.rounds, lambda tuned: run_fresh(INFER, [net, args.passes, tuned]))
        print(name, inference[name], flush=True)
    res = {"machine": machine(), "command": command_line("malloc_step.py").strip(), "rounds": args.rounds, "steps": args.steps,
           "unit": "training images/s, median step of each process, median over processes", "networks": rows,
           "inference_unit": f"images/s of evaluate's loop (batch 64, 512 images), median of {args.passes} passes "
                             "per process, median over processes", "inference": inference}
    lines = ["# A CPU training step and inference with glibc's default allocator and with `keep_freed_memory`", "",
             f"Machine: {res['machine']}. Command: `{res['command']}`. Unit: {res['unit']}; {args.rounds} fresh processes "
             f"per cell, {args.steps} timed steps each.", "",
             "| network | default | kept memory | speed-up |", "| --- | --- | --- | --- |"]
    lines += [f"| {n} | {r['default']} | {r['tuned']} | {r['speed-up']}x |" for n, r in rows.items()]
    lines += ["", f"Inference, {res['inference_unit']}:", "", "| network | default | kept memory | speed-up |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {n} | {r['default']} | {r['tuned']} | {r['speed-up']}x |" for n, r in inference.items()]
    write_results("malloc_cpu", res, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
