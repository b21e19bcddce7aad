"""Procedural brain-MRI-like slices: brainae's built-in dataset (no download, no files).

Each slice is an axial, T1-post-contrast-looking cut: bright skull ring, dark CSF gap, folded
gray-matter cortex with sulci over white matter, deep gray nuclei, two lateral ventricles, a
smooth bias field and noise. A share of the slices carries a tumour (solid or ring-enhancing)
inside a darker edema halo, with a pixel mask of the tumour core.

Slice i is drawn only from ``default_rng([seed, i])``, so it does not depend on ``n``: the first
100 slices of ``generate_phantoms(1000)`` equal ``generate_phantoms(100)`` bit for bit.
Everything is whole-array numpy on float32; ``benchmark_rate()`` prints the speed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from brainae.errors import BrainaeError

PHANTOM_CLASSES = ["no_tumor", "tumor"]
_EGG = 0.07  # the head is this much wider at the back than at the front


@dataclass
class PhantomSlices:
    """images: float32 (N, H, W) in [0, 1]; masks: bool (N, H, W) tumour core; labels: int64 (N,)."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray


def generate_phantoms(n: int, size: int = 128, seed: int = 0, tumor_fraction: float = 0.5) -> PhantomSlices:
    """Generate ``n`` square phantom slices of ``size`` x ``size`` pixels.

    Args:
        n: number of slices (>= 1).
        size: height and width in pixels (>= 16; 32 to 512 is the intended range).
        seed: non-negative integer. Slice i depends only on (seed, i, size, tumor_fraction),
            so a smaller ``n`` gives a prefix of a larger one.
        tumor_fraction: probability in [0, 1] that a slice carries a tumour, drawn per slice.

    Returns:
        PhantomSlices: float32 images in [0, 1] with a black background, bool tumour-core
        masks (ring and necrotic centre included, edema excluded), int64 labels indexing
        ``PHANTOM_CLASSES`` (0 = no_tumor, 1 = tumor).

    Example:
        >>> data = generate_phantoms(8, size=64, seed=1)
        >>> data.images.shape, data.images.dtype, bool(data.masks[data.labels == 0].any())
        ((8, 64, 64), dtype('float32'), False)
    """
    _check_arguments(n, size, seed, tumor_fraction)
    size = int(size)
    images = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), bool)
    labels = np.zeros(n, np.int64)
    for i in range(n):
        images[i], masks[i], labels[i] = _one_slice(np.random.default_rng([seed, i]), size, tumor_fraction)
    return PhantomSlices(images=images, masks=masks, labels=labels)


def _check_arguments(n, size, seed, tumor_fraction) -> None:
    def is_int(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not is_int(n) or n < 1:
        raise BrainaeError(f"n must be an integer >= 1, got {n!r}")
    if not is_int(size) or size < 16:
        raise BrainaeError(f"size must be an integer >= 16, got {size!r}")
    if not is_int(seed) or seed < 0:
        raise BrainaeError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(tumor_fraction, (int, float, np.integer, np.floating)) or not 0 <= tumor_fraction <= 1:
        raise BrainaeError(f"tumor_fraction must be a number in [0, 1], got {tumor_fraction!r}")


@lru_cache(maxsize=16)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] as a row and a column (they broadcast to the image)."""
    axis = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    return axis[None, :], axis[:, None]


@lru_cache(maxsize=64)
def _bump_basis(size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, k) Gaussian bumps and their transpose, rows scaled so fields have unit variance.

    A smooth random field is basis @ G @ basis.T with G a small (k, k) normal matrix: two thin
    matrix products instead of an FFT or a zoom, and the feature scale is set by k, not size.
    """
    centres = np.linspace(-1.2, 1.2, k)
    bumps = np.exp(-0.5 * ((_grid(size)[1] - centres) / (centres[1] - centres[0])) ** 2)
    basis = (bumps / np.sqrt((bumps**2).sum(1, keepdims=True))).astype(np.float32)
    return basis, np.ascontiguousarray(basis.T)


