"""``brainae reconstruct``: a run's reconstructions and residual maps written where the field looks at them.

NIfTI input comes back as NIfTI volumes on each scan's own grid (its stored axis order, shape and
affine), one folder per scan, so ITK-SNAP or FSLeyes shows them over the original. Per modality:
``<mod>_input`` (what the network saw: normalised to [0, 1], resized and back), ``<mod>_recon`` and
``<mod>_residual`` (|input - recon|), all in the normalised [0, 1] units. Slices the data leaves out
(empty, outside ``--slices`` or another split) are 0. Image input comes back as PNGs at the network's size.
"""
from __future__ import annotations

import gzip
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from brainae.data.load import parse_spec
from brainae.data.types import ImageSet, with_channels
from brainae.errors import BrainaeError
from brainae.evaluation.evaluate import reconstruct, resolve_eval_data
from brainae.io import atomic_path, atomic_write_bytes, write_json
from brainae.progress import bar
from brainae.training.run import load_run

RESIDUAL_PNG_SCALE = 0.5  # residual PNGs: an error of 0.5 (half the intensity range) is white


def _slice_ref(source: str) -> tuple[str, int, int]:
    """("FILE", axis, index) of a NIfTI slice source ``FILE#axis=2,slice=40``."""
    file, _, ref = source.rpartition("#")
    fields = dict(part.split("=") for part in ref.split(","))
    return file, int(fields["axis"]), int(fields["slice"])


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, header) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data.astype(np.float32), affine, header=header)
    img.set_data_dtype(np.float32)
    atomic_write_bytes(path, gzip.compress(img.to_bytes(), compresslevel=6))


def write_volumes(ds: ImageSet, recon: np.ndarray, spec_arg: str, cfg, out: Path, progress: bool) -> list[str]:
    """One folder per scan under ``out`` with input, recon and residual volumes per modality."""
    import nibabel as nib

    from brainae.data.load import keep_aspect
    from brainae.data.nifti import read_volume, upright_shape, volume_from_slices
    from brainae.data.nifti_layout import choose_modalities, find_scans
    from brainae.data.preprocess import unresize_square

    scans = find_scans(spec_arg)
    modalities = choose_modalities(scans, cfg.modality)
    by_file = {str(s.images[modalities[0]]): s for s in scans if modalities[0] in s.images}
    rows: dict[str, list[int]] = defaultdict(list)
    for i, src in enumerate(ds.sources):
        rows[_slice_ref(src)[0]].append(i)
    aspect, axis = keep_aspect(cfg, "nifti"), cfg.nifti_axis
    x, r = with_channels(ds.images), with_channels(recon)  # uint8 input: scaled per slice below, not all at once
    written = []
    for file, idx in bar(sorted(rows.items()), progress, desc="writing volumes", unit="scan", leave=False):
        scan = by_file.get(file)
        if scan is None:
            raise BrainaeError(f"{file} is no longer where the data lists it; reconstruct from the data the run names")
        vol = read_volume(scan, modalities, cfg.crop_foreground)
        header = nib.load(str(file)).header
        folder, shape = out / scan.name, upright_shape(vol, axis)
        for c, mod in enumerate(modalities):
            slices = {kind: {_slice_ref(ds.sources[i])[2]: unresize_square(a[i, c] * scale, shape, aspect) for i in idx}
                      for kind, a, scale in (("input", x, 1 / 255.0), ("recon", r, 1.0))}
            volumes = {kind: volume_from_slices(vol, axis, s) for kind, s in slices.items()}
            volumes["residual"] = np.abs(volumes["input"] - volumes["recon"])  # as seen on the scan's grid
            for kind, data in volumes.items():
                path = folder / f"{mod}_{kind}.nii.gz"
                _save_nifti(path, data, vol.affine, header)
                written.append(str(path))
    return written


def write_pngs(ds: ImageSet, recon: np.ndarray, out: Path, progress: bool) -> list[str]:
    """``<class>/<name>_{input,recon,residual}.png`` at the network's size."""
    if ds.images.ndim != 3:
        raise BrainaeError("PNG output takes one channel; stacked modalities come from NIfTI scans")
    x = ds.images.astype(np.float32) / 255.0
    written = []
    for i in bar(range(len(ds)), progress, desc="writing images", unit="img", leave=False):
        stem = Path(ds.sources[i].replace(":", "_")).stem or f"image{i}"
        base = out / ds.classes[ds.labels[i]] / f"{i:05d}_{stem}"
        for kind, arr in (("input", x[i]), ("recon", recon[i]), ("residual", np.abs(x[i] - recon[i]) / RESIDUAL_PNG_SCALE)):
            path = base.with_name(f"{base.name}_{kind}.png")
            with atomic_path(path) as tmp:
                Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(tmp, format="PNG")
            written.append(str(path))
    return written


def run_reconstruct(run_dir: str | Path, out: str | Path, data: Optional[str] = None, split: str = "all",
                    progress: bool = True) -> dict:
    """Reconstruct ``split`` of the run's data (or ``data``) with the run's best checkpoint and write the results.

    Returns (and writes as ``OUT/reconstruct.json``) {"run_dir", "data", "split", "n_images", "format",
    "files"}: NIfTI volumes per scan for NIfTI data, PNGs otherwise.

    Example:
        >>> run_reconstruct("runs/ae", "recon", data="nifti:brats/")["format"]  # doctest: +SKIP
        'nifti'
    """
    model, cfg = load_run(run_dir)
    spec = data or cfg.data.spec
    kind, arg = parse_spec(spec)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BrainaeError(f"--out {out} is a file; name a folder")
    ds = resolve_eval_data(cfg, data, split, progress)
    recon = reconstruct(model, ds.images)
    if kind == "nifti":
        files = write_volumes(ds, recon, arg, cfg.data, out, progress)
    else:
        files = write_pngs(ds, recon, out, progress)
    result = {"run_dir": str(run_dir), "data": spec, "split": split, "n_images": len(ds),
              "format": "nifti" if kind == "nifti" else "png", "files": [str(Path(f).relative_to(out)) for f in files]}
    if kind != "nifti":
        result["residual_png_scale"] = RESIDUAL_PNG_SCALE
    write_json(out / "reconstruct.json", result)
    return result
