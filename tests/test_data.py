"""Data specs, folder layouts and splits, preprocessing of odd image formats, bad files, the cache, limit."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from PIL import Image

from brainae.config import DataConfig
from brainae.data import preprocess as pp
from brainae.data.load import load_data, parse_spec
from brainae.data.splits import assign_splits, limit_per_split, stratified_split
from brainae.errors import BrainaeError

from conftest import fake_slice, write_image

SIZE = 32  # small preprocessing size keeps every test fast


def _load(root: Path, **kw):
    return load_data(DataConfig(spec=str(root), image_size=kw.pop("image_size", SIZE), **kw), progress=False)


def _split_of(ds) -> dict[str, str]:
    return dict(zip(ds.sources, ds.splits))


def _one_line_error(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip(), msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# ---------------------------------------------------------------- parse_spec


@pytest.mark.parametrize("spec, expected", [
    ("phantom", ("phantom", "")),
    ("phantom:300", ("phantom", "300")),
    ("  phantom:50 ", ("phantom", "50")),
    ("hf:benschill/brain-tumor-collection", ("hf", "benschill/brain-tumor-collection")),
    ("hf:owner/name@v1.0", ("hf", "owner/name@v1.0")),
    ("nifti:/data/volumes", ("nifti", "/data/volumes")),
    ("scan.nii.gz", ("nifti", "scan.nii.gz")),
    ("some/dir/scan.nii", ("nifti", "some/dir/scan.nii")),
])
def test_parse_spec_forms(spec, expected):
    assert parse_spec(spec) == expected


def test_parse_spec_folder(tmp_path):
    assert parse_spec(str(tmp_path)) == ("folder", str(tmp_path))
    odd = tmp_path / "scans:2024"  # an existing folder whose name has a colon is still a folder
    odd.mkdir()
    assert parse_spec(str(odd)) == ("folder", str(odd))


@pytest.mark.parametrize("spec", ["foo:bar", "s3:bucket/key"])
def test_parse_spec_unknown_form(spec):
    with pytest.raises(BrainaeError) as e:
        parse_spec(spec)
    _one_line_error(e, spec, "phantom")


def test_parse_spec_missing_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(BrainaeError) as e:
        parse_spec(str(missing))
    _one_line_error(e, str(missing))
    a_file = tmp_path / "one.png"  # a file is not a folder
    write_image(a_file, np.zeros((20, 20), np.uint8))
    with pytest.raises(BrainaeError):
        parse_spec(str(a_file))


# ---------------------------------------------------------------- folder layouts and splits


def test_flat_folder_seeded_stratified_splits(image_folder):
    root = image_folder(None, per_class=8)
    ds = _load(root)
    assert len(ds) == 24 and ds.classes == ["glioma", "meningioma", "no_tumor"]
    assert ds.images.shape == (24, SIZE, SIZE) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and ds.skipped == []
    for split in ("train", "val", "test"):
        part = ds.split(split)
        assert set(part.labels.tolist()) == {0, 1, 2}, split  # every class in every split
    counts = Counter(ds.splits.tolist())
    assert counts == {"train": 18, "val": 3, "test": 3}
    for src, label in zip(ds.sources, ds.labels):
        assert Path(src).parent.name == ds.classes[label]

    again = _load(root)
    assert _split_of(again) == _split_of(ds)  # same data seed, same split
    other = _load(root, seed=1)
    assert _split_of(other) != _split_of(ds)
    assert Counter(other.splits.tolist()) == counts


def test_training_testing_layout(image_folder):
    root = image_folder("Training/Testing", per_class=8)  # Testing gets 4 per class
    ds = _load(root)
    by_split = {s: {Path(src).parts[-3] for src, sp in zip(ds.sources, ds.splits) if sp == s}
                for s in ("train", "val", "test")}
    assert by_split == {"train": {"Training"}, "val": {"Training"}, "test": {"Testing"}}
    testing = sorted(str(p) for p in (root / "Testing").rglob("*.*"))
    assert sorted(s for s, sp in zip(ds.sources, ds.splits) if sp == "test") == testing
    assert set(ds.split("val").labels.tolist()) == {0, 1, 2}
    assert Counter(ds.splits.tolist())["test"] == 12


def test_train_val_test_layout_honoured(image_folder):
    root = image_folder("train/val/test", per_class=6)
    ds = _load(root)
    for src, split in zip(ds.sources, ds.splits):
        assert Path(src).parts[-3] == split
    assert Counter(ds.splits.tolist()) == {"train": 18, "val": 9, "test": 9}
    assert _split_of(_load(root, seed=5)) == _split_of(ds)  # given splits ignore the seed


def test_upper_case_suffixes_and_nested_folders(image_folder):
    root = image_folder(None, classes=("a", "b"), per_class=6)
    write_image(root / "a" / "SCAN.PNG", fake_slice(np.random.default_rng(3), 50, 60))
    write_image(root / "b" / "sub" / "deep.JPEG", fake_slice(np.random.default_rng(4), 70, 50), "RGB")
    ds = _load(root)
    assert len(ds) == 14 and ds.classes == ["a", "b"]
    assert str(root / "b" / "sub" / "deep.JPEG") in ds.sources
    assert ds.labels[ds.sources.index(str(root / "b" / "sub" / "deep.JPEG"))] == 1  # class = top folder


def test_split_folder_names_are_case_insensitive(image_folder, tmp_path):
    root = image_folder("train/val/test", per_class=4)
    (root / "train").rename(root / "TRAIN")
    (root / "val").rename(root / "Validation")
    ds = _load(root)
    assert Counter(ds.splits.tolist()) == {"train": 12, "val": 6, "test": 6}


# ---------------------------------------------------------------- preprocessing


def _square_scene(w: int = 64, h: int = 48) -> np.ndarray:
    """uint8: black background, a white square in the middle."""
    arr = np.zeros((h, w), np.uint8)
    arr[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    return arr


def _save_format(kind: str, path_dir: Path) -> Path:
    arr = _square_scene()
    mask = arr > 0
    if kind == "cmyk":
        img = Image.fromarray(arr).convert("RGB").convert("CMYK")
        path = path_dir / "cmyk.jpg"
    elif kind == "i16":
        img = Image.fromarray(np.where(mask, 52000, 1000).astype(np.uint16))
        assert img.mode == "I;16"
        path = path_dir / "i16.png"
    elif kind == "rgba":
        # transparent parts are *white* in RGB: they must still come out black
        rgba = np.full(arr.shape + (4,), 255, np.uint8)
        rgba[..., 3] = np.where(mask, 255, 0)
        img = Image.fromarray(rgba)
        path = path_dir / "rgba.png"
    elif kind in ("palette", "palette_transparent"):
        img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), mask.astype(np.uint8).tobytes())  # 0/1 indices
        if kind == "palette":
            img.putpalette([0, 0, 0, 255, 255, 255])  # 0 black, 1 white
        else:
            img.putpalette([255, 255, 255, 250, 250, 250])  # 0 white but transparent, 1 near white
            img.info["transparency"] = 0
        path = path_dir / f"{kind}.png"
        img.save(path, **({"transparency": 0} if kind == "palette_transparent" else {}))
        return path
    elif kind == "1bit":
        img = Image.fromarray(arr).convert("1")
        path = path_dir / "onebit.bmp"
    elif kind == "float_tiff":
        img = Image.fromarray(np.where(mask, 7.5, -3.0).astype(np.float32))
        path = path_dir / "float.tif"
    elif kind == "rgb_jpeg":
        img = Image.fromarray(arr).convert("RGB")
        path = path_dir / "rgb.jpeg"
    else:
        raise AssertionError(kind)
    img.save(path)
    return path


FORMATS = {  # kind -> mode PIL reports when the file is opened
    "cmyk": "CMYK", "i16": "I;16", "rgba": "RGBA", "palette": "P", "palette_transparent": "P",
    "1bit": "1", "float_tiff": "F", "rgb_jpeg": "RGB",
}


@pytest.mark.parametrize("kind", list(FORMATS))
def test_preprocess_formats(kind, tmp_path):
    path = _save_format(kind, tmp_path)
    with Image.open(path) as img:
        assert img.mode == FORMATS[kind]
        if kind == "palette_transparent":
            assert img.info.get("transparency") == 0
        out, orig, mode = pp.preprocess(img, size=SIZE)
    assert out.shape == (SIZE, SIZE) and out.dtype == np.uint8
    assert orig == (64, 48) and mode == FORMATS[kind]
    centre, corners = out[12:20, 12:20], out[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert centre.min() > 200, (kind, centre.min())
    assert corners.max() < 40, (kind, corners)  # background (incl. transparent) is black


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_non_finite_pixels(bad, tmp_path):
    """One NaN/inf pixel must not blank the whole image; it becomes background."""
    arr = np.where(_square_scene() > 0, 7.5, -3.0).astype(np.float32)
    arr[0, 0] = bad
    path = tmp_path / "nan.tif"
    Image.fromarray(arr).save(path)
    with Image.open(path) as img:
        out, _, mode = pp.preprocess(img, size=SIZE)
    assert mode == "F"
    assert out[12:20, 12:20].min() > 200 and out[-1, -1] == 0 and out[0, 0] < 40
    all_nan = Image.fromarray(np.full((20, 20), np.nan, np.float32))
    with pytest.raises(ValueError, match="every pixel is NaN"):  # skipped and counted, not kept as black
        pp.preprocess(all_nan, size=SIZE)


def test_all_formats_load_from_a_folder(tmp_path, image_folder):
    root = image_folder(None, classes=("normal",), per_class=6)
    odd = root / "odd"
    odd.mkdir()
    for kind in FORMATS:
        _save_format(kind, odd)
    ds = _load(root)
    assert ds.skipped == []
    assert len(ds) == 6 + len(FORMATS)
    odd_modes = sorted(m for m, s in zip(ds.modes, ds.sources) if Path(s).parent.name == "odd")
    assert odd_modes == sorted(FORMATS.values())
    assert all(size == (64, 48) for size, s in zip(ds.original_sizes, ds.sources) if Path(s).parent.name == "odd")


def test_keep_aspect_pads_with_black():
    wide = Image.new("L", (200, 100), 255)
    stretched, _, _ = pp.preprocess(wide, size=SIZE, keep_aspect=False)
    assert (stretched == 255).all()
    padded, orig, _ = pp.preprocess(wide, size=SIZE, keep_aspect=True)
    assert orig == (200, 100)
    assert (padded[:8] == 0).all() and (padded[-8:] == 0).all()  # bars top and bottom
    assert (padded[8:24] == 255).all()
    tall, _, _ = pp.preprocess(Image.new("RGB", (50, 100), "white"), size=SIZE, keep_aspect=True)
    assert (tall[:, :8] == 0).all() and (tall[:, -8:] == 0).all() and (tall[:, 8:24] == 255).all()


def _tissue_image() -> Image.Image:
    """Black background with a disc of tissue whose grey values run from 50 to 150."""
    yy, xx = np.mgrid[0:128, 0:128]
    disc = (yy - 64) ** 2 + (xx - 64) ** 2 <= 50**2
    arr = np.where(disc, 50 + (xx - 14) * (100 / 100), 0).clip(0, 150)
    return Image.fromarray(np.where(disc, arr, 0).astype(np.uint8))


def test_normalize_methods():
    img = _tissue_image()
    bg = np.zeros((SIZE, SIZE), bool)
    bg[:3, :3] = bg[:3, -3:] = bg[-3:, :3] = bg[-3:, -3:] = True  # corners: far outside the disc
    centre = (slice(12, 20), slice(12, 20))

    none, _, _ = pp.preprocess(img, size=SIZE, normalize="none")
    assert none.min() == 0 and 130 <= none.max() <= 152  # untouched: tissue stays at 50..150

    minmax, _, _ = pp.preprocess(img, size=SIZE, normalize="minmax")
    assert minmax.min() == 0 and minmax.max() == 255

    pct, _, _ = pp.preprocess(img, size=SIZE, normalize="percentile")
    assert pct.min() == 0 and pct.max() == 255 and (pct[bg] == 0).all()
    assert pct[centre].mean() > none[centre].mean()  # contrast stretched

    z, _, _ = pp.preprocess(img, size=SIZE, normalize="zscore")
    assert (z[bg] == 0).all()  # background stays black
    tissue = z[centre]
    assert tissue.min() > 0 and z.max() < 255  # bounded to +-3 sd: never saturates here
    assert 90 < tissue.mean() < 165  # foreground centred on the middle grey

    for out in (none, minmax, pct, z):
        assert out.dtype == np.uint8 and out.shape == (SIZE, SIZE)


def test_percentile_ignores_hot_pixels():
    arr = np.zeros((64, 64), np.float32)
    arr[16:48, 16:48] = np.linspace(0.3, 0.5, 32)[None, :]
    arr[20, 20] = 1.0  # one hot pixel
    tissue = (slice(16, 48), slice(22, 48))
    mm = pp.normalize_intensity(arr, "minmax")
    pc = pp.normalize_intensity(arr, "percentile")
    assert mm[tissue].max() < 0.55
    assert pc[tissue].max() == pytest.approx(1.0) and pc.min() == 0.0
    with pytest.raises(ValueError):
        pp.normalize_intensity(arr, "sqrt")
    assert (pp.normalize_intensity(np.full((10, 10), 0.4, np.float32), "minmax") == 0).all()  # flat image


def test_preprocess_array_input():
    out, orig, mode = pp.preprocess(np.linspace(-1, 2, 40 * 30, dtype=np.float32).reshape(30, 40), size=16)
    assert out.shape == (16, 16) and orig == (40, 30) and mode == "array"
    assert out.min() == 0 and out.max() == 255  # clipped to [0, 1]


# ---------------------------------------------------------------- bad files are skipped


def _bad_folder(image_folder, tmp_path) -> tuple[Path, dict[str, str]]:
    """Two good classes of 8 images plus bad files in class 'glioma'; returns (root, {bad path: reason part})."""
    root = image_folder(None, classes=("glioma", "no_tumor"), per_class=8)
    bad_dir = root / "glioma"
    rng = np.random.default_rng(1)
    corrupt = bad_dir / "corrupt.jpg"
    corrupt.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    good_jpeg = write_image(tmp_path / "real.jpg", fake_slice(rng, 80, 80))
    data = good_jpeg.read_bytes()
    truncated = bad_dir / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    empty = bad_dir / "empty.png"
    empty.write_bytes(b"")
    tiny = write_image(bad_dir / "tiny.png", np.full((3, 3), 128, np.uint8))
    huge = write_image(bad_dir / "huge.png", fake_slice(rng, 300, 300))
    (bad_dir / "README.txt").write_text("not an image")
    (bad_dir / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "notes.txt").write_text("top-level notes")
    (bad_dir / ".hidden.png").write_bytes(b"junk")  # hidden files are ignored even with an image suffix
    return root, {
        str(corrupt): "", str(truncated): "", str(empty): "",
        str(tiny): "too small", str(huge): "DecompressionBomb",
    }


def test_bad_files_are_skipped_and_counted(image_folder, tmp_path, monkeypatch):
    # 300x300 = 90,000 px > 2 * 20,000 trips the decompression-bomb guard; the good 40..90 px images do not
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 20_000)
    root, bad = _bad_folder(image_folder, tmp_path)
    ds = _load(root)
    assert len(ds) == 16
    skipped = dict(ds.skipped)
    assert set(skipped) == set(bad)
    for src, part in bad.items():
        assert skipped[src] and part in skipped[src], (src, skipped[src])
        assert len(skipped[src]) <= 200 and "\n" not in skipped[src]
    assert not any(s.endswith((".txt", ".DS_Store", ".hidden.png")) for s in ds.sources + list(skipped))

    cached = _load(root)  # the skip list survives the cache
    assert dict(cached.skipped) == skipped and cached.sources == ds.sources


def test_huge_image_is_not_skipped_with_default_guard(image_folder, tmp_path):
    root, bad = _bad_folder(image_folder, tmp_path)
    ds = _load(root)
    assert len(ds) == 17  # 300x300 is fine normally
    assert len(ds.skipped) == 4


# ---------------------------------------------------------------- errors


def test_error_empty_folder(tmp_path):
    with pytest.raises(BrainaeError) as e:
        _load(tmp_path)
    _one_line_error(e, str(tmp_path), "class sub-folders")


def test_error_images_without_class_folders(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", fake_slice(np.random.default_rng(i), 50, 50))
    with pytest.raises(BrainaeError) as e:
        _load(tmp_path)
    _one_line_error(e, str(tmp_path), "class sub-folders")


def test_error_class_folders_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "README.txt").write_text("x")
    with pytest.raises(BrainaeError) as e:
        _load(tmp_path)
    _one_line_error(e, str(tmp_path))


def test_error_every_image_unreadable(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            (tmp_path / cls / f"{i}.jpg").write_bytes(b"not a jpeg at all" * (i + 1))
    with pytest.raises(BrainaeError) as e:
        _load(tmp_path)
    msg = _one_line_error(e, str(tmp_path), "no readable images")
    assert "0.jpg" in msg  # names the first bad file


def test_error_missing_folder(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(BrainaeError) as e:
        _load(missing)
    _one_line_error(e, str(missing))


def test_error_too_few_for_validation(tmp_path, image_folder):
    root = image_folder(None, classes=("a",), per_class=2)  # 2 images: no val can be carved
    with pytest.raises(BrainaeError) as e:
        _load(root)
    _one_line_error(e, str(root))


# ---------------------------------------------------------------- cache


def _npz(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.npz"))


def _counting_preprocess(monkeypatch) -> list:
    calls = []
    real = pp.preprocess

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(pp, "preprocess", counted)
    return calls


def test_cache_hit_does_not_decode(image_folder, cache_env, monkeypatch):
    root = image_folder(None, per_class=6)
    first = _load(root)
    assert len(_npz(cache_env)) == 1

    def boom(*a, **kw):
        raise AssertionError("decoded although cached")

    def no_open(*a, **kw):
        raise AssertionError("opened a file although cached")

    monkeypatch.setattr(pp, "preprocess", boom)
    monkeypatch.setattr(PIL.Image, "open", no_open)
    second = _load(root)
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    np.testing.assert_array_equal(second.splits, first.splits)
    assert second.sources == first.sources and second.classes == first.classes
    assert second.original_sizes == first.original_sizes and second.modes == first.modes


def test_cache_key_follows_settings(image_folder, cache_env, monkeypatch):
    root = image_folder(None, per_class=4)
    calls = _counting_preprocess(monkeypatch)
    _load(root)
    assert len(calls) == 12 and len(_npz(cache_env)) == 1
    big = _load(root, image_size=48)
    assert big.images.shape[1:] == (48, 48) and len(calls) == 24 and len(_npz(cache_env)) == 2
    _load(root, normalize="zscore")
    assert len(calls) == 36 and len(_npz(cache_env)) == 3
    _load(root, keep_aspect=True)
    assert len(calls) == 48 and len(_npz(cache_env)) == 4
    _load(root, seed=3, limit=5)  # split seed and limit act after the cache
    _load(root, image_size=48)
    assert len(calls) == 48 and len(_npz(cache_env)) == 4


def test_cache_invalidated_by_touch_and_new_file(image_folder, cache_env, monkeypatch):
    root = image_folder(None, per_class=4)
    calls = _counting_preprocess(monkeypatch)
    _load(root)
    assert len(calls) == 12
    some = sorted((root / "glioma").iterdir())[0]
    st = some.stat()
    os.utime(some, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    _load(root)
    assert len(calls) == 24  # re-decoded
    write_image(root / "glioma" / "extra.png", fake_slice(np.random.default_rng(9), 60, 60))
    ds = _load(root)
    assert len(calls) == 37 and len(ds) == 13
    assert str(root / "glioma" / "extra.png") in ds.sources
    some.unlink()
    assert len(_load(root)) == 12


def test_damaged_cache_is_rebuilt(image_folder, cache_env, monkeypatch, capsys):
    root = image_folder(None, per_class=4)
    first = _load(root)
    (path,) = _npz(cache_env)
    good_size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: good_size // 2])
    calls = _counting_preprocess(monkeypatch)
    capsys.readouterr()
    second = _load(root)
    assert capsys.readouterr() == ("", "")  # silently
    assert len(calls) == 12
    np.testing.assert_array_equal(second.images, first.images)
    assert _npz(cache_env) == [path] and path.stat().st_size == good_size
    assert np.load(path.with_name(path.name.replace(".npz", ".images.npy"))).shape == (12, SIZE, SIZE)
    path.write_bytes(b"garbage")  # not even a zip
    np.testing.assert_array_equal(_load(root).images, first.images)
    assert len(calls) == 24


def test_no_temporary_files_left(image_folder, cache_env):
    root = image_folder(None, per_class=4)
    _load(root)
    _load(root, image_size=24)
    names = os.listdir(cache_env)
    assert len(names) == 4 and not [n for n in names if n.endswith(".tmp") or n.startswith(".")]  # index + images, twice


def test_unwritable_cache_still_loads(image_folder, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("BRAINAE_CACHE", str(blocker / "cache"))  # cannot be created: parent is a file
    ds = _load(image_folder(None, per_class=4))
    assert len(ds) == 12


# ---------------------------------------------------------------- limit


def test_limit_keeps_about_n_training_images(image_folder):
    root = image_folder(None, per_class=20)
    full = _load(root)
    full_counts = Counter(full.splits.tolist())
    assert full_counts == {"train": 42, "val": 9, "test": 9}
    small = _load(root, limit=12)
    counts = Counter(small.splits.tolist())
    assert abs(counts["train"] - 12) <= 3  # at most one off per class from rounding
    ratio = 12 / 42
    for s in ("val", "test"):
        assert 3 <= counts[s] < full_counts[s]
        assert abs(counts[s] - full_counts[s] * ratio) <= 3
        assert set(small.split(s).labels.tolist()) == {0, 1, 2}
    assert set(small.sources) <= set(full.sources)
    assert _split_of(small).items() <= _split_of(full).items()  # limit never moves images between splits
    assert _load(root, limit=12).sources == small.sources  # seeded
    assert len(_load(root, limit=1000)) == 60


# ---------------------------------------------------------------- splits.py


def test_stratified_split_fractions():
    labels = np.array([0] * 20 + [1] * 10 + [2] * 3 + [3] * 2)
    s = stratified_split(labels, {"val": 0.2, "test": 0.1}, seed=0)
    assert s.dtype.kind == "U"
    got = {c: Counter(s[labels == c].tolist()) for c in range(4)}
    assert got[0] == {"train": 14, "val": 4, "test": 2}
    assert got[1] == {"train": 7, "val": 2, "test": 1}
    assert got[2] == {"train": 1, "val": 1, "test": 1}  # 3+ images: at least one per carved split
    assert got[3] == {"train": 2}  # too few to carve
    np.testing.assert_array_equal(s, stratified_split(labels, {"val": 0.2, "test": 0.1}, seed=0))
    assert not np.array_equal(s, stratified_split(labels, {"val": 0.2, "test": 0.1}, seed=1))
    assert (stratified_split(labels, {"val": 0.0}, seed=0) == "train").all()


def test_assign_splits_carves_what_is_missing():
    labels = np.array([0, 1] * 50)
    none = assign_splits(labels, [None] * 100, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert Counter(none.tolist()) == {"train": 70, "val": 20, "test": 10}

    # train/test given (60/40): val carved from train only, as 12% of the whole = 20% of train
    given = ["train"] * 60 + ["test"] * 40
    s = assign_splits(labels, given, val_fraction=0.12, test_fraction=0.3, seed=0)
    assert (s[60:] == "test").all()
    for c in (0, 1):
        assert Counter(s[:60][labels[:60] == c].tolist()) == {"train": 24, "val": 6}

    full = ["train"] * 50 + ["val"] * 25 + ["test"] * 25
    np.testing.assert_array_equal(assign_splits(labels, full, 0.2, 0.2, seed=0), np.array(full))

    # only train/val given: test carved from train
    tv = ["train"] * 80 + ["val"] * 20
    s = assign_splits(labels, tv, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert (s[80:] == "val").all() and Counter(s[:80].tolist()) == {"train": 70, "test": 10}


def test_limit_per_split_unit():
    splits = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    labels = np.array([0, 1] * 30)
    keep = limit_per_split(splits, labels, 10, seed=0)
    c = Counter(splits[keep].tolist())
    assert c == {"train": 10, "val": 2, "test": 2}
    assert len(set(keep.tolist())) == len(keep) and (np.diff(keep) > 0).all()
    np.testing.assert_array_equal(limit_per_split(splits, labels, 0, seed=0), np.arange(60))
    np.testing.assert_array_equal(limit_per_split(splits, labels, 100, seed=0), np.arange(60))
