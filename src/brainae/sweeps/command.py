"""What ``brainae sweep`` and the study need around ``run_sweep``: resolve the base config and the
options from flags, and print a summary. Kept apart so the CLI stays a thin parser."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np

from brainae import load_checks
from brainae.config import Config, build_config
from brainae.errors import BrainaeError
from brainae.sweeps.study import SweepOptions, check_options
from brainae.sweeps.space import Space, load_space


def sweep_setup(model: str, out: str | Path, *, data: Optional[str] = None, preset: str = "seed",
                config_file: Optional[str] = None, overrides: Optional[list[str]] = None,
                space: str | Space = "seed", epochs: Optional[int] = None, limit: Optional[int] = None,
                image_size: Optional[int] = None, accelerator: Optional[str] = None, **options) -> tuple[Config, SweepOptions]:
    """The base config (preset < file < flags < --set) and the SweepOptions of one sweep.

    epochs: the budget of every trial; default the largest ``train.epochs`` value of the space
    (40 for seed and wide), or with ``preset="quick"`` the preset's own (8).

    Example:
        >>> cfg, opts = sweep_setup("ae", "sw", data="phantom:120", preset="quick", trials=4)
        >>> opts.space.max_epochs, opts.trials
        (8, 4)
    """
    if epochs is not None and epochs < 1:  # 0 meant the default budget, -1 training without end
        raise BrainaeError(f"--epochs must be at least 1 (each trial's epoch budget); got {epochs}")
    load_checks()
    cfg = build_config(model, preset=preset, config_file=config_file, overrides=overrides or [], data=data,
                       limit=limit, image_size=image_size, accelerator=accelerator)
    sp = space if isinstance(space, Space) else load_space(space, model)
    if epochs is not None:
        sp = Space(sp.name, sp.params, [e for e in sp.epochs if e < epochs] + [epochs])
    elif preset == "quick" or not sp.epochs:
        sp = Space(sp.name, sp.params, [cfg.train.epochs])
    opts = SweepOptions(model=model, out=Path(out), space=sp, **options)
    check_options(opts)
    return cfg, opts


def format_summary(summary: dict) -> str:
    """A few lines: states, epochs saved by pruning, the best trial."""
    s, e = summary["states"], summary["epochs"]
    lines = [f"{summary['n_trials']} trials: {s['complete']} complete, {s['pruned']} pruned, {s['fail']} failed; "
             f"{e['run']} of {e['budget']} epochs run (pruning saved {e['saved']})"
             + (f"; {e['reused_trials']} repeated earlier parameters (result reused)" if e.get("reused_trials") else "")]
    retried = sum(t.get("retry_of") is not None for t in summary.get("trials", []))
    if retried:
        lines[0] += f"; {retried} retried after their worker stopped"
    b = summary.get("best")
    if b:
        params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["params"].items())
        lines.append(f"best: trial {b['number']}, validation loss {b['value']:.5g} at epoch {b['best_epoch']} "
                     f"(epochs on the grid: {b['epochs']}): {params}")
    else:
        lines.append("no trial completed yet")
    if summary.get("best_dir"):
        lines.append(f"best run folder: {summary['best_dir']}")
    return "\n".join(lines)


# The study's sweeps: (trials per model, pruner). seed: the study's counts (17 AE, 61 VAE trials) over
# its grid with a 40-epoch budget. quick: a demonstration, 3 one-epoch trials per model on 64 training images,
# validated on 192 (it ranks nothing; on the whole validation split, validating took most of its time).
STUDY_SWEEPS = {"seed": {"ae": 17, "vae": 61}, "quick": {"ae": 3, "vae": 3}}
QUICK_TRAIN_IMAGES = 64
QUICK_VAL_IMAGES = 192


def study_sweeps(cfgs: dict[str, Config], data, out: Path, preset: str, progress: bool = True) -> dict[str, dict]:
    """Run (or resume) one sweep per model before the study trains; returns model -> sweep.json content.

    With preset seed the best parameters (and epochs on the grid) replace those in ``cfgs``, so the
    final models train with them; with quick the sweep is only shown (one epoch ranks too little).
    """
    from brainae.sweeps.runner import run_sweep
    from brainae.sweeps.space import apply_params, for_model, seed_space, tiny_space

    counts = STUDY_SWEEPS.get(preset, STUDY_SWEEPS["quick"])
    quick = preset != "seed"
    if quick:  # the first QUICK_TRAIN_IMAGES training and QUICK_VAL_IMAGES validation images only
        is_train, is_val = data.splits == "train", data.splits == "val"
        keep = (is_val & (np.cumsum(is_val) <= QUICK_VAL_IMAGES)) | (is_train & (np.cumsum(is_train) <= QUICK_TRAIN_IMAGES))
        data = data.subset(keep)
    results = {}
    for name, cfg in cfgs.items():
        space = for_model(tiny_space(1) if quick else seed_space(), name)
        opts = SweepOptions(model=name, out=Path(out) / name, space=space, trials=counts.get(name, 3),
                            sampler="tpe", pruner="sha", quiet=not progress)
        summary = run_sweep(copy.deepcopy(cfg), opts, data=data)
        summary["applied"] = not quick and summary.get("best") is not None
        if summary["applied"]:
            apply_params(cfg, summary["best"]["params"])
            cfg.train.epochs = summary["best"]["epochs"] or cfg.train.epochs
        results[name] = summary
    return results

