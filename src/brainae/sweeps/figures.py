"""Sweep figures as matplotlib Figures (drawn here rather than with optuna.visualization, which
needs plotly): optimisation history, top-10 validation curves, parallel coordinates, importances.

Every function takes sweep.json's content (``summarise``), so a report can redraw them later.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from brainae.io import atomic_write_bytes
from brainae.training.callbacks import read_history
from brainae.visualization.plots import TEXT, figure_png, plt

STATE_STYLE = {"complete": ("tab:blue", "o"), "pruned": ("tab:orange", "x"), "fail": ("tab:red", "v")}
FIGURES = ("history", "curves", "parallel", "importance")
WIDTH = 5.0  # inches: two figures side by side in the report, each shown at about its own size
FEW = 20  # curves of at most this many points get markers (a one-epoch trial is otherwise invisible)


def optimization_history(summary: dict) -> Figure:
    """Each trial's objective value (pruned trials: their last reported loss) and the running best."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    trials = summary["trials"]
    for state, (color, marker) in STATE_STYLE.items():
        pts = [(t["number"], _last_value(t)) for t in trials if t["state"] == state and _last_value(t) is not None]
        if pts:
            ax.scatter(*zip(*pts), c=color, marker=marker, s=22, label=state)
    best, xs, ys = math.inf, [], []
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["state"] == "complete" and t["value"] is not None:
            best = min(best, t["value"])
        if math.isfinite(best):
            xs.append(t["number"])
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", lw=1.2, label="best so far")
    _maybe_log(ax, [y for _, y in _points(trials)])
    _plain_ticks(ax)
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation loss")
    ax.set_title(f"{summary['model'].upper()}: optimisation history", fontsize=TEXT + 2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=TEXT)
    fig.tight_layout()
    return fig


