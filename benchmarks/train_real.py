"""Benchmark: the study's AE recipe for 2 epochs on the real Training folder.

Records the preprocessing cache (first decode vs. cached load), seconds per epoch and
validation PSNR, and the machine it ran on. Results go to benchmarks/results/.

    python benchmarks/train_real.py [--data ../shared/data/brain-tumor-mri] [--epochs 2] [--accelerator cpu]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from brainae.config import build_config
from brainae.data.load import load_data
from brainae.evaluation.evaluate import evaluate
from brainae.training.precision import cpu_flags, cpu_name, vector_units
from brainae.training.train import train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri"


def without_option(argv: list[str], option: str) -> list[str]:
    """The command line minus ``option`` and its value (free text recorded on its own in the results)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    units = vector_units(cpu_flags())  # e.g. "AVX2, no native bf16": the same model name can differ here
    return f"{cpu_name()}, {os.cpu_count()} cores{f' ({units})' if units else ''}, torch {torch.get_num_threads()} threads"


def portable_path(path: str | Path) -> str:
    """A path as a results file may record it: relative to the repository where it lies in or beside it
    (the real data in ``../shared``), ``<tmp>/...`` in the temporary folder (a scratch run folder), else
    ``<outside>/`` and its last two parts."""
    p, tmp = Path(path).absolute(), Path(tempfile.gettempdir())
    if p.is_relative_to(ROOT):
        return os.path.relpath(p, ROOT)
    if p.is_relative_to(tmp):
        return "/".join(["<tmp>", *p.relative_to(tmp).parts])
    if p.is_relative_to(ROOT.parent):
        return os.path.relpath(p, ROOT)
    return "/".join(["<outside>", *p.parts[-2:]])


def command_line(script: str, argv: list[str] | None = None) -> str:
    """How this run was started, with absolute paths made portable (results name no machine's paths)."""
    args = sys.argv[1:] if argv is None else argv
    def portable(arg: str) -> str:
        option, eq, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
        return option + eq + (portable_path(value) if value.startswith("/") else value)
    return f"python benchmarks/{script} " + " ".join(portable(a) for a in args)


def data_name(spec: str) -> str:
    return spec if spec.startswith("phantom") else Path(spec).name


def write_results(name: str, record: dict, markdown: str) -> None:
    """results/<name>.json and .md (or under $BENCH_RESULTS), and the table on stdout."""
    dest = Path(os.environ.get("BENCH_RESULTS", ROOT / "benchmarks" / "results"))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (dest / f"{name}.md").write_text(markdown)
    print(markdown)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--precision", default="32")
    ap.add_argument("--limit", type=int, default=0, help="fewer training images (smoke tests only)")
    ap.add_argument("--tag", default="cpu", help="name of the result file: results/train_real_<tag>.json")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        print(f"real data not found at {args.data}; pass --data", file=sys.stderr)
        return 2

    cache = Path(tempfile.mkdtemp(prefix="brainae-bench-cache-"))
    os.environ["BRAINAE_CACHE"] = str(cache)
    cfg = build_config("ae", preset="seed", data=args.data, epochs=args.epochs,
                       accelerator=args.accelerator, precision=args.precision, limit=args.limit or None)
    cfg.train.progress = False
    t0 = time.perf_counter()
    ds = load_data(cfg.data, progress=False)
    first_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_data(cfg.data, progress=False)
    cached_load = time.perf_counter() - t0

    out = Path(tempfile.mkdtemp(prefix="brainae-bench-run-"))
    result = train(cfg, out / "ae", data=ds)
    val = evaluate(out / "ae", split="val", dataset=ds.split("val"))  # per-image metrics, best checkpoint
    with open(out / "ae" / "history.csv") as f:
        history = list(csv.DictReader(f))
    record = {
        "benchmark": "study AE recipe (seed preset: lr 5e-4, batch 16, latent 512, 128x128), real Training folder",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python benchmarks/train_real.py --epochs {args.epochs} --accelerator {args.accelerator} --precision {args.precision} --tag {args.tag}",
        "images": {"train": result["n_train"], "val": result["n_val"], "skipped": len(ds.skipped)},
        "first_load_seconds": round(first_load, 2),
        "cached_load_seconds": round(cached_load, 2),
        "epochs": [
            {"epoch": int(r["epoch"]), "seconds": round(float(r["seconds"]), 2),
             "train_images_per_second": round(result["n_train"] / float(r["seconds"]), 1),
             "val_loss": round(float(r["val_loss"]), 6), "val_psnr": round(float(r["val_psnr"]), 2)}
            for r in history
        ],
        "seconds_per_epoch": result["seconds_per_epoch"],
        "val_split_per_image": {m: val[m] for m in ("psnr", "ssim", "mse")},
        "precision": args.precision,
    }
    dest = Path(os.environ.get("BENCH_RESULTS", ROOT / "benchmarks" / "results")) / f"train_real_{args.tag}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
