"""The latent space: 2-D projections by class, interpolation, and (VAE) prior samples and traversals.

Works with any model that has ``encode`` (images -> codes) and ``decode`` (codes -> images in
[0, 1]); sampling and traversals need ``sample(n)`` as well (the VAE). PCA is plain numpy; UMAP
and t-SNE are added when ``umap-learn`` or ``scikit-learn`` happen to be installed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure

from brainae.io import atomic_write_bytes, write_json
from brainae.training.precision import encode_codes
from brainae.visualization.layers import to_unit
from brainae.visualization.plots import TEXT, figure_png, grid_cell, plt

TRAVERSE_SIGMAS = (-2.5, -1.5, -0.5, 0.5, 1.5, 2.5)  # steps along a principal direction, in its std
# Burda et al. (2016): a unit of a VAE's mean code is "active" when its variance over the data exceeds
# 0.01; the N(0, I) prior fixes the scale, so the threshold means the same in every VAE (not in an AE)
ACTIVE_VARIANCE = 0.01


def has_latent_space(model: nn.Module) -> bool:
    """True for models whose output is made from their code alone: ``encode`` / ``decode`` and no bypass.

    Skips or a residual output let the input around the code, so decoding a code would show only part
    of what the model outputs (or, for a residual denoiser, its noise estimate).
    """
    return (hasattr(model, "encode") and hasattr(model, "decode")
            and not getattr(model, "bypasses_bottleneck", False))


@torch.no_grad()
def encode_images(model: nn.Module, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Codes (N, latent_dim) of images (N, H, W), uint8 or [0, 1]; the VAE gives its mean mu."""
    return encode_codes(model, images, batch_size)


@torch.no_grad()
def decode_codes(model: nn.Module, z: np.ndarray) -> np.ndarray:
    """Images (N, H, W) in [0, 1] of codes (N, latent_dim)."""
    device = next(model.parameters()).device
    return model.decode(torch.from_numpy(np.asarray(z, np.float32)).to(device)).float().cpu().numpy()[:, 0]


def pca(z: np.ndarray, k: int = 10) -> dict:
    """Principal components of codes (N, D): ``mean`` (D,), ``components`` (k, D) (unit rows),
    ``std`` (k,) along each, ``explained`` (k,) share of the total variance, sorted descending.

    Example:
        >>> p = pca(np.random.default_rng(0).normal(size=(50, 8)), k=3)
        >>> p["components"].shape, bool(p["explained"].sum() <= 1)
        ((3, 8), True)
    """
    z = np.asarray(z, np.float64)
    mean = z.mean(axis=0)
    zc = z - mean
    # eigen-decomposition of the smaller Gram matrix: the same result as an SVD, and much faster
    # when there are fewer codes than units
    if len(zc) <= zc.shape[1]:
        w, u = np.linalg.eigh(zc @ zc.T)
        w, u = np.clip(w[::-1], 0, None), u[:, ::-1]
        keep = w > w.max() * 1e-12 if w.max() > 0 else np.zeros(len(w), bool)
        vt = (u[:, keep].T @ zc) / np.sqrt(w[keep])[:, None]
        w = w[keep]
    else:
        w, v = np.linalg.eigh(zc.T @ zc)
        w, vt = np.clip(w[::-1], 0, None), v[:, ::-1].T
    if len(vt):
        vt = vt * np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])[:, None]  # a fixed sign per direction
    var = w / max(1, len(z) - 1)
    total = var.sum()
    k = min(k, len(var))
    return {"mean": mean, "components": vt[:k], "std": np.sqrt(var[:k]),
            "explained": var[:k] / total if total > 0 else np.zeros(k)}


