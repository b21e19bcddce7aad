"""``train(cfg, out_dir)``: one run, read top to bottom. Importable; the CLI, study and sweeps call it.

A run folder describes itself:
    config.yaml      the resolved config (also inside every checkpoint)
    env.json         package versions, device, threads
    data.json        the data it saw: counts per split and class, skipped files
    history.csv      one row per epoch: train and validation loss, validation PSNR, seconds
    checkpoints/     last.ckpt (to resume) and best.ckpt (lowest validation loss; weights, no optimiser state)
    weights/         best.safetensors: the best network's weights alone, what load_model and export read
    metrics.json     best epoch, best validation loss, time per epoch
    prior.pt         VAE only: a Gaussian mixture fitted to the training codes, to sample from
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import signal
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Iterable, Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, TensorDataset

from brainae import __version__, progress
from brainae.config import Config, save_config
from brainae.data.load import load_data
from brainae.data.types import ImageSet, with_channels
from brainae.errors import BrainaeError
from brainae.io import atomic_path, atomic_write_text, write_json
from brainae.training.callbacks import (CHECKPOINT_SPACING_S, HistoryCSV, SpacedCheckpoint, StderrProgressBar,
                                        check_logger, finish_logger, make_logger, read_history)
from brainae.training.checks import check_devices, check_resumable, check_schedule_length, is_unfinished
from brainae.training.graphs import STEPS_PER_CHUNK, fast_path
from brainae.training.loader import ResidentLoader
from brainae.training.memory import keep_freed_memory
from brainae.training.module import AutoencoderModule
from brainae.training.precision import emulated_precision_warning, resolve_precision, uses_cuda
from brainae.training.run import fit_code_prior, load_run, write_best_weights, write_code_prior

PACKAGES = ["brainae", "torch", "lightning", "torchmetrics", "numpy", "pillow", "scikit-image", "datasets", "optuna"]


def quiet_lightning() -> None:
    """Lightning's banner lines (GPU available, TPU available, ...) drown the progress bar; --verbose keeps them."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.INFO if progress.verbose() else logging.WARNING)
    if progress.verbose():
        return  # --verbose: Lightning's warnings as well
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")  # a diverged step, on purpose


def environment(trainer: Optional[L.Trainer] = None) -> dict:
    versions = {"brainae": __version__}
    for p in PACKAGES[1:]:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "packages": versions,
    }
    if trainer is not None:
        env["accelerator"] = type(trainer.accelerator).__name__.replace("Accelerator", "").lower()
        env["devices"] = trainer.num_devices
        env["precision"] = str(trainer.precision)
    return env


def data_summary(ds: ImageSet) -> dict:
    """Counts per split and class, for run folders and reports."""
    counts = {
        s: {c: int(((ds.splits == s) & (ds.labels == i)).sum()) for i, c in enumerate(ds.classes)}
        for s in ("train", "val", "test")
    }
    return {
        "description": ds.description,
        "classes": ds.classes,
        "n": len(ds),
        "counts": counts,
        "image_shape": list(ds.images.shape[1:]),
        "channels": ds.channels,
        "has_masks": ds.masks is not None,
        "skipped": len(ds.skipped),
        "grouping": ds.grouping,
    }


def loaders(ds: ImageSet, batch_size: int, num_workers: int, seed: int,
            device: Optional[torch.device] = None, chunk: int = 1) -> tuple[Iterable, Iterable]:
    """Training (shuffled) and validation batches of uint8 images.

    device: the one device training runs on: batches are gathered from ``ds.images`` (see
    ``ResidentLoader``). None (DDP, or --num-workers): DataLoaders, into which Lightning puts a
    sampler per process.
    chunk: training batches hold this many batches (the GPU fast path, ``AutoencoderModule.use_step_chunks``),
    in the same order.
    """
    train_rows, val_rows = np.flatnonzero(ds.splits == "train"), np.flatnonzero(ds.splits == "val")
    # BatchNorm cannot normalise a batch of one image: drop a last batch of size 1 (in chunks the module does).
    drop_last = chunk == 1 and len(train_rows) % batch_size == 1
    # a GPU evaluates 256 images as fast as 64; the loss is a per-image mean either way
    val_batch = max(batch_size, 256 if device is not None and device.type == "cuda" else 64)
    if device is not None:
        return (ResidentLoader(ds.images, ds.labels, train_rows, batch_size * chunk, shuffle=True,
                               drop_last=drop_last, seed=seed, device=device),
                ResidentLoader(ds.images, ds.labels, val_rows, val_batch, device=device))

    def tensors(rows: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(with_channels(ds.images[rows])), torch.from_numpy(ds.labels[rows]))

    g = torch.Generator().manual_seed(seed)
    kw = dict(num_workers=num_workers, persistent_workers=num_workers > 0)
    return (
        DataLoader(tensors(train_rows), batch_size=batch_size, shuffle=True, drop_last=drop_last, generator=g, **kw),
        DataLoader(tensors(val_rows), batch_size=val_batch, shuffle=False, **kw),
    )


