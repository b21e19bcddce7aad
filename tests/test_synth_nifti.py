"""The synthetic NIfTI dataset: layouts and names, geometry, masks, contrasts, noise, determinism, errors."""
from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

nib = pytest.importorskip("nibabel")

from brainae.data import synth_nifti  # noqa: E402
from brainae.data.synth_nifti import MODALITIES, write_synthetic_nifti  # noqa: E402
from brainae.errors import BrainaeError  # noqa: E402

EXPECTED = {"brats": (("L", "P", "S"), (2.4, 2.4, 5.5)), "bids": (("P", "S", "L"), (2.2, 2.2, 6.0))}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Both layouts, 6 subjects, seed 0, written once for the whole file."""
    return {layout: write_synthetic_nifti(tmp_path_factory.mktemp(layout), layout=layout, subjects=6, seed=0)
            for layout in EXPECTED}


def _scans(info):
    """(subject entry, scan entry) for every scan of a dataset."""
    return [(s, scan) for s in info["subjects"] for scan in s["scans"]]


def _load(info, rel, canonical=False):
    img = nib.load(str(Path(info["root"]) / rel))
    return nib.as_closest_canonical(img) if canonical else img


def _at(img, point_mm):
    """Image value at the voxel nearest a RAS point in mm."""
    ijk = np.rint(np.linalg.inv(img.affine) @ [*point_mm, 1.0])[:3].astype(int)
    return float(np.asarray(img.dataobj)[tuple(ijk)])


def _head(data, zooms):
    """Filled foreground of the head, and each voxel's distance (mm) to the outside."""
    head = ndimage.binary_fill_holes(ndimage.binary_closing(data > 100, iterations=2))
    return head, ndimage.distance_transform_edt(head, sampling=zooms)


def test_brats_files_and_names(datasets):
    info = datasets["brats"]
    root = Path(info["root"])
    ids = [f"BraTS2021_{i:05d}" for i in range(6)]
    assert [s["id"] for s in info["subjects"]] == ids
    on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    expected = sorted(f"{sid}/{sid}_{suffix}.nii.gz" for sid in ids for suffix in [*MODALITIES, "seg"])
    assert on_disk == expected
    for s in info["subjects"]:
        assert s["sessions"] == [] and set(s["files"]) == set(MODALITIES)
        assert s["mask"] == f"{s['id']}/{s['id']}_seg.nii.gz" and not Path(s["mask"]).is_absolute()


def test_bids_files_and_names(datasets):
    info = datasets["bids"]
    root = Path(info["root"])
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["Name"] and description["BIDSVersion"]
    lines = (root / "participants.tsv").read_text().splitlines()
    assert lines[0].split("\t")[0] == "participant_id"
    assert [line.split("\t")[0] for line in lines[1:]] == [f"sub-{i:02d}" for i in range(1, 7)]
    sessions = {s["id"]: s["sessions"] for s in info["subjects"]}
    assert sessions["sub-02"] == ["ses-01", "ses-02"] and sessions["sub-06"] == []
    assert all(sessions[f"sub-0{i}"] == ["ses-01"] for i in (1, 3, 4, 5))
    # Both BIDS forms: with a session level and without one.
    assert (root / "sub-02/ses-02/anat/sub-02_ses-02_ce-gd_T1w.nii.gz").is_file()
    assert (root / "sub-06/anat/sub-06_FLAIR.nii.gz").is_file() and not list((root / "sub-06").glob("ses-*"))
    # sub-03 keeps a binary _mask, every other scan a labelled _dseg.
    assert (root / "sub-03/ses-01/anat/sub-03_ses-01_mask.nii.gz").is_file()
    listed = {"dataset_description.json", "participants.tsv"}
    for s, scan in _scans(info):
        listed |= {*scan["files"].values(), scan["mask"]}
        assert scan["mask"].endswith("_mask.nii.gz" if s["id"] == "sub-03" else "_dseg.nii.gz")
        assert scan["files"]["t1"].endswith("_T1w.nii.gz") and scan["files"]["t2"].endswith("_T2w.nii.gz")
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert on_disk == listed and len(on_disk) == 2 + 7 * 5


