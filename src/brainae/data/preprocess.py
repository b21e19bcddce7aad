"""Decode any supported image to a square grayscale uint8 array (the study's preprocessing by default).

The study resized to 128x128 grayscale and scaled to [0, 1]. We also offer keep-aspect padding and
intensity normalisation (the study's future work). Results are stored as uint8, the precision of
the JPEG sources, which keeps the cache small (2,870 images at 128 px = 47 MB).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from brainae.data.types import Decoded

MIN_SIDE = 8  # smaller images carry no anatomy worth learning; they are skipped, not upscaled


def to_gray_float(img: Decoded, draft_size: int | None = None) -> tuple[np.ndarray, tuple[int, int], str]:
    """Decode to a float32 (H, W) array in [0, 1]; returns (array, original (w, h), original mode).

    draft_size: for JPEGs, let the decoder downscale by a power of two while staying at or above
    this size (several times faster than a full decode of a 512 px slice, same result after resize).
    """
    if isinstance(img, np.ndarray):
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32))
        if arr.ndim != 2:
            raise ValueError(f"expected a 2-D slice, got shape {arr.shape}")
        return np.clip(arr, 0.0, 1.0), (arr.shape[1], arr.shape[0]), "array"
    size, mode = img.size, img.mode
    if draft_size and img.format == "JPEG":
        img.draft("L", (draft_size, draft_size))
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)  # 16-bit / int / float: scale by the image's own range
        finite = np.isfinite(arr)  # NaN/inf pixels (float TIFFs) become black instead of blanking the image
        if not finite.any():
            raise ValueError("every pixel is NaN or infinite")
        lo, hi = (float(arr[finite].min()), float(arr[finite].max())) if finite.any() else (0.0, 0.0)
        arr = np.where(finite, (arr - lo) / (hi - lo), 0.0).astype(np.float32) if hi > lo else np.zeros_like(arr)
    else:
        if mode == "CMYK":
            img = img.convert("RGB")
        elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            # transparent pixels become black background, as in a scan
            img = img.convert("RGBA")
            black = Image.new("RGBA", img.size, (0, 0, 0, 255))
            img = Image.alpha_composite(black, img)
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if min(arr.shape) < MIN_SIDE:
        raise ValueError(f"image too small ({size[0]}x{size[1]}); at least {MIN_SIDE}x{MIN_SIDE} needed")
    return arr, size, mode


def fit_box(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """(height, width, top, left) of an (h, w) image scaled to fit a size x size square, centred."""
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    return nh, nw, (size - nh) // 2, (size - nw) // 2


def resize_square(arr: np.ndarray, size: int, keep_aspect: bool = False) -> np.ndarray:
    """Resize a float (H, W) array to (size, size): stretch (the study), or fit and pad with black."""
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    if not keep_aspect:
        return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32)
    nh, nw, top, left = fit_box(*arr.shape, size)
    out = np.zeros((size, size), np.float32)
    out[top:top + nh, left:left + nw] = np.asarray(img.resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    return out


def unresize_square(img: np.ndarray, shape: tuple[int, int], keep_aspect: bool = False) -> np.ndarray:
    """Undo :func:`resize_square`: a (size, size) float image back to ``shape`` (H, W), padding cut away."""
    if keep_aspect:
        nh, nw, top, left = fit_box(*shape, img.shape[0])
        img = img[top:top + nh, left:left + nw]
    return np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BILINEAR),
                      np.float32)


def preprocess_mask(mask: np.ndarray, size: int, keep_aspect: bool = False) -> np.ndarray:
    """A bool (H, W) mask in the geometry :func:`preprocess` gives its image (nearest neighbour)."""
    img = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    if not keep_aspect:
        return np.asarray(img.resize((size, size), Image.NEAREST)) > 127
    nh, nw, top, left = fit_box(*mask.shape, size)
    out = np.zeros((size, size), bool)
    out[top:top + nh, left:left + nw] = np.asarray(img.resize((nw, nh), Image.NEAREST)) > 127
    return out


def normalize_intensity(arr: np.ndarray, method: str) -> np.ndarray:
    """Per-image intensity normalisation to [0, 1].

    minmax: stretch to the full range. percentile: clip at the 1st/99th percentile of the foreground
    first, so a few hot pixels do not compress the tissue contrast. zscore: standardise the
    foreground, clip at +-3 sd and map to [0, 1] (the models' sigmoid output needs a bounded range);
    the black background stays black.
    """
    if method == "none":
        return arr
    fg = arr > 0.02
    values = arr[fg] if fg.sum() > 16 else arr.ravel()
    if method == "minmax":
        lo, hi = float(arr.min()), float(arr.max())
    elif method == "percentile":
        lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    elif method == "zscore":
        mean, std = float(values.mean()), float(values.std()) or 1.0
        out = (np.clip((arr - mean) / std, -3, 3) + 3) / 6
        return np.where(fg, out, 0.0).astype(np.float32)
    else:
        raise ValueError(f"unknown normalisation {method!r}")
    if hi <= lo:
        return np.zeros_like(arr)
    return np.clip((arr - lo) / (hi - lo), 0, 1).astype(np.float32)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)


def preprocess(img: Decoded, size: int = 128, keep_aspect: bool = False, normalize: str = "none"):
    """Decode, grayscale, resize and normalise one image.

    Returns (uint8 (size, size) array, or (C, size, size) for a (C, H, W) array, original (w, h), original mode).

    Example:
        >>> out, orig, mode = preprocess(Image.new("RGB", (300, 200), "white"), size=64)
        >>> out.shape, out.dtype, orig, mode
        ((64, 64), dtype('uint8'), (300, 200), 'RGB')
    """
    if isinstance(img, np.ndarray) and img.ndim == 3:  # stacked modalities (C, H, W): each channel alike
        channels = [preprocess(c, size, keep_aspect, normalize) for c in img]
        return np.stack([c[0] for c in channels]), channels[0][1], channels[0][2]
    arr, orig, mode = to_gray_float(img, draft_size=2 * size)
    arr = resize_square(arr, size, keep_aspect)
    return to_uint8(normalize_intensity(np.clip(arr, 0, 1), normalize)), orig, mode
