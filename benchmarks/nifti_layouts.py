"""Benchmark: NIfTI subject layouts split by subject, and tumour detection on them end to end.

1. Synthetic BraTS-like and BIDS datasets (``brainae data synth``): subjects and volumes per split, and
   how many of each land in more than one split, with the default loading and image by image
   (``data inspect --raw``, the old behaviour).
2. The BraTS-like set: ``brainae train --normal-only no_tumor`` then ``brainae anomaly``: image-level
   AUROC / AUPRC of the reconstruction-error scores and pixel-level AUROC / AUPRC and best Dice
   against the tumour masks, on the test subjects.

    python benchmarks/nifti_layouts.py [--subjects 20] [--epochs 40] [--image-size 64] [--modality flair]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from brainae.cli import main as brainae
from brainae.config import DataConfig
from brainae.data.load import load_data
from brainae.data.synth_nifti import write_synthetic_nifti
from brainae.io import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_real import command_line, machine  # noqa: E402


def split_counts(root: Path) -> dict:
    """Slices, subjects and volumes per split, grouped (the default) and image by image (--raw)."""
    cfg = DataConfig(spec=str(root), image_size=64)
    grouped = load_data(cfg, progress=False)
    subject_of = dict(zip(grouped.sources, grouped.group_names))
    out = {}
    for name, ds in (("grouped", grouped), ("image_by_image", load_data(cfg, progress=False, raw=True))):
        units = {"subjects": [subject_of[s] for s in ds.sources], "volumes": [s.split("#")[0] for s in ds.sources]}
        out[name] = {"slices": len(ds)}
        for unit, names in units.items():
            by: dict[str, set] = {}
            for n, split in zip(names, ds.splits):
                by.setdefault(n, set()).add(str(split))
            out[name][unit] = {"total": len(by), "in_more_than_one_split": sum(len(v) > 1 for v in by.values()),
                               "per_split": {s: sum(s in v for v in by.values()) for s in ("train", "val", "test")}}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--modality", default="flair", help="the image the detector sees (FLAIR shows edema bright)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "nifti_layouts_cpu"))
    args = ap.parse_args()
    res = {"machine": machine(), "command": command_line("nifti_layouts.py"),
           "data": f"brainae data synth, {args.subjects} subjects per layout, seed 0"}
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("brats", "bids"):
            root = Path(tmp) / layout
            summary = write_synthetic_nifti(root, layout=layout, subjects=args.subjects, seed=0)
            res[layout] = {"shape": summary["shape"], "spacing_mm": summary["spacing_mm"],
                           "orientation": summary["orientation"],
                           "tumour_subjects": sum(s["tumor"] for s in summary["subjects"]), **split_counts(root)}
        run = Path(tmp) / "run"
        common = ["--image-size", str(args.image_size), "--no-progress"]
        start = time.perf_counter()
        code = brainae(["train", "--data", str(Path(tmp) / "brats"), "--model", "ae", "--preset", "seed",
                        "--normal-only", "no_tumor", "--epochs", str(args.epochs), "--latent-dim", "128",
                        "--modality", args.modality,
                        *common, "--out", str(run)])
        assert code == 0, "training failed"
        code = brainae(["anomaly", str(run), "--no-progress"])
        assert code == 0, "anomaly failed"
        anomaly = json.loads((run / "anomaly" / "anomaly.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        res["anomaly"] = {"recipe": f"study AE (preset seed), latent 128, {args.modality.upper()}, {args.image_size} px, "
                                    f"{args.epochs} epochs, trained and selected on no_tumor slices of the training "
                                    "subjects",
                          "minutes": round((time.perf_counter() - start) / 60, 1),
                          "best_epoch": metrics["best_epoch"], "n_train": metrics["n_train"],
                          **{k: anomaly[k] for k in ("n", "n_tumor", "n_normal", "image_level", "pixel_level")}}
    write_json(Path(args.out).with_suffix(".json"), res)
    Path(args.out).with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


def markdown(res: dict) -> str:
    lines = [f"# NIfTI subject layouts ({res['data']})", "", f"Machine: {res['machine']}. Command: `{res['command']}`.",
             "", "| layout | storage | spacing (mm) | loading | slices | subjects in >1 split | volumes in >1 split | "
                 "subjects train / val / test |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for layout in ("brats", "bids"):
        r = res[layout]
        for name in ("grouped", "image_by_image"):
            c = r[name]
            per = " / ".join(str(c["subjects"]["per_split"][s]) for s in ("train", "val", "test"))
            lines.append(f"| {layout} | {r['orientation']} | {' x '.join(map(str, r['spacing_mm']))} | {name} | "
                         f"{c['slices']} | {c['subjects']['in_more_than_one_split']} of {c['subjects']['total']} | "
                         f"{c['volumes']['in_more_than_one_split']} of {c['volumes']['total']} | {per} |")
    a = res["anomaly"]
    lines += ["", f"## Tumour detection on the BraTS-like set: {a['recipe']}", "",
              f"Test slices: {a['n']} ({a['n_tumor']} with tumour, {a['n_normal']} without), from subjects never "
              f"trained on; {a['n_train']} healthy training slices, best epoch {a['best_epoch']}, "
              f"{a['minutes']} min for training and scoring.", "", "| score | AUROC | AUPRC |", "| --- | --- | --- |"]
    for k, v in a["image_level"].items():
        lines.append(f"| image: {k} | {v['auroc']:.3f} | {v['auprc']:.3f} |")
    p = a["pixel_level"]
    lines.append(f"| pixels (residual map) | {p['auroc']:.3f} | {p['auprc']:.3f} |")
    lines += ["", f"Best pixel Dice: {p['best_dice']:.3f} (residual >= {p['dice_threshold']:.3f}); "
                  f"{p['tumor_pixels']} tumour pixels of {p['pixels']} inside the brain."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
