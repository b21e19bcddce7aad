"""Report sections "Inside the network" and "Latent space": drawn from what ``brainae.analyses`` computed
on the study's example test images (picked once per study, every class represented)."""
from __future__ import annotations

from typing import Optional

from brainae.report.sections import Section, section
from brainae.visualization.layers import channel_grid_figure, channel_mean_figure, top_channels_figure
from brainae.visualization.plots import figure_data_uri


@section(60)
def inside_section(study) -> Optional[Section]:
    stats, fig = (study.extras.get("layers") or {}).get("models"), study.extras.get("layers_figure")
    if stats is None:
        return None
    runs, notes, titles = fig["runs"], fig["notes"], fig["titles"]
    top = {m: figure_data_uri(top_channels_figure(acts, k=6, model=m, notes=notes[m])) for m, (acts, _) in runs.items()}
    grids = {}
    for m, (acts, _) in runs.items():
        first = next(iter(acts))  # the first layer: edges and intensity, easiest to read channel by channel
        grids[m] = {"layer": first, "uri": figure_data_uri(channel_grid_figure(acts[first][0], first, m))}
    plain = sorted({f"{k} ({v})" for n in notes.values() for k, v in n.items()})
    # folded by default: a third of the page, and read after the results rather than before them
    return Section("inside", "Inside the network", {
        "means": figure_data_uri(channel_mean_figure(fig["x"], runs, titles, notes)), "top": top, "grids": grids,
        "stats": stats, "n": len(titles), "first_title": titles[0], "plain": plain,
    }, folded=True)


@section(70)
def latent_section(study) -> Optional[Section]:
    summary, figs = study.extras.get("latent"), study.extras.get("latent_figure")
    if summary is None:
        return None
    return Section("latent", "Latent space", {
        "figs": {k: figure_data_uri(f) for k, f in figs.items()}, "summary": summary,
        "generative": [m for m, s in summary["models"].items() if s["generative"]],
        "n_pcs": max(len(s["explained_variance"]) for s in summary["models"].values()),
    })
