"""``run_sweep``: run (or resume) a study until it holds ``--trials`` trials, in this process or in K
worker processes, then write DIR/sweep.json, DIR/best/ and the figures.

The pieces: ``study`` (options, storage, sampler, pruner; create or resume), ``objective`` (one
trial: sample, train with pruning, record), ``results`` and ``figures`` (what is written after).
Each worker loads the data once and calls ``train(cfg, trial_dir, data=..., callbacks=[pruning])``
for every trial; trial folders live in ``DIR/trials/NNNN`` and only the best one keeps checkpoints.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from typing import Optional

import optuna
from optuna.trial import TrialState

from brainae.config import Config
from brainae.data.types import ImageSet
from brainae.errors import BrainaeError
from brainae.io import write_json
from brainae.sweeps.objective import Objective
from brainae.sweeps.owners import fail_dead_owners
from brainae.sweeps.study import (
    SweepOptions, budget, check_options, check_out, claim_out, counted, fail_stale, load_study, make_pruner,
    make_sampler, open_storage, prepare_study, redact, storage_url,
)


def _print_trial(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
    value = f"{t.value:.5g}" if t.value is not None else "-"
    extra = t.user_attrs.get("reason", "")
    print(f"trial {t.number}: {t.state.name.lower()} {value} ({t.user_attrs.get('epochs_run', '?')} epochs, "
          f"{t.user_attrs.get('seconds', '?')} s){' ' + extra if extra and t.state != TrialState.COMPLETE else ''}",
          flush=True)


def _optimize(cfg: Config, opts: SweepOptions, data: Optional[ImageSet], n_trials: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our one line per trial replaces its tracebacks
    if data is None:
        from brainae.data.load import load_data

        data = load_data(cfg.data, progress=False)
    # no per-worker seed: the sampler draws every trial with its own seed (see TrialSampler)
    study = load_study(opts, sampler=make_sampler(opts.sampler, opts.space, opts.seed, opts.trials),
                       pruner=make_pruner(opts.pruner, budget(cfg, opts.space)))
    callbacks = [_retry_dead_workers] + ([] if opts.quiet else [_print_trial])
    study.optimize(Objective(cfg, opts, data), n_trials=n_trials, timeout=opts.timeout, catch=(Exception,),
                   callbacks=callbacks, gc_after_trial=True)


def _retry_dead_workers(study: optuna.Study, _trial) -> None:
    """After each trial: a worker on this machine that died mid-trial has its trial retried at once."""
    try:
        fail_dead_owners(study)
    except Exception:
        pass  # best effort between trials: a storage hiccup must not stop this worker; the heartbeat remains


def _worker(cfg: Config, opts: SweepOptions, n_trials: int, threads: int, gpu: Optional[str] = None) -> None:
    import torch

    if gpu is not None:  # before this process first touches CUDA: it sees one GPU, its share
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    torch.set_num_threads(threads)  # K workers share the cores instead of each taking all of them
    try:
        _optimize(cfg, opts, None, n_trials)
    except KeyboardInterrupt:
        sys.exit(130)


def visible_gpus(cfg: Config) -> list[str]:
    """The CUDA devices trials may use (their ids as CUDA_VISIBLE_DEVICES names them); [] on a CPU run."""
    import torch

    from brainae.training.precision import uses_cuda

    if not uses_cuda(cfg.train.accelerator) or not torch.cuda.is_available():
        return []
    named = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return named or [str(i) for i in range(torch.cuda.device_count())]


def worker_count(cfg: Config, opts: SweepOptions) -> int:
    """``--trials-per-device K``: K workers per GPU (a batch-16 trial of the study's AE leaves most of a
    large GPU idle), or K on a CPU-only machine; otherwise ``--workers``."""
    if not opts.trials_per_device:
        return opts.workers
    return opts.trials_per_device * max(1, len(visible_gpus(cfg)))


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
    check_options(opts)
    if opts.wandb:
        from brainae.sweeps.wandb_runs import check_wandb

        check_wandb()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    make_sampler(opts.sampler, opts.space, opts.seed, opts.trials)  # bad choices fail before any work
    make_pruner(opts.pruner, budget(cfg, opts.space))
    check_out(opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    url = storage_url(opts.storage, opts.out)
    study = prepare_study(cfg, opts, open_storage(url, opts.heartbeat))
    claim_out(opts)
    fail_stale(study)
    lost = fail_dead_owners(study)  # a crashed run's trials: retried now, not after the heartbeat's grace period
    done = counted(study.get_trials(deepcopy=False))
    todo = max(0, opts.trials - done)
    workers = worker_count(cfg, opts)
    if not opts.quiet:
        print(f"== sweep {opts.name}: {done} trials in {redact(url)}, {todo} to run "
              f"({opts.sampler} sampler, {opts.pruner} pruner, up to {budget(cfg, opts.space)} epochs each, "
              f"{workers} worker{'s' if workers > 1 else ''})", flush=True)
        if lost:
            many = len(lost) > 1
            print(f"trial{'s' if many else ''} {', '.join(map(str, lost))} {'were' if many else 'was'} running in a worker "
                  f"that died; failed and queued again", flush=True)
    try:
        if todo and workers == 1:
            _optimize(cfg, opts, data, todo)
        elif todo:
            _run_workers(cfg, opts, min(workers, todo), todo)
    except KeyboardInterrupt:
        # Optuna has already marked the running trial failed ("interrupted"); the storage is consistent
        from brainae.sweeps.results import summarise

        write_json(opts.out / "sweep.json", summarise(load_study(opts), opts))
        raise
    from brainae.sweeps.figures import write_figures
    from brainae.sweeps.results import copy_best, summarise

    summary = summarise(load_study(opts), opts)
    summary["best_dir"] = copy_best(summary, opts.out)
    summary["figures"] = write_figures(summary, opts.out)
    write_json(opts.out / "sweep.json", summary)
    return summary


def _run_workers(cfg: Config, opts: SweepOptions, k: int, todo: int) -> None:
    threads = max(1, (os.cpu_count() or 1) // k)
    gpus = visible_gpus(cfg)
    ctx = mp.get_context("spawn")  # fork would copy Lightning/torch state and thread pools
    procs = [ctx.Process(target=_worker, args=(cfg, opts, n, threads, gpus[i % len(gpus)] if gpus else None),
                         daemon=False) for i, n in enumerate(shares(todo, k))]
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

