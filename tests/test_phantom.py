"""The embedded phantom: shapes, determinism, prefix stability, tumour share, masks, bad arguments."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import ndimage

from brainae.data import phantom
from brainae.data.phantom import PHANTOM_CLASSES, PhantomSlices, generate_phantoms
from brainae.errors import BrainaeError


def test_classes():
    assert PHANTOM_CLASSES == ["no_tumor", "tumor"]


@pytest.mark.parametrize("size", [64, 100, 128])
def test_shapes_dtypes_and_range(size):
    data = generate_phantoms(6, size=size, seed=3)
    assert isinstance(data, PhantomSlices)
    assert data.images.shape == (6, size, size) and data.images.dtype == np.float32
    assert data.masks.shape == (6, size, size) and data.masks.dtype == bool
    assert data.labels.shape == (6,) and data.labels.dtype == np.int64
    assert np.isfinite(data.images).all()
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert set(data.labels.tolist()) <= {0, 1}
    # Black background around the head, a bright skull and real contrast inside.
    corners = data.images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 0).all()
    assert (data.images.max(axis=(1, 2)) > 0.6).all()
    assert (data.images.std(axis=(1, 2)) > 0.1).all()


@pytest.mark.parametrize("size", [16, 32, 47, 512])
def test_unusual_sizes_work(size):
    data = generate_phantoms(2, size=size, seed=1, tumor_fraction=1.0)
    assert data.images.shape == (2, size, size)
    assert data.masks.any(axis=(1, 2)).all()


def test_same_seed_gives_identical_output():
    a, b = generate_phantoms(8, size=64, seed=7), generate_phantoms(8, size=64, seed=7)
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.labels, b.labels)


def test_different_seed_differs():
    a, b = generate_phantoms(8, size=64, seed=7), generate_phantoms(8, size=64, seed=8)
    assert not np.array_equal(a.images, b.images)
    assert all(not np.array_equal(x, y) for x, y in zip(a.images, b.images))


def test_smaller_n_is_a_prefix():
    short, long = generate_phantoms(5, size=64, seed=2), generate_phantoms(20, size=64, seed=2)
    assert np.array_equal(short.images, long.images[:5])
    assert np.array_equal(short.masks, long.masks[:5])
    assert np.array_equal(short.labels, long.labels[:5])


def test_anatomy_does_not_depend_on_tumor_fraction():
    few, many = (generate_phantoms(30, size=64, seed=4, tumor_fraction=f) for f in (0.3, 0.7))
    assert (few.labels <= many.labels).all()  # a tumour at 0.3 is also one at 0.7
    healthy_in_both = (few.labels == 0) & (many.labels == 0)
    assert healthy_in_both.any()
    assert np.array_equal(few.images[healthy_in_both], many.images[healthy_in_both])


def test_tumour_share_matches_fraction():
    n, fraction = 400, 0.3
    count = int(generate_phantoms(n, size=32, seed=0, tumor_fraction=fraction).labels.sum())
    tolerance = 4 * np.sqrt(n * fraction * (1 - fraction))  # 4 binomial standard deviations
    assert abs(count - n * fraction) < tolerance


def test_fraction_zero_and_one():
    none = generate_phantoms(20, size=64, seed=5, tumor_fraction=0.0)
    assert (none.labels == 0).all() and not none.masks.any()
    every = generate_phantoms(20, size=64, seed=5, tumor_fraction=1.0)
    assert (every.labels == 1).all() and every.masks.any(axis=(1, 2)).all()


def test_masks_exactly_where_labelled_and_inside_the_head():
    data = generate_phantoms(60, size=96, seed=6, tumor_fraction=0.5)
    assert np.array_equal(data.masks.any(axis=(1, 2)), data.labels == 1)
    assert 0 < data.labels.sum() < 60
    for image, mask in zip(data.images, data.masks):
        head = ndimage.binary_fill_holes(image > 0)
        # A few pixels in from the outer edge: inside the skull, not on it.
        assert not (mask & ~ndimage.binary_erosion(head, iterations=3)).any()


def test_tumour_stands_out_from_its_surroundings():
    data = generate_phantoms(40, size=128, seed=9, tumor_fraction=1.0)
    gaps = []
    for image, mask in zip(data.images, data.masks):
        ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask, iterations=1)
        gaps.append(abs(image[mask].mean() - image[ring].mean()))
    assert np.mean(gaps) > 0.2
    assert np.min(gaps) > 0.03


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n": 0}, "n"),
        ({"n": -3}, "n"),
        ({"n": 2.5}, "n"),
        ({"n": 4, "size": 15}, "size"),
        ({"n": 4, "size": 64.0}, "size"),
        ({"n": 4, "tumor_fraction": -0.1}, "tumor_fraction"),
        ({"n": 4, "tumor_fraction": 1.5}, "tumor_fraction"),
        ({"n": 4, "tumor_fraction": "half"}, "tumor_fraction"),
        ({"n": 4, "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(BrainaeError, match=rf"^{name} ") as info:
        generate_phantoms(**kwargs)
    assert "\n" not in str(info.value)


def test_docstring_example():
    assert doctest.testmod(phantom).failed == 0
