"""Figures as functions that return matplotlib Figures (never shown; the caller saves or embeds them).

Every figure is saved as an 8-bit PNG (:func:`figure_png`): grayscale when it holds no colour, else
a 256-colour palette. A grid of MRI slices is mostly noise-like pixels that compress poorly, so 8 bits
instead of 32 per pixel is what keeps a report with a dozen grids to a few megabytes.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Callable, NamedTuple, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

TEXT = 8  # pt: the smallest text in any figure; the report shows figures at about their own size
DPI = 110
GRAY_LEVELS = 128  # palette entries kept for grays in a colour figure: a step of 2 of 255 is invisible


def to_8bit(img: Image.Image) -> Image.Image:
    """An RGB(A) image as mode "L" when every pixel is gray, else as a 256-colour palette ("P").

    With more than 256 colours the palette holds 128 evenly spaced grays (grayscale images and text
    in a colour figure stay faithful) and 128 colours chosen by median cut among the coloured pixels
    alone (colour maps, lines); each pixel takes its nearest entry, without dithering.

    Example:
        >>> to_8bit(Image.new("RGB", (4, 4), (10, 10, 10))).mode, to_8bit(Image.new("RGB", (4, 4), (200, 0, 0))).mode
        ('L', 'P')
    """
    if img.mode == "RGBA":  # transparent margins show the page's white
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img)
    a = np.asarray(img.convert("RGB"))
    coloured = (a[..., 0] != a[..., 1]) | (a[..., 1] != a[..., 2])
    if not coloured.any():
        return Image.fromarray(np.ascontiguousarray(a[..., 0]), "L")
    key = (a[..., 0].astype(np.uint32) << 16) | (a[..., 1].astype(np.uint32) << 8) | a[..., 2]
    uniq, inverse = np.unique(key.ravel(), return_inverse=True)
    colours = np.stack([uniq >> 16, (uniq >> 8) & 255, uniq & 255], axis=1).astype(np.int32)
    if len(colours) <= 256:  # few enough to keep exactly (most line plots)
        palette, index = colours, inverse
    else:
        picked = Image.fromarray(a[coloured][None]).quantize(256 - GRAY_LEVELS, method=Image.Quantize.MEDIANCUT)
        chosen = np.asarray(picked.getpalette()[: 3 * (256 - GRAY_LEVELS)], np.int32).reshape(-1, 3)
        grays = np.repeat(np.linspace(0, 255, GRAY_LEVELS).round().astype(np.int32)[:, None], 3, axis=1)
        palette = np.concatenate([grays, chosen])
        # Pillow's own palette mapping is approximate (white came out as 251); the nearest entry is
        # searched here once per distinct colour, in chunks to bound memory
        nearest = np.concatenate([((colours[i:i + 4096, None] - palette[None]) ** 2).sum(-1).argmin(1)
                                  for i in range(0, len(colours), 4096)])
        index = nearest[inverse]
    out = Image.fromarray(index.reshape(a.shape[:2]).astype(np.uint8), "P")
    flat = np.zeros((256, 3), np.uint8)
    flat[: len(palette)] = palette
    out.putpalette(flat.ravel().tolist())
    return out


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as an 8-bit PNG (see :func:`to_8bit`); closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    out = io.BytesIO()
    to_8bit(Image.open(io.BytesIO(buf.getvalue()))).save(out, format="PNG", optimize=True)
    return out.getvalue()


def figure_data_uri(fig: Figure, dpi: int = DPI) -> str:
    """A PNG data URI, so the report is one self-contained file."""
    return "data:image/png;base64," + base64.b64encode(figure_png(fig, dpi)).decode("ascii")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1] (data range 1), as the report's tables compute it.

    Example:
        >>> round(psnr(np.zeros((4, 4)), np.full((4, 4), 0.1)), 1)
        20.0
    """
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def loss_curves(histories: dict[str, list[dict]]) -> Figure:
    """Train and validation loss per epoch, one panel per model (losses differ in scale between models).

    histories: model name -> rows of its history.csv.
    """
    n = max(1, len(histories))
    fig, axes = plt.subplots(1, n, figsize=(4.8 * n, 3.4), squeeze=False)
    for ax, (name, rows) in zip(axes[0], histories.items()):
        epochs = [r["epoch"] for r in rows]
        ms = 5 if len(epochs) <= 20 else 0  # markers make one or a few epochs visible and clutter long runs
        ax.plot(epochs, [r["train_loss"] for r in rows], "o-", ms=ms, label="train")
        ax.plot(epochs, [r["val_loss"] for r in rows], "s-", ms=ms, label="validation")
        values = [v for r in rows for v in (r["train_loss"], r["val_loss"]) if np.isfinite(v)]
        # a log axis only when every loss is positive (a Gaussian-likelihood VAE's can be negative)
        if values and min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale("log")  # one early spike (BatchNorm statistics still settling) would flatten the rest
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        ax.set_title(name.upper())
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=TEXT + 1)
    fig.tight_layout()
    return fig


