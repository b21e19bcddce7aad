"""Denoising autoencoder: a registered backbone (``model.backbone``, default the study's AE) trained
to map noisy images to clean ones.

The network is the backbone itself, so hooks, checkpoints and reports see the same sub-module names
(``encoder.0`` ...). What makes it a DAE is the training: ``AutoencoderModule`` corrupts every
training batch with ``train.noise`` (drawn afresh per batch) and scores the output against the clean
image. ``--model dae`` only sets that noise's default; any model can be trained as a denoiser with
``--noise``.
"""
from __future__ import annotations

import torch.nn as nn

from brainae.config import ModelConfig
from brainae.errors import BrainaeError
from brainae.registry import get, register_model

DEFAULT_NOISE = "gaussian:0.3"  # the study's fourth aim


@register_model("dae", wraps="model.backbone")
def build_dae(cfg: ModelConfig, image_size: int) -> nn.Module:
    """Denoising AE: model.backbone (default ae) trained on noisy inputs (train.noise, default gaussian:0.3)."""
    if cfg.backbone == "dae":
        raise BrainaeError("config key 'model.backbone' must name another model (e.g. ae or vae), not dae")
    net = get("model", cfg.backbone)(cfg, image_size)
    net.default_noise = DEFAULT_NOISE
    return net
