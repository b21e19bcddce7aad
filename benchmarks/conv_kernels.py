"""Benchmark: which oneDNN kernel runs each convolution of a CPU training step, and how fast.

One process trains the study's AE (128 px, batch 16) the way ``brainae train`` does on a CPU (bf16
autocast where native, channels-last, fused Adam, ``keep_freed_memory``) with ``ONEDNN_VERBOSE=1``.
oneDNN then prints one line per primitive it runs: its kind (convolution, deconvolution = transposed
convolution, matmul), its pass (forward, backward_data, backward_weights), the kernel it chose and the
milliseconds it took. Per layer and pass this script reports the median milliseconds over the timed
steps and the GFLOP/s that makes, then the step's total per pass. Results go to
benchmarks/results/conv_kernels_<tag>.{json,md}.

    python benchmarks/conv_kernels.py [--steps 12] [--tag cpu]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_real import command_line, machine, write_results  # noqa: E402

WARMUP = 3
STEP = """
import sys, time, torch
from brainae.models.ae import ConvAE
from brainae.training.memory import keep_freed_memory
from brainae.training.precision import cpu_has_native_bf16
keep_freed_memory()
torch.manual_seed(0)
net = ConvAE(image_size=128).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
x = torch.rand(16, 1, 128, 128).to(memory_format=torch.channels_last)
print("precision", "bf16" if cpu_has_native_bf16() else "fp32", flush=True)
for i in range(int(sys.argv[1])):
    print("step", i, flush=True)
    t = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=cpu_has_native_bf16()):
        loss = torch.nn.functional.mse_loss(net(x).recon.float(), x)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    print("seconds", time.perf_counter() - t, flush=True)
"""
SHAPE = re.compile(r"mb(\d+)_ic(\d+)oc(\d+)_ih(\d+)oh(\d+)kh(\d+)sh\d+dh\d+ph\d+_iw(\d+)ow(\d+)kw(\d+)sw\d+dw\d+pw\d+")


def gflop(kind: str, shape: str) -> float | None:
    """Floating-point operations (x 1e9) of one pass of a convolution, transposed convolution or matmul."""
    m = SHAPE.fullmatch(shape)
    if m:
        mb, ic, oc, ih, oh, kh, iw, ow, kw = map(int, m.groups())
        # a transposed convolution spreads every input pixel over kh x kw outputs
        pixels = ih * iw if kind == "deconvolution" else oh * ow
        return 2 * mb * ic * oc * pixels * kh * kw / 1e9
    dims = re.fullmatch(r"(\d+)x(\d+):(\d+)x(\d+)", shape)
    if kind == "matmul" and dims:
        m_, k, _, n = map(int, dims.groups())
        return 2 * m_ * k * n / 1e9
    return None


def parse(lines: list[str]) -> tuple[dict, list[float], str]:
    """{(kind, pass, kernel, shape): [ms per timed step]}, the timed steps' seconds, the precision."""
    per_step: dict[tuple, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    seconds, step, precision = [], -1, "?"
    for line in lines:
        if line.startswith("precision "):
            precision = line.split()[1]
        elif line.startswith("step "):
            step = int(line.split()[1])
        elif line.startswith("seconds ") and step >= WARMUP:
            seconds.append(float(line.split()[1]))
        elif line.startswith("onednn_verbose,") and ",exec,cpu," in line and step >= WARMUP:
            f = line.strip().split(",")
            kind, kernel, prop = f[5], f[6], f[7]
            if kind in ("convolution", "deconvolution", "matmul"):
                per_step[(kind, prop, kernel.split("+")[-1], f[-2])][step] += float(f[-1])
    return {k: list(v.values()) for k, v in per_step.items()}, seconds, precision


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help=f"training steps, the first {WARMUP} left out")
    ap.add_argument("--tag", default="cpu", help="result files: results/conv_kernels_<tag>.{json,md}")
    args = ap.parse_args()
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    out = subprocess.run([sys.executable, "-c", STEP, str(args.steps)], env=env, capture_output=True, text=True, check=True)
    prims, seconds, precision = parse(out.stdout.splitlines())
    rows, totals, work = [], defaultdict(float), defaultdict(float)
    for (kind, prop, kernel, shape), ms in sorted(prims.items(), key=lambda kv: -statistics.median(kv[1])):
        med = statistics.median(ms)
        g = gflop(kind, shape)
        rows.append({"kind": kind, "pass": prop, "kernel": kernel, "shape": shape, "ms": round(med, 2),
                     "gflop_per_s": round(g / (med / 1e3), 1) if g else None})
        group = "linear layers (matmul)" if kind == "matmul" else prop
        totals[group] += med
        work[group] += g or 0.0
    step_ms = 1e3 * statistics.median(seconds)
    res = {"machine": machine(), "command": command_line("conv_kernels.py").strip(), "precision": precision,
           "network": "study AE (ae), 128 px, batch 16", "timed_steps": len(seconds),
           "step_ms": round(step_ms, 1), "ms_per_pass": {k: round(v, 1) for k, v in totals.items()},
           "gflop_per_s_per_pass": {k: round(work[k] / (totals[k] / 1e3), 1) for k in totals}, "primitives": rows}
    lines = ["# Which oneDNN kernel runs each convolution of a CPU training step", "",
             f"Machine: {res['machine']}. Command: `{res['command']}`. The study's AE, 128 px, batch 16, "
             f"{'bf16 autocast' if precision == 'bf16' else 'float32'}, channels-last, fused Adam; median of "
             f"{len(seconds)} steps (oneDNN's own timing, with its verbose output on). Step: {res['step_ms']} ms."
             + ("" if precision == "bf16" else " In float32 torch sends matrix products (the linear layers, "
                "the weight gradients of `models/weight_grad.py`) to MKL, not oneDNN: they are not in this log."),
             "",
             "| pass | ms per step | share of the step | GFLOP/s |", "| --- | --- | --- | --- |"]
    lines += [f"| {p} | {v:.1f} | {100 * v / step_ms:.0f}% | {res['gflop_per_s_per_pass'][p]} |"
              for p, v in sorted(totals.items(), key=lambda kv: -kv[1])]
    lines += ["", "| primitive | pass | oneDNN kernel | shape | ms | GFLOP/s |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['kind']} | {r['pass']} | `{r['kernel']}` | `{r['shape']}` | {r['ms']} | {r['gflop_per_s'] or ''} |"
              for r in rows]
    write_results(f"conv_kernels_{args.tag}", res, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
