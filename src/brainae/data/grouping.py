"""Splits that cannot leak: images are split by group, never one by one.

A group is everything that must land in one split: the slices of a volume, the volumes of a subject,
the files that share a ``--group-by`` id, and images that are exact or near copies of each other (the
pHash rule of ``brainae data inspect``). Groups are the connected components of those links, so two
subjects that share a copied volume become one group.

* Carved splits (val and test cut from the training data) are drawn group by group, stratified by the
  rarest class each group holds, so no group is in two splits by construction.
* A split the source defines itself (``Testing/``) is kept; members of a group that reach into a more
  held-out split (a training copy of a test image, a subject's training scan when another of its scans is
  a test scan) are left out and listed. ``keep_duplicates`` stops copies from joining groups at all.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from brainae.config import DataConfig
from brainae.data.duplicates import components, find_duplicates, group_edges, index_groups
from brainae.data.types import ImageSet
from brainae.errors import BrainaeError

HELD_OUT_RANK = {"train": 0, "val": 1, "test": 2}  # a group keeps the members of its most held-out split
SPLITS = ("train", "val", "test")


def group_by_regex(sources: list[str], pattern: str) -> tuple[list[str], dict]:
    """Per source, the id ``pattern`` finds in its file name (first capture group, else the match), or "".

    Example:
        >>> group_by_regex(["a/p01_s3.png", "a/p02_s1.png"], r"p(\\d+)_")[0]
        ['01', '02']
    """
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise BrainaeError(f"--group-by '{pattern}' is not a valid regular expression ({e}); "
                           f"e.g. --group-by '^(\\w+?)_' for a patient id before the first underscore") from None
    names = []
    for src in sources:
        m = rx.search(Path(src.split("#")[0]).name)
        found = (m.group(1) if rx.groups else m.group(0)) if m else None
        names.append(found or "")
    matched = sum(1 for n in names if n)
    if sources and not matched:
        raise BrainaeError(f"--group-by '{pattern}' matches no file name (first: {Path(sources[0]).name}); "
                           f"check the pattern against the names")
    return names, {"regex": pattern, "matched": matched, "unmatched": len(names) - matched}


VOLUME_UNITS = ("subject", "volume")
COPIED_SHARE = 0.5  # two subjects are copies of each other when half the slices of one match slices of the other


def link_groups(ds: ImageSet, near_threshold: int, duplicates: bool, keys: list[str] | None = None) -> np.ndarray:
    """Component id per image: named groups joined by copies (none when ``duplicates`` is False).

    Images (and ``--group-by`` ids) are joined by any single copy. Subjects and volumes are joined only when
    at least half the slices of one have a copy in the other: the top slices of any two heads look alike
    to a perceptual hash, and one such pair must not merge two people.
    """
    named: dict[str, list[int]] = {}
    for i, name in enumerate(ds.group_names or []):
        if name:
            named.setdefault(name, []).append(i)
    dups = find_duplicates(ds, near_threshold, keys=keys) if duplicates else {"exact": [], "near": []}
    copies = dups["exact"] + dups["near"]
    if ds.group_unit in VOLUME_UNITS:
        copies = _copied_volumes(copies, ds.group_names, named)
    return components(len(ds), *group_edges(list(named.values()) + copies))


def _copied_volumes(slice_groups: list[list[int]], names: list[str], members: dict[str, list[int]]) -> list[list[int]]:
    """Links (as index groups) between named volumes whose slices are mostly copies of each other's."""
    matched: Counter = Counter()  # (a, b) -> slices of a that match some slice of b
    for group in index_groups(components(len(names), *group_edges(slice_groups))):  # exact and near merged
        by_name = Counter(names[i] for i in group)
        for a in by_name:
            for b in by_name:
                if a != b:
                    matched[a, b] += by_name[a]
    return [[members[a][0], members[b][0]] for (a, b), n in matched.items() if n >= COPIED_SHARE * len(members[a])]


