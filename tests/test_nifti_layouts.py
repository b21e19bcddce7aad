"""Brain MRI as the field stores it: BraTS-like and BIDS subject folders, split by subject, masks as labels,
geometry from the affine, and results written back as NIfTI on each scan's own grid."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from brainae.cli import main  # noqa: E402
from brainae.config import DataConfig  # noqa: E402
from brainae.data.load import load_data  # noqa: E402
from brainae.data.nifti import nifti_items, read_volume  # noqa: E402
from brainae.data.nifti_layout import find_scans  # noqa: E402
from brainae.data.synth_nifti import write_synthetic_nifti  # noqa: E402
from brainae.errors import BrainaeError  # noqa: E402

TINY = ["--image-size", "32", "--preset", "quick", "--no-progress", "--set", "model.channels=[8,16]",
        "--set", "model.latent_dim=8"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_nifti(root / "brats", layout="brats", subjects=6, seed=0)
    write_synthetic_nifti(root / "bids", layout="bids", subjects=6, seed=0)
    return root


def _copy(synth, layout, tmp_path):
    return Path(shutil.copytree(synth / layout, tmp_path / layout))


@pytest.mark.parametrize("layout", ["brats", "bids"])
def test_split_by_subject_with_mask_labels(synth, layout):
    ds = load_data(DataConfig(spec=str(synth / layout), image_size=32), progress=False)
    g = ds.grouping
    assert g["unit"] == "subject" and g["split"] == "carved"
    names = [set(g["names"][s]) for s in ("train", "val", "test")]
    assert sum(len(n) for n in names) == 6 and not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    for s in ("train", "val", "test"):  # every slice of a subject lies in its subject's split
        assert {ds.group_names[i] for i in np.flatnonzero(ds.splits == s)} == set(g["names"][s])
    assert ds.classes == ["no_tumor", "tumor"] and ds.masks is not None and ds.masks.shape == ds.images.shape
    tumor = ds.labels == ds.classes.index("tumor")
    assert (ds.masks.reshape(len(ds), -1).any(1) <= tumor).all() and tumor.sum() > 10
    assert ds.groups is not None and len(np.unique(ds.groups)) == 6


def test_bids_sessions_masks_and_subjects_without_sessions(synth):
    scans = {s.name: s for s in find_scans(synth / "bids")}
    assert {"sub-02/ses-01", "sub-02/ses-02", "sub-06"} <= set(scans)
    assert scans["sub-02/ses-02"].subject == "sub-02" and scans["sub-06"].subject == "sub-06"
    assert scans["sub-03/ses-01"].mask.name.endswith("_mask.nii.gz")
    assert set(scans["sub-01/ses-01"].images) == {"t1", "t1ce", "t2", "flair"}
    assert all(s.mask is not None and "seg" not in s.images for s in scans.values())  # masks are never images


def test_brats_masks_are_never_images(synth):
    scans = find_scans(synth / "brats")
    assert [s.name for s in scans] == [f"BraTS2021_0000{i}" for i in range(6)]
    assert all(set(s.images) == {"t1", "t1ce", "t2", "flair"} and s.mask.name.endswith("_seg.nii.gz") for s in scans)


def test_modalities_stack_as_channels_and_train(synth, tmp_path):
    ds = load_data(DataConfig(spec=str(synth / "brats"), image_size=32, modality="t1,FLAIR"), progress=False)
    assert ds.images.shape[1:] == (2, 32, 32) and ds.channels == 2
    t1 = load_data(DataConfig(spec=str(synth / "brats"), image_size=32, modality="t1"), progress=False)
    flair = load_data(DataConfig(spec=str(synth / "brats"), image_size=32, modality="t2f"), progress=False)
    assert not np.array_equal(t1.images, flair.images)
    out = tmp_path / "run"
    assert main(["train", "--data", str(synth / "brats"), "--modality", "t1,flair", "--epochs", "1", *TINY,
                 "--out", str(out)]) == 0
    assert "in_channels: 2" in (out / "config.yaml").read_text()
    assert main(["evaluate", str(out), "--no-progress"]) == 0


def test_missing_modality_is_skipped_and_counted_or_refused(synth, tmp_path):
    root = _copy(synth, "brats", tmp_path)
    (root / "BraTS2021_00002" / "BraTS2021_00002_flair.nii.gz").unlink()
    items, skipped, _ = nifti_items(str(root), modality="flair")
    assert len(skipped) == 1 and "no flair image (has: t1, t1ce, t2)" in skipped[0][1]
    assert "BraTS2021_00002" not in {it.group for it in items}
    with pytest.raises(BrainaeError, match="no scan has pd"):
        nifti_items(str(root), modality="pd")


def test_bad_subjects_are_skipped_with_reasons(synth, tmp_path):
    root = _copy(synth, "brats", tmp_path)
    only_mask = root / "BraTS2021_00001"
    for f in only_mask.glob("*_t*.nii.gz"):
        f.unlink()
    for f in only_mask.glob("*_flair.nii.gz"):
        f.unlink()
    seg = root / "BraTS2021_00003" / "BraTS2021_00003_seg.nii.gz"
    img = nib.load(str(seg))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-4], img.affine), str(seg))  # a mask on another grid
    t1 = root / "BraTS2021_00004" / "BraTS2021_00004_t1.nii.gz"
    data = np.asarray(nib.load(str(t1)).dataobj)
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), nib.load(str(t1)).affine), str(t1))  # 4-D
    _, skipped, _ = nifti_items(str(root))
    reasons = {Path(s).parent.name: r for s, r in skipped}
    assert set(reasons) == {"BraTS2021_00001", "BraTS2021_00003", "BraTS2021_00004"}
    assert "only a mask" in reasons["BraTS2021_00001"]
    assert "does not fit" in reasons["BraTS2021_00003"]
    assert "4-D series" in reasons["BraTS2021_00004"]
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--epochs", "1", *TINY, "--out", str(run)]) == 0
    assert len((run / "skipped.txt").read_text().splitlines()) == 3


def _sphere_volume(spacing, axcodes):
    """A 60 mm ball in a 160 mm cube, sampled at ``spacing`` and stored in ``axcodes`` order."""
    n = [int(160 / s) for s in spacing]
    grids = np.meshgrid(*[(np.arange(k) + 0.5) * s - 80 for k, s in zip(n, spacing)], indexing="ij")
    vol = (np.sqrt(sum(g**2 for g in grids)) < 30).astype(np.float32) * 800 + 100  # offset background 100
    vol += np.random.default_rng(0).normal(0, 5, vol.shape).astype(np.float32)
    ras = nib.Nifti1Image(vol, np.diag(list(spacing) + [1.0]))
    img = ras.as_reoriented(nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                                            nib.orientations.axcodes2ornt(axcodes)))
    return np.asarray(img.dataobj), img.affine


@pytest.mark.parametrize("spacing, axcodes", [((1.0, 1.0, 4.0), ("R", "A", "S")), ((4.0, 1.0, 1.0), ("P", "S", "L")),
                                              ((1.0, 4.0, 1.0), ("L", "I", "P"))])
def test_slices_have_square_pixels_whatever_the_storage(tmp_path, spacing, axcodes):
    vol, affine = _sphere_volume(spacing, axcodes)
    f = tmp_path / "ball.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), str(f))
    assert nib.aff2axcodes(affine) == axcodes
    for axis in range(3):
        items, _, _ = nifti_items(str(f), axis=axis)
        middle = max(items, key=lambda it: it.load().sum()).load()
        rows, cols = np.nonzero(middle > 0.5)
        extent = (np.ptp(rows) + 1, np.ptp(cols) + 1)
        assert abs(extent[0] - extent[1]) <= 0.1 * max(extent), (axis, extent)  # a circle, not a 4:1 ellipse
        assert middle[0, 0] == 0  # the offset, noisy background is black
        assert len(items) < 60 / min(spacing) + 4  # the empty slices around the ball are dropped


def test_offset_and_signed_intensities_normalise_alike(tmp_path):
    vol, affine = _sphere_volume((2.0, 2.0, 2.0), ("R", "A", "S"))
    for name, shift in (("plain", 0.0), ("signed", -1000.0), ("offset", 5000.0)):
        nib.save(nib.Nifti1Image(vol + shift, affine), str(tmp_path / f"{name}.nii.gz"))
    stacks = {}
    for name in ("plain", "signed", "offset"):
        items, _, _ = nifti_items(str(tmp_path / f"{name}.nii.gz"))
        stacks[name] = np.stack([it.load() for it in items])
    np.testing.assert_allclose(stacks["signed"], stacks["plain"], atol=1e-4)
    np.testing.assert_allclose(stacks["offset"], stacks["plain"], atol=1e-3)


def test_slices_range_share_and_foreground_crop(synth):
    scan = find_scans(synth / "brats")[0]
    all_items, _, _ = nifti_items(str(scan.images["t1"]))
    idx = [int(it.source.rsplit("=", 1)[1]) for it in all_items]
    share, _, _ = nifti_items(str(scan.images["t1"]), slices="0.5")
    assert abs(len(share) - len(idx) / 2) <= 1
    assert int(share[0].source.rsplit("=", 1)[1]) > idx[0]
    window, _, _ = nifti_items(str(scan.images["t1"]), slices="10:14")
    assert [int(it.source.rsplit("=", 1)[1]) for it in window] == [i for i in idx if 10 <= i < 14]
    cropped, _, _ = nifti_items(str(scan.images["t1"]), crop=True)
    assert cropped[0].load().size < all_items[0].load().size
    with pytest.raises(BrainaeError, match="data.slices"):
        nifti_items(str(scan.images["t1"]), slices="half")


def test_reconstruct_writes_volumes_on_the_scans_own_grid(synth, tmp_path):
    run, out = tmp_path / "run", tmp_path / "recon"
    assert main(["train", "--data", str(synth / "bids"), "--epochs", "1", *TINY, "--out", str(run)]) == 0
    assert main(["reconstruct", str(run), "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "reconstruct.json").read_text())
    assert result["format"] == "nifti" and len(result["files"]) == 7 * 3  # 7 scans x input, recon, residual
    scan = next(s for s in find_scans(synth / "bids") if s.name == "sub-02/ses-02")
    original = nib.load(str(scan.images["t1"]))
    written = {k: nib.load(str(out / "sub-02" / "ses-02" / f"t1_{k}.nii.gz")) for k in ("input", "recon", "residual")}
    for img in written.values():
        assert img.shape == original.shape and np.allclose(img.affine, original.affine)
    # what the network saw, put back: close to the original normalised volume, voxel for voxel
    vol = read_volume(scan, ["t1"])
    to_stored = nib.orientations.ornt_transform(np.array([[0, 1], [1, 1], [2, 1]]), vol.ornt)
    truth = nib.orientations.apply_orientation(vol.data[0], to_stored)
    back = written["input"].get_fdata()
    covered = back > 0
    assert covered.mean() > 0.2
    assert np.corrcoef(back[covered], truth[covered])[0, 1] > 0.9
    np.testing.assert_allclose(written["residual"].get_fdata(),
                               np.abs(back - written["recon"].get_fdata()), atol=1e-5)


def test_normal_only_then_anomaly_scores_real_tumour_masks(synth, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(synth / "brats"), "--normal-only", "no_tumor", "--epochs", "2", *TINY,
                 "--out", str(run)]) == 0
    counts = json.loads((run / "data.json").read_text())["counts"]
    assert counts["train"]["tumor"] == 0 and counts["test"]["tumor"] > 0
    assert main(["anomaly", str(run), "--no-progress"]) == 0
    result = json.loads((run / "anomaly" / "anomaly.json").read_text())
    assert result["n_tumor"] > 0 and result["pixel_level"]["tumor_pixels"] > 0
    assert 0 <= result["pixel_level"]["best_dice"] <= 1 and 0 <= result["image_level"]["mse"]["auroc"] <= 1


@pytest.mark.parametrize("args, expected", [
    (["train", "--data", "{brats}", "--group-by", "x"], "grouped by subject already"),
    (["train", "--data", "{brats}", "--modality", "dwi"], "no scan has dwi"),
    (["train", "--data", "{one}"], "too small to give every split one volume"),
    (["train", "--data", "{brats}", "--slices", "2:1"], "data.slices"),
])
def test_bad_volume_input_is_one_line(synth, tmp_path, capsys, args, expected):
    one = find_scans(synth / "brats")[0].images["t1"]
    argv = [a.format(brats=synth / "brats", one=one) for a in args] + ["--epochs", "1", *TINY, "--out",
                                                                     str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("brainae: error:") and expected in err[0]
    assert not (tmp_path / "run").exists()


def test_synth_command(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "d"), "--layout", "bids", "--subjects", "3"]) == 0
    assert (tmp_path / "d" / "participants.tsv").is_file() and "3 bids subjects" in capsys.readouterr().out
    assert main(["data", "synth", str(tmp_path / "d")]) == 2  # never over an existing dataset


@pytest.mark.slow
def test_real_mni152_template_loads_as_one_upright_volume(tmp_path):
    datasets = pytest.importorskip("nilearn.datasets", reason="nilearn is not installed (pip install nilearn)")
    img = datasets.load_mni152_template(resolution=1)
    f = tmp_path / "mni152_t1.nii.gz"
    nib.save(img, str(f))
    items, skipped, unit = nifti_items(str(f))
    assert skipped == [] and unit == "volume" and 100 < len(items) <= img.shape[2]
    middle = items[len(items) // 2].load()
    assert middle.shape == (img.shape[1], img.shape[0]) and middle[0, 0] == 0 and middle.max() == 1
    with pytest.raises(BrainaeError, match="too small to give every split one volume"):
        load_data(DataConfig(spec=str(f), image_size=64), progress=False)
