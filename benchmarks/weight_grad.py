"""Benchmark: the study AE's weight gradients from oneDNN and as one matrix product (models/weight_grad.py).

Two measurements, in the precision ``brainae train`` picks on this CPU (``conv_bias.cpu_precision``) and
channels-last:

1. per conv and transposed conv of the study's AE (batch 16, 128 px): oneDNN's weight gradient
   (``convolution_backward`` for the weight alone) and ``weight_grad``'s gather of patches and matrix
   product, the median of ``--repeats`` calls after a warm-up, and whether the layer takes the product
   (its coarse side has at most ``SMALL_MAP`` pixels);
2. the bare training step (forward, MSE, backward, fused Adam) of three study AEs in one process: the
   matrix product switched off (``SMALL_MAP = 0``), at its default, and on 8x8 maps too (64), ``--windows``
   windows of ``--steps`` steps, each window starting with the next; the median images/s and each
   window's ratio to oneDNN's.

Results go to benchmarks/results/weight_grad_<tag>.{json,md}.

    python benchmarks/weight_grad.py [--repeats 11] [--windows 24] [--steps 8] [--tag cpu]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from conv_bias import alternating_rates, cpu_autocast, cpu_precision, median_ms  # noqa: E402
from train_real import command_line, machine, write_results  # noqa: E402

from brainae.models import weight_grad  # noqa: E402
from brainae.models.ae import ConvAE  # noqa: E402
from brainae.training.memory import keep_freed_memory  # noqa: E402

ENCODER = ((1, 32, 128), (32, 64, 64), (64, 128, 32), (128, 256, 16), (256, 512, 8))  # in, out, input size
DECODER = ((512, 256, 4), (256, 128, 8), (128, 64, 16), (64, 32, 32), (32, 1, 64))


def layer_times(repeats: int, dtype: torch.dtype) -> list[dict]:
    cl, rows = torch.channels_last, []
    for transposed, layers in ((False, ENCODER), (True, DECODER)):
        k, s, p = (4, 2, 1) if transposed else (3, 2, 1)
        for c_in, c_out, size in layers:
            out = 2 * size if transposed else size // 2
            x = torch.randn(16, c_in, size, size).to(dtype).contiguous(memory_format=cl)
            shape = (c_in, c_out, k, k) if transposed else (c_out, c_in, k, k)
            w = (0.05 * torch.randn(shape)).to(dtype).contiguous(memory_format=cl)
            gy = torch.randn(16, c_out, out, out).to(dtype).contiguous(memory_format=cl)
            args = (gy, x, w, None, [s, s], [p, p], [1, 1], transposed, [0, 0], 1, [False, True, False])

            def matmul():
                coarse, fine = (x, gy) if transposed else (gy, x)
                rows_ = weight_grad.nhwc(coarse).reshape(-1, coarse.shape[1])
                return rows_.t() @ weight_grad.patches(weight_grad.nhwc(fine), coarse.shape[2], coarse.shape[3], k, s, p)

            coarse_pixels = size * size if transposed else out * out
            rows.append({
                "layer": f"{'transposed conv' if transposed else 'conv'} {c_in} -> {c_out}, {size} -> {out} px",
                "onednn_ms": median_ms(lambda: torch.ops.aten.convolution_backward(*args), repeats),
                "matmul_ms": median_ms(matmul, repeats),
                "takes_matmul": coarse_pixels <= weight_grad.SMALL_MAP,
            })
    return rows


def step_rates(windows: int, steps: int, dtype: torch.dtype) -> dict:
    """Images/s of the bare step with the product off (``SMALL_MAP = 0``), at the default and at 8x8 maps."""
    x = torch.rand(16, 1, 128, 128).contiguous(memory_format=torch.channels_last)
    default = weight_grad.SMALL_MAP
    small_map = {"oneDNN": 0, f"matrix product, maps of {default} px or fewer (the default)": default,
                 "matrix product, maps of 64 px or fewer": 64}
    nets = {}
    for name in small_map:
        torch.manual_seed(0)
        net = ConvAE(image_size=128).to(memory_format=torch.channels_last)
        nets[name] = (net, torch.optim.Adam(net.parameters(), lr=5e-4, fused=True))

    def step(name):
        weight_grad.SMALL_MAP = small_map[name]
        net, opt = nets[name]
        with cpu_autocast(dtype):
            loss = F.mse_loss(net(x).recon.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rates = alternating_rates({name: (lambda n=name: step(n)) for name in nets}, windows, steps, 16)
    weight_grad.SMALL_MAP = default
    ratios = {k: [round(a / b, 3) for a, b in zip(v, rates["oneDNN"])] for k, v in rates.items() if k != "oneDNN"}
    return {"images_per_second": rates, "median": {k: round(statistics.median(v), 1) for k, v in rates.items()},
            "ratios": ratios, "median_ratio": {k: round(statistics.median(v), 3) for k, v in ratios.items()}}


def markdown(record: dict) -> str:
    lines = ["# The study AE's weight gradients: oneDNN's or one matrix product", "",
             f"- machine: {record['machine']}", f"- command: `{record['command']}`",
             f"- {record['precision']}, channels-last, batch 16, 128 px; the product is taken where the coarse side has at "
             f"most {record['small_map']} pixels", "",
             "| layer | oneDNN, ms | patches and matrix product, ms | taken |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['layer']} | {r['onednn_ms']} | {r['matmul_ms']} | {'yes' if r['takes_matmul'] else 'no'} |"
              for r in record["layers"]]
    s = record["step"]
    lines += ["", "Bare training step of the study's AE, images/s (median of the windows; one process, alternating):",
              "", "| weight gradients of the small maps | images/s |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in s["median"].items()]
    for k, ratios in s["ratios"].items():
        lines += ["", f"Window by window, {k} / oneDNN: {', '.join(f'{r}x' for r in ratios)} "
                  f"(median **{s['median_ratio'][k]}x**)."]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tag", default="cpu", help="result files: results/weight_grad_<tag>.{json,md}")
    args = ap.parse_args()
    keep_freed_memory()  # as brainae train does
    label, dtype = cpu_precision()
    record = {"machine": machine(), "command": command_line("weight_grad.py"), "precision": label,
              "small_map": weight_grad.SMALL_MAP, "layers": layer_times(args.repeats, dtype),
              "step": step_rates(args.windows, args.steps, dtype)}
    write_results(f"weight_grad_{args.tag}", record, markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
