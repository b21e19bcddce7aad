"""Benchmark: the study AE's one-channel output layer as oneDNN's transposed conv and as a conv to its phases.

The last decoder layer (32 channels to 1, 64 to 128 px, kernel 4, stride 2) costs almost no arithmetic, yet
oneDNN's transposed conv to one channel took milliseconds. ``blocks.ConvTranspose`` runs it instead as a
3x3 conv giving each of the four output phases as a channel, then ``pixel_shuffle``, where it does not train
on a CPU. Two measurements, in the precision brainae picks on this CPU (``conv_bias.cpu_precision``) and
channels-last:

1. the layer alone, both forms: inference (batch 64, ``evaluate``'s) and a training forward and backward
   (batch 16), the median of ``--repeats`` calls after a warm-up;
2. the whole network's inference (``torch.inference_mode``, batch 64): two study AEs in one process, the
   output layer as a transposed conv in one and as phases in the other, ``--windows`` windows of
   ``--batches`` batches each, alternating which goes first; the median images/s and each window's ratio.

Results go to benchmarks/results/output_layer_<tag>.{json,md}.

    python benchmarks/output_layer.py [--repeats 21] [--windows 10] [--batches 6] [--tag cpu]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from conv_bias import alternating_rates, compare_rates, cpu_autocast, cpu_precision, median_ms  # noqa: E402
from train_real import command_line, machine, write_results  # noqa: E402

from brainae.models import blocks  # noqa: E402
from brainae.models.ae import ConvAE  # noqa: E402
from brainae.training.memory import keep_freed_memory  # noqa: E402

FORMS = ("transposed conv", "phases")


def as_transposed(layer: blocks.ConvTranspose) -> blocks.ConvTranspose:
    """``layer`` without its phase form: every call is the transposed conv."""
    layer.as_phases, layer.phase_taps = False, None
    return layer


def output_layer(form: str) -> blocks.ConvTranspose:
    torch.manual_seed(0)
    layer = blocks.ConvTranspose(32, 1, 4, stride=2, padding=1).to(memory_format=torch.channels_last)
    assert layer.as_phases
    return as_transposed(layer) if form == "transposed conv" else layer


def layer_times(repeats: int, dtype: torch.dtype) -> list[dict]:
    rows = []
    for form in FORMS:
        layer = output_layer(form)
        x64 = torch.randn(64, 32, 64, 64).contiguous(memory_format=torch.channels_last)
        x16 = torch.randn(16, 32, 64, 64).contiguous(memory_format=torch.channels_last).requires_grad_()

        def infer():
            with torch.inference_mode(), cpu_autocast(dtype):
                layer(x64)

        def train():  # a CPU trains the transposed conv; the phase form is what a GPU would train
            with cpu_autocast(dtype):
                y = layer(x16) if form == "transposed conv" else blocks.phase_conv(
                    x16, layer.weight.transpose(0, 1), layer.bias, layer.phase_taps)
            y.float().sum().backward()

        rows.append({"form": form, "inference_batch_64_ms": median_ms(infer, repeats),
                     "training_batch_16_ms": median_ms(train, repeats)})
    return rows


def network_rates(windows: int, batches: int, dtype: torch.dtype) -> dict:
    x = torch.rand(64, 1, 128, 128).contiguous(memory_format=torch.channels_last)
    nets = {}
    for form in FORMS:
        torch.manual_seed(0)
        net = ConvAE(image_size=128).to(memory_format=torch.channels_last).eval()
        if form == "transposed conv":
            as_transposed(net.decoder[-1][0])
        nets[form] = net

    def run(net):
        with torch.inference_mode(), cpu_autocast(dtype):
            net(x)

    rates = alternating_rates({name: (lambda n=name: run(nets[n])) for name in nets}, windows, batches, 64)
    return compare_rates(rates, "phases", "transposed conv")


def markdown(record: dict) -> str:
    lines = ["# The study AE's one-channel output layer: transposed conv or a conv to its phases", "",
             f"- machine: {record['machine']}", f"- command: `{record['command']}`",
             f"- {record['precision']}, channels-last; 32 channels to 1, 64 to 128 px; the "
             "transposed conv trains with its bias added after the conv (brainae's CPU training path)", "",
             "| form | inference, batch 64, ms | training forward and backward, batch 16, ms |", "| --- | --- | --- |"]
    lines += [f"| {r['form']} | {r['inference_batch_64_ms']} | {r['training_batch_16_ms']} |" for r in record["layers"]]
    n = record["network"]
    lines += ["", "The study AE's inference, batch 64, images/s (median of the windows; one process, alternating):", "",
              "| output layer | images/s |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in n["median"].items()]
    lines += ["", f"Window by window, phases / transposed conv: {', '.join(f'{r}x' for r in n['ratios'])} "
              f"(median **{n['median_ratio']}x**). Training on a CPU keeps the transposed conv.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--tag", default="cpu", help="result files: results/output_layer_<tag>.{json,md}")
    args = ap.parse_args()
    keep_freed_memory()  # as brainae's inference loops do
    label, dtype = cpu_precision()
    record = {"machine": machine(), "command": command_line("output_layer.py"), "precision": label,
              "layers": layer_times(args.repeats, dtype), "network": network_rates(args.windows, args.batches, dtype)}
    write_results(f"output_layer_{args.tag}", record, markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
