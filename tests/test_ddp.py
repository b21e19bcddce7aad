"""DDP on two CPU processes (gloo) trains the same network as one process with the same effective
batch (slow: two real ``brainae train`` runs, one of them re-executed by Lightning per rank).

The comparison is made exact by construction: the whole training split (84 phantom images) is one
batch, 42 per process under DDP, so each epoch is one optimizer step. DDP averages the two
processes' gradients of the per-pixel mean loss over equal halves, which is the gradient of the
mean over all 84: the weights must match up to float rounding. BatchNorm is switched off
(``model.norm=none``) because under DDP each process normalises its half with its own batch
statistics (there is no SyncBatchNorm here), which would make the two runs differ by design.
"""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow

TRAIN_IMAGES = 84  # phantom:120 at the default split fractions; val: 18, so 9 per process under DDP
TOLERANCE = 1e-5


def _train(out, devices: int) -> None:
    batch = TRAIN_IMAGES // devices
    cmd = [sys.executable, "-m", "brainae", "train", "--data", "phantom:120", "--accelerator", "cpu",
           "--devices", str(devices), "--epochs", "5", "--lr", "0.01", "--image-size", "32", "--batch-size", str(batch),
           "--precision", "32",  # bf16 rounds a batch of 42 differently from one of 84: equal only in float32
           "--set", "model.channels=[8,16,32]", "--set", "model.latent_dim=16", "--set", "model.norm=none",
           "--no-progress", "--out", str(out)]
    # one thread per process: two DDP processes on a 2-core machine must not fight over the cores
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def _history(out) -> list[dict]:
    with open(out / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _weights(out) -> dict:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def test_ddp_on_two_processes_matches_one_process_with_the_same_batch(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _train(single, 1)
    _train(ddp, 2)
    assert json.loads((single / "env.json").read_text())["devices"] == 1
    assert json.loads((ddp / "env.json").read_text())["devices"] == 2
    assert json.loads((ddp / "metrics.json").read_text())["n_train"] == TRAIN_IMAGES

    one, two = _history(single), _history(ddp)
    assert [r["epoch"] for r in one] == [r["epoch"] for r in two] == [1, 2, 3, 4, 5]
    for key in ("train_loss", "val_loss"):  # both logged as the mean over all processes
        assert [r[key] for r in two] == pytest.approx([r[key] for r in one], rel=1e-5), key
    # the tolerance is far below what training changes: the runs are equal, not merely both trained
    assert abs(one[0]["val_loss"] - one[-1]["val_loss"]) > 0.2 * one[0]["val_loss"]

    w1, w2 = _weights(single), _weights(ddp)
    assert w1.keys() == w2.keys()
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert worst < TOLERANCE, f"weights differ by up to {worst:.2e}"
