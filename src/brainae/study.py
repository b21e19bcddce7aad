"""``run_study``: the main job. Train AE and VAE on the same data and split, evaluate both on the
test split, and write ``report.html`` and ``summary.json``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np

from brainae import __version__, load_checks
from brainae.analyses import run_analyses
from brainae.config import Config, build_config, to_dict
from brainae.data.examples import pick_examples
from brainae.data.load import load_data
from brainae.data.types import require_one_channel
from brainae.errors import BrainaeError
from brainae.evaluation.baselines import pca_baseline
from brainae.evaluation.evaluate import evaluate, format_table, reconstruct
from brainae.io import write_json
from brainae.models import clear_untaken_structure
from brainae.report.build import write_report
from brainae.training.callbacks import read_history
from brainae.training.run import load_run
from brainae.training.train import data_summary, train

STUDY_MODELS = ("ae", "vae")


@dataclass
class StudyContext:
    """Everything the report's sections read; filled in as the study runs."""

    title: str
    preset: str
    data: SimpleNamespace  # .full and .test ImageSets
    data_summary: dict
    configs: dict[str, dict] = field(default_factory=dict)
    train_results: dict[str, dict] = field(default_factory=dict)
    histories: dict[str, list[dict]] = field(default_factory=dict)
    eval_results: dict[str, dict] = field(default_factory=dict)
    baselines: dict[str, dict] = field(default_factory=dict)  # rows scored like eval_results: "pca"
    reconstructions: dict[str, np.ndarray] = field(default_factory=dict)
    examples: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    models: dict[str, Any] = field(default_factory=dict)  # trained networks (eval mode), for analysis sections
    run_dirs: dict[str, Path] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # results of later study steps, keyed by step
    out_dir: Path = Path(".")
    version: str = __version__
    started: float = field(default_factory=time.perf_counter)  # the report states the study's wall time
    timing: dict[str, Any] = field(default_factory=dict)  # seconds: "sweeps", and per model (training + evaluation)


def linear_baselines(results: dict[str, dict], full, test, seed: int = 0) -> dict[str, dict]:
    """{"pca": its row} (see ``evaluation.baselines``): the linear code of the bottleneck models' size (the
    smallest, if they differ) on the same split, what training must beat; {} when every model bypasses
    its bottleneck (their "code" is no bottleneck)."""
    latent = min((r["latent_dim"] for r in results.values() if r.get("latent_dim") and not r.get("bypasses_bottleneck")),
                 default=0)
    return {"pca": pca_baseline(full.split("train"), test, latent, seed=seed)} if latent else {}


# summary.json keys (substrings) that differ between two runs of the same study: times and folders
VOLATILE_KEYS = ("seconds", "time", "dir", "report", "path")


def comparable(node: Any) -> Any:
    """``node`` (summary.json or a part of it) without its volatile entries: what two runs with the same
    seed must match exactly.

    Example:
        >>> comparable({"psnr": 21.0, "seconds": 3.2, "run_dir": "a", "per_class": [{"time": 1, "n": 2}]})
        {'psnr': 21.0, 'per_class': [{'n': 2}]}
    """
    if isinstance(node, dict):
        return {k: comparable(v) for k, v in node.items() if not any(w in k for w in VOLATILE_KEYS)}
    if isinstance(node, list):
        return [comparable(v) for v in node]
    return node


def study_configs(data: Optional[str], preset: str, config_file: Optional[str], overrides: list[str],
                  models=STUDY_MODELS, **flat) -> dict[str, Config]:
    load_checks()
    cfgs = {m: build_config(m, preset=preset, config_file=config_file, overrides=overrides, data=data, **flat)
            for m in models}
    for c in cfgs.values():
        clear_untaken_structure(c.model)  # --skips / --bottleneck are meant for the models among those compared that take them
    first = next(iter(cfgs.values())).data
    for m, c in cfgs.items():
        if c.data != first:
            raise BrainaeError(f"data settings of {m} differ from the others; the study compares models on one split")
    return cfgs


