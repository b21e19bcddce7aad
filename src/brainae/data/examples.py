"""Which test images a study shows: picked once, every class represented, the same in every figure."""
from __future__ import annotations

import numpy as np


def pick_examples(labels: np.ndarray, n: int = 8, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` test images, as many from each class as possible, chosen once per study.

    Example:
        >>> pick_examples(np.array([0, 0, 0, 1, 1, 2]), n=3).tolist()
        [1, 3, 5]
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}
    chosen: list[int] = []
    while len(chosen) < min(n, len(labels)):
        for c in classes:
            if pools[c] and len(chosen) < n:
                chosen.append(int(pools[c].pop()))
    return np.array(sorted(chosen, key=lambda i: (labels[i], i)))


def spread_over_classes(examples: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``examples``, taken in turn from each class, so every class (tumours too) shows.

    Example:
        >>> spread_over_classes(np.array([0, 1, 2, 3, 4, 5]), np.array([0, 0, 0, 1, 1, 1]), 3).tolist()
        [0, 3, 1]
    """
    pools = {c: [i for i in examples if labels[i] == c] for c in dict.fromkeys(labels[examples].tolist())}
    chosen: list[int] = []
    while len(chosen) < min(n, len(examples)):
        for pool in pools.values():
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop(0)))
    return np.array(chosen, dtype=int)


def interpolation_pair(examples: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """The first example, and the first example of another class (the same image twice if there is none)."""
    first = int(examples[0])
    other = [int(i) for i in examples if labels[i] != labels[first]]
    return first, (other[0] if other else int(examples[-1]))
