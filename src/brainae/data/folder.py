"""A local folder of class sub-folders of images, optionally already split.

Layouts: ``ROOT/<class>/*.jpg`` (split later, by group), ``ROOT/Training|Testing/<class>`` (the Kaggle
layout of the study's data), ``ROOT/train|val|test/<class>``, or ``ROOT/Testing/<class>`` alone (a test set
to evaluate on).
"""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from brainae.data.types import RawItem
from brainae.errors import BrainaeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_dirs(root: Path) -> dict[str, Path]:
    found = {SPLIT_NAMES[p.name.lower()]: p for p in _class_dirs(root) if p.name.lower() in SPLIT_NAMES}
    if found and "train" not in found and set(found) != {"test"}:
        names = ", ".join(p.name for p in found.values())
        raise BrainaeError(f"{root} has split folders ({names}) but no Training/train folder; add one or point at a folder of classes")
    return found  # a Testing/ folder alone: someone else's test set, all of it test


def _open_lazily(path: Path):
    def load() -> Image.Image:
        # Not decoded yet: preprocessing may ask the JPEG decoder for a downscaled draft first.
        return Image.open(path)

    return load


def _raise(error: OSError):
    def load():
        raise error

    return load


def folder_items(root: str | Path) -> list[RawItem]:
    """List every image file under ``root`` with its class (sub-folder) and split.

    Files with other suffixes are ignored (README.txt, .DS_Store); unreadable images are found
    later, when decoded, and skipped with a count.

    Example:
        >>> items = folder_items("../shared/data/brain-tumor-mri")  # doctest: +SKIP
        >>> items[0].label, items[0].split
        ('glioma_tumor', 'train')
    """
    root = Path(root)
    if not root.is_dir():
        raise BrainaeError(f"data folder {root} not found; pass a folder of class sub-folders, phantom, or hf:OWNER/NAME")
    splits = _split_dirs(root) or {None: root}
    items: list[RawItem] = []
    for split, split_dir in splits.items():
        class_dirs = _class_dirs(split_dir)
        if not class_dirs:
            raise BrainaeError(
                f"{split_dir} has no class sub-folders; put images in {split_dir}/<class>/ (e.g. {split_dir}/no_tumor/1.jpg)"
            )
        for class_dir in class_dirs:
            unreadable: list[OSError] = []
            for dirpath, dirnames, filenames in os.walk(class_dir, onerror=unreadable.append):
                dirnames.sort()
                for name in sorted(filenames):
                    path = Path(dirpath) / name
                    if path.suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                        continue
                    try:
                        st = path.stat()
                        fingerprint = f"{st.st_size}:{st.st_mtime_ns}"
                    except OSError as e:  # a dangling link: listed, so decoding skips and counts it
                        fingerprint = f"unreadable:{e.errno}"
                    items.append(RawItem(source=str(path), label=class_dir.name, split=split,
                                         load=_open_lazily(path), fingerprint=fingerprint))
            # a folder that cannot be listed is counted as skipped too, not silently dropped
            items.extend(RawItem(source=str(e.filename), label=class_dir.name, split=split, load=_raise(e),
                                 fingerprint=f"unreadable:{e.errno}") for e in unreadable)
    if not items:
        raise BrainaeError(f"no images (.jpg .png .bmp .tif) found under {root}; check the path")
    return items
