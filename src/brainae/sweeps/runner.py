"""``run_sweep``: an Optuna study over a Space, offline, with pruning, resume and many workers.

Objective: the lowest validation loss a trial reaches (never the test split), per pixel so trials
compare: the AE's loss is the per-pixel MSE; VAE trials train with ``model.vae_reduction=mean``
(BCE + KL divided by the pixels). Adam is scale-invariant, so the learning rate found this way
carries over to the study's summed loss.

Storage: ``sqlite:///DIR/sweep.db`` by default, so running the same command again resumes the
study and adds trials up to ``--trials`` in total. Any SQLAlchemy URL (PostgreSQL, MySQL) or a
journal file (``journal:PATH``, or a path ending in .log/.journal) lets workers on many machines
share one study. RDB storages keep a heartbeat: a dead worker's running trial is marked failed
and retried once by whichever worker asks for a trial next.

Each worker loads the data once and calls ``train(cfg, trial_dir, data=..., callbacks=[pruning])``
for every trial; trial folders live in ``DIR/trials/NNNN`` and only the best one keeps checkpoints.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import lightning as L
import optuna
from optuna.trial import TrialState

from brainae.config import Config, to_dict
from brainae.data.types import ImageSet
from brainae.errors import BrainaeError
from brainae.io import write_json
from brainae.sweeps.space import Space, apply_params
from brainae.training.callbacks import read_history
from brainae.training.train import train

SAMPLERS = ("tpe", "gp", "random", "grid")
PRUNERS = ("hyperband", "median", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# heartbeats, multivariate TPE and the retry callback are "experimental" in Optuna 5 and warn on every use
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class SweepOptions:
    """What ``brainae sweep`` asks for; ``trials`` is the study's total, not the number added."""

    model: str
    out: Path
    space: Space
    trials: int = 20
    timeout: Optional[float] = None
    sampler: str = "tpe"
    pruner: str = "hyperband"
    storage: Optional[str] = None
    study_name: Optional[str] = None
    workers: int = 1
    seed: Optional[int] = 0
    wandb: bool = False
    quiet: bool = False
    heartbeat: int = 60  # seconds; a trial silent for 2x this is failed and retried

    @property
    def name(self) -> str:
        return self.study_name or f"brainae-{self.model}"


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


# ---------------------------------------------------------------- storage, sampler, pruner, study


def storage_url(storage: Optional[str], out: Path) -> str:
    return storage or f"sqlite:///{(out / 'sweep.db').resolve()}"


def redact(url: str) -> str:
    """The URL without its password, for logs and sweep.json."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".journal"))


def open_storage(url: str, heartbeat: int = 60) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; unreachable or malformed URLs give one BrainaeError line."""
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    try:
        if is_journal(url):
            path = Path(url.removeprefix("journal:"))
            if not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if "://" not in url:
            raise ValueError("expected a SQLAlchemy URL such as sqlite:///sweep.db or postgresql://host/db, "
                             "or journal:FILE")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise BrainaeError(f"cannot open sweep storage {redact(url)}: {type(e).__name__}: {first}") from None


