"""Benchmark: the quick preset's VAE (the main job's) at peak learning rates 2e-3 and 1e-3, over seeds.

At 2e-3 (the quick preset's rate for the AE) the VAE's summed BCE + KL loss spiked in its second epoch,
when the one-cycle schedule reaches its peak. This trains the quick VAE on the main job's phantom data at
each rate with ``--seeds`` training seeds and reports the validation loss after every epoch, the epoch
whose checkpoint is kept (lowest validation loss), and the validation PSNR at the end; a spike is an
epoch whose validation loss is over 1.5 times the previous epoch's. The test split is never used.
Results go to benchmarks/results/vae_lr_cpu.{json,md}.

    python benchmarks/vae_lr.py [--seeds 4] [--rates 2e-3,1e-3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_real import command_line, machine, write_results  # noqa: E402

from brainae import build_config  # noqa: E402
from brainae.data.load import load_data  # noqa: E402
from brainae.training.callbacks import read_history  # noqa: E402
from brainae.training.train import train  # noqa: E402

SPIKE = 1.5  # an epoch's validation loss over this times the previous epoch's


def run(lr: float, seed: int, data, work: Path) -> dict:
    cfg = build_config("vae", preset="quick", overrides=[f"train.lr={lr}", f"train.seed={seed}"])
    cfg.train.progress = False
    train(cfg, work, overwrite=True, data=data)
    history = read_history(work / "history.csv")
    val = [round(float(r["val_loss"]), 1) for r in history]
    psnr = float(history[-1]["val_psnr"])
    spikes = [i + 2 for i, (a, b) in enumerate(zip(val, val[1:])) if b > SPIKE * a]
    return {"lr": lr, "seed": seed, "val_loss": val, "best_epoch": val.index(min(val)) + 1,
            "best_val_loss": min(val), "last_val_psnr": round(psnr, 2), "spike_epochs": spikes}


def markdown(record: dict) -> str:
    lines = ["# The quick preset's VAE at two peak learning rates", "",
             f"- machine: {record['machine']}", f"- command: `{record['command']}`",
             f"- data: {record['data']} (the main job's), validation split; a spike: an epoch's validation loss "
             f"over {SPIKE} times the previous epoch's", "",
             "| peak lr | seed | validation loss after each epoch | spikes (epoch) | kept epoch | kept val loss "
             "| last val PSNR (dB) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in record["runs"]:
        lines.append(f"| {r['lr']:g} | {r['seed']} | {', '.join(f'{v:g}' for v in r['val_loss'])} | "
                     f"{', '.join(map(str, r['spike_epochs'])) or '-'} | {r['best_epoch']} | {r['best_val_loss']:g} | "
                     f"{r['last_val_psnr']} |")
    lines += ["", "| peak lr | runs that spiked | median kept val loss | median last val PSNR (dB) |",
              "| --- | --- | --- | --- |"]
    for lr, s in record["summary"].items():
        lines.append(f"| {lr} | {s['spiked']} of {s['runs']} | {s['median_best_val_loss']:g} | {s['median_last_psnr']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--rates", default="2e-3,1e-3", help="peak learning rates, comma-separated")
    args = ap.parse_args()
    cfg = build_config("vae", preset="quick")
    data = load_data(cfg.data, progress=False)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in (float(v) for v in args.rates.split(",")):
            for seed in range(args.seeds):
                runs.append(run(lr, seed, data, Path(tmp) / f"lr{lr:g}_seed{seed}"))
                print(runs[-1], flush=True)
    summary = {}
    for lr in dict.fromkeys(r["lr"] for r in runs):
        mine = [r for r in runs if r["lr"] == lr]
        summary[f"{lr:g}"] = {"runs": len(mine), "spiked": sum(bool(r["spike_epochs"]) for r in mine),
                              "median_best_val_loss": round(statistics.median(r["best_val_loss"] for r in mine), 1),
                              "median_last_psnr": round(statistics.median(r["last_val_psnr"] for r in mine), 2)}
    record = {"machine": machine(), "command": command_line("vae_lr.py"), "data": cfg.data.spec,
              "epochs": cfg.train.epochs, "runs": runs, "summary": summary}
    write_results("vae_lr_cpu", record, markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
