"""One trial: sample a configuration, train it with pruning, and record what happened.

The objective is the lowest validation loss the trial reaches (never the test split), per pixel so
trials compare: the AE's loss is the per-pixel MSE; variational models train with
``model.vae_reduction=mean`` (BCE + KL divided by the pixels). Adam is scale-invariant, so the
learning rate found this way carries over to the study's summed loss.

Every trial records ``epochs_run``, ``seconds``, ``max_epochs``, ``run_dir`` and, unless it
completed normally, a one-line ``reason`` as user attributes; sweep.json is built from them.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Optional

import lightning as L
import optuna
from optuna.trial import FrozenTrial, TrialState

from brainae.config import Config
from brainae.data.types import ImageSet
from brainae.sweeps.results import drop_weights
from brainae.sweeps.space import apply_params
from brainae.sweeps.study import SweepOptions, budget
from brainae.training.callbacks import read_history
from brainae.training.train import train


class TrialDiverged(Exception):
    """The loss became NaN or infinite: the trial is failed with this reason and the study goes on."""


class TrialPruning(L.Callback):
    """Report the epoch's validation loss to Optuna; stop training when the pruner says so.

    optuna_integration's PyTorchLightningPruningCallback imports under ``lightning`` 2.6, but it
    raises TrialPruned inside ``on_validation_end``: before ``on_train_epoch_end``, so the pruned
    epoch never reaches history.csv, and out of ``trainer.fit``, so train() writes no metrics.json.
    This one stops the trainer after the epoch is recorded and lets the objective raise.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.pruned_at: Optional[int] = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val_loss")
        if value is None or not math.isfinite(float(value)):
            return  # a diverged epoch is handled as a failure, not reported
        epoch = trainer.current_epoch + 1
        self.trial.report(float(value), step=epoch)
        # after the last epoch there is nothing left to save: the trial completes
        if epoch < trainer.max_epochs and self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True


class Objective:
    """Called by ``study.optimize`` once per trial; trial folders live in ``DIR/trials/NNNN``."""

    def __init__(self, cfg: Config, opts: SweepOptions, data: ImageSet) -> None:
        self.cfg, self.opts, self.data = cfg, opts, data
        self.max_epochs = budget(cfg, opts.space)

    def __call__(self, trial: optuna.Trial) -> float:
        start = time.perf_counter()
        trial_dir = self.opts.out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("max_epochs", self.max_epochs)
        trial.set_user_attr("run_dir", str(trial_dir))
        params = {p.key: p.suggest(trial) for p in self.opts.space.params}
        twin = find_twin(trial)
        try:
            if twin is not None:
                value = self._reuse(trial, twin, start)
            else:
                value = self._train(trial, params, trial_dir, start)
        except optuna.TrialPruned:
            self._log(trial, params, "pruned", None)
            raise
        except Exception:
            self._log(trial, params, "fail", None)
            raise
        self._log(trial, params, "complete", value)
        return value

    def _log(self, trial: optuna.Trial, params: dict, state: str, value: Optional[float]) -> None:
        if self.opts.wandb:
            from brainae.sweeps.wandb_runs import log_trial

            log_trial(trial, params, state, value, self.opts)

    def _train(self, trial: optuna.Trial, params: dict, trial_dir: Path, start: float) -> float:
        pruning = TrialPruning(trial)
        try:
            cfg = copy.deepcopy(self.cfg)
            apply_params(cfg, params)
            cfg.train.epochs = self.max_epochs
            cfg.train.progress = False
            # per pixel, comparable across trials; read by variational models only (the others ignore it)
            cfg.model.vae_reduction = "mean"
            cfg.model.prior_components = 0  # trials are scored, never sampled from
            # no slim weights per trial: most trials' checkpoints are dropped, and DIR/best gets its own
            result = train(cfg, trial_dir, overwrite=True, data=self.data, callbacks=[pruning], slim_weights=False)
            history = read_history(trial_dir / "history.csv")
            bad = [int(r["epoch"]) for r in history
                   if not (math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]))]
            if result.get("diverged") or result.get("best_val_loss") is None or bad:
                raise TrialDiverged(f"diverged: non-finite loss at epoch {bad[0] if bad else len(history)}")
        except KeyboardInterrupt:
            record(trial, trial_dir, start, "interrupted (Ctrl-C)")
            raise
        except Exception as e:
            reason = (str(e) if isinstance(e, TrialDiverged) else f"{type(e).__name__}: {e}").strip()
            record(trial, trial_dir, start, reason.splitlines()[0][:300] if reason else type(e).__name__)
            drop_weights(trial_dir)
            raise
        record(trial, trial_dir, start, None)
        trial.set_user_attr("best_epoch", result["best_epoch"])
        if pruning.pruned_at is not None:
            trial.set_user_attr("reason", f"pruned after epoch {pruning.pruned_at}")
            drop_weights(trial_dir)
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
        value = float(result["best_val_loss"])
        drop_checkpoints_unless_best(trial, trial_dir, value)
        return value

    @staticmethod
    def _reuse(trial: optuna.Trial, twin: FrozenTrial, start: float) -> float:
        # Training is seeded, so the same parameters give the same curve: reuse the earlier result
        # instead of spending its epochs again (the trial still counts towards --trials).
        trial.set_user_attr("epochs_run", 0)
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        trial.set_user_attr("duplicate_of", twin.number)
        trial.set_user_attr("run_dir", twin.user_attrs.get("run_dir"))
        trial.set_user_attr("reason", f"same parameters as trial {twin.number}: its result reused")
        if twin.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"same parameters as pruned trial {twin.number}")
        trial.set_user_attr("best_epoch", twin.user_attrs.get("best_epoch"))
        return float(twin.value)


def find_twin(trial: optuna.Trial) -> Optional[FrozenTrial]:
    """An earlier complete or pruned trial with the same parameters (categorical spaces repeat them).

    Failed trials are never twins: a failure may be the machine's (a dead worker, out of memory).
    """
    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.number != trial.number and t.params == trial.params:
            return t
    return None


def record(trial: optuna.Trial, trial_dir: Path, start: float, reason: Optional[str]) -> None:
    trial.set_user_attr("epochs_run", len(read_history(trial_dir / "history.csv")))
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
    if reason:
        trial.set_user_attr("reason", reason)


def drop_checkpoints_unless_best(trial: optuna.Trial, trial_dir: Path, value: float) -> None:
    # Checkpoints of the study's AE at latent 2048 take ~270 MB a trial; a trial deletes its own
    # only when a finished trial is already better, so the eventual best always keeps its own.
    try:
        best = trial.study.best_value
    except ValueError:
        return
    if best <= value:
        drop_weights(trial_dir)
