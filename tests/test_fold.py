"""Batch norms folded into their convs for inference: same outputs, every norm found, a cache that follows the weights."""
import doctest

import numpy as np
import pytest
import torch
import torch.nn as nn

from brainae.config import ModelConfig
from brainae.models import build_model, fold, model_names
from brainae.models.fold import fold_batch_norms, inference_network
from brainae.training.precision import reconstructions

SMALL = dict(channels=[4, 8, 8, 16], latent_dim=32, blocks=1)


def trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with batch-norm statistics and affines far from their initial 0/1."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.3, 3.0),
                              (m.weight.data, 0.5, 1.5), (m.bias.data, -0.3, 0.3)):
                t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)
    return model.eval()


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", model_names())
def test_every_models_norms_fold_and_the_outputs_stay(name):
    study_like = name in ("ae", "vae")
    cfg = ModelConfig(name=name, channels=[4, 8, 8, 8, 16], latent_dim=32) if study_like else ModelConfig(name=name, **SMALL)
    torch.manual_seed(0)
    model = trained_looking(build_model(cfg, 64)).double()
    folded = fold_batch_norms(model)
    assert batch_norms(model) > 0 and batch_norms(folded) == 0  # every norm after a conv is found
    x = torch.rand(3, 1, 64, 64, dtype=torch.float64)
    torch.testing.assert_close(folded(x).recon, model(x).recon, rtol=1e-9, atol=1e-9)
    assert batch_norms(model) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is kept


def test_only_what_the_structure_guarantees_is_folded():
    class Branching(nn.Sequential):  # a Sequential whose forward is not a chain: its neighbours are not a pair
        def forward(self, x):
            return self[1](self[0](x)) + self[0](x)

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2),
                        Branching(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))).eval()
    folded = fold_batch_norms(net)
    assert isinstance(folded[1], nn.Identity) and isinstance(folded[2][1], nn.BatchNorm2d)
    no_stats = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)).eval()
    assert isinstance(fold_batch_norms(no_stats)[1], nn.BatchNorm2d)  # it normalises by the batch even in eval


def test_channels_last_weights_stay_channels_last():
    model = trained_looking(build_model(ModelConfig(name="ae", channels=[4, 8], latent_dim=8), 16))
    convs = [m for m in fold_batch_norms(model).modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


def test_the_folded_copy_is_reused_until_weights_or_modes_change():
    model = trained_looking(build_model(ModelConfig(name="skipae", **SMALL, skips=[0]), 32))
    first = inference_network(model)
    assert first is not model and inference_network(model) is first
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        model.decoder[0][0].weight.mul_(2)  # an optimiser step or load_state_dict changes weights in place
        model.encoder[0][1].running_var.mul_(3)
    second = inference_network(model)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(x).recon, model(x).recon, rtol=1e-5, atol=1e-6)
    model.train()  # norms in training mode use the batch's statistics: nothing to fold
    assert inference_network(model) is model


def test_inference_runs_the_folded_network(monkeypatch):
    monkeypatch.setenv("BRAINAE_INFERENCE_PRECISION", "32")
    model = trained_looking(build_model(ModelConfig(name="ae", channels=[4, 8, 16], latent_dim=16), 32))
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32), dtype=np.uint8)
    with torch.no_grad():
        ref = model(torch.from_numpy(images[:, None]).float() / 255).recon[:, 0].numpy()
    got = reconstructions(model, images)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert fold._FOLDED.get(model) is not None  # the loop ran a folded copy


def test_docstring_examples_run():
    assert doctest.testmod(fold).failed == 0
