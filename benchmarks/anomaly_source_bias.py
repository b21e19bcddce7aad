"""Why reconstruction error ranks tumour slices *below* healthy ones on the real data (AUROC 0.22 for the
DAE, 0.40 for an AE trained on no_tumor only): the no_tumor images come from other sources.

Hypothesis: in the Training folder the healthy class was collected apart from the tumour classes
(other original sizes, framing, contrast, sharpness), and an autoencoder's error measures how much
fine detail an image has, which follows the source, not the tumour. Checks, cheapest first:

1. File headers (PIL, no decoding): original sizes, file sizes, file-name patterns per class.
2. Appearance of the preprocessed 128 px images per class: intensity, brain share, bright pixels,
   gradient, high-frequency energy, fine detail (input minus its 1-pixel Gaussian blur).
3. Model-free tumour scores on the test split: each appearance measure as it is, and the error of a
   PCA reconstruction fit on the training split (all classes, or no_tumor only; 16 and 64 components).
4. With --run: each trained run's scores from brainae.evaluation.anomaly (mse, ssim, p99, mse_detail).

Each score gets three AUROCs on the test split (stratified bootstrap 95% intervals):
    tumour      tumour vs healthy, all test images: what `brainae anomaly` reports
    matched     tumour vs healthy among test images whose original is not 512x512 (same kind of source)
    source      among tumour test images only: not 512x512 vs 512x512 (0.5 = blind to the source)
Nothing is fit on the test split; the scores have no parameters chosen after looking at it.

    python benchmarks/anomaly_source_bias.py [--data ../shared/data/brain-tumor-mri/Training] [--run RUN_DIR ...]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
sys.path.insert(0, str(Path(__file__).parent))

from train_real import command_line, machine, portable_path, without_option  # noqa: E402

from brainae.config import DataConfig  # noqa: E402
from brainae.data.load import load_data  # noqa: E402
from brainae.evaluation.anomaly import anomaly_scores, auroc  # noqa: E402
from brainae.evaluation.brain_scores import brain_masks, detail_energy  # noqa: E402

NORMAL = "no_tumor"
SOURCE_SIZE = (512, 512)  # the tumour classes' usual original size; the healthy class almost never has it


def headers(sources: list[str], labels: np.ndarray, classes: list[str]) -> dict:
    """Per class, from file headers only: original sizes, share 512x512, file size, file-name patterns."""
    sizes, kb = [], []
    for s in sources:
        with Image.open(s) as im:  # opening reads the header; no pixels are decoded
            sizes.append(im.size)
        kb.append(os.path.getsize(s) / 1024)
    out = {}
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        sz = Counter(sizes[i] for i in idx)
        names = Counter(re.sub(r"\d+", "N", Path(sources[i]).stem) for i in idx)
        out[name] = {"n": int(len(idx)), "share_512x512": float(np.mean([sizes[i] == SOURCE_SIZE for i in idx])),
                     "distinct_sizes": len(sz), "common_sizes": [[f"{w}x{h}", n] for (w, h), n in sz.most_common(3)],
                     "median_kb": float(np.median([kb[i] for i in idx])),
                     "name_patterns": [[p, n] for p, n in names.most_common(3)]}
    return {"per_class": out, "is_512": np.array([s == SOURCE_SIZE for s in sizes])}


def appearance(x: np.ndarray, brains: np.ndarray) -> dict[str, np.ndarray]:
    """Per image measures of float images (N, H, W) in [0, 1], inside the brain where it matters."""
    def inside(maps):
        return np.array([m[b].mean() for m, b in zip(maps, brains)])

    grad = np.hypot(ndi.sobel(x, axis=1), ndi.sobel(x, axis=2)) / 8
    power = np.abs(np.fft.fftshift(np.fft.fft2(x - x.mean((1, 2), keepdims=True)), axes=(1, 2))) ** 2
    h, w = x.shape[1:]
    radius = np.hypot(*np.mgrid[-h // 2:h - h // 2, -w // 2:w - w // 2])
    return {
        "mean intensity": x.mean((1, 2)),
        "brain share": brains.mean((1, 2)),
        "brain mean": inside(x),
        "brain std": np.array([v[b].std() for v, b in zip(x, brains)]),
        "bright share (> 0.8)": (x > 0.8).mean((1, 2)),
        "gradient (brain)": inside(grad),
        "high-freq energy share": power[:, radius > h / 8].sum(1) / power.sum((1, 2)),
        "fine detail (brain)": detail_energy(x, brains),
    }


def pca_errors(x: np.ndarray, brains: np.ndarray, fit: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Mean squared error inside the brain of a k-component PCA, fit on images ``fit``, for images ``score``."""
    flat = torch.from_numpy(x.reshape(len(x), -1))
    mean = flat[fit].mean(0)
    torch.manual_seed(0)
    _, _, v = torch.svd_lowrank(flat[fit] - mean, q=k + 10, niter=4)
    v = v[:, :k]
    centred = flat[score] - mean
    err = ((centred - centred @ v @ v.T) ** 2).numpy().reshape((-1,) + x.shape[1:])
    return np.array([e[b].mean() for e, b in zip(err, brains[score])])


