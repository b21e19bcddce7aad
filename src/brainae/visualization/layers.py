"""Inside the network: forward hooks on every conv layer of any registered model.

The layers come from the model itself (``named_modules``), never from a list of names: a conv that
opens a block (``Sequential(conv, norm, act)``) is captured as the block's output, after the norm
and the activation, which is what the study plotted (its figures 11 and 12); a conv on its own is
captured as it is. With the study's AE and VAE this gives ``encoder.0`` .. ``encoder.4`` and
``decoder.0`` .. ``decoder.4``. The last decoder layer has no norm and no activation: its output is
the logits the model passes through a sigmoid, and the figures say so (:func:`layer_notes`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from brainae.io import atomic_write_bytes, write_json
from brainae.visualization.plots import TEXT, figure_png, plt
from matplotlib.figure import Figure

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.Identity)
NEAR_ZERO = 0.01  # |activation| <= 1% of the layer's largest |activation| counts as "near zero"


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules to hook, in definition order: one per level that holds a conv / transposed conv.

    A conv is represented by its outermost enclosing module that is an item of a Sequential or
    ModuleList (``encoder.0``: the conv after its norm and activation, and any residual blocks of that
    level), or by itself when no such module encloses it (``bottleneck``, ``head``).

    Example:
        >>> from brainae.models.ae import ConvAE
        >>> [n for n, _ in conv_layers(ConvAE(image_size=32, channels=(8, 16)))]
        ['encoder.0', 'encoder.1', 'decoder.0', 'decoder.1']
    """
    modules = dict(model.named_modules())
    chosen: dict[str, nn.Module] = {}
    for name, module in modules.items():
        if not isinstance(module, CONV_TYPES):
            continue
        parts = name.split(".")
        level = name
        for i in range(1, len(parts) + 1):
            if isinstance(modules.get(".".join(parts[:i - 1])), (nn.Sequential, nn.ModuleList)):
                level = ".".join(parts[:i])
                break
        chosen.setdefault(level, modules[level])
    return list(chosen.items())


def layer_notes(model: nn.Module) -> dict[str, str]:
    """A note for each layer of :func:`conv_layers` whose output has no activation (only convs and
    norms inside): "pre-sigmoid" for the last one, whose output (logits) the model turns into its
    image with a sigmoid, "linear" for any other (short: they label 0.8-inch panels).

    Example:
        >>> from brainae.models.ae import ConvAE
        >>> layer_notes(ConvAE(image_size=32, channels=(8, 16)))
        {'decoder.1': 'pre-sigmoid'}
    """
    layers = conv_layers(model)
    notes = {}
    for i, (name, module) in enumerate(layers):
        parts = list(module.modules())
        if all(isinstance(p, CONV_TYPES + NORM_TYPES) or p is module and isinstance(p, nn.Sequential) for p in parts):
            notes[name] = "pre-sigmoid" if i == len(layers) - 1 else "linear"
    return notes


