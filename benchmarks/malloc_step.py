"""Benchmark: one CPU training step with glibc's default allocator against ``keep_freed_memory``.

For three networks (the study's AE at 128 px, batch 16; the former quick preset's four-layer AE at
64 px, batch 16; the quick preset's two-layer AE at 64 px, batch 32) it times the bare step the trainer
runs (bf16 autocast where the CPU has native bf16, channels-last, fused Adam) in fresh processes, with and
without the tuning, alternating, and reports the median images/s. Results go to
benchmarks/results/malloc_cpu.{json,md}.

    python benchmarks/malloc_step.py [--rounds 3] [--steps 40]
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


def median_step(kwargs: dict, batch: int, steps: int, tuned: bool) -> float:
    out = subprocess.run([sys.executable, "-c", STEP, json.dumps([kwargs, batch, steps, tuned])],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per network and setting, alternating")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per process (after 5 warm-up steps)")
    args = ap.parse_args()
    rows = {}
    for name, (kwargs, batch) in NETWORKS.items():
        rates = {"default": [], "tuned": []}
        for _ in range(args.rounds):
            for setting in rates:
                rates[setting].append(batch / median_step(kwargs, batch, args.steps, setting == "tuned"))
        rows[name] = {k: round(float(np.median(v)), 1) for k, v in rates.items()}
        rows[name]["speed-up"] = round(rows[name]["tuned"] / rows[name]["default"], 2)
        print(name, rows[name], flush=True)
    res = {"machine": machine(), "command": command_line("malloc_step.py").strip(), "rounds": args.rounds, "steps": args.steps,
           "unit": "training images/s, median step of each process, median over processes", "networks": rows}
    lines = ["# A CPU training step with glibc's default allocator and with `keep_freed_memory`", "",
             f"Machine: {res['machine']}. Command: `{res['command']}`. Unit: {res['unit']}; {args.rounds} fresh processes "
             f"per cell, {args.steps} timed steps each.", "",
             "| network | default | kept memory | speed-up |", "| --- | --- | --- | --- |"]
    lines += [f"| {n} | {r['default']} | {r['tuned']} | {r['speed-up']}x |" for n, r in rows.items()]
    write_results("malloc_cpu", res, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