def top_curves(summary: dict, k: int = 10) -> Figure:
    """Validation loss per epoch of the ``k`` best trials, from each trial's history.csv (or, for
    trials run on another machine, the values the trial reported to the study)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    ranked = sorted([t for t in summary["trials"] if _last_value(t) is not None], key=lambda t: _best_value(t))[:k]
    values, last_epoch = [], 0
    for i, t in enumerate(ranked):
        rows = read_history(Path(t["run_dir"]) / "history.csv") if t.get("run_dir") else []
        if rows:
            xs, ys = [r["epoch"] for r in rows], [r["val_loss"] for r in rows]
        else:
            xs, ys = [int(e) for e in t["intermediate"]], list(t["intermediate"].values())
        values += [y for y in ys if np.isfinite(y)]
        last_epoch = int(max([last_epoch, *xs]))
        ax.plot(xs, ys, "-" if t["state"] == "complete" else "--", lw=2 if i == 0 else 1,
                marker="o" if len(xs) <= FEW else None, ms=6 if i == 0 else 4,
                label=f"#{t['number']} {_short(t['params'])}")
    _maybe_log(ax, values)
    _plain_ticks(ax)
    ax.set_xlabel("epoch")
    if 1 <= last_epoch <= FEW:
        ax.set_xticks(range(1, last_epoch + 1))  # whole epochs: one epoch is a point at 1, not an axis of fractions
        ax.set_xlim(0.5, last_epoch + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation loss")
    ax.set_title(f"{summary['model'].upper()}: top {len(ranked)} trials (dashed: pruned)", fontsize=TEXT + 2)
    ax.grid(alpha=0.3)
    if ranked:  # below the axes: ten labels of parameters would cover the curves
        ax.legend(fontsize=TEXT, loc="upper left", bbox_to_anchor=(0, -0.2), frameon=False)
    fig.tight_layout()
    return fig


def parallel_coordinates(summary: dict) -> Figure:
    """One line per finished trial across the searched parameters, coloured by its loss (darker is better)."""
    keys = [row["key"] for row in summary["space"]["table"] if row["key"] != "train.epochs"]
    trials = [t for t in summary["trials"] if _last_value(t) is not None and all(k in t["params"] for k in keys)]
    fig, ax = plt.subplots(figsize=(max(WIDTH, 1.3 * (len(keys) + 1)), 3.6))
    axes_vals = []  # per axis: (positions in [0, 1] per trial, [(position, label)] ticks)
    for k in keys:
        vals = [t["params"][k] for t in trials]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        if numeric and vals:
            log = min(vals) > 0 and max(vals) / min(vals) > 20
            f = (lambda v: np.log10(np.asarray(v, float))) if log else (lambda v: np.asarray(v, float))
            lo, hi = float(f(min(vals))), float(f(max(vals)))
            pos = (lambda v: (f(v) - lo) / (hi - lo)) if hi > lo else (lambda v: np.full(np.shape(v), 0.5))
            uniq = sorted(set(vals))
            shown = uniq if len(uniq) <= 6 else [uniq[0], uniq[-1]]
            axes_vals.append((pos(vals), [(float(pos(v)), f"{v:.3g}" if isinstance(v, float) else str(v)) for v in shown]))
        else:
            cats = sorted({json.dumps(v) for v in vals})
            idx = np.array([cats.index(json.dumps(v)) for v in vals], float) / max(1, len(cats) - 1)
            axes_vals.append((idx, [(j / max(1, len(cats) - 1), json.loads(c)) for j, c in enumerate(cats)]))
    loss = np.array([_best_value(t) for t in trials])
    if len(trials):
        order = np.argsort(-loss)  # best drawn last, on top
        norm = plt.Normalize(loss.min(), loss.max() if loss.max() > loss.min() else loss.min() + 1)
        cmap = plt.get_cmap("viridis")
        for i in order:
            ys = [a[0][i] for a in axes_vals] + [norm(loss[i])]
            ax.plot(range(len(keys) + 1), ys, color=cmap(norm(loss[i])), alpha=0.8, lw=1.2)
    for x, (_, ticks) in enumerate(axes_vals):
        ax.axvline(x, color="gray", lw=0.6)
        for y, label in ticks:
            ax.text(x + 0.03, y, str(label), fontsize=TEXT, va="center")
    ax.set_xticks(range(len(keys) + 1), [k.split(".")[-1] for k in keys] + ["val. loss"], fontsize=TEXT)
    ax.set_yticks([])
    ax.set_title(f"{summary['model'].upper()}: parallel coordinates ({len(trials)} trials)", fontsize=TEXT + 2)
    fig.tight_layout()
    return fig


def importance_bars(summary: dict) -> Figure:
    """Parameter importances of the complete trials (method named in the title)."""
    imp = summary.get("importances") or {}
    values = imp.get("values") or {}
    fig, ax = plt.subplots(figsize=(WIDTH, 0.8 + 0.4 * max(3, len(values))))
    if values:
        names = list(values)[::-1]
        bars = ax.barh(names, [values[n] for n in names], color="tab:blue")
        ax.bar_label(bars, fmt="%.2f", fontsize=TEXT, padding=2)
        ax.set_xlim(0, max(1.0, 1.15 * max(values.values())))
        ax.set_xlabel("importance (normalised)", fontsize=TEXT)
        ax.tick_params(labelsize=TEXT)
    else:
        ax.text(0.5, 0.5, f"no importances: {imp.get('note') or 'not computed'}", ha="center", va="center",
                fontsize=TEXT, wrap=True)
        ax.set_axis_off()
    method = (imp.get("method") or "").split(" (")[0]
    ax.set_title(f"{summary['model'].upper()}: parameter importance{' (' + method + ')' if method else ''}",
                 fontsize=TEXT + 2)
    fig.tight_layout()
    return fig


def write_figures(summary: dict, out: Path) -> dict[str, str]:
    """Write the four PNGs to ``out``; returns name -> path."""
    makers = {"history": optimization_history, "curves": top_curves, "parallel": parallel_coordinates,
              "importance": importance_bars}
    paths = {}
    for name, make in makers.items():
        path = Path(out) / f"sweep_{name}.png"
        atomic_write_bytes(path, figure_png(make(summary)))
        paths[name] = str(path)
    return paths


def _last_value(t: dict):
    if t["value"] is not None and np.isfinite(t["value"]):
        return t["value"]
    vals = [v for v in t.get("intermediate", {}).values() if np.isfinite(v)]
    return vals[-1] if vals else None


def _best_value(t: dict) -> float:
    vals = [v for v in t.get("intermediate", {}).values() if np.isfinite(v)]
    return t["value"] if t["value"] is not None else (min(vals) if vals else math.inf)


def _points(trials: list[dict]) -> list[tuple[int, float]]:
    return [(t["number"], _last_value(t)) for t in trials if _last_value(t) is not None]


def _maybe_log(ax, values: list[float]) -> None:
    values = [v for v in values if np.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 30:
        ax.set_yscale("log")


def _plain_ticks(ax) -> None:
    """Loss values as they are: an offset ("+1.529e-1") makes every tick a puzzle."""
    if ax.get_yscale() == "linear":
        ax.ticklabel_format(axis="y", useOffset=False)


def _short(params: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in params.items())[:60]
