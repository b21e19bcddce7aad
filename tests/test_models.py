"""Shapes, parameter counts, layer names and losses of the registered models."""
import math

import pytest
import torch

from brainae.config import ModelConfig
from brainae.errors import BrainaeError
from brainae.models import build_model, model_names
from brainae.models.ae import ConvAE
from brainae.models.vae import ConvVAE


@pytest.mark.parametrize("name", ["ae", "vae"])
@pytest.mark.parametrize("size", [64, 128, 256])
def test_output_shapes(name, size):
    model = build_model(ModelConfig(name=name, latent_dim=32), size).eval()
    x = torch.rand(2, 1, size, size)
    out = model(x)
    assert out.recon.shape == (2, 1, size, size)
    assert out.z.shape == (2, 32)
    assert float(out.recon.min()) >= 0 and float(out.recon.max()) <= 1
    if name == "vae":
        assert out.mu.shape == out.logvar.shape == (2, 32)


def _study_ae_parameters(latent: int) -> int:
    """Count by hand: conv3x3 + BN per encoder layer, two linear layers, convT4x4 + BN, last convT without BN."""
    ch = [1, 32, 64, 128, 256, 512]
    enc = sum(ch[i] * ch[i + 1] * 9 + ch[i + 1] + 2 * ch[i + 1] for i in range(5))
    flat = 512 * 4 * 4
    fc = (flat * latent + latent) + (latent * flat + flat)
    rev = ch[::-1]
    dec = sum(rev[i] * rev[i + 1] * 16 + rev[i + 1] + (2 * rev[i + 1] if i < 4 else 0) for i in range(5))
    return enc + fc + dec


@pytest.mark.parametrize("latent", [512, 1024, 2048])
def test_study_architecture_parameter_count(latent):
    ae = build_model(ModelConfig(name="ae", latent_dim=latent), 128)
    assert sum(p.numel() for p in ae.parameters()) == _study_ae_parameters(latent)
    vae = build_model(ModelConfig(name="vae", latent_dim=latent), 128)
    # the VAE has a second head (log-variance) of the same size as the AE's encoder head
    assert sum(p.numel() for p in vae.parameters()) == _study_ae_parameters(latent) + 512 * 16 * latent + latent
    assert _study_ae_parameters(512) == 12_754_529


def test_study_layers_have_stable_names_and_kinds():
    model = build_model(ModelConfig(name="ae"), 128)
    modules = dict(model.named_modules())
    for i in range(5):
        conv = modules[f"encoder.{i}"][0]
        assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (2, 2)
        assert isinstance(modules[f"encoder.{i}"][1], torch.nn.BatchNorm2d)
        assert isinstance(modules[f"encoder.{i}"][2], torch.nn.LeakyReLU)
        tconv = modules[f"decoder.{i}"][0]
        assert isinstance(tconv, torch.nn.ConvTranspose2d) and tconv.kernel_size == (4, 4)
    assert [modules[f"decoder.{i}"][0].out_channels for i in range(5)] == [256, 128, 64, 32, 1]
    assert len(modules["decoder.4"]) == 1  # no norm or activation before the sigmoid


def test_configurable_depth_kernel_stride_activation_norm():
    cfg = ModelConfig(name="ae", channels=[8, 16, 32], kernel_size=5, stride=2, activation="gelu", norm="group", latent_dim=16)
    model = build_model(cfg, 64)
    assert model.feature_size == 8
    assert model(torch.rand(3, 1, 64, 64)).recon.shape == (3, 1, 64, 64)
    model3 = build_model(ModelConfig(channels=[8, 16], stride=3, latent_dim=8), 36)
    assert model3(torch.rand(2, 1, 36, 36)).recon.shape == (2, 1, 36, 36)


@pytest.mark.parametrize(
    "kwargs,key",
    [({"kernel_size": 4}, "model.kernel_size"), ({"activation": "tanhh"}, "model.activation"), ({"norm": "layer"}, "model.norm")],
)
def test_bad_model_settings_name_the_key(kwargs, key):
    with pytest.raises(BrainaeError, match=key):
        build_model(ModelConfig(**kwargs), 64)


def test_image_size_must_fit_the_strides():
    with pytest.raises(BrainaeError, match="image_size"):
        build_model(ModelConfig(), 100)


def test_vae_is_stochastic_in_training_and_deterministic_in_eval():
    torch.manual_seed(0)
    vae = ConvVAE(image_size=64, latent_dim=8)
    x = torch.rand(2, 1, 64, 64)
    vae.train()
    assert not torch.equal(vae(x).z, vae(x).z)
    vae.eval()
    a, b = vae(x), vae(x)
    assert torch.equal(a.z, b.z) and torch.equal(a.z, a.mu)


