"""``evaluate(run_dir)``: held-out reconstruction metrics with 95% intervals, overall and per class."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from brainae.config import Config
from brainae.data.grouping import describe
from brainae.data.load import load_data
from brainae.data.types import ImageSet, with_channels
from brainae.errors import BrainaeError
from brainae.evaluation.metrics import per_image_metrics, summarize
from brainae.io import write_json
from brainae.progress import bar
from brainae.training.precision import reconstructions
from brainae.training.run import load_run

METRICS = ("mse", "psnr", "ssim")


def reconstruct(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Reconstructions (float32 in [0, 1], shaped like the input) of uint8 images (N, H, W) or (N, C, H, W)."""
    return reconstructions(model, images, batch_size)


@torch.no_grad()
def image_metrics(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-image MSE/PSNR/SSIM of the model's reconstructions of ``images`` (uint8 (N, H, W) or (N, C, H, W))."""
    return reconstruction_metrics(images, lambda part: reconstruct(model, part, batch_size), batch_size)


def reconstruction_metrics(images: np.ndarray, recon_of: Callable[[np.ndarray], np.ndarray],
                           batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-image MSE/PSNR/SSIM of ``recon_of(part)`` (float32 in [0, 1], shaped like the uint8 ``part``)
    against each batch of ``images``: the networks' reconstructions, or a baseline's."""
    parts: dict[str, list] = {m: [] for m in METRICS}
    starts = range(0, len(images), batch_size)
    for i in bar(starts, len(starts) > 1, desc="scoring", unit="batch", leave=False):
        part = images[i:i + batch_size]
        x = torch.from_numpy(with_channels(part)).float() / 255.0
        recon = torch.from_numpy(with_channels(recon_of(part)))
        for k, v in per_image_metrics(recon, x).items():
            parts[k].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def ci_unit(ds: ImageSet) -> str:
    """What the bootstrap intervals resample: the data's named groups, else images (copies as one)."""
    return ds.group_unit or "image"


def metrics_table(values: dict[str, np.ndarray], ds: ImageSet, seed: int = 0) -> dict:
    """Summaries of per-image values, overall and per class; intervals resample ``ds.groups`` (see ``ci_unit``)."""
    groups = ds.groups
    n_groups = int(len(np.unique(groups))) if groups is not None else int(len(ds))
    result = {"n": int(len(ds)), "ci_unit": ci_unit(ds), "n_groups": n_groups,
              **{m: summarize(values[m], seed, groups) for m in METRICS}, "per_class": {}}
    for i, c in enumerate(ds.classes):
        sel = ds.labels == i
        if sel.any():
            g = None if groups is None else groups[sel]
            result["per_class"][c] = {"n": int(sel.sum()), **{m: summarize(values[m][sel], seed, g) for m in METRICS}}
    return result


def model_facts(model: torch.nn.Module) -> dict:
    """What a comparison must show beside the scores: latent size, parameters, and whether skips bypass the bottleneck.

    A model whose skips (or residual output) bypass the bottleneck can copy its input, so its
    reconstruction scores are not comparable with those of a true bottleneck autoencoder.
    """
    return {
        "latent_dim": int(getattr(model, "latent_dim", 0) or 0),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "bypasses_bottleneck": bool(getattr(model, "bypasses_bottleneck", False)),
        "variational": hasattr(model, "encode_dist"),  # samples its code: trades reconstruction for a prior
    }


SPLIT_CHOICES = ("train", "val", "test", "all")


def resolve_eval_data(cfg: Config, spec: Optional[str], split: str, progress: bool = True) -> ImageSet:
    """The images of ``split`` ("all": every image), preprocessed exactly as the run was trained."""
    if split not in SPLIT_CHOICES:
        raise BrainaeError(f"--split must be train, val, test or all, not '{split}'")
    data_cfg = dataclasses.replace(cfg.data, spec=spec or cfg.data.spec, dedupe=cfg.data.dedupe)
    if spec and spec != cfg.data.spec:
        data_cfg.limit = 0  # a different dataset: evaluate on all of its split
    ds = load_data(data_cfg, progress=progress, require_training=False).split(split)
    if len(ds) == 0:
        hint = "; score all of another dataset with --split all" if spec and spec != cfg.data.spec else ""
        raise BrainaeError(f"data '{data_cfg.spec}' has no images in the {split} split{hint}")
    return ds


def evaluate(run_dir: str | Path, data: Optional[str] = None, split: str = "test", progress: bool = True,
             dataset: Optional[ImageSet] = None, run: Optional[tuple] = None, baseline: Optional[str] = None) -> dict:
    """Evaluate a run's best checkpoint on ``split``; writes ``RUN_DIR/eval/<split>.json``.

    data: a data spec other than the one trained on (same preprocessing is applied).
    dataset: an already loaded split (the study passes it to avoid reloading).
    run: the run's (model, config) from ``load_run``, when the caller has it open already.
    baseline: "pca" adds ``baselines.pca``: the same images through PCA with as many components as the
        network's code, fitted on the run's own training split (``evaluation.baselines``).

    Example:
        >>> res = evaluate("runs/ae", split="test")  # doctest: +SKIP
        >>> res["psnr"]["mean"], res["psnr"]["ci95"]  # doctest: +SKIP
    """
    model, cfg = run if run is not None else load_run(run_dir)
    ds = dataset if dataset is not None else resolve_eval_data(cfg, data, split, progress)
    facts = model_facts(model)
    if baseline == "pca" and (not facts["latent_dim"] or facts["bypasses_bottleneck"]):
        raise BrainaeError(f"--baseline pca needs a bottleneck model: {cfg.model.name}'s skips bypass its code, so there "
                           "is no code size to match; drop --baseline")
    values = image_metrics(model, ds.images)
    result = {
        "run_dir": str(run_dir),
        "model": cfg.model.name,
        "data": data or cfg.data.spec,
        "split": split,
        "split_by": describe(ds.grouping),
        **facts,
        **metrics_table(values, ds),
    }
    if baseline == "pca":
        result["baselines"] = pca_row(cfg, facts["latent_dim"], ds, split, progress)
    write_json(Path(run_dir) / "eval" / f"{split}.json", result)
    return result


def pca_row(cfg: Config, latent_dim: int, ds: ImageSet, split: str, progress: bool = True) -> dict:
    """{"pca": the PCA baseline on ``ds`` (the run's ``split``), ``latent_dim`` components fitted on its training split}."""
    from brainae.evaluation.baselines import pca_baseline  # it imports metrics_table from here

    train = load_data(cfg.data, progress=progress).split("train")
    return {"pca": pca_baseline(train, ds, latent_dim, seed=cfg.data.seed, split=split)}


def format_per_class(result: dict) -> str:
    """Per-class lines of one evaluation: n and PSNR / SSIM with their intervals."""
    rows = []
    for c, r in result["per_class"].items():
        p, s = r["psnr"], r["ssim"]
        rows.append(f"  {c:<22}n={r['n']:<5} PSNR {p['mean']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}]"
                    f"  SSIM {s['mean']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]")
    return "\n".join(rows)


def format_table(results: dict[str, dict]) -> str:
    """Plain-text comparison table: one row per named result, mean [95% CI] per metric."""
    header = (f"{'model':<10}{'latent':>7}{'params':>12}  {'bypass':<7}{'split':<7}{'n':>6}  "
              f"{'MSE':<28}{'PSNR (dB)':<24}{'SSIM':<24}")
    rows = [header, "-" * len(header)]
    for name, r in results.items():
        cells = []
        for m, fmt in (("mse", "{:.5f}"), ("psnr", "{:.2f}"), ("ssim", "{:.4f}")):
            v = r[m]
            cells.append(f"{fmt.format(v['mean'])} [{fmt.format(v['ci95'][0])}, {fmt.format(v['ci95'][1])}]")
        bypass = "yes" if r.get("bypasses_bottleneck") else "no"
        rows.append(f"{name:<10}{r.get('latent_dim', 0):>7}{r.get('parameters', 0):>12,}  {bypass:<7}{r['split']:<7}"
                    f"{r['n']:>6}  {cells[0]:<28}{cells[1]:<24}{cells[2]:<24}")
    units = {(r.get("ci_unit", "image"), r.get("n_groups")) for r in results.values()}
    if any(u != "image" for u, _ in units):
        rows.append("[95% intervals] resample whole " + ", ".join(f"{u}s ({n} in the split)" for u, n in sorted(units))
                    + ", not single slices")
    if any(r.get("bypasses_bottleneck") for r in results.values()):
        rows.append("bypass = yes: skips or a residual output let the input around the bottleneck; such a model can "
                    "copy its input, so compare its scores only with other bypassing models")
    return "\n".join(rows)
