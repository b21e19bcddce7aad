"""A small synthetic 3-D brain-MRI NIfTI dataset on disk, in the BraTS-2021 or the BIDS layout.

Tests and the README use it instead of a download. Each scan is a phantom head drawn in physical
RAS millimetres (scalp, skull, CSF, folded gray matter over white matter, two lateral ventricles,
optionally a tumour with BraTS labels) and then sampled on the stored voxel grid through the
file's own affine, so the affine is right by construction. The grids are anisotropic and not RAS,
as clinical scans are:

- brats: stored LPS (as the BraTS 2021 release), 2.4 x 2.4 mm in-plane, 5.5 mm axial slices,
  shape (72, 84, 28).
- bids: stored PSL (a sagittal acquisition: axis 0 runs to posterior, axis 1 to superior,
  axis 2 to the left), 2.2 x 2.2 mm in-plane, 6 mm sagittal slices, shape (88, 68, 28).

Unlike the real BraTS release (skull-stripped, 1 mm isotropic, exactly zero background), every
scan keeps scalp, skull, a bias field and Rician noise, background included, so code that finds
the background meets what raw scans look like. Subject i's head, pose and tumour depend only on
(seed, i), so both layouts written with one seed hold the same heads at the same places.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from brainae.errors import BrainaeError
from brainae.io import atomic_write_bytes, atomic_write_text

MODALITIES = ("t1", "t1ce", "t2", "flair")
# layout -> storage axis codes (as nibabel.aff2axcodes gives them), voxel spacing in mm, shape
_GRIDS = {
    "brats": ("LPS", (2.4, 2.4, 5.5), (72, 84, 28)),
    "bids": ("PSL", (2.2, 2.2, 6.0), (88, 68, 28)),
}
_DIRECTION = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
_BIDS_SUFFIX = {"t1": "T1w", "t1ce": "ce-gd_T1w", "t2": "T2w", "flair": "FLAIR"}

_HEAD = np.array([70.0, 87.5, 65.0], np.float32)  # half-axes, mm (L-R, A-P, I-S): a 140 x 175 x 130 mm head
# Ventricle centres in head mm: above the head's centre, as in life.
_VENTRICLES = np.array([[12.0, 6.0, 12.0], [-12.0, 6.0, 12.0]], np.float32)
_VENTRICLE_AXES = np.array([6.0, 24.0, 10.0], np.float32)
BG, SCALP, SKULL, CSF, GM, WM, NECROSIS, ENHANCING, EDEMA = range(9)
# Signal per tissue (rows, codes above) and modality (columns: t1, t1ce, t2, flair), scanner-like units.
_SIGNAL = np.array([
    [0, 0, 0, 0],  # background: noise only
    [900, 920, 650, 700],  # scalp fat: bright on T1
    [120, 130, 90, 80],  # skull bone: dark everywhere
    [250, 270, 1450, 150],  # CSF: dark on T1, bright on T2, suppressed on FLAIR
    [600, 620, 850, 800],  # gray matter
    [850, 860, 600, 600],  # white matter
    [300, 260, 1300, 600],  # necrotic core: dark on T1, no enhancement
    [650, 1450, 900, 950],  # enhancing rim: bright only after gadolinium
    [480, 500, 1150, 1250],  # edema: bright on T2 and FLAIR
], np.float32)
_NOISE_SD = 18.0  # per channel; the background's magnitude is then Rayleigh with mean ~23
# Random streams are tagged by purpose: numpy's SeedSequence ignores trailing zeros, so untagged
# [seed], [seed, 0] and [seed, 0, 0] would all be the same stream.
_WHO, _HEAD_STREAM, _SCAN = 1, 2, 3


def write_synthetic_nifti(
    root: str | os.PathLike,
    layout: str = "brats",
    subjects: int = 6,
    seed: int = 0,
    tumor_subjects: int | None = None,
) -> dict:
    """Write a synthetic brain-MRI NIfTI dataset (t1, t1ce, t2, flair and a tumour mask per scan).

    Args:
        root: folder to write into (created if missing; existing files of the same names are replaced).
        layout: "brats" (``<SID>/<SID>_t1.nii.gz`` ... ``<SID>_seg.nii.gz``, SID ``BraTS2021_00000``)
            or "bids" (``sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz`` ... ``_dseg.nii.gz``;
            sub-02 has two sessions, the last subject has no session level when subjects >= 3, and
            sub-03 stores a binary ``_mask`` instead of the labelled ``_dseg``).
        subjects: number of subjects, 1 to 99.
        seed: non-negative integer; the same seed writes the same voxel data.
        tumor_subjects: how many subjects carry a tumour, 0 to ``subjects``. None: two thirds
            rounded, at least 1, and at least one healthy subject when subjects >= 2. Which
            subjects is a permutation drawn from ``seed``.

    Returns:
        dict: "layout", "root", "shape", "spacing_mm", "orientation" (storage axis codes, e.g.
        "LPS") and "subjects": one dict per subject with "id", "sessions" (labels, [] when there
        is no session level), "tumor", "files" (modality -> path) and "mask" of its first scan,
        and "scans": every scan's "session", "files", "mask" and "landmarks_mm" (RAS points:
        head_center, ventricles, white_matter, tumor_center or None). Paths are relative to root.
        Masks are uint8: BraTS labels 1 necrotic core, 2 edema, 4 enhancing rim; 0/1 for ``_mask``.

    Example:
        >>> import tempfile
        >>> info = write_synthetic_nifti(tempfile.mkdtemp(), layout="bids", subjects=3, seed=1)
        >>> info["orientation"], info["subjects"][1]["sessions"], info["subjects"][2]["mask"]
        ('PSL', ['ses-01', 'ses-02'], 'sub-03/anat/sub-03_mask.nii.gz')
    """
    root = _check_arguments(root, layout, subjects, seed, tumor_subjects)
    codes, spacing, shape = _GRIDS[layout]
    affine = _affine(codes, spacing, shape)
    # Physical RAS position (mm) of every voxel centre, (3, N): the phantom is evaluated there.
    world = (affine[:3, :3] @ np.indices(shape).reshape(3, -1) + affine[:3, 3:]).astype(np.float32)
    tumorous = _tumor_flags(subjects, seed, tumor_subjects)
    entries = []
    for i in range(subjects):
        sessions = _sessions(layout, i, subjects)
        scans = []
        for s, session in enumerate(sessions):
            files, mask = _paths(layout, i, session, binary=layout == "bids" and subjects >= 3 and i == 2)
            images, labels, landmarks = _scan(seed, i, s, world, shape, bool(tumorous[i]))
            for modality, data in images.items():
                _save(root / files[modality], data, affine)
            _save(root / mask, (labels > 0).astype(np.uint8) if mask.endswith("_mask.nii.gz") else labels, affine)
            scans.append({"session": session, "files": files, "mask": mask, "landmarks_mm": landmarks})
        entries.append({"id": _subject_id(layout, i), "sessions": [s for s in sessions if s],
                        "tumor": bool(tumorous[i]), "files": scans[0]["files"], "mask": scans[0]["mask"],
                        "scans": scans})
    if layout == "bids":
        _write_bids_metadata(root, entries)
    return {"layout": layout, "root": str(root), "subjects": entries, "shape": list(shape),
            "spacing_mm": list(spacing), "orientation": codes}


def _check_arguments(root, layout, subjects, seed, tumor_subjects) -> Path:
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if layout not in _GRIDS:
        raise BrainaeError(f"layout={layout!r} is unknown: use 'brats' or 'bids'")
    if not is_int(subjects) or not 1 <= subjects <= 99:
        raise BrainaeError(f"subjects={subjects!r} is out of range: use an integer from 1 to 99")
    if not is_int(seed) or seed < 0:
        raise BrainaeError(f"seed={seed!r} is invalid: use a non-negative integer")
    if tumor_subjects is not None and (not is_int(tumor_subjects) or not 0 <= tumor_subjects <= subjects):
        raise BrainaeError(f"tumor_subjects={tumor_subjects!r} is out of range: use 0 to subjects ({subjects}) or None")
    if not isinstance(root, (str, os.PathLike)):
        raise BrainaeError(f"root={root!r} is not a path: pass a folder path as a string or Path")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise BrainaeError(f"root={str(root)!r} is a file: pass a folder path (it is created if missing)")
    return root


def _affine(codes: str, spacing, shape) -> np.ndarray:
    """Voxel -> RAS mm: axis j runs toward codes[j] in steps of spacing[j]; the grid centre is the origin."""
    m = np.array([_DIRECTION[c] for c in codes], float).T * np.array(spacing)
    affine = np.eye(4)
    affine[:3, :3] = m
    affine[:3, 3] = -m @ ((np.array(shape) - 1) / 2)
    return affine


def _tumor_flags(subjects: int, seed: int, tumor_subjects: int | None) -> np.ndarray:
    n = tumor_subjects
    if n is None:  # about two thirds, but always both groups when there are two subjects or more
        n = max(1, min(round(2 * subjects / 3), subjects - 1))
    flags = np.zeros(subjects, bool)
    flags[np.random.default_rng([seed, _WHO]).permutation(subjects)[:n]] = True
    return flags


def _sessions(layout: str, i: int, subjects: int) -> list:
    """Session labels of subject i; [None] means no session level."""
    if layout == "brats" or (subjects >= 3 and i == subjects - 1):
        return [None]
    return ["ses-01", "ses-02"] if i == 1 else ["ses-01"]


def _subject_id(layout: str, i: int) -> str:
    return f"BraTS2021_{i:05d}" if layout == "brats" else f"sub-{i + 1:02d}"


def _paths(layout: str, i: int, session, binary: bool) -> tuple[dict, str]:
    sid = _subject_id(layout, i)
    if layout == "brats":
        return {m: f"{sid}/{sid}_{m}.nii.gz" for m in MODALITIES}, f"{sid}/{sid}_seg.nii.gz"
    folder, stem = (f"{sid}/{session}/anat", f"{sid}_{session}") if session else (f"{sid}/anat", sid)
    files = {m: f"{folder}/{stem}_{_BIDS_SUFFIX[m]}.nii.gz" for m in MODALITIES}
    return files, f"{folder}/{stem}_{'mask' if binary else 'dseg'}.nii.gz"


def _rotation(angles) -> np.ndarray:
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _scan(seed: int, i: int, session: int, world: np.ndarray, shape, tumor: bool):
    """Images (modality -> int16), BraTS labels (uint8) and RAS landmarks of one scan."""
    # The head (size, folds, tumour) and its first pose come from (seed, i) alone; a later session
    # is the same head moved a little, with its own bias field and noise.
    rng = np.random.default_rng([seed, _HEAD_STREAM, i])
    scale = rng.uniform(0.94, 1.04)
    shift, angles = rng.uniform(-4, 4, 3), np.radians(rng.uniform(-6, 6, 3) * [0.8, 0.5, 1.0])
    side = rng.choice([-1.0, 1.0])
    tumor_center = np.array([side * rng.uniform(22, 32), rng.uniform(-25, 20), rng.uniform(-5, 20)])
    core = rng.uniform(5, 8)
    rim = core + rng.uniform(3, 4)
    radii = (core, rim, rim + rng.uniform(7, 10))
    tumor_axes, folds = rng.uniform(0.85, 1.15, 3), rng.uniform(0, 2 * np.pi, 2)
    scan_rng = np.random.default_rng([seed, _SCAN, i, session])
    bias = scan_rng.normal(0, 0.12, 3)
    if session:
        shift = shift + scan_rng.normal(0, 2.0, 3)
        angles = angles + np.radians(scan_rng.normal(0, 1.5, 3))
    rot = _rotation(angles)

    # Head coordinates (mm) of every voxel centre: the scanner grid seen from inside the moved head.
    head = rot.T.astype(np.float32) @ (world - shift[:, None].astype(np.float32)) / np.float32(scale)
    tissue, labels = _phantom(head, folds, (tumor_center, radii, tumor_axes) if tumor else None)
    tissue, labels = tissue.reshape(shape), labels.reshape(shape)
    # A smooth receive-coil field, fixed to the scanner, so it differs when the head moves.
    field = np.exp(bias.astype(np.float32) @ world / 100).reshape(shape)
    images = {}
    for k, modality in enumerate(MODALITIES):
        # A half-voxel blur stands in for partial volume at tissue borders.
        clean = ndimage.gaussian_filter(_SIGNAL[tissue, k], 0.5) * field
        noise = scan_rng.standard_normal((2, *shape), dtype=np.float32) * _NOISE_SD
        images[modality] = np.rint(np.hypot(clean + noise[0], noise[1])).astype(np.int16)  # Rician

    def to_world(p):
        return [round(float(v), 2) for v in rot @ (np.asarray(p) * scale) + shift]

    landmarks = {"head_center": to_world([0, 0, 0]), "ventricles": [to_world(v) for v in _VENTRICLES],
                 # the tumour's mirror image across the midline: deep white matter in every subject
                 "white_matter": to_world(tumor_center * [-1, 1, 1]),
                 "tumor_center": to_world(tumor_center) if tumor else None}
    return images, labels, landmarks


def _phantom(p: np.ndarray, folds, tumor) -> tuple[np.ndarray, np.ndarray]:
    """Tissue code and BraTS label at head coordinates p (3, N) in mm."""
    x, y, z = p
    r = np.sqrt(((p / _HEAD[:, None]) ** 2).sum(0))  # 1 on the scalp surface
    # Gyri: an angular pattern moves the gray/white border and opens sulci in the cortex.
    gyri = np.sin(9 * np.arctan2(y, x) + folds[0]) * np.cos(7 * np.arctan2(z, np.hypot(x, y)) + folds[1])
    tissue = np.zeros(r.shape, np.uint8)
    for code, outer in ((SCALP, 1.0), (SKULL, 0.93), (CSF, 0.87), (GM, 0.84)):
        tissue[r <= outer] = code
    tissue[r <= 0.74 + 0.04 * gyri] = WM
    tissue[(tissue == GM) & (gyri < -0.75) & (r > 0.78)] = CSF
    ventricles = np.zeros(r.shape, bool)
    for centre in _VENTRICLES:
        ventricles |= (((p - centre[:, None]) / _VENTRICLE_AXES[:, None]) ** 2).sum(0) <= 1
    tissue[ventricles] = CSF
    labels = np.zeros(r.shape, np.uint8)
    if tumor is not None:
        centre, (core, rim, edema), axes = tumor
        centre, axes = centre.astype(np.float32)[:, None], axes.astype(np.float32)[:, None]
        d = np.sqrt((((p - centre) / axes) ** 2).sum(0))
        brain = (r <= 0.84) & ~ventricles  # the lesion pushes against the ventricles and skull, never into them
        for label, code, radius in ((2, EDEMA, edema), (4, ENHANCING, rim), (1, NECROSIS, core)):
            inside = brain & (d < radius)
            labels[inside], tissue[inside] = label, code
    return tissue, labels


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib  # imported here so brainae imports without nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)  # 1 = scanner coordinates
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    atomic_write_bytes(path, gzip.compress(img.to_bytes(), mtime=0))  # never a half-written volume


def _write_bids_metadata(root: Path, entries: list) -> None:
    description = {"Name": "brainae synthetic brain MRI phantom", "BIDSVersion": "1.8.0", "DatasetType": "raw"}
    atomic_write_text(root / "dataset_description.json", json.dumps(description, indent=2) + "\n")
    rows = [f"{e['id']}\t{'tumor' if e['tumor'] else 'healthy'}" for e in entries]
    atomic_write_text(root / "participants.tsv", "participant_id\tgroup\n" + "\n".join(rows) + "\n")