def match_channels(cfg: Config, ds: ImageSet) -> None:
    """The network takes as many channels as the data has modalities (``--modality t1,flair``: 2)."""
    if cfg.model.in_channels == 1 and ds.channels > 1:
        cfg.model.in_channels = ds.channels
    elif cfg.model.in_channels != ds.channels:
        raise BrainaeError(f"config key 'model.in_channels' is {cfg.model.in_channels} but the data has {ds.channels} "
                           f"channel(s); drop the setting (it follows the data) or change data.modality")


def keep_normal_only(ds: ImageSet, name: str) -> ImageSet:
    """Drop every train and validation image not of class ``name``; the test split is kept whole.

    Anomaly detection learns what healthy looks like and flags what it cannot reconstruct, so it is
    trained (and its best checkpoint chosen) on healthy images only, and tested on all classes.
    """
    if not name:
        return ds
    if name not in ds.classes:
        raise BrainaeError(f"--normal-only '{name}' is not a class of this data (classes: {', '.join(ds.classes)})")
    return ds.subset((ds.splits == "test") | (ds.labels == ds.classes.index(name)))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their target and renamed into place (``io.atomic_path``).

    Lightning's own save goes through the system's temp folder; on another file system its final move is
    a copy over the old file, so a full disk leaves a truncated ``last.ckpt``. Here a full disk is one
    clear error and the previous checkpoints stay whole; files also get the umask's mode.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)  # an open file: torch then reports a full disk with its errno


def use_fast_path(cfg: Config, module: AutoencoderModule, checkpoints: list[SpacedCheckpoint], n_train: int) -> bool:
    """``train.cuda_graphs``: set up the GPU fast path (``training/graphs.py``) where it applies."""
    t = cfg.train
    device = torch.device("cuda" if uses_cuda(t.accelerator) else "cpu")
    if not fast_path(t.cuda_graphs, device, t.devices, t.num_workers, t.precision, t.compile, t.ema, t.augment):
        return False
    module.use_step_chunks(t.batch_size, cuda_graphs=device.type == "cuda")
    # the schedules count optimiser steps: as many as the ordinary loader's batches (see loaders)
    module.steps_per_epoch = -(-n_train // t.batch_size) - (n_train % t.batch_size == 1)
    for checkpoint in checkpoints:
        # a GPU epoch of a small network is shorter than a checkpoint write: write at most every
        # CHECKPOINT_SPACING_S (and when training ends or stops), keeping a due one in memory meanwhile
        checkpoint.min_interval = CHECKPOINT_SPACING_S
    return True


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    data: Optional[ImageSet] = None,
    callbacks: Optional[list] = None,
    slim_weights: bool = True,
) -> dict:
    """Train ``cfg.model`` on ``cfg.data`` and write a self-describing run folder.

    data: an already loaded ImageSet (the study loads once for both models).
    callbacks: extra Lightning callbacks (sweeps add a pruning callback).
    slim_weights: write weights/best.safetensors at the end (sweep trials skip it: only the best one's
        copy gets them).
    Returns metrics.json's content plus ``run_dir``.

    Example:
        >>> cfg = build_config("ae", preset="quick", data="phantom:200", epochs=1)  # doctest: +SKIP
        >>> train(cfg, "runs/ae")["best_val_loss"]  # doctest: +SKIP
    """
    quiet_lightning()
    keep_freed_memory()
    out = Path(out_dir)
    resume, ds, module = _open_run(cfg, out, resume, overwrite, data)
    trainer, chunked = _make_trainer(cfg, out, module, ds, callbacks or [])
    one_device = trainer.num_devices == 1 and cfg.train.num_workers == 0
    train_dl, val_dl = loaders(ds, cfg.train.batch_size, cfg.train.num_workers, cfg.train.seed,
                               device=trainer.strategy.root_device if one_device else None,
                               chunk=STEPS_PER_CHUNK if chunked else 1)
    seconds = _fit(trainer, module, train_dl, val_dl, out / "checkpoints" / "last.ckpt" if resume else None)
    if not trainer.is_global_zero:
        return {"run_dir": str(out)}
    write_json(out / "env.json", environment(trainer))
    if slim_weights:
        write_best_weights(out, cfg)  # weights/best.safetensors: the network alone, what load_run reads first
    return {**_write_metrics(cfg, out, module, ds, seconds), "run_dir": str(out)}


