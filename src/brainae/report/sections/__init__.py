"""Report sections: each is one function (study context -> Section) plus one template block.

Sections only draw: what they show was computed before (the study context, and ``brainae.analyses``
for denoising, tumour detection, layers and latent spaces, in ``study.extras``). Add a section by
decorating a function with ``@section(order)`` in a module of this package listed in
``report.build.SECTION_MODULES`` and writing ``templates/sections/<id>.html.j2``. A function returns
None when it has nothing to show (for example no sweep was run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from brainae.data.grouping import describe
from brainae.data.inspect import inspect_imageset
from brainae.visualization.plots import figure_data_uri, loss_curves, reconstruction_grid, sample_grid


@dataclass
class Section:
    id: str  # also the template name: templates/sections/<id>.html.j2
    title: str
    context: dict = field(default_factory=dict)
    folded: bool = False  # shown closed (<details>); the reader opens it
    warnings: list[str] = field(default_factory=list)  # short lines at its top, from the report's checks


_SECTIONS: list[tuple[int, Callable[[Any], Optional[Section]]]] = []


def section(order: int) -> Callable:
    def deco(fn: Callable[[Any], Optional[Section]]) -> Callable:
        _SECTIONS.append((order, fn))
        return fn

    return deco


def build_sections(study: Any) -> list[Section]:
    """Every registered section that has something to show, in order."""
    out = []
    for _, fn in sorted(_SECTIONS, key=lambda t: t[0]):
        s = fn(study)
        if s is not None:
            out.append(s)
    return out


@section(10)
def data_section(study) -> Section:
    ds = study.data
    idx = study.examples
    fig = sample_grid(ds.test.images[idx], [ds.test.classes[ds.test.labels[i]] for i in idx])
    dup = inspect_imageset(ds.full, near_threshold=2)
    return Section("data", "Data", {"summary": study.data_summary, "grid": figure_data_uri(fig),
                                    "duplicates": dup["duplicates"]["exact"], "leaks": dup["leaks"],
                                    "grouping": ds.full.grouping, "split_by": describe(ds.full.grouping)})


@section(20)
def config_section(study) -> Section:
    return Section("config", "Configuration", {"configs": study.configs, "preset": study.preset})


@section(30)
def training_section(study) -> Section:
    fig = loss_curves(study.histories)
    times = {m: r.get("seconds_per_epoch") for m, r in study.train_results.items()}
    return Section("training", "Training", {"curves": figure_data_uri(fig), "train": study.train_results, "times": times})


@section(40)
def comparison_section(study) -> Section:
    return Section("comparison", "Held-out comparison", {"results": study.eval_results, "classes": study.data.test.classes,
                                                         "baselines": getattr(study, "baselines", None) or {}})


@section(50)
def reconstruction_section(study) -> Section:
    idx = study.examples
    test = study.data.test
    titles = [test.classes[test.labels[i]] for i in idx]
    fig = reconstruction_grid(test.images[idx], study.reconstructions, titles)  # recons of the examples
    return Section("reconstructions", "Reconstructions", {"grid": figure_data_uri(fig), "n": len(idx)})
