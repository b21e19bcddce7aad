"""The study's variational autoencoder: the AE backbone with mu / log-variance heads, BCE + KL loss."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainae.models.ae import ConvAE, ConvArgs, Recon
from brainae.models.output import ModelOutput
from brainae.models.prior import MixturePrior
from brainae.registry import register_model


class Variational:
    """What makes an autoencoder variational, for any backbone that defines ``encode_dist`` (x -> mu,
    log-variance), ``decode_logits`` and ``decode``, and sets ``beta``, ``reduction`` and ``latent_dim``.

    A mixin placed before the backbone class (``class ConvVAE(Variational, ConvAE)``), so the
    study's VAE and every other variational variant sample, train and score the same way.
    """

    def __init__(self, *, beta: float = 1.0, reduction: str = "sum", likelihood: str = "bernoulli", **kwargs) -> None:
        super().__init__(**kwargs)
        self.beta, self.reduction, self.likelihood = beta, reduction, likelihood
        self.code_prior: Optional[MixturePrior] = None  # fitted to training codes after training (prior.py)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_dist(x)[0]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.encode_dist(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        logits = self.decode_logits(z)
        return ModelOutput(recon=torch.sigmoid(logits), z=z, mu=mu, logvar=logvar, logits=logits)

    def loss(self, out: ModelOutput, target: torch.Tensor, recon_loss: Optional[Recon] = None) -> dict[str, torch.Tensor]:
        """Reconstruction term (BCE, Gaussian, or ``recon_loss`` given per pixel) plus beta * KL; see ``vae_loss``."""
        return vae_loss(out, target, self.beta, self.reduction, recon_loss, self.likelihood)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, prior: str = "fitted") -> torch.Tensor:
        """Decode ``n`` draws from the mixture fitted to the training codes (``prior="fitted"``, when the
        run has one) or from the standard normal N(0, I) (``prior="normal"``, or when it has none)."""
        device = next(self.parameters()).device
        if prior == "fitted" and self.code_prior is not None:
            z = self.code_prior.to(device).sample(n, generator=generator)
        else:
            z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.decode(z)


class ConvVAE(Variational, ConvAE):
    """z = mu + sigma * eps while training, z = mu in evaluation.

    reduction "sum": BCE summed over pixels plus KL summed over latent units, per image (the study's
    loss; the study also summed over the batch, so its logged value is this times the batch size).
    reduction "mean": BCE per pixel plus beta * KL / pixels, comparable across image sizes.

    Example:
        >>> vae = ConvVAE(image_size=64, latent_dim=16).eval()
        >>> vae.sample(3).shape
        torch.Size([3, 1, 64, 64])
    """

    def make_latent_head(self, flat: int, latent_dim: int) -> nn.Module:
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)
        return nn.Identity()  # fc_enc unused: the heads above replace it

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.fc_mu(h), bound_logvar(self.fc_logvar(h))


def bound_logvar(logvar: torch.Tensor, low: float = -30.0, high: float = 20.0) -> torch.Tensor:
    """``logvar`` clamped to [low, high] in value, with the gradient of the unclamped tensor.

    The bound keeps exp() finite early on. A plain clamp also zeroes the gradient outside it: a
    learning-rate spike that threw the log-variances below -30 left them there for good (each unit
    stuck adds 14.5 to the KL term per image), since the KL term's pull back up never got through.
    """
    return logvar + (logvar.clamp(low, high) - logvar).detach()


def vae_loss(out: ModelOutput, target: torch.Tensor, beta: float, reduction: str,
             recon_loss: Optional[Recon] = None, likelihood: str = "bernoulli") -> dict[str, torch.Tensor]:
    """Reconstruction term + beta * KL per image (reduction sum) or per pixel (mean); shared by every
    variational model.

    likelihood "bernoulli": BCE, the study's. "gaussian": a Gaussian decoder whose variance is the
    batch's mean squared error, the value that maximises the likelihood, so the term is
    pixels / 2 * ln(2 pi e MSE) per image. (A variance per image would reward near-perfect easy
    images without bound.) BCE on grey levels acts like a Gaussian with a standard deviation
    near 0.2-0.5: a weak pull towards detail against the KL term. The fitted variance weighs the two
    in the images' own error scale, without tuning beta.
    ``recon_loss`` (a per-pixel mean, train.loss) replaces either, scaled to a sum over pixels under
    reduction "sum" so its balance against the KL term matches BCE's.
    """
    target = target.float()
    batch, pixels = target.shape[0], target[0].numel()
    kl = -0.5 * torch.sum(1 + out.logvar - out.mu.pow(2) - out.logvar.exp()) / batch
    mse = F.mse_loss(out.recon.float(), target)
    if recon_loss is not None:
        recon = recon_loss(out, target) * pixels
    elif likelihood == "gaussian":
        recon = 0.5 * pixels * torch.log(2 * math.pi * math.e * mse.clamp_min(1e-8))
    else:
        # logits form: numerically safe, and allowed under mixed precision autocast
        recon = F.binary_cross_entropy_with_logits(out.logits.float(), target, reduction="sum") / batch
    loss = recon + beta * kl if reduction == "sum" else (recon + beta * kl) / pixels
    name = "recon" if recon_loss is not None else {"gaussian": "nll"}.get(likelihood, "bce")
    return {"loss": loss, name: recon / pixels, "kl": kl, "mse": mse}


@dataclass
class VariationalArgs:
    """What every variational model takes besides its layers (config keys ``model.<field>``)."""

    beta: float = 1.0  # weight of the KL term
    vae_reduction: str = "sum"  # sum: BCE + KL summed over pixels (the study) | mean: per pixel
    likelihood: str = "bernoulli"  # bernoulli (BCE, the study) | gaussian (variance fitted per batch)


def variational_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A variational model's arguments as its network's keyword arguments (``Variational`` calls
    ``vae_reduction`` ``reduction``)."""
    kwargs = dict(kwargs)
    kwargs["reduction"] = kwargs.pop("vae_reduction")
    return kwargs


@dataclass
class VAEArgs(VariationalArgs, ConvArgs):
    """The study's VAE: the AE's layers and code, and the variational settings."""


@register_model("vae", args=VAEArgs, variational=True)
def build_vae(args: VAEArgs, image_size: int) -> ConvVAE:
    """The study's VAE (same backbone, mu/log-variance heads, BCE + KL)."""
    return ConvVAE(image_size=image_size, **variational_kwargs(asdict(args)))