@torch.no_grad()
def capture_layers(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run ``model`` on ``x`` (B, C, H, W) with hooks on :func:`conv_layers`.

    Returns (activations, recon): layer name -> float32 array (B, C_l, H_l, W_l) in the order the
    layers ran, and the model's reconstruction (B, H, W). The hooks are removed afterwards.

    Example:
        >>> from brainae.models.ae import ConvAE
        >>> acts, recon = capture_layers(ConvAE(image_size=32, channels=(8, 16)).eval(), torch.rand(2, 1, 32, 32))
        >>> {k: v.shape for k, v in acts.items()}["encoder.1"]
        (2, 16, 8, 8)
    """
    acts: dict[str, np.ndarray] = {}

    def hook(name: str):
        def fn(_module, _inp, out):
            acts[name] = out.detach().float().cpu().numpy()
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in conv_layers(model)]
    try:
        device = next(model.parameters()).device
        out = model(x.to(device))
    finally:
        for h in handles:
            h.remove()
    return acts, out.recon.float().cpu().numpy()[:, 0]


def layer_stats(acts: dict[str, np.ndarray]) -> list[dict]:
    """Per layer: output shape (C, H, W), mean, std, share of near-zero activations, and the channels
    ranked by mean activation (most active first)."""
    rows = []
    for name, a in acts.items():
        peak = float(np.abs(a).max())
        channel_means = a.mean(axis=tuple(i for i in range(a.ndim) if i != 1))
        rows.append({
            "layer": name,
            "shape": list(a.shape[1:]),
            "mean": float(a.mean()),
            "std": float(a.std()),
            "near_zero": float((np.abs(a) <= NEAR_ZERO * peak).mean()) if peak > 0 else 1.0,
            "max_abs": peak,
            "top_channels": [int(c) for c in np.argsort(-channel_means)[:8]],
        })
    return rows


def _limits(a: np.ndarray) -> dict:
    """Colour limits: the minimum to the 99.5th percentile, so a few hot pixels do not flatten the rest."""
    lo, hi = float(a.min()), float(np.percentile(a, 99.5))
    return {"vmin": lo, "vmax": hi if hi > lo else lo + 1e-6}


def _label(name: str, a: np.ndarray, note: str = "") -> str:
    return f"{name}\n{'x'.join(str(s) for s in a.shape[1:])}" + (f"\n{note}" if note else "")


def channel_mean_figure(inputs: np.ndarray, runs: dict[str, tuple[dict[str, np.ndarray], np.ndarray]],
                        titles: Optional[list[str]] = None,
                        notes: Optional[dict[str, dict[str, str]]] = None) -> Figure:
    """The study's figure: per image and model, the input, the channel mean of every layer, the output.

    inputs: (N, H, W) in [0, 1]; runs: model name -> (activations, recon) of :func:`capture_layers`.
    notes: model name -> :func:`layer_notes`, added under the layer's name.
    Each panel has its own colour scale (layers differ in range); rows alternate models per image.
    """
    notes = notes or {}
    n = len(inputs)
    ncols = 2 + max(len(a) for a, _ in runs.values())
    nrows = n * len(runs)
    lines = 3 if any(notes.values()) else 2  # lines of the column titles
    head = 0.3 + 0.16 * lines
    # titles repeat below the first row only where models have different layers; then rows need room for them
    layouts = {tuple(_label(k, a, notes.get(m, {}).get(k, "")) for k, a in acts.items())
               for m, (acts, _) in runs.items()}
    gap = 0.16 * lines if len(layouts) > 1 else 0.12  # inches between rows
    # at most 10 in wide, the report's column: a wider figure is shown shrunk, and its 8 pt labels with it
    cell = min(1.2, 9.4 / ncols)
    width, height = cell * ncols + 0.6, cell * nrows + gap * (nrows - 1) + head + 0.1
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    # fixed margins: tight_layout on 100+ axes costs seconds
    fig.subplots_adjust(left=0.6 / width, right=0.995, bottom=0.1 / height, top=1 - head / height, wspace=0.05,
                        hspace=gap / cell)
    first_titles: dict[int, str] = {}
    for i in range(n):
        for m, (model, (acts, recon)) in enumerate(runs.items()):
            r = i * len(runs) + m
            panels = [("input", inputs[i], "gray", (0, 1))]
            panels += [(_label(k, a, notes.get(model, {}).get(k, "")), a[i].mean(axis=0), "viridis", None)
                       for k, a in acts.items()]
            panels += [("output", recon[i], "gray", (0, 1))]
            for c in range(ncols):
                ax = axes[r][c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c == ncols - 1:
                    panel = panels[-1]  # the output always ends the row
                elif c < len(panels) - 1:
                    panel = panels[c]
                else:
                    ax.axis("off")
                    continue
                label, img, cmap, lim = panel
                # nearest: a 4x4 map shows as 16 blocks, not as a blur that invents detail (and compresses worse)
                ax.imshow(img, cmap=cmap, interpolation="nearest", **({"vmin": lim[0], "vmax": lim[1]} if lim else {}))
                if r == 0 or first_titles.get(c) != label:  # repeat a title only where layers differ
                    ax.set_title(label, fontsize=TEXT)
                    first_titles.setdefault(c, label)
                if c == 0:
                    ax.set_ylabel(f"{model.upper()}" + (f"\n{titles[i]}" if titles else ""), fontsize=TEXT)
    fig.suptitle("Mean over channels of each layer's output (input left, reconstruction right)", fontsize=TEXT + 1,
                 y=1 - 0.08 / height)
    return fig


def top_channels_figure(acts: dict[str, np.ndarray], k: int = 6, image: int = 0, model: str = "",
                        notes: Optional[dict[str, str]] = None) -> Figure:
    """Rows: layers; in each, the ``k`` channels with the highest mean activation over all captured
    images, shown for image ``image``, on one colour scale per row with its colourbar (clipped at the
    99.5th percentile). notes: :func:`layer_notes` of the model, added under the layer's name."""
    notes = notes or {}
    names = list(acts)
    width, height = 1.25 * k + 1.6, 1.45 * len(names) + 0.4
    fig, axes = plt.subplots(len(names), 1, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.7 / width, right=0.98, bottom=0.05 / height, top=1 - 0.45 / height, hspace=0.3)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("white")
    for ax, name in zip(axes[:, 0], names):
        a = acts[name]
        means = a.mean(axis=(0, 2, 3))
        top = np.argsort(-means)[:k]
        h, w = a.shape[2:]
        gap = max(1, w // 12)
        row = a[image, top]
        im = ax.imshow(channel_montage(row, gap, ncols=k), cmap=cmap, interpolation="nearest", **_limits(row))
        for c, ch in enumerate(top):
            ax.text(c * (w + gap) + w / 2 - 0.5, -0.5 - 0.03 * h, f"ch {ch}: {means[ch]:.2f}", ha="center", va="bottom",
                    fontsize=TEXT)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(_label(name, a, notes.get(name, "")), fontsize=TEXT)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, extend="max").ax.tick_params(labelsize=TEXT)
    fig.suptitle((f"{model.upper()}: " if model else "") + f"per layer, the {k} channels with the highest mean "
                 f"activation (channel: mean over the images), shown for one image", fontsize=TEXT + 1, y=1 - 0.1 / height)
    return fig


def channel_montage(act: np.ndarray, gap: int = 1, ncols: Optional[int] = None) -> np.ndarray:
    """Channels (C, H, W) tiled into one image (near-square unless ``ncols``), NaN between tiles
    (drawn as white)."""
    c, h, w = act.shape
    ncols = ncols or math.ceil(math.sqrt(c))
    nrows = math.ceil(c / ncols)
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap), np.nan, np.float32)
    for i in range(c):
        r, q = divmod(i, ncols)
        out[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = act[i]
    return out


def channel_grid_figure(act: np.ndarray, name: str, model: str = "") -> Figure:
    """Every channel of one layer for one image (act: (C, H, W)), tiled in one panel on one colour
    scale (clipped at the 99.5th percentile) with a colourbar, so weak and strong channels can be told apart."""
    gap = max(1, act.shape[1] // 16)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("white")
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(channel_montage(act, gap), cmap=cmap, interpolation="nearest", **_limits(act))
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, extend="max").ax.tick_params(labelsize=TEXT)
    ax.set_title(f"{model.upper()} {name}: all {len(act)} channels, {act.shape[1]}x{act.shape[2]} each".strip(),
                 fontsize=TEXT + 1)
    fig.tight_layout()
    return fig


def write_layers(models: dict[str, nn.Module], images: np.ndarray, out_dir: str | Path,
                 titles: Optional[list[str]] = None, k: int = 6, meta: Optional[dict] = None) -> dict:
    """Capture every model on the same images and write the figures and ``layers.json``.

    models: name -> network in eval mode; images: uint8 or [0, 1] float (N, H, W).
    Writes channel_means.png (all models side by side), <model>_top_channels.png and
    <model>_channels_<layer>.png (every channel of every layer, first image). ``meta`` is added to
    the JSON (e.g. which test images). Returns the JSON dict.

    Example:
        >>> write_layers({"ae": ae, "vae": vae}, test.images[:5], "layers")  # doctest: +SKIP
    """
    out = Path(out_dir)
    x = to_unit(images)
    runs = {m: capture_layers(net, torch.from_numpy(x[:, None])) for m, net in models.items()}
    notes = {m: layer_notes(net) for m, net in models.items()}
    atomic_write_bytes(out / "channel_means.png", figure_png(channel_mean_figure(x, runs, titles, notes)))
    files = ["channel_means.png"]
    result: dict = {"images": len(x), "titles": [t.replace("\n", " ") for t in titles or []], **(meta or {}), "near_zero_threshold": f"{NEAR_ZERO} * max |activation| of the layer",
                    "models": {}}
    for m, (acts, _) in runs.items():
        name = f"{m}_top_channels.png"
        atomic_write_bytes(out / name, figure_png(top_channels_figure(acts, k=k, model=m, notes=notes[m])))
        files.append(name)
        for layer, a in acts.items():
            name = f"{m}_channels_{layer.replace('.', '_')}.png"
            atomic_write_bytes(out / name, figure_png(channel_grid_figure(a[0], layer, m), dpi=100))
            files.append(name)
        result["models"][m] = layer_stats(acts)
    result["figures"] = files
    write_json(out / "layers.json", result)
    return result


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 or float images as float32 in [0, 1]."""
    return images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