def drop_cross_split_members(splits: np.ndarray, comp: np.ndarray, sources: list[str], unit: str,
                             names: list[str]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Keep mask and [(source, reason)]: the members of a group outside the group's most held-out given split.

    A reason reads "train: copy of a test image" or "train: same subject as test images (sub-01)".
    """
    rank = np.array([HELD_OUT_RANK.get(s, 0) for s in splits])
    top = np.zeros(comp.max() + 1 if len(comp) else 0, dtype=int)
    np.maximum.at(top, comp, rank)
    drop = rank < top[comp]
    removed = []
    for i in np.flatnonzero(drop):
        held_out = SPLITS[top[comp[i]]]
        named = bool(unit and names and names[i])
        why = f"same {unit} as {held_out} images ({names[i]})" if named else f"copy of a {held_out} image"
        removed.append((sources[i], f"{splits[i]}: {why}"))
    return ~drop, removed


def reason_counts(removed: list[tuple[str, str]]) -> dict[str, int]:
    """Counts per kind of reason, the group's name dropped: {"train: copy of a test image": 88}."""
    return dict(Counter(re.sub(r" \(.*\)$", "", reason) for _, reason in removed))


def _group_strata(labels: np.ndarray, comp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group ids, sizes, stratum) with stratum = the rarest class (over the whole set) each group holds."""
    freq = np.bincount(labels, minlength=labels.max() + 1 if len(labels) else 0)
    ids, inverse, sizes = np.unique(comp, return_inverse=True, return_counts=True)
    # rank classes from rarest to most common; a group's stratum is the lowest rank among its members
    rarity = np.argsort(np.argsort(freq, kind="stable"), kind="stable")
    stratum = np.full(len(ids), len(freq), dtype=int)
    np.minimum.at(stratum, inverse, rarity[labels])
    return ids, sizes, stratum


def stratified_group_split(labels: np.ndarray, comp: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Per image a split name: whole groups go to each split in ``fractions`` (of images), the rest to "train".

    Within each stratum, groups are shuffled and taken while that brings the split's image count closer
    to its share; a stratum with at least 3 groups gives every split at least one.

    Example:
        >>> s = stratified_group_split(np.zeros(20, int), np.repeat(np.arange(10), 2), {"val": 0.2}, seed=0)
        >>> int((s == "val").sum()), len(set(np.repeat(np.arange(10), 2)[s == "val"]))
        (4, 2)
    """
    labels, comp = np.asarray(labels), np.asarray(comp)
    out = np.full(len(labels), "train", dtype=object)
    if not len(labels):
        return out.astype(str)
    ids, sizes, stratum = _group_strata(labels, comp)
    where = {g: k for k, g in enumerate(ids)}
    assigned = np.full(len(ids), "train", dtype=object)
    rng = np.random.default_rng(seed)
    for s in np.unique(stratum):
        order = rng.permutation(np.flatnonzero(stratum == s))
        total, pos = sizes[order].sum(), 0
        for name, frac in fractions.items():
            target, taken = total * frac, 0
            while pos < len(order) and frac > 0:
                size = sizes[order[pos]]
                need_one = taken == 0 and len(order) >= 3 and pos < len(order) - 1
                if not need_one and abs(taken + size - target) >= abs(taken - target):
                    break
                assigned[order[pos]] = name
                taken += size
                pos += 1
    for name, frac in fractions.items():  # small data: one group for a split that got none, if train can spare one
        spare = np.flatnonzero(assigned == "train")
        if frac > 0 and not (assigned == name).any() and len(spare) >= 2:
            assigned[rng.choice(spare)] = name
    out[:] = assigned[[where[c] for c in comp]]
    return out.astype(str)


def assign_group_splits(labels: np.ndarray, given: list, comp: np.ndarray, val_fraction: float,
                        test_fraction: float, seed: int) -> tuple[np.ndarray, str]:
    """Keep the splits a source defines; carve what is missing (test, then val) group by group from its train part.

    Returns the split per image and how it was made ("given", "carved" or "given test, carved val").
    """
    given_arr = np.array([g if g else "train" for g in given], dtype=object)
    present = set(given_arr)
    carve = {k: f for k, f in (("test", test_fraction), ("val", val_fraction)) if k not in present}
    train_idx = np.flatnonzero(given_arr == "train")
    if not carve or not len(train_idx):
        return given_arr.astype(str), "given"
    share = len(train_idx) / len(given_arr)  # fractions are of the whole set: rescale to the part carved from
    given_arr[train_idx] = stratified_group_split(labels[train_idx], comp[train_idx],
                                                  {k: v / share for k, v in carve.items()}, seed)
    if len(carve) == 2:
        return given_arr.astype(str), "carved"
    return given_arr.astype(str), f"given {', '.join(sorted(present - {'train'}))}, carved {', '.join(carve)}"


def summarize(ds: ImageSet, how: str, kinds: list[str], near_threshold: int, regex_info: dict | None) -> dict:
    """What ``data.json`` and ``data inspect`` show: the grouping, groups per split, named groups, removals."""
    out = {"split": how, "unit": ds.group_unit or "image", "kinds": kinds, "near_threshold": near_threshold,
           "removed": {"count": len(ds.removed), "reasons": reason_counts(ds.removed)}}
    if regex_info:
        out["group_by"] = regex_info
    return out | counts(ds)


def counts(ds: ImageSet) -> dict:
    """Groups per split and, for named groups, their names per split: recounted after ``--limit``."""
    splits = np.asarray(ds.splits).astype(str)
    present = [s for s in SPLITS if (splits == s).any()]
    out: dict = {"groups": {s: int(len(np.unique(ds.groups[splits == s]))) for s in present}}
    if ds.group_unit:
        names = np.array(ds.group_names, dtype=object)
        out["names"] = {s: sorted({n for n in names[splits == s] if n}) for s in present}
        out["named_groups"] = {s: len(out["names"][s]) for s in present}
    return out


def describe(grouping: dict) -> str:
    """One line for tables and reports, e.g. "split by subject, carved: 14 / 3 / 3 groups in train / val / test"."""
    if not grouping:
        return ""
    counts = " / ".join(str(grouping["groups"].get(s, 0)) for s in SPLITS)
    removed = grouping["removed"]["count"]
    unit = grouping["unit"] if grouping["unit"] != "image" else "image (copies grouped)"
    text = f"split by {unit}, {grouping['split']}: {counts} groups in train / val / test"
    return text + (f"; {removed} train/val image(s) left out as copies or subject-mates of held-out ones" if removed else "")


def split_by_groups(ds: ImageSet, cfg: DataConfig, keys: list[str] | None, require_training: bool = True) -> ImageSet:
    """Group ``ds`` (named groups, ``cfg.group_by``, copies), leave out cross-split copies, split by group.

    keys: the images' exact-copy keys when known (see ``duplicates.exact_keys``).
    require_training: every split that should exist (train, val, and test unless ``test_fraction`` is 0)
        must get a group; small data is refused with one line instead of being split image by image.
    """
    regex_info = None
    if cfg.group_by:
        if ds.group_unit:
            raise BrainaeError(f"--group-by names groups of image files; this data is grouped by {ds.group_unit} already")
        ds.group_names, regex_info = group_by_regex(ds.sources, cfg.group_by)
        ds.group_unit = "id"
    if not ds.group_names:
        ds.group_names = [""] * len(ds)
    comp = link_groups(ds, cfg.near_threshold, not cfg.keep_duplicates, keys)
    keep, removed = drop_cross_split_members(ds.splits, comp, ds.sources, ds.group_unit, ds.group_names)
    if not keep.all():
        ds, comp = ds.subset(keep), comp[keep]
    given = [s or None for s in ds.splits]
    ds.splits, how = assign_group_splits(ds.labels, given, comp, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    ds.groups, ds.removed = comp, removed
    kinds = {"subject": ["slices of one volume", "volumes of one subject"], "volume": ["slices of one volume"],
             "id": [f"file names sharing a --group-by id ({cfg.group_by})"]}.get(ds.group_unit, [])
    if not cfg.keep_duplicates:
        kinds += ["exact copies", f"near copies (pHash within {cfg.near_threshold} bits)"]
    ds.grouping = summarize(ds, how, kinds, cfg.near_threshold, regex_info)
    if require_training:
        needed = ["train", "val"] + (["test"] if cfg.test_fraction > 0 or "test" in given else [])
        empty = [s for s in needed if not (ds.splits == s).any()]
        if empty:
            unit = ds.group_unit or "group of images"
            raise BrainaeError(f"data '{cfg.spec}' is too small to give every split one {unit}: "
                               f"{len(np.unique(comp))} {unit}(s) in all, none left for {' and '.join(empty)}; "
                               f"add data, or lower data.val_fraction / data.test_fraction")
    return ds
