"""Report sections "Denoising" and "Tumour detection": drawn from what ``brainae.analyses`` computed."""
from __future__ import annotations

from typing import Optional

from brainae.report.sections import Section, section
from brainae.visualization.denoise_anomaly import denoise_grid, residual_grid
from brainae.visualization.plots import figure_data_uri


@section(80)
def denoising_section(study) -> Optional[Section]:
    result, fig = study.extras.get("denoising"), study.extras.get("denoising_figure")
    if result is None:
        return None
    noise = fig["noise"]
    # the study's models in capitals, as in the table
    shown = {k.upper() if k in study.models else k: v for k, v in fig["images"].items()}
    grid = denoise_grid(shown, noise, fig["titles"])
    return Section("denoising", "Denoising", {"r": result, "rows": result["results"][noise],
                                              "grid": figure_data_uri(grid), "noise": noise})


@section(90)
def anomaly_section(study) -> Optional[Section]:
    results, fig = study.extras.get("anomaly"), study.extras.get("anomaly_figure")
    if results is None:
        return None
    grid = figure_data_uri(residual_grid(fig["images"], fig["recons"], fig["residuals"], fig["masks"], fig["titles"]))
    return Section("anomaly", "Tumour detection", {"results": results, "normal": fig["normal"], "grid": grid,
                                                    "figure_model": fig["model"], "trained_on": fig["trained_on"]})
