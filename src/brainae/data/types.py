"""The two shapes data takes inside brainae.

Sources (folder, hub, NIfTI) list ``RawItem``s: cheap to enumerate, decoded lazily, so the
preprocessing cache can skip decoding entirely on a second run. Everything after preprocessing
works on one ``ImageSet``: uint8 arrays in memory (2,870 images at 128x128 are 47 MB).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
from PIL import Image

Decoded = Union[Image.Image, np.ndarray]  # PIL image, or a float/int 2-D array (NIfTI slice)


@dataclass
class RawItem:
    """One image a source can deliver.

    source: a stable id used in the cache index and in reports (a file path, ``hf:name/train/17``,
        ``scan.nii.gz#z=40``).
    label: class name.
    split: "train", "val" or "test" when the source defines splits, else None.
    load: decodes the image; may raise any exception for a bad file (the caller skips and counts it).
    fingerprint: what identifies the content for cache keys without decoding it (e.g. "size:mtime").
    """

    source: str
    label: str
    split: Optional[str]
    load: Callable[[], Decoded]
    fingerprint: str = ""


@dataclass
class ImageSet:
    """Preprocessed images with labels, splits and (phantom only) tumour masks.

    images: uint8 (N, H, W), 0..255 maps to [0, 1].
    labels: int64 (N,), indices into ``classes``.
    splits: str array (N,) of "train" / "val" / "test".
    sources: list of N source ids.
    masks: bool (N, H, W) tumour masks, or None when the source has none.
    skipped: [(source, reason)] for items that could not be read.
    original_sizes: [(width, height)] of each source image before preprocessing.
    modes: PIL mode of each source image before conversion ("RGB", "L", "I;16", "nifti", ...).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    splits: np.ndarray
    sources: list[str]
    masks: Optional[np.ndarray] = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    description: str = ""
    original_sizes: list[tuple[int, int]] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "ImageSet":
        """Rows ``index`` (a boolean mask or integer array) as a new ImageSet."""
        idx = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=list(self.classes),
            splits=self.splits[idx],
            sources=[self.sources[i] for i in idx],
            masks=None if self.masks is None else self.masks[idx],
            skipped=list(self.skipped),
            description=self.description,
            original_sizes=[self.original_sizes[i] for i in idx] if self.original_sizes else [],
            modes=[self.modes[i] for i in idx] if self.modes else [],
        )

    def split(self, name: str) -> "ImageSet":
        """The rows of one split ("train", "val", "test")."""
        return self.subset(self.splits == name)
