"""NIfTI scans as 2-D slices, and slices back into volumes (``brainae reconstruct``).

Each scan's volumes are reoriented to RAS+ (axis 0/1/2 = sagittal/coronal/axial whatever the storage
order). Its background level is read from the volume's own corners, so signed or offset intensities work;
the foreground is what stands clearly above it. Intensities are normalised per volume to the 0.5th-99.5th
percentile of the foreground. Slices with under 1 % foreground are dropped, the rest are turned upright
and resampled to square pixels from the affine's voxel sizes, so preprocessing can pad them to a square
without distorting the anatomy. With masks, each slice's class is ``tumor`` or ``no_tumor``.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from brainae.data.nifti_layout import Scan, choose_modalities, find_scans
from brainae.data.types import RawItem
from brainae.errors import BrainaeError, first_line
from brainae.registry import register_check

LOW_PCT, HIGH_PCT = 0.5, 99.5  # robust range: a few hot voxels must not squash the whole volume
FOREGROUND = 0.1  # a voxel is foreground above this share of the volume's bright end over its background
MIN_FOREGROUND = 0.01  # a slice with < 1 % foreground voxels counts as empty
MARGIN = 2  # voxels kept around the head by --crop-foreground
TUMOR, HEALTHY = "tumor", "no_tumor"


class NoData(ValueError):
    """A readable scan that holds nothing to train on (all NaN, empty, 4-D, a mask that does not fit)."""


@dataclass
class Volume:
    """A scan read into memory: float32 (C, X, Y, Z) in [0, 1] on the RAS+ grid, with what undoes it."""

    data: np.ndarray
    mask: Optional[np.ndarray]  # bool (X, Y, Z): tumour (any label > 0)
    foreground: np.ndarray  # bool (X, Y, Z): any modality above its background
    spacing: tuple[float, float, float]  # mm per RAS axis
    ornt: np.ndarray  # nibabel orientation of the stored array, to write results back in its order
    affine: np.ndarray
    crop: tuple[slice, slice, slice]  # the in-plane box kept (--crop-foreground), whole axes otherwise


def _load(file: Path):
    import nibabel as nib  # only NIfTI sources need it

    img = nib.load(str(file))
    shape = img.shape
    if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
        raise NoData(f"a 4-D series ({int(np.prod(shape[3:]))} volumes); brainae takes 3-D images: extract one "
                     f"volume first (e.g. fslroi)")
    vol = np.asarray(img.dataobj, dtype=np.float32).reshape(shape[:3] + (1,) * (3 - min(len(shape), 3)))
    return img, vol


def _background(vol: np.ndarray) -> float:
    """The intensity of empty space: the median of the volume's eight corner blocks."""
    blocks = [slice(0, max(2, n // 8)) for n in vol.shape]
    corners = [vol[tuple(b if bit & (1 << k) == 0 else slice(n - b.stop, n) for k, (b, n) in
                         enumerate(zip(blocks, vol.shape)))] for bit in range(8)]
    return float(np.median(np.concatenate([c.ravel() for c in corners])))


def _normalise(vol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normalised volume in [0, 1], foreground mask) of one volume."""
    finite = np.isfinite(vol)
    if not finite.any():
        raise NoData("all voxels are NaN/inf")
    vol = np.where(finite, vol, np.min(vol[finite]))  # NaN / inf voxels count as background
    bg = _background(vol)
    above = vol - bg
    top = float(np.percentile(above, HIGH_PCT))
    if top <= 0:
        top = float(above.max())
    if top <= 0:
        raise NoData("the volume is empty (nothing above its background)")
    fg = above > FOREGROUND * top
    lo, hi = (float(v) for v in np.percentile(above[fg], [LOW_PCT, HIGH_PCT]))
    if hi <= lo:  # constant foreground (e.g. a binary image): foreground 1, background 0
        return fg.astype(np.float32), fg
    return np.clip((above - lo) / (hi - lo), 0.0, 1.0).astype(np.float32), fg


def _same_grid(img, ref) -> bool:
    return img.shape[:3] == ref.shape[:3] and np.allclose(img.affine, ref.affine, atol=1e-3)


def read_volume(scan: Scan, modalities: list[str], crop: bool = False) -> Volume:
    """Read, reorient and normalise the scan's ``modalities`` and its mask; raises NoData when unusable."""
    import nibabel as nib

    first = scan.images[modalities[0]]
    loaded = [_load(scan.images[m]) for m in modalities]
    ref = loaded[0][0]
    for m, (img, _) in zip(modalities, loaded):
        if not _same_grid(img, ref):
            raise NoData(f"{scan.images[m].name} is not on the grid of {first.name} (shape or affine differ); "
                         f"register the modalities first")
    ornt = nib.orientations.io_orientation(ref.affine)
    channels, fgs = zip(*(_normalise(nib.orientations.apply_orientation(vol, ornt)) for _, vol in loaded))
    mask = None
    if scan.mask is not None:
        mimg, mvol = _load(scan.mask)
        if not _same_grid(mimg, ref):
            raise NoData(f"mask {scan.mask.name} does not fit {first.name} (shape {mvol.shape} vs {ref.shape[:3]}, "
                         f"or another affine); resample the mask onto the image")
        mask = nib.orientations.apply_orientation(np.nan_to_num(mvol) > 0, ornt)
    zooms = nib.affines.voxel_sizes(ref.affine)
    spacing = [0.0] * 3
    for stored_axis, (ras_axis, _) in enumerate(ornt):  # ornt maps each stored axis to its RAS axis
        spacing[int(ras_axis)] = float(zooms[stored_axis])
    foreground = np.logical_or.reduce(fgs)
    box = (slice(None),) * 3
    if crop:
        idx = np.nonzero(foreground)
        box = tuple(slice(max(0, int(i.min()) - MARGIN), int(i.max()) + 1 + MARGIN) for i in idx)
    return Volume(data=np.stack(channels), mask=mask, foreground=foreground, spacing=tuple(spacing), ornt=ornt,
                  affine=ref.affine, crop=box)


# ------------------------------------------------------------------------------------- slice geometry

def _plane(vol: Volume, axis: int) -> tuple[slice, slice]:
    return tuple(vol.crop[a] for a in range(3) if a != axis)


def _iso_shape(shape: tuple[int, int], spacing: tuple[float, float]) -> tuple[int, int]:
    step = min(spacing)
    return tuple(max(1, round(n * s / step)) for n, s in zip(shape, spacing))


def _resize(arr: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if arr.shape == tuple(shape):
        return arr
    img = Image.fromarray(arr.astype(np.uint8 if nearest else np.float32), mode="L" if nearest else "F")
    out = np.asarray(img.resize((shape[1], shape[0]), Image.NEAREST if nearest else Image.BILINEAR))
    return out.astype(bool) if nearest else out.astype(np.float32)


def _upright_spacing(vol: Volume, axis: int) -> tuple[float, float]:
    a, b = (vol.spacing[k] for k in range(3) if k != axis)
    return (b, a)  # rot90 of an (a, b) plane has rows along b and columns along a


def upright_shape(vol: Volume, axis: int) -> tuple[int, int]:
    """(H, W) of every slice :func:`slice_image` gives along ``axis``."""
    pa, pb = _plane(vol, axis)
    a, b = (len(range(*sl.indices(n))) for sl, n in zip((pa, pb), (vol.data.shape[1 + k] for k in range(3) if k != axis)))
    return _iso_shape((b, a), _upright_spacing(vol, axis))


def slice_image(vol: Volume, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis``: upright (anterior / superior at the top), square pixels; (H, W) or (C, H, W)."""
    pa, pb = _plane(vol, axis)
    chans = []
    for c in vol.data:
        plane = np.rot90(np.take(c, index, axis=axis)[pa, pb])
        chans.append(_resize(plane, _iso_shape(plane.shape, _upright_spacing(vol, axis))))
    return chans[0] if len(chans) == 1 else np.stack(chans)


def slice_mask(vol: Volume, axis: int, index: int) -> np.ndarray:
    """The tumour mask of one slice, in the geometry of :func:`slice_image` (nearest neighbour)."""
    pa, pb = _plane(vol, axis)
    plane = np.rot90(np.take(vol.mask, index, axis=axis)[pa, pb])
    return _resize(plane, _iso_shape(plane.shape, _upright_spacing(vol, axis)), nearest=True)


def volume_from_slices(vol: Volume, axis: int, slices: dict[int, np.ndarray]) -> np.ndarray:
    """Put upright, square-pixel slices (as :func:`slice_image` gives them) back into a volume on the
    scan's stored grid (its own axis order and shape, for its own affine); slices not given are 0."""
    import nibabel as nib

    ras_shape = vol.data.shape[1:]
    out = np.zeros(ras_shape, np.float32)
    pa, pb = _plane(vol, axis)
    for index, img in slices.items():
        plane_view = np.take(out, index, axis=axis)[pa, pb]
        upright = (plane_view.shape[1], plane_view.shape[0])
        back = np.rot90(_resize(np.asarray(img, np.float32), upright), k=-1)
        region = [slice(None)] * 3
        region[axis] = index
        others = [a for a in range(3) if a != axis]
        region[others[0]], region[others[1]] = pa, pb
        out[tuple(region)] = back
    to_stored = nib.orientations.ornt_transform(np.array([[0, 1], [1, 1], [2, 1]]), vol.ornt)
    return nib.orientations.apply_orientation(out, to_stored)


# ------------------------------------------------------------------------------------------- listing

@register_check("data.slices")
def parse_slices(text: str) -> tuple[Optional[float], Optional[float], bool]:
    """``--slices``: "" all | "A:B" slice indices | "0.6" the central share | "0.2:0.8" a share range.

    Returns (lo, hi, as_share). Example:
        >>> parse_slices("0.6"), parse_slices("40:90")
        ((0.2, 0.8, True), (40.0, 90.0, False))
    """
    text = text.strip()
    if not text:
        return None, None, True
    try:
        if ":" not in text:
            share = float(text)
            if not 0 < share <= 1:
                raise ValueError
            return round((1 - share) / 2, 6), round((1 + share) / 2, 6), True
        lo_text, hi_text = text.split(":")
        as_share = "." in lo_text + hi_text
        lo, hi = float(lo_text or 0), float(hi_text) if hi_text else (1.0 if as_share else float("inf"))
        if lo < 0 or hi <= lo or (as_share and hi > 1):
            raise ValueError
        return lo, hi, as_share
    except ValueError:
        raise BrainaeError(f"data.slices '{text}' must be A:B (slice indices), a share such as 0.6 (the central "
                           f"60%) or a share range such as 0.2:0.8") from None


def select_slices(kept: np.ndarray, text: str) -> np.ndarray:
    """The non-empty slice indices ``kept`` narrowed by ``--slices``."""
    lo, hi, as_share = parse_slices(text)
    if lo is None:
        return kept
    if as_share:
        n = len(kept)
        return kept[round(lo * n):max(round(hi * n), round(lo * n) + 1)]
    return kept[(kept >= lo) & (kept < hi)]


class VolumeCache:
    """The last few volumes read, so loading the slices of one scan reads its files once."""

    def __init__(self, modalities: list[str], crop: bool, size: int = max(3, (os.cpu_count() or 1) + 1)):
        self.modalities, self.crop, self.size = modalities, crop, size
        self.volumes: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, scan: Scan) -> Volume:
        with self.lock:
            vol = self.volumes.get(scan.name)
            if vol is not None:
                self.volumes.move_to_end(scan.name)
                return vol
        vol = read_volume(scan, self.modalities, self.crop)  # outside the lock; a duplicate read is harmless
        with self.lock:
            self.volumes[scan.name] = vol
            while len(self.volumes) > self.size:
                self.volumes.popitem(last=False)
        return vol


def _fingerprint(scan: Scan, modalities: list[str]) -> str:
    files = [scan.images[m] for m in modalities] + ([scan.mask] if scan.mask else [])
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def _listing(scan: Scan, cache: VolumeCache, axis: int, slices: str, index_dir: Optional[Path]) -> tuple[list[int], list[bool]]:
    """(kept slice indices, tumour per slice), from a small index file when this scan was listed before."""
    key = hashlib.sha256(json.dumps([_fingerprint(scan, cache.modalities), axis, slices, cache.crop,
                                     str(scan.images[cache.modalities[0]].resolve()), 2]).encode()).hexdigest()[:24]
    path = index_dir / f"nifti-{key}.json" if index_dir else None
    if path is not None and path.is_file():
        try:
            saved = json.loads(path.read_text())
            return saved["kept"], saved["tumor"]
        except (OSError, ValueError, KeyError):
            pass
    vol = cache.get(scan)
    other = tuple(a for a in range(3) if a != axis)
    kept = select_slices(np.flatnonzero(vol.foreground.mean(axis=other) >= MIN_FOREGROUND), slices)
    tumor = [bool(np.take(vol.mask, i, axis=axis).any()) for i in kept] if vol.mask is not None else []
    if path is not None:
        from brainae.io import atomic_write_text

        try:
            atomic_write_text(path, json.dumps({"kept": [int(i) for i in kept], "tumor": tumor}))
        except OSError:
            pass  # an unwritable cache costs speed, not correctness
    return [int(i) for i in kept], tumor


def nifti_items(path: str, axis: int = 2, label: str = "volume", modality: str = "", slices: str = "",
                crop: bool = False, index_dir: Optional[Path] = None) -> tuple[list[RawItem], list[tuple[str, str]], str]:
    """List the non-empty 2-D slices of every scan under ``path`` (a NIfTI file or a folder).

    Args:
        path: a ``.nii`` / ``.nii.gz`` file or a folder in one of the layouts of ``nifti_layout``.
        axis: slicing axis of the RAS+ volume: 0 sagittal, 1 coronal, 2 axial.
        label: class of volumes whose layout names none and that have no masks.
        modality: the image to use, or a comma list stacked as channels ("" = t1, else the first found).
        slices: ``--slices`` (see :func:`parse_slices`). crop: crop each scan to its foreground.
        index_dir: where to keep each scan's slice listing between runs (None: list afresh).

    Returns:
        (items, skipped, unit). Items' ``load()`` give float32 (H, W) or (C, H, W) in [0, 1], ``load_mask()``
        the tumour mask when the scan has one; ``group`` is the subject, ``source`` ``FILE#axis=2,slice=40``
        (FILE the first modality's). ``skipped`` lists (scan, reason); ``unit`` is "subject" for subject
        layouts and "volume" for plain volumes.

    Example:
        >>> items, skipped, unit = nifti_items("brats/", modality="t1,flair")  # doctest: +SKIP
        >>> items[0].load().shape, items[0].label, items[0].group, unit  # doctest: +SKIP
        ((2, 180, 150), 'no_tumor', 'BraTS2021_00000', 'subject')
    """
    if axis not in (0, 1, 2):
        raise BrainaeError(f"NIfTI axis must be 0, 1 or 2 (sagittal, coronal, axial), got {axis!r} for {path}")
    parse_slices(slices)
    scans = find_scans(path)
    single = Path(path).is_file()
    modalities = choose_modalities(scans, modality)
    with_masks = any(s.mask is not None for s in scans)
    cache = VolumeCache(modalities, crop)
    items: list[RawItem] = []
    skipped: list[tuple[str, str]] = []
    for scan in scans:
        missing = [m for m in modalities if m not in scan.images]
        try:
            if missing:
                have = ", ".join(scan.images) or "only a mask"
                raise NoData(f"no {' / '.join(missing)} image (has: {have})")
            if with_masks and scan.mask is None:
                raise NoData("no tumour mask while other scans have one (classes come from masks); add an empty "
                             "mask for a healthy scan")
            kept, tumor = _listing(scan, cache, axis, slices, index_dir)
            if not kept:
                raise NoData(f"no slice along axis {axis} has {MIN_FOREGROUND:.0%} foreground voxels"
                             + (f" within --slices {slices}" if slices else ""))
        except Exception as e:  # nibabel raises ImageFileError, EOFError, OSError, zlib.error, ...
            text = first_line(e, "unreadable")
            reason = text if isinstance(e, NoData) else f"{type(e).__name__}: {text}"
            if single:
                raise BrainaeError(f"cannot use NIfTI file {path} ({reason}); check or replace the file") from None
            skipped.append((str(next(iter(scan.images.values()), scan.mask)), reason[:200]))
            continue
        first = scan.images[modalities[0]]
        plain_label = scan.label or label
        fp = _fingerprint(scan, modalities)
        for k, i in enumerate(kept):
            items.append(RawItem(
                source=f"{first}#axis={axis},slice={i}",
                label=(TUMOR if tumor[k] else HEALTHY) if with_masks else plain_label,
                split=scan.split, group=scan.subject,
                load=(lambda s=scan, i=i: slice_image(cache.get(s), axis, i)),
                load_mask=(lambda s=scan, i=i: slice_mask(cache.get(s), axis, i)) if with_masks else None,
                fingerprint=f"{fp}:axis={axis}:{slices}:{crop}:{','.join(modalities)}",
            ))
    if not items:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise BrainaeError(f"no usable scans in {path}{first}; check the files")
    unit = "subject" if any(s.structured for s in scans) else "volume"
    return items, skipped, unit