def auroc_ci(s: np.ndarray, y: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """AUROC with a stratified percentile bootstrap interval (positives and negatives resampled apart)."""
    s, y = np.asarray(s, float), np.asarray(y, bool)
    pos, neg = s[y], s[~y]
    if len(pos) < 2 or len(neg) < 2:
        return {"auroc": float("nan"), "ci95": [float("nan")] * 2, "n_pos": int(len(pos)), "n_neg": int(len(neg))}
    rng = np.random.default_rng(seed)
    lab = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    boot = [auroc(np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))], lab) for _ in range(n_boot)]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"auroc": auroc(s, y), "ci95": [float(lo), float(hi)], "n_pos": int(len(pos)), "n_neg": int(len(neg))}


def three_aurocs(score: np.ndarray, tumour: np.ndarray, is_512: np.ndarray) -> dict:
    """tumour / matched / source AUROCs of a test-split score (see the module docstring)."""
    return {"tumour": auroc_ci(score, tumour),
            "matched": auroc_ci(score[~is_512], tumour[~is_512]),
            "source": auroc_ci(score[tumour], ~is_512[tumour])}


def run_scores(run: Path, test, normal: str) -> tuple[dict, dict]:
    from brainae.training.run import load_run

    model, cfg = load_run(run)
    result, arrays = anomaly_scores(model, test, normal)
    about = {"run": portable_path(run), "model": cfg.model.name, "trained_on": cfg.train.normal_only or "all classes",
             "epochs": cfg.train.epochs, "noise": cfg.train.noise or "none"}
    return about, arrays["scores"]


def fmt_auroc(a: dict) -> str:
    return f"{a['auroc']:.3f} [{a['ci95'][0]:.2f}, {a['ci95'][1]:.2f}]"


