"""The residual, skip, U-Net and residual-output variants: shapes, what bypasses the code, training, errors."""
import copy
import doctest

import pytest
import torch

from brainae.config import ModelConfig
from brainae.errors import BrainaeError
from brainae.models import blocks, build_model, model_names, resae, residual, skipae, unet
from brainae.models.residual import ResidualOutput
from brainae.models.vae import vae_loss
from brainae.visualization.layers import capture_layers, conv_layers

from conftest import assert_same_values_and_grads

SMALL = dict(channels=[4, 8, 8, 16], latent_dim=256)  # spatial code fits 4x4 .. 16x16 deepest maps
VARIANTS = {  # id -> config keys on top of SMALL
    "resae": dict(name="resae"),
    "resae-dense": dict(name="resae", bottleneck="dense", latent_dim=24),
    "resvae": dict(name="resvae"),
    "resvae-dense": dict(name="resvae", bottleneck="dense", latent_dim=24),
    "skipae": dict(name="skipae", skips=[0, 2]),
    "unet": dict(name="unet"),
    "resae+residual": dict(name="resae", residual_output=True),
    "skipae+residual": dict(name="skipae", skips=[1], residual_output=True),
    "unet+residual": dict(name="unet", residual_output=True),
    "ae+residual": dict(name="ae", latent_dim=16, residual_output=True),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convs run faster on one thread than split across busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(**kw) -> ModelConfig:
    return ModelConfig(**{**SMALL, **kw})


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_variant_is_registered():
    assert {"resae", "resvae", "skipae", "unet"} <= set(model_names())


@pytest.mark.parametrize("size", [64, 128, 256])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_output_shapes(variant, size):
    cfg = small(**VARIANTS[variant])
    model = build_model(cfg, size).eval()
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        out = model(x)
    assert out.recon.shape == out.logits.shape == (2, 1, size, size)
    assert out.z.shape == (2, model.latent_dim)
    assert 0 <= float(out.recon.min()) and float(out.recon.max()) <= 1
    assert model.bypasses_bottleneck == (cfg.residual_output or cfg.name == "unet" or bool(cfg.skips))
    if cfg.name == "unet":  # the deepest map: 16 channels at size / 2**3
        assert model.latent_dim == 16 * (size // 8) ** 2
    else:
        assert model.latent_dim == cfg.latent_dim
        assert model.decode(model.encode(x)).shape == (2, 1, size, size)
    if cfg.name == "resvae":
        assert out.mu.shape == out.logvar.shape == (2, cfg.latent_dim)


def replace_code(model, code: torch.Tensor):
    """A forward hook that makes ``bottleneck`` output ``code`` whatever the input."""
    return model.bottleneck.register_forward_hook(lambda _m, _inp, _out: code)


@torch.no_grad()
def test_without_skips_the_output_depends_on_the_input_only_through_z():
    torch.manual_seed(0)
    model = build_model(small(name="skipae", skips=[], norm="group"), 64).eval()  # group: outputs vary visibly
    assert not model.bypasses_bottleneck
    x1, x2 = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    out1 = model(x1)
    assert torch.allclose(out1.recon, model.decode(model.encode(x1)), atol=1e-6)
    code1 = model.bottleneck(model.encode_levels(x1)[-1])
    handle = replace_code(model, code1)
    try:
        forced = model(x2)  # x2 everywhere, x1's code at the bottleneck
    finally:
        handle.remove()
    assert torch.equal(forced.recon, out1.recon)
    assert (model(x2).recon - out1.recon).abs().max() > 1e-3  # while x2 with its own code differs


@pytest.mark.parametrize("level", [0, 3])
@torch.no_grad()
def test_a_skip_carries_information_around_the_code(level):
    torch.manual_seed(0)
    model = build_model(small(name="skipae", skips=[level], norm="group"), 64).eval()
    assert model.bypasses_bottleneck and model.skips == (level,)
    x1, x2 = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    out1 = model(x1)
    code1 = model.bottleneck(model.encode_levels(x1)[-1])
    handle = replace_code(model, code1)
    try:
        forced = model(x2)
    finally:
        handle.remove()
    assert torch.equal(forced.z, out1.z)  # the same code reached the decoder ...
    assert (forced.recon - out1.recon).abs().max() > 1e-3  # ... yet x2 still shows through the skip
    # decode(z) has no encoder features: it decodes the code alone, unlike the forward pass
    assert not torch.allclose(model.decode(out1.z), out1.recon, atol=1e-4)


def test_skips_add_no_parameters_and_resae_is_skipae_without_skips():
    sizes = {n_params(build_model(small(name="skipae", skips=s), 64)) for s in ([], [0], [0, 1, 2, 3])}
    assert sizes == {n_params(build_model(small(name="resae"), 64))}


@torch.no_grad()
def test_unet_uses_its_full_resolution_skip():
    """Changing one pixel changes the output there, whatever the deepest map holds."""
    torch.manual_seed(0)
    net = build_model(small(name="unet"), 64).eval()
    x = torch.rand(1, 1, 64, 64)
    x2 = x.clone()
    x2[0, 0, 30, 30] += 0.5
    diff = (net(x2).recon - net(x).recon).abs()[0, 0]
    assert diff[30, 30] > 0 and diff[28:33, 28:33].sum() > 0.5 * diff.sum() - 1e-9
    assert not hasattr(net, "encode") and not hasattr(net, "decode")  # latent views leave it out
    assert "copy its input" in unet.build_unet.__doc__ + unet.__doc__


def test_residual_output_is_input_minus_noise_clamped_only_in_eval():
    torch.manual_seed(0)
    model = build_model(small(name="resae", residual_output=True), 64)
    assert isinstance(model, ResidualOutput) and model.bypasses_bottleneck
    x = torch.rand(2, 1, 64, 64)
    model.train()
    out = model(x)
    noise = model.net(x).logits
    assert torch.allclose(out.recon, x - noise, atol=1e-6)
    assert float(out.recon.detach().min()) < 0 or float(out.recon.detach().max()) > 1  # not clamped: gradients everywhere
    assert torch.allclose(torch.sigmoid(out.logits), out.recon.clamp(1e-6, 1 - 1e-6), atol=1e-5)
    out.recon.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert torch.allclose(out.recon, (x - model.net(x).logits).clamp(0, 1), atol=1e-6)
        assert torch.equal(out.z, model.encode(x))  # encode/decode are the wrapped network's
        assert model.decode(out.z).shape == x.shape


def test_residual_output_keeps_the_wrapped_api_and_survives_copies(tmp_path):
    model = build_model(small(name="dae", backbone="resae", residual_output=True), 64)
    assert model.default_noise == "gaussian:0.3" and model.latent_dim == 256
    assert next(iter(model.state_dict())).startswith("net.")
    twin = copy.deepcopy(model)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    fresh = build_model(small(name="dae", backbone="resae", residual_output=True), 64)
    fresh.load_state_dict(torch.load(tmp_path / "w.pt"))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ref = model.eval()(x).recon
        assert torch.equal(twin.eval()(x).recon, ref) and torch.equal(fresh.eval()(x).recon, ref)
    assert not hasattr(build_model(small(name="unet", residual_output=True), 64), "encode")


@pytest.mark.parametrize("kw", [dict(name="vae"), dict(name="resvae"), dict(name="dae", backbone="vae")])
def test_residual_output_refuses_variational_models(kw):
    with pytest.raises(BrainaeError, match="model.residual_output"):
        build_model(small(**{**kw, "latent_dim": 16}, residual_output=True), 64)


@pytest.mark.parametrize("variant", ["resae", "resvae", "skipae", "unet", "resae+residual", "unet+residual"])
def test_every_variant_learns_a_tiny_batch(variant):
    torch.manual_seed(0)
    cfg = ModelConfig(**{"channels": [8, 16], "latent_dim": 64, **VARIANTS[variant], "skips": [0] if "skipae" in variant else []})
    model = build_model(cfg, 32).train()
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    x = torch.stack([torch.sigmoid(4 * torch.sin(3 * k * xx + yy)) for k in (1, 2, 3, 4)])[:, None]  # (4, 1, 32, 32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        terms = model.loss(model(x), x)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(terms["loss"].item())
    assert {"loss", "mse"} <= set(terms)
    assert sum(losses[-3:]) < 0.9 * sum(losses[:3]), losses  # resvae, the slowest, reaches about 0.75


@torch.no_grad()
def test_resvae_is_a_proper_vae():
    torch.manual_seed(0)
    vae = build_model(small(name="resvae", beta=0.5, vae_reduction="mean"), 64)
    x = torch.rand(2, 1, 64, 64)
    vae.train()
    assert not torch.equal(vae(x).z, vae(x).z)
    vae.eval()
    out = vae(x)
    assert torch.equal(out.z, out.mu) and torch.equal(vae.encode(x), out.mu)
    terms = vae.loss(out, x)
    assert torch.equal(terms["loss"], vae_loss(out, x, 0.5, "mean")["loss"]) and "kl" in terms
    s = vae.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 1, 64, 64) and 0 <= float(s.min()) and float(s.max()) <= 1
    assert torch.equal(s, vae.sample(3, generator=torch.Generator().manual_seed(0)))


def test_layers_have_stable_names_and_hooks_see_whole_levels():
    model = build_model(small(name="skipae", skips=[0]), 64)
    modules = dict(model.named_modules())
    for name in ["encoder.0", "encoder.3", "bottleneck", "expand", "decoder.0", "decoder.3"]:
        assert name in modules
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())  # no checkerboards
    assert isinstance(modules["decoder.3"][0], resae.UpConv) and modules["decoder.3"][0].out_channels == 1
    names = [n for n, _ in conv_layers(model)]
    assert {"encoder.0", "decoder.0", "decoder.3", "bottleneck"} <= set(names)
    for variant in ["skipae", "unet", "resae+residual"]:
        net = build_model(small(**VARIANTS[variant]), 64).eval()
        acts, recon = capture_layers(net, torch.rand(2, 1, 64, 64))
        assert recon.shape == (2, 64, 64) and all(a.ndim == 4 for a in acts.values())
    unet_names = dict(build_model(small(name="unet"), 64).named_modules())
    assert {"encoder.0", "encoder.3", "decoder.0.up", "decoder.2.merge", "head"} <= set(unet_names)


