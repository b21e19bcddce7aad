"""Noise library: each noise has the right statistics; specs parse or fail in one line; DAE training
draws noise afresh per batch, keeps the target clean, and records its noise; --normal-only filters."""
import math

import numpy as np
import pytest
import torch
import yaml

from brainae.config import build_config
from brainae.data.noise import NoiseMix, parse_noise, parse_noise_levels
from brainae.errors import BrainaeError
from brainae.models import build_model
from brainae.training.module import AutoencoderModule
from brainae.training.train import keep_normal_only, train

N = 200_000  # pixels per statistic: standard errors near 1e-4


def field(value: float) -> torch.Tensor:
    return torch.full((1, 1, 400, 500), value)


def test_gaussian_is_unbiased_with_the_given_sigma():
    y = parse_noise("gaussian:0.05")(field(0.5), generator=0)
    d = (y - 0.5).flatten()
    assert abs(float(d.mean())) < 1e-3
    assert float(d.std()) == pytest.approx(0.05, rel=0.01)


def test_clipping_keeps_every_noise_in_unit_range():
    x = torch.rand(4, 1, 32, 32)
    for spec in ("gaussian:0.5", "rician:0.5", "salt_pepper:0.3", "poisson:0.5"):
        y = parse_noise(spec)(x, generator=1)
        assert float(y.min()) >= 0 and float(y.max()) <= 1, spec


def test_rician_mean_is_biased_upwards_at_low_signal():
    sigma = 0.1
    dark = parse_noise(f"rician:{sigma}")(field(0.0), generator=0)
    # at zero signal the magnitude is Rayleigh distributed: mean sigma * sqrt(pi / 2), not 0
    assert float(dark.mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.01)
    assert float(dark.std()) == pytest.approx(sigma * math.sqrt(2 - math.pi / 2), rel=0.02)
    # at high signal (SNR 25) it is nearly Gaussian: mean ~ sqrt(A^2 + sigma^2), std ~ sigma
    bright = parse_noise("rician:0.02")(field(0.5), generator=0)
    assert float(bright.mean()) == pytest.approx(math.sqrt(0.5 ** 2 + 0.02 ** 2), abs=2e-4)
    assert float(bright.std()) == pytest.approx(0.02, rel=0.02)


def test_salt_and_pepper_replaces_the_given_share_half_each():
    y = parse_noise("salt_pepper:0.1")(field(0.5), generator=0)
    salt, pepper = float((y == 1).float().mean()), float((y == 0).float().mean())
    assert salt == pytest.approx(0.05, abs=0.003) and pepper == pytest.approx(0.05, abs=0.003)
    assert float((y == 0.5).float().mean()) == pytest.approx(0.9, abs=0.003)


def test_poisson_variance_grows_with_the_signal():
    level = 0.1  # photon count at intensity 1: 100
    for value in (0.2, 0.6):
        y = parse_noise(f"poisson:{level}")(field(value), generator=0)
        assert float(y.mean()) == pytest.approx(value, rel=0.01)
        assert float(y.var()) == pytest.approx(level ** 2 * value, rel=0.03)
        counts = y * 100
        assert torch.allclose(counts, counts.round(), atol=1e-4)  # whole photon counts


def test_seeded_noise_repeats_and_unseeded_noise_does_not():
    x = torch.rand(2, 1, 16, 16)
    noise = parse_noise("gaussian:0.2")
    assert torch.equal(noise(x, generator=7), noise(x, generator=7))
    assert not torch.equal(noise(x), noise(x))


def test_numpy_in_numpy_out():
    x = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    y = parse_noise("rician:0.1")(x, generator=0)
    assert isinstance(y, np.ndarray) and y.shape == x.shape


def test_several_levels_give_a_per_image_mix():
    levels = parse_noise_levels("gaussian:0.1,0.2,0.3")
    assert [n.spec for n in levels] == ["gaussian:0.1", "gaussian:0.2", "gaussian:0.3"]
    mix = parse_noise("gaussian:0.01,0.2")
    assert isinstance(mix, NoiseMix)
    y = mix(torch.full((40, 1, 32, 32), 0.5), generator=0)
    stds = (y - 0.5).flatten(1).std(1)
    low, high = stds < 0.05, stds > 0.15
    assert bool((low | high).all()) and low.any() and high.any()


