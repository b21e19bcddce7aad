"""Which number format a run trains and infers in: ``train.precision`` (default ``auto``).

``auto`` picks bf16 mixed precision where the hardware computes in bf16 natively, and float32 elsewhere:
- a CPU with AVX512-BF16 or AMX (AMD Zen 4 and later, Intel Sapphire Rapids and later): oneDNN's bf16
  convolutions run faster than float32 ones, and the study's AE trains and infers faster at the same
  validation loss (``benchmarks/results/train_throughput_cpu.md``);
- a CUDA GPU that supports bf16 (Ampere and later).
A CPU without native bf16 emulates it, which is slower than float32, so ``auto`` keeps float32 there.
Weights, optimiser state and every reported metric stay float32; only activations are bf16.
"""
from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from brainae.data.types import with_channels
from brainae.errors import BrainaeError
from brainae.models.fold import inference_network
from brainae.progress import bar
from brainae.training.memory import keep_freed_memory

CHOICES = ("auto", "32", "bf16-mixed", "16-mixed", "64")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
NATIVE_FP16_FLAGS = ("avx512_fp16", "amx_fp16")


def _cpuinfo(key: str) -> str | None:
    """The value of the first ``key`` line of Linux's /proc/cpuinfo (the first processor's), else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The x86 feature flags of Linux's /proc/cpuinfo; empty elsewhere (other systems, ARM's 'Features')."""
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_name() -> str:
    """The CPU's model name from Linux's /proc/cpuinfo, else what ``platform`` knows."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def vector_units(flags: frozenset[str] | set[str]) -> str:
    """'AVX512-BF16', 'AVX2, no native bf16' and the like from x86 feature flags, '' without any: two CPUs of
    one model name can differ here, and with it the precision ``auto`` picks and every speed."""
    if not flags:
        return ""
    units = [name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512"),
                                     ("avx2", "AVX2")) if flag in flags]
    native = any(flag in flags for flag in NATIVE_BF16_FLAGS)
    return f"{units[0] if units else 'no AVX2'}{'' if native else ', no native bf16'}"


def machine_lines() -> list[str]:
    """What decides speed and precision here, for ``brainae -v --version`` and bug reports: torch, the CPU
    and each CUDA GPU, and what ``--precision auto`` picks on each."""
    units = vector_units(cpu_flags())
    lines = [f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.machine()}",
             f"cpu: {cpu_name()}{f' ({units})' if units else ''}, torch {torch.get_num_threads()} threads: "
             f"--precision auto trains in {resolve_precision('auto', 'cpu')} on it"]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        lines.append(f"cuda: {names}: --precision auto trains in {resolve_precision('auto', 'cuda')} on it")
    else:
        lines.append("cuda: no GPU that torch can use")
    return lines


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU advertises bf16 arithmetic (Linux /proc/cpuinfo flags) and oneDNN can use it."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def emulated_precision_warning(precision: str, accelerator: str) -> str | None:
    """One line when a run asks for bf16 or float16 on a CPU that would emulate it, else None.

    On a 2-core AVX2 CPU the study AE's training step ran many times slower than in float32 in either
    format, slow enough to look like a hang; ``auto`` never picks them there. Only x86 CPUs are judged:
    without /proc/cpuinfo flags nothing is said.
    """
    if precision not in ("bf16-mixed", "16-mixed") or uses_cuda(accelerator) or accelerator not in ("cpu", "auto"):
        return None
    if not cpu_flags():
        return None
    bf16 = precision == "bf16-mixed"
    if cpu_has_native_bf16() if bf16 else any(flag in cpu_flags() for flag in NATIVE_FP16_FLAGS):
        return None
    needs = "AVX512-BF16 or AMX" if bf16 else "AVX512-FP16 or AMX-FP16"
    return (f"--precision {precision} on this CPU, which lacks {needs}, is emulated and many times slower than "
            f"float32; --precision auto picks 32 here")


def uses_cuda(accelerator: str) -> bool:
    return accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` -> ``bf16-mixed`` or ``32`` for this machine; any other value is returned as given."""
    if precision != "auto":
        return precision
    if uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32"
    if accelerator in ("auto", "cpu"):
        return "bf16-mixed" if cpu_has_native_bf16() else "32"
    return "32"  # mps and others: float32, the safe choice


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` for inference on ``device`` (a no-op for float32)."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    if dtype is None or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def inference_precision(device: torch.device) -> str:
    """What evaluation, denoising and anomaly scoring run in on ``device``: ``auto`` resolved for it, or
    the environment variable BRAINAE_INFERENCE_PRECISION (``32`` for float32 everywhere)."""
    chosen = os.environ.get("BRAINAE_INFERENCE_PRECISION", "auto")
    if chosen not in CHOICES:
        raise BrainaeError(f"BRAINAE_INFERENCE_PRECISION is '{chosen}'; use one of {', '.join(CHOICES)} or unset it")
    return resolve_precision(chosen, device.type if device.type in ("cpu", "cuda") else "mps")


def infer(model: torch.nn.Module, x: torch.Tensor):
    """``model(x)`` for inference: no autograd, channels-last input, the machine's inference precision.

    On a CPU with native bf16 this takes the study AE's images/s up about 1.7x
    (``benchmarks/results/train_throughput_cpu.md``); PSNR stays within 0.05 dB of float32 (tested).
    """
    device = next(model.parameters()).device
    x = x.to(device, non_blocking=True)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, inference_precision(device)):
        return model(x)


@torch.no_grad()
def map_batches(model: torch.nn.Module, images: np.ndarray, fn: Callable, batch_size: int = 64) -> np.ndarray:
    """``fn(model, batch)`` over ``images`` in batches, concatenated as float32 NumPy: the one loop of
    evaluate, denoise, the latent space and the code prior.

    images: uint8 (read as /255) or float, shaped (N, H, W) or (N, C, H, W); each batch reaches ``fn`` as
    a float32 (B, C, H, W) tensor on the model's device. ``fn`` returns a tensor with the batch first,
    e.g. ``lambda m, x: infer(m, x).recon`` or ``lambda m, x: m.encode(x)``.
    """
    # every batch frees and allocates the same large activations: 1.31-1.45x the CPU images/s (results/malloc_cpu.md)
    keep_freed_memory()
    model = inference_network(model)  # batch norms folded into their convs: one pass fewer per layer
    device = next(model.parameters()).device
    parts = []
    starts = range(0, len(images), batch_size)
    for i in bar(starts, len(starts) > 1, desc="network", unit="batch", leave=False):
        x = torch.from_numpy(np.ascontiguousarray(with_channels(images[i:i + batch_size])))
        x = (x.float() / 255.0 if x.dtype == torch.uint8 else x.float()).to(device)
        parts.append(fn(model, x).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def reconstructions(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The model's reconstructions (float32 in [0, 1]) of ``images``, shaped like them."""
    recon = map_batches(model, images, lambda m, x: infer(m, x).recon, batch_size)
    if not len(recon):
        return np.zeros(images.shape, np.float32)
    return recon[:, 0] if images.ndim == 3 else recon


def encode_codes(model: torch.nn.Module, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Codes (N, latent_dim) of ``images`` in float32, the VAE's its mean mu."""
    return map_batches(model, images, lambda m, x: m.encode(x), batch_size)
