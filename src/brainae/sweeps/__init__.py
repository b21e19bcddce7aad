"""Hyperparameter sweeps: search spaces, the Optuna study runner, figures and the report section."""
from brainae.sweeps.runner import run_sweep
from brainae.sweeps.space import Space, load_space
from brainae.sweeps.study import SweepOptions

__all__ = ["Space", "SweepOptions", "load_space", "run_sweep"]
