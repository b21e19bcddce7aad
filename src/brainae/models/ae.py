"""The study's plain autoencoder: conv encoder -> latent vector -> transposed-conv decoder, MSE loss."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainae.models.blocks import down_block, up_block
from brainae.models.output import ModelOutput
from brainae.registry import register_model

Recon = Callable[[ModelOutput, torch.Tensor], torch.Tensor]  # (output, target) -> a loss, a mean per pixel


class ConvAE(nn.Module):
    """Bottleneck autoencoder; depth, widths, kernel, stride, activation and norm are configurable.

    Sub-modules have stable names for hooks: ``encoder.0`` .. ``encoder.{D-1}``, ``fc_enc``,
    ``fc_dec``, ``decoder.0`` .. ``decoder.{D-1}``. The defaults are the study's AE.

    Example:
        >>> out = ConvAE(image_size=64)(torch.rand(2, 1, 64, 64))
        >>> tuple(out.recon.shape), tuple(out.z.shape)
        ((2, 1, 64, 64), (2, 512))
    """

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
    ) -> None:
        super().__init__()
        depth = len(channels)
        check_conv_geometry(image_size, kernel_size, stride, depth)
        self.image_size, self.in_channels, self.latent_dim = image_size, in_channels, latent_dim
        self.feature_size = image_size // stride ** depth  # 4 at 128 px with the study's 5 layers
        self.feature_channels = channels[-1]
        widths = [in_channels, *channels]
        self.encoder = nn.Sequential(
            *[down_block(widths[i], widths[i + 1], kernel_size, stride, norm, activation) for i in range(depth)]
        )
        flat = self.feature_channels * self.feature_size ** 2
        self.fc_enc = self.make_latent_head(flat, latent_dim)
        self.fc_dec = nn.Linear(latent_dim, flat)
        rev = list(reversed(widths))  # 512, 256, 128, 64, 32, 1
        self.decoder = nn.Sequential(*[
            up_block(rev[i], rev[i + 1], stride, norm if i < depth - 1 else None, activation if i < depth - 1 else None)
            for i in range(depth)
        ])

    def make_latent_head(self, flat: int, latent_dim: int) -> nn.Module:
        return nn.Linear(flat, latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)  # (B, C*f*f)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, latent_dim)."""
        return self.fc_enc(self.features(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc_dec(z).view(-1, self.feature_channels, self.feature_size, self.feature_size)
        return self.decoder(h)  # (B, C, H, W), before the sigmoid

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        logits = self.decode_logits(z)
        return ModelOutput(recon=torch.sigmoid(logits), z=z, logits=logits)

    def loss(self, out: ModelOutput, target: torch.Tensor, recon_loss: Optional[Recon] = None) -> dict[str, torch.Tensor]:
        """Mean squared error per pixel (the study's AE loss), or ``recon_loss`` (train.loss) when given.

        ``loss`` is what gets minimised; ``mse`` is always reported so runs stay comparable.
        """
        mse = F.mse_loss(out.recon.float(), target.float())
        if recon_loss is None:
            return {"loss": mse, "mse": mse}
        return {"loss": recon_loss(out, target), "mse": mse}


def check_conv_geometry(image_size: int, kernel_size: int, stride: int, downsamplings: int) -> None:
    """ValueError, naming the argument, when the kernel has no centre or the image cannot be halved
    ``downsamplings`` times."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (3, 5, 7), got {kernel_size}")
    if stride < 1 or image_size % (stride ** downsamplings):
        raise ValueError(
            f"image_size must be divisible by stride**{downsamplings} = {stride}**{downsamplings}, got {image_size}; "
            f"change the image size, the stride or the number of channels"
        )


@dataclass
class LayerArgs:
    """The layer settings every conv network here takes (config keys ``model.<field>``)."""

    in_channels: int = 1
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    kernel_size: int = 3
    stride: int = 2
    activation: str = "leaky_relu"
    norm: str = "batch"


@dataclass
class ConvArgs(LayerArgs):
    """The study's AE: its layers and the size of its code."""

    latent_dim: int = 512


@register_model("ae", args=ConvArgs)
def build_ae(args: ConvArgs, image_size: int) -> ConvAE:
    """The study's autoencoder (5 conv + BatchNorm + LeakyReLU, latent vector, 5 transposed convs)."""
    return ConvAE(image_size=image_size, **asdict(args))
