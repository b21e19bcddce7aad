"""Residual autoencoder (``resae``) and its variational twin (``resvae``).

Each encoder level is a strided conv (-> norm -> activation) followed by ``model.blocks`` residual
blocks; each decoder level upsamples (nearest) and convolves, which avoids the checkerboard
artefacts of transposed convs, then runs its residual blocks. The code is a true bottleneck of
``latent_dim`` values, either ``spatial`` (a 1x1 conv to ``latent_dim / (f*f)`` channels on the
f x f deepest map, the default here) or ``dense`` (flatten + linear, like the study's AE).

The residual block, the upsampling conv and the level builders here are shared by ``skipae`` and
``unet``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn

from brainae.models.ae import ConvAE, ConvArgs, check_conv_geometry
from brainae.models.blocks import ResBlock, UpConv, activation, norm
from brainae.models.output import ModelOutput
from brainae.models.vae import Variational, VariationalArgs, bound_logvar, variational_kwargs
from brainae.registry import register_model

BOTTLENECKS = ("spatial", "dense")


def down_level(c_in: int, c_out: int, kernel: int, stride: int, norm_name: str, act: str, blocks: int) -> nn.Sequential:
    """Strided conv -> norm -> act, then ``blocks`` residual blocks (stride 1 keeps the size)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=norm_name == "none"),
        norm(norm_name, c_out),
        activation(act),
        *[ResBlock(c_out, c_out, kernel, norm_name, act) for _ in range(blocks)],
    )


def up_level(c_in: int, c_out: int, kernel: int, stride: int, norm_name: str, act: str, blocks: int,
             last: bool = False) -> nn.Sequential:
    """Upsample + conv -> norm -> act, then ``blocks`` residual blocks; the ``last`` level is the bare
    conv that gives the logits."""
    if last:
        return nn.Sequential(UpConv(c_in, c_out, kernel, stride))
    return nn.Sequential(
        UpConv(c_in, c_out, kernel, stride, bias=norm_name == "none"),
        norm(norm_name, c_out),
        activation(act),
        *[ResBlock(c_out, c_out, kernel, norm_name, act) for _ in range(blocks)],
    )


def check_geometry(image_size: int, kernel_size: int, stride: int, downsamplings: int, blocks: int) -> None:
    """ValueError, naming the argument, when the image cannot pass the network."""
    check_conv_geometry(image_size, kernel_size, stride, downsamplings)
    if blocks < 1:
        raise ValueError(f"blocks must be at least 1, got {blocks}")


class ResAE(nn.Module):
    """Residual bottleneck autoencoder; every path from input to output passes the ``latent_dim`` code.

    Sub-modules for hooks: ``encoder.0`` .. ``encoder.{D-1}`` (level i at 1/stride**(i+1) of the
    image, width ``channels[i]``), ``bottleneck`` (to the code), ``expand`` (code back to the
    deepest map), ``decoder.0`` .. ``decoder.{D-1}`` (``decoder.{D-1}`` gives the logits).

    Example:
        >>> model = ResAE(image_size=64, channels=(8, 16, 32), latent_dim=64).eval()
        >>> out = model(torch.rand(2, 1, 64, 64))
        >>> tuple(out.recon.shape), tuple(out.z.shape), model.feature_size
        ((2, 1, 64, 64), (2, 64), 8)
    """

    bypasses_bottleneck = False
    heads = 1  # bottleneck outputs per code value: 1 (the code), 2 for the variational model (mu, log-variance)

    def __init__(
        self,
        *,
        image_size: int = 128,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        latent_dim: int = 512,
        kernel_size: int = 3,
        stride: int = 2,
        activation: str = "leaky_relu",
        norm: str = "batch",
        blocks: int = 1,
        bottleneck: str = "spatial",
    ) -> None:
        super().__init__()
        depth = len(channels)
        check_geometry(image_size, kernel_size, stride, depth, blocks)
        if bottleneck not in BOTTLENECKS:
            raise ValueError(f"bottleneck must be auto, dense or spatial, got '{bottleneck}'")
        f = image_size // stride ** depth
        if bottleneck == "spatial" and latent_dim % (f * f):
            raise ValueError(
                f"latent_dim {latent_dim} must be divisible by {f * f} for bottleneck "
                f"spatial (the deepest map is {f}x{f} at {image_size} px); use a multiple of {f * f} or bottleneck dense"
            )
        self.image_size, self.in_channels, self.latent_dim = image_size, in_channels, latent_dim
        self.feature_size, self.feature_channels, self.bottleneck_kind = f, channels[-1], bottleneck
        self.code_channels = latent_dim // (f * f) if bottleneck == "spatial" else 0
        widths = [in_channels, *channels]
        self.encoder = nn.ModuleList(
            [down_level(widths[i], widths[i + 1], kernel_size, stride, norm, activation, blocks) for i in range(depth)]
        )
        heads = self.heads
        if bottleneck == "spatial":
            self.bottleneck = nn.Conv2d(self.feature_channels, heads * self.code_channels, 1)
            self.expand = nn.Conv2d(self.code_channels, self.feature_channels, 1)
        else:
            flat = self.feature_channels * f * f
            self.bottleneck = nn.Linear(flat, heads * latent_dim)
            self.expand = nn.Linear(latent_dim, flat)
        rev = widths[::-1]
        self.decoder = nn.ModuleList([
            up_level(rev[j], rev[j + 1], kernel_size, stride, norm, activation, blocks, last=j == depth - 1)
            for j in range(depth)
        ])

    def encode_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every encoder level, finest first: level i is (B, channels[i], H/s**(i+1), W/s**(i+1))."""
        feats = []
        for level in self.encoder:
            x = level(x)
            feats.append(x)
        return feats

    def code(self, deepest: torch.Tensor) -> torch.Tensor:
        """Deepest map (B, C, f, f) -> bottleneck output (B, heads * latent_dim)."""
        if self.bottleneck_kind == "spatial":
            return self.bottleneck(deepest).flatten(1)  # (B, heads * latent_dim), channel-major
        return self.bottleneck(deepest.flatten(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, latent_dim)."""
        return self.code(self.encode_levels(x)[-1])

    def decode_logits(self, z: torch.Tensor, skip_features: Optional[dict[int, torch.Tensor]] = None) -> torch.Tensor:
        """(B, latent_dim) -> logits (B, C, H, W); ``skip_features`` (encoder level -> map) are added
        at the decoder level that consumes that level's shape (skipae)."""
        f = self.feature_size
        if self.bottleneck_kind == "spatial":
            h = self.expand(z.reshape(-1, self.code_channels, f, f))
        else:
            h = self.expand(z).reshape(-1, self.feature_channels, f, f)  # (B, C, f, f)
        depth = len(self.decoder)
        for j, level in enumerate(self.decoder):
            if skip_features and depth - 1 - j in skip_features:
                h = h + skip_features[depth - 1 - j]
            h = level(h)
        return h

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        logits = self.decode_logits(z)
        return ModelOutput(recon=torch.sigmoid(logits), z=z, logits=logits)

    loss = ConvAE.loss  # MSE per pixel, or train.loss


