"""Tumour detection by reconstruction error: an autoencoder that learnt healthy anatomy reconstructs
a tumour badly, so a large residual flags it.

Each test image gets four scores, all computed inside the brain (pixels of the input above 0.05,
holes filled, so the black background does not dilute them):
    mse         mean squared residual
    ssim        1 - mean local SSIM between input and reconstruction
    p99         99th percentile of the absolute residual (a small tumour moves it, the mean barely)
    mse_detail  mse divided by the image's own fine detail: the mean squared difference between the
                input and its Gaussian blur of 1 pixel. An autoencoder cannot reproduce fine detail,
                so plain mse also ranks images by how sharp, noisy or resampled they are; on the real
                data that ranks them by source, healthy slices first (benchmarks/anomaly_source_bias.py).
                The ratio needs no fitting, so nothing is tuned on the test split.
Image level: AUROC and AUPRC of each score for tumour (any class but the normal one) versus healthy.
Pixel level, where the data has tumour masks (phantom): AUROC and AUPRC of the residual map
(smoothed by a Gaussian of 1 pixel) over brain pixels, and the best Dice over all thresholds.

AUROC (rank based, ties averaged) and average precision are computed with numpy, as scikit-learn does.

A model that passes information around its bottleneck (skip connections, a residual output; it sets
``bypasses_bottleneck = True``) can learn to copy its input, tumour included, so a small residual says
nothing about health: its results carry a ``warning``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from brainae.data.types import ImageSet
from brainae.errors import BrainaeError
from brainae.evaluation.brain_scores import BRAIN_THRESHOLD, residual_maps, score_stack


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative (ties count half).

    Example:
        >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        0.75
    """
    _, tp, k, n_pos = _ranked_counts(scores, labels)
    return _auroc(tp, k, n_pos)


def _ranked_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(thresholds, true positives, predicted positives) at every distinct score, high to low; and #positives."""
    s, y = np.asarray(scores, float).ravel(), np.asarray(labels, bool).ravel()
    if not len(s):
        return s, np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    order = np.argsort(-s)  # not a stable sort: only where each group of tied scores ends is read
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tie group
    return s[last], np.cumsum(y)[last], last + 1, int(y.sum())


def _auroc(tp: np.ndarray, k: np.ndarray, n_pos: int) -> float:
    """AUROC from ``_ranked_counts``: the ROC curve's trapezoids, a tie group's diagonal step counting half.

    The sum is of integers (exact), so this equals the rank-based Mann-Whitney statistic to the last bit.
    """
    n_neg = int(k[-1]) - n_pos if len(k) else 0
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    fp = k - tp
    twice_area = np.sum(np.diff(fp, prepend=0) * (tp + np.r_[0, tp[:-1]]))
    return float(twice_area / 2.0 / (n_pos * n_neg))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum (scikit-learn's average_precision_score).

    Example:
        >>> round(average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])), 4)
        0.8333
    """
    _, tp, k, n_pos = _ranked_counts(scores, labels)
    return _average_precision(tp, k, n_pos)


def _average_precision(tp: np.ndarray, k: np.ndarray, n_pos: int) -> float:
    if n_pos == 0:
        return float("nan")
    precision, recall = tp / k, tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_dice(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(best Dice, its threshold) of ``scores >= threshold`` against ``labels``, over every threshold.

    Example:
        >>> best_dice(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        (0.8, 0.35)
    """
    return _best_dice(*_ranked_counts(scores, labels))


def _best_dice(thr: np.ndarray, tp: np.ndarray, k: np.ndarray, n_pos: int) -> tuple[float, float]:
    if n_pos == 0:
        return float("nan"), float("nan")
    dice = 2 * tp / (k + n_pos)
    i = int(np.argmax(dice))
    return float(dice[i]), float(thr[i])


