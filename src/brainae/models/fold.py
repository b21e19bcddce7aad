"""Batch norms folded into the convs before them, for inference.

In eval mode a ``BatchNorm2d`` is a fixed per-channel scale and shift, so the conv before it can apply
both: its kernel scaled, its bias shifted, one pass over the activations fewer, the same values to float
rounding (tested). ``inference_network(model)`` is what ``map_batches``, the one inference loop of
evaluate, denoise, anomaly and the latent space, runs: a folded copy, kept while the model's weights
and modes stay as they are.

Which norm follows which conv is read from the structure, never guessed: the neighbours in a plain
``nn.Sequential`` (a conv there feeds only the next module), and the ``fold_pairs`` a module declares,
e.g. ``ResBlock``'s ``(("conv1", "norm1"), ("conv2", "norm2"))``. A norm in training mode, or one that
keeps no running statistics, normalises by the batch and is left alone.
"""
from __future__ import annotations

import copy
import weakref
from itertools import chain

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_FOLDED: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, CONVS) and type(bn) is nn.BatchNorm2d and not bn.training and not conv.training
            and bn.running_mean is not None and conv.out_channels == bn.num_features)


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv name, norm name) of the children of ``module`` where the norm takes the conv's output alone."""
    if type(module) is nn.Sequential:
        names = list(module._modules)
        return list(zip(names, names[1:]))
    return list(getattr(module, "fold_pairs", ()))


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every foldable conv -> BatchNorm2d pair made one conv (the norm an Identity).

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> folded = fold_batch_norms(net)
        >>> folded
        Sequential(
          (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1))
          (1): Identity()
          (2): ReLU()
        )
        >>> x = torch.rand(2, 1, 8, 8)
        >>> torch.allclose(folded(x), net(x), atol=1e-6)
        True
    """
    folded = copy.deepcopy(model)
    for module in folded.modules():
        for conv_name, bn_name in _pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if _foldable(conv, bn):
                fused = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                # the fused kernel is a new tensor: keep the layout (channels-last) the conv had
                fused.weight.data = fused.weight.data.contiguous(memory_format=_layout(conv.weight))
                setattr(module, conv_name, fused)
                setattr(module, bn_name, nn.Identity())
    return folded


def _layout(weight: torch.Tensor) -> torch.memory_format:
    channels_last = weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def _state(model: nn.Module) -> tuple:
    """What a folded copy depends on: every tensor's storage and in-place version, every module's mode."""
    tensors = chain(model.parameters(), model.buffers())
    return (tuple((t.data_ptr(), t._version) for t in tensors), tuple(m.training for m in model.modules()))


def inference_network(model: nn.Module) -> nn.Module:
    """``model`` with its batch norms folded (``fold_batch_norms``), made once and reused until a weight,
    a statistic, the device or a module's mode changes; ``model`` itself when there is nothing to fold."""
    if not any(_foldable(getattr(m, c), getattr(m, b)) for m in model.modules() for c, b in _pairs(m)):
        return model
    state = _state(model)
    cached = _FOLDED.get(model)
    if cached is None or cached[0] != state:
        cached = _FOLDED[model] = (state, fold_batch_norms(model))
    return cached[1]
