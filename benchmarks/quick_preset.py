"""Benchmark: why the quick preset (the main job's) has the networks, data and batch it has.

The study's AE trained the quick way (one-cycle schedule, 64x64 phantom slices) in four settings, from
the former quick preset (four conv layers, 1,200 phantom slices, batch 16, 30 epochs) through the same
depth on more data to the current one (two conv layers, 6,000 slices, batch 32, 10 epochs), each in under
two CPU minutes here. Reports the training time and the validation PSNR per image with its 95% interval (the
split carved from the phantom set; the test split is never used). Results go to
benchmarks/results/quick_preset_cpu.{json,md}.

    python benchmarks/quick_preset.py [--variants NAME,NAME]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_real import command_line, machine, write_results  # noqa: E402

from brainae import build_config  # noqa: E402
from brainae.data.load import load_data  # noqa: E402
from brainae.evaluation.evaluate import evaluate  # noqa: E402
from brainae.training.train import train  # noqa: E402

FOUR_LAYERS = "model.channels=[32,64,128,256]"
VARIANTS = {  # name: (data spec, --set overrides on top of the quick preset)
    "former quick: 4 layers, 1,200 slices, batch 16, 30 epochs":
        ("phantom:1200", [FOUR_LAYERS, "train.batch_size=16", "train.lr=3e-3", "train.epochs=30"]),
    "4 layers, 6,000 slices, batch 32, 10 epochs": ("phantom:6000", [FOUR_LAYERS]),
    "3 layers, 6,000 slices, batch 32, 10 epochs": ("phantom:6000", ["model.channels=[32,64,128]"]),
    "quick now: 2 layers, 6,000 slices, batch 32, 10 epochs": ("phantom:6000", []),
}


def run_variant(data: str, overrides: list[str], work: Path) -> dict:
    cfg = build_config("ae", preset="quick", data=data, overrides=overrides)
    cfg.train.progress = False
    ds = load_data(cfg.data, progress=False)
    start = time.perf_counter()
    train(cfg, work, data=ds)
    seconds = time.perf_counter() - start
    val = evaluate(work, split="val", dataset=ds.split("val"), progress=False)
    return {"data": data, "overrides": overrides, "channels": cfg.model.channels, "batch_size": cfg.train.batch_size,
            "epochs": cfg.train.epochs, "train_images": int((ds.splits == "train").sum()),
            "train_seconds": round(seconds, 1), "val_n": val["n"], "val_psnr": val["psnr"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", help="comma-separated names (default: all); see VARIANTS")
    args = ap.parse_args()
    names = [n for n in VARIANTS if not args.variants or any(v.strip() in n for v in args.variants.split(","))]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            rows[name] = run_variant(*VARIANTS[name], Path(tmp) / f"v{i}")
            print(name, rows[name]["train_seconds"], "s", round(rows[name]["val_psnr"]["mean"], 2), "dB", flush=True)
    record = {"benchmark": "the study's AE, quick preset, phantom at 64x64: depth, data and batch",
              "machine": machine(), "command": command_line("quick_preset.py").strip(),
              "split": "validation split, carved from the phantom set (seed 0); the test split is never used",
              "variants": rows}
    lines = ["# The quick preset's choices: the study's AE at 64x64 on the phantom", "",
             f"Machine: {record['machine']}. Command: `{record['command']}`. Scored on the {record['split']}.", "",
             "| setting | training images | training time (s) | validation PSNR (dB) |", "| --- | --- | --- | --- |"]
    for name, r in rows.items():
        p = r["val_psnr"]
        lines.append(f"| {name} | {r['train_images']} | {r['train_seconds']} | {p['mean']:.2f} "
                     f"[{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}] |")
    write_results("quick_preset_cpu", record, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