def make_sampler(name: str, space: Space, seed: Optional[int], trials: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # a third of the trials (3 to 10) explore at random before TPE models the good region
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, trials // 3)),
                                          multivariate=True, constant_liar=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(3, min(10, trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if not space.is_categorical():
            ranged = [p.key for p in space.params if p.type != "categorical"]
            raise BrainaeError(f"--sampler grid needs categorical keys only; {', '.join(ranged)} are ranges")
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    raise BrainaeError(f"unknown sampler '{name}' (choose from {', '.join(SAMPLERS)})")


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
    if name == "median":
        # From the first epoch on, stop a trial whose best loss so far is worse than the median of the
        # complete trials at the same epoch, once two have completed. Aggressive on purpose: early
        # epochs rank these autoencoders well (benchmarks/sweep_efficiency.py).
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise BrainaeError(f"unknown pruner '{name}' (choose from {', '.join(PRUNERS)})")


def budget(cfg: Config, space: Space) -> int:
    return space.max_epochs or cfg.train.epochs


def config_fingerprint(cfg: Config) -> str:
    """Everything that changes the objective except the searched keys and machine settings."""
    d = to_dict(cfg)
    for k in ("progress", "accelerator", "devices", "num_workers"):
        d["train"].pop(k, None)
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def prepare_study(cfg: Config, opts: SweepOptions, storage) -> optuna.Study:
    """Create the study or load it to resume; refuse a name already used by another model or space."""
    attrs = {"brainae_model": opts.model, "brainae_space": opts.space.fingerprint(),
             "brainae_config": config_fingerprint(cfg)}
    study = optuna.create_study(study_name=opts.name, storage=storage, direction="minimize", load_if_exists=True)
    old = study.user_attrs
    if "brainae_model" not in old:
        if study.trials:
            raise BrainaeError(f"study '{opts.name}' exists and was not made by brainae sweep; choose another --study")
        for k, v in attrs.items():
            study.set_user_attr(k, v)
        study.set_user_attr("brainae_space_table", opts.space.table())
        return study
    what = [label for key, label in [("brainae_model", "model"), ("brainae_space", "search space"),
                                     ("brainae_config", "data/training settings")] if old.get(key) != attrs[key]]
    if what:
        raise BrainaeError(f"study '{opts.name}' was made with another {' and '.join(what)} "
                           f"(model {old['brainae_model']}); choose another --study name or --out folder")
    return study


# ---------------------------------------------------------------- the objective


class Objective:
    """One trial: sample, train with pruning, record epochs/seconds/reason as user attributes."""

    def __init__(self, cfg: Config, opts: SweepOptions, data: ImageSet) -> None:
        self.cfg, self.opts, self.data = cfg, opts, data
        self.max_epochs = budget(cfg, opts.space)

    def __call__(self, trial: optuna.Trial) -> float:
        start = time.perf_counter()
        trial_dir = self.opts.out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("max_epochs", self.max_epochs)
        trial.set_user_attr("run_dir", str(trial_dir))
        pruning = TrialPruning(trial)
        params = {p.key: p.suggest(trial) for p in self.opts.space.params}
        twin = self._twin(trial)
        if twin is not None:
            return self._repeat(trial, twin, start)
        try:
            cfg = copy.deepcopy(self.cfg)
            apply_params(cfg, params)
            cfg.train.epochs = self.max_epochs
            cfg.train.progress = False
            if cfg.model.name == "vae":
                cfg.model.vae_reduction = "mean"  # per pixel, comparable across trials
            result = train(cfg, trial_dir, overwrite=True, data=self.data, callbacks=[pruning])
            history = read_history(trial_dir / "history.csv")
            bad = [int(r["epoch"]) for r in history
                   if not (math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]))]
            if result.get("diverged") or result.get("best_val_loss") is None or bad:
                raise TrialDiverged(f"diverged: non-finite loss at epoch {bad[0] if bad else len(history)}")
        except KeyboardInterrupt:
            self._record(trial, trial_dir, start, "interrupted (Ctrl-C)")
            raise
        except Exception as e:
            reason = str(e) if isinstance(e, TrialDiverged) else f"{type(e).__name__}: {e}"
            self._record(trial, trial_dir, start, reason.strip().splitlines()[0][:300] if reason.strip() else type(e).__name__)
            shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)
            raise
        self._record(trial, trial_dir, start, None)
        trial.set_user_attr("best_epoch", result["best_epoch"])
        if self.opts.wandb:
            log_wandb(trial, params, trial_dir, self.opts)
        if pruning.pruned_at is not None:
            trial.set_user_attr("reason", f"pruned after epoch {pruning.pruned_at}")
            shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
        value = float(result["best_val_loss"])
        self._drop_checkpoints_unless_best(trial, trial_dir, value)
        return value

    @staticmethod
    def _twin(trial: optuna.Trial) -> Optional[optuna.trial.FrozenTrial]:
        """An earlier complete or pruned trial with the same parameters (categorical spaces repeat them)."""
        for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if t.number != trial.number and t.params == trial.params:
                return t
        return None

    @staticmethod
    def _repeat(trial: optuna.Trial, twin: optuna.trial.FrozenTrial, start: float) -> float:
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

    @staticmethod
    def _record(trial: optuna.Trial, trial_dir: Path, start: float, reason: Optional[str]) -> None:
        trial.set_user_attr("epochs_run", len(read_history(trial_dir / "history.csv")))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        if reason:
            trial.set_user_attr("reason", reason)

    @staticmethod
    def _drop_checkpoints_unless_best(trial: optuna.Trial, trial_dir: Path, value: float) -> None:
        # Checkpoints of the study's AE at latent 2048 take ~270 MB a trial; a trial deletes its own
        # only when a finished trial is already better, so the eventual best always keeps its own.
        try:
            best = trial.study.best_value
        except ValueError:
            return
        if best <= value:
            shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)


