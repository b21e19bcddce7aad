"""Training: loss goes down, run folders describe themselves, resume continues where it stopped."""
import csv

import numpy as np
import pytest
import torch
import yaml

from brainae.config import build_config
from brainae.errors import BrainaeError
from brainae.models import build_model
from brainae.training.run import load_run
from brainae.training.train import train


def tiny_config(model="ae", epochs=2, **overrides):
    # the quick preset with a constant learning rate, so that runs can be resumed for more epochs
    sets = ["model.channels=[8,16,32]", "model.latent_dim=16", "data.image_size=32", "train.batch_size=16",
            "train.schedule=none"]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    cfg = build_config(model, preset="quick", data="phantom:120", epochs=epochs, overrides=sets)
    cfg.train.progress = False
    cfg.train.accelerator = "cpu"
    return cfg


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_loss_decreases_over_a_few_steps(name):
    torch.manual_seed(0)
    model = build_model(tiny_config(name).model, 32)
    x = torch.rand(8, 1, 32, 32) * 0.5
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model.loss(model(x), x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    if name == "vae":
        # BCE cannot go below the entropy of the targets: compare the part above that floor
        floor = float(torch.nn.functional.binary_cross_entropy(x, x, reduction="sum")) / len(x)
        losses = [v - floor for v in losses]
    assert losses[-1] < 0.7 * losses[0]


def test_run_folder_describes_itself(tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config("vae"), out)
    for name in ["config.yaml", "env.json", "data.json", "history.csv", "metrics.json",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt"]:
        assert (out / name).is_file(), name
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["name"] == "vae" and saved["model"]["channels"] == [8, 16, 32]
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("train_loss", "val_loss", "val_psnr"))
    assert result["epochs"] == 2 and result["best_epoch"] in (1, 2)
    assert result["best_val_loss"] == pytest.approx(min(float(r["val_loss"]) for r in rows))
    ckpt = torch.load(out / "checkpoints/best.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["model"]["name"] == "vae"
    # best.ckpt is for using the network, last.ckpt for resuming: only last carries the optimiser state
    assert "optimizer_states" not in ckpt and torch.load(out / "checkpoints/last.ckpt", weights_only=True)["optimizer_states"]
    assert not list(out.rglob("*.tmp"))


def test_resume_continues_history_and_weights(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(epochs=1), out)
    first = torch.load(out / "checkpoints/last.ckpt", weights_only=True)
    assert first["epoch"] == 0
    train(tiny_config(epochs=3), out, resume=True)
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    last = torch.load(out / "checkpoints/last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] > first["global_step"]
    model, cfg = load_run(out, which="last")
    key = "encoder.0.0.weight"
    assert torch.equal(model.state_dict()[key], {k.removeprefix("model."): v for k, v in last["state_dict"].items()}[key])


def test_a_scheduled_run_resumes_only_over_the_epochs_its_schedule_was_laid_out_for(tmp_path):
    out = tmp_path / "run"
    onecycle = {"train.schedule": "onecycle"}
    train(tiny_config(epochs=1, **onecycle), out)
    with pytest.raises(BrainaeError, match="over 1 epochs; resume it with --epochs 1"):
        train(tiny_config(epochs=3, **onecycle), out, resume=True)
    assert len(list(csv.DictReader(open(out / "history.csv")))) == 1  # refused before anything changed


def test_existing_run_is_not_overwritten_by_accident(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(BrainaeError, match="already holds files"):
        train(tiny_config(), out)
    assert (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(BrainaeError, match="nothing to resume"):
        train(tiny_config(), tmp_path / "empty", resume=True)


def test_same_seed_same_result(tmp_path):
    a = train(tiny_config(epochs=1), tmp_path / "a")
    b = train(tiny_config(epochs=1), tmp_path / "b")
    assert a["best_val_loss"] == pytest.approx(b["best_val_loss"], rel=1e-5)


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    result = train(tiny_config(epochs=1, **{"train.precision": "bf16-mixed"}), tmp_path / "bf16")
    assert np.isfinite(result["best_val_loss"])
    env = (tmp_path / "bf16" / "env.json").read_text()
    assert "bf16" in env


def test_ddp_on_two_cpu_processes(tmp_path):
    """--devices 2 re-launches the command per rank; only rank 0 writes the run folder."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "brainae", "train", "--data", "phantom:120", "--accelerator", "cpu", "--devices", "2",
           "--epochs", "1", "--image-size", "32", "--set", "model.channels=[8,16,32]", "--set", "model.latent_dim=16",
           "--no-progress", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("trained ae") == 1
    env = (out / "env.json").read_text()
    assert '"devices": 2' in env
    assert len(list(csv.DictReader(open(out / "history.csv")))) == 1


def test_ctrl_c_keeps_finished_epochs_and_resumes(tmp_path):
    """An interrupt mid-run leaves last.ckpt of the finished epoch; --resume continues from it."""
    import lightning as L

    class InterruptAfterFirstEpoch(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(epochs=3), out, callbacks=[InterruptAfterFirstEpoch()])
    assert torch.load(out / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 0
    assert not list(out.rglob("*.tmp"))
    train(tiny_config(epochs=3), out, resume=True)
    assert [int(r["epoch"]) for r in csv.DictReader(open(out / "history.csv"))] == [1, 2, 3]
