"""An example brainae plugin: a small convolutional autoencoder, added from outside brainae.

``pip install ./examples/plugin_model`` and ``--model tinyae`` works everywhere a model name does:
``brainae models``, ``train``, ``sweep`` (``--space wide`` too), ``study --models ae,tinyae``, the
report, ``export``. Nothing in brainae changes: the package's entry point (pyproject.toml, group
``brainae.models``) names this module, and importing it registers the model with its contract.

A model is a plain ``nn.Module`` whose forward returns a ``ModelOutput`` and whose ``loss`` returns a
dict with ``loss`` and ``mse``; a dataclass of the keyword arguments its builder takes, each named as
the config key it comes from (``latent_dim`` is ``model.latent_dim``; an argument brainae has no key
for, such as ``pool`` here, is ``model.options.pool``); and the builder. The network
checks its own arguments with ValueErrors that start with the argument's name, which brainae reports
as an error in that config key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainae.models.blocks import down_block, up_block
from brainae.models.output import ModelOutput
from brainae.registry import register_model


class TinyAE(nn.Module):
    """Strided conv blocks down to a small map, global average pooling to the code, and back up."""

    def __init__(self, image_size: int, in_channels: int = 1, channels=(8, 16, 32), latent_dim: int = 32,
                 kernel_size: int = 3, stride: int = 2, activation: str = "leaky_relu", norm: str = "batch",
                 pool: str = "mean") -> None:
        super().__init__()
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be mean or max, got '{pool}'")
        self.pool = pool
        widths = [in_channels, *channels]
        self.encoder = nn.Sequential(*[down_block(a, b, kernel_size, stride, norm, activation)
                                       for a, b in zip(widths[:-1], widths[1:])])
        self.side = image_size // stride ** len(channels)
        if self.side < 1:
            raise ValueError(f"channels: {len(channels)} levels of stride {stride} shrink {image_size} px below one pixel")
        self.to_code = nn.Linear(channels[-1], latent_dim)
        self.from_code = nn.Linear(latent_dim, channels[-1] * self.side ** 2)
        ups = [up_block(a, b, stride, norm, activation) for a, b in zip(widths[:0:-1], widths[-2:0:-1])]
        self.decoder = nn.Sequential(*ups, up_block(widths[1], in_channels, stride, None, None))
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.encoder(x)
        z = self.to_code(h.mean(dim=(2, 3)) if self.pool == "mean" else h.amax(dim=(2, 3)))
        h = self.from_code(z).view(len(x), -1, self.side, self.side)
        logits = self.decoder(h)
        return ModelOutput(recon=torch.sigmoid(logits), z=z, logits=logits)

    def loss(self, out: ModelOutput, target: torch.Tensor, recon_loss=None) -> dict[str, torch.Tensor]:
        mse = F.mse_loss(out.recon.float(), target.float())
        return {"loss": recon_loss(out, target) if recon_loss is not None else mse, "mse": mse}


@dataclass
class TinyArgs:
    """What tinyae reads from the config's model section."""

    in_channels: int = 1
    channels: list[int] = field(default_factory=lambda: [8, 16, 32])
    latent_dim: int = 32
    kernel_size: int = 3
    stride: int = 2
    activation: str = "leaky_relu"
    norm: str = "batch"
    pool: str = "mean"  # its own setting, with no key in brainae's config: --set model.options.pool=max


@register_model("tinyae", args=TinyArgs, search={"model.latent_dim": [8, 16, 32], "model.options.pool": ["mean", "max"]},
                source="brainae-tinyae")
def build_tinyae(args: TinyArgs, image_size: int) -> TinyAE:
    """A small conv AE with a pooled code, from the example plugin package (examples/plugin_model)."""
    return TinyAE(image_size, args.in_channels, tuple(args.channels), args.latent_dim, args.kernel_size, args.stride,
                  args.activation, args.norm, args.pool)