def code_statistics(z: np.ndarray, prior_scaled: bool = False) -> dict:
    """How many directions codes (N, D) actually use.

    effective_dims: the participation ratio (sum l)^2 / sum l^2 of the eigenvalues l of the codes'
        covariance: 1 when every code lies on one line, D when the variance is spread evenly; unlike a
        count of units it sees codes that vary in every unit but only along one direction together.
    pc1: the first principal component's share of the variance.
    active_units: with ``prior_scaled`` (a VAE's mean code, scaled by its N(0, I) prior), the units
        whose variance over the images exceeds :data:`ACTIVE_VARIANCE`; else None.

    Example:
        >>> z = np.outer(np.linspace(-1, 1, 20), np.ones(8))  # 20 codes on one line
        >>> round(code_statistics(z)["effective_dims"], 3), code_statistics(z, prior_scaled=True)["active_units"]
        (1.0, 8)
    """
    z = np.asarray(z, np.float64)
    zc = z - z.mean(axis=0)
    gram = zc @ zc.T if len(zc) <= zc.shape[1] else zc.T @ zc  # the same non-zero eigenvalues; the smaller matrix
    lam = np.clip(np.linalg.eigvalsh(gram), 0, None)
    total = lam.sum()
    return {
        "n": int(z.shape[0]), "dim": int(z.shape[1]),
        "effective_dims": float(total ** 2 / (lam ** 2).sum()) if total > 0 else 0.0,
        "pc1": float(lam.max() / total) if total > 0 else 1.0,
        "active_units": int((z.var(axis=0, ddof=1) > ACTIVE_VARIANCE).sum()) if prior_scaled and len(z) > 1 else None,
    }


def projections(z: np.ndarray, seed: int = 0, p: Optional[dict] = None) -> dict[str, np.ndarray]:
    """2-D embeddings (N, 2) of codes: "PCA" always, "UMAP" / "t-SNE" when their package is installed.
    p: :func:`pca` of ``z`` when already computed."""
    p = p or pca(z, 2)
    out = {"PCA": (z - p["mean"]) @ p["components"][:2].T}
    if importlib.util.find_spec("umap") is not None and len(z) > 10:
        import umap

        out["UMAP"] = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(z) - 1)).fit_transform(z)
    if importlib.util.find_spec("sklearn") is not None and len(z) > 5:
        from sklearn.manifold import TSNE

        out["t-SNE"] = TSNE(n_components=2, random_state=seed, perplexity=min(30.0, (len(z) - 1) / 3),
                            init="pca").fit_transform(z)
    return out


def centroid_distances(z: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Euclidean distances between class centroids of codes, and each class's spread (RMS distance
    of its codes to its centroid); classes without images are left out."""
    present = [i for i in range(len(classes)) if (labels == i).any()]
    cents = np.stack([z[labels == i].mean(axis=0) for i in present])
    dist = np.linalg.norm(cents[:, None] - cents[None], axis=-1)
    spread = [float(np.sqrt(((z[labels == i] - cents[j]) ** 2).sum(axis=1).mean())) for j, i in enumerate(present)]
    return {"classes": [classes[i] for i in present], "distances": dist.tolist(), "spread": spread}


def interpolate(model: nn.Module, a: np.ndarray, b: np.ndarray, steps: int = 8) -> np.ndarray:
    """Decoded images (steps, H, W) of codes on the line from encode(a) to encode(b) (images (H, W))."""
    za, zb = encode_images(model, np.stack([a, b]))
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return decode_codes(model, (1 - t) * za + t * zb)


def traverse(model: nn.Module, z: np.ndarray, k: int = 3, sigmas=TRAVERSE_SIGMAS, p: Optional[dict] = None) -> np.ndarray:
    """Decoded images (k, len(sigmas), H, W): from the mean code along each of the top ``k``
    principal directions of ``z``, by ``sigmas`` standard deviations along that direction.
    p: :func:`pca` of ``z`` when already computed."""
    p = {key: v[:k] if key != "mean" else v for key, v in (p or pca(z, k)).items()}
    steps = np.asarray(sigmas, np.float32)
    codes = p["mean"][None, None] + steps[None, :, None] * (p["std"][:, None, None] * p["components"][:, None])
    imgs = decode_codes(model, codes.reshape(-1, z.shape[1]))
    return imgs.reshape(len(p["components"]), len(steps), *imgs.shape[1:])


def is_generative(model: nn.Module) -> bool:
    return callable(getattr(model, "sample", None))


def sample_prior(model: nn.Module, n: int = 16, seed: int = 0, prior: str = "fitted") -> np.ndarray:
    """``n`` images (n, H, W) in [0, 1] decoded from the model's prior (seeded): the mixture fitted to
    the training codes when the run has one (``prior="fitted"``), else, or with ``"normal"``, N(0, I)."""
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    return model.sample(n, generator=g, prior=prior).float().cpu().numpy()[:, 0]


def prior_samples(model: nn.Module, n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Samples from N(0, I) and, when the run has one, from the fitted mixture: label -> (n, H, W)."""
    out = {"z ~ N(0, I)": sample_prior(model, n, seed, "normal")}
    fitted = getattr(model, "code_prior", None)
    if fitted is not None:
        out[f"z ~ mixture of {fitted.components}"] = sample_prior(model, n, seed, "fitted")
    return out


