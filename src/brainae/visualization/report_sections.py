"""Report sections "Inside the network" and "Latent space", computed from the study's trained models.

Both use the study's example test images (``study.examples``, picked once per study with every
class represented), so the layer and latent figures show the same images as the rest of the report.
Results are kept in ``study.extras["layers"]`` and ``study.extras["latent"]``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from brainae.report.sections import Section, section
from brainae.visualization.latent import analyse_latent, has_latent_space
from brainae.visualization.layers import capture_layers, channel_grid_figure, channel_mean_figure, layer_notes, \
    layer_stats, to_unit, top_channels_figure
from brainae.visualization.plots import figure_data_uri

LAYER_IMAGES = 5  # the study's figures 11 and 12 showed five images
REPORT_SAMPLES = 8  # prior samples per source in the report: one row each (`brainae latent` draws 16)


def spread_over_classes(examples: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``examples``, taken in turn from each class, so every class (tumours too) shows.

    Example:
        >>> spread_over_classes(np.array([0, 1, 2, 3, 4, 5]), np.array([0, 0, 0, 1, 1, 1]), 3).tolist()
        [0, 3, 1]
    """
    pools = {c: [i for i in examples if labels[i] == c] for c in dict.fromkeys(labels[examples].tolist())}
    chosen: list[int] = []
    while len(chosen) < min(n, len(examples)):
        for pool in pools.values():
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop(0)))
    return np.array(chosen, dtype=int)


def interpolation_pair(examples: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """The first example, and the first example of another class (the same image twice if there is none)."""
    first = int(examples[0])
    other = [int(i) for i in examples if labels[i] != labels[first]]
    return first, (other[0] if other else int(examples[-1]))


@section(60)
def inside_section(study) -> Optional[Section]:
    if not study.models or len(study.examples) == 0:
        return None
    test = study.data.test
    idx = spread_over_classes(study.examples, test.labels, LAYER_IMAGES)
    x = to_unit(test.images[idx])
    titles = [test.classes[test.labels[i]] for i in idx]
    runs = {m: capture_layers(net, torch.from_numpy(x[:, None])) for m, net in study.models.items()}
    notes = {m: layer_notes(net) for m, net in study.models.items()}
    stats = {m: layer_stats(acts) for m, (acts, _) in runs.items()}
    for m, rows in stats.items():
        for r in rows:
            r["note"] = notes[m].get(r["layer"], "")
    study.extras["layers"] = {"images": idx.tolist(), "models": stats}
    top = {m: figure_data_uri(top_channels_figure(acts, k=6, model=m, notes=notes[m])) for m, (acts, _) in runs.items()}
    grids = {}
    for m, (acts, _) in runs.items():
        first = next(iter(acts))  # the first layer: edges and intensity, easiest to read channel by channel
        grids[m] = {"layer": first, "uri": figure_data_uri(channel_grid_figure(acts[first][0], first, m))}
    plain = sorted({f"{k} ({v})" for n in notes.values() for k, v in n.items()})
    # folded by default: a third of the page, and read after the results rather than before them
    return Section("inside", "Inside the network", {
        "means": figure_data_uri(channel_mean_figure(x, runs, titles, notes)), "top": top, "grids": grids,
        "stats": stats, "n": len(idx), "first_title": titles[0], "plain": plain,
    }, folded=True)


@section(70)
def latent_section(study) -> Optional[Section]:
    models = {m: net for m, net in study.models.items() if has_latent_space(net)}
    if not models or len(study.examples) == 0:
        return None
    test = study.data.test
    pair = interpolation_pair(study.examples, test.labels)
    summary, figs = analyse_latent(models, test.images, test.labels, test.classes, pair, highlight=study.examples,
                                   n_samples=REPORT_SAMPLES)
    study.extras["latent"] = summary
    return Section("latent", "Latent space", {
        "figs": {k: figure_data_uri(f) for k, f in figs.items()}, "summary": summary,
        "generative": [m for m, s in summary["models"].items() if s["generative"]],
        "n_pcs": max(len(s["explained_variance"]) for s in summary["models"].values()),
    })
