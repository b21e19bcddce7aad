"""One ``--data SPEC`` syntax for every command, and the preprocessing cache behind it.

SPEC forms:
    phantom[:N]              embedded synthetic slices (default N = 1200), with tumour masks
    PATH/                    a folder of class sub-folders (optionally Training/Testing or train/val/test)
    hf:OWNER/NAME[@REV]      a Hugging Face hub dataset, e.g. hf:benschill/brain-tumor-collection
    PATH.nii[.gz], nifti:DIR NIfTI volumes, cut into 2-D slices along data.nifti_axis
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from brainae.config import DataConfig
from brainae.data import preprocess as pp
from brainae.data.splits import assign_splits, limit_per_split
from brainae.data.types import ImageSet, RawItem
from brainae.errors import BrainaeError
from brainae.io import atomic_path

CACHE_VERSION = 1
DEFAULT_PHANTOM_COUNT = 1200
SPEC_HELP = "phantom[:N], a folder of class sub-folders, hf:OWNER/NAME[@REVISION], or a .nii/.nii.gz file / nifti:FOLDER"


def cache_dir() -> Path:
    return Path(os.environ.get("BRAINAE_CACHE", Path.home() / ".cache" / "brainae"))


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a data spec into (kind, argument); kind is phantom, folder, hf or nifti.

    Example:
        >>> parse_spec("hf:benschill/brain-tumor-collection")
        ('hf', 'benschill/brain-tumor-collection')
    """
    spec = spec.strip()
    if spec == "phantom" or spec.startswith("phantom:"):
        return "phantom", spec.partition(":")[2]
    if spec.startswith("hf:"):
        return "hf", spec[3:]
    if spec.startswith("nifti:"):
        return "nifti", spec[6:]
    if spec.endswith((".nii", ".nii.gz")):
        return "nifti", spec
    if ":" in spec and not Path(spec).exists():
        raise BrainaeError(f"unknown data form '{spec}'; use {SPEC_HELP}")
    if Path(spec).is_dir():
        return "folder", spec
    raise BrainaeError(f"data '{spec}' is neither an existing folder nor a known form; use {SPEC_HELP}")


def _phantom(arg: str, cfg: DataConfig) -> ImageSet:
    from brainae.data.phantom import PHANTOM_CLASSES, generate_phantoms

    try:
        n = int(arg) if arg else DEFAULT_PHANTOM_COUNT
    except ValueError:
        raise BrainaeError(f"phantom:{arg}: the count must be a whole number, e.g. phantom:500") from None
    if n < 10:
        raise BrainaeError(f"phantom:{n}: need at least 10 slices to carve train/val/test splits")
    ph = generate_phantoms(n, size=cfg.image_size, seed=cfg.seed, tumor_fraction=cfg.phantom_tumor_fraction)
    images = np.stack([pp.to_uint8(pp.normalize_intensity(im, cfg.normalize)) for im in ph.images])
    return ImageSet(
        images=images, labels=ph.labels.astype(np.int64), classes=list(PHANTOM_CLASSES),
        splits=np.array([""] * n), sources=[f"phantom/{i}" for i in range(n)], masks=ph.masks,
        description=f"phantom: {n} synthetic slices (seed {cfg.seed}, tumour share {cfg.phantom_tumor_fraction})",
        original_sizes=[(cfg.image_size, cfg.image_size)] * n, modes=["phantom"] * n,
    )


def list_items(kind: str, arg: str, cfg: DataConfig) -> tuple[list[RawItem], list[tuple[str, str]], str]:
    """(items, skipped, description) for a file-backed source."""
    if kind == "folder":
        from brainae.data.folder import folder_items

        return folder_items(arg), [], f"folder {arg}"
    if kind == "hf":
        from brainae.data.hub import hub_items

        name, _, revision = arg.partition("@")
        if not name:
            raise BrainaeError(f"hf:{arg}: name the dataset, e.g. hf:benschill/brain-tumor-collection")
        return hub_items(name, revision or None), [], f"Hugging Face dataset {arg}"
    from brainae.data.nifti import nifti_items

    items, skipped = nifti_items(arg, axis=cfg.nifti_axis)
    return items, skipped, f"NIfTI {arg} (axis {cfg.nifti_axis})"


