"""What a study computes beyond training and evaluation, before its report is drawn: denoising,
tumour detection, the networks' layers and their latent spaces.

Each function reads the study context (its trained models, test split and example images) and fills
``study.extras``: the results under "denoising", "anomaly", "layers" and "latent" (also written as
``denoise.json``, ``anomaly.json``, ``layers.json`` and ``latent.json`` in the study folder), and what
the figures need under keys ending in ``_figure``. ``brainae.report`` only draws and lays them out.

Kept to seconds on a CPU: denoising at the study's sigma 0.3 on at most 32 test images with the two
fastest classical baselines (the full comparison is ``brainae denoise``; 32 images give 95% intervals
about 1.4 times as wide as 64 would), anomaly scores on the whole test split for every model and its
untrained twin (the baseline an AUROC must beat to credit training).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from brainae.data.examples import interpolation_pair, spread_over_classes
from brainae.errors import BrainaeError
from brainae.evaluation.anomaly import anomaly_scores, default_normal, untrained_twin
from brainae.evaluation.brain_scores import residual_maps
from brainae.evaluation.denoise import denoise_benchmark
from brainae.io import write_json
from brainae.visualization.latent import analyse_latent, has_latent_space
from brainae.visualization.layers import capture_layers, layer_notes, layer_stats, to_unit

STUDY_NOISE = "gaussian:0.3"  # the study's fourth aim
STUDY_BASELINES = ("tv", "median")  # milliseconds per image; nlm and bm3d are left to `brainae denoise`
MAX_IMAGES = 32
N_FIGURE = 6
LAYER_IMAGES = 5  # the study's figures 11 and 12 showed five images
REPORT_SAMPLES = 8  # prior samples per source in the report: one row each (`brainae latent` draws 16)


def _titles(test, idx) -> list[str]:
    return [test.classes[test.labels[i]] for i in idx]


def _subset(n: int, examples: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images to score, positions of the report's example images among them): the examples always included."""
    rest = np.setdiff1d(np.arange(n), examples)
    extra = np.random.default_rng(seed).permutation(rest)[: max(0, MAX_IMAGES - len(examples))]
    chosen = np.sort(np.concatenate([examples, extra]).astype(int))
    return chosen, np.searchsorted(chosen, examples[:N_FIGURE])


def denoising(study: Any) -> None:
    if not study.models:
        return
    test = study.data.test
    chosen, keep = _subset(len(test), np.asarray(study.examples, int))
    result, examples = denoise_benchmark(study.models, test.subset(chosen), STUDY_NOISE, STUDY_BASELINES, keep=keep,
                                         warmup=8)
    study.extras["denoising"] = result
    study.extras["denoising_figure"] = {"noise": STUDY_NOISE, "images": examples[STUDY_NOISE],
                                        "titles": _titles(test, chosen[keep])}
    write_json(study.out_dir / "denoise.json", result)


def anomaly(study: Any) -> None:
    if not study.models:
        return
    test = study.data.test
    try:
        normal = default_normal(test.classes)
    except BrainaeError:
        return  # no class is recognisably healthy; `brainae anomaly --normal CLASS` names it
    if len(set(test.labels.tolist())) < 2:
        return  # AUROC needs both healthy and tumour test images
    results, figure = {}, None
    idx = np.asarray(study.examples, int)
    for name, model in study.models.items():
        results[name], arrays = anomaly_scores(model, test, normal)
        # forward passes only: an AUROC an untrained network reaches as well says nothing about training
        baseline, _ = anomaly_scores(untrained_twin(model), test, normal)
        results[name]["untrained"] = {k: v["auroc"] for k, v in baseline["image_level"].items()}
        if figure is None:
            figure = {"model": name, "titles": _titles(test, idx),
                      "masks": None if test.masks is None else test.masks[idx],
                      "images": arrays["images"][idx], "recons": arrays["recons"][idx],
                      "residuals": residual_maps(arrays["images"][idx], arrays["recons"][idx])}
    trained_on = {m: (c.get("train", {}).get("normal_only") or "all classes") for m, c in study.configs.items()}
    study.extras["anomaly"] = results
    study.extras["anomaly_figure"] = {**figure, "normal": normal, "trained_on": trained_on}
    write_json(study.out_dir / "anomaly.json", {"normal_class": normal, "trained_on": trained_on, "models": results})


def layers(study: Any) -> None:
    if not study.models or len(study.examples) == 0:
        return
    test = study.data.test
    idx = spread_over_classes(study.examples, test.labels, LAYER_IMAGES)
    x = to_unit(test.images[idx])
    runs = {m: capture_layers(net, torch.from_numpy(x[:, None])) for m, net in study.models.items()}
    notes = {m: layer_notes(net) for m, net in study.models.items()}
    stats = {m: layer_stats(acts) for m, (acts, _) in runs.items()}
    for m, rows in stats.items():
        for r in rows:
            r["note"] = notes[m].get(r["layer"], "")
    study.extras["layers"] = {"images": idx.tolist(), "models": stats}
    study.extras["layers_figure"] = {"x": x, "runs": runs, "notes": notes, "titles": _titles(test, idx)}
    write_json(study.out_dir / "layers.json", study.extras["layers"])


def latent(study: Any) -> None:
    models = {m: net for m, net in study.models.items() if has_latent_space(net)}
    if not models or len(study.examples) == 0:
        return
    test = study.data.test
    pair = interpolation_pair(study.examples, test.labels)
    summary, figures = analyse_latent(models, test.images, test.labels, test.classes, pair,
                                      highlight=study.examples, n_samples=REPORT_SAMPLES)
    study.extras["latent"] = summary
    study.extras["latent_figure"] = figures
    write_json(study.out_dir / "latent.json", summary)


def run_analyses(study: Any) -> None:
    """Every analysis above, in the order the report shows them."""
    for analysis in (layers, latent, denoising, anomaly):
        analysis(study)