def test_norm_and_blocks_are_configurable():
    model = build_model(small(name="resae", norm="group", blocks=2, activation="silu"), 64)
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.GroupNorm in kinds and torch.nn.BatchNorm2d not in kinds and torch.nn.SiLU in kinds
    assert sum(isinstance(m, resae.ResBlock) for m in model.encoder[0]) == 2


def conv(c_in, c_out, k, bias):
    return c_in * c_out * k * k + (c_out if bias else 0)


def res_block(c_in, c_out):  # two 3x3 convs without bias, two BatchNorms, 1x1 projection when widths differ
    return conv(c_in, c_out, 3, False) + conv(c_out, c_out, 3, False) + 4 * c_out + (conv(c_in, c_out, 1, True) if c_in != c_out else 0)


def test_parameter_counts_match_a_count_by_hand():
    # resae, channels (4, 8), 16 px: deepest map 8 x 4 x 4, latent 32 -> code of 2 channels
    enc = (conv(1, 4, 3, False) + 8 + res_block(4, 4)) + (conv(4, 8, 3, False) + 16 + res_block(8, 8))
    code = conv(8, 2, 1, True) + conv(2, 8, 1, True)
    dec = (conv(8, 4, 3, False) + 8 + res_block(4, 4)) + conv(4, 1, 3, True)
    cfg = ModelConfig(name="resae", channels=[4, 8], latent_dim=32)
    assert n_params(build_model(cfg, 16)) == enc + code + dec
    vae = build_model(ModelConfig(name="resvae", channels=[4, 8], latent_dim=32), 16)
    assert n_params(vae) == enc + code + dec + conv(8, 2, 1, True)  # the log-variance half of the head
    dense = build_model(ModelConfig(name="resae", channels=[4, 8], latent_dim=32, bottleneck="dense"), 16)
    assert n_params(dense) == enc + dec + (128 * 32 + 32) + (32 * 128 + 128)
    assert n_params(build_model(ModelConfig(**{**cfg.__dict__, "residual_output": True}), 16)) == enc + code + dec
    # unet, channels (4, 8): full-size level, one down level, one up-and-merge, 1x1 head
    u_enc = (conv(1, 4, 3, False) + 8 + res_block(4, 4)) + (conv(4, 8, 3, False) + 16 + res_block(8, 8))
    u_dec = conv(8, 4, 3, False) + 8 + res_block(8, 4) + conv(4, 1, 1, True)
    assert n_params(build_model(ModelConfig(name="unet", channels=[4, 8]), 16)) == u_enc + u_dec