class ResVAE(Variational, ResAE):
    """Variational ResAE: the bottleneck gives mu and log-variance (for ``spatial``, a 1x1 conv to
    2 * latent_dim / (f*f) channels; for ``dense``, one linear layer to 2 * latent_dim), split in half.

    z = mu + sigma * eps while training, mu in evaluation; loss as the study's VAE (see ``vae_loss``).

    Example:
        >>> vae = ResVAE(image_size=64, channels=(8, 16, 32), latent_dim=64).eval()
        >>> vae.sample(3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1, 64, 64])
    """

    heads = 2

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encode_levels(x)[-1]
        if self.bottleneck_kind == "spatial":
            mu, logvar = self.bottleneck(h).chunk(2, dim=1)  # (B, latent/(f*f), f, f) each
            mu, logvar = mu.flatten(1), logvar.flatten(1)
        else:
            mu, logvar = self.bottleneck(h.flatten(1)).chunk(2, dim=1)
        return mu, bound_logvar(logvar)


@dataclass
class ResArgs(ConvArgs):
    """resae: the AE's layers and code, residual blocks per level, and the bottleneck's form."""

    blocks: int = 1
    bottleneck: str = "auto"  # dense | spatial | auto: the model's choice (spatial here)


def res_kwargs(args: ResArgs, default_bottleneck: str = "spatial") -> dict:
    """The network's keyword arguments; ``bottleneck: auto`` becomes ``default_bottleneck``."""
    kwargs = asdict(args)
    if kwargs["bottleneck"] == "auto":
        kwargs["bottleneck"] = default_bottleneck
    return kwargs


@dataclass
class ResVAEArgs(VariationalArgs, ResArgs):
    """resvae: resae's settings and the variational ones."""


@register_model("resae", args=ResArgs, search={"model.blocks": [1, 2], "model.bottleneck": ["dense", "spatial"]})
def build_resae(args: ResArgs, image_size: int) -> ResAE:
    """Residual AE: residual blocks, upsample+conv decoder, spatial (or dense) bottleneck of latent_dim."""
    return ResAE(image_size=image_size, **res_kwargs(args))


@register_model("resvae", args=ResVAEArgs, variational=True, search={"model.blocks": [1, 2]})
def build_resvae(args: ResVAEArgs, image_size: int) -> ResVAE:
    """Residual VAE: the resae backbone with mu/log-variance heads, BCE + beta * KL, samples from N(0, I)."""
    return ResVAE(image_size=image_size, **variational_kwargs(res_kwargs(args)))