def _open_run(cfg: Config, out: Path, resume: bool, overwrite: bool,
              data: Optional[ImageSet]) -> tuple[bool, ImageSet, AutoencoderModule]:
    """Check what can be checked, load the data, and set up the run folder: (resume, data, module).

    Nothing on disk changes until the data has loaded; a run killed before its first epoch ended
    starts again.
    """
    last = out / "checkpoints" / "last.ckpt"
    if out.exists() and not out.is_dir():
        raise BrainaeError(f"--out {out} is a file; name a folder for the run")
    check_devices(cfg)
    check_logger(cfg.train.logger)
    cfg.train.precision = resolve_precision(cfg.train.precision, cfg.train.accelerator)  # config.yaml says which
    # With DDP, Lightning re-runs this command in one process per extra GPU (LOCAL_RANK > 0);
    # those processes join the run that rank 0 has set up and leave the folder to it.
    child = int(os.environ.get("LOCAL_RANK", "0")) > 0
    slow = emulated_precision_warning(cfg.train.precision, cfg.train.accelerator)
    if slow and not child:
        print(f"brainae: warning: {slow}", file=sys.stderr)
    restart = not child and is_unfinished(out)  # killed before its first epoch ended: start it again
    if resume and not last.is_file() and not restart:
        raise BrainaeError(f"nothing to resume in {out}: no checkpoints/last.ckpt; drop --resume to start afresh")
    if restart and resume:
        print(f"{out} has no finished epoch to resume; starting it afresh")
        resume = False
    occupied = not resume and not child and out.exists() and any(out.iterdir())
    if occupied and not overwrite and not restart:
        raise BrainaeError(f"{out} already holds files; pass --resume to continue it or choose a new --out")
    # data errors surface before anything on disk changes
    ds = data if data is not None else load_data(cfg.data, progress=cfg.train.progress)
    ds = keep_normal_only(ds, cfg.train.normal_only)
    match_channels(cfg, ds)
    if occupied:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = AutoencoderModule.from_config(cfg)
    if resume:
        check_resumable(module, last)  # before config.yaml or data.json change
        check_schedule_length(cfg, out / "config.yaml")
    cfg.train.noise = module.cfg.train.noise  # a model's default noise (dae) belongs in config.yaml
    if not child:
        save_config(cfg, out / "config.yaml")
        write_json(out / "data.json", data_summary(ds))
    if ds.skipped and not child:
        atomic_write_text(out / "skipped.txt", "".join(f"{s}\t{r}\n" for s, r in ds.skipped))
        print(f"skipped {len(ds.skipped)} unreadable file(s); list in {out / 'skipped.txt'}")
    if ds.removed and not child:
        atomic_write_text(out / "removed.txt", "".join(f"{s}\t{r}\n" for s, r in ds.removed))
        print(f"left out {len(ds.removed)} train/val image(s) that copy a held-out image or share its {ds.group_unit or 'group'}; list in {out / 'removed.txt'}")
    return resume, ds, module


