"""Benchmark: the PCA baseline of the held-out comparison on the real data, at the study's code sizes.

The study's AE codes each 128x128 image in 512, 1024 or 2048 numbers. The best linear code of that size
is the projection on the top principal directions of the training images; this script scores it on the
test split of the real Training folder (the split every command carves by default, 128 px) with the
functions that score the networks (``brainae.evaluation.baselines``), and records how long the fit took.
No training: the numbers depend on the data and the split only. Beside them, the study's AE recipe
(latent 512, 40 epochs) on the same split, read from the committed ``leakage_cpu.json`` when its
grouped split has the same groups and test images as this one. Results go to
benchmarks/results/pca_baseline_<tag>.{json,md}.

    python benchmarks/pca_baseline.py [--data ../shared/data/brain-tumor-mri] [--components 512 1024 2048]
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from brainae.config import build_config
from brainae.data.grouping import describe
from brainae.data.load import load_data
from brainae.evaluation.baselines import NULL_EIGENVALUE, pca_baseline

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_real import command_line, data_name, machine, write_results  # noqa: E402


def study_ae_on_this_split(groups: list[int], n_test: int) -> dict | None:
    """The study's AE recipe's test PSNR on the grouped split from ``leakage_cpu.json``, if that split is this one."""
    path = ROOT / "benchmarks" / "results" / "leakage_cpu.json"
    try:
        leak = json.loads(path.read_text())
        split, run = leak["carved_splits"]["grouped"]["split_groups"], leak["training"]["grouped"]
    except (OSError, KeyError, ValueError):
        return None
    if [split[s] for s in ("train", "val", "test")] != groups or run["n_test"] != n_test:
        return None
    return {"test_psnr": run["test_psnr"]["mean"], "epochs": leak["epochs"], "source": "benchmarks/results/leakage_cpu.json"}


def ci(r: dict, metric: str, fmt: str) -> str:
    lo, hi = r[metric]["ci95"]
    return f"{fmt.format(r[metric]['mean'])} [{fmt.format(lo)}, {fmt.format(hi)}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the real data folder (Training/<class>/*.jpg)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--components", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--tag", default="cpu")
    args = ap.parse_args()
    if not args.data.startswith("phantom") and not Path(args.data).is_dir():
        print(f"real data not found at {args.data}; pass --data (benchmark skipped)", file=sys.stderr)
        return 0
    cfg = build_config("ae", preset="seed", data=args.data)
    cfg.data.image_size = args.image_size
    ds = load_data(cfg.data, progress=False)
    train, test = ds.split("train"), ds.split("test")
    rows = {}
    for k in args.components:
        t = time.perf_counter()
        row = pca_baseline(train, test, k, seed=cfg.data.seed)
        row["seconds"] = round(time.perf_counter() - t, 1)
        rows[str(k)] = row
    groups = [ds.grouping["groups"].get(s, 0) for s in ("train", "val", "test")]
    record_ae = study_ae_on_this_split(groups, len(test))
    record = {"benchmark": "PCA baseline on the test split", "machine": machine(),
              "date": datetime.date.today().isoformat(), "command": command_line("pca_baseline.py"),
              "data": data_name(args.data), "image_size": args.image_size, "split": describe(ds.grouping),
              "n_train": len(train), "n_test": len(test), "rows": rows, "study_ae": record_ae}
    lines = [f"# PCA baseline on the test split ({record['machine']})", "",
             f"{record['date']}; `{record['command']}`; {record['data']} at {args.image_size} px, {record['split']}: "
             f"the basis fitted on {len(train)} training images, scored on {len(test)} test images (mean [95% bootstrap "
             "interval]).", "",
             "| components asked | components | test PSNR (dB) | test SSIM | test MSE | fit and scoring (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for k, r in rows.items():
        lines.append(f"| {k} | {r['latent_dim']} | {ci(r, 'psnr', '{:.2f}')} | {ci(r, 'ssim', '{:.3f}')} | "
                     f"{ci(r, 'mse', '{:.5f}')} | {r['seconds']} |")
    if record_ae and "512" in rows:
        gap = rows["512"]["psnr"]["mean"] - record_ae["test_psnr"]
        record["pca_512_minus_study_ae_db"] = round(gap, 2)
        lines += ["", f"The study's AE recipe (latent 512, {record_ae['epochs']} epochs, this CPU) scored "
                  f"{record_ae['test_psnr']:.2f} dB on this same split ({record_ae['source']}): PCA with 512 "
                  f"components is {gap:.2f} dB {'above' if gap > 0 else 'below'} it."]
    lines += ["", f"Components stop at the directions the training images span: at most their number minus one "
              f"({len(train) - 1}), fewer where some are copies of others (eigenvalues below "
              f"{NULL_EIGENVALUE:g} of the largest are dropped as rounding)."]
    write_results(f"pca_baseline_{args.tag}", record, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