def log_wandb(trial: optuna.Trial, params: dict, trial_dir: Path, opts: SweepOptions) -> None:
    """One offline W&B run per trial (``wandb sync DIR/wandb`` uploads them later)."""
    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")
    run = wandb.init(project=f"brainae-sweep-{opts.model}", name=f"trial-{trial.number}", config=params,
                     dir=str(opts.out), mode="offline", reinit=True)
    for row in read_history(trial_dir / "history.csv"):
        run.log({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
    run.finish()


def check_wandb() -> None:
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise BrainaeError("--wandb needs the wandb package: pip install wandb")


# ---------------------------------------------------------------- running: one process or K workers


def _print_trial(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
    value = f"{t.value:.5g}" if t.value is not None else "-"
    extra = t.user_attrs.get("reason", "")
    print(f"trial {t.number}: {t.state.name.lower()} {value} ({t.user_attrs.get('epochs_run', '?')} epochs, "
          f"{t.user_attrs.get('seconds', '?')} s){' ' + extra if extra and t.state != TrialState.COMPLETE else ''}",
          flush=True)


def _optimize(cfg: Config, opts: SweepOptions, data: Optional[ImageSet], n_trials: int, worker: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our one line per trial replaces its tracebacks
    if data is None:
        from brainae.data.load import load_data

        data = load_data(cfg.data, progress=False)
    storage = open_storage(storage_url(opts.storage, opts.out), opts.heartbeat)
    seed = None if opts.seed is None else opts.seed + 1000 * worker  # workers must not draw the same trials
    study = optuna.load_study(study_name=opts.name, storage=storage,
                              sampler=make_sampler(opts.sampler, opts.space, seed, opts.trials),
                              pruner=make_pruner(opts.pruner, budget(cfg, opts.space)))
    study.optimize(Objective(cfg, opts, data), n_trials=n_trials, timeout=opts.timeout, catch=(Exception,),
                   callbacks=[] if opts.quiet else [_print_trial], gc_after_trial=True)


def _worker(cfg: Config, opts: SweepOptions, n_trials: int, worker: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # K workers share the cores instead of each taking all of them
    try:
        _optimize(cfg, opts, None, n_trials, worker)
    except KeyboardInterrupt:
        sys.exit(130)


def shares(n: int, k: int) -> list[int]:
    """Split ``n`` trials over ``k`` workers so the total is exactly ``n``: ``shares(5, 2) == [3, 2]``."""
    return [n // k + (i < n % k) for i in range(k)]


def run_sweep(cfg: Config, opts: SweepOptions, data: Optional[ImageSet] = None) -> dict:
    """Run (or resume) the study until it holds ``opts.trials`` trials; write DIR/sweep.json,
    DIR/best/ and the figures. Returns sweep.json's content.

    Example:
        >>> cfg = build_config("ae", preset="quick", data="phantom:120")  # doctest: +SKIP
        >>> run_sweep(cfg, SweepOptions("ae", Path("sw"), load_space("seed"), trials=4))["best"]  # doctest: +SKIP
    """
    if opts.workers < 1 or opts.trials < 1:
        raise BrainaeError("--workers and --trials must be at least 1")
    if opts.wandb:
        check_wandb()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    make_sampler(opts.sampler, opts.space, opts.seed, opts.trials)  # bad choices fail before any work
    make_pruner(opts.pruner, budget(cfg, opts.space))
    opts.out.mkdir(parents=True, exist_ok=True)
    url = storage_url(opts.storage, opts.out)
    study = prepare_study(cfg, opts, open_storage(url, opts.heartbeat))
    done = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED or t.state == TrialState.RUNNING]
    todo = max(0, opts.trials - len(done))
    if not opts.quiet:
        print(f"== sweep {opts.name}: {len(done)} trials in {redact(url)}, {todo} to run "
              f"({opts.sampler} sampler, {opts.pruner} pruner, up to {budget(cfg, opts.space)} epochs each, "
              f"{opts.workers} worker{'s' if opts.workers > 1 else ''})", flush=True)
    try:
        if todo and opts.workers == 1:
            _optimize(cfg, opts, data, todo, 0)
        elif todo:
            _run_workers(cfg, opts, todo)
    except KeyboardInterrupt:
        # Optuna has already marked the running trial failed ("interrupted"); the storage is consistent
        from brainae.sweeps.results import summarise

        write_json(opts.out / "sweep.json", summarise(load(opts), opts))
        raise
    from brainae.sweeps.figures import write_figures
    from brainae.sweeps.results import copy_best, summarise

    summary = summarise(load(opts), opts)
    summary["best_dir"] = copy_best(summary, opts.out)
    summary["figures"] = write_figures(summary, opts.out)
    write_json(opts.out / "sweep.json", summary)
    return summary


def _run_workers(cfg: Config, opts: SweepOptions, todo: int) -> None:
    k = min(opts.workers, todo)
    threads = max(1, (os.cpu_count() or 1) // k)
    ctx = mp.get_context("spawn")  # fork would copy Lightning/torch state and thread pools
    procs = [ctx.Process(target=_worker, args=(cfg, opts, n, i, threads), daemon=False)
             for i, n in enumerate(shares(todo, k))]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:  # they received Ctrl-C too: give each a moment to mark its trial failed
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        raise
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        raise BrainaeError(f"{len(bad)} sweep worker(s) exited with code {bad[0]}; rerun the command to resume")


def load(opts: SweepOptions) -> optuna.Study:
    return optuna.load_study(study_name=opts.name, storage=open_storage(storage_url(opts.storage, opts.out), opts.heartbeat))
