"""U-Net (``unet``): an encoder-decoder with a skip connection at every resolution, for denoising.

It has no bottleneck: the full-resolution skip lets it copy its input, so it is a denoiser (trained
with ``--noise``), not a compressor, and its reconstruction error says nothing about anomalies.
``latent_dim`` is not a setting here; it reports the number of values on the deepest map
(``channels[-1] * (image_size / stride**(depth-1))**2``) and ``z`` is that map, flattened.
There is no ``encode``/``decode``: no code decodes to an image without the skipped features, so
the latent views, which look for those methods, leave it out.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn as nn

from brainae.models.ae import ConvAE, LayerArgs
from brainae.models.blocks import ResBlock, UpConv, activation, norm
from brainae.models.output import ModelOutput
from brainae.models.resae import check_geometry, down_level
from brainae.registry import register_model


class UpMerge(nn.Module):
    """Upsample + conv to the skip's width, concatenate the skip, merge with residual blocks."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm_name: str, act: str, blocks: int) -> None:
        super().__init__()
        self.up = nn.Sequential(UpConv(c_in, c_out, kernel, stride, bias=norm_name == "none"),
                                norm(norm_name, c_out), activation(act))
        # the first block halves the concatenated width (its 1x1 projection carries the identity path)
        self.merge = nn.Sequential(*[ResBlock(2 * c_out if b == 0 else c_out, c_out, kernel, norm_name, act)
                                     for b in range(blocks)])

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([self.up(x), skip], dim=1))  # (B, c_out, H_skip, W_skip)


class UNet(nn.Module):
    """U-Net with residual blocks; level i works at 1/stride**i of the image (level 0 at full size).

    Sub-modules for hooks: ``encoder.0`` .. ``encoder.{D-1}``, ``decoder.0`` .. ``decoder.{D-2}``
    (``decoder.j`` rebuilds level D-2-j; each has ``.up`` and ``.merge``), ``head`` (1x1 conv to the
    logits). Skips are concatenated (the usual U-Net choice: the decoder weighs them freely).

    It can copy its input, so it is for denoising, not compression or anomaly detection.

    Example:
        >>> net = UNet(image_size=64, channels=(8, 16, 32)).eval()
        >>> out = net(torch.rand(2, 1, 64, 64))
        >>> tuple(out.recon.shape), net.latent_dim, tuple(out.z.shape)
        ((2, 1, 64, 64), 8192, (2, 8192))
    """

    bypasses_bottleneck = True

    def __init__(
        self,
        *,
        image_size: int = 128,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        kernel_size: int = 3,
        stride: int = 2,
        activation: str = "leaky_relu",
        norm: str = "batch",
        blocks: int = 1,
    ) -> None:
        super().__init__()
        depth = len(channels)
        check_geometry(image_size, kernel_size, stride, depth - 1, blocks)
        self.image_size, self.in_channels = image_size, in_channels
        self.feature_size = image_size // stride ** (depth - 1)
        self.latent_dim = channels[-1] * self.feature_size ** 2
        widths = [in_channels, *channels]
        # the stride-1 first level keeps full resolution; the others halve it (at stride 2)
        self.encoder = nn.ModuleList([
            down_level(widths[i], widths[i + 1], kernel_size, 1 if i == 0 else stride, norm, activation, blocks)
            for i in range(depth)
        ])
        self.decoder = nn.ModuleList([
            UpMerge(channels[i + 1], channels[i], kernel_size, stride, norm, activation, blocks)
            for i in reversed(range(depth - 1))
        ])
        self.head = nn.Conv2d(channels[0], in_channels, 1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        feats = []
        for level in self.encoder:
            x = level(x)
            feats.append(x)
        h = feats[-1]  # (B, channels[-1], f, f)
        for up, skip in zip(self.decoder, reversed(feats[:-1])):
            h = up(h, skip)
        logits = self.head(h)  # (B, C, H, W)
        return ModelOutput(recon=torch.sigmoid(logits), z=feats[-1].flatten(1), logits=logits)

    loss = ConvAE.loss  # MSE per pixel, or train.loss


@dataclass
class UNetArgs(LayerArgs):
    """unet: the layers and residual blocks per level; no code size (its "latent" is its deepest map,
    set by the channels) and no bottleneck or skips to choose (it skips at every level)."""

    blocks: int = 1


@register_model("unet", args=UNetArgs, search={"model.blocks": [1, 2]})
def build_unet(args: UNetArgs, image_size: int) -> UNet:
    """U-Net denoiser: skips at every level, no bottleneck (it can copy its input; not for anomalies)."""
    return UNet(image_size=image_size, **asdict(args))
