"""One ``--data SPEC`` syntax for every command, and the preprocessing cache behind it.

SPEC forms:
    phantom[:N]              embedded synthetic slices (default N = 1200), with tumour masks
    PATH/                    a folder of class sub-folders (optionally Training/Testing or train/val/test)
    hf:OWNER/NAME[@REV]      a Hugging Face hub dataset, e.g. hf:benschill/brain-tumor-collection
    PATH.nii[.gz], nifti:DIR NIfTI volumes (one file, a folder of volumes, BraTS-like or BIDS subject folders),
                             cut into 2-D slices along data.nifti_axis; a folder holding only volumes needs no nifti:
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from brainae.config import DataConfig
from brainae.data import preprocess as pp
from brainae.data.splits import assign_splits, limit_per_split
from brainae.data.types import ImageSet, RawItem
from brainae.errors import BrainaeError
from brainae.io import atomic_path
from brainae.progress import bar

CACHE_VERSION = 3  # 3: images in their own .npy, memory-mapped
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
    if not spec:
        raise BrainaeError(f"--data is empty; use {SPEC_HELP}")
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
        return ("nifti" if _holds_only_volumes(Path(spec)) else "folder"), spec
    raise BrainaeError(f"data '{spec}' is neither an existing folder nor a known form; use {SPEC_HELP}")


def _holds_only_volumes(root: Path) -> bool:
    """Whether a folder holds NIfTI files and no 2-D images: a plain folder of volumes or subjects."""
    from brainae.data.folder import IMAGE_SUFFIXES

    volumes = False
    for _, _, files in os.walk(root):
        for name in files:
            lower = name.lower()
            if Path(lower).suffix in IMAGE_SUFFIXES:
                return False
            volumes |= lower.endswith((".nii", ".nii.gz"))
    return volumes


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


def keep_aspect(cfg: DataConfig, kind: str) -> bool:
    """``data.keep_aspect``, where unset: pad NIfTI slices (anatomy keeps its shape), stretch images (the study)."""
    return cfg.keep_aspect if cfg.keep_aspect is not None else kind == "nifti"


def list_items(kind: str, arg: str, cfg: DataConfig) -> tuple[list[RawItem], list[tuple[str, str]], str, str]:
    """(items, skipped, description, group unit) for a file-backed source."""
    if kind == "folder":
        from brainae.data.folder import folder_items

        return folder_items(arg), [], f"folder {arg}", ""
    if kind == "hf":
        from brainae.data.hub import hub_items

        name, _, revision = arg.partition("@")
        if not name:
            raise BrainaeError(f"hf:{arg}: name the dataset, e.g. hf:benschill/brain-tumor-collection")
        return hub_items(name, revision or None), [], f"Hugging Face dataset {arg}", ""
    from brainae.data.nifti import nifti_items

    index_dir = cache_dir()
    items, skipped, unit = nifti_items(arg, axis=cfg.nifti_axis, modality=cfg.modality, slices=cfg.slices,
                                       crop=cfg.crop_foreground, index_dir=index_dir)
    n_groups = len({it.group for it in items})
    mods = f", modality {cfg.modality}" if cfg.modality else ""
    return items, skipped, f"NIfTI {arg} ({n_groups} {unit}s, axis {cfg.nifti_axis}{mods})", unit


def _cache_key(spec: str, items: list[RawItem], cfg: DataConfig, aspect: bool) -> str:
    h = hashlib.sha256()
    settings = {"v": CACHE_VERSION, "size": cfg.image_size, "aspect": aspect, "norm": cfg.normalize}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for it in items:
        h.update(f"{it.source}\0{it.fingerprint}\0{it.label}\0{it.split}\0{it.group}\n".encode())
    return h.hexdigest()[:24]


def _decode_all(items: list[RawItem], cfg: DataConfig, aspect: bool, progress: bool):
    def work(it: RawItem):
        try:
            image, size, mode = pp.preprocess(it.load(), cfg.image_size, aspect, cfg.normalize)
            mask = pp.preprocess_mask(it.load_mask(), cfg.image_size, aspect) if it.load_mask else None
            return (image, size, mode, mask), None
        except Exception as e:  # any decoder failure means this one file is unreadable
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            return None, f"{type(e).__name__}: {reason}"[:200]

    # PIL releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        results = list(bar(pool.map(work, items, chunksize=16), progress, total=len(items), desc="decoding images",
                           unit="img", leave=False))
    return results


def _build(spec: str, kind: str, arg: str, cfg: DataConfig, progress: bool) -> tuple[ImageSet, list[str]]:
    """The preprocessed source (from the cache when it is there) and each image's exact-copy key."""
    from brainae.data.duplicates import exact_keys

    items, skipped, description, unit = list_items(kind, arg, cfg)
    aspect = keep_aspect(cfg, kind)
    key = _cache_key(spec, items, cfg, aspect)
    path, image_path = cache_dir() / f"{key}.npz", cache_dir() / f"{key}.images.npy"
    if path.is_file() and image_path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                index = json.loads(str(z["index"]))
                masks = z["masks"] if "masks" in z.files else None
            # mapped, not read: pages come from disk as batches touch them, and the OS may drop them again,
            # so a dataset larger than memory trains (brainae.training.loader gathers from the map)
            images = np.load(image_path, mmap_mode="r", allow_pickle=False)
            if len(images) != len(index["labels"]):
                raise ValueError("cache files disagree")
            return _from_index(images, masks, index), index["exact_keys"]
        except Exception:
            pass  # a cache from an older version or a damaged file: rebuild it
    results = _decode_all(items, cfg, aspect, progress)
    kept = [(it, r) for it, (r, err) in zip(items, results) if r is not None]
    skipped = skipped + [(it.source, err) for it, (r, err) in zip(items, results) if r is None]
    if not kept:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise BrainaeError(f"no readable images in {arg}{first}; check the files")
    classes = sorted({it.label for it, _ in kept})
    images = np.stack([r[0] for _, r in kept])
    masks = np.stack([r[3] for _, r in kept]) if kept[0][0].load_mask else None
    sources = [it.source for it, _ in kept]
    index = {
        "description": description,
        "classes": classes,
        "labels": [classes.index(it.label) for it, _ in kept],
        "given_splits": [it.split for it, _ in kept],
        "sources": sources,
        "original_sizes": [list(r[1]) for _, r in kept],
        "modes": [r[2] for _, r in kept],
        "skipped": skipped,
        "group_names": [it.group for it, _ in kept],
        "group_unit": unit,
        # hashing the files here, once, spares reading every file again at each load for grouping
        "exact_keys": exact_keys(sources, images),
    }
    try:  # the images first: the index file's presence says both are whole
        with atomic_path(image_path) as tmp, open(tmp, "wb") as f:
            np.save(f, images, allow_pickle=False)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, index=np.array(json.dumps(index)), **({"masks": masks} if masks is not None else {}))
    except OSError:
        pass  # a read-only cache folder costs speed, not correctness
    return _from_index(images, masks, index), index["exact_keys"]


