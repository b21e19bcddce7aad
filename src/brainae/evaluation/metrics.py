"""Per-image reconstruction metrics (data range 1) and bootstrap confidence intervals."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

SSIM_CHUNK = 16  # images per SSIM call: its four maps of 128 px then stay in the cache (64 ran 1.5-2.6x slower here)


def per_image_metrics(recon: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
    """MSE, PSNR (dB) and SSIM (11x11 Gaussian window, sigma 1.5) of each image in a batch.

    recon, target: float (B, C, H, W) in [0, 1].

    Example:
        >>> x = torch.rand(2, 1, 32, 32)
        >>> m = per_image_metrics(x, x)
        >>> float(m["ssim"][0])
        1.0
    """
    recon, target = recon.float().clamp(0, 1), target.float()
    mse = ((recon - target) ** 2).flatten(1).mean(1)
    psnr = peak_signal_noise_ratio(recon, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = ssim_per_image(recon, target)
    return {"mse": mse.numpy(), "psnr": psnr.numpy(), "ssim": ssim}


def ssim_per_image(x, y, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Mean SSIM of each image pair, data range 1: torchmetrics' default (Gaussian window of 11 pixels, sigma 1.5,
    reflected borders) to 1e-6, with the Gaussian run as two matrix products (``blur_matrix``) on torch's
    threads, several times faster on a CPU.

    x, y: float (B, C, H, W) or (B, H, W) arrays or tensors.

    Example:
        >>> x = np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32)
        >>> ssim_per_image(x, x).round(6).tolist()
        [1.0, 1.0]
    """
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    # "mirror" is torch's "reflect" padding: the edge pixel is not repeated
    blur = stack_blur(x.shape, sigma, int(3.5 * sigma + 0.5), "mirror")
    out = np.zeros(len(x), np.float32)
    for i, s in ssim_chunks(x, y, blur, k1 ** 2, k2 ** 2):
        out[i:i + len(s)] = s.reshape(len(s), -1).mean(1).numpy()
    return out


def ssim_chunks(x: torch.Tensor, y: torch.Tensor, blur: Callable[..., torch.Tensor], c1: float, c2: float,
                chunk: int = SSIM_CHUNK) -> Iterator[tuple[int, torch.Tensor]]:
    """(first index, ``ssim_map``) of each chunk of ``chunk`` image pairs of the stacks x, y."""
    for i in range(0, len(x), chunk):
        yield i, ssim_map(x[i:i + chunk], y[i:i + chunk], blur, c1, c2)


@lru_cache(maxsize=16)
def blur_matrix(n: int, sigma: float, radius: int, mode: str) -> torch.Tensor:
    """(n, n) float64 matrix B such that B @ v is the Gaussian blur (sigma, taps -radius..radius, normalised
    as scipy's) of v along its first axis, the borders folded in as scipy's ``mode``: 'mirror' (the edge
    pixel is not repeated) or 'reflect' (it is). A blur as a matrix product runs on the BLAS and torch's
    threads: the same numbers as scipy's filter to float rounding, several times faster.

    Example:
        >>> b = blur_matrix(5, 1.0, 2, "reflect")
        >>> bool(torch.allclose(b.sum(1), torch.ones(5, dtype=torch.float64)))
        True
    """
    taps = np.exp(-0.5 / sigma ** 2 * np.arange(-radius, radius + 1) ** 2)
    taps /= taps.sum()
    period = 2 * n - 2 if mode == "mirror" else 2 * n
    out = np.zeros((n, n))
    for i in range(n):
        for k, w in zip(range(i - radius, i + radius + 1), taps):
            j = k % period if period else 0
            out[i, j if j < n else period - j - (mode == "reflect")] += w
    return torch.from_numpy(out)


