"""Per-image scores of how badly a network reconstructs the brain in an image, for tumour detection
(``anomaly``, whose docstring defines the four SCORES). Every function takes a stack of float images
(N, H, W) in [0, 1] and computes each image's numbers on its own, whatever the stack.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from brainae.evaluation.metrics import SSIM_CHUNK, map_chunks, ssim_chunks, stack_blur

SCORES = ("mse", "ssim", "p99", "mse_detail")
BRAIN_THRESHOLD = 0.05
DETAIL_SIGMA = 1.0  # pixels; the only value tried


def brain_masks(images: np.ndarray, threshold: float = BRAIN_THRESHOLD) -> np.ndarray:
    """Bool (N, H, W): input pixels above ``threshold`` with holes filled (dark ventricles stay inside).

    A hole is a dark region no 4-connected path links to the image's edge: scipy's ``binary_fill_holes``,
    image by image. It finds them by dilating from the edge until nothing changes; labelling the dark
    regions of the whole stack once (no link across images) and keeping those that touch an edge gives the
    same masks (tested) in a third of the time.

    Example:
        >>> ring = np.pad(np.pad(np.zeros((2, 2)), 1, constant_values=1.0), 1)[None]
        >>> int(brain_masks(ring).sum())
        16
    """
    from scipy.ndimage import generate_binary_structure, label

    dark = images <= threshold
    in_plane = np.zeros((3,) * images.ndim, bool)
    in_plane[1] = generate_binary_structure(images.ndim - 1, 1)
    regions, _ = label(dark, structure=in_plane)
    touches_edge = np.zeros(regions.max() + 1, bool)
    for axis in range(1, images.ndim):
        for end in (0, -1):
            touches_edge[np.take(regions, end, axis=axis).ravel()] = True
    touches_edge[0] = False  # label 0: the bright pixels themselves
    return ~touches_edge[regions]


def brain_mean(values: np.ndarray, brains: np.ndarray) -> np.ndarray:
    """Per image, the mean of ``values`` (N, H, W) over its brain pixels, summed in float64."""
    n = brains.sum(axis=(1, 2))
    return np.einsum("nhw,nhw->n", values, brains, dtype=np.float64) / n


def brain_percentile(values: np.ndarray, brains: np.ndarray, q: float) -> np.ndarray:
    """Per image, the ``q``-th percentile of ``values`` (N, H, W) over its brain pixels: numpy's default
    (linear) percentile of ``values[i][brains[i]]``, for the whole stack at once. Only the top of each image
    is sorted (torch's top-k; numpy's partition crawled on these rows), which for q near 100 is a few
    hundred values instead of every pixel."""
    if not len(values):
        return np.zeros(0)
    flat = np.where(brains, values, -np.inf).reshape(len(values), -1)  # outside the brain sorts last
    n = brains.reshape(len(values), -1).sum(axis=1)
    pos = (n - 1) * (q / 100.0)  # rank among the image's brain values, from the smallest
    lo = np.floor(pos).astype(np.int64)
    from_top = n - 1 - lo  # the same value counted from the largest
    top = torch.topk(torch.from_numpy(flat), int(from_top.max()) + 1, dim=1).values.numpy()  # descending
    rows = np.arange(len(flat))
    a = top[rows, from_top].astype(np.float64)
    b = top[rows, np.maximum(from_top - 1, 0)].astype(np.float64)
    return a + (b - a) * (pos - lo)


def with_empty_as_whole(brains: np.ndarray) -> np.ndarray:
    """Brain masks where an image without brain pixels (a blank slice) counts all of its pixels instead."""
    empty = ~brains.any(axis=(1, 2))
    if not empty.any():
        return brains
    brains = brains.copy()
    brains[empty] = True
    return brains


def detail_energy(images: np.ndarray, brains: np.ndarray, sigma: float = DETAIL_SIGMA) -> np.ndarray:
    """Per image: mean squared difference between the input and its Gaussian blur, inside the brain.

    Example:
        >>> flat = np.full((1, 16, 16), 0.5)
        >>> float(detail_energy(flat, flat > 0)[0])
        0.0
    """
    x = torch.from_numpy(np.ascontiguousarray(images, np.result_type(images.dtype, np.float32)))
    # scipy's gaussian_filter window (truncate 4) and border, as matrix products: a third of its time
    detail = x - stack_blur(x.shape, sigma, int(4.0 * sigma + 0.5), "reflect")(x)
    return brain_mean(detail.square_().numpy(), with_empty_as_whole(brains))


def blur_each(images: np.ndarray, sigma: float, **kwargs) -> np.ndarray:
    """A Gaussian blur of every image of a stack (N, H, W) in one call: the same numbers as blurring them
    one by one (scipy filters each axis in turn, and the stack's axis is left alone), at a fraction of the
    per-call overhead."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(images, sigma=(0.0,) + (sigma,) * (images.ndim - 1), **kwargs)


def ssim_maps(images: np.ndarray, recons: np.ndarray, chunk: int = SSIM_CHUNK) -> np.ndarray:
    """Local SSIM maps (N, H, W) of float images in [0, 1]: scikit-image's ``structural_similarity(x, r,
    data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True)`` per image to
    float rounding, computed here on stacks because that function takes one image per call, which made it
    most of the anomaly scores' time. Its formula and filter arguments are repeated; a test compares the two."""
    out = np.empty(images.shape, np.result_type(images.dtype, recons.dtype, np.float32))
    for i, maps in _ssim_chunks(images, recons, out.dtype, chunk):
        out[i:i + len(maps)] = maps.numpy()
    return out


def brain_ssim(images: np.ndarray, recons: np.ndarray, brains: np.ndarray) -> np.ndarray:
    """Per image, the mean of its ``ssim_maps`` over ``brains``, a chunk at a time: the stack of maps is
    never made (copying it out was a tenth of the SSIM's time)."""
    out = np.empty(len(images))
    dtype = np.result_type(images.dtype, recons.dtype, np.float32)
    for i, maps in _ssim_chunks(images, recons, dtype, SSIM_CHUNK):
        out[i:i + len(maps)] = brain_mean(maps.numpy(), brains[i:i + len(maps)])
    return out


def _ssim_chunks(images: np.ndarray, recons: np.ndarray, dtype, chunk: int):
    """(first index, SSIM maps as a tensor) of each chunk of ``chunk`` images (see ``ssim_maps``)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2  # (K1 * data_range) ** 2, (K2 * data_range) ** 2 at scikit-image's K1, K2
    blur = stack_blur(images.shape, 1.5, int(3.5 * 1.5 + 0.5), "reflect")  # scikit-image: truncate 3.5
    x, y = (torch.from_numpy(np.ascontiguousarray(a, dtype)) for a in (images, recons))
    return ssim_chunks(x, y, blur, c1, c2, chunk)


def image_scores(images: np.ndarray, recons: np.ndarray, brains: np.ndarray) -> dict[str, np.ndarray]:
    """The per-image scores of SCORES (see the module docstring); float images (N, H, W) in [0, 1]."""
    res = np.abs(images - recons)
    inside = with_empty_as_whole(brains)
    out = {"mse": brain_mean(res * res, inside), "ssim": 1.0 - brain_ssim(images, recons, inside),
           "p99": brain_percentile(res, inside, 99)}
    out["mse_detail"] = out["mse"] / np.maximum(detail_energy(images, inside), 1e-8)  # 1e-8: a flat image
    return out


def residual_maps(images: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """|input - reconstruction| smoothed by a Gaussian of 1 pixel: isolated noisy pixels are not tumours."""
    return blur_each(np.abs(images - recons), 1.0)


def score_stack(images: np.ndarray, recons: np.ndarray, chunk: Optional[int] = None,
                workers: Optional[int] = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Brain masks and image scores of float stacks (N, H, W), in chunks of ``chunk`` images on ``workers``
    threads (default: torch's thread count). scipy's filters, numpy's array arithmetic and torch release
    the GIL, so the chunks run on every core; every number is computed image by image, so it is the same
    whatever the chunks (tested). The default chunk is about 64 images, sized so that every thread gets as
    many chunks of equal size (430 images in chunks of 64 gave one of two threads 238, the other 192)."""
    workers = max(1, workers or torch.get_num_threads())
    if chunk is None:
        rounds = max(1, -(-len(images) // (64 * workers)))
        chunk = max(1, -(-len(images) // (rounds * workers)))

    def one(start: int, stop: int) -> tuple:
        x, r = images[start:stop], recons[start:stop]
        brains = brain_masks(x)
        return brains, image_scores(x, r, brains)

    parts = map_chunks(one, len(images), chunk, workers)
    if not parts:
        return np.zeros(images.shape, bool), {k: np.zeros(0) for k in SCORES}
    return np.concatenate([p[0] for p in parts]), {k: np.concatenate([p[1][k] for p in parts]) for k in SCORES}
