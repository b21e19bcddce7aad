"""Weight gradients of convs on small maps as one matrix product, for training on a CPU.

oneDNN's bf16 weight-gradient kernels ran at 130-260 GFLOP/s on most of the study AE's layers, against 320-440
for its forward kernels (``benchmarks/results/conv_kernels_cpu.md``). Where the map is small and the
channels many, the gradient is better computed as what it is, a sum over every image and pixel of an
input patch times the output's gradient: one gather of the patches (``patches``) and one matrix
product, whose BLAS kernel runs near the machine's peak on such shapes. On large
maps the gather costs more than it saves, so only layers whose coarse side (a conv's output, a
transposed conv's input) has at most ``SMALL_MAP`` pixels take this path: in the study's AE, its deepest
conv and first transposed conv. With 8x8 maps too, the layers alone were still faster but the whole
training step less so (``benchmarks/weight_grad.py``).
The forward pass and the input's gradient stay oneDNN's.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

SMALL_MAP = 16  # pixels per image on the coarse side: 4x4 or fewer


def nhwc(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W, C), a view when ``t`` is channels-last."""
    return t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)


def patches(t: torch.Tensor, out_h: int, out_w: int, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """(N * out_h * out_w, kernel * kernel * C): row (n, i, j) holds the kernel-sized patch of the NHWC
    tensor ``t``, zero-padded by ``padding``, whose corner is pixel (stride i, stride j)."""
    t = F.pad(t, (0, 0, padding, padding, padding, padding))
    n, _, _, c = t.shape
    s_n, s_h, s_w, _ = t.stride()
    view = t.as_strided((n, out_h, out_w, kernel, kernel, c), (s_n, stride * s_h, stride * s_w, s_h, s_w, 1))
    return view.reshape(n * out_h * out_w, kernel * kernel * c)


class MatmulWeightGrad(torch.autograd.Function):
    """A conv (or transposed conv) without bias whose weight gradient is one matrix product.

    Conv, weight (out, in, k, k): dW[o, c, u, v] = sum over n, i, j of dY[n, o, i, j] X[n, c, s i + u - p, s j + v - p].
    Transposed conv, weight (in, out, k, k): dW[c, o, u, v] = sum of X[n, c, i, j] dY[n, o, s i + u - p, s j + v - p].
    Either way the sum runs over the pixels of the coarse side and the patches come from the fine side.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, transposed: bool, stride: int, padding: int):
        ctx.save_for_backward(x, weight)
        ctx.transposed, ctx.stride, ctx.padding = transposed, stride, padding
        conv = F.conv_transpose2d if transposed else F.conv2d
        return conv(x, weight, None, stride, padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        s, p, k = ctx.stride, ctx.padding, weight.shape[-1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, [s, s], [p, p], [1, 1], ctx.transposed,
                                                         [0, 0], 1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            coarse, fine = (x, grad) if ctx.transposed else (grad, x)
            rows = nhwc(coarse).reshape(-1, coarse.shape[1])  # (N * coarse pixels, channels)
            cols = patches(nhwc(fine), coarse.shape[2], coarse.shape[3], k, s, p)
            grad_w = (rows.t() @ cols).view(coarse.shape[1], k, k, fine.shape[1]).permute(0, 3, 1, 2)
        return grad_x, grad_w, None, None, None


def takes_matmul_grad(layer: nn.Module, x: torch.Tensor, transposed: bool) -> bool:
    """Whether ``layer`` (a square, ungrouped, undilated 2-D conv) trains on a CPU here on a small map."""
    if x.device.type != "cpu" or not (torch.is_grad_enabled() and layer.weight.requires_grad):
        return False
    if torch.compiler.is_compiling():  # torch.compile writes its own kernels for the whole graph
        return False
    k, s, p = layer.kernel_size, layer.stride, layer.padding
    if isinstance(p, str) or x.dim() != 4:  # padding "same" / "valid", or an unbatched image
        return False
    if (layer.groups != 1 or layer.dilation != (1, 1) or k[0] != k[1] or s[0] != s[1] or p[0] != p[1]
            or getattr(layer, "output_padding", (0, 0)) != (0, 0)):
        return False
    h, w = x.shape[-2:]
    if transposed:
        return h * w <= SMALL_MAP
    out_h, out_w = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    return out_h * out_w <= SMALL_MAP


def matmul_grad_conv(layer: nn.Module, x: torch.Tensor, transposed: bool) -> torch.Tensor:
    """``layer``'s output through ``MatmulWeightGrad``, its bias added after, in autocast's dtype when on."""
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    y = MatmulWeightGrad.apply(x.to(dtype), layer.weight.to(dtype), transposed, layer.stride[0], layer.padding[0])
    bias: Optional[torch.Tensor] = layer.bias
    return y if bias is None else y.add_(bias.to(y.dtype).view(1, -1, 1, 1))
