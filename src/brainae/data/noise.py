"""Noise models shared by training (denoising autoencoders) and evaluation (``brainae denoise``).

A spec string names a registered noise and one or more levels, on images scaled to [0, 1]:

    gaussian:0.3          additive white Gaussian noise, standard deviation 0.3
    rician:0.1            magnitude MRI noise: |x + s*n1 + i*s*n2| with n1, n2 standard normal
    salt_pepper:0.05      5% of the pixels set to 0 or 1 (half each)
    poisson:0.1           shot noise scaled so the standard deviation at intensity 1 is 0.1
                          (photon count at intensity 1 = 1 / level**2)
    gaussian:0.1,0.2,0.3  several levels: ``parse_noise_levels`` gives one noise per level; training
                          with such a spec draws a level per image
    gaussian:0.02-0.35    a range, for blind denoisers: training draws each image's level uniformly
                          from it, so one model serves every level in between

Every noisy image is clipped to [0, 1]. Noise is drawn from a ``torch.Generator`` (or an int
seed), so evaluation can give every method the same noisy images.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from brainae.errors import BrainaeError
from brainae.registry import get, load_entry_points, names, register, register_check

Seed = Union[None, int, torch.Generator]
SPEC_EXAMPLE = "e.g. gaussian:0.3, rician:0.1, salt_pepper:0.05, poisson:0.1 or gaussian:0.1,0.2,0.3"


def _randn(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
    return torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


@register("noise", "gaussian")
def gaussian(x: torch.Tensor, level: float, g: Optional[torch.Generator]) -> torch.Tensor:
    """Additive white Gaussian noise with standard deviation ``level``."""
    return x + level * _randn(x, g)


@register("noise", "rician")
def rician(x: torch.Tensor, level: float, g: Optional[torch.Generator]) -> torch.Tensor:
    """Magnitude of a complex signal with Gaussian noise (sigma ``level``) in both channels: MRI magnitude noise.

    Biased upwards where the signal is low: at x = 0 the mean is level * sqrt(pi / 2).
    """
    real = x + level * _randn(x, g)
    imag = level * _randn(x, g)
    return torch.sqrt(real ** 2 + imag ** 2)


@register("noise", "salt_pepper")
def salt_pepper(x: torch.Tensor, level: float, g: Optional[torch.Generator]) -> torch.Tensor:
    """A fraction ``level`` of the pixels replaced by 0 (pepper) or 1 (salt), half each."""
    u = torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype)
    out = x.clone()
    out[u < level / 2] = 0.0
    out[u > 1 - level / 2] = 1.0
    return out


@register("noise", "poisson")
def poisson(x: torch.Tensor, level: float, g: Optional[torch.Generator]) -> torch.Tensor:
    """Shot noise: Poisson(x * peak) / peak with peak = 1 / level**2 (standard deviation level * sqrt(x))."""
    peak = 1.0 / level ** 2
    return torch.poisson(x.clamp_min(0) * peak, generator=g) / peak


_LEVEL_RANGE = {"salt_pepper": (0.0, 1.0)}  # a fraction; the others are positive standard deviations


@dataclass(frozen=True)
class Noise:
    """One noise at one level; call it on a tensor or array in [0, 1].

    Example:
        >>> noisy = parse_noise("gaussian:0.3")(torch.full((1, 1, 8, 8), 0.5), generator=0)
        >>> noisy.shape, bool(noisy.min() >= 0 and noisy.max() <= 1)
        (torch.Size([1, 1, 8, 8]), True)
    """

    kind: str
    level: float

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.level:g}"

    def __call__(self, x, generator: Seed = None):
        """``x``: float tensor or numpy array in [0, 1] (any shape); returns the same type, clipped to [0, 1]."""
        is_numpy = isinstance(x, np.ndarray)
        t = torch.from_numpy(np.asarray(x, dtype=np.float32)) if is_numpy else x
        g = _generator(generator, t.device)
        out = get("noise", self.kind)(t.float(), self.level, g).clamp_(0.0, 1.0).to(t.dtype)
        return out.numpy() if is_numpy else out


@dataclass(frozen=True)
class NoiseMix:
    """Several levels of one noise; each image (first axis) gets a level drawn at random. For training."""

    noises: tuple[Noise, ...]

    @property
    def spec(self) -> str:
        return f"{self.noises[0].kind}:" + ",".join(f"{n.level:g}" for n in self.noises)

    def __call__(self, x: torch.Tensor, generator: Seed = None) -> torch.Tensor:
        g = _generator(generator, x.device)
        pick = torch.randint(len(self.noises), (x.shape[0],), generator=g, device=x.device)
        out = torch.empty_like(x)
        for i, noise in enumerate(self.noises):
            sel = pick == i
            if sel.any():
                out[sel] = noise(x[sel], g)
        return out


@dataclass(frozen=True)
class NoiseRange:
    """One noise with each image's level drawn uniformly from [low, high]: blind-denoiser training."""

    kind: str
    low: float
    high: float

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.low:g}-{self.high:g}"

    def __call__(self, x: torch.Tensor, generator: Seed = None) -> torch.Tensor:
        g = _generator(generator, x.device)
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # one level per image, broadcast over its pixels
        level = self.low + (self.high - self.low) * torch.rand(shape, generator=g, device=x.device)
        return get("noise", self.kind)(x.float(), level, g).clamp_(0.0, 1.0).to(x.dtype)


