"""Residual output (``model.residual_output: true``): any network predicts the noise, the output is
the input minus that prediction.

A denoiser then only has to learn the noise, and the clean anatomy passes straight through: good
for denoising, and by construction a bypass of any bottleneck (``bypasses_bottleneck`` is True).
``build_model`` applies it on top of whichever model ``model.name`` builds.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from brainae.models.ae import Recon
from brainae.models.output import ModelOutput

LOGIT_EPS = 1e-6  # logits of the output are taken at [eps, 1 - eps] so BCE stays finite


class ResidualOutput(nn.Module):
    """Wraps ``net``: its pre-sigmoid output (``logits``) is read as the noise, ``recon = x - noise``.

    While training the output is not clamped, so the loss has a gradient at every pixel; in
    evaluation it is clamped to [0, 1]. ``logits`` is the logit of the output clamped to
    [eps, 1 - eps], for BCE losses. ``z`` (and ``mu``/``logvar``) are the network's own.

    Everything else (``encode``, ``decode``, ``latent_dim``, ``default_noise``, ...) is the wrapped
    network's, looked up on it when the wrapper has no attribute of that name. Note that ``decode(z)``
    is then the network's decode: the noise estimate through a sigmoid (0.5 = no noise), since
    without an input there is nothing to subtract it from. Sub-modules gain the prefix ``net.``.

    Example:
        >>> from brainae.models.resae import ResAE
        >>> model = ResidualOutput(ResAE(image_size=32, channels=(4, 8), latent_dim=64)).eval()
        >>> x = torch.rand(2, 1, 32, 32)
        >>> out = model(x)
        >>> torch.allclose(out.recon, (x - model.net(x).logits).clamp(0, 1)), model.latent_dim
        (True, 64)
    """

    bypasses_bottleneck = True

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> ModelOutput:
        out = self.net(x)
        recon = x - out.logits  # (B, C, H, W): input minus predicted noise
        if not self.training:
            recon = recon.clamp(0.0, 1.0)
        logits = torch.logit(recon.float(), eps=LOGIT_EPS)
        return ModelOutput(recon=recon, z=out.z, mu=out.mu, logvar=out.logvar, logits=logits)

    def loss(self, out: ModelOutput, target: torch.Tensor, recon_loss: Optional[Recon] = None) -> dict[str, torch.Tensor]:
        """The wrapped network's loss, on the residual output."""
        return self.net.loss(out, target, recon_loss)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers, sub-modules
        except AttributeError:
            # read _modules from __dict__: while unpickling or deep-copying it may not exist yet
            net = self.__dict__.get("_modules", {}).get("net")
            if net is None:
                raise
            return getattr(net, name)