def run_study(out_dir: str | Path, data: Optional[str] = None, preset: str = "quick", config_file: Optional[str] = None,
              overrides: Optional[list[str]] = None, progress: bool = True, n_examples: int = 8,
              sweep: Optional[bool] = None, models: Optional[list[str]] = None, **flat) -> dict:
    """Train, evaluate and report; returns the summary written to ``summary.json``.

    sweep: search hyperparameters first (default on). Preset seed runs the study's sweeps (17 AE and
    61 VAE trials) into DIR/sweeps/ and trains the final models with the best parameters; quick runs
    3 one-epoch trials per model as a demonstration. A rerun with the same DIR resumes the sweeps.
    models: registered models to train and compare (default the study's AE and VAE).

    Example:
        >>> summary = run_study("study", data="phantom:300", preset="quick")  # doctest: +SKIP
        >>> summary["models"]["ae"]["test"]["psnr"]["mean"]  # doctest: +SKIP
    """
    started = time.perf_counter()
    out = Path(out_dir)
    models = list(models or STUDY_MODELS)
    cfgs = study_configs(data, preset, config_file, overrides or [], models=models, **flat)
    for c in cfgs.values():
        c.train.progress = progress
    data_cfg = next(iter(cfgs.values())).data
    full = load_data(data_cfg, progress=progress)  # loaded once: both models see the same split
    require_one_channel(full, "the study's report")
    test = full.split("test")
    ctx = StudyContext(
        title=f"brainae study: {' vs '.join(m.upper() for m in models)} on {data_cfg.spec}", preset=preset,
        data=SimpleNamespace(full=full, test=test), data_summary=data_summary(full), out_dir=out, started=started,
    )
    ctx.examples = pick_examples(test.labels, n=n_examples, seed=data_cfg.seed)
    if sweep is None or sweep:
        from brainae.sweeps.command import study_sweeps

        t = time.perf_counter()
        ctx.extras["sweeps"] = study_sweeps(cfgs, full, out / "sweeps", preset, progress=progress)
        ctx.timing["sweeps"] = time.perf_counter() - t
    n_train = sum(ctx.data_summary["counts"]["train"].values())
    for name, cfg in cfgs.items():
        print(f"== training {name.upper()} ({cfg.train.epochs} epochs, {n_train} training images)")
        run_dir = out / "runs" / name
        t = time.perf_counter()
        ctx.train_results[name] = train(cfg, run_dir, overwrite=True, data=full)
        ctx.configs[name] = to_dict(cfg)
        ctx.histories[name] = read_history(run_dir / "history.csv")
        model, run_cfg = load_run(run_dir)  # the best checkpoint, read once for evaluation and figures
        ctx.eval_results[name] = evaluate(run_dir, split="test", dataset=test, run=(model, run_cfg))
        ctx.models[name], ctx.run_dirs[name] = model, run_dir
        ctx.reconstructions[name] = reconstruct(model, test.images[ctx.examples])
        ctx.timing.setdefault("models", {})[name] = time.perf_counter() - t
    ctx.baselines = linear_baselines(ctx.eval_results, full, test, seed=data_cfg.seed)
    print(format_table({**ctx.eval_results, **ctx.baselines}))
    run_analyses(ctx)  # denoising, tumour detection, layers, latent spaces: computed here, drawn by the report
    report = write_report(ctx, out / "report.html")
    summary = {
        "data": ctx.data_summary,
        "preset": preset,
        "split": "test",
        "report": str(report),
        "models": {
            m: {"run_dir": ctx.train_results[m]["run_dir"], "train": ctx.train_results[m], "test": ctx.eval_results[m]}
            for m in cfgs
        },
    }
    if ctx.baselines:
        summary["baselines"] = ctx.baselines
    if "sweeps" in ctx.extras:
        summary["sweeps"] = {m: {k: s.get(k) for k in ("n_trials", "states", "epochs", "best", "applied")}
                             for m, s in ctx.extras["sweeps"].items()}
    total, sweeps, trained = time.perf_counter() - ctx.started, ctx.timing.get("sweeps", 0.0), ctx.timing.get("models", {})
    summary["seconds"] = {"total": round(total, 1), "sweeps": round(sweeps, 1),
                          "models": {m: round(x, 1) for m, x in trained.items()},
                          "report": round(total - sweeps - sum(trained.values()), 1)}  # loading data too
    if "flags" in ctx.extras:  # the report's automatic checks, for scripts that read the summary
        summary["flags"] = [{k: f[k] for k in ("id", "models", "title", "text")} for f in ctx.extras["flags"]]
    write_json(out / "summary.json", summary)
    print(f"report: {report}")
    return summary
