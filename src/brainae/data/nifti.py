"""NIfTI volumes (``.nii`` / ``.nii.gz``) as 2-D slices, through nibabel.

Each volume is reoriented to RAS+ (so axis 0/1/2 = sagittal/coronal/axial whatever the scanner's
storage order), intensity-normalised once per volume, and cut into slices; near-empty slices
(outside the head) are dropped at listing time so they never reach training.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from brainae.data.types import RawItem
from brainae.errors import BrainaeError

LOW_PCT, HIGH_PCT = 0.5, 99.5  # robust range: a few hot voxels must not squash the whole volume
MIN_FOREGROUND = 0.01  # a slice with < 1 % non-zero voxels after normalisation counts as empty
_CACHED_VOLUMES = 2  # slices are loaded in file order, so two volumes (~64 MB each at 256^3) suffice


class _NoData(ValueError):
    """A readable file whose volume holds nothing to train on (all NaN, all zero, no foreground)."""


def _is_nifti(p: Path) -> bool:
    return p.name.lower().endswith((".nii", ".nii.gz"))


def _read_volume(file: Path) -> np.ndarray:
    """The volume as float32 RAS+ (X, Y, Z), normalised to [0, 1]; raises _NoData if it holds no data.

    4-D (and higher) images: the first volume. NaN/inf voxels become 0 (background).
    """
    import nibabel as nib  # imported here: only NIfTI sources need it

    img = nib.load(str(file))
    ndim = len(img.shape)
    # Slicing the proxy reads (and scales) only the first volume of a 4-D series.
    data = img.dataobj[(slice(None),) * 3 + (0,) * (ndim - 3)] if ndim > 3 else img.dataobj
    vol = np.asarray(data, dtype=np.float32)
    vol = vol.reshape(vol.shape + (1,) * (3 - vol.ndim))  # a 2-D image is a one-slice volume
    vol = nib.orientations.apply_orientation(vol, nib.orientations.io_orientation(img.affine))

    finite = np.isfinite(vol)
    if not finite.any():
        raise _NoData("all voxels are NaN/inf")
    vol = np.where(finite, vol, np.float32(0))
    nonzero = vol[vol != 0]
    if nonzero.size == 0:
        raise _NoData("volume is empty (all voxels are 0)")
    lo, hi = np.percentile(nonzero, [LOW_PCT, HIGH_PCT])
    if hi <= lo:  # constant intensity (e.g. a binary mask): foreground 1, background 0
        return (vol != 0).astype(np.float32)
    return np.clip((np.clip(vol, lo, hi) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


class _VolumeCache:
    """The last few normalised volumes, so loading the slices of one file reads it once."""

    def __init__(self, size: int = _CACHED_VOLUMES):
        self.size, self.volumes, self.lock = size, OrderedDict(), threading.Lock()

    def put(self, file: Path, vol: np.ndarray) -> None:
        with self.lock:
            self.volumes[file] = vol
            self.volumes.move_to_end(file)
            while len(self.volumes) > self.size:
                self.volumes.popitem(last=False)

    def get(self, file: Path) -> np.ndarray:
        with self.lock:
            vol = self.volumes.get(file)
        if vol is None:  # evicted: re-read (outside the lock; a duplicate read is harmless)
            vol = _read_volume(file)
            self.put(file, vol)
        return vol


def _slice_loader(cache: _VolumeCache, file: Path, axis: int, index: int):
    # rot90 turns a RAS+ slice upright (anterior / superior at the top) and copies it out of the volume.
    return lambda: np.ascontiguousarray(np.rot90(np.take(cache.get(file), index, axis=axis)))


def nifti_items(
    path: str, axis: int = 2, label: str = "volume"
) -> tuple[list[RawItem], list[tuple[str, str]]]:
    """List the non-empty 2-D slices of one NIfTI file or of every NIfTI file under a folder.

    Args:
        path: a ``.nii`` / ``.nii.gz`` file, or a folder searched recursively for them. Files inside a
            sub-folder get that (top-level) sub-folder's name as label, e.g. ``root/glioma/a.nii.gz``
            -> "glioma"; files directly in ``path`` get ``label``.
        axis: slicing axis of the RAS+-reoriented volume: 0 sagittal, 1 coronal, 2 axial.
        label: class name for files not in a sub-folder.

    Returns:
        (items, skipped). Each item's ``load()`` returns a float32 2-D array in [0, 1], normalised
        per volume (clipped at the 0.5th / 99.5th percentile of non-zero voxels); source is
        ``FILE#axis=2,slice=40``, split None. ``skipped`` lists ``(file, reason)`` for unreadable,
        all-NaN or empty volumes in a folder.

    Raises:
        BrainaeError: bad axis, missing path, a folder without NIfTI files, or a single given file
            that is not NIfTI or cannot be read.

    Example:
        >>> items, skipped = nifti_items("scans/", axis=2)  # doctest: +SKIP
        >>> items[0].source, items[0].label, items[0].load().shape  # doctest: +SKIP
        ('scans/glioma/a.nii.gz#axis=2,slice=12', 'glioma', (256, 256))
    """
    if axis not in (0, 1, 2):
        raise BrainaeError(f"NIfTI axis must be 0, 1 or 2 (sagittal, coronal, axial), got {axis!r} for {path}")
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and _is_nifti(p))
        if not files:
            raise BrainaeError(f"no .nii or .nii.gz files under {path}; point to a NIfTI file or a folder of them")
    elif root.is_file():
        if not _is_nifti(root):
            raise BrainaeError(f"{path} is not a NIfTI file; give a .nii / .nii.gz file or a folder of them")
        files = [root]
    else:
        raise BrainaeError(f"NIfTI path {path} does not exist; give a .nii / .nii.gz file or a folder of them")

    single = root.is_file()  # a single given file must work: its failure is an error, not a skip
    cache = _VolumeCache()
    items: list[RawItem] = []
    skipped: list[tuple[str, str]] = []
    for file in files:
        try:
            vol = _read_volume(file)
            other = tuple(a for a in range(3) if a != axis)
            keep = np.flatnonzero((vol > 0).mean(axis=other) >= MIN_FOREGROUND)
            if keep.size == 0:
                raise _NoData(f"no slice along axis {axis} has {MIN_FOREGROUND:.0%} non-zero voxels")
        except Exception as e:  # nibabel raises ImageFileError, EOFError, OSError, zlib.error, ...
            text = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
            reason = text if isinstance(e, _NoData) else f"{type(e).__name__}: {text}"
            if single:
                raise BrainaeError(f"cannot use NIfTI file {path} ({reason}); check or replace the file") from e
            skipped.append((str(file), reason))
            continue
        cache.put(file, vol)
        rel = () if single else file.relative_to(root).parts
        stat = os.stat(file)
        items.extend(
            RawItem(
                source=f"{file}#axis={axis},slice={int(i)}",
                label=rel[0] if len(rel) > 1 else label,
                split=None,
                load=_slice_loader(cache, file, axis, int(i)),
                fingerprint=f"{stat.st_size}:{stat.st_mtime_ns}:axis={axis}",
            )
            for i in keep
        )
    return items, skipped
