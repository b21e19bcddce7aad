"""nifti_items on small volumes written with nibabel in tmp_path."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from brainae.data.nifti import nifti_items  # noqa: E402
from brainae.errors import BrainaeError  # noqa: E402


def _volume(seed: int = 0, shape=(32, 32, 10)) -> np.ndarray:
    """A 'head' filling x, y in 4..27 and z in 2..7: slices z = 0, 1, 8, 9 are empty."""
    vol = np.zeros(shape, np.float32)
    vol[4:28, 4:28, 2:8] = np.random.default_rng(seed).uniform(100, 1000, (24, 24, 6))
    return vol


def _save(data: np.ndarray, path, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _stack(items):
    return np.stack([it.load() for it in items])


@pytest.mark.parametrize("name", ["a.nii", "a.nii.gz"])
@pytest.mark.parametrize("axis, count, shape", [(0, 24, (10, 32)), (1, 24, (10, 32)), (2, 6, (32, 32))])
def test_slices_along_each_axis(tmp_path, name, axis, count, shape):
    f = _save(_volume(), tmp_path / name)
    items, skipped, _ = nifti_items(str(f), axis=axis, label="scan")
    assert skipped == [] and len(items) == count
    for it in items:
        s = it.load()
        assert s.dtype == np.float32 and s.shape == shape
        assert 0.0 <= s.min() and s.max() <= 1.0 and s.max() > 0
        assert it.label == "scan" and it.split is None
        assert f"axis={axis}" in it.fingerprint
    first = {0: 4, 1: 4, 2: 2}[axis]  # empty border slices are dropped
    assert items[0].source == f"{f}#axis={axis},slice={first}"
    assert items[-1].source == f"{f}#axis={axis},slice={first + count - 1}"


def test_robust_per_volume_normalisation(tmp_path):
    vol = _volume()
    a = _save(vol, tmp_path / "a.nii.gz")
    b = _save(vol * 1000 + 0, tmp_path / "b.nii.gz")  # same scan, other scanner gain
    hot = vol.copy()
    hot[10, 10, 4] = 1e9  # one hot voxel must not squash the rest
    c = _save(hot, tmp_path / "c.nii.gz")
    sa, sb, sc = (_stack(nifti_items(str(f))[0]) for f in (a, b, c))
    np.testing.assert_allclose(sa, sb, atol=1e-5)
    head = sa[:, 4:28, 4:28]  # rot90 of an (X, Y) slice is (Y, X); the head is square, so same box
    assert head.min() == 0.0 and head.max() == 1.0 and 0.4 < np.median(head) < 0.6
    assert np.median(sc[:, 4:28, 4:28]) > 0.4  # without clipping it would be ~1e-6
    assert sc.max() == 1.0


def test_reoriented_to_ras(tmp_path):
    """A volume stored left-right flipped (negative x in the affine) gives the same slices."""
    vol = _volume()
    a = _save(vol, tmp_path / "ras.nii")
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    b = _save(np.ascontiguousarray(vol[::-1]), tmp_path / "las.nii", affine=flip)
    np.testing.assert_allclose(_stack(nifti_items(str(a))[0]), _stack(nifti_items(str(b))[0]))


def test_upright_slices(tmp_path):
    """Axial slices come out anterior-up: array row 0 is the most anterior y."""
    vol = np.zeros((32, 32, 3), np.float32)
    vol[:, 30:, :] = 1.0  # a band at the anterior end (high y)
    vol[5:10, 5:20, :] = 1.0  # and something so the percentiles are not all one value
    (item, *_), _, _ = nifti_items(str(_save(vol, tmp_path / "v.nii")), axis=2)
    s = item.load()
    assert s[:2].all() and not s[-2:].any()


def test_4d_series_is_skipped_in_a_folder_and_refused_alone(tmp_path):
    vol0 = _volume()
    series = np.stack([vol0, np.full_like(vol0, 7.0), np.ones_like(vol0)], axis=-1)
    f = _save(series, tmp_path / "scans" / "bold.nii.gz")
    _save(vol0, tmp_path / "scans" / "anat.nii.gz")
    _save(vol0[..., None], tmp_path / "scans" / "single_frame.nii.gz")  # (X, Y, Z, 1) is 3-D
    items, skipped, _ = nifti_items(str(tmp_path / "scans"))
    assert len(items) == 12 and skipped == [(str(f), "a 4-D series (3 volumes); brainae takes 3-D images: extract "
                                                      "one volume first (e.g. fslroi)")]
    with pytest.raises(BrainaeError, match="4-D series"):
        nifti_items(str(f))


def test_nan_and_inf_become_background(tmp_path):
    vol = _volume()
    vol[10, 10, 3] = np.nan
    vol[11, 10, 3] = np.inf
    vol[12, 10, 3] = -np.inf
    items, skipped, _ = nifti_items(str(_save(vol, tmp_path / "nan.nii.gz")))
    assert skipped == [] and len(items) == 6
    s = items[1].load()  # slice z = 3
    assert np.isfinite(s).all() and 0 <= s.min() and s.max() <= 1
    # rot90: voxel (x, y) lands at row 31 - y, column x.
    assert s[31 - 10, 10] == 0 and s[31 - 10, 11] == 0 and s[31 - 10, 12] == 0
    assert s[31 - 10, 13] > 0


def test_folder_labels_and_skips(tmp_path):
    root = tmp_path / "scans"
    _save(_volume(1), root / "glioma" / "g1.nii.gz")
    _save(_volume(2), root / "glioma" / "deeper" / "g2.nii")  # label = top-level sub-folder
    _save(_volume(3), root / "healthy" / "h1.nii.gz")
    _save(_volume(4), root / "loose.nii")
    _save(np.full((8, 8, 4), np.nan, np.float32), root / "healthy" / "allnan.nii")
    _save(np.zeros((8, 8, 4), np.float32), root / "healthy" / "zeros.nii")
    speck = np.zeros((32, 32, 4), np.float32)
    speck[3, 3, 1] = 5.0  # 1 voxel in 1,024: below the 1 % foreground a slice needs
    _save(speck, root / "speck.nii")
    (root / "healthy" / "corrupt.nii.gz").write_bytes(b"definitely not a NIfTI file")
    good = (root / "healthy" / "h1.nii.gz").read_bytes()
    (root / "truncated.nii.gz").write_bytes(good[: len(good) // 2])
    (root / "notes.txt").write_text("ignored")

    items, skipped, _ = nifti_items(str(root), axis=2, label="unsorted")
    by_file = {}
    for it in items:
        by_file.setdefault(it.source.split("#")[0], set()).add(it.label)
    assert by_file == {
        str(root / "glioma" / "g1.nii.gz"): {"glioma"},
        str(root / "glioma" / "deeper" / "g2.nii"): {"glioma"},
        str(root / "healthy" / "h1.nii.gz"): {"healthy"},
        str(root / "loose.nii"): {"unsorted"},
    }
    assert len(items) == 4 * 6
    reasons = dict(skipped)
    assert set(reasons) == {
        str(root / "healthy" / f) for f in ("allnan.nii", "zeros.nii", "corrupt.nii.gz")
    } | {str(root / "truncated.nii.gz"), str(root / "speck.nii")}
    assert reasons[str(root / "speck.nii")] == "no slice along axis 2 has 1% foreground voxels"
    assert "NaN" in reasons[str(root / "healthy" / "allnan.nii")]
    assert "empty" in reasons[str(root / "healthy" / "zeros.nii")]
    assert all(r and "\n" not in r for r in reasons.values())
    assert all(0 <= it.load().min() and it.load().max() <= 1 for it in items)


def test_each_file_read_once_per_pass(tmp_path, monkeypatch):
    root = tmp_path / "many"
    for i in range(3):
        _save(_volume(i), root / f"v{i}.nii.gz")
    reads = []
    real = nib.load
    monkeypatch.setattr(nib, "load", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    items, _, _ = nifti_items(str(root))
    assert len(reads) == 3  # listing reads each volume once
    for it in items:
        it.load()
    assert len(reads) <= 6  # loading all slices in order re-reads each file at most once

    reads.clear()
    (single, *rest), _, _ = nifti_items(str(root / "v0.nii.gz"))
    for it in [single, *rest]:
        it.load()
    assert len(reads) == 1  # a single file stays cached from listing to the last slice


def test_errors_are_one_line(tmp_path):
    f = _save(_volume(), tmp_path / "a.nii")
    cases = {
        "axis must be 0, 1 or 2": lambda: nifti_items(str(f), axis=3),
        "does not exist": lambda: nifti_items(str(tmp_path / "missing.nii")),
        "no .nii or .nii.gz files": lambda: nifti_items(str((tmp_path / "empty").mkdir() or tmp_path / "empty")),
        "is not a NIfTI file": lambda: nifti_items(str(tmp_path / "a.txt")),
        "cannot use NIfTI file": lambda: nifti_items(str(tmp_path / "bad.nii.gz")),
        "(all voxels are NaN/inf); check or replace": lambda: nifti_items(str(tmp_path / "nan.nii")),
    }
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "bad.nii.gz").write_bytes(gzip.compress(b"garbage" * 100))
    _save(np.full((4, 4, 4), np.nan, np.float32), tmp_path / "nan.nii")
    for expected, call in cases.items():
        with pytest.raises(BrainaeError) as e:
            call()
        assert expected.strip() in str(e.value) and "\n" not in str(e.value)


def test_nifti_spec_end_to_end_through_load_data(tmp_path, monkeypatch):
    """`--data nifti:FOLDER` and `--data file.nii.gz`: slices preprocessed, skips counted, splits carved."""
    from brainae.config import DataConfig
    from brainae.data.load import load_data

    monkeypatch.setenv("BRAINAE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "scans"
    for i in range(4):
        _save(_volume(i), root / ("glioma" if i % 2 else "healthy") / f"s{i}.nii.gz")
    (root / "healthy" / "broken.nii").write_bytes(b"not nifti")
    ds = load_data(DataConfig(spec=f"nifti:{root}", image_size=16), progress=False)
    assert ds.images.shape == (24, 16, 16) and ds.classes == ["glioma", "healthy"]
    assert [s for s, _ in ds.skipped] == [str(root / "healthy" / "broken.nii")]
    assert set(ds.splits) == {"train", "val", "test"} and ds.images.max() > 100
    assert ds.grouping["unit"] == "volume" and ds.grouping["groups"] == {"train": 2, "val": 1, "test": 1}
    one = DataConfig(spec=str(root / "glioma" / "s1.nii.gz"), image_size=16)
    with pytest.raises(BrainaeError, match="too small to give every split one volume: 1 volume"):
        load_data(one, progress=False)  # one volume's slices cannot be split without leaking
    single = load_data(one, progress=False, require_training=False)  # but it can be evaluated or reconstructed
    assert len(single) == 6 and single.classes == ["volume"] and set(single.splits) == {"train"}