@pytest.mark.parametrize("layout", list(EXPECTED))
def test_geometry_is_anisotropic_not_ras_and_shared_by_image_and_mask(datasets, layout):
    info = datasets[layout]
    codes, spacing = EXPECTED[layout]
    assert info["orientation"] == "".join(codes) and info["spacing_mm"] == list(spacing)
    for _, scan in _scans(info):
        mask = _load(info, scan["mask"])
        assert nib.aff2axcodes(mask.affine) == codes != ("R", "A", "S")
        assert mask.get_data_dtype() == np.uint8 and list(mask.shape) == info["shape"]
        for rel in scan["files"].values():
            img = _load(info, rel)
            assert np.allclose(img.header.get_zooms(), spacing)
            assert img.shape == mask.shape and np.array_equal(img.affine, mask.affine)
            assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
            assert img.get_data_dtype() == np.int16
    assert max(spacing) / min(spacing) > 2


@pytest.mark.parametrize("layout", list(EXPECTED))
def test_head_is_upright_with_the_right_size_after_reorienting(datasets, layout):
    info = datasets[layout]
    for s, scan in _scans(info):
        t1 = _load(info, scan["files"]["t1"], canonical=True)
        head, _ = _head(np.asarray(t1.dataobj), t1.header.get_zooms())
        extent = [np.ptp(np.nonzero(head.any(axis=tuple(a for a in range(3) if a != k)))[0]) * z
                  for k, z in enumerate(t1.header.get_zooms())]
        # About 140 x 175 x 130 mm (L-R, A-P, I-S): a wrong axis order swaps these.
        assert 120 <= extent[0] <= 160 and 155 <= extent[1] <= 200 and 110 <= extent[2] <= 150, (s["id"], extent)
        # The ventricles sit above the head's centre, as the phantom put them.
        marks = scan["landmarks_mm"]
        assert all(v[2] > marks["head_center"][2] + 5 for v in marks["ventricles"])


def test_both_layouts_hold_the_same_heads(datasets):
    brats, bids = datasets["brats"]["subjects"], datasets["bids"]["subjects"]
    assert [s["tumor"] for s in brats] == [s["tumor"] for s in bids]
    for a, b in zip(brats, bids):
        assert a["scans"][0]["landmarks_mm"] == b["scans"][0]["landmarks_mm"]


@pytest.mark.parametrize("layout", list(EXPECTED))
def test_masks_labels_and_tumour_position(datasets, layout):
    info = datasets[layout]
    assert sum(s["tumor"] for s in info["subjects"]) == 4  # two thirds of 6
    for s, scan in _scans(info):
        mask = _load(info, scan["mask"], canonical=True)
        labels = np.asarray(mask.dataobj)
        assert labels.any() == s["tumor"], s["id"]
        if not s["tumor"]:
            assert scan["landmarks_mm"]["tumor_center"] is None
            continue
        expected = {0, 1} if scan["mask"].endswith("_mask.nii.gz") else {0, 1, 2, 4}
        assert set(np.unique(labels).tolist()) == expected
        # The lesion lies where the phantom put it (in RAS mm), deep inside the head.
        # Core and rim are never clipped by the brain's edge; the binary mask (edema too) may be.
        labelled = expected == {0, 1, 2, 4}
        core = np.isin(labels, [1, 4]) if labelled else labels > 0
        centre = mask.affine[:3, :3] @ np.argwhere(core).mean(0) + mask.affine[:3, 3]
        assert np.linalg.norm(centre - scan["landmarks_mm"]["tumor_center"]) < (4 if labelled else 8)
        t1 = _load(info, scan["files"]["t1"], canonical=True)
        head, depth = _head(np.asarray(t1.dataobj), t1.header.get_zooms())
        ijk = tuple(np.rint(np.argwhere(labels > 0).mean(0)).astype(int))
        assert head[ijk] and depth[ijk] > 20
        # Only part of the head's axial slices (RAS axis 2) show tumour.
        head_slices, tumour_slices = head.any(axis=(0, 1)), (labels > 0).any(axis=(0, 1))
        assert tumour_slices.any() and (head_slices & ~tumour_slices).sum() >= 3
        assert not (tumour_slices & ~head_slices).any()