class Row(NamedTuple):
    """One row of :func:`image_rows`: the same N images (N, H, W) shown on one colour scale."""

    label: str
    images: np.ndarray
    cmap: str = "gray"
    vmax: float = 1.0
    notes: Optional[Sequence[str]] = None  # one short text per panel, drawn in its lower left corner
    colorbar: Optional[str] = None  # a colour bar at the end of the row, with this label


def grid_cell(images: np.ndarray, dpi: int = DPI) -> float:
    """Panel size in inches that shows an image at about its own pixels at ``dpi`` (1.1 to 1.6 in):
    larger panels only interpolate pixels that are not there, and the bytes grow with the square; below
    1.1 in a row's label ("reconstruction") no longer fits beside it."""
    return float(np.clip(images.shape[-1] / dpi, 1.1, 1.6))


def image_rows(rows: Sequence[Row], titles: Optional[list[str]] = None,
               overlay: Optional[Callable] = None) -> Figure:
    """A grid with one labelled row per image set and the same images in every column.

    rows: one :class:`Row` each; images in [0, vmax] (values above vmax are drawn at the top colour, and
        the colour bar says so). Panels are :func:`grid_cell` inches, sized to the images.
    overlay: optional ``overlay(ax, row, col)`` to draw on a panel (e.g. a mask contour).
    """
    n = max(len(rows[0].images), 1)
    cell = grid_cell(rows[0].images)
    bars = any(r.colorbar for r in rows)
    lines = max(r.label.count("\n") + 1 for r in rows)
    left, right, top = 0.2 + 0.15 * lines, (0.75 if bars else 0.05), (0.3 if titles else 0.05)
    width, height = cell * n + left + right, (cell + 0.06) * len(rows) + top + 0.05
    fig = plt.figure(figsize=(width, height))
    # fixed margins: tight_layout over dozens of axes costs seconds, and a colour bar axis needs its own column
    grid = fig.add_gridspec(len(rows), n + (1 if bars else 0), left=left / width, right=1 - 0.05 / width,
                            bottom=0.05 / height, top=1 - top / height, wspace=0.04, hspace=0.06,
                            width_ratios=[1.0] * n + ([0.12] if bars else []))
    for r, row in enumerate(rows):
        im = None
        for c in range(len(row.images)):
            ax = fig.add_subplot(grid[r, c])
            im = ax.imshow(row.images[c], cmap=row.cmap, vmin=0, vmax=row.vmax)
            if overlay is not None:
                overlay(ax, r, c)
            ax.set_xticks([])
            ax.set_yticks([])
            if row.notes is not None and row.notes[c]:
                ax.text(0.03, 0.03, row.notes[c], transform=ax.transAxes, fontsize=TEXT, color="white", va="bottom",
                        bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "linewidth": 0})
            if c == 0:
                ax.set_ylabel(row.label, fontsize=TEXT)
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=TEXT)
        if row.colorbar and im is not None:
            cax = fig.add_subplot(grid[r, n])
            bar = fig.colorbar(im, cax=cax, extend="max" if np.nanmax(row.images) > row.vmax else "neither")
            bar.ax.tick_params(labelsize=TEXT)
            bar.set_label(row.colorbar, fontsize=TEXT)
    return fig


def error_scale(errors: Sequence[np.ndarray]) -> float:
    """Upper end of a colour scale for absolute errors: their 99.5th percentile over every map, so
    maps of different models share one scale and a few extreme pixels do not wash out the rest."""
    values = np.concatenate([np.ravel(e) for e in errors]) if len(errors) else np.zeros(1)
    return max(float(np.percentile(values, 99.5)), 1e-3)


def reconstruction_grid(originals: np.ndarray, recons: dict[str, np.ndarray], titles: list[str] | None = None) -> Figure:
    """Rows: original, then each model's reconstruction (its PSNR in each panel) and absolute error,
    all error rows on one colour scale fitted to the errors (:func:`error_scale`), with colour bars.

    originals: (N, H, W) in [0, 1] or uint8; recons: model name -> (N, H, W) in [0, 1].
    """
    originals = originals.astype(np.float32) / (255.0 if originals.dtype == np.uint8 else 1.0)
    errors = {name: np.abs(r - originals) for name, r in recons.items()}
    vmax = error_scale(list(errors.values()))
    rows = [Row("original", originals)]
    for name, r in recons.items():
        rows.append(Row(name.upper(), r, notes=[f"{psnr(o, x):.1f} dB" for o, x in zip(originals, r)]))
        rows.append(Row(f"|error| {name.upper()}", errors[name], "magma", vmax, colorbar="|error|"))
    return image_rows(rows, titles)


def sample_grid(images: np.ndarray, titles: list[str] | None = None, ncols: int = 8) -> Figure:
    """A grid of images (N, H, W) with optional titles (data summaries, samples)."""
    n = len(images)
    nrows = max(1, math.ceil(n / ncols))
    cell = grid_cell(images)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, (cell + 0.25) * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255 if images.dtype == np.uint8 else 1)
            if titles:
                ax.set_title(titles[i], fontsize=TEXT)
    fig.tight_layout(pad=0.3)
    return fig