def _make_trainer(cfg: Config, out: Path, module: AutoencoderModule, ds: ImageSet,
                  callbacks: list) -> tuple[L.Trainer, bool]:
    """The Lightning Trainer with the run's checkpoints, history, progress and options; (trainer, fast path on)."""
    # best.ckpt is for using the network, last.ckpt for resuming: best keeps no optimiser state (a third of
    # the size, and a third of the writing whenever validation improves). Not with EMA: Lightning calls
    # the callback that puts the averaged weights into a checkpoint only for full ones.
    best = SpacedCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val_loss", mode="min",
                            save_top_k=1, enable_version_counter=False, save_weights_only=not cfg.train.ema)
    # last.ckpt after every epoch: Lightning's save_last writes it only when best.ckpt improves, so a
    # crash would lose every epoch since the last improvement. Both go through AtomicCheckpointIO.
    latest = SpacedCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    extra = []
    if cfg.train.early_stopping:
        extra.append(EarlyStopping(monitor="val_loss", mode="min", patience=cfg.train.early_stopping))
    n_train = int((ds.splits == "train").sum())
    chunked = use_fast_path(cfg, module, [best, latest], n_train)
    steps = max(1, n_train // cfg.train.batch_size)  # Lightning batches per epoch
    if chunked:
        steps = -(-module.steps_per_epoch // STEPS_PER_CHUNK)
    # progress: a bar at a terminal, else (a log, CI) one line per epoch from HistoryCSV; --quiet: neither
    report = cfg.train.progress and not progress.quiet()
    draw_bar = report and progress.bars()
    if draw_bar:
        # a refresh reads the loss from the device; about 25 a epoch keep the bar live without a host
        # wait at every step (on a GPU, a step of the study's AE is shorter than that wait)
        extra.append(StderrProgressBar(refresh_rate=max(1, steps // 25)))
    if cfg.train.ema:
        # validation and the saved checkpoints use the averaged weights, so best.ckpt is the EMA model
        extra.append(EMAWeightAveraging(decay=cfg.train.ema))
    trainer = L.Trainer(
        max_epochs=cfg.train.epochs,
        accelerator=cfg.train.accelerator,
        devices=cfg.train.devices,
        strategy="ddp" if cfg.train.devices > 1 else "auto",
        precision=cfg.train.precision,
        # "warn": an op without a deterministic kernel warns instead of stopping the run
        deterministic="warn" if cfg.train.deterministic else False,
        callbacks=[best, latest, HistoryCSV(out / "history.csv", echo=report and not draw_bar), *extra,
                   *callbacks],
        logger=make_logger(cfg.train.logger, out),  # history.csv is written whatever the logger
        log_every_n_steps=min(50, steps),  # a short epoch still logs its steps
        enable_progress_bar=draw_bar,
        enable_model_summary=progress.verbose(),
        num_sanity_val_steps=0,
        default_root_dir=out,
        plugins=[AtomicCheckpointIO()],
    )
    if cfg.train.compile:
        module.compile_network(trainer.strategy.root_device)
    return trainer, chunked


def _fit(trainer: L.Trainer, module: AutoencoderModule, train_dl, val_dl, ckpt: Optional[Path]) -> float:
    """trainer.fit, resuming from ``ckpt``; seconds it took. Ctrl-C becomes KeyboardInterrupt."""
    start = time.perf_counter()
    try:
        # weights_only: a shared run folder's checkpoint must never run code when it is resumed
        trainer.fit(module, train_dl, val_dl, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    except SystemExit:
        # Lightning answers Ctrl-C with sys.exit(1) after a clean shutdown; callers (CLI, sweeps)
        # need to know it was an interruption, and checkpoints of finished epochs are intact.
        if trainer.interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning left Ctrl-C ignored
            raise KeyboardInterrupt from None
        raise
    finally:
        finish_logger(trainer.logger)
    return time.perf_counter() - start


def _write_metrics(cfg: Config, out: Path, module: AutoencoderModule, ds: ImageSet, seconds: float) -> dict:
    """metrics.json from history.csv (best epoch, divergence, timing) and, for a VAE, its code prior."""
    history = read_history(out / "history.csv")
    val = np.array([r["val_loss"] for r in history], dtype=float)
    finite = np.isfinite(val)
    best_i = int(np.nanargmin(np.where(finite, val, np.inf))) if finite.any() else -1
    metrics = {
        "model": cfg.model.name,
        "epochs": len(history),
        "best_epoch": int(history[best_i]["epoch"]) if best_i >= 0 else None,
        "best_val_loss": float(val[best_i]) if best_i >= 0 else None,
        "best_val_psnr": float(history[best_i]["val_psnr"]) if best_i >= 0 else None,
        "diverged": module.diverged_epoch is not None or (bool(history) and not bool(np.isfinite(val[-1]))),
        "diverged_at_epoch": module.diverged_epoch,
        "seconds": round(seconds, 2),
        "seconds_per_epoch": round(float(np.mean([r["seconds"] for r in history])), 3) if history else None,
        "n_train": int((ds.splits == "train").sum()),
        "n_val": int((ds.splits == "val").sum()),
        "parameters": sum(p.numel() for p in module.model.parameters()),
    }
    if cfg.model.prior_components and hasattr(module.model, "code_prior") and best_i >= 0:
        model, _ = load_run(out)  # the best checkpoint: the one every later command loads
        prior = fit_code_prior(model, ds.split("train").images, cfg.model.prior_components, seed=cfg.train.seed)
        write_code_prior(out, prior)
        metrics["prior"] = {"components": prior.components, "fitted_on": "train", "codes": prior.n_codes}
    write_json(out / "metrics.json", metrics)
    return metrics
