"""Every registered model keeps the contract the registry states for it (brainae/registry.py).

One parametrised test per model, with no model named by hand: it builds the model, checks its output
shapes and its declared capabilities against what the network does, trains it for an epoch on tiny
data, and reads the run folder back with ``load_run``: the same network, the same output.
"""
import dataclasses

import pytest
import torch

from brainae.config import build_config
from brainae.errors import BrainaeError
from brainae.models import build_model
from brainae.registry import model_specs, resolve
from brainae.training.run import load_run, network_state, read_checkpoint
from brainae.training.train import train

SPECS = {s.name: s for s in model_specs()}
SMALL = ["model.channels=[8,16,32]", "model.latent_dim=16", "train.batch_size=8"]


def small_config(name: str, epochs: int = 1):
    cfg = build_config(name, preset="quick", data="phantom:60", image_size=32, epochs=epochs, accelerator="cpu",
                       overrides=SMALL)
    cfg.train.progress = False
    return cfg


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_network_does_what_its_registration_says(name):
    spec, cfg = SPECS[name], small_config(name)
    model = build_model(cfg.model, 32).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
    assert out.recon.shape == x.shape and out.z.shape[0] == 3
    assert 0 <= float(out.recon.min()) and float(out.recon.max()) <= 1
    terms = model.train().loss(model(x), x)
    assert {"loss", "mse"} <= set(terms) and torch.isfinite(terms["loss"])
    assert resolve(cfg.model).variational == callable(getattr(model, "encode_dist", None))
    with_skips = dataclasses.replace(cfg.model, skips=[0])
    if resolve(cfg.model).takes_skips:
        build_model(with_skips, 32)
    else:
        with pytest.raises(BrainaeError, match="model.skips"):
            build_model(with_skips, 32)
    for key in list(spec.search) + list(spec.unused):
        section, field = key.split(".")
        assert section == "model" and hasattr(cfg.model, field), key  # declared keys are config keys


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_trained_model_round_trips_through_its_run_folder(tmp_path, name):
    metrics = train(small_config(name), tmp_path / name)
    assert metrics["epochs"] == 1 and not metrics["diverged"]
    model, cfg = load_run(tmp_path / name)  # reads weights/best.safetensors
    assert cfg.model.name == name and not model.training
    reference = build_model(cfg.model, cfg.data.image_size)
    reference.load_state_dict(network_state(read_checkpoint(tmp_path / name / "checkpoints" / "best.ckpt")["state_dict"]))
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x).recon, reference.eval()(x).recon)
