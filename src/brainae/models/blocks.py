"""Small builders for conv blocks, activations and normalisations, configurable by name."""
from __future__ import annotations

import torch.nn as nn

from brainae.errors import BrainaeError

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
        raise BrainaeError(f"config key 'model.activation': unknown '{name}' (choose from {', '.join(ACTIVATIONS)})")
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
    raise BrainaeError(f"config key 'model.norm': unknown '{name}' (choose from {', '.join(NORMS)})")


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
