"""Training steps replayed as a CUDA graph: the GPU fast path for the study's small networks.

A batch-16 step of the study's AE launches a few hundred small kernels, and on a GPU the step takes as
long as the host needs to launch them (about 7 ms on an H200), not as long as the GPU needs to run
them (about 1.4 ms). Captured once as a CUDA graph, the forward pass, the loss and the backward pass
are one launch. The optimiser step stays outside the graph: fused Adam is a few kernels, and every
learning-rate schedule, the optimiser's state and the checkpoints stay those of the ordinary path.

What the graph holds is fixed at capture: the batch shape (a last, smaller batch runs eagerly), the
addresses of the input, the weights and the gradients (zeroed and filled in place at every replay, so
they must never be set to None afterwards) and any host-side decision. Random draws on the
GPU's default generator (a VAE's sampling, a denoiser's noise) are fresh at each replay.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional

import torch
from torch import nn

WARMUP_STEPS = 3  # eager steps on a side stream before capture: cuDNN and cuBLAS set up their workspaces


class GraphedStep:
    """``step(x) -> terms``: forward, loss terms and backward of one batch, as one CUDA graph replay.

    step_fn(x) must run forward and backward and return a dict of scalar tensors (the loss terms and
    ``bad``: was the loss non-finite); those tensors are overwritten by the next replay. The warm-up
    steps do not count: BatchNorm statistics are put back as they were. (The random numbers they drew
    are not: replays draw theirs from the generator's graph-safe offsets, so the stream differs from
    the eager path's anyway.)
    """

    def __init__(self, model: nn.Module, step_fn: Callable[[torch.Tensor], dict], example: torch.Tensor,
                 autocast_dtype: Optional[torch.dtype] = None) -> None:
        self.model, self.step_fn = model, step_fn
        self.autocast_dtype = autocast_dtype
        self.input = example.detach().clone()
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        side = torch.cuda.Stream(example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self._run()
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.grads = [(p, p.grad) for p in model.parameters() if p.grad is not None]  # made by the warm-up
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            # the gradients stay the tensors they are, zeroed and accumulated into in place, so the
            # optimiser and an eager step in between see the very tensors every replay writes
            torch._foreach_zero_([g for _, g in self.grads])
            self.terms = self._run()
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])

    def _run(self) -> dict:
        # autocast's weight cache must be off: cached casts made outside the graph would be freed under it
        ctx = (torch.autocast("cuda", dtype=self.autocast_dtype, cache_enabled=False) if self.autocast_dtype
               else nullcontext())
        with ctx:
            return self.step_fn(self.input)

    def matches(self, x: torch.Tensor) -> bool:
        return x.shape == self.input.shape and x.dtype == self.input.dtype and x.device == self.input.device

    def bind(self) -> None:
        """Give every weight back the gradient tensor the graph writes, should anything have replaced it
        (Lightning sets gradients to None before each validation unless the module says otherwise)."""
        for p, g in self.grads:
            if p.grad is not g:
                p.grad = g

    def __call__(self, x: torch.Tensor) -> dict:
        self.bind()
        self.input.copy_(x)
        self.graph.replay()
        return dict(self.terms)  # the tensors are the graph's; the dict is the caller's to change


STEPS_PER_CHUNK = 16  # optimiser steps per Lightning batch on the fast path


def fast_path(setting: str, device: torch.device, devices: int, loader_workers: int, precision: str,
              compile: bool, ema: float, augment: str) -> bool:
    """Whether ``train.cuda_graphs`` (auto | on | off) turns on the GPU fast path for this run.

    auto: wherever it applies; on: the same, and a one-line error naming what stands in the way.
    """
    if setting == "off":
        return False
    obstacles = [
        (device.type != "cuda", "it needs a CUDA GPU"),
        (devices > 1, "it runs on one GPU (not with --devices > 1)"),
        (loader_workers > 0, "the batches come from the GPU's own copy of the data (not with --num-workers)"),
        (precision.startswith("16"), "16-mixed scales the loss each step on the host; use bf16-mixed or 32"),
        (compile, "train.compile captures graphs of its own"),
        (ema > 0, "train.ema averages after every Lightning batch, which is a chunk of steps here"),
        (bool(augment), "train.augment draws from its own seeded generator, which a graph cannot replay"),
    ]
    for blocked, why in obstacles:
        if blocked:
            if setting == "on":
                from brainae.errors import BrainaeError
                raise BrainaeError(f"config key 'train.cuda_graphs': on, but {why}; set it to auto or off")
            return False
    return True
