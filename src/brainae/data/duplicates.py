"""Which images are duplicates of each other: exact copies and near copies by perceptual hash.

Used by ``brainae data inspect`` (``data/inspect.py``), the split grouping (``data/grouping.py``) and
``--dedupe``. Two kinds of duplicates:

* exact: the same file bytes (sha1 of the file), or the same preprocessed pixels when the source is not a
  readable file (hub rows, NIfTI slices, phantoms);
* near: a 64-bit DCT perceptual hash (pHash) of the preprocessed image within ``near_threshold`` bits,
  e.g. the same scan re-encoded, resized or slightly brightened. Near groups are formed over distinct
  images: each exact group takes part through its first member only, so every redundant image is counted
  once, either as exact or as near.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from brainae.data.types import ImageSet, first_channel
from brainae.errors import BrainaeError

# ---------------------------------------------------------------------------------------------- hashing

def exact_keys(sources: list[str], images: np.ndarray) -> list[str]:
    """One key per image; equal keys = exact duplicates (the same file bytes, else the same pixels)."""
    uses = Counter(sources)
    keys = []
    for i, src in enumerate(sources):
        # A path shared by several items (e.g. frames of one TIFF) does not identify one image: use pixels.
        if uses[src] == 1 and os.path.isfile(src):
            try:
                keys.append("file:" + hashlib.sha1(Path(src).read_bytes()).hexdigest())
                continue
            except OSError:
                pass  # unreadable now: fall back to the pixels
        keys.append("pixels:" + hashlib.sha1(np.ascontiguousarray(images[i]).tobytes()).hexdigest())
    return keys


def _dct_rows(n: int, k: int = 8) -> np.ndarray:
    """The k lowest-frequency DCT-II basis vectors of length n, shape (k, n)."""
    x = np.arange(n)
    return np.cos(np.pi * (2 * x[None, :] + 1) * np.arange(k)[:, None] / (2 * n))


def phash(images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """64-bit DCT perceptual hashes of uint8 images (N, H, W), as uint64 (N,).

    Bit = whether each of the 8x8 lowest-frequency DCT coefficients of the whole image exceeds the median
    of the 63 non-DC ones (classic pHash, taken straight from the full-size image instead of a 32x32
    resize). Two matrix products per chunk, no Python loop over images. An image without structure
    (blank, a pure ramp) has coefficients tied near the median, so its bits are unstable.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> img = np.kron(rng.integers(20, 200, (8, 8)), np.ones((4, 4))).astype(np.uint8)[None]
        >>> int(np.bitwise_count(phash(img)[0] ^ phash(img + 2)[0]))  # brightness only moves the DC term
        0
    """
    n, h, w = images.shape
    rows, cols = _dct_rows(h).astype(np.float32), _dct_rows(w).astype(np.float32)
    out = np.empty(n, dtype=np.uint64)
    for start in range(0, n, chunk):
        x = images[start:start + chunk].astype(np.float32)
        coef = (rows @ (x @ cols.T)).reshape(len(x), 64)  # (n, 8, 8) low frequencies, flattened
        bits = coef > np.median(coef[:, 1:], axis=1, keepdims=True)
        out[start:start + chunk] = np.packbits(bits, axis=1).view(">u8").ravel()
    return out


def _near_pairs(hashes: np.ndarray, threshold: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """All pairs i < j with Hamming distance <= threshold, by blocks of rows (memory chunk x N bytes)."""
    found_i, found_j = [], []
    for start in range(0, len(hashes), chunk):
        block = hashes[start:start + chunk]
        dist = np.bitwise_count(block[:, None] ^ hashes[None, start:])  # only columns >= start: upper half
        i, j = np.nonzero(dist <= threshold)
        i, j = i + start, j + start
        keep = j > i
        found_i.append(i[keep])
        found_j.append(j[keep])
    return np.concatenate(found_i), np.concatenate(found_j)


# ------------------------------------------------------------------------------------------- grouping

def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of n nodes, given edges i-j."""
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def group_edges(groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Edges that chain each group's members (enough to connect them)."""
    pairs = [(a, b) for g in groups for a, b in zip(g, g[1:])]
    arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def index_groups(labels: np.ndarray, index: np.ndarray | None = None) -> list[list[int]]:
    """Index groups (sorted, size >= 2) of nodes sharing a label, ordered by first member."""
    index = np.arange(len(labels)) if index is None else index
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [sorted(index[part].tolist()) for part in np.split(order, bounds) if len(part) >= 2]
    return sorted(groups)


def find_duplicates(ds: ImageSet, near_threshold: int = 4, keys: list[str] | None = None) -> dict:
    """Groups of exact and near duplicates.

    Args:
        ds: the preprocessed images; ``ds.sources`` that are readable files are hashed by their bytes.
        keys: the images' keys from :func:`exact_keys` when known (the preprocessing cache keeps them).
        near_threshold: largest Hamming distance (of 64 bits) between perceptual hashes that counts as a
            near duplicate. Distances are even (31 of the 63 non-DC bits are always set), so 4 = 5. On the
            study's MRI, 0 finds re-encoded copies, 2-4 mostly neighbouring slices of one series, and from
            about 4 some different scans of similar layout join (even across classes).

    Returns:
        {"exact": [[i, j, ...], ...], "near": [[...], ...]}: index groups, each sorted, size >= 2. An image
        is in at most one exact and one near group; a near group holds only the first member of an exact
        group, so the two kinds never count the same redundant image twice.

    Example:
        >>> find_duplicates(ds)  # doctest: +SKIP
        {'exact': [[0, 3], [1, 6]], 'near': [[4, 9]]}
    """
    if near_threshold < 0:
        raise BrainaeError(f"near_threshold must be >= 0 bits, got {near_threshold}")
    if len(ds) == 0:
        return {"exact": [], "near": []}
    keys = keys if keys is not None else exact_keys(ds.sources, ds.images)
    _, exact_labels = np.unique(np.array(keys), return_inverse=True)
    exact = index_groups(exact_labels)
    # One representative (the first index) per exact group: the search then runs over distinct images.
    _, first = np.unique(exact_labels, return_index=True)
    reps = np.sort(first)
    i, j = _near_pairs(phash(first_channel(ds.images)[reps]), near_threshold)
    near = index_groups(components(len(reps), i, j), index=reps)
    return {"exact": exact, "near": near}