def ranking_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC and the best Dice (with its threshold) of ``scores`` against ``labels``, from one sort:
    the pixel level ranks millions of pixels, and each metric sorting them again tripled its time.

    Example:
        >>> ranking_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))["best_dice"]
        0.8
    """
    thr, tp, k, n_pos = _ranked_counts(scores, labels)
    dice, threshold = _best_dice(thr, tp, k, n_pos)
    return {"auroc": _auroc(tp, k, n_pos), "auprc": _average_precision(tp, k, n_pos), "best_dice": dice,
            "dice_threshold": threshold}


def bottleneck_warning(model: torch.nn.Module) -> Optional[str]:
    """One line if ``model`` bypasses its bottleneck (see the module docstring), else None.

    Example:
        >>> bottleneck_warning(torch.nn.Identity()) is None
        True
    """
    if not getattr(model, "bypasses_bottleneck", False):
        return None
    return ("warning: this model bypasses its bottleneck (skip connections or a residual output), so it can "
            "copy its input, tumour included: reconstruction error is not a tumour score")


@torch.no_grad()
def _reconstruct(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    from brainae.evaluation.evaluate import reconstruct

    return reconstruct(model, images, batch_size)


def anomaly_scores(model: torch.nn.Module, data: ImageSet, normal: str, max_pixels: int = 4_000_000,
                   seed: int = 0) -> tuple[dict, dict]:
    """Image- and pixel-level tumour detection of ``model`` on ``data`` (usually the test split).

    normal: the healthy class; every other class counts as tumour.
    max_pixels: pixel-level metrics use at most this many brain pixels (a seeded sample) to stay fast.
    Returns (result for anomaly.json, arrays for figures: images, recons, scores, is_anomaly); a figure's
    residual maps are ``residual_maps(images[idx], recons[idx])`` (blurring every test image took a tenth of
    the scoring time, for the eight a figure shows).

    Example:
        >>> result, _ = anomaly_scores(model, test_set, normal="no_tumor")  # doctest: +SKIP
        >>> result["image_level"]["mse"]["auroc"]  # doctest: +SKIP
    """
    if normal not in data.classes:
        raise BrainaeError(f"--normal '{normal}' is not a class of this data (classes: {', '.join(data.classes)})")
    is_anomaly = data.labels != data.classes.index(normal)
    images = data.images.astype(np.float32) / 255.0
    recons = _reconstruct(model, data.images)
    if images.ndim == 4:  # stacked modalities: scores and maps on the mean over channels
        images, recons = images.mean(axis=1), recons.mean(axis=1)
    brains, scores = score_stack(images, recons)
    result = {
        "n": int(len(images)),
        "n_tumor": int(is_anomaly.sum()),
        "n_normal": int((~is_anomaly).sum()),
        "normal_class": normal,
        "image_level": {k: {"auroc": auroc(v, is_anomaly), "auprc": average_precision(v, is_anomaly)}
                        for k, v in scores.items()},
        "pixel_level": None,
        "brain_threshold": BRAIN_THRESHOLD,
        "warning": bottleneck_warning(model),
    }
    if data.masks is not None and data.masks.any():
        values, truth = residual_maps(images, recons)[brains], data.masks[brains]
        if len(values) > max_pixels:
            pick = np.random.default_rng(seed).choice(len(values), max_pixels, replace=False)
            values, truth = values[pick], truth[pick]
        result["pixel_level"] = {**ranking_metrics(values, truth), "pixels": int(len(values)),
                                 "tumor_pixels": int(truth.sum())}
    arrays = {"images": images, "recons": recons, "scores": scores, "is_anomaly": is_anomaly}
    return result, arrays


def default_normal(classes: list[str], trained_on: str = "") -> str:
    """The healthy class: the run's --normal-only class, else a class named like no_tumor / healthy / normal."""
    if trained_on:
        return trained_on
    for c in classes:
        if c.lower().replace("-", "_") in ("no_tumor", "notumor", "no", "healthy", "normal"):
            return c
    raise BrainaeError(f"name the healthy class with --normal (classes: {', '.join(classes)})")


def example_indices(is_anomaly: np.ndarray, n: int = 8, seed: int = 0) -> np.ndarray:
    """Half tumour, half healthy images for residual figures."""
    rng = np.random.default_rng(seed)
    pos, neg = rng.permutation(np.flatnonzero(is_anomaly)), rng.permutation(np.flatnonzero(~is_anomaly))
    k = min(len(pos), (n + 1) // 2)
    return np.sort(np.concatenate([pos[:k], neg[: n - k]])).astype(int)


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


def run_anomaly(run_dir: str | Path, data: Optional[str] = None, normal: Optional[str] = None,
                out: Optional[str | Path] = None, progress: bool = True, n_examples: int = 8) -> dict:
    """``brainae anomaly``: score the test split of a run; writes anomaly.json and figures.

    Example:
        >>> run_anomaly("runs/ae_healthy", normal="no_tumor")["image_level"]["mse"]["auroc"]  # doctest: +SKIP
    """
    from brainae.evaluation.evaluate import resolve_eval_data
    from brainae.io import atomic_write_bytes, write_json
    from brainae.training.run import load_run
    from brainae.visualization.denoise_anomaly import residual_grid, score_histograms
    from brainae.visualization.plots import figure_png

    model, cfg = load_run(run_dir)
    ds = resolve_eval_data(cfg, data, "test", progress)
    normal = normal or default_normal(ds.classes, cfg.train.normal_only)
    result, arrays = anomaly_scores(model, ds, normal)
    result.update({"run_dir": str(run_dir), "model": cfg.model.name, "data": data or cfg.data.spec, "split": "test",
                   "trained_on": cfg.train.normal_only or "all classes"})
    out_dir = Path(out) if out else Path(run_dir) / "anomaly"
    out_dir.mkdir(parents=True, exist_ok=True)
    idx = example_indices(arrays["is_anomaly"], n_examples)
    images, recons = arrays["images"][idx], arrays["recons"][idx]
    fig = residual_grid(images, recons, residual_maps(images, recons),
                        None if ds.masks is None else ds.masks[idx], [ds.classes[ds.labels[i]] for i in idx])
    atomic_write_bytes(out_dir / "anomaly_residuals.png", figure_png(fig))
    aurocs = {k: v["auroc"] for k, v in result["image_level"].items()}
    hist = score_histograms(arrays["scores"], arrays["is_anomaly"], aurocs)
    atomic_write_bytes(out_dir / "anomaly_scores.png", figure_png(hist))
    result["figures"] = {"residuals": "anomaly_residuals.png", "scores": "anomaly_scores.png"}
    write_json(out_dir / "anomaly.json", result)
    return {**result, "out_dir": str(out_dir)}


def format_anomaly(result: dict) -> str:
    """Plain-text summary: image-level AUROC/AUPRC per score, pixel-level metrics when present."""
    lines = [result["warning"]] if result.get("warning") else []
    lines += [f"tumour vs {result['normal_class']}: {result['n_tumor']} tumour, "
              f"{result['n_normal']} healthy test images",
              f"{'score':<12}{'AUROC':>8}{'AUPRC':>8}"]
    for k, v in result["image_level"].items():
        lines.append(f"{k:<12}{v['auroc']:>8.3f}{v['auprc']:>8.3f}")
    p = result.get("pixel_level")
    if p:
        lines.append(f"pixels  AUROC {p['auroc']:.3f}  AUPRC {p['auprc']:.3f}  best Dice {p['best_dice']:.3f} "
                     f"(residual >= {p['dice_threshold']:.3f})")
    return "\n".join(lines)
