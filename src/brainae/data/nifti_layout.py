"""Which NIfTI files belong together: scans (one subject, one session), their modalities and masks.

The field stores brain MRI in a few layouts; all are recognised from file and folder names:

* BraTS-like subject folders: ``root/<subject>/<subject>_{t1,t1ce,t2,flair,seg}.nii.gz`` (also the
  2023 names t1n, t1c, t2w, t2f, and bare ``t1.nii.gz`` inside the subject's folder);
* BIDS: ``root/sub-XX/[ses-YY/]anat/sub-XX[_ses-YY]_T1w.nii.gz`` with ``_dseg`` / ``_mask`` files,
  a ``ce-`` entity marking contrast-enhanced T1, masks also under ``derivatives/``;
* plain volumes: ``root/<class>/*.nii.gz`` or loose files, each its own scan (class = top folder).

Masks (seg, mask, label, dseg) are never images: they are the scan's tumour mask. Split folders
(``Training/``, ``Testing/``) at the top are kept as the source's own splits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from brainae.data.folder import SPLIT_NAMES
from brainae.errors import BrainaeError

ALIASES = {
    "t1": "t1", "t1w": "t1", "t1n": "t1", "mprage": "t1",
    "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce", "t1post": "t1ce",
    "t2": "t2", "t2w": "t2",
    "flair": "flair", "t2f": "flair", "t2flair": "flair",
    "pd": "pd", "pdw": "pd", "t2star": "t2star",
}
MASK_NAMES = {"seg", "mask", "label", "labels", "dseg", "segmentation"}
PREFERRED = ["t1", "t1ce", "t2", "flair", "pd"]  # default modality: t1, else the first found in this order
PLAIN = "image"  # the modality of a volume whose name names none


def is_nifti(p: Path) -> bool:
    return p.name.lower().endswith((".nii", ".nii.gz"))


def _stem(p: Path) -> str:
    name = p.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]


@dataclass
class Scan:
    """One acquisition: the images of one subject (and session) on one grid, and its tumour mask.

    name: the volume's id in reports (``sub-01/ses-02``, ``BraTS2021_00001``, a file's path).
    subject: the group no split may separate (every session of a subject goes to one split).
    images: modality -> file. label: the class folder, "" when the layout names none.
    """

    name: str
    subject: str
    split: Optional[str] = None
    label: str = ""
    images: dict[str, Path] = field(default_factory=dict)
    mask: Optional[Path] = None
    structured: bool = False  # named after modalities (a subject layout), not a loose volume


def _parse(path: Path, rel: tuple[str, ...]) -> tuple[str, str, Optional[str], bool, str]:
    """(subject, scan key, modality or None, is mask, label) of one file, from its name and folders."""
    stem = _stem(path)
    bids = re.match(r"sub-([A-Za-z0-9]+)", stem)
    if bids:
        tokens = stem.split("_")
        suffix = tokens[-1].lower()
        entities = dict(t.split("-", 1) for t in tokens[:-1] if "-" in t)
        subject = f"sub-{entities['sub']}"
        scan = "/".join([subject] + [f"{k}-{entities[k]}" for k in ("ses", "acq", "run") if k in entities])
        if suffix in MASK_NAMES:
            return subject, scan, None, True, ""
        modality = "t1ce" if suffix == "t1w" and "ce" in entities else ALIASES.get(suffix, suffix)
        return subject, scan, modality, False, ""
    tokens = [t for t in re.split(r"[_\-.]", stem) if t]
    last = tokens[-1].lower() if tokens else ""
    if last in ALIASES or last in MASK_NAMES:
        subject = stem[: len(stem) - len(last)].rstrip("_-.") or (rel[-2] if len(rel) > 1 else stem)
        label = rel[0] if len(rel) > 1 and rel[0] != subject else ""
        scan = "/".join(rel[:-1] + (subject,)) if rel[:-1] and rel[-2] != subject else "/".join(rel[:-1]) or subject
        return subject, scan, (None if last in MASK_NAMES else ALIASES[last]), last in MASK_NAMES, label
    name = "/".join(rel)[: -len(path.name)] + stem
    return name, name, PLAIN, False, rel[0] if len(rel) > 1 else ""


def find_scans(root: str | Path) -> list[Scan]:
    """Every scan under ``root`` (a folder searched recursively, or one NIfTI file), sorted by name.

    Example:
        >>> [s.name for s in find_scans("brats/")]  # doctest: +SKIP
        ['BraTS2021_00000', 'BraTS2021_00001']
    """
    root = Path(root)
    if root.is_file():
        if not is_nifti(root):
            raise BrainaeError(f"{root} is not a NIfTI file; give a .nii / .nii.gz file or a folder of them")
        return [Scan(name=_stem(root), subject=_stem(root), images={PLAIN: root})]
    if not root.is_dir():
        raise BrainaeError(f"NIfTI path {root} does not exist; give a .nii / .nii.gz file or a folder of them")
    files = sorted(p for p in root.rglob("*") if is_nifti(p) and p.is_file() and not p.name.startswith("."))
    if not files:
        raise BrainaeError(f"no .nii or .nii.gz files under {root}; point to a NIfTI file or a folder of them")
    scans: dict[tuple, Scan] = {}
    for f in files:
        rel = f.relative_to(root).parts
        split = SPLIT_NAMES.get(rel[0].lower()) if len(rel) > 1 else None
        rel = rel[1:] if split else rel
        derived = "derivatives" in (p.lower() for p in rel[:-1])
        if derived:  # BIDS derivatives: only masks, matched to their scan by subject and session
            rel = tuple(p for p in rel if p.lower() != "derivatives")
        subject, key, modality, is_mask, label = _parse(f, rel)
        if derived and not is_mask:
            continue
        if re.match(r"sub-", subject):
            label = ""
        scan = scans.setdefault((split, label, key), Scan(name=key, subject=subject, split=split, label=label))
        scan.structured |= modality != PLAIN
        if is_mask:
            scan.mask = scan.mask or f
        else:
            scan.images.setdefault(modality, f)
    return sorted(scans.values(), key=lambda s: (s.split or "", s.label, s.name))


def choose_modalities(scans: list[Scan], requested: str) -> list[str]:
    """The modalities to stack as channels: ``requested`` (a comma list, aliases allowed), else t1, else the first found.

    Example:
        >>> choose_modalities([Scan("a", "a", images={"t2": Path("a_t2.nii")})], "")
        ['t2']
    """
    found = sorted({m for s in scans for m in s.images}, key=lambda m: (PREFERRED.index(m) if m in PREFERRED else 99, m))
    if not found:
        raise BrainaeError("no image volumes found, only masks (seg / mask / label / dseg); add the images")
    if not requested.strip():
        return [found[0]]
    wanted = [ALIASES.get(m.strip().lower(), m.strip().lower()) for m in requested.split(",") if m.strip()]
    if not any(all(m in s.images for m in wanted) for s in scans):
        raise BrainaeError(f"--modality {requested}: no scan has {' and '.join(wanted)} (found: {', '.join(found)})")
    return wanted
