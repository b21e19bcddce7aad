"""Report section "Hyperparameter search": each model's space and best configuration (the study's
tables 1-4), trial counts, the epochs pruning saved, and the four sweep figures.

Reads ``study.extras["sweeps"]``: model name -> sweep.json content. Returns None when no sweep ran.
"""
from __future__ import annotations

from brainae.report.sections import Section, section
from brainae.sweeps.space import _fmt
from brainae.sweeps.figures import importance_bars, optimization_history, parallel_coordinates, top_curves
from brainae.visualization.plots import figure_data_uri

# What the study reported for its W&B sweeps (chosen by training loss), shown beside ours.
STUDY_BEST = {
    "ae": {"trials": 17, "train.lr": 5e-4, "train.epochs": 40, "train.batch_size": 16, "model.latent_dim": 512,
           "loss": "0.003926 (training MSE)"},
    "vae": {"trials": 61, "train.lr": 1e-3, "train.epochs": 40, "train.batch_size": 16, "model.latent_dim": 512,
            "loss": "97322.52 (training BCE + KL, summed over a batch)"},
}
# (name, figure, alt text, caption: how to read it)
FIGURES = [
    ("history", optimization_history, "optimisation history",
     "Each trial's validation loss in the order the trials ran (pruned trials: their last reported value), and the "
     "best so far (line). A line that keeps stepping down means the search was still finding better settings."),
    ("curves", top_curves, "top-10 validation curves",
     "Validation loss per epoch of the best trials (thickest: the best), one marker per epoch; parameters in the "
     "legend. Curves still falling at their end were stopped by the epoch budget, not by convergence."),
    ("parallel", parallel_coordinates, "parallel coordinates",
     "One line per finished trial across the searched values (ticks on each axis), coloured by its loss (darker is "
     "better): dark lines gathering at one value of a parameter point to a good choice."),
    ("importance", importance_bars, "parameter importance",
     "How much of the variation in loss each parameter explains over the complete trials (sums to 1). With a few "
     "trials the estimate is noise, and equal bars mean nothing could be told apart."),
]


@section(25)
def sweep_section(study) -> Section | None:
    sweeps = (getattr(study, "extras", None) or {}).get("sweeps")
    if not sweeps:
        return None
    models = {}
    for name, s in sweeps.items():
        best = s.get("best") or {}
        params = {k: _fmt(v) for k, v in (best.get("params") or {}).items()}
        if best.get("epochs") is not None:
            params["train.epochs"] = best["epochs"]
        models[name] = {
            "summary": s, "best": best, "params": params, "study": STUDY_BEST.get(name),
            "figures": [(label, figure_data_uri(make(s)), caption) for _, make, label, caption in FIGURES],
        }
    keys = []
    for m in models.values():
        keys += [k for k in m["params"] if k not in keys]
    return Section("sweeps", "Hyperparameter search", {"models": models, "keys": keys})
