"""Benchmark: the study AE's transposed convs with the bias inside oneDNN's backward, and added after the conv.

Two measurements, in the precision ``brainae train`` picks on this CPU (``cpu_precision``) and channels-last:

1. per decoder layer of the study's AE (batch 16, 128 px): the time of ``convolution_backward`` with the
   bias gradient and without it, and of the sum over the output's gradient that gives the bias gradient
   instead (the median of ``--repeats`` calls, each after a warm-up);
2. the whole bare training step (forward, MSE, backward, fused Adam) of the study's AE, with torch's
   ``nn.ConvTranspose2d`` and with brainae's ``blocks.ConvTranspose`` (bias added after the conv): two
   networks in one process, ``--windows`` windows of ``--steps`` steps each, alternating which goes first,
   so that the machine's drift hits both; the median images/s and each window's ratio.

Results go to benchmarks/results/conv_bias_<tag>.{json,md}.

    python benchmarks/conv_bias.py [--repeats 11] [--windows 8] [--steps 8] [--tag cpu]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_real import command_line, machine, write_results  # noqa: E402

from brainae.models import weight_grad  # noqa: E402
from brainae.models.blocks import torch_layers  # noqa: E402
from brainae.models.ae import ConvAE  # noqa: E402
from brainae.training.memory import keep_freed_memory  # noqa: E402
from brainae.training.precision import resolve_precision  # noqa: E402

LAYERS = ((512, 256, 4), (256, 128, 8), (128, 64, 16), (64, 32, 32), (32, 1, 64))  # in, out, input size


def cpu_precision() -> tuple[str, torch.dtype]:
    """What ``brainae train --precision auto`` computes in on this CPU, as (label, autocast dtype): bf16 where
    the CPU has native bf16, float32 elsewhere. A CPU without it would emulate bf16, slower than float32, so
    the CPU benchmarks time what brainae runs here, not a fixed bf16."""
    if resolve_precision("auto", "cpu") == "bf16-mixed":
        return "bf16 autocast", torch.bfloat16
    return "float32", torch.float32


def cpu_autocast(dtype: torch.dtype):
    """Autocast to ``dtype`` on the CPU; off for float32."""
    return torch.autocast("cpu", dtype, enabled=dtype != torch.float32)


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 3)


def layer_times(repeats: int, dtype: torch.dtype) -> list[dict]:
    cl, rows = torch.channels_last, []
    for c_in, c_out, size in LAYERS:
        x = torch.randn(16, c_in, size, size).to(dtype).contiguous(memory_format=cl)
        w = (0.05 * torch.randn(c_in, c_out, 4, 4)).to(dtype).contiguous(memory_format=cl)
        gy = torch.randn(16, c_out, 2 * size, 2 * size).to(dtype).contiguous(memory_format=cl)
        args = (gy, x, w, [c_out], [2, 2], [1, 1], [1, 1], True, [0, 0], 1)
        rows.append({
            "layer": f"{c_in} -> {c_out}, {size} -> {2 * size} px",
            "backward_with_bias_ms": median_ms(lambda: torch.ops.aten.convolution_backward(*args, [True, True, True]), repeats),
            "backward_without_bias_ms": median_ms(lambda: torch.ops.aten.convolution_backward(*args, [True, True, False]), repeats),
            "bias_as_sum_ms": median_ms(lambda: gy.sum((0, 2, 3), dtype=torch.float32), repeats),
        })
    return rows


def study_ae(torch_layer: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = ConvAE(image_size=128).to(memory_format=torch.channels_last)
    if torch_layer:
        net = torch_layers(net)
    return net, torch.optim.Adam(net.parameters(), lr=5e-4, fused=True)


def alternating_rates(runs: dict[str, Callable[[], None]], windows: int, calls: int, images: int) -> dict[str, list[float]]:
    """Images/s of each of ``runs`` (each call handles ``images`` images) in ``windows`` windows of ``calls``
    calls, after 3 warm-up calls each; every window starts with the next run in turn, so that the machine's
    drift over minutes hits them all alike."""
    for run in runs.values():
        for _ in range(3):
            run()
    names = list(runs)
    rates: dict[str, list[float]] = {k: [] for k in names}
    for w in range(windows):
        for name in names[w % len(names):] + names[:w % len(names)]:
            t = time.perf_counter()
            for _ in range(calls):
                runs[name]()
            rates[name].append(round(calls * images / (time.perf_counter() - t), 1))
    return rates


def compare_rates(rates: dict[str, list[float]], new: str, old: str) -> dict:
    """The windows' images/s of each run, their medians, and ``new``'s over ``old``'s window by window and its median."""
    ratios = [round(a / b, 3) for a, b in zip(rates[new], rates[old])]
    return {"images_per_second": rates, "median": {k: round(statistics.median(v), 1) for k, v in rates.items()},
            "ratios": ratios, "median_ratio": round(statistics.median(ratios), 3)}


def step_rates(windows: int, steps: int, dtype: torch.dtype) -> dict:
    x = torch.rand(16, 1, 128, 128).contiguous(memory_format=torch.channels_last)
    nets = {"nn.ConvTranspose2d": study_ae(True), "blocks.ConvTranspose": study_ae(False)}

    def step(net, opt):
        with cpu_autocast(dtype):
            loss = F.mse_loss(net(x).recon.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rates = alternating_rates({name: (lambda n=name: step(*nets[n])) for name in nets}, windows, steps, 16)
    return compare_rates(rates, "blocks.ConvTranspose", "nn.ConvTranspose2d")


def markdown(record: dict) -> str:
    lines = ["# The study AE's transposed convs: bias gradient in oneDNN's backward or as a sum", "",
             f"- machine: {record['machine']}", f"- command: `{record['command']}`",
             f"- {record['precision']}, channels-last, batch 16, 128 px", "",
             "| decoder layer | backward with bias, ms | without, ms | bias gradient as a sum, ms |",
             "| --- | --- | --- | --- |"]
    for r in record["layers"]:
        lines.append(f"| {r['layer']} | {r['backward_with_bias_ms']} | {r['backward_without_bias_ms']} | "
                     f"{r['bias_as_sum_ms']} |")
    s = record["step"]
    lines += ["", "Bare training step of the study's AE, images/s (median of the windows; one process, alternating):",
              "", "| transposed conv | images/s |", "| --- | --- |"]
    lines += [f"| `{k}` | {v} |" for k, v in s["median"].items()]
    lines += ["", f"Window by window, bias after / bias inside: {', '.join(f'{r}x' for r in s['ratios'])} "
              f"(median **{s['median_ratio']}x**).", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tag", default="cpu", help="result files: results/conv_bias_<tag>.{json,md}")
    args = ap.parse_args()
    keep_freed_memory()  # as brainae train does
    weight_grad.SMALL_MAP = 0  # the bias alone: no layer takes the matrix-product weight gradient
    label, dtype = cpu_precision()
    record = {"machine": machine(), "command": command_line("conv_bias.py"), "precision": label,
              "layers": layer_times(args.repeats, dtype), "step": step_rates(args.windows, args.steps, dtype)}
    write_results(f"conv_bias_{args.tag}", record, markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
