"""VAE sampling and likelihood: the Gaussian decoder with a fitted variance, and the mixture fitted to
the training codes that a trained VAE samples from."""
import math

import numpy as np
import pytest
import torch

from brainae.cli import main
from brainae.errors import BrainaeError
from brainae.models.prior import MixturePrior
from brainae.models.vae import ConvVAE
from brainae.training.run import PRIOR_FILE, load_run
from brainae.training.train import train
from brainae.visualization.latent import encode_images, prior_samples, sample_prior
from test_training import tiny_config


def tiny_vae_config(**overrides):
    return tiny_config("vae", epochs=1, **overrides)


def test_gaussian_likelihood_rewards_a_closer_reconstruction():
    vae = ConvVAE(image_size=32, channels=(4, 8), latent_dim=4, likelihood="gaussian").eval()
    x = torch.rand(2, 1, 32, 32)
    out = vae(x)
    near = type(out)(recon=x + 0.01, z=out.z, mu=out.mu, logvar=out.logvar, logits=out.logits)
    far = type(out)(recon=x + 0.1, z=out.z, mu=out.mu, logvar=out.logvar, logits=out.logits)
    # ten times the error is 100 times the MSE: ln(100) / 2 nats per pixel more
    gap = (vae.loss(far, x)["loss"] - vae.loss(near, x)["loss"]).detach()
    assert float(gap) == pytest.approx(0.5 * 1024 * math.log(100), rel=1e-4)


def test_bad_likelihood_is_a_config_error():
    with pytest.raises(BrainaeError, match="model.likelihood"):
        tiny_vae_config(**{"model.likelihood": "poisson"})


def test_mixture_recovers_separated_clusters_and_samples_from_them():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [6.0, 0.0, 3.0]])
    z = torch.cat([c + 0.5 * torch.randn(300, 3, generator=g) for c in centres])
    prior = MixturePrior.fit(z, components=3, seed=1)
    order = prior.means[:, 0].argsort()
    assert torch.allclose(prior.means[order], centres, atol=0.15)
    assert torch.allclose(prior.weights, torch.full((3,), 1 / 3), atol=0.02)
    draws = prior.sample(3000, generator=torch.Generator().manual_seed(2))
    nearest = torch.cdist(draws, centres).argmin(dim=1)
    assert torch.bincount(nearest, minlength=3).min() > 800  # every cluster is drawn from
    assert (torch.cdist(draws, centres).min(dim=1).values < 2.5).all()  # and nothing lands between them
    for k in range(3):  # each cluster's spread (sd 0.5) is reproduced
        assert torch.allclose(draws[nearest == k].std(dim=0), torch.full((3,), 0.5), atol=0.08)


def test_mixture_draws_keep_the_units_correlated():
    # codes on a line: unit 1 = 2 * unit 0. A diagonal Gaussian would draw the units independently.
    t = torch.randn(400, 1, generator=torch.Generator().manual_seed(0))
    z = torch.cat([t, 2 * t, 0.01 * torch.randn(400, 1, generator=torch.Generator().manual_seed(1))], dim=1)
    draws = MixturePrior.fit(z, components=1).sample(2000, generator=torch.Generator().manual_seed(2))
    assert draws[:, 0].std() == pytest.approx(1.0, abs=0.1)
    assert torch.corrcoef(draws[:, :2].T)[0, 1] > 0.999
    assert (draws[:, 1] - 2 * draws[:, 0]).abs().max() < 1e-3


def test_mixture_is_seeded_and_round_trips():
    z = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    a, b = MixturePrior.fit(z, 4, seed=3), MixturePrior.fit(z, 4, seed=3)
    assert torch.equal(a.means, b.means)
    c = MixturePrior.from_state(a.state())
    assert torch.equal(c.sample(7, torch.Generator().manual_seed(1)), a.sample(7, torch.Generator().manual_seed(1)))
    assert MixturePrior.fit(z, 50).components == 20  # at most a tenth of the codes


def test_training_a_vae_fits_the_mixture_on_training_codes(tmp_path):
    out = tmp_path / "vae"
    result = train(tiny_vae_config(**{"model.prior_components": 3}), out)
    assert (out / PRIOR_FILE).is_file() and not list(out.rglob("*.tmp"))
    model, cfg = load_run(out)
    assert model.code_prior is not None and model.code_prior.components == 3
    assert result["prior"] == {"components": 3, "fitted_on": "train", "codes": result["n_train"]}
    # the fit uses the training split's codes: refitting them gives the same mixture
    from brainae.data.load import load_data

    train_images = load_data(cfg.data, progress=False).split("train").images
    refit = MixturePrior.fit(torch.from_numpy(encode_images(model, train_images)), 3, seed=cfg.train.seed)
    assert torch.allclose(refit.means, model.code_prior.means, atol=1e-4)
    fitted, normal = sample_prior(model, 6, seed=0), sample_prior(model, 6, seed=0, prior="normal")
    assert fitted.shape == normal.shape == (6, 32, 32) and not np.allclose(fitted, normal)
    assert list(prior_samples(model, 4)) == ["z ~ N(0, I)", "z ~ mixture of 3"]


def test_no_mixture_when_switched_off_and_a_broken_file_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "vae"
    train(tiny_vae_config(**{"model.prior_components": 0}), out)
    assert not (out / PRIOR_FILE).exists()
    model, _ = load_run(out)
    assert model.code_prior is None and list(prior_samples(model, 2)) == ["z ~ N(0, I)"]
    (out / PRIOR_FILE).write_bytes(b"not a torch file")
    with pytest.raises(BrainaeError, match="prior.pt cannot be read"):
        load_run(out)
    capsys.readouterr()
    assert main(["latent", str(out), "--out", str(tmp_path / "latent"), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "prior.pt cannot be read" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