def stack_blur(shape, sigma: float, radius: int, mode: str) -> Callable[..., torch.Tensor]:
    """The Gaussian blur of ``blur_matrix`` over the last two axes of tensors of ``shape``: ``blur(a)``, or
    ``blur(a, out=a)`` to overwrite a stack that is not needed after.

    The matrices are banded: an output pixel reads only 2 radius + 1 inputs. So each axis is cut into
    blocks of outputs, and each block is one matrix product with the few input rows or columns that reach
    it (plus the folded border), not with all of them: at 128 pixels and an 11-tap window, a fifth of the
    multiplications and about half the time of the dense product (block sizes measured on this CPU)."""
    rows = _bands(blur_matrix(shape[-2], sigma, radius, mode), 16)
    cols = [(s, e, lo, hi, w.T) for s, e, lo, hi, w in _bands(blur_matrix(shape[-1], sigma, radius, mode), 32)]

    def blur(a: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        tmp = torch.empty_like(a)
        for s, e, lo, hi, w in cols:  # tmp = a @ cols.T, block by block
            tmp[..., s:e] = torch.matmul(a[..., lo:hi], w.to(a.dtype))
        out = torch.empty_like(a) if out is None else out
        for s, e, lo, hi, w in rows:  # out = rows @ tmp, block by block
            out[..., s:e, :] = torch.matmul(w.to(a.dtype), tmp[..., lo:hi, :])
        return out

    return blur


def _bands(m: torch.Tensor, block: int) -> list[tuple[int, int, int, int, torch.Tensor]]:
    """(first row, end row, first column, end column, m[rows, columns]) of each block of ``block`` rows of
    ``m``, its columns cut to those with a nonzero weight in that block."""
    out = []
    for s in range(0, len(m), block):
        e = min(s + block, len(m))
        used = torch.nonzero(m[s:e].abs().sum(0)).flatten()
        lo, hi = int(used.min()), int(used.max()) + 1
        out.append((s, e, lo, hi, m[s:e, lo:hi].contiguous()))
    return out


def ssim_map(x: torch.Tensor, y: torch.Tensor, blur: Callable[[torch.Tensor], torch.Tensor], c1: float,
             c2: float) -> torch.Tensor:
    """The local SSIM map (2 ux uy + c1)(2 vxy + c2) / ((ux^2 + uy^2 + c1)(vx + vy + c2)), u = blur(a) and
    vab = blur(a b) - ua ub: the formula of torchmetrics and scikit-image. Only the sum vx + vy enters it,
    and a blur is linear, so blur(x^2 + y^2) stands for blur(x^2) + blur(y^2): four blurs, not five, in
    one call on a stack. The arithmetic is in place (temporaries took half of its time)."""
    stack = torch.empty((4,) + x.shape, dtype=x.dtype, device=x.device)
    stack[0], stack[1] = x, y
    torch.mul(x, x, out=stack[2]).addcmul_(y, y)
    torch.mul(x, y, out=stack[3])
    ux, uy, s, a2 = blur(stack, out=stack)
    a1 = ux * uy
    a2.sub_(a1).mul_(2).add_(c2)
    a1.mul_(2).add_(c1)
    q = ux.square_().add_(uy.square_())
    s.sub_(q).add_(c2)
    return a1.mul_(a2).div_(q.add_(c1).mul_(s))


def map_chunks(fn: Callable[[int, int], object], n: int, chunk: Optional[int] = None,
               workers: Optional[int] = None) -> list:
    """``[fn(start, stop), ...]`` over ``range(n)`` cut into chunks (default: one per worker), run on
    ``workers`` threads (default: torch's thread count). scipy's filters, numpy's array arithmetic and
    torch release the GIL, so image metrics computed chunk by chunk use every core. While the workers run,
    torch's own thread count is 1: each worker already has a core, and torch spreading every chunk's
    matrix products over all of them too oversubscribed them; one thread each scored 1.139x the images/s
    (benchmarks/results/score_threads_cpu-avx2.md).

    Example:
        >>> map_chunks(lambda i, j: list(range(i, j)), 5, chunk=2, workers=2)
        [[0, 1], [2, 3], [4]]
    """
    workers = max(1, workers or torch.get_num_threads())
    chunk = chunk or max(1, -(-n // workers))
    starts = range(0, n, chunk)
    if workers == 1 or len(starts) <= 1:
        return [fn(i, min(i + chunk, n)) for i in starts]
    with ThreadPoolExecutor(min(workers, len(starts))) as pool, torch_threads(1):
        return list(pool.map(lambda i: fn(i, min(i + chunk, n)), starts))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (threads started in it inherit the count),
    then back to what it was.

    Example:
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                 groups: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean.

    groups: per value, the group it belongs to (a subject, a volume, a set of copies). Whole groups are
        resampled with replacement and the mean taken over their values, so neighbouring slices of one
        subject do not count as independent evidence. None: every value is its own group.

    Example:
        >>> lo, hi = bootstrap_ci(np.arange(100.0))
        >>> lo < 49.5 < hi
        True
    """
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    ids = np.arange(len(values)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    values, ids = values[finite], ids[finite]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    _, ids = np.unique(ids, return_inverse=True)
    sums, counts = np.bincount(ids, weights=values), np.bincount(ids).astype(float)
    if len(sums) == 1:
        mean = float(values.mean())
        return (mean, mean)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1 - level) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def summarize(values: np.ndarray, seed: int = 0, groups: np.ndarray | None = None) -> dict:
    """``{"mean": m, "ci95": [lo, hi]}`` of finite values (infinite PSNR of a perfect copy is capped at 100 dB);
    ``groups`` as in :func:`bootstrap_ci`."""
    values = np.minimum(np.asarray(values, dtype=float), 100.0)
    lo, hi = bootstrap_ci(values, seed=seed, groups=groups)
    return {"mean": float(np.mean(values)) if len(values) else float("nan"), "ci95": [lo, hi]}
