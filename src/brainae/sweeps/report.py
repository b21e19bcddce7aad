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
FIGURES = [("history", optimization_history, "optimisation history"), ("curves", top_curves, "top-10 validation curves"),
           ("parallel", parallel_coordinates, "parallel coordinates"), ("importance", importance_bars, "parameter importance")]


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
            "figures": [(label, figure_data_uri(make(s))) for _, make, label in FIGURES],
        }
    keys = []
    for m in models.values():
        keys += [k for k in m["params"] if k not in keys]
    return Section("sweeps", "Hyperparameter search", {"models": models, "keys": keys})
