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

Decoded = Union[Image.Image, np.ndarray]  # PIL image, or a float 2-D (H, W) or 3-D (C, H, W) array (NIfTI slice)


@dataclass
class RawItem:
    """One image a source can deliver.

    source: a stable id used in the cache index and in reports (a file path, ``hf:name/train/17``,
        ``scan.nii.gz#z=40``).
    label: class name.
    split: "train", "val" or "test" when the source defines splits, else None.
    load: decodes the image; may raise any exception for a bad file (the caller skips and counts it).
    fingerprint: what identifies the content for cache keys without decoding it (e.g. "size:mtime").
    group: a named group that no split may separate (the subject of a volume's slices), or "".
    load_mask: the tumour mask (bool 2-D, the geometry of ``load()``), for sources that have masks.
    """

    source: str
    label: str
    split: Optional[str]
    load: Callable[[], Decoded]
    fingerprint: str = ""
    group: str = ""
    load_mask: Optional[Callable[[], np.ndarray]] = None


@dataclass
class ImageSet:
    """Preprocessed images with labels, splits, groups and (where the source has them) tumour masks.

    images: uint8 (N, H, W), or (N, C, H, W) for several stacked modalities; 0..255 maps to [0, 1].
    labels: int64 (N,), indices into ``classes``.
    splits: str array (N,) of "train" / "val" / "test".
    sources: list of N source ids.
    masks: bool (N, H, W) tumour masks, or None when the source has none.
    skipped: [(source, reason)] for items that could not be read.
    original_sizes: [(width, height)] of each source image before preprocessing.
    modes: PIL mode of each source image before conversion ("RGB", "L", "I;16", "nifti", ...).
    group_names: per image, the named group it belongs to (subject, volume, ``--group-by`` id) or "".
    group_unit: what a named group is ("subject", "volume", "id"), "" when the source names none.
    groups: per image, the id of its split group (named groups joined with duplicates): the unit that
        splits never separate and that bootstrap intervals resample; None before splitting.
    removed: [(source, reason)] for images left out so that no split holds a copy of another's.
    grouping: the summary of how the data was grouped and split (see ``data.grouping.summarize``).
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
    group_names: list[str] = field(default_factory=list)
    group_unit: str = ""
    groups: Optional[np.ndarray] = None
    removed: list[tuple[str, str]] = field(default_factory=list)
    grouping: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else int(self.images.shape[1])

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
            group_names=[self.group_names[i] for i in idx] if self.group_names else [],
            group_unit=self.group_unit,
            groups=None if self.groups is None else self.groups[idx],
            removed=list(self.removed),
            grouping=dict(self.grouping),
        )

    def split(self, name: str) -> "ImageSet":
        """The rows of one split ("train", "val", "test"), or every row for "all"."""
        return self.subset(np.ones(len(self), bool) if name == "all" else self.splits == name)


def require_one_channel(ds: ImageSet, what: str) -> None:
    """Refuse stacked modalities in a command that shows or compares single images."""
    if ds.channels > 1:
        from brainae.errors import BrainaeError

        raise BrainaeError(f"{what} works on one modality and this data stacks {ds.channels}; use a run trained "
                           f"with one --modality (evaluate, reconstruct and anomaly take stacked ones)")


def with_channels(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) view of images stored as (N, H, W) (one modality) or (N, C, H, W)."""
    return images[:, None] if images.ndim == 3 else images


def first_channel(images: np.ndarray) -> np.ndarray:
    """(N, H, W): the images themselves, or the first modality of stacked ones (for figures and hashes)."""
    return images if images.ndim == 3 else images[:, 0]