def _cache_key(spec: str, items: list[RawItem], cfg: DataConfig) -> str:
    h = hashlib.sha256()
    settings = {"v": CACHE_VERSION, "size": cfg.image_size, "aspect": cfg.keep_aspect, "norm": cfg.normalize}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for it in items:
        h.update(f"{it.source}\0{it.fingerprint}\0{it.label}\0{it.split}\n".encode())
    return h.hexdigest()[:24]


def _decode_all(items: list[RawItem], cfg: DataConfig, progress: bool):
    def work(it: RawItem):
        try:
            return pp.preprocess(it.load(), cfg.image_size, cfg.keep_aspect, cfg.normalize), None
        except Exception as e:  # any decoder failure means this one file is unreadable
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            return None, f"{type(e).__name__}: {reason}"[:200]

    # PIL releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        results = list(tqdm(pool.map(work, items, chunksize=16), total=len(items), desc="decoding images",
                            unit="img", disable=not progress, leave=False))
    return results


def _build(spec: str, kind: str, arg: str, cfg: DataConfig, progress: bool) -> ImageSet:
    items, skipped, description = list_items(kind, arg, cfg)
    key = _cache_key(spec, items, cfg)
    path = cache_dir() / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                index = json.loads(str(z["index"]))
                images = z["images"]
            return _from_index(images, index)
        except Exception:
            pass  # a cache from an older version or a damaged file: rebuild it
    results = _decode_all(items, cfg, progress)
    kept = [(it, r) for it, (r, err) in zip(items, results) if r is not None]
    skipped = skipped + [(it.source, err) for it, (r, err) in zip(items, results) if r is None]
    if not kept:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise BrainaeError(f"no readable images in {arg}{first}; check the files")
    classes = sorted({it.label for it, _ in kept})
    index = {
        "description": description,
        "classes": classes,
        "labels": [classes.index(it.label) for it, _ in kept],
        "given_splits": [it.split for it, _ in kept],
        "sources": [it.source for it, _ in kept],
        "original_sizes": [list(r[1]) for _, r in kept],
        "modes": [r[2] for _, r in kept],
        "skipped": skipped,
    }
    images = np.stack([r[0] for _, r in kept])
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, images=images, index=np.array(json.dumps(index)))
    except OSError:
        pass  # a read-only cache folder costs speed, not correctness
    return _from_index(images, index)


def _from_index(images: np.ndarray, index: dict) -> ImageSet:
    return ImageSet(
        images=images, labels=np.array(index["labels"], dtype=np.int64), classes=index["classes"],
        splits=np.array([s or "" for s in index["given_splits"]]), sources=index["sources"],
        skipped=[tuple(s) for s in index["skipped"]], description=index["description"],
        original_sizes=[tuple(s) for s in index["original_sizes"]], modes=index["modes"],
    )


def load_data(cfg: DataConfig, progress: bool = True) -> ImageSet:
    """Load, preprocess (cached), split and optionally limit/dedupe the data that ``cfg.spec`` names.

    Example:
        >>> ds = load_data(DataConfig(spec="phantom:200", image_size=64), progress=False)
        >>> sorted(set(ds.splits)), ds.images.shape[1:]
        (['test', 'train', 'val'], (64, 64))
    """
    kind, arg = parse_spec(cfg.spec)
    ds = _phantom(arg, cfg) if kind == "phantom" else _build(cfg.spec, kind, arg, cfg, progress)
    given = [s or None for s in ds.splits]
    ds.splits = assign_splits(ds.labels, given, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    if cfg.limit:
        ds = ds.subset(limit_per_split(ds.splits, ds.labels, cfg.limit, cfg.seed))
    if cfg.dedupe:
        from brainae.data.inspect import dedupe

        ds, _ = dedupe(ds)
    if not (ds.splits == "train").any() or not (ds.splits == "val").any():
        raise BrainaeError(f"data '{cfg.spec}' has too few images for train and validation splits; add images")
    return ds
