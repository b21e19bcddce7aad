"""Skip autoencoder (``skipae``): the resae backbone plus skip connections from chosen encoder levels.

``model.skips`` lists encoder levels (0 = finest, at half the image size) whose output is *added* to
the decoder at the level that has the same shape. Addition rather than concatenation, because then
the layers and parameter count do not depend on ``skips``: ``skips: []`` and ``skips: [0]`` are the
same network and differ only in which information may bypass the bottleneck, which is what a
comparison of them should measure. With ``skips: []`` it is exactly ``resae``: the output depends
on the input only through the code ``z``.

A skip lets detail around the code, so reconstruction error no longer measures what the code keeps
(the finest skip nearly allows copying the input): ``bypasses_bottleneck`` says so to the views
that care.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from brainae.models.output import ModelOutput
from brainae.models.resae import ResAE, ResArgs, res_kwargs
from brainae.registry import register_model


class SkipAE(ResAE):
    """ResAE whose decoder also receives encoder level i for each i in ``skips`` (added, see the module doc).

    ``decode(z)`` has no encoder features, so it decodes with the skipped features taken as zero:
    what the code alone carries. Sub-module names are ResAE's.

    Example:
        >>> model = SkipAE(image_size=64, channels=(8, 16, 32), latent_dim=64, skips=(0,)).eval()
        >>> out = model(torch.rand(2, 1, 64, 64))
        >>> tuple(out.recon.shape), tuple(out.z.shape), model.bypasses_bottleneck
        ((2, 1, 64, 64), (2, 64), True)
    """

    def __init__(self, *, skips: Sequence[int] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        depth = len(self.encoder)
        bad = [s for s in skips if not 0 <= s < depth]
        if bad:
            raise ValueError(
                f"skips has levels {bad} outside 0..{depth - 1} "
                f"(one level per channels entry, 0 = finest); remove them"
            )
        self.skips = tuple(sorted(set(skips)))
        self.bypasses_bottleneck = bool(self.skips)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        feats = self.encode_levels(x)
        z = self.code(feats[-1])
        logits = self.decode_logits(z, {i: feats[i] for i in self.skips})
        return ModelOutput(recon=torch.sigmoid(logits), z=z, logits=logits)


@dataclass
class SkipArgs(ResArgs):
    """skipae: resae's settings and the encoder levels whose features bypass the bottleneck."""

    skips: list[int] = field(default_factory=list)


@register_model("skipae", args=SkipArgs, search={
    "model.blocks": [1, 2], "model.skips": [[], [0], [0, 1]], "model.bottleneck": ["dense", "spatial"]})
def build_skipae(args: SkipArgs, image_size: int) -> SkipAE:
    """Residual AE with skips from the encoder levels in model.skips (added; [] = a pure bottleneck AE)."""
    return SkipAE(image_size=image_size, **res_kwargs(args))