def _from_index(images: np.ndarray, masks: np.ndarray | None, index: dict) -> ImageSet:
    return ImageSet(
        images=images, labels=np.array(index["labels"], dtype=np.int64), classes=index["classes"],
        splits=np.array([s or "" for s in index["given_splits"]]), sources=index["sources"], masks=masks,
        skipped=[tuple(s) for s in index["skipped"]], description=index["description"],
        original_sizes=[tuple(s) for s in index["original_sizes"]], modes=index["modes"],
        group_names=index["group_names"], group_unit=index["group_unit"],
    )


def load_data(cfg: DataConfig, progress: bool = True, require_training: bool = True, raw: bool = False) -> ImageSet:
    """Load, preprocess (cached), split by group and optionally limit/dedupe the data that ``cfg.spec`` names.

    require_training: refuse data without train and validation images (False for evaluating on it).
    raw: split image by image with no grouping and nothing left out (``data inspect --raw``: the data as it is).

    Example:
        >>> ds = load_data(DataConfig(spec="phantom:200", image_size=64), progress=False)
        >>> sorted(set(ds.splits)), ds.images.shape[1:]
        (['test', 'train', 'val'], (64, 64))
    """
    from brainae.data.grouping import counts, split_by_groups, summarize

    kind, arg = parse_spec(cfg.spec)
    if kind == "phantom":
        ds, keys = _phantom(arg, cfg), None
    else:
        ds, keys = _build(cfg.spec, kind, arg, cfg, progress)
    if raw:
        given = [s or None for s in ds.splits]
        ds.splits = assign_splits(ds.labels, given, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        ds.groups = np.arange(len(ds))
        ds.group_names, ds.group_unit = [""] * len(ds), ""
        ds.grouping = summarize(ds, "image by image (raw: no grouping, nothing left out)", [], cfg.near_threshold, None)
    else:
        ds = split_by_groups(ds, cfg, keys, require_training)
    if cfg.limit:
        ds = ds.subset(limit_per_split(ds.splits, ds.labels, cfg.limit, cfg.seed))
    if cfg.dedupe:
        from brainae.data.inspect import dedupe

        ds, _ = dedupe(ds)
    if cfg.limit or cfg.dedupe:
        ds.grouping = ds.grouping | counts(ds)  # what is left after --limit / --dedupe
    if require_training and (not (ds.splits == "train").any() or not (ds.splits == "val").any()):
        raise BrainaeError(f"data '{cfg.spec}' has too few images for train and validation splits; add images")
    return ds
