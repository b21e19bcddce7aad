"""Denoising autoencoder: a registered backbone (``model.backbone``, default the study's AE) trained
to map noisy images to clean ones.

The network is the backbone itself, so hooks, checkpoints and reports see the same sub-module names
(``encoder.0`` ...). What makes it a DAE is the training: ``AutoencoderModule`` corrupts every
training batch with ``train.noise`` (drawn afresh per batch) and scores the output against the clean
image. ``--model dae`` only sets that noise's default; any model can be trained as a denoiser with
``--noise``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from brainae.registry import register_model

DEFAULT_NOISE = "gaussian:0.3"  # the study's fourth aim


@dataclass
class DAEArgs:
    """The registered model to train as a denoiser; its own keys configure it."""

    backbone: str = "ae"


@register_model("dae", args=DAEArgs, wraps="backbone")
def build_dae(args: DAEArgs, net: nn.Module) -> nn.Module:
    """Denoising AE: model.backbone (default ae) trained on noisy inputs (train.noise, default gaussian:0.3)."""
    net.default_noise = DEFAULT_NOISE
    return net
