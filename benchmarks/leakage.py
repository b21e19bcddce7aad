"""Benchmark: splits that leak and splits that do not, on the real Training folder.

1. Carved splits: exact and near duplicate groups (data inspect's rule, pHash within 2 bits) that cross
   splits, image by image (``--keep-duplicates``, the old default) against by group (the default).
2. A Training/Testing layout built from the same folder the way the public dataset is (394 test files,
   88 of them also in Training): how many test files each loading trains on.
3. The study's AE recipe (preset seed) trained on each carved split and evaluated on its own test split:
   the image-wise model's test images with a copy in train/val against the rest (the leak's worth), and
   as a control the grouped model's test images that have copies (inside the test split) against the rest.

    python benchmarks/leakage.py [--data ../shared/data/brain-tumor-mri/Training] [--epochs 40] [--work DIR]
    python benchmarks/leakage.py --splits-only      # parts 1 and 2, a minute
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from brainae.config import build_config
from brainae.data.duplicates import components, find_duplicates, group_edges
from brainae.data.inspect import _has_member_in, inspect_imageset
from brainae.data.load import load_data
from brainae.evaluation.evaluate import image_metrics
from brainae.evaluation.metrics import summarize
from brainae.io import write_json
from brainae.training.run import load_run
from brainae.training.train import train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_real import command_line, machine  # noqa: E402

NEAR = 2  # data inspect's default, and data.near_threshold's
PUBLIC_TEST, PUBLIC_SHARED = 394, 88  # the public dataset's Testing folder and its files also in Training


def crossing(ds) -> dict:
    """Duplicate groups across splits and test images with a copy in train/val, as data inspect counts them."""
    report = inspect_imageset(ds, near_threshold=NEAR)
    return {kind: sum(report["duplicates"][kind]["across_splits"].values()) for kind in ("exact", "near")} | {
        "test_images_with_a_copy_in_train_or_val": report["leaks"]["test_in_train_or_val"],
        "split_groups": ds.grouping["groups"]}


def carved_splits(data: str) -> dict:
    out = {}
    for name, keep in (("image_wise", True), ("grouped", False)):
        ds = load_data(build_config("ae", preset="seed", data=data, keep_duplicates=keep).data, progress=False)
        out[name] = crossing(ds)
    return out


def public_layout(data: Path, seed: int = 0) -> dict:
    """A Training/Testing folder of links: 394 test files, 88 of them left in Training too."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng = np.random.default_rng(seed)
    test = set(rng.choice(len(files), PUBLIC_TEST, replace=False).tolist())
    shared = set(rng.choice(sorted(test), PUBLIC_SHARED, replace=False).tolist())
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(files):
            for split in (["Testing"] if i in test else []) + (["Training"] if i not in test or i in shared else []):
                link = Path(tmp, split, f.parent.name, f.name)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(f, link)
        test_bytes = {Path(tmp, "Testing", files[i].parent.name, files[i].name).read_bytes() for i in test}
        for name, keep in (("keep_duplicates", True), ("default", False)):
            ds = load_data(build_config("ae", preset="seed", data=tmp, keep_duplicates=keep).data, progress=False)
            trained = [s for s, sp in zip(ds.sources, ds.splits) if sp in ("train", "val")]
            counts[name] = {
                "train_or_val_files_identical_to_a_test_file": sum(Path(s).read_bytes() in test_bytes for s in trained),
                "left_out": ds.grouping["removed"]["count"],
                "left_out_reasons": ds.grouping["removed"]["reasons"],
                "test_images_with_a_copy_in_train_or_val": crossing(ds)["test_images_with_a_copy_in_train_or_val"],
            }
    return {"test_files": PUBLIC_TEST, "test_files_also_in_training": PUBLIC_SHARED, **counts}


def psnr_by(values: np.ndarray, mask: np.ndarray, groups: np.ndarray) -> dict:
    return {"n": int(mask.sum()), **summarize(values[mask], groups=groups[mask])}


