"""The GPU fast path (training/graphs.py): steps in chunks, checkpoints spaced out, and when it applies.

The CUDA graph itself needs a GPU (benchmarks/gpu_check.sh compares it with the eager path there);
here the chunked loop runs eagerly on the CPU and must give the ordinary path's losses and checkpoints.
"""
import pytest
import torch

from brainae.config import build_config
from brainae.errors import BrainaeError
from brainae.training import train as train_module
from brainae.training.callbacks import read_history
from brainae.training.graphs import STEPS_PER_CHUNK, fast_path
from brainae.training.train import train


def tiny_config(schedule: str, model: str = "ae", epochs: int = 3):
    # 112 training images in batches of 3: 37 steps an epoch and one image left over (dropped: BatchNorm
    # cannot normalise one image), so chunks of 16 steps end mid-epoch and a schedule must count the
    # optimiser steps, not the chunks
    cfg = build_config(model, preset="quick", data="phantom:160", image_size=32, epochs=epochs, precision="32",
                       accelerator="cpu", overrides=["model.channels=[8,16,32]", "model.latent_dim=16",
                                                     "train.batch_size=3", f"train.schedule={schedule}"])
    cfg.train.progress = False
    return cfg


@pytest.mark.parametrize("model,schedule", [("ae", "onecycle"), ("vae", "none")])
def test_chunked_steps_give_the_ordinary_paths_losses_and_checkpoints(tmp_path, monkeypatch, model, schedule):
    ordinary = train(tiny_config(schedule, model), tmp_path / "ordinary")
    monkeypatch.setattr(train_module, "fast_path", lambda *a, **k: True)  # as on a GPU, minus the graph
    torch.manual_seed(0)
    chunked = train(tiny_config(schedule, model), tmp_path / "chunked")
    assert chunked["n_train"] % 3 == 1 and chunked["n_train"] // 3 > STEPS_PER_CHUNK  # the case the comment names
    a, b = read_history(tmp_path / "ordinary" / "history.csv"), read_history(tmp_path / "chunked" / "history.csv")
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b):
        for key in ("train_loss", "val_loss", "lr"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-9), (model, key, ra["epoch"])
    for name in ("best", "last"):  # spaced out (30 s) on the fast path: written when training ends
        ca = torch.load(tmp_path / "ordinary" / "checkpoints" / f"{name}.ckpt", weights_only=True)
        cb = torch.load(tmp_path / "chunked" / "checkpoints" / f"{name}.ckpt", weights_only=True)
        assert ca["epoch"] == cb["epoch"] and ca["global_step"] == cb["global_step"] == 3 * (chunked["n_train"] // 3)
        for k, v in ca["state_dict"].items():
            assert torch.allclose(v.float(), cb["state_dict"][k].float(), rtol=1e-3, atol=1e-5), (name, k)
    assert chunked["best_epoch"] == ordinary["best_epoch"]


def test_spaced_checkpoints_are_written_when_training_stops_on_ctrl_c(tmp_path, monkeypatch):
    import lightning as L

    class InterruptInEpoch2(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "fast_path", lambda *a, **k: True)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config("none"), tmp_path / "run", callbacks=[InterruptInEpoch2()])
    for name in ("best", "last"):
        assert torch.load(tmp_path / "run" / "checkpoints" / f"{name}.ckpt", weights_only=True)["epoch"] == 0
    train(tiny_config("none"), tmp_path / "run", resume=True)
    assert [r["epoch"] for r in read_history(tmp_path / "run" / "history.csv")] == [1, 2, 3]


def test_the_fast_path_applies_on_one_gpu_without_what_it_cannot_replay():
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    ok = dict(devices=1, loader_workers=0, precision="bf16-mixed", compile=False, ema=0.0, augment="")
    assert fast_path("auto", gpu, **ok) and fast_path("on", gpu, **ok)
    assert not fast_path("off", gpu, **ok) and not fast_path("auto", cpu, **ok)
    for change, words in [({"devices": 2}, "one GPU"), ({"loader_workers": 2}, "num-workers"),
                          ({"precision": "16-mixed"}, "16-mixed"), ({"compile": True}, "train.compile"),
                          ({"ema": 0.99}, "train.ema"), ({"augment": "flip"}, "train.augment")]:
        assert not fast_path("auto", gpu, **{**ok, **change})
        with pytest.raises(BrainaeError, match=words):
            fast_path("on", gpu, **{**ok, **change})
    with pytest.raises(BrainaeError, match="CUDA GPU"):
        fast_path("on", cpu, **ok)


def test_cuda_graphs_setting_is_checked():
    assert build_config("ae").train.cuda_graphs == "off"  # until a GPU run has checked the fix (see graphs.py)
    assert build_config("ae", overrides=["train.cuda_graphs=off"]).train.cuda_graphs == "off"  # not YAML's False
    with pytest.raises(BrainaeError, match="train.cuda_graphs"):
        build_config("ae", overrides=["train.cuda_graphs=always"])


def test_validation_keeps_the_gradient_tensors_a_captured_graph_writes():
    """Lightning sets gradients to None before each validation; a graph's gradients must survive it."""
    from types import SimpleNamespace

    from brainae.training.module import AutoencoderModule

    module = AutoencoderModule.from_config(tiny_config("none"))
    module.model(torch.rand(2, 1, 32, 32)).recon.mean().backward()
    grads = [p.grad for p in module.model.parameters()]
    module._graph = SimpleNamespace(bind=lambda: None)  # a captured graph (needs a GPU to make)
    module.on_validation_model_zero_grad()
    assert all(p.grad is g and not g.any() for p, g in zip(module.model.parameters(), grads))
    module._graph = None
    module.on_validation_model_zero_grad()
    assert all(p.grad is None for p in module.model.parameters())  # the ordinary path frees them, as Lightning does


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graphs_learn_what_the_eager_path_learns(tmp_path):
    """The check that the first GPU run lacked: with the graph path, training stalled after epoch 1."""
    losses = {}
    for mode in ("off", "on"):
        cfg = tiny_config("none", epochs=4)
        cfg.train.accelerator, cfg.train.cuda_graphs, cfg.train.batch_size = "cuda", mode, 8
        train(cfg, tmp_path / mode)
        losses[mode] = [r["val_loss"] for r in read_history(tmp_path / mode / "history.csv")]
    assert losses["on"][-1] < 0.8 * losses["on"][0]  # it learns
    assert losses["on"] == pytest.approx(losses["off"], rel=0.05)  # as the eager path does (float32; kernels differ)