def hand_kl(out) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image, averaged over the batch, in float64."""
    return -0.5 * (1 + out.logvar - out.mu ** 2 - out.logvar.exp()).double().sum() / len(out.mu)


def test_vae_loss_matches_hand_computation():
    torch.manual_seed(0)
    vae = ConvVAE(image_size=32, channels=(4, 8), latent_dim=4, beta=0.5, reduction="sum").eval()
    x = torch.rand(3, 1, 32, 32)
    out = vae(x)
    terms = vae.loss(out, x)
    r = out.recon.double()
    bce = -(x * torch.log(r) + (1 - x) * torch.log(1 - r)).sum() / 3
    kl = hand_kl(out)
    assert torch.isclose(terms["loss"].double(), bce + 0.5 * kl, rtol=1e-4)
    vae.reduction = "mean"
    assert torch.isclose(vae.loss(out, x)["loss"].double(), (bce + 0.5 * kl) / 1024, rtol=1e-4)


def test_gaussian_likelihood_matches_hand_computation():
    torch.manual_seed(0)
    vae = ConvVAE(image_size=32, channels=(4, 8), latent_dim=4, beta=0.5, likelihood="gaussian").eval()
    x = torch.rand(3, 1, 32, 32)
    out = vae(x)
    terms = vae.loss(out, x)
    mse = ((out.recon.double() - x) ** 2).mean()
    nll = 0.5 * 1024 * (math.log(2 * math.pi) + 1 + torch.log(mse))  # per image, variance = the batch's MSE
    assert torch.isclose(terms["loss"].double(), nll + 0.5 * hand_kl(out), rtol=1e-4)
    assert torch.isclose(terms["nll"].double(), nll / 1024, rtol=1e-4) and "bce" not in terms


@pytest.mark.parametrize("name", ["vae", "resvae"])
def test_log_variances_thrown_below_the_bound_come_back(name):
    """A learning-rate spike can throw every log-variance below the bound (-30). The bound keeps the
    value but not the gradient: the KL term pulls them back up, where a plain clamp passed no gradient
    and left them stuck (14.5 nats per unit and image for good)."""
    torch.manual_seed(0)
    extra = {"bottleneck": "dense"} if name == "resvae" else {}
    vae = build_model(ModelConfig(name=name, channels=[4, 8], latent_dim=4, **extra), 32).train()
    bias = vae.fc_logvar.bias if name == "vae" else vae.bottleneck.bias  # resvae: mu's outputs, then logvar's
    logvar_bias = bias[-4:]
    with torch.no_grad():
        logvar_bias.fill_(-200.0)  # far below the bound
    x = torch.rand(8, 1, 32, 32)
    out = vae(x)
    assert float(out.logvar.detach().max()) == -30.0
    kl = vae.loss(out, x)["kl"]
    kl.backward()
    assert (bias.grad[-4:] < -0.4).all()  # d KL / d logvar = -(1 - exp(logvar)) / 2 per unit, batch-averaged
    with torch.no_grad():
        logvar_bias.sub_(390.0 * bias.grad[-4:])  # one long step up, back inside the bound
    assert float(vae.loss(vae(x), x)["kl"]) < 0.5 * float(kl)


def test_vae_samples_from_prior():
    vae = ConvVAE(image_size=64, latent_dim=8).eval()
    s = vae.sample(4, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, 1, 64, 64) and float(s.min()) >= 0 and float(s.max()) <= 1


def test_ae_loss_is_pixel_mse():
    ae = ConvAE(image_size=32, channels=(4, 8), latent_dim=4)
    x = torch.rand(2, 1, 32, 32)
    out = ae(x)
    assert torch.isclose(ae.loss(out, x)["loss"], ((out.recon - x) ** 2).mean())


def test_registry_lists_models_and_rejects_unknown():
    assert {"ae", "vae"} <= set(model_names())
    with pytest.raises(BrainaeError, match="unknown model 'transformer'"):
        build_model(ModelConfig(name="transformer"), 64)


@pytest.mark.parametrize("name", ["ae", "vae", "skipae", "unet"])
def test_models_are_built_channels_last_with_the_same_outputs(name):
    """build_model stores conv weights channels-last (faster oneDNN convs); the values must not change."""
    torch.manual_seed(0)
    extra = {"skips": [0]} if name == "skipae" else {}
    model = build_model(ModelConfig(name=name, latent_dim=64, channels=[8, 16, 32], **extra), 32).eval()
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    plain = build_model(ModelConfig(name=name, latent_dim=64, channels=[8, 16, 32], **extra), 32).eval()
    plain.load_state_dict(model.state_dict())
    plain = plain.to(memory_format=torch.contiguous_format)
    wide = [c for c in convs if c.weight.shape[1] > 1 and c.weight.shape[-1] > 1]  # where the layouts differ
    assert not wide[0].weight.is_contiguous()
    assert all(p.is_contiguous() for p in plain.parameters())
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x).recon, plain(x).recon, rtol=1e-5, atol=1e-5)
