"""Training and validation batches gathered straight from the preprocessed images.

A ``DataLoader`` over a ``TensorDataset`` fetches every image on its own and stacks them again: per
batch, a Python loop of ``batch_size`` index calls and a collate, and first a copy of the split. Here a
batch is one gather of its rows:
- on a CPU, from the image array itself, which is the memory-mapped cache file when the data came from
  disk: the split is never copied, so memory stays flat however large the dataset grows;
- on a GPU, from a copy of the split that is moved to the device once, as uint8 (2,870 images at 128 px
  are 47 MB), so no batch crosses the bus and the host never waits inside an epoch.
Shuffling draws from a generator seeded with ``seed + epoch``, so a resumed run sees the same batches
as one that was never stopped. Lightning calls ``loader.sampler.set_epoch(epoch)`` before each epoch,
as it does for its own samplers.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from brainae.data.types import with_channels


class _EpochSeed:
    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class ResidentLoader:
    """Iterable of ``(uint8 images (B, C, H, W), labels (B,))`` batches of ``images[rows]``.

    Example:
        >>> images, labels = np.zeros((10, 8, 8), np.uint8), np.arange(10)
        >>> [len(x) for x, _ in ResidentLoader(images, labels, np.arange(10), batch_size=4)]
        [4, 4, 2]
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, rows: np.ndarray, batch_size: int,
                 shuffle: bool = False, drop_last: bool = False, seed: int = 0,
                 device: Optional[torch.device] = None) -> None:
        self.device = device or torch.device("cpu")
        rows = np.asarray(rows, dtype=np.int64)
        if self.device.type == "cpu":
            self.images, self.labels, self.rows = images, np.asarray(labels), rows
        else:  # the split, once, as uint8 on the device
            self.images = torch.from_numpy(with_channels(np.asarray(images[rows]))).to(self.device)
            self.labels = torch.from_numpy(np.asarray(labels)[rows]).to(self.device)
            self.rows = np.arange(len(rows))
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.sampler = _EpochSeed()
        self.batch_sampler = None  # what Lightning looks for on a loader; shuffling is done here

    def __len__(self) -> int:
        n = len(self.rows)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.rows
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.sampler.epoch)
            order = self.rows[torch.randperm(len(self.rows), generator=g).numpy()]
        on_device = isinstance(self.images, torch.Tensor)
        if on_device:
            order = torch.from_numpy(order).to(self.device)  # one transfer per epoch, not per batch
        for b in range(len(self)):
            rows = order[b * self.batch_size:(b + 1) * self.batch_size]
            if on_device:
                yield self.images.index_select(0, rows), self.labels.index_select(0, rows)
            else:
                yield torch.from_numpy(with_channels(self.images[rows])), torch.from_numpy(self.labels[rows])