# --- figures -----------------------------------------------------------------------------------

def projection_figure(proj: dict[str, dict[str, np.ndarray]], labels: np.ndarray, classes: list[str],
                      explained: Optional[dict[str, np.ndarray]] = None, highlight: Optional[np.ndarray] = None) -> Figure:
    """Columns: models (side by side); rows: projection methods; points coloured by class.
    ``highlight``: indices of images to ring (the report's example images)."""
    models = list(proj)
    methods = list(next(iter(proj.values())))
    fig, axes = plt.subplots(len(methods), len(models), figsize=(4.4 * len(models), 3.7 * len(methods)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for c, m in enumerate(models):
        for r, method in enumerate(methods):
            ax = axes[r][c]
            e = proj[m][method]
            for i, name in enumerate(classes):
                sel = labels == i
                if sel.any():
                    ax.scatter(e[sel, 0], e[sel, 1], s=14, alpha=0.75, color=colours(i % 10), label=f"{name} ({sel.sum()})")
            if highlight is not None and len(highlight):
                ax.scatter(e[highlight, 0], e[highlight, 1], s=70, facecolors="none", edgecolors="black",
                           linewidths=1.0, label="report examples")
            title = f"{m.upper()} latent, {method}"
            if method == "PCA" and explained is not None:
                ev = explained[m]
                title += f" (PC1 {ev[0]:.0%}, PC2 {ev[1]:.0%} of variance)" if len(ev) > 1 else ""
                ax.set_xlabel("PC1")
                ax.set_ylabel("PC2")
            ax.set_title(title, fontsize=TEXT + 1)
            ax.tick_params(labelsize=TEXT)
            ax.grid(alpha=0.25)
            if r == 0 and c == 0:
                ax.legend(fontsize=TEXT, loc="best")
    fig.tight_layout()
    return fig


def explained_figure(explained: dict[str, np.ndarray]) -> Figure:
    """Share of latent variance per principal component (bars) and cumulative (line), per model."""
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    width = 0.8 / max(1, len(explained))
    for i, (m, ev) in enumerate(explained.items()):
        x = np.arange(1, len(ev) + 1)
        bars = ax.bar(x + (i - (len(explained) - 1) / 2) * width, ev, width, label=f"{m.upper()} per component")
        ax.plot(x, np.cumsum(ev), "o-", ms=3, color=bars.patches[0].get_facecolor(), label=f"{m.upper()} cumulative")
    ax.set_xlabel("principal component")
    ax.set_ylabel("share of latent variance")
    ax.set_ylim(0, 1)
    ax.set_title("Variance of the test codes per principal component", fontsize=TEXT + 1)
    ax.tick_params(labelsize=TEXT)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=TEXT)
    fig.tight_layout()
    return fig


def image_rows_figure(rows: dict[str, np.ndarray], col_titles: list[str], title: str = "") -> Figure:
    """Rows of images (each (n, H, W) in [0, 1]) labelled by row name, with column titles."""
    n = max(len(v) for v in rows.values())
    cell = grid_cell(next(iter(rows.values())))
    left = 0.2 + 0.09 * max(len(label.split("\n")) for label in rows)
    top = (0.25 if title else 0.05) + (0.2 if col_titles else 0)
    width, height = cell * n + left + 0.05, (cell + 0.04) * len(rows) + top + 0.05
    fig, axes = plt.subplots(len(rows), n, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=left / width, right=1 - 0.05 / width, bottom=0.05 / height, top=1 - top / height,
                        wspace=0.04, hspace=0.04)
    for r, (label, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(imgs):
                ax.axis("off")
                continue
            ax.imshow(imgs[c], cmap="gray", vmin=0, vmax=1)
            if c == 0:
                ax.set_ylabel(label, fontsize=TEXT)
            if r == 0 and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=TEXT)
    if title:
        fig.suptitle(title, fontsize=TEXT + 1, y=1 - 0.04 / height)
    return fig


def interpolation_figure(models: dict[str, nn.Module], a: np.ndarray, b: np.ndarray, names: tuple[str, str],
                         steps: int = 8) -> Figure:
    """Per model: image A, the decoded line from A's code to B's code, image B."""
    a, b = to_unit(a), to_unit(b)
    rows = {m.upper(): np.concatenate([a[None], interpolate(net, a, b, steps), b[None]]) for m, net in models.items()}
    cols = [f"A: {names[0]}"] + [f"t={t:.2f}" for t in np.linspace(0, 1, steps)] + [f"B: {names[1]}"]
    return image_rows_figure(rows, cols, "Linear interpolation in latent space between two test images")


def sample_figure(samples: dict[str, np.ndarray], model: str, ncols: int = 8) -> Figure:
    """Rows of ``ncols`` samples per source (label -> (n, H, W)), each source's label on its first row."""
    rows = {}
    for label, imgs in samples.items():
        for r in range(int(np.ceil(len(imgs) / ncols))):
            rows[label if r == 0 else " " * len(rows)] = imgs[r * ncols:(r + 1) * ncols]
    return image_rows_figure(rows, [], f"{model.upper()}: images decoded from sampled codes")


def traversal_figure(grid: np.ndarray, model: str, explained: np.ndarray, sigmas=TRAVERSE_SIGMAS) -> Figure:
    rows = {f"PC{i + 1} ({explained[i]:.0%})": grid[i] for i in range(len(grid))}
    return image_rows_figure(rows, [f"{s:+g} sd" for s in sigmas],
                             f"{model.upper()}: from the mean code along the top principal directions")


# --- everything for one set of models ----------------------------------------------------------

def analyse_latent(models: dict[str, nn.Module], images: np.ndarray, labels: np.ndarray, classes: list[str],
                   pair: tuple[int, int], highlight: Optional[np.ndarray] = None, seed: int = 0,
                   n_samples: int = 16) -> tuple[dict, dict[str, Figure]]:
    """Encode ``images`` (the test split) with every model; returns (summary for latent.json, figures).

    pair: indices into ``images`` of the interpolation endpoints. Figures: "projections",
    "explained", "interpolation", and "<model>_samples", "<model>_traversal" for generative models.
    """
    codes = {m: encode_images(net, images) for m, net in models.items()}
    pcs = {m: pca(z, 10) for m, z in codes.items()}
    explained = {m: p["explained"] for m, p in pcs.items()}
    projs = {m: projections(z, seed, pcs[m]) for m, z in codes.items()}
    figs = {
        "projections": projection_figure(projs, labels, classes, explained, highlight),
        "explained": explained_figure(explained),
        "interpolation": interpolation_figure(models, images[pair[0]], images[pair[1]],
                                              (classes[labels[pair[0]]], classes[labels[pair[1]]])),
    }
    summary: dict = {"n": int(len(images)), "pair": [int(pair[0]), int(pair[1])],
                     "projections": list(next(iter(projs.values()))), "models": {}}
    for m, net in models.items():
        z = codes[m]
        summary["models"][m] = {
            "latent_dim": int(z.shape[1]),
            "explained_variance": [float(v) for v in explained[m]],
            "code_std": float(z.std(axis=0).mean()),  # average spread per latent unit
            "spread": code_statistics(z, prior_scaled=is_generative(net)),
            "centroids": centroid_distances(z, labels, classes),
            "generative": is_generative(net),
        }
        if is_generative(net):
            figs[f"{m}_samples"] = sample_figure(prior_samples(net, n_samples, seed), m)
            fitted = getattr(net, "code_prior", None)
            summary["models"][m]["mixture_components"] = fitted.components if fitted is not None else 0
            figs[f"{m}_traversal"] = traversal_figure(traverse(net, z, 3, p=pcs[m]), m, explained[m])
    return summary, figs


def write_latent(models: dict[str, nn.Module], images: np.ndarray, labels: np.ndarray, classes: list[str],
                 out_dir: str | Path, pair: tuple[int, int], seed: int = 0,
                 highlight: Optional[np.ndarray] = None) -> dict:
    """:func:`analyse_latent`, written as ``<figure>.png`` files and ``latent.json`` in ``out_dir``.

    Example:
        >>> write_latent({"ae": ae, "vae": vae}, test.images, test.labels, test.classes, "latent", (0, 5))  # doctest: +SKIP
    """
    out = Path(out_dir)
    summary, figs = analyse_latent(models, images, labels, classes, pair, highlight, seed=seed)
    for name, fig in figs.items():
        atomic_write_bytes(out / f"{name}.png", figure_png(fig))
    summary["figures"] = [f"{name}.png" for name in figs]
    write_json(out / "latent.json", summary)
    return summary