@pytest.mark.parametrize(
    "kw,size,key",
    [
        (dict(name="resae", channels=[8, 16, 32], latent_dim=10), 64, "model.latent_dim"),
        (dict(name="resvae", channels=[8, 16, 32], latent_dim=10), 64, "model.latent_dim"),
        (dict(name="resae"), 100, "data.image_size"),
        (dict(name="unet", channels=[8, 16, 32]), 98, "data.image_size"),
        (dict(name="skipae", channels=[8, 16, 32], skips=[3]), 64, "model.skips"),
        (dict(name="skipae", channels=[8, 16, 32], skips=[-1]), 64, "model.skips"),
        (dict(name="resae", skips=[0]), 64, "model.skips"),
        (dict(name="unet", skips=[0]), 64, "model.skips"),
        (dict(name="unet", bottleneck="dense"), 64, "model.bottleneck"),
        (dict(name="resae", bottleneck="sparse"), 64, "model.bottleneck"),
        (dict(name="skipae", kernel_size=4), 64, "model.kernel_size"),
        (dict(name="unet", blocks=0), 64, "model.blocks"),
        (dict(name="resae", norm="layer"), 64, "model.norm"),
    ],
)
def test_bad_configs_name_the_key(kw, size, key):
    with pytest.raises(BrainaeError, match=key) as info:
        build_model(small(**kw), size)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kernel,scale", [(3, 2), (5, 2), (3, 3), (1, 2), (4, 2), (3, 1)])
