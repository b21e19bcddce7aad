"""Hugging Face hub datasets (or local folders the ``datasets`` library can read) as RawItems.

Listing reads only labels: images are cast to ``Image(decode=False)`` so each RawItem decodes its
own bytes with PIL when (and only if) the preprocessing cache needs it.
"""
from __future__ import annotations

import io
from typing import Any, Optional

from PIL import Image as PILImage

from brainae.data.types import RawItem
from brainae.errors import BrainaeError, first_line

# The hub's automatic Parquet export of every public dataset, including script-based ones.
PARQUET_REVISION = "refs/convert/parquet"

_SPLITS = {
    "train": "train", "training": "train",
    "validation": "val", "valid": "val", "val": "val",
    "test": "test", "testing": "test",
}


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {first_line(e)}"


def _is_script_error(e: BaseException) -> bool:
    # datasets >= 4 raises RuntimeError("Dataset scripts are no longer supported, but found x.py");
    # datasets 3.x raises ValueError asking for trust_remote_code=True. Both mean "script dataset".
    text = str(e)
    return (isinstance(e, RuntimeError) and "Dataset scripts are no longer supported" in text) or (
        isinstance(e, ValueError) and "trust_remote_code" in text
    )


def _load(name: str, revision: Optional[str]):
    """``datasets.load_dataset`` with script fallback, every failure turned into a BrainaeError."""
    import datasets  # slow import (~1 s): only when a hub source is used
    from datasets.exceptions import DatasetsError

    try:
        return datasets.load_dataset(name, revision=revision), revision
    except ConnectionError as e:
        # Hub unreachable, or HF_HUB_OFFLINE=1 and nothing cached ("Couldn't reach '...' on the Hub").
        raise BrainaeError(
            f"cannot reach the Hugging Face hub for dataset '{name}' ({_first_line(e)}); check the network, "
            "or use a cached copy with HF_HUB_OFFLINE=1, or download it and pass a local folder"
        ) from e
    except FileNotFoundError as e:
        # DatasetNotFoundError (no such repo/revision, or gated), DataFilesNotFoundError,
        # EmptyDatasetError, or a local path that does not exist: all subclasses of FileNotFoundError.
        raise BrainaeError(
            f"dataset '{name}'{f' at revision {revision}' if revision else ''} not found or has no data files "
            f"({_first_line(e)}); check the name/revision, run `huggingface-cli login` for gated datasets, "
            "or pass a local folder"
        ) from e
    except (RuntimeError, ValueError) as e:
        if not _is_script_error(e):
            raise
        script_error = e

    # A loading-script dataset: the hub's Parquet export has the same splits, columns and labels.
    try:
        return datasets.load_dataset(name, revision=PARQUET_REVISION), PARQUET_REVISION
    except (OSError, RuntimeError, ValueError, DatasetsError) as e:
        raise BrainaeError(
            f"dataset '{name}' uses a loading script, which datasets {datasets.__version__} no longer runs "
            f"({_first_line(script_error)}), and its Parquet export '{PARQUET_REVISION}' failed too "
            f"({_first_line(e)}); download the dataset and pass a local folder, or `pip install \"datasets<4\"`"
        ) from e


def _find_columns(name: str, split: str, features: Any) -> tuple[str, str]:
    """(image column, label column) of one split, by feature type first and then by name."""
    import datasets

    cols = list(features)
    image = next((c for c in cols if isinstance(features[c], datasets.Image)), None)
    image = image or next((c for c in cols if c.lower() in ("image", "img")), None)
    label = next((c for c in cols if isinstance(features[c], datasets.ClassLabel)), None)
    label = label or next((c for c in cols if c.lower() in ("label", "labels")), None)
    if image is None or label is None:
        missing = "image" if label else "label" if image else "image or label"
        raise BrainaeError(
            f"dataset '{name}' split '{split}' has no {missing} column (columns: {', '.join(cols) or 'none'}); "
            "brainae needs an Image (or 'image') column and a ClassLabel (or 'label') column"
        )
    return image, label


def _decode(value: Any) -> PILImage.Image:
    """A PIL image from an undecoded Image value ({'bytes', 'path'}), raw bytes or a file path."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        img = PILImage.open(io.BytesIO(value))
    elif isinstance(value, str):
        img = PILImage.open(value)
    else:
        raise ValueError(f"no image bytes or path in {type(value).__name__} value")
    img.load()  # decode now, so a broken image fails inside load() where the caller counts it
    return img


def _loader(ds: Any, index: int, column: str):
    # A closure over the memory-mapped Arrow table: reading one row costs microseconds, no pixels kept.
    return lambda: _decode(ds[index][column])


def hub_items(name: str, revision: Optional[str] = None) -> list[RawItem]:
    """List every image of a hub dataset (or a local dataset folder) without decoding any of them.

    Args:
        name: hub repo id ``OWNER/NAME``, or a local folder ``datasets.load_dataset`` can read
            (imagefolder ``train/<class>/*.png``, Parquet files, ...).
        revision: branch, tag or commit on the hub; None for the default branch.

    Returns:
        One RawItem per row: label = class name (ClassLabel name, else ``str`` of the value),
        split = "train" / "val" / "test", source = ``hf:NAME/SPLIT/INDEX``; ``load()`` returns a PIL image.
        Script-based datasets are read from the hub's ``refs/convert/parquet`` export instead.

    Raises:
        BrainaeError: hub unreachable, dataset/revision not found, script dataset without a usable
            Parquet export, a split other than train/validation/test, missing image or label column,
            or unlabelled rows.

    Example:
        >>> items = hub_items("benschill/brain-tumor-collection")  # doctest: +SKIP
        >>> items[0].split, items[0].label, items[0].load().size  # doctest: +SKIP
        ('train', 'glioma_tumor', (512, 512))
    """
    import datasets

    dd, used_revision = _load(name, revision)
    if isinstance(dd, datasets.Dataset):  # defensive: load_dataset without split= returns a DatasetDict
        dd = {"train": dd}
    items: list[RawItem] = []
    for split, ds in dd.items():
        ours = _SPLITS.get(split.lower())
        if ours is None:
            raise BrainaeError(
                f"dataset '{name}' has split '{split}' (splits: {', '.join(dd)}); brainae understands only "
                "train/validation/test: rename the split or pass a local folder with those splits"
            )
        image_col, label_col = _find_columns(name, split, ds.features)
        label_feature = ds.features[label_col]
        names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
        values = list(ds[label_col])  # reads the label column only; no image is touched
        bad = sum(v is None or (names is not None and not 0 <= v < len(names)) for v in values)
        if bad:
            # ClassLabel uses -1 for "no label"; indexing names with it would silently pick the last class.
            raise BrainaeError(
                f"dataset '{name}' split '{split}' has {bad} rows without a valid label in column '{label_col}'; "
                "brainae needs every image labelled: drop that split or fix the labels"
            )
        fingerprint = f"{used_revision or 'default'}:{ds._fingerprint}"
        ds = ds.select_columns([image_col])  # so load() reads (and decodes) nothing else of the row
        if isinstance(ds.features[image_col], datasets.Image):
            ds = ds.cast_column(image_col, datasets.Image(decode=False))  # metadata only, no data copy
        items.extend(
            RawItem(
                source=f"hf:{name}/{split}/{i}",
                label=names[v] if names is not None else str(v),
                split=ours,
                load=_loader(ds, i, image_col),
                fingerprint=f"{fingerprint}:{i}",
            )
            for i, v in enumerate(values)
        )
    return items