def _smooth_field(rng: np.random.Generator, size: int, k: int) -> np.ndarray:
    basis, basis_t = _bump_basis(size, k)
    half = basis @ rng.standard_normal((k, k), dtype=np.float32)
    # Row blocks keep each product small enough (m*n*k <= 2**18) for OpenBLAS to run it on this
    # thread: when another process shared the 2 cores, its worker threads made generation 10x slower.
    rows = max(1, 2**18 // (size * k))
    return np.concatenate([half[i : i + rows] @ basis_t for i in range(0, size, rows)])


def _random_bytes(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Uniform int8 noise (std 73.9): ten times cheaper than ``standard_normal``."""
    return np.frombuffer(rng.bytes(math.prod(shape)), np.int8).reshape(shape)


def _fine_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unit-variance grain a couple of pixels across: a 2x2 box over uniform noise."""
    raw = _random_bytes(rng, size + 1, size + 1)
    rows = np.add(raw[:-1], raw[1:], dtype=np.int16)
    return np.add(rows[:, :-1], rows[:, 1:], dtype=np.float32) * (1 / 147.8)  # 2 * std(int8)


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of ``distance > 0``, ``width`` wide: anti-aliased edges without a blur.
    Works in place: callers pass a fresh temporary."""
    if width != 1.0:
        distance *= 1.0 / width
    distance += 0.5
    return np.clip(distance, 0.0, 1.0, out=distance)


def _lerp(base, target, weight):
    return base + (target - base) * weight


@dataclass
class _Pose:
    """Where the head sits: centre (cx, cy), semi-axes (a, b), rotation (c, s) = (cos, sin)."""

    size: int
    cx: float
    cy: float
    a: float
    b: float
    c: float
    s: float

    def _index(self, t: float) -> int:
        return min(max(int((t + 1) / 2 * self.size), 0), self.size - 1)

    def _image_xy(self, p: float, q: float) -> tuple[float, float]:
        u, v = self.a * p / (1.0 - _EGG * q), self.b * q
        return self.cx + self.c * u - self.s * v, self.cy + self.s * u + self.c * v

    def pixel(self, p: float, q: float) -> tuple[int, int]:
        x, y = self._image_xy(p, q)
        return self._index(y), self._index(x)

    def box(self, p: float, q: float, half_p: float, half_q: float):
        """Pixel slices covering the head-coordinate rectangle centred on (p, q)."""
        x, y = self._image_xy(p, q)
        half_p /= 1.0 - _EGG
        hx = abs(self.c) * self.a * half_p + abs(self.s) * self.b * half_q
        hy = abs(self.s) * self.a * half_p + abs(self.c) * self.b * half_q
        return np.s_[self._index(y - hy) : self._index(y + hy) + 1, self._index(x - hx) : self._index(x + hx) + 1]


def _one_slice(rng: np.random.Generator, size: int, tumor_fraction: float):
    # Decided first, and the tumour's numbers drawn in a fixed count, so the anatomy of slice i
    # is the same whatever tumor_fraction is.
    has_tumor = rng.random() < tumor_fraction
    x, y = _grid(size)
    edge = 3.0 / size  # ramp width: ~1.5 pixels
    low, mid, texture = _smooth_field(rng, size, 5), _smooth_field(rng, size, 14), _fine_texture(rng, size)

    # Head coordinates: (p, q) maps the head ellipse (taller than wide) to the unit disc, so
    # all anatomy is placed relative to the head.
    tilt, scale = rng.uniform(-0.3, 0.3), rng.uniform(0.86, 1.0)
    pose = _Pose(size, rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04), scale * rng.uniform(0.7, 0.8),
                 scale * rng.uniform(0.86, 0.94), math.cos(tilt), math.sin(tilt))
    x0, y0 = x - pose.cx, y - pose.cy
    q = (pose.c / pose.b) * y0 - (pose.s / pose.b) * x0
    p = ((pose.c / pose.a) * x0 + (pose.s / pose.a) * y0) * (1.0 - _EGG * q)
    rho = np.sqrt(p * p + q * q) + 0.025 * low  # 1 = outer skull edge; low = mild deformation

    pixel = 2.0 / (size * pose.a)  # one pixel in head units: thin layers must stay visible
    skull_t, gap_t = max(rng.uniform(0.05, 0.08), 1.5 * pixel), max(rng.uniform(0.025, 0.045), pixel)
    brain_radius = 1.0 - skull_t - gap_t
    inward = rho * (-1.0 / edge)  # shared by the three ramps (radius - rho) / edge below
    head, within_skull, brain = (_ramp(inward + r / edge, 1.0) for r in (1.0, 1.0 - skull_t, brain_radius))
    depth = brain_radius - rho  # > 0 inside the brain, grows toward the centre
    gray, csf = _cortex(rng, p, q, depth, mid, edge)
    _add_ventricles_and_nuclei(rng, pose, p, q, low, gray, csf)

    # T1-like order (CSF < gray < white); jitter plus a gamma on the levels varies contrast.
    gamma = rng.uniform(0.75, 1.35)
    wm_i = rng.uniform(0.64, 0.8)
    gm_i = (wm_i - rng.uniform(0.16, 0.28)) ** gamma
    csf_i, skull_i, wm_i = rng.uniform(0.04, 0.16) ** gamma, rng.uniform(0.8, 1.0) ** gamma, wm_i**gamma
    tissue = _lerp(_lerp(wm_i, gm_i, gray), csf_i, csf)
    tissue *= 1.0 + 0.035 * texture + 0.03 * mid

    mask = np.zeros((size, size), bool)
    tumor_draws = rng.random(12).tolist()
    if has_tumor:
        _add_tumor(tumor_draws, gamma, pose, brain_radius, pixel, tissue, mask, p, q, brain, mid, texture)

    image = skull_i * head + (csf_i - skull_i) * within_skull + brain * (tissue - csf_i)
    image *= _bias_field(rng, x, y)
    return _add_noise(rng, image, head, rng.uniform(0.01, 0.04)), mask, int(has_tumor)


def _bias_field(rng, x, y):
    """Smooth multiplicative shading, like a receive coil's: a random tilt plus a centre-to-edge
    bowl, separable so it costs one full-size addition."""
    tilt_x, tilt_y, bowl = rng.uniform(-0.12, 0.12, 3).tolist()
    return (1.0 + tilt_x * x + bowl * x * x) + (tilt_y * y + bowl * y * y)


def _cortex(rng, p, q, depth, mid, edge):
    """Gray rim and CSF (sulci, midline fissure). Sulci run roughly perpendicular to the surface,
    so they follow the angle around the head; the mid-scale field bends them and varies their
    spacing and depth."""
    thickness = rng.uniform(0.09, 0.14)
    fold = np.cos(np.arctan2(q, p) * int(rng.integers(22, 34)) + 3.5 * mid)  # +1 in a sulcus
    gray = _ramp(thickness * (1.0 + 0.5 * fold + 0.2 * mid) - depth, edge)
    # Sulci narrow inward and stop one to two cortex thicknesses deep.
    sulci = _ramp(fold - 0.8 + 0.1 * mid - depth * (0.15 / thickness), 0.1)
    fissure = _ramp(0.015 - np.abs(p), edge) * _ramp(np.abs(q) - 0.5, 0.05)
    return gray, np.maximum(sulci, fissure, out=sulci)


def _add_ventricles_and_nuclei(rng, pose, p, q, low, gray, csf):
    """Lateral ventricles bowed like ')(' (the axial 'butterfly') into ``csf``, deep gray nuclei
    beside them into ``gray``; built on |p|, so the mirror image comes free, and only in the
    central box they can reach."""
    box = pose.box(0.0, 0.0, 0.55, 0.7)
    p, q, low = p[box], q[box], low[box]
    side = np.abs(p)
    enlarge = rng.uniform(0.75, 1.3)
    along = q + rng.uniform(0.0, 0.1)
    across = side - rng.uniform(0.07, 0.11) - rng.uniform(0.5, 1.2) * along * along
    across *= 1.0 + rng.uniform(-0.25, 0.25) * np.sign(p)  # one side a little wider
    inside = (across * (1 / (0.055 * enlarge))) ** 2 + (along * (1 / (0.27 * enlarge))) ** 2
    inside += 0.2 * low
    np.maximum(csf[box], _ramp(1.0 - inside, 0.3), out=csf[box])
    nuclei = ((side - 0.27) * (1 / 0.1)) ** 2 + ((q - 0.05) * (1 / 0.2)) ** 2
    nuclei += 0.3 * low
    np.maximum(gray[box], 0.5 * _ramp(1.0 - nuclei, 0.5), out=gray[box])


def _add_tumor(draws, gamma, pose, brain_radius, pixel, tissue, mask, p, q, brain, mid, texture):
    """Blend an irregular tumour and its darker edema halo into ``tissue`` and mark its core in
    ``mask``, working only in the box the halo can reach."""
    # At least two pixels across, so the core never vanishes at small sizes.
    radius, elongation = max(0.1 + 0.18 * draws[0], 2.0 * pixel), 0.75 + 0.5 * draws[3]
    # Centre well inside the brain so the core, and most of the halo, stay in tissue.
    reach = max(brain_radius - 1.3 * radius - 0.1, 0.05) * math.sqrt(draws[1])
    tp, tq = reach * math.cos(2 * math.pi * draws[2]), reach * math.sin(2 * math.pi * draws[2])
    extent = 3.6 * radius * max(elongation, 1 / elongation)
    box = pose.box(tp, tq, extent, extent)
    c, s = math.cos(math.pi * draws[4]), math.sin(math.pi * draws[4])
    dp, dq = p[box] - tp, q[box] - tq
    across, along = c * dp + s * dq, c * dq - s * dp
    d = np.sqrt((across * (1 / (radius * elongation))) ** 2 + (along * (elongation / radius)) ** 2)
    # Lobulated, slightly ragged outline; relative to the centre so the centre stays inside.
    d += 0.3 * (mid[box] - mid[pose.pixel(tp, tq)]) + 0.04 * texture[box]

    halo = _ramp(1.5 + 0.8 * draws[5] - d, 0.4) * brain[box]
    area = _lerp(tissue[box], (0.25 + 0.15 * draws[6]) ** gamma, halo)
    core = _ramp(1.0 - d, 3.0 / (pose.size * radius)) * brain[box]
    bright = (0.82 + 0.18 * draws[7]) ** gamma
    if draws[8] < 0.5:  # ring-enhancing: bright rim around a dark necrotic centre
        necrotic = _ramp(0.45 + 0.25 * draws[9] - d, 0.15)
        inside = _lerp(bright, (0.1 + 0.15 * draws[10]) ** gamma, necrotic)
    else:  # solid, mottled
        inside = bright * (1.0 + 0.08 * texture[box])
    tissue[box] = _lerp(area, inside, core)
    mask[box] = core >= 0.5


def _add_noise(rng, image, head, sigma):
    """Rician-like noise, |signal + noise|; the sum of two uniforms looks Gaussian. The
    background stays exactly 0."""
    raw = _random_bytes(rng, 2, *image.shape)
    noise = np.add(raw[0], raw[1], dtype=np.int16)
    image += noise * np.float32(sigma / 104.5)  # 104.5 = std of the sum of two uniform int8s
    np.abs(image, out=image)
    image *= head
    return np.minimum(image, 1.0, out=image)


def benchmark_rate(n: int = 2000, size: int = 128, repeats: int = 3) -> float:
    """Print and return slices per second (single process), the best of ``repeats`` runs:
    the best run is the one least disturbed by other work on the machine."""
    generate_phantoms(20, size=size)  # warm the basis caches
    rates = []
    for seed in range(repeats):
        start = time.perf_counter()
        generate_phantoms(n, size=size, seed=seed)
        rates.append(n / (time.perf_counter() - start))
    print(f"{max(rates):,.0f} slices/s at {size}x{size} (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    return max(rates)


if __name__ == "__main__":
    benchmark_rate()