@pytest.mark.parametrize("spec, words", [
    ("gauss:0.3", ["gauss:0.3", "gaussian", "rician", "salt_pepper", "poisson"]),
    ("gaussian", ["gaussian", "KIND:LEVEL"]),
    ("gaussian:abc", ["abc", "not a number"]),
    ("gaussian:-0.1", ["-0.1", "must be in"]),
    ("salt_pepper:1.5", ["1.5", "salt_pepper"]),
])
def test_bad_specs_fail_in_one_line_naming_the_spec(spec, words):
    with pytest.raises(BrainaeError) as e:
        parse_noise(spec)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words)


def test_bad_noise_fails_when_the_config_is_built():
    with pytest.raises(BrainaeError, match="gaussian:x"):
        build_config("ae", noise="gaussian:x")


def tiny_config(model="ae", epochs=1, **flat):
    sets = ["model.channels=[8,16,32]", "model.latent_dim=16", "data.image_size=32", "train.batch_size=16"]
    cfg = build_config(model, preset="quick", data="phantom:120", epochs=epochs, overrides=sets, **flat)
    cfg.train.progress = False
    cfg.train.accelerator = "cpu"
    return cfg


def test_training_noise_is_fresh_per_batch_and_validation_noise_fixed():
    module = AutoencoderModule.from_config(tiny_config(noise="gaussian:0.3"))
    x = torch.full((4, 1, 32, 32), 0.5)
    a, b = module.corrupt(x, "train", 0), module.corrupt(x, "train", 0)
    assert not torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(module.corrupt(x, "val", 3), module.corrupt(x, "val", 3))
    assert not torch.equal(module.corrupt(x, "val", 3), module.corrupt(x, "val", 4))
    plain = AutoencoderModule.from_config(tiny_config())
    assert plain.corrupt(x, "train", 0) is x


def test_denoiser_sees_noisy_input_and_clean_target(monkeypatch):
    module = AutoencoderModule.from_config(tiny_config(noise="gaussian:0.3"))
    module.log = lambda *a, **k: None
    seen = {}
    forward, loss = module.model.forward, module.model.loss

    def spy_forward(x):
        seen["input"] = x
        return forward(x)

    def spy_loss(out, target, recon_loss=None):
        seen["target"] = target
        return loss(out, target, recon_loss)

    monkeypatch.setattr(module.model, "forward", spy_forward)
    monkeypatch.setattr(module.model, "loss", spy_loss)
    x = torch.rand(4, 1, 32, 32)
    module._step((x, torch.zeros(4)), "train", 0)
    assert torch.equal(seen["target"], x) and not torch.equal(seen["input"], x)


def test_dae_defaults_to_gaussian_noise_and_records_it(tmp_path):
    out = tmp_path / "dae"
    train(tiny_config("dae"), out)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["name"] == "dae" and saved["train"]["noise"] == "gaussian:0.3"
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["train"]["noise"] == "gaussian:0.3"
    # the network is the backbone itself, so hooks and checkpoints see the same names
    assert "encoder.0.0.weight" in build_model(tiny_config("dae").model, 32).state_dict()


def test_dae_wraps_any_backbone():
    cfg = tiny_config("dae")
    cfg.model.backbone = "vae"
    assert type(build_model(cfg.model, 32)).__name__ == "ConvVAE"
    cfg.model.backbone = "dae"
    with pytest.raises(BrainaeError, match="model.backbone"):
        build_model(cfg.model, 32)


def test_normal_only_keeps_one_class_in_train_and_val_and_the_whole_test_split():
    from brainae.data.load import load_data

    ds = load_data(tiny_config().data, progress=False)
    kept = keep_normal_only(ds, "no_tumor")
    for split in ("train", "val"):
        assert set(kept.labels[kept.splits == split].tolist()) == {0}
    assert np.array_equal(kept.split("test").labels, ds.split("test").labels)
    with pytest.raises(BrainaeError, match="no_tumor, tumor"):
        keep_normal_only(ds, "healthy")


def test_docstring_examples_run():
    import doctest

    import brainae.data.noise as noise_module

    assert doctest.testmod(noise_module).failed == 0
