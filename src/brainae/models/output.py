"""The single output type every model returns, so one training module trains them all."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class ModelOutput:
    recon: torch.Tensor  # (B, C, H, W) in [0, 1]
    z: torch.Tensor  # (B, latent_dim): the code the decoder used
    mu: Optional[torch.Tensor] = None  # VAE only
    logvar: Optional[torch.Tensor] = None  # VAE only
    logits: Optional[torch.Tensor] = None  # recon before the sigmoid, for BCE with logits
