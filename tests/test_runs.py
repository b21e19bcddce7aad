"""Runs that a mistake or a crash cannot break: unfinished runs restart, divergence stops cleanly,
and kill -9 at random moments never costs more than the epoch in progress or leaves a corrupt checkpoint."""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from brainae.cli import main
from brainae.training.module import AutoencoderModule

TINY = ["--data", "phantom:60", "--image-size", "32", "--set", "model.channels=[8,16]", "--set", "model.latent_dim=8",
        "--preset", "quick", "--no-progress"]


def test_a_run_killed_before_its_first_epoch_restarts(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 0
    shutil.rmtree(run / "checkpoints")  # what a kill during epoch 1 leaves: config and data, no checkpoint
    shutil.rmtree(run / "weights")  # nor slim weights (written when training ends)
    (run / "metrics.json").unlink()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 0  # the same command again
    assert (run / "checkpoints" / "last.ckpt").is_file()
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "weights")
    assert main(["train", "--resume", "--epochs", "1", "--no-progress", "--out", str(run)]) == 0
    assert "no finished epoch to resume; starting it afresh" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1


def test_a_run_kept_as_slim_weights_alone_is_not_wiped_by_a_rerun(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 0
    shutil.rmtree(run / "checkpoints")  # kept small on purpose: config, history and weights/best.safetensors
    weights = (run / "weights" / "best.safetensors").read_bytes()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (run / "weights" / "best.safetensors").read_bytes() == weights


def test_divergence_stops_with_a_message_and_a_flag(tmp_path, capsys, monkeypatch):
    step = AutoencoderModule._step

    def blow_up_in_epoch_2(self, batch, stage, batch_idx=0):
        loss = step(self, batch, stage, batch_idx)
        return loss * float("nan") if stage == "train" and self.current_epoch == 1 else loss

    monkeypatch.setattr(AutoencoderModule, "_step", blow_up_in_epoch_2)
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "5", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(err) == 1 and "training diverged at epoch 2" in err[0]
    assert f"best.ckpt holds epoch {metrics['best_epoch']}" in err[0]
    assert metrics["diverged"] is True and metrics["diverged_at_epoch"] == 2 and metrics["epochs"] == 2
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())  # the bad step was skipped


def _finished_epochs(run) -> int:
    path = run / "history.csv"
    return len(list(csv.DictReader(path.open()))) if path.is_file() else 0


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_at_most_the_epoch_in_progress(tmp_path):
    """Ten kills, each at a random moment after the run has made progress (so every kill lands somewhere
    inside an epoch, a validation or a checkpoint write), each followed by --resume. With Lightning's own
    save_last, last.ckpt moved only when the validation loss improved, and such kills lost several epochs."""
    run = tmp_path / "run"
    rng = random.Random(0)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for kill in range(10):
        resume = ["--resume"] if (run / "checkpoints" / "last.ckpt").is_file() else []
        done = _finished_epochs(run)
        proc = subprocess.Popen([sys.executable, "-m", "brainae.cli", "train", *resume, *TINY, "--epochs", "100000",
                                 "--out", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 120
        while _finished_epochs(run) <= done and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))  # a random moment of the next epochs
        os.killpg(proc.pid, signal.SIGKILL)  # the run never ends on its own (100,000 epochs)
        proc.wait()
        last = run / "checkpoints" / "last.ckpt"
        assert last.is_file(), kill
        ckpt = torch.load(last, weights_only=True)  # never half-written
        assert _finished_epochs(run) - (ckpt["epoch"] + 1) <= 1, kill  # "epoch" is 0-based
        assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert _finished_epochs(run) >= 10


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_ones(tmp_path, capsys, monkeypatch):
    import errno

    from brainae.training import train as train_module

    real_save, calls = torch.save, []

    def save_until_the_disk_fills(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # epoch 1 writes best and last; epoch 2 finds the disk full
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(train_module.torch, "save", save_until_the_disk_fills)
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "3", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the disk is full" in err[0] and "best.ckpt" in err[0]
    monkeypatch.setattr(train_module.torch, "save", real_save)
    for name in ("best", "last"):
        assert torch.load(run / "checkpoints" / f"{name}.ckpt", weights_only=True)["epoch"] == 0
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