def _generator(seed: Seed, device) -> Optional[torch.Generator]:
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    return torch.Generator(device=device).manual_seed(int(seed))


def noise_names() -> list[str]:
    return names("noise")


def parse_noise_levels(spec: str) -> list[Noise]:
    """``"gaussian:0.1,0.2"`` -> [Noise("gaussian", 0.1), Noise("gaussian", 0.2)]; bad specs raise BrainaeError.

    Example:
        >>> [n.spec for n in parse_noise_levels("rician:0.05,0.1")]
        ['rician:0.05', 'rician:0.1']
    """
    kind, sep, levels = str(spec).strip().partition(":")
    kind = kind.strip().replace("-", "_").replace("saltpepper", "salt_pepper")
    choices = ", ".join(noise_names())
    if kind not in noise_names() or not sep:
        raise BrainaeError(f"noise '{spec}': write KIND:LEVEL[,LEVEL...] with KIND one of {choices} ({SPEC_EXAMPLE})")
    out = []
    for raw in levels.split(","):
        try:
            level = float(raw)
        except ValueError:
            raise BrainaeError(f"noise '{spec}': level '{raw}' is not a number ({SPEC_EXAMPLE})") from None
        lo, hi = _LEVEL_RANGE.get(kind, (0.0, float("inf")))
        if not lo < level <= hi:
            raise BrainaeError(f"noise '{spec}': level {raw} must be in ({lo:g}, {hi:g}] for {kind}")
        out.append(Noise(kind, level))
    return out


@register_check("train.noise")
def parse_noise(spec: str) -> Union[Noise, NoiseMix, NoiseRange]:
    """A callable ``(x, generator) -> noisy x`` for ``spec``; several levels or a range give per-image levels.

    Example:
        >>> parse_noise("gaussian:0.1,0.3").spec, parse_noise("rician:0.02-0.2").spec
        ('gaussian:0.1,0.3', 'rician:0.02-0.2')
    """
    kind, _, levels = str(spec).strip().partition(":")
    if "-" in levels.strip().lstrip("-"):
        low, _, high = levels.partition("-")
        lo, hi = parse_noise_levels(f"{kind}:{low},{high}")
        if not lo.level < hi.level:
            raise BrainaeError(f"noise '{spec}': a range LOW-HIGH needs LOW < HIGH")
        return NoiseRange(lo.kind, lo.level, hi.level)
    levels = parse_noise_levels(spec)
    return levels[0] if len(levels) == 1 else NoiseMix(tuple(levels))


def batch_noise_seed(seed: int, index: int) -> int:
    """A fixed seed per validation batch: the same noisy validation images every epoch."""
    return random.Random(f"{seed}/{index}").randrange(2 ** 31)


load_entry_points("brainae.noises")  # noises of installed plugins, registered with @register
