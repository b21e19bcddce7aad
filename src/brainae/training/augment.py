"""On-the-fly augmentation of training batches (``train.augment``), on whatever device the batch is on.

Kinds, combined with commas (``all`` = every kind):
    flip       left-right mirror with probability 1/2 (brains are roughly symmetric; up-down is not anatomical)
    affine     rotation up to 10 degrees, scale 0.9-1.1, shift up to 5% of the size; empty border stays black
    intensity  gamma 0.8-1.25 and contrast 0.9-1.1, clipped to [0, 1]: scanners and windowing differ

Random draws come from a generator seeded with ``train.seed``, so a run is reproducible. The
autoencoder's target is the augmented image itself, so augmentation widens what it learns to
reconstruct without changing the task.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from brainae.errors import BrainaeError
from brainae.registry import register_check

KINDS = ("flip", "affine", "intensity")
MAX_ROTATION_DEG, SCALE, SHIFT = 10.0, (0.9, 1.1), 0.05
GAMMA, CONTRAST = (0.8, 1.25), (0.9, 1.1)


@register_check("train.augment")
def parse_augment(spec: str) -> tuple[str, ...]:
    """``"flip,affine"`` -> ("flip", "affine"); "" -> (); "all" -> every kind."""
    parts = [p.strip() for p in (spec or "").split(",") if p.strip()]
    if parts == ["all"]:
        return KINDS
    bad = [p for p in parts if p not in KINDS]
    if bad:
        raise BrainaeError(f"config key 'train.augment': unknown '{bad[0]}' (use a comma list of {', '.join(KINDS)}, or all)")
    return tuple(k for k in KINDS if k in parts)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


class Augment:
    """Callable on float batches (B, C, H, W) in [0, 1].

    Example:
        >>> aug = Augment("all", seed=0)
        >>> aug(torch.rand(4, 1, 32, 32)).shape
        torch.Size([4, 1, 32, 32])
    """

    def __init__(self, spec: str, seed: int = 0) -> None:
        self.kinds = parse_augment(spec)
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        g = generator or self.generator(x.device)
        n, dev = x.shape[0], x.device
        if "flip" in self.kinds:
            flip = torch.rand(n, generator=g, device=dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if "affine" in self.kinds:
            angle = _uniform(n, -MAX_ROTATION_DEG, MAX_ROTATION_DEG, g, dev) * math.pi / 180
            scale = _uniform(n, *SCALE, g, dev)
            shift = _uniform(2 * n, -2 * SHIFT, 2 * SHIFT, g, dev).view(n, 2)  # grid coordinates span 2
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if "intensity" in self.kinds:
            gamma = _uniform(n, math.log(GAMMA[0]), math.log(GAMMA[1]), g, dev).exp().view(n, 1, 1, 1)
            contrast = _uniform(n, *CONTRAST, g, dev).view(n, 1, 1, 1)
            x = (x.clamp(0, 1) ** gamma.to(x.dtype) * contrast.to(x.dtype))
        return x.clamp(0.0, 1.0)
