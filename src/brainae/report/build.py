"""Render the study report: one self-contained HTML file (figures embedded), written atomically."""
from __future__ import annotations

import datetime as _dt
import importlib
from pathlib import Path
from typing import Any

import jinja2

from brainae.io import atomic_write_text
from brainae.report.readme import mark_sections, readme_section, study_flags
from brainae.report.sections import build_sections

TEMPLATES = Path(__file__).parent / "templates"
# Modules whose @section functions make up the report; a new section module is added here.
SECTION_MODULES = [
    "brainae.report.sections",
    "brainae.report.sections.networks",
    "brainae.report.sections.results",
    "brainae.report.sections.sweeps",
]


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["fmt"] = lambda v, f="{:.3f}": "n/a" if v is None else f.format(v)
    return env


def render_report(study: Any) -> str:
    for name in SECTION_MODULES:
        importlib.import_module(name)  # registers its sections
    sections = build_sections(study)
    # the box is made last (its checks read what the sections computed) and shown first
    flags = study_flags(study)
    study.extras["flags"] = flags  # run_study copies them into summary.json
    mark_sections(sections, flags)
    sections.insert(0, readme_section(study, flags, {s.id: s.title for s in sections}))
    env = _env()
    bodies = [(s, env.get_template(f"sections/{s.id}.html.j2").render(s=s, **s.context)) for s in sections]
    return env.get_template("report.html.j2").render(
        title=study.title, sections=bodies, created=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        version=study.version,
    )


def write_report(study: Any, path: str | Path) -> Path:
    """Render and write ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, render_report(study))
    return path