@pytest.mark.parametrize("c_in,c_out", [(3, 4), (9, 1), (18, 2)])  # the last two run as output phases
def test_upconv_equals_upsampling_then_conv_in_values_and_gradients(kernel, scale, c_in, c_out):
    torch.manual_seed(0)
    up = blocks.UpConv(c_in, c_out, kernel, scale).double()
    assert up.as_phases == (up.tap_matrix is not None and c_out * scale ** 2 <= c_in)
    x = torch.randn(2, c_in, 5, 6, dtype=torch.float64, requires_grad=True)
    ref_x = x.detach().clone().requires_grad_()
    out = up(x)
    ref = torch.nn.Conv2d.forward(up, torch.nn.functional.interpolate(ref_x, scale_factor=scale, mode="nearest"))
    assert out.shape == ref.shape
    assert_same_values_and_grads(out, ref, (up.weight, up.bias, x), (up.weight, up.bias, ref_x))
    assert (up.tap_matrix is None) == (kernel % 2 == 0 or scale == 1)  # the transposed conv where it is exact
    assert "tap_matrix" not in up.state_dict()  # checkpoints hold the conv's parameters only


def test_docstring_examples_run():
    assert doctest.testmod(blocks, extraglobs={"torch": torch}).failed == 0
    for module in (resae, skipae, unet, residual):
        assert doctest.testmod(module, extraglobs={"torch": torch}).failed == 0, module.__name__


@pytest.mark.parametrize("c_in,c_out,stride", [(6, 3, 2), (6, 1, 2), (9, 1, 3)])  # the last two as output phases
def test_conv_transpose_is_the_plain_layer(c_in, c_out, stride):
    """blocks.ConvTranspose adds its bias after the conv when it trains on a CPU (oneDNN's bias gradient was
    slow), and otherwise runs as a conv to its output phases when it has few outputs: values and gradients
    of both forms equal nn.ConvTranspose2d's in float64, within bf16 rounding under autocast; output_size
    takes the plain call."""
    torch.manual_seed(0)
    kernel, padding = blocks.up_kernel(stride)
    layer = blocks.ConvTranspose(c_in, c_out, kernel, stride=stride, padding=padding).double()
    plain = torch.nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding).double()
    plain.load_state_dict(layer.state_dict())
    assert set(layer.state_dict()) == {"weight", "bias"}
    assert layer.as_phases == (c_out * stride ** 2 <= c_in)
    x = torch.randn(2, c_in, 5, 7, dtype=torch.float64, requires_grad=True)
    ref_x = x.detach().clone().requires_grad_()
    wrt, ref_wrt = (layer.weight, layer.bias, x), (plain.weight, plain.bias, ref_x)
    assert_same_values_and_grads(layer(x), plain(ref_x), wrt, ref_wrt)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain(x), rtol=1e-12, atol=1e-12)
    if layer.as_phases:  # the form inference and GPUs run, with its gradients
        out = blocks.phase_conv(x, layer.weight.transpose(0, 1), layer.bias, layer.phase_taps)
        assert_same_values_and_grads(out, plain(ref_x), wrt, ref_wrt)
    size = [5 * stride + 1, 7 * stride + 1]
    torch.testing.assert_close(layer(x, output_size=size), plain(x, output_size=size))
    layer.float(), plain.float()
    with torch.autocast("cpu", torch.bfloat16):
        out, ref = layer(x.float()), plain(x.float())
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=0.02, atol=0.02)
    decoder = build_model(ModelConfig(name="ae", channels=[4, 8], latent_dim=8), 16).decoder
    assert isinstance(decoder[0][0], blocks.ConvTranspose) and decoder[-1][0].as_phases  # the one-channel output
