"""Report sections "Denoising" and "Tumour detection", computed from the study's trained models.

Kept to a few seconds on a CPU: denoising at the study's sigma 0.3 on at most 32 test images with
the two fastest classical baselines (the full comparison is ``brainae denoise``), and anomaly scores
on the whole test split of every model and of its untrained twin (the same network with fresh
weights: the baseline an AUROC must beat to credit training). Network passes and SSIM dominate the
time, so the denoising sample is small (32 images give 95% intervals about 1.4 times as wide as 64 would). Results go to
``study.extras["denoising"]`` and ``study.extras["anomaly"]``, and to ``denoise.json`` / ``anomaly.json``
in the study folder.
"""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import torch

from brainae.errors import BrainaeError
from brainae.evaluation.anomaly import anomaly_scores, default_normal
from brainae.evaluation.denoise import denoise_benchmark
from brainae.io import write_json
from brainae.report.sections import Section, section
from brainae.visualization.denoise_anomaly import denoise_grid, residual_grid
from brainae.visualization.plots import figure_data_uri

STUDY_NOISE = "gaussian:0.3"  # the study's fourth aim
STUDY_BASELINES = ("tv", "median")  # milliseconds per image; nlm and bm3d are left to `brainae denoise`
MAX_IMAGES = 32
N_FIGURE = 6


def _subset(n: int, examples: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images to score, positions of the report's example images among them): the examples always included."""
    rest = np.setdiff1d(np.arange(n), examples)
    extra = np.random.default_rng(seed).permutation(rest)[: max(0, MAX_IMAGES - len(examples))]
    chosen = np.sort(np.concatenate([examples, extra]).astype(int))
    return chosen, np.searchsorted(chosen, examples[:N_FIGURE])


@section(80)
def denoising_section(study) -> Optional[Section]:
    if not study.models:
        return None
    test = study.data.test
    chosen, keep = _subset(len(test), np.asarray(study.examples, int))
    result, examples = denoise_benchmark(study.models, test.subset(chosen), STUDY_NOISE, STUDY_BASELINES, keep=keep,
                                         warmup=8)
    study.extras["denoising"] = result
    write_json(study.out_dir / "denoise.json", result)
    titles = [test.classes[test.labels[i]] for i in chosen[keep]]
    # the study's models in capitals, as in the table
    shown = {k.upper() if k in study.models else k: v for k, v in examples[STUDY_NOISE].items()}
    grid = denoise_grid(shown, STUDY_NOISE, titles)
    return Section("denoising", "Denoising", {"r": result, "rows": result["results"][STUDY_NOISE],
                                              "grid": figure_data_uri(grid), "noise": STUDY_NOISE})


def untrained_twin(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same network with fresh random weights (every ``reset_parameters``, seeded; BatchNorm
    statistics reset too), in eval mode: what any score owes to the architecture and the images alone.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
        >>> bool(torch.equal(untrained_twin(net)[0].weight, net[0].weight))
        False
    """
    twin = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):  # the study's own random stream is left as it was
        torch.manual_seed(seed)
        for module in twin.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return twin.eval()


@section(90)
def anomaly_section(study) -> Optional[Section]:
    if not study.models:
        return None
    test = study.data.test
    try:
        normal = default_normal(test.classes)
    except BrainaeError:
        return None  # no class is recognisably healthy; `brainae anomaly --normal CLASS` names it
    if len(set(test.labels.tolist())) < 2:
        return None  # AUROC needs both healthy and tumour test images
    results, figure = {}, None
    idx = np.asarray(study.examples, int)
    for name, model in study.models.items():
        results[name], arrays = anomaly_scores(model, test, normal)
        # forward passes only: an AUROC an untrained network reaches as well says nothing about training
        baseline, _ = anomaly_scores(untrained_twin(model), test, normal)
        results[name]["untrained"] = {k: v["auroc"] for k, v in baseline["image_level"].items()}
        if figure is None:
            masks = None if test.masks is None else test.masks[idx]
            titles = [test.classes[test.labels[i]] for i in idx]
            figure = figure_data_uri(residual_grid(arrays["images"][idx], arrays["recons"][idx],
                                                   arrays["residuals"][idx], masks, titles))
            figure_model = name
    trained_on = {m: (c.get("train", {}).get("normal_only") or "all classes") for m, c in study.configs.items()}
    study.extras["anomaly"] = results
    write_json(study.out_dir / "anomaly.json", {"normal_class": normal, "trained_on": trained_on, "models": results})
    return Section("anomaly", "Tumour detection", {"results": results, "normal": normal, "grid": figure,
                                                    "figure_model": figure_model, "trained_on": trained_on})
