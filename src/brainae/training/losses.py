"""Reconstruction losses chosen by ``train.loss``: mse, l1, bce, ssim, ms_ssim and weighted mixes.

Every loss maps ``(ModelOutput, clean target)`` to a mean per pixel, so a VAE can use any of them in
place of BCE (``vae_loss`` scales it to a sum over pixels). SSIM and MS-SSIM are torchmetrics'
differentiable implementations (Gaussian window 11, sigma 1.5, data range 1), used as ``1 - SSIM``.

MS-SSIM uses 3 scales at 128 px, not the usual 5: each scale halves the image, and the 11-pixel
window must still fit on the coarsest one (5 scales need more than 160 px). The first three of the
standard scale weights are renormalised to sum to 1. Smaller images get fewer scales.

``psnr`` is minus the mean PSNR of the images in the batch (data range 1, in dB): what denoising
benchmarks report. MSE over a batch lets the worst images dominate, so a blind denoiser trained on
a range of noise levels spends its capacity on the highest ones; ``psnr`` counts a decibel gained on
a lightly noisy image as much as one on a very noisy image. It is not a per-pixel mean, so variational
models refuse it.

A mix is written ``W*NAME+W*NAME`` (weights default to 1); ``mixed`` is ``0.16*l1+0.84*ms_ssim``,
the L1 / MS-SSIM mix known to preserve both intensities and structure.

Example:
    >>> import torch
    >>> from brainae.models.output import ModelOutput
    >>> x = torch.full((1, 1, 64, 64), 0.5)
    >>> float(parse_loss("0.5*l1+mse")(ModelOutput(recon=x + 0.1, z=x), x))  # 0.5 * 0.1 + 0.01
    0.06
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure as ms_ssim_fn,
    structural_similarity_index_measure as ssim_fn,
)

from brainae.errors import BrainaeError
from brainae.models.output import ModelOutput
from brainae.registry import get, load_entry_points, names, register, register_check

Loss = Callable[[ModelOutput, torch.Tensor], torch.Tensor]
MIXED = "0.16*l1+0.84*ms_ssim"
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # the standard five-scale weights
WINDOW = 11


@register("loss", "mse")
def mse(out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error (the study's AE loss)."""
    return F.mse_loss(out.recon.float(), target.float())


@register("loss", "l1")
def l1(out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error: less blur than MSE on edges."""
    return F.l1_loss(out.recon.float(), target.float())


@register("loss", "bce")
def bce(out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per pixel, from the logits when the model gives them (numerically safe)."""
    if out.logits is not None:
        return F.binary_cross_entropy_with_logits(out.logits.float(), target.float())
    return F.binary_cross_entropy(out.recon.float().clamp(1e-6, 1 - 1e-6), target.float())


@register("loss", "psnr")
def psnr(out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
    """Minus the mean PSNR over the images (data range 1): every image weighs the same in decibels."""
    per_image = (out.recon.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(per_image + 1e-10).mean()


@register("loss", "ssim")
def ssim(out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM (Gaussian window 11, sigma 1.5)."""
    return 1.0 - ssim_fn(out.recon.float(), target.float(), data_range=1.0)


def ms_ssim_scales(size: int) -> int:
    """How many MS-SSIM scales fit an image of ``size`` pixels (at most 3; see the module doc)."""
    scales = 3
    while scales > 1 and size <= (WINDOW - 1) * 2 ** (scales - 1):
        scales -= 1
    return scales


@register("loss", "ms_ssim")
def ms_ssim(out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
    """1 - MS-SSIM over 3 scales at 128 px (fewer on small images)."""
    scales = ms_ssim_scales(min(target.shape[-2:]))
    if scales == 1:
        return ssim(out, target)
    w = torch.tensor(MS_SSIM_WEIGHTS[:scales])
    betas = tuple(float(b) for b in w / w.sum())
    return 1.0 - ms_ssim_fn(out.recon.float(), target.float(), data_range=1.0, betas=betas, normalize="relu")


def loss_names() -> list[str]:
    return names("loss")


@register_check("train.loss")
def parse_loss(spec: str) -> Optional[Loss]:
    """A loss for ``train.loss``; "" gives None (the model's own loss). Bad specs raise BrainaeError."""
    spec = (spec or "").strip().replace(" ", "")
    if not spec:
        return None
    if spec == "mixed":
        spec = MIXED
    terms: list[tuple[float, Loss]] = []
    for part in spec.split("+"):
        weight, star, name = part.rpartition("*")
        if name not in loss_names():
            raise BrainaeError(f"config key 'train.loss': unknown loss '{name}' in '{spec}' "
                               f"(choose from {', '.join(loss_names())}, mixed, or a mix like 0.2*l1+0.8*ms_ssim)")
        try:
            w = float(weight) if star else 1.0
        except ValueError:
            raise BrainaeError(f"config key 'train.loss': weight '{weight}' in '{spec}' is not a number") from None
        terms.append((w, get("loss", name)))
    if len(terms) == 1 and terms[0][0] == 1.0:
        return terms[0][1]

    def mix(out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        return sum(w * fn(out, target) for w, fn in terms)

    return mix


load_entry_points("brainae.losses")  # losses of installed plugins, registered with @register
