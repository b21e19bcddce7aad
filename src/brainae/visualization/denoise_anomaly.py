"""Figures of the denoising benchmark and of tumour detection (return Figures; callers save or embed)."""
from __future__ import annotations

from typing import Optional

import numpy as np
from matplotlib.figure import Figure

from brainae.visualization.plots import TEXT, Row, error_scale, image_rows, plt, psnr


def denoise_grid(examples: dict[str, np.ndarray], level: str, titles: Optional[list[str]] = None) -> Figure:
    """Like the study's figure 13: rows original, noisy, then each method; columns the same images.
    Each noisy or denoised panel shows its PSNR against the clean image; one gray scale (0 to 1) for all.

    examples: {"clean": (N, H, W), "noisy": (N, H, W), method: (N, H, W), ...}, floats in [0, 1].
    """
    clean = examples["clean"]
    rows = [Row("original", clean, colorbar="intensity")]
    for k, v in examples.items():
        if k != "clean":
            rows.append(Row(f"noisy\n{level}" if k == "noisy" else k, v,
                            notes=[f"{psnr(c, x):.1f} dB" for c, x in zip(clean, v)]))
    return image_rows(rows, titles)


def psnr_vs_level(result: dict) -> Figure:
    """PSNR and SSIM (mean with 95% interval) against the noise level, one line per method."""
    levels = result["levels"]
    x = [float(lv.split(":")[1]) for lv in levels]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        for m in result["methods"]:
            rs = [result["results"][lv][m][metric] for lv in levels]
            mean = [r["mean"] for r in rs]
            err = np.array([[r["mean"] - r["ci95"][0] for r in rs], [r["ci95"][1] - r["mean"] for r in rs]])
            ax.errorbar(x, mean, yerr=np.maximum(err, 0), marker="o", ms=4, capsize=3, label=m,
                        ls="--" if m == "noisy" else "-")
        ax.set_xlabel(f"noise level ({levels[0].split(':')[0]})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=TEXT)
    fig.tight_layout()
    return fig


def residual_grid(images: np.ndarray, recons: np.ndarray, residuals: np.ndarray, masks: Optional[np.ndarray],
                  titles: Optional[list[str]] = None) -> Figure:
    """Rows: input, reconstruction (its PSNR in each panel), residual map on a colour scale fitted to
    the maps, with its colour bar (tumour mask outlined where known); columns: images."""
    rows = [Row("input", images),
            Row("reconstruction", recons, notes=[f"{psnr(x, r):.1f} dB" for x, r in zip(images, recons)]),
            Row("|residual|", residuals, "magma", error_scale([residuals]), colorbar="|residual|")]

    def outline(ax, r, c):
        if masks is not None and masks[c].any() and r > 0:
            ax.contour(masks[c], levels=[0.5], colors="cyan", linewidths=0.6)

    return image_rows(rows, titles, overlay=outline)


def score_histograms(scores: dict[str, np.ndarray], is_anomaly: np.ndarray, aurocs: dict[str, float]) -> Figure:
    """Distribution of each anomaly score for healthy and tumour images."""
    fig, axes = plt.subplots(1, len(scores), figsize=(3.6 * len(scores), 3), squeeze=False)
    for ax, (name, s) in zip(axes[0], scores.items()):
        bins = np.linspace(np.min(s), np.max(s) + 1e-12, 25)
        ax.hist(s[~is_anomaly], bins=bins, alpha=0.6, label="healthy")
        ax.hist(s[is_anomaly], bins=bins, alpha=0.6, label="tumour")
        ax.set_title(f"{name} (AUROC {aurocs[name]:.3f})", fontsize=TEXT + 1)
        ax.tick_params(labelsize=TEXT)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=TEXT)
    fig.tight_layout()
    return fig
