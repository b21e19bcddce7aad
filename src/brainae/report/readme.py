"""The report's "Read me first" box: what ran, the headline results, and the automatic checks.

It is made after every other section, since its checks read what they computed
(``study.extras``: latent code statistics, sweep summaries, anomaly AUROCs), and it is shown first.
The checks themselves are the pure functions of :mod:`brainae.report.flags`; here they are fed
from the study, and each flag is also pinned to the section it concerns (:func:`mark_sections`).
"""
from __future__ import annotations

import time
from typing import Any, Optional

from brainae.config import PRESET_DIR
from brainae.report import flags as checks
from brainae.report.sections import Section


def preset_note(preset: str) -> str:
    """The first comment line of the preset's YAML file (what the preset trades), or "".

    Example:
        >>> preset_note("no-such-preset")
        ''
    """
    path = PRESET_DIR / f"{preset}.yaml"
    if not path.is_file():
        return ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#"):
            return line.strip().lstrip("#").strip()
        if line.strip():
            break  # the note must open the file; a comment further down is about a setting
    return ""


def study_flags(study: Any) -> list[dict]:
    """Every check of :mod:`brainae.report.flags` on what the study produced."""
    extras = getattr(study, "extras", None) or {}
    latent = {m: s["spread"] for m, s in (extras.get("latent") or {}).get("models", {}).items() if "spread" in s}
    anomaly = extras.get("anomaly") or {}
    aurocs = ({m: {k: v["auroc"] for k, v in r["image_level"].items()} for m, r in anomaly.items()},
              {m: r.get("untrained") or {} for m, r in anomaly.items()}) if anomaly else None
    return checks.all_flags(study.histories, study.train_results, latent=latent or None,
                            sweeps=extras.get("sweeps"), anomaly=aurocs,
                            linear=(study.eval_results, (getattr(study, "baselines", None) or {}).get("pca")))


def mark_sections(sections: list[Section], flags: list[dict]) -> None:
    """Put each flag's warning at the top of the section it concerns, and fold that section when the
    flag says it would mislead at a glance."""
    by_id = {s.id: s for s in sections}
    for f in flags:
        s = by_id.get(f["section"])
        if s is None:
            continue
        s.warnings.append(f["warning"])
        s.folded = s.folded or f["fold"]


def _duration(seconds: float) -> str:
    """Example: ``_duration(164)`` -> '2 min 44 s'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s} s"


def readme_section(study: Any, flags: list[dict], titles: Optional[dict[str, str]] = None) -> Section:
    """The box: what ran (preset and what it trades, data, epochs, sweep, wall time), one results
    table (test PSNR and SSIM with their 95% intervals, best epoch of epochs) and the flags, each
    linked to the section it concerns when ``titles`` (section id -> title) has it."""
    configs = study.configs
    epochs = {m: {"run": r.get("epochs"), "asked": configs.get(m, {}).get("train", {}).get("epochs")}
              for m, r in study.train_results.items()}
    sweeps = {}
    for m, s in ((getattr(study, "extras", None) or {}).get("sweeps") or {}).items():
        states, ep = s.get("states") or {}, s.get("epochs") or {}
        sweeps[m] = {"trials": s.get("n_trials", 0), "complete": states.get("complete", 0),
                     "budget": ep.get("budget", 0), "applied": s.get("applied")}
    timing = getattr(study, "timing", None) or {}
    total = time.perf_counter() - study.started if getattr(study, "started", None) else None
    parts = []
    if timing.get("sweeps"):
        parts.append(f"sweeps {_duration(timing['sweeps'])}")
    parts += [f"{m.upper()} {_duration(s)}" for m, s in (timing.get("models") or {}).items()]
    if total is not None and parts:
        rest = total - timing.get("sweeps", 0) - sum((timing.get("models") or {}).values())
        parts.append(f"analyses for this report {_duration(max(rest, 0))}")
    results = {m: {"eval": r, "train": study.train_results.get(m, {})} for m, r in study.eval_results.items()}
    return Section("readme", "Read me first", {
        "preset": study.preset, "note": preset_note(study.preset), "summary": study.data_summary,
        "epochs": epochs, "sweeps": sweeps, "wall": _duration(total) if total is not None else None,
        "breakdown": parts, "results": results, "flags": flags, "titles": titles or {},
        "pca": (getattr(study, "baselines", None) or {}).get("pca"),
    })
