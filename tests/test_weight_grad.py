"""Weight gradients of small-map convs as one matrix product (models/weight_grad.py): the same values and
gradients as torch's layers, and taken only where it applies."""
import copy

import pytest
import torch

from brainae.models import blocks, weight_grad
from brainae.models.ae import ConvAE

from conftest import assert_same_values_and_grads


def pair(transposed: bool, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
    """brainae's layer and torch's, with the same parameters, in float64."""
    torch.manual_seed(0)
    ours = (blocks.ConvTranspose if transposed else blocks.Conv)(c_in, c_out, kernel, stride=stride, padding=padding)
    plain = (torch.nn.ConvTranspose2d if transposed else torch.nn.Conv2d)(c_in, c_out, kernel, stride=stride,
                                                                          padding=padding)
    plain.load_state_dict(ours.state_dict())
    return ours.double(), plain.double()


@pytest.mark.parametrize("transposed,c_in,c_out,kernel,stride,padding,size", [
    (False, 3, 5, 3, 2, 1, 8), (False, 4, 6, 3, 1, 1, 6), (False, 2, 3, 5, 2, 2, 9), (False, 1, 4, 3, 2, 1, 7),
    (True, 6, 3, 4, 2, 1, 4), (True, 3, 2, 5, 3, 1, 3), (True, 5, 4, 3, 1, 1, 5),
])
def test_matmul_weight_gradient_equals_torchs(transposed, c_in, c_out, kernel, stride, padding, size, monkeypatch):
    monkeypatch.setattr(weight_grad, "SMALL_MAP", 1000)
    ours, plain = pair(transposed, c_in, c_out, kernel, stride, padding)
    x = torch.randn(3, c_in, size, size + 1, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    ref_x = x.detach().clone().requires_grad_()
    assert weight_grad.takes_matmul_grad(ours, x, transposed)
    assert_same_values_and_grads(ours(x), plain(ref_x), (ours.weight, ours.bias, x), (plain.weight, plain.bias, ref_x))
    ours.float(), plain.float()
    xf = x.detach().float()
    with torch.autocast("cpu", torch.bfloat16):  # as brainae trains on a CPU: within bf16 rounding
        out, ref = ours(xf), plain(xf)
    assert out.dtype == ref.dtype == torch.bfloat16
    gw = torch.autograd.grad(out.float().square().sum(), ours.weight)[0]
    rw = torch.autograd.grad(ref.float().square().sum(), plain.weight)[0]
    assert gw.dtype == torch.float32 and float((gw - rw).abs().max()) <= 0.02 * float(rw.abs().max())


def test_only_small_maps_in_cpu_training_take_it():
    conv, _ = pair(False, 3, 4, 3, 2, 1)
    small = torch.randn(2, 3, 8, 8, dtype=torch.float64)  # a 4x4 output: SMALL_MAP pixels
    large = torch.randn(2, 3, 10, 8, dtype=torch.float64)  # 5x4
    assert weight_grad.takes_matmul_grad(conv, small, False) and not weight_grad.takes_matmul_grad(conv, large, False)
    with torch.no_grad():
        assert not weight_grad.takes_matmul_grad(conv, small, False)
    conv.weight.requires_grad_(False)
    assert not weight_grad.takes_matmul_grad(conv, small, False)
    tconv, _ = pair(True, 3, 4, 4, 2, 1)
    assert weight_grad.takes_matmul_grad(tconv, torch.randn(2, 3, 4, 4), True)
    assert not weight_grad.takes_matmul_grad(tconv, torch.randn(2, 3, 5, 4), True)
    for odd in (torch.nn.Conv2d(3, 4, 3, padding="same"), torch.nn.Conv2d(4, 4, 3, groups=2, padding=1),
                torch.nn.Conv2d(3, 4, 3, dilation=2, padding=2), torch.nn.Conv2d(3, 4, (3, 1), padding=(1, 0))):
        assert not weight_grad.takes_matmul_grad(odd, torch.randn(2, odd.in_channels, 8, 8), False)


def test_the_study_ae_trains_to_the_same_gradients_as_with_torchs_layers():
    """Its deep, small-map layers take the matrix product, the others the plain call; every parameter's
    gradient equals that of the same network built from torch's own layers (float64)."""
    torch.manual_seed(0)
    ours = ConvAE(image_size=64, channels=(4, 8, 16, 32), latent_dim=8).double().train()
    plain = blocks.torch_layers(copy.deepcopy(ours))
    x = torch.rand(4, 1, 64, 64, dtype=torch.float64)
    took = []
    for m in ours.modules():
        if isinstance(m, (blocks.Conv, blocks.ConvTranspose)):
            transposed = isinstance(m, blocks.ConvTranspose)
            m.register_forward_pre_hook(lambda m, a, t=transposed: took.append(weight_grad.takes_matmul_grad(m, a[0], t)))
    for net in (ours, plain):
        torch.nn.functional.mse_loss(net(x).recon, x).backward()
    assert took == [False, False, False, True, True, False, False, False]  # maps 32, 16, 8, 4 | 4, 8, 16, 32
    for (name, a), b in zip(ours.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12, msg=name)
