"""Small builders for conv blocks, activations and normalisations, configurable by name, and the
residual and upsampling blocks every residual network (resae, skipae, unet) is made of."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainae.models.weight_grad import matmul_grad_conv, takes_matmul_grad


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
        Conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
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
    layers: list[nn.Module] = [ConvTranspose(c_in, c_out, kernel, stride=stride, padding=padding)]
    if norm_name is not None:
        layers.append(norm(norm_name, c_out))
    if act is not None:
        layers.append(activation(act))
    return nn.Sequential(*layers)


class Conv(nn.Conv2d):
    """``nn.Conv2d`` whose weight gradient is one matrix product when it trains on a CPU on a small map
    (``weight_grad``); the plain call otherwise. Same parameters, so checkpoints are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if takes_matmul_grad(self, x, transposed=False):
            return matmul_grad_conv(self, x, transposed=False)
        return super().forward(x)


class ConvTranspose(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that, when it trains on a CPU, adds its bias after the conv, and otherwise, with few
    outputs, runs as a conv to its output phases.

    - Training on a CPU: oneDNN's backward of a transposed conv with a bias took up to 3.7 ms a step longer
      than without one for the study AE's decoder layers, the bias gradient alone, which a sum over the
      output's gradient gives in a fraction of a millisecond (``benchmarks/conv_bias.py``). On a small
      input map, the weight gradient is also one matrix product (``weight_grad``).
    - Inference, or another device, with few outputs (at most its inputs over the stride squared: the study
      AE's one-channel output layer) and a size exactly ``stride`` times the input's: a conv that gives each
      of the stride^2 output phases as a channel, then ``pixel_shuffle`` (``transposed_phase_taps``).
      oneDNN's transposed conv to one channel took 1.5 times as long in inference
      (``benchmarks/output_layer.py``); training on a CPU with phases did not make the whole step faster.
    - Otherwise, and with ``output_size``, the plain call.

    Same parameters, so checkpoints are unchanged.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, **kwargs) -> None:
        super().__init__(c_in, c_out, kernel, stride=stride, padding=padding, **kwargs)
        exact = (stride > 1 and kernel - 2 * padding == stride and self.groups == 1 and self.dilation == (1, 1)
                 and self.output_padding == (0, 0))
        self.as_phases = exact and c_out * stride ** 2 <= c_in
        taps = transposed_phase_taps(stride, kernel, padding) if self.as_phases else None
        self.register_buffer("phase_taps", taps, persistent=False)

    def forward(self, x: torch.Tensor, output_size: Optional[list[int]] = None) -> torch.Tensor:
        cpu_training = x.device.type == "cpu" and torch.is_grad_enabled() and self.weight.requires_grad
        if output_size is not None or not (cpu_training or self.as_phases):
            return super().forward(x, output_size)
        if not cpu_training:  # weight (in, out, k, l) as a conv's (out, in, k, l)
            return phase_conv(x, self.weight.transpose(0, 1), self.bias, self.phase_taps)
        if takes_matmul_grad(self, x, transposed=True):
            return matmul_grad_conv(self, x, transposed=True)
        y = F.conv_transpose2d(x, self.weight, None, self.stride, self.padding, self.output_padding, self.groups,
                               self.dilation)
        # in place: the conv's backward does not read its output
        return y if self.bias is None else y.add_(self.bias.to(y.dtype).view(1, -1, 1, 1))


def torch_layers(model: nn.Module) -> nn.Module:
    """``model`` with torch's own layers where brainae subclasses them for speed, as the study wrote it:
    ``Conv`` and ``ConvTranspose`` (weight gradients of small maps as one matrix product, bias added after
    the conv when training on a CPU, the output layer as phases in inference) become ``nn.Conv2d`` and
    ``nn.ConvTranspose2d`` again, in place. Same attributes and parameters, so only the class changes; the
    reference that benchmarks and tests compare brainae's layers with."""
    torch_class = {Conv: nn.Conv2d, ConvTranspose: nn.ConvTranspose2d}
    for m in model.modules():
        m.__class__ = torch_class.get(type(m), type(m))
    return model


def transposed_phase_taps(stride: int, kernel: int, padding: int) -> torch.Tensor:
    """(stride, 2 m + 1, kernel) 0/1 array Q such that, along one axis, the transposed conv (stride, kernel,
    padding; output ``stride`` times the input) gives output pixel ``stride i + a`` as the conv of the
    input, offsets -m..m around i, with the taps Q[a] w: tap k reaches it from input pixel
    ``i + (a + padding - k) / stride`` where that is whole.

    Example:
        >>> transposed_phase_taps(2, 4, 1).int().tolist()
        [[[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]]
    """
    offsets = {(a, k): (a + padding - k) // stride for a in range(stride) for k in range(kernel)
               if (a + padding - k) % stride == 0}
    m = max(abs(d) for d in offsets.values())
    q = torch.zeros(stride, 2 * m + 1, kernel)
    for (a, k), d in offsets.items():
        q[a, d + m, k] = 1
    return q


def phase_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], taps: torch.Tensor) -> torch.Tensor:
    """An upsampling layer as one conv to its output phases, then ``pixel_shuffle``: ``weight`` (out, in,
    k, l) and ``taps`` (scale, 2 m + 1, k) from ``upsample_phase_taps`` or ``transposed_phase_taps``."""
    scale = taps.shape[0]
    acc = torch.promote_types(weight.dtype, torch.float32)
    with torch.autocast(x.device.type, enabled=False):  # sums of taps in float32 at least, cast once by the conv
        p = taps.to(acc)  # (out, phase a, phase b, in, row tap, column tap)
        w = torch.einsum("adu,oiuv,bev->oabide", p, weight.to(acc), p).flatten(0, 2).to(weight.dtype)
    b = None if bias is None else bias.repeat_interleave(scale ** 2)
    return F.pixel_shuffle(F.conv2d(x, w, b, padding=(taps.shape[1] - 1) // 2), scale)


class ResBlock(nn.Module):
    """conv -> norm -> act -> conv -> norm, plus the input (1x1 projection when widths differ), -> act.

    Convs followed by a norm carry no bias: the norm's shift replaces it.
    """

    fold_pairs = (("conv1", "norm1"), ("conv2", "norm2"))  # each norm takes its conv's output alone (models/fold.py)

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


def upsample_conv_matrix(scale: int, kernel: int) -> torch.Tensor:
    """(2 (kernel // 2) + scale, kernel) 0/1 matrix P such that, along one axis, a 'same' conv of odd size
    ``kernel`` after nearest upsampling by ``scale`` is the transposed conv (stride ``scale``, padding
    kernel // 2) whose kernel is P w: output pixel ``scale i + a`` sees input pixel ``i + (a + u) // scale``
    through tap u, i.e. the transposed conv's tap ``(a + u) % scale - u + kernel // 2``.

    Example:
        >>> upsample_conv_matrix(2, 3).int().tolist()
        [[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]]
    """
    half = kernel // 2
    p = torch.zeros(2 * half + scale, kernel)
    for u in range(-half, half + 1):
        for a in range(scale):
            p[(a + u) % scale - u + half, u + half] += 1
    return p


def upsample_phase_taps(scale: int, kernel: int) -> torch.Tensor:
    """(scale, 2 m + 1, kernel) 0/1 array Q, m = ceil((kernel // 2) / scale), such that, along one axis, a
    'same' conv of odd size ``kernel`` after nearest upsampling by ``scale`` gives output pixel
    ``scale i + a`` as the conv of the input, offsets -m..m around i, with the taps Q[a] w: tap u reads
    input pixel ``i + (a + u) // scale``.

    Example:
        >>> upsample_phase_taps(2, 3).int().tolist()
        [[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]]
    """
    half = kernel // 2
    m = -(-half // scale)
    q = torch.zeros(scale, 2 * m + 1, kernel)
    for a in range(scale):
        for u in range(-half, half + 1):
            q[a, (a + u) // scale + m, u + half] = 1
    return q


class UpConv(nn.Conv2d):
    """Nearest-neighbour upsampling by ``scale`` followed by a 'same' conv.

    A ``Conv2d`` subclass so that layer hooks (which look for convs opening a Sequential) see a
    decoder level as one layer, like the study's transposed convs. The upsampled image is never made
    (odd kernels, scale > 1): the level runs as the transposed conv it equals (``upsample_conv_matrix``),
    where a 3x3 kernel at scale 2 costs 4 multiply-adds an output pixel instead of 9; or, when it has
    fewer outputs than the scale squared times its inputs allow (the one-channel output layer), as a
    conv giving each of the scale^2 output phases as channels, then ``pixel_shuffle``
    (``upsample_phase_taps``): on this CPU oneDNN ran a transposed conv to one channel slower than that,
    and transposed convs to 8, 16 or 32 channels faster. The parameters are the conv's, so checkpoints
    are unchanged.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, scale: int, bias: bool = True) -> None:
        super().__init__(c_in, c_out, kernel, padding=kernel // 2, bias=bias)
        self.scale = scale
        exact = scale > 1 and kernel % 2 == 1
        self.as_phases = exact and c_out * scale ** 2 <= c_in
        taps = upsample_phase_taps if self.as_phases else upsample_conv_matrix
        # P of the transposed conv, or Q of the phase conv; not saved (checkpoints hold the conv's parameters)
        self.register_buffer("tap_matrix", taps(scale, kernel) if exact else None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tap_matrix is None:
            return super().forward(F.interpolate(x, scale_factor=self.scale, mode="nearest"))
        if self.as_phases:
            return phase_conv(x, self.weight, self.bias, self.tap_matrix)
        acc = torch.promote_types(self.weight.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):  # sums of taps in float32 at least, cast once by the conv
            p = self.tap_matrix.to(acc)
            w = torch.einsum("ku,oiuv,lv->iokl", p, self.weight.to(acc), p).to(self.weight.dtype)
        return F.conv_transpose2d(x, w, self.bias, stride=self.scale, padding=self.kernel_size[0] // 2)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"