def markdown(out: dict) -> str:
    classes = list(out["headers"])
    lines = [f"# Anomaly detection on the real data: source bias ({out['machine']})", "",
             f"{out['date']}; `{out['command']}`; {out['n_images']} images of {out['data']}, test split "
             f"{out['n_test']} ({out['n_test_tumour']} tumour, {out['n_test'] - out['n_test_tumour']} healthy). "
             f"Took {out['seconds']:.0f} s.", "", "## File headers", "",
             "| class | n | original 512x512 | distinct sizes | commonest sizes | median KB | file names |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in classes:
        h = out["headers"][c]
        common = ", ".join(f"{s} ({n})" for s, n in h["common_sizes"])
        names = ", ".join(f"`{p}` ({n})" for p, n in h["name_patterns"])
        lines.append(f"| {c} | {h['n']} | {h['share_512x512']:.0%} | {h['distinct_sizes']} | {common} | "
                     f"{h['median_kb']:.1f} | {names} |")
    lines += ["", "## Appearance per class (all splits, 128 px, mean ± sd)", "",
              "| measure | " + " | ".join(classes) + " |", "| --- |" + " --- |" * len(classes)]
    for m, per in out["appearance"].items():
        lines.append(f"| {m} | " + " | ".join(f"{per[c][0]:.4g} ± {per[c][1]:.2g}" for c in classes) + " |")
    lines += ["", "## Scores as tumour detectors (test split, AUROC with 95% interval)", "",
              "tumour: tumour vs healthy, all test images. matched: tumour vs healthy among test images whose "
              "original is not 512x512 (a partial control: that group still mixes sources). source: among tumour "
              "test images, not 512x512 vs 512x512 (0.5 = blind to the source). Higher score = tumour; below 0.5 "
              "ranks the wrong way.", "",
              "| score | fit on | tumour | matched | source |", "| --- | --- | --- | --- | --- |"]
    for name, r in out["scores"].items():
        lines.append(f"| {name} | {r['fit']} | {fmt_auroc(r['tumour'])} | {fmt_auroc(r['matched'])} | "
                     f"{fmt_auroc(r['source'])} |")
    n = out["scores"][next(iter(out["scores"]))]
    lines += ["", f"Counts: tumour {n['tumour']['n_pos']} vs {n['tumour']['n_neg']}; matched "
              f"{n['matched']['n_pos']} vs {n['matched']['n_neg']}; source {n['source']['n_pos']} vs "
              f"{n['source']['n_neg']}.", ""]
    for about in out["runs"]:
        lines.append(f"- run `{about['run']}`: {about['model']}, trained on {about['trained_on']}, "
                     f"{about['epochs']} epochs, noise {about['noise']}; Spearman correlation of its mse with "
                     f"fine detail on the test split: {about['spearman_mse_detail']:.2f}")
    if out["note"]:
        lines += ["", out["note"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the real Training folder (class sub-folders)")
    ap.add_argument("--run", nargs="*", default=[], help="trained runs to score as well (same data and split)")
    ap.add_argument("--tag", default="cpu", help="result files: results/anomaly_source_bias_<tag>.{json,md}")
    ap.add_argument("--note", default="", help="where the runs come from, for the record")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        print(f"real data not found at {args.data}; pass --data (skipping)", file=sys.stderr)
        return 0
    from scipy.stats import spearmanr

    start = datetime.datetime.now()
    ds = load_data(DataConfig(spec=args.data, image_size=128), progress=False)
    x = ds.images.astype(np.float32) / 255
    brains = brain_masks(x)
    head = headers(ds.sources, ds.labels, ds.classes)
    is_512 = head.pop("is_512")
    tumour = ds.labels != ds.classes.index(NORMAL)
    train, test = ds.splits == "train", ds.splits == "test"
    looks = appearance(x, brains)
    per_class = {m: {c: [float(v[ds.labels == i].mean()), float(v[ds.labels == i].std())]
                     for i, c in enumerate(ds.classes)} for m, v in looks.items()}
    y, src = tumour[test], is_512[test]
    scores = {"original is 512x512 (file header)": {"fit": "-", **three_aurocs(is_512[test].astype(float), y, src)}}
    for m, v in looks.items():
        scores[m] = {"fit": "-", **three_aurocs(v[test], y, src)}
    for fit_name, fit in (("train, all classes", train), (f"train, {NORMAL} only", train & ~tumour)):
        for k in (16, 64):
            e = pca_errors(x, brains, fit, test, k)
            scores[f"PCA {k} error ({fit_name})"] = {"fit": fit_name, **three_aurocs(e, y, src)}
    runs = []
    test_set = ds.split("test")
    detail = looks["fine detail (brain)"][test]
    for run in args.run:
        about, run_s = run_scores(Path(run), test_set, NORMAL)
        about["spearman_mse_detail"] = float(spearmanr(run_s["mse"], detail).statistic)
        runs.append(about)
        label = f"{Path(run).name} ({about['model']}, trained on {about['trained_on']})"
        for k, v in run_s.items():
            scores[f"{label}: {k}"] = {"fit": "the run (training split)", **three_aurocs(v, y, src)}
    out = {
        "benchmark": "source bias of anomaly scores on the real data (tumour vs no_tumor)",
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "command": command_line("anomaly_source_bias.py", without_option(sys.argv[1:], "--note")),
        "data": portable_path(args.data),
        "split": "test split carved with seed 0 (DataConfig defaults), as the runs and anomaly_real_*.json",
        "n_images": int(len(ds)), "n_test": int(test.sum()), "n_test_tumour": int(y.sum()),
        "headers": head["per_class"],
        "appearance": per_class,
        "scores": scores,
        "runs": runs,
        "note": args.note,
        "seconds": (datetime.datetime.now() - start).total_seconds(),
    }
    results = Path(os.environ.get("BENCH_RESULTS", ROOT / "benchmarks" / "results"))
    results.mkdir(parents=True, exist_ok=True)
    (results / f"anomaly_source_bias_{args.tag}.json").write_text(json.dumps(out, indent=2))
    (results / f"anomaly_source_bias_{args.tag}.md").write_text(markdown(out))
    print(markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
