"""Seeded, stratified splits: model selection uses a validation split carved from training data."""
from __future__ import annotations

import numpy as np


def _take(n: int, fraction: float) -> int:
    # Every class with at least 3 images gets at least one in each carved split, so per-class
    # metrics exist even for rare classes.
    k = int(round(n * fraction))
    return max(k, 1) if n >= 3 and fraction > 0 else k


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Assign each index to a split; the rest of each class goes to "train".

    Example:
        >>> s = stratified_split(np.array([0] * 10 + [1] * 10), {"val": 0.2}, seed=0)
        >>> int((s == "val").sum()), int((s == "train").sum())
        (4, 16)
    """
    labels = np.asarray(labels)
    out = np.full(len(labels), "train", dtype=object)
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name, frac in fractions.items():
            k = _take(len(idx), frac)
            out[idx[start:start + k]] = name
            start += k
    return out.astype(str)


def assign_splits(labels: np.ndarray, given: list, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Keep the splits a source defines; carve what is missing (val, then test) from its train part.

    given: per item "train"/"val"/"test" or None (source has no splits).
    """
    given_arr = np.array([g if g else "train" for g in given], dtype=object)
    present = set(given_arr)
    carve = {}
    if "test" not in present:
        carve["test"] = test_fraction
    if "val" not in present:
        carve["val"] = val_fraction
    if not carve:
        return given_arr.astype(str)
    train_idx = np.flatnonzero(given_arr == "train")
    # fractions are of the whole set; rescale to the train part they are carved from
    share = len(train_idx) / max(len(given_arr), 1)
    carved = stratified_split(labels[train_idx], {k: v / share for k, v in carve.items()}, seed)
    given_arr[train_idx] = carved
    return given_arr.astype(str)


def limit_per_split(splits: np.ndarray, labels: np.ndarray, n_train: int, seed: int) -> np.ndarray:
    """Indices to keep so the train split has at most ``n_train`` images; val/test shrink in proportion."""
    n_have = int((splits == "train").sum())
    if n_train <= 0 or n_have <= n_train:
        return np.arange(len(splits))
    ratio = n_train / n_have
    rng = np.random.default_rng(seed + 1)
    keep = []
    for s in np.unique(splits):
        for c in np.unique(labels[splits == s]):
            idx = np.flatnonzero((splits == s) & (labels == c))
            k = max(1, int(round(len(idx) * ratio)))
            keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))
