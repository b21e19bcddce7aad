"""Duplicate finding, leak report and dedupe on a hand-built ImageSet with planted copies."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainae.data.duplicates import find_duplicates, phash
from brainae.data.inspect import dedupe, format_inspection, inspect_imageset
from brainae.data.types import ImageSet
from brainae.errors import BrainaeError

CLASSES = ["glioma", "meningioma", "none"]
REAL_DATA = Path(__file__).resolve().parents[2] / "shared/data/brain-tumor-mri"

# Planted: exact [0, 3] (train-train), [1, 6] (train-test), [8, 10] (test-val, mixed class);
# near [4, 9] (val + train brightness +2), [11, 12] (train + test with noise).
EXACT = [[0, 3], [1, 6], [8, 10]]
NEAR = [[4, 9], [11, 12]]
SPLITS = ["train", "train", "train", "train", "val", "val", "test", "test", "test", "train", "val", "train", "test"]
LABELS = [0, 1, 2, 0, 1, 2, 1, 0, 2, 1, 0, 2, 2]


def _images() -> np.ndarray:
    """Smooth random 32x32 images (blocks of 4 px, like a downsampled scan) with the planted copies."""
    rng = np.random.default_rng(0)
    imgs = [np.kron(rng.integers(20, 200, (8, 8)), np.ones((4, 4))).astype(np.uint8) for _ in range(13)]
    imgs[3], imgs[6], imgs[10] = imgs[0], imgs[1], imgs[8]
    imgs[9] = imgs[4] + 2  # brighter: other bytes, same structure
    imgs[12] = np.clip(imgs[11] + rng.integers(-2, 3, imgs[11].shape), 0, 255).astype(np.uint8)
    return np.stack(imgs)


def _imageset(sources: list[str], images: np.ndarray | None = None) -> ImageSet:
    images = _images() if images is None else images
    n = len(images)
    return ImageSet(
        images=images, labels=np.array(LABELS[:n]), classes=CLASSES, splits=np.array(SPLITS[:n]),
        sources=sources, original_sizes=[(32, 32)] * (n - 1) + [(40, 30)], modes=["L"] * (n - 1) + ["RGB"],
    )


@pytest.fixture
def file_ds(tmp_path: Path) -> ImageSet:
    """The planted set as PNG files; exact copies are byte copies of the file under another name."""
    images = _images()
    paths = []
    for i, img in enumerate(images):
        path = tmp_path / CLASSES[LABELS[i]] / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        original = next((g[0] for g in EXACT if i in g[1:]), None)
        if original is None:
            Image.fromarray(img).save(path)
        else:
            shutil.copyfile(paths[original], path)
        paths.append(str(path))
    return _imageset(paths, images)


@pytest.fixture
def memory_ds() -> ImageSet:
    """The planted set with sources that are not files (hub rows): exact = same pixels."""
    return _imageset([f"hf:owner/set/train/{i}" for i in range(13)])


@pytest.mark.parametrize("which", ["file_ds", "memory_ds"])
def test_find_duplicates_finds_planted_groups(which, request):
    ds = request.getfixturevalue(which)
    assert find_duplicates(ds) == {"exact": EXACT, "near": NEAR}


def test_same_pixels_in_other_bytes_is_near_not_exact(tmp_path):
    img = _images()[:2]
    Image.fromarray(img[0]).save(tmp_path / "a.png", compress_level=1)
    Image.fromarray(img[0]).save(tmp_path / "b.png", compress_level=9)  # same pixels, other file bytes
    Image.fromarray(img[1]).save(tmp_path / "c.png")
    ds = _imageset([str(tmp_path / n) for n in ("a.png", "b.png", "c.png")], img[[0, 0, 1]])
    assert find_duplicates(ds) == {"exact": [], "near": [[0, 1]]}


def test_a_shared_source_path_falls_back_to_pixels(tmp_path):
    path = tmp_path / "stack.tif"
    path.write_bytes(b"frames")
    ds = _imageset([str(path)] * 3, _images()[[0, 1, 0]])  # three frames of one file
    assert find_duplicates(ds)["exact"] == [[0, 2]]


def test_phash_separates_distinct_images_and_joins_copies():
    images = _images()
    h = phash(images[[0, 1, 2, 4, 5, 7, 8, 11]])
    dist = np.bitwise_count(h[:, None] ^ h[None, :])
    assert dist[np.triu_indices(len(h), 1)].min() > 10
    brighter, noisy = phash(images[[4, 9, 11, 12]]).reshape(2, 2)
    assert np.bitwise_count(brighter[0] ^ brighter[1]) == 0  # brightness moves only the DC term
    assert np.bitwise_count(noisy[0] ^ noisy[1]) <= 4


def test_negative_threshold_is_a_user_error(memory_ds):
    with pytest.raises(BrainaeError, match="near_threshold"):
        find_duplicates(memory_ds, near_threshold=-1)


def test_inspect_counts_groups_and_leaks(file_ds):
    report = inspect_imageset(file_ds)
    assert report["n"] == 13
    assert report["counts"] == {
        "train": {"glioma": 2, "meningioma": 2, "none": 2},
        "val": {"glioma": 1, "meningioma": 1, "none": 1},
        "test": {"glioma": 1, "meningioma": 1, "none": 2},
    }
    exact, near = report["duplicates"]["exact"], report["duplicates"]["near"]
    assert (exact["groups"], exact["redundant"], exact["within_split"], exact["label_conflicts"]) == (3, 3, 1, 1)
    assert exact["across_splits"] == {"train-val": 0, "train-test": 1, "val-test": 1}
    assert (near["groups"], near["redundant"], near["within_split"], near["label_conflicts"]) == (2, 2, 0, 0)
    assert near["across_splits"] == {"train-val": 1, "train-test": 1, "val-test": 0}
    assert report["leaks"] == {
        "test_in_train_or_val": {"exact": 2, "near": 1},  # 6 and 8 exact, 12 near
        "val_in_train": {"exact": 0, "near": 1},  # 4 near 9
    }
    # Examples: the mixed-class group first, members named by source.
    assert [m["index"] for m in exact["examples"][0]] == [8, 10]
    assert exact["examples"][0][0]["source"].endswith("none/img8.png")
    assert report["sizes"]["distinct"] == 2 and report["sizes"]["non_square"] == 1
    assert report["modes"] == {"L": 12, "RGB": 1}


def test_format_inspection_shows_key_numbers(file_ds):
    text = format_inspection(inspect_imageset(file_ds))
    assert "Images: 13" in text
    assert "test images with a duplicate in train/val: 2 exact, 1 near" in text
    assert "val images with a duplicate in train:       0 exact, 1 near" in text
    exact_row = next(line for line in text.splitlines() if line.strip().startswith("exact"))
    assert exact_row.split()[1:] == ["3", "3", "1", "0", "1", "1", "1"]
    assert "none/img8.png" in text and "the default loading groups copies" in text


def test_dedupe_exact_drops_planted_leaks_and_keeps_test(memory_ds):
    clean, removed = dedupe(memory_ds)
    assert removed == {
        "removed": 3, "kept": 10,
        "train": {"dup_of_test": 1, "dup_of_val": 0, "within_split": 1},  # 1 (= test 6), 3 (= train 0)
        "val": {"dup_of_test": 1, "within_split": 0},  # 10 (= test 8)
    }
    assert clean.sources == [memory_ds.sources[i] for i in range(13) if i not in (1, 3, 10)]
    assert np.sum(clean.splits == "test") == 4
    assert find_duplicates(clean)["exact"] == []


def test_dedupe_near_also_drops_near_leaks(memory_ds):
    clean, removed = dedupe(memory_ds, near=True)
    assert removed["train"] == {"dup_of_test": 2, "dup_of_val": 1, "within_split": 1}  # + 11 (~ test 12), 9 (~ val 4)
    assert removed["removed"] == 5
    assert inspect_imageset(clean)["leaks"] == {
        "test_in_train_or_val": {"exact": 0, "near": 0}, "val_in_train": {"exact": 0, "near": 0},
    }


def test_dedupe_follows_near_copies_of_exact_copies():
    # 0 (train) = 1 (test) exactly, 2 (val) is a brighter 0: near groups hold only 0, yet 2 leaks into test.
    img = _images()[0]
    ds = ImageSet(images=np.stack([img, img, img + 2]), labels=np.zeros(3, dtype=np.int64), classes=["a"],
                  splits=np.array(["train", "test", "val"]), sources=["m0", "m1", "m2"])
    assert find_duplicates(ds) == {"exact": [[0, 1]], "near": [[0, 2]]}
    assert inspect_imageset(ds)["leaks"] == {
        "test_in_train_or_val": {"exact": 1, "near": 0}, "val_in_train": {"exact": 0, "near": 1},
    }
    clean, removed = dedupe(ds, near=True)
    assert clean.sources == ["m1"] and removed["val"]["dup_of_test"] == 1


@pytest.mark.slow
def test_real_data_has_exact_duplicates():
    train = REAL_DATA / "Training"
    if not train.is_dir():
        pytest.skip(f"real data not found at {train} (the study's brain-tumor-mri copy)")
    paths = sorted(train.glob("*/*.jpg"))[:400]
    images = []
    for p in paths:
        with Image.open(p) as im:
            im.draft("L", (64, 64))  # JPEG: decode at reduced scale, cheap
            images.append(np.asarray(im.convert("L").resize((64, 64))))
    classes = sorted({p.parent.name for p in paths})
    ds = ImageSet(images=np.stack(images), labels=np.array([classes.index(p.parent.name) for p in paths]),
                  classes=classes, splits=np.array(["train"] * len(paths)), sources=[str(p) for p in paths])
    exact = find_duplicates(ds)["exact"]
    assert len(exact) > 0
    for g in exact[:5]:
        assert len({Path(ds.sources[i]).read_bytes() for i in g}) == 1
