"""What is in a data set: counts, sizes, splits, and the duplicates within and across splits.

Powers ``brainae data inspect SPEC`` and the ``--dedupe`` training option. The study's data has many
duplicate files (same bytes under other names, within and across classes) and, in the public copy,
test images byte-identical to training images; a duplicate across splits inflates test scores, so the
user must see such leaks and be able to drop them.

What counts as a duplicate, exact or near, is ``data/duplicates.py``'s business.
"""
from __future__ import annotations

from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np

from brainae.data.duplicates import components, find_duplicates, group_edges
from brainae.data.types import ImageSet

SPLIT_ORDER = ("train", "val", "test")
SPLIT_PAIRS = ("train-val", "train-test", "val-test")
N_EXAMPLES = 5


# ----------------------------------------------------------------------------------------------- report

def _split_names(splits: np.ndarray) -> list[str]:
    present = set(splits.tolist())
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


def _has_member_in(comp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image: whether its component contains an image selected by ``mask``."""
    return (np.bincount(comp[mask], minlength=len(comp)) > 0)[comp]  # labels are < n


def _summarise(groups: list[list[int]], ds: ImageSet, splits: np.ndarray) -> dict:
    """Counts of one kind of duplicate groups, plus a few examples (cross-split and mixed-class first)."""
    rank = {s: k for k, s in enumerate(SPLIT_ORDER)}
    across = dict.fromkeys(SPLIT_PAIRS, 0)
    within = conflicts = 0
    flagged = []
    for g in groups:
        present = sorted(set(splits[g].tolist()), key=lambda s: (rank.get(s, len(rank)), s))
        within += len(present) == 1
        for a, b in combinations(present, 2):
            across[f"{a}-{b}"] = across.get(f"{a}-{b}", 0) + 1
        conflict = len(set(ds.labels[g].tolist())) > 1
        conflicts += conflict
        flagged.append(((not conflict, len(present) == 1), g))
    examples = [
        [{"index": i, "source": ds.sources[i], "split": str(splits[i]), "class": ds.classes[ds.labels[i]]} for i in g]
        for _, g in sorted(flagged, key=lambda t: t[0])[:N_EXAMPLES]  # stable: keeps group order within a rank
    ]
    return {
        "groups": len(groups),
        "redundant": sum(len(g) - 1 for g in groups),
        "within_split": within,
        "across_splits": across,
        "label_conflicts": conflicts,
        "examples": examples,
    }


def _leaks(dups: dict, splits: np.ndarray) -> dict:
    """Evaluation images that have a duplicate in a split the model trains (or is selected) on."""
    n = len(splits)
    comp_exact = components(n, *group_edges(dups["exact"]))
    comp_any = components(n, *group_edges(dups["exact"] + dups["near"]))

    def count(who: str, sources: tuple[str, ...]) -> dict:
        is_who, in_sources = splits == who, np.isin(splits, sources)
        exact = is_who & _has_member_in(comp_exact, in_sources)
        any_dup = is_who & _has_member_in(comp_any, in_sources)
        return {"exact": int(exact.sum()), "near": int((any_dup & ~exact).sum())}  # near: found only as near

    return {"test_in_train_or_val": count("test", ("train", "val")), "val_in_train": count("val", ("train",))}


def inspect_imageset(ds: ImageSet, near_threshold: int = 4) -> dict:
    """A JSON-able report of what is in ``ds`` and how it duplicates and leaks.

    Args:
        ds: the preprocessed data set.
        near_threshold: see ``find_duplicates``.

    Returns:
        {"n", "classes", "counts": {split: {class: n}}, "sizes": {...} or None, "modes": {mode: n},
         "skipped": {"count", "first"}, "near_threshold", "duplicates": {"exact": summary, "near": summary},
         "leaks": {"test_in_train_or_val": {"exact", "near"}, "val_in_train": {"exact", "near"}}}.
        A summary has groups, redundant (images beyond the first of each group), within_split,
        across_splits {"train-val", "train-test", "val-test"}, label_conflicts (groups mixing classes) and
        examples (lists of {index, source, split, class}). Leak "near" counts images whose duplicate is
        only near, so exact + near is the total.

    Example:
        >>> report = inspect_imageset(ds)  # doctest: +SKIP
        >>> report["leaks"]["test_in_train_or_val"]  # doctest: +SKIP
        {'exact': 88, 'near': 3}
    """
    splits = np.asarray(ds.splits).astype(str)
    dups, similar = copies(ds, near_threshold)
    counts = {
        s: {c: int(np.sum((splits == s) & (ds.labels == k))) for k, c in enumerate(ds.classes)}
        for s in _split_names(splits)
    }
    sizes = None
    if ds.original_sizes:
        size_counts = Counter(tuple(map(int, s)) for s in ds.original_sizes)
        wh = np.array(ds.original_sizes)
        sizes = {
            "distinct": len(size_counts),
            "most_common": [[w, h, n] for (w, h), n in size_counts.most_common(10)],
            "width": [int(wh[:, 0].min()), int(wh[:, 0].max())],
            "height": [int(wh[:, 1].min()), int(wh[:, 1].max())],
            "non_square": int(np.sum(wh[:, 0] != wh[:, 1])),
        }
    return {
        "n": len(ds),
        "classes": list(ds.classes),
        "counts": counts,
        "sizes": sizes,
        "modes": dict(Counter(ds.modes).most_common()),
        "skipped": {"count": len(ds.skipped), "first": [list(s) for s in ds.skipped[:5]]},
        "near_threshold": near_threshold,
        "duplicates": {kind: _summarise(dups[kind], ds, splits) for kind in ("exact", "near")},
        "leaks": _leaks(dups, splits),
        "similar_slices_across_groups": similar,
        "grouping": ds.grouping,
        "removed": {"count": len(ds.removed), "first": [list(r) for r in ds.removed[:5]]},
    }


def copies(ds: ImageSet, near_threshold: int) -> tuple[dict, int]:
    """Duplicate groups as the splits see them, and how many look-alike groups span several subjects.

    Slices of different heads that only look alike (the top of any skull) are not copies: the split
    groups join two subjects only when most of their slices match, so for volumes a duplicate group is
    cut into its parts within one split group.
    """
    dups = find_duplicates(ds, near_threshold)
    if ds.group_unit not in ("subject", "volume") or ds.groups is None:
        return dups, 0
    return {k: _within(g, ds.groups) for k, g in dups.items()}, _across(dups["exact"] + dups["near"], ds.groups)


def _within(groups: list[list[int]], comp: np.ndarray) -> list[list[int]]:
    """Each duplicate group cut into its parts that lie within one split group."""
    parts = []
    for g in groups:
        for c in dict.fromkeys(comp[g].tolist()):
            part = [i for i in g if comp[i] == c]
            if len(part) >= 2:
                parts.append(part)
    return sorted(parts)


def _across(groups: list[list[int]], comp: np.ndarray) -> int:
    """How many duplicate groups reach over more than one split group (look-alike slices of different subjects)."""
    return sum(len(set(comp[g].tolist())) > 1 for g in groups)


def _short(source: str) -> str:
    """parent/name of a path (class folder and file), the source id itself otherwise."""
    parts = Path(source).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else source


def format_inspection(report: dict) -> str:
    """The report as the text a user reads in the terminal.

    Example:
        >>> print(format_inspection(inspect_imageset(ds)))  # doctest: +SKIP
        Images: 2870  (skipped 0)
        ...
    """
    lines = [f"Images: {report['n']}  (skipped {report['skipped']['count']})"]
    for source, reason in report["skipped"]["first"]:
        lines.append(f"  skipped {_short(source)}: {reason}")

    # Counts: one row per split, one column per class.
    classes, counts = report["classes"], report["counts"]
    width = max([len(c) for c in classes] + [7])
    lines += ["", "Counts".ljust(8) + "".join(c.rjust(width + 2) for c in classes) + "total".rjust(9)]
    for split, row in list(counts.items()) + [("total", {c: sum(r[c] for r in counts.values()) for c in classes})]:
        lines.append(f"  {split:<6}" + "".join(str(row[c]).rjust(width + 2) for c in classes) + str(sum(row.values())).rjust(9))

    sizes = report["sizes"]
    if sizes:
        lines += ["", f"Sizes: {sizes['distinct']} distinct, width {sizes['width'][0]}..{sizes['width'][1]}, "
                      f"height {sizes['height'][0]}..{sizes['height'][1]}, {sizes['non_square']} not square"]
        lines.append("  most common: " + ", ".join(f"{w}x{h} ({n})" for w, h, n in sizes["most_common"]))
    if report["modes"]:
        lines.append("Modes: " + ", ".join(f"{m} {n}" for m, n in report["modes"].items()))

    header = ["groups", "redundant", "in-split", *SPLIT_PAIRS, "mixed-class"]
    lines += ["", "Duplicates".ljust(18) + "".join(h.rjust(12) for h in header)]
    for kind, label in (("exact", "exact"), ("near", f"near (<={report['near_threshold']} bits)")):
        d = report["duplicates"][kind]
        row = [d["groups"], d["redundant"], d["within_split"], *(d["across_splits"][p] for p in SPLIT_PAIRS), d["label_conflicts"]]
        lines.append(f"  {label:<16}" + "".join(str(v).rjust(12) for v in row))

    grouping = report.get("grouping") or {}
    if grouping:
        from brainae.data.grouping import describe

        lines += ["", "Split: " + describe(grouping)]
        if grouping.get("kinds"):
            lines.append("  groups join: " + ", ".join(grouping["kinds"]))
        for reason, n in grouping["removed"]["reasons"].items():
            lines.append(f"  left out {n}: {reason}")
        for source, reason in report["removed"]["first"]:
            lines.append(f"    e.g. {_short(source)} ({reason})")
        if report.get("similar_slices_across_groups"):
            lines.append(f"  {report['similar_slices_across_groups']} sets of look-alike slices span several "
                         f"{grouping['unit']}s (the same anatomy, not copies: they stay apart)")

    leaks = report["leaks"]
    if leaks:
        t, v = leaks["test_in_train_or_val"], leaks["val_in_train"]
        lines += ["", f"Leaks: test images with a duplicate in train/val: {t['exact']} exact, {t['near']} near",
                  f"       val images with a duplicate in train:       {v['exact']} exact, {v['near']} near"]
        if t["exact"] + t["near"] + v["exact"] + v["near"]:
            lines.append("       the default loading groups copies into one split; drop --raw / --keep-duplicates")

    for kind in ("exact", "near"):
        examples = report["duplicates"][kind]["examples"]
        if examples:
            lines += ["", f"Examples ({kind}):"]
            lines += ["  " + "  =  ".join(f"[{m['split']}/{m['class']}] {_short(m['source'])}" for m in g) for g in examples]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ dedupe

def dedupe(ds: ImageSet, near: bool = False, near_threshold: int = 4) -> tuple[ImageSet, dict]:
    """Drop duplicates so that nothing the model trains or is selected on reappears in evaluation.

    Rules, per group of duplicates (exact groups joined with near groups when ``near``): test images are
    never dropped; val and train images that duplicate a test image are dropped; train images that
    duplicate a val image are dropped; otherwise, within train and within val, the first of the group is
    kept and the rest dropped.

    Args:
        ds: the data set.
        near: also treat near duplicates (perceptual hash) as duplicates; exact ones always are.
        near_threshold: see ``find_duplicates``.

    Returns:
        (reduced ImageSet, {"removed": n, "kept": n, "train": {"dup_of_test", "dup_of_val", "within_split"},
        "val": {"dup_of_test", "within_split"}}).

    Example:
        >>> clean, removed = dedupe(ds)  # doctest: +SKIP
        >>> removed["train"]  # doctest: +SKIP
        {'dup_of_test': 88, 'dup_of_val': 0, 'within_split': 189}
    """
    n = len(ds)
    splits = np.asarray(ds.splits).astype(str)
    dups, _ = copies(ds, near_threshold)
    groups = dups["exact"] + (dups["near"] if near else [])
    comp = components(n, *group_edges(groups))
    has_test, has_val = _has_member_in(comp, splits == "test"), _has_member_in(comp, splits == "val")

    def not_first(split: str) -> np.ndarray:
        """Members of ``split`` that are not the first of their group within that split."""
        idx = np.flatnonzero(splits == split)
        first = np.zeros(n, dtype=bool)
        first[idx[np.unique(comp[idx], return_index=True)[1]]] = True
        return (splits == split) & ~first

    is_train, is_val = splits == "train", splits == "val"
    drop = {
        "train": {
            "dup_of_test": is_train & has_test,
            "dup_of_val": is_train & ~has_test & has_val,
            "within_split": not_first("train") & ~has_test & ~has_val,
        },
        "val": {"dup_of_test": is_val & has_test, "within_split": not_first("val") & ~has_test},
    }
    removed = np.zeros(n, dtype=bool)
    for reasons in drop.values():
        for mask in reasons.values():
            removed |= mask
    counts = {s: {r: int(m.sum()) for r, m in reasons.items()} for s, reasons in drop.items()}
    return ds.subset(~removed), {"removed": int(removed.sum()), "kept": int(n - removed.sum()), **counts}