@pytest.mark.parametrize("layout", list(EXPECTED))
def test_contrasts_per_modality(datasets, layout):
    info = datasets[layout]
    for s, scan in _scans(info):
        img = {m: _load(info, rel) for m, rel in scan["files"].items()}
        marks = scan["landmarks_mm"]
        wm = {m: _at(img[m], marks["white_matter"]) for m in MODALITIES}
        for v in marks["ventricles"]:
            csf = {m: _at(img[m], v) for m in MODALITIES}
            assert csf["t2"] > csf["t1"] and csf["t2"] > wm["t2"] and csf["t1"] < wm["t1"]
            assert csf["flair"] < wm["flair"]
        assert wm["t1"] > 600 and wm["t1"] > wm["t2"]  # white matter: bright on T1, scanner-like units
        mask = np.asarray(_load(info, scan["mask"]).dataobj)
        if s["tumor"] and mask.max() == 4:
            data = {m: np.asarray(im.dataobj, np.float32) for m, im in img.items()}
            assert data["flair"][mask == 2].mean() > 1.4 * wm["flair"]  # edema
            assert data["t1ce"][mask == 4].mean() > 1.5 * data["t1"][mask == 4].mean()  # enhancing rim
            assert data["t1"][mask == 1].mean() < 0.7 * wm["t1"]  # necrotic core


@pytest.mark.parametrize("layout", list(EXPECTED))
def test_background_is_small_noise_not_zero(datasets, layout):
    info = datasets[layout]
    for _, scan in _scans(info):
        for rel in scan["files"].values():
            data = np.asarray(_load(info, rel).dataobj, np.float32)
            corners = np.concatenate([data[i:i + 4, j:j + 4, k:k + 3].ravel()
                                      for i in (0, -4) for j in (0, -4) for k in (0, -3)])
            tissue = np.median(data[data > 100])
            assert (corners > 0).mean() > 0.9 and 5 < corners.mean() < 0.1 * tissue


def test_second_session_is_the_same_head_moved(datasets):
    info = datasets["bids"]
    first, second = info["subjects"][1]["scans"]
    a, b = (_load(info, scan["files"]["t2"]) for scan in (first, second))
    assert a.shape == b.shape and np.array_equal(a.affine, b.affine)
    assert not np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    moved = np.linalg.norm(np.subtract(first["landmarks_mm"]["head_center"], second["landmarks_mm"]["head_center"]))
    assert 0 < moved < 12


def _arrays(info):
    return [np.asarray(_load(info, rel).dataobj) for _, scan in _scans(info)
            for rel in [*scan["files"].values(), scan["mask"]]]


def test_same_seed_same_data_other_seed_different(tmp_path):
    a, b, c = (write_synthetic_nifti(tmp_path / name, layout="bids", subjects=3, seed=seed)
               for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    assert {k: v for k, v in a.items() if k != "root"} == {k: v for k, v in b.items() if k != "root"}
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))
    assert not any(np.array_equal(x, y) for x, y in zip(_arrays(a)[:4], _arrays(c)[:4]))


@pytest.mark.parametrize("subjects, tumours", [(1, 1), (2, 1), (3, 2)])
def test_default_tumour_share(tmp_path, subjects, tumours):
    info = write_synthetic_nifti(tmp_path, layout="brats", subjects=subjects, seed=1)
    assert sum(s["tumor"] for s in info["subjects"]) == tumours


def test_tumour_assignment_follows_the_seed(tmp_path):
    info = write_synthetic_nifti(tmp_path, layout="brats", subjects=2, seed=0, tumor_subjects=0)
    assert not any(s["tumor"] for s in info["subjects"])
    picks = {tuple(synth_nifti._tumor_flags(6, seed, None)) for seed in range(10)}
    assert len(picks) > 1 and all(sum(p) == 4 for p in picks)
    assert tuple(synth_nifti._tumor_flags(6, 3, 2)) == tuple(synth_nifti._tumor_flags(6, 3, 2))


@pytest.mark.parametrize("kwargs, word", [
    ({"layout": "nifti"}, "layout"),
    ({"subjects": 0}, "subjects"),
    ({"subjects": 100}, "subjects"),
    ({"subjects": 2.5}, "subjects"),
    ({"subjects": 6, "tumor_subjects": 7}, "tumor_subjects"),
    ({"tumor_subjects": -1}, "tumor_subjects"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments(tmp_path, kwargs, word):
    with pytest.raises(BrainaeError, match=word):
        write_synthetic_nifti(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_root_that_is_a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("x")
    with pytest.raises(BrainaeError, match="root"):
        write_synthetic_nifti(path)


def test_docstring_example():
    assert doctest.testmod(synth_nifti).failed == 0
