"""``--wandb``: each trial also becomes a W&B run, offline unless WANDB_MODE says otherwise.

Offline runs need no account and no network; they are written under ``$WANDB_DIR/wandb`` (default
``DIR/wandb``) and ``wandb sync DIR/wandb/offline-run-*`` uploads them later. The run is written
when the trial ends, from its history.csv, so its per-epoch curve matches sweep.json exactly.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import optuna

from brainae.errors import BrainaeError
from brainae.sweeps.study import SweepOptions
from brainae.training.callbacks import read_history


def check_wandb() -> None:
    """Fail before any work when ``--wandb`` is asked for without the package."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise BrainaeError("--wandb needs the wandb package: pip install wandb "
                           "(or pip install 'brainae[wandb]')") from None


def log_trial(trial: optuna.Trial, params: dict, state: str, value: Optional[float], opts: SweepOptions) -> None:
    """One W&B run named ``trial-N``: the sampled params as its config, one log step per epoch
    (train/val loss, val MSE/PSNR, lr), and state, value, epochs and reason in its summary.

    A logging error is printed as a warning and never fails the trial.
    """
    import wandb

    attrs = trial.user_attrs
    try:
        reused = attrs.get("duplicate_of") is not None  # its curve belongs to the earlier trial's run
        history = [] if reused else read_history(Path(attrs["run_dir"]) / "history.csv")
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True)  # post hoc: no live stats
        with wandb.init(project=f"brainae-sweep-{opts.model}", group=opts.name, name=f"trial-{trial.number}",
                        config=params, dir=os.environ.get("WANDB_DIR") or str(opts.out),
                        mode=os.environ.get("WANDB_MODE", "offline"), settings=settings) as run:
            for row in history:
                run.log({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
            kept = ("epochs_run", "best_epoch", "seconds", "reason", "duplicate_of")
            run.summary.update({"state": state, "value": value, "trial": trial.number,
                                **{k: attrs[k] for k in kept if attrs.get(k) is not None}})
    except Exception as e:
        print(f"brainae: warning: trial {trial.number} not logged to W&B: {type(e).__name__}: {e}", file=sys.stderr)