def train_both(data: str, epochs: int, work: Path) -> dict:
    out = {}
    for name, keep in (("image_wise", True), ("grouped", False)):
        cfg = build_config("ae", preset="seed", data=data, epochs=epochs, keep_duplicates=keep)
        cfg.train.progress = False
        ds = load_data(cfg.data, progress=False)
        run = work / name
        start = time.perf_counter()
        result = train(cfg, run, overwrite=True, data=ds)
        model, _ = load_run(run)
        test = ds.split("test")
        psnr = image_metrics(model, test.images)["psnr"]
        # which test images have a copy (exact or near) elsewhere: in train/val, or only inside the test split
        dups = find_duplicates(ds, NEAR)
        comp = components(len(ds), *group_edges(dups["exact"] + dups["near"]))
        in_fit = _has_member_in(comp, np.isin(ds.splits, ("train", "val")))[ds.splits == "test"]
        sizes = np.bincount(comp)[comp][ds.splits == "test"]
        groups = test.groups
        out[name] = {
            "n_train": result["n_train"], "n_val": result["n_val"], "n_test": len(test),
            "best_epoch": result["best_epoch"], "best_val_psnr": result["best_val_psnr"],
            "minutes": round((time.perf_counter() - start) / 60, 1),
            "test_psnr": {"n": len(test), **summarize(psnr, groups=groups)},
            "test_with_a_copy_in_train_or_val": psnr_by(psnr, in_fit, groups),
            "test_with_copies_only_in_test": psnr_by(psnr, ~in_fit & (sizes > 1), groups),
            "test_without_copies": psnr_by(psnr, sizes == 1, groups),
        }
    return out


def markdown(res: dict) -> str:
    c, p = res["carved_splits"], res["public_layout"]
    lines = [f"# Leakage on {res['data']}", "", f"Machine: {res['machine']}. Command: `{res['command']}`.", "",
             "## Carved splits (val 15%, test 15%): duplicate groups across splits (pHash within 2 bits)", "",
             "| split | exact groups across | near groups across | test images with a copy in train/val (exact, near) |",
             "| --- | --- | --- | --- |"]
    for name in ("image_wise", "grouped"):
        t = c[name]["test_images_with_a_copy_in_train_or_val"]
        lines.append(f"| {name} | {c[name]['exact']} | {c[name]['near']} | {t['exact']}, {t['near']} |")
    lines += ["", f"## Training/Testing layout: {p['test_files']} test files, {p['test_files_also_in_training']} "
                  "of them also in Training (as the public dataset)", "",
              "| loading | train/val files identical to a test file | left out |", "| --- | --- | --- |"]
    for name in ("keep_duplicates", "default"):
        lines.append(f"| {name} | {p[name]['train_or_val_files_identical_to_a_test_file']} | {p[name]['left_out']} |")
    if "training" in res:
        t = res["training"]
        lines += ["", f"## The study's AE recipe ({res['epochs']} epochs) on each carved split: test PSNR (dB)", "",
                  "| split | n test | all test | with a copy in train/val | with copies only in test | without copies |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name in ("image_wise", "grouped"):
            r = t[name]

            def cell(d):
                return f"{d['mean']:.2f} [{d['ci95'][0]:.2f}, {d['ci95'][1]:.2f}] (n={d['n']})" if d["n"] else "-"
            lines.append(f"| {name} | {r['n_test']} | {cell(r['test_psnr'])} | {cell(r['test_with_a_copy_in_train_or_val'])} "
                         f"| {cell(r['test_with_copies_only_in_test'])} | {cell(r['test_without_copies'])} |")
        lines += ["", f"Leak worth (image-wise model, copies in train/val minus without copies): "
                      f"{res['leak_worth_db']:+.2f} dB on those images; the reported test PSNR moved "
                      f"{res['reported_gap_db']:+.2f} dB (image-wise minus grouped)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--work", default=None, help="run folders (default: a temporary folder)")
    ap.add_argument("--splits-only", action="store_true", help="parts 1 and 2 only (no training)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "leakage_cpu"))
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        print(f"no data at {data}", file=sys.stderr)
        return 2
    res = {"data": "brain-tumor-mri/Training" if data.resolve() == DEFAULT_DATA.resolve() else data.name,
           "machine": machine(), "command": command_line("leakage.py"),
           "near_threshold": NEAR, "epochs": args.epochs}
    res["carved_splits"] = carved_splits(str(data))
    print(json.dumps(res["carved_splits"], indent=1))
    res["public_layout"] = public_layout(data)
    print(json.dumps(res["public_layout"], indent=1))
    if not args.splits_only:
        with tempfile.TemporaryDirectory() as tmp:
            res["training"] = train_both(str(data), args.epochs, Path(args.work or tmp))
        t = res["training"]
        res["leak_worth_db"] = (t["image_wise"]["test_with_a_copy_in_train_or_val"]["mean"]
                                - t["image_wise"]["test_without_copies"]["mean"])
        res["reported_gap_db"] = t["image_wise"]["test_psnr"]["mean"] - t["grouped"]["test_psnr"]["mean"]
    out = Path(args.out)
    if args.splits_only and out.with_suffix(".json").is_file():  # keep an earlier training part
        old = json.loads(out.with_suffix(".json").read_text())
        for k in ("training", "leak_worth_db", "reported_gap_db", "epochs", "command"):
            if k in old:
                res[k] = old[k]
    write_json(out.with_suffix(".json"), res)
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
