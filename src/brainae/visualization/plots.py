"""Figures as functions that return matplotlib Figures (never shown; the caller saves or embeds them)."""
from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def figure_data_uri(fig: Figure, dpi: int = 110) -> str:
    """A PNG data URI, so the report is one self-contained file."""
    return "data:image/png;base64," + base64.b64encode(figure_png(fig, dpi)).decode("ascii")


def loss_curves(histories: dict[str, list[dict]]) -> Figure:
    """Train and validation loss per epoch, one panel per model (losses differ in scale between models).

    histories: model name -> rows of its history.csv.
    """
    n = max(1, len(histories))
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6), squeeze=False)
    for ax, (name, rows) in zip(axes[0], histories.items()):
        epochs = [r["epoch"] for r in rows]
        ms = 4 if len(epochs) <= 20 else 0  # markers help short runs and clutter long ones
        ax.plot(epochs, [r["train_loss"] for r in rows], "o-", ms=ms, label="train")
        ax.plot(epochs, [r["val_loss"] for r in rows], "s-", ms=ms, label="validation")
        values = [v for r in rows for v in (r["train_loss"], r["val_loss"]) if np.isfinite(v)]
        # a log axis only when every loss is positive (a Gaussian-likelihood VAE's can be negative)
        if values and min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale("log")  # one early spike (BatchNorm statistics still settling) would flatten the rest
        ax.set_title(name.upper())
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def image_rows(rows: list[tuple], titles: list[str] | None = None, overlay=None, cell: float = 1.6) -> Figure:
    """A grid with one labelled row per image set and the same images in every column.

    rows: (label, images (N, H, W), cmap, vmax) tuples; images in [0, vmax].
    overlay: optional ``overlay(ax, row, col)`` to draw on a panel (e.g. a mask contour).
    """
    n = max(len(rows[0][1]), 1)
    fig, axes = plt.subplots(len(rows), n, figsize=(cell * n + 0.6, (cell + 0.1) * len(rows)), squeeze=False)
    for r, (label, imgs, cmap, vmax) in enumerate(rows):
        for c in range(len(imgs)):
            ax = axes[r][c]
            ax.imshow(imgs[c], cmap=cmap, vmin=0, vmax=vmax)
            if overlay is not None:
                overlay(ax, r, c)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=7)
    fig.tight_layout(pad=0.3)
    return fig


def reconstruction_grid(originals: np.ndarray, recons: dict[str, np.ndarray], titles: list[str] | None = None) -> Figure:
    """Rows: original, then each model's reconstruction (and its absolute error); columns: images.

    originals: (N, H, W) in [0, 1] or uint8; recons: model name -> (N, H, W) in [0, 1].
    """
    originals = originals.astype(np.float32) / (255.0 if originals.dtype == np.uint8 else 1.0)
    rows = [("original", originals, "gray", 1.0)]
    for name, r in recons.items():
        rows.append((name.upper(), r, "gray", 1.0))
        rows.append((f"|error| {name.upper()}", np.abs(r - originals), "magma", 0.5))
    return image_rows(rows, titles)


def sample_grid(images: np.ndarray, titles: list[str] | None = None, ncols: int = 8) -> Figure:
    """A grid of images (N, H, W) with optional titles (data summaries, samples)."""
    n = len(images)
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.5 * ncols, 1.6 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255 if images.dtype == np.uint8 else 1)
            if titles:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout(pad=0.3)
    return fig
