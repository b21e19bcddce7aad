"""Small builders for conv blocks, activations and normalisations, configurable by name, and the
residual and upsampling blocks every residual network (resae, skipae, unet) is made of."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.01),  # the study's slope
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}
NORMS = ("batch", "group", "instance", "none")


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown '{name}' (choose from {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


def norm(name: str, channels: int) -> nn.Module:
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        return nn.GroupNorm(min(8, channels), channels) if channels % min(8, channels) == 0 else nn.GroupNorm(1, channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"norm: unknown '{name}' (choose from {', '.join(NORMS)})")


def down_block(c_in: int, c_out: int, kernel: int, stride: int, norm_name: str, act: str) -> nn.Sequential:
    """conv -> norm -> activation; halves the size at stride 2 ('same' padding for odd kernels)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
        norm(norm_name, c_out),
        activation(act),
    )


def up_kernel(stride: int) -> tuple[int, int]:
    """(kernel, padding) of a transposed conv that multiplies the size by exactly ``stride``.

    Stride 2 gives the study's 4x4 kernel with padding 1.
    """
    return (2 * stride, stride // 2) if stride % 2 == 0 else (stride + 2, 1)


def up_block(c_in: int, c_out: int, stride: int, norm_name: str | None, act: str | None) -> nn.Sequential:
    """transposed conv [-> norm -> activation]; the last decoder layer has neither."""
    kernel, padding = up_kernel(stride)
    layers: list[nn.Module] = [nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding)]
    if norm_name is not None:
        layers.append(norm(norm_name, c_out))
    if act is not None:
        layers.append(activation(act))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """conv -> norm -> act -> conv -> norm, plus the input (1x1 projection when widths differ), -> act.

    Convs followed by a norm carry no bias: the norm's shift replaces it.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, norm_name: str, act: str) -> None:
        super().__init__()
        bias = norm_name == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias)
        self.norm1 = norm(norm_name, c_out)
        self.act1 = activation(act)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel, padding=kernel // 2, bias=bias)
        self.norm2 = norm(norm_name, c_out)
        self.proj = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.act2 = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.act2(h + self.proj(x))


class UpConv(nn.Conv2d):
    """Nearest-neighbour upsampling by ``scale`` followed by a 'same' conv.

    A ``Conv2d`` subclass so that layer hooks (which look for convs opening a Sequential) see a
    decoder level as one layer, like the study's transposed convs.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, scale: int, bias: bool = True) -> None:
        super().__init__(c_in, c_out, kernel, padding=kernel // 2, bias=bias)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=self.scale, mode="nearest"))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"
