"""Checks before a run starts or resumes: devices the machine has, a run folder with something to
resume, a checkpoint that fits the network, a schedule laid out over the same epochs. Each refuses with
a one-line error before anything is written."""
from __future__ import annotations

from pathlib import Path

import torch

from brainae.config import Config, load_config
from brainae.errors import BrainaeError, first_line
from brainae.training.module import AutoencoderModule
from brainae.training.run import read_checkpoint


def check_devices(cfg: Config) -> None:
    """Refuse a device the machine does not have before any data is loaded."""
    acc, n = cfg.train.accelerator, cfg.train.devices
    if acc in ("cuda", "gpu"):
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have < n:
            raise BrainaeError(f"--accelerator {acc} with --devices {n}, but this machine has {have} CUDA GPU(s); "
                               f"use --accelerator cpu (or auto), or fewer --devices")
    elif acc == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BrainaeError("--accelerator mps, but no Apple GPU is available here; use --accelerator cpu (or auto)")
    elif acc == "auto" and n > 1 and torch.cuda.is_available() and torch.cuda.device_count() < n:
        raise BrainaeError(f"--devices {n}, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")


def is_unfinished(out: Path) -> bool:
    """A run folder whose run never finished an epoch: a config but no checkpoint, nothing to resume."""
    return ((out / "config.yaml").is_file() and not any((out / "checkpoints").glob("*.ckpt"))
            and not (out / "weights" / "best.safetensors").is_file())


def check_resumable(module: AutoencoderModule, last: Path) -> None:
    """Refuse, before anything is written, a ``last.ckpt`` that needs pickle or does not fit this network."""
    state = read_checkpoint(last)["state_dict"]
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        detail = first_line(e, "shapes differ")
        raise BrainaeError(f"{last} does not fit the configured network ({detail[:160]}); resume without changing "
                           f"the model settings, or train into a new --out") from None


def check_schedule_length(cfg: Config, saved: Path) -> None:
    """A learning-rate schedule is laid out over the run's epochs; resuming with another count would step a
    one-cycle schedule past its end (an error deep in torch) or send a cosine one back up."""
    if not saved.is_file():
        return
    before = load_config(saved).train
    if before.schedule != "none" and before.epochs != cfg.train.epochs:
        raise BrainaeError(f"{saved.parent} was trained with --schedule {before.schedule} over {before.epochs} epochs; "
                           f"resume it with --epochs {before.epochs}, or train a new run for {cfg.train.epochs} epochs")
