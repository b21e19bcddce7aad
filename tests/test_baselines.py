"""The PCA row of the held-out comparison: the best linear code of the networks' size, fitted on the
training split alone and scored by the same functions as the networks."""
import numpy as np
import pytest
import torch

from brainae.data.types import ImageSet
from brainae.evaluation import baselines
from brainae.evaluation.baselines import pca_baseline, pca_basis, pca_reconstruct

SIZE = 16


def patterns(n: int) -> list[np.ndarray]:
    """n disjoint 0/1 masks of SIZE x SIZE: squares in different places."""
    out = []
    for i in range(n):
        m = np.zeros((SIZE, SIZE), np.uint8)
        r, c = divmod(i, 4)
        m[r * 4:r * 4 + 4, c * 4:c * 4 + 4] = 1
        out.append(m)
    return out


def imageset(images: np.ndarray) -> ImageSet:
    n = len(images)
    return ImageSet(images=images, labels=np.arange(n) % 2, classes=["a", "b"], splits=np.array(["test"] * n),
                    sources=[f"img{i}" for i in range(n)])


def mix(rng, pats: list[np.ndarray], n: int) -> np.ndarray:
    """uint8 images that are integer mixtures of ``pats`` on a constant background: exact points of a
    len(pats)-dimensional affine space."""
    coef = rng.integers(0, 60, (n, len(pats)))
    return (20 + np.einsum("nk,khw->nhw", coef, np.stack(pats))).astype(np.uint8)


def test_images_in_the_training_span_are_reconstructed_exactly_and_others_are_not():
    rng = np.random.default_rng(0)
    pats = patterns(4)
    train = mix(rng, pats[:3], 50)
    inside = imageset(mix(rng, pats[:3], 10))
    row = pca_baseline(imageset(train), inside, components=3)
    assert row["latent_dim"] == 3 and row["psnr"]["mean"] > 60 and row["ssim"]["mean"] > 0.999
    # a pattern the training images never show cannot be coded: the basis saw the training split only
    outside = imageset(mix(rng, pats[1:], 10))
    missed = pca_baseline(imageset(train), outside, components=3)["psnr"]["mean"]
    assert missed < 45 and missed < row["psnr"]["mean"] - 15


@pytest.mark.parametrize("block", [4096, 48])  # one block of pixels, or several (and a ragged last one)
def test_the_basis_is_orthonormal_and_matches_numpys_svd(monkeypatch, block):
    monkeypatch.setattr(baselines, "FEATURE_BLOCK", block)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, SIZE, SIZE), dtype=np.uint8)
    mean, basis = pca_basis(images, 10)
    assert tuple(basis.shape) == (SIZE * SIZE, 10)
    assert torch.allclose(basis.T @ basis, torch.eye(10), atol=1e-4)
    x = images.reshape(40, -1).astype(np.float64) / 255
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    # the same subspace: projections on the two bases agree
    ours = pca_reconstruct(images[:5], mean, basis).reshape(5, -1)
    ref = np.clip((x[:5] - x.mean(0)) @ vt[:10].T @ vt[:10] + x.mean(0), 0, 1)
    assert np.abs(ours - ref).max() < 1e-4


def test_components_stop_at_what_the_training_images_span(monkeypatch):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (12, SIZE, SIZE), dtype=np.uint8)
    assert tuple(pca_basis(images, 512)[1].shape) == (SIZE * SIZE, 11)  # 12 centred images span 11 directions
    # copies add no direction: 6 distinct images, each twice, span 5 (a rounding-level eigenvalue is no direction)
    assert tuple(pca_basis(np.concatenate([images[:6]] * 2), 512)[1].shape) == (SIZE * SIZE, 5)
    monkeypatch.setattr(baselines, "MAX_FIT_IMAGES", 8)
    row = pca_baseline(imageset(images), imageset(images[:4]), components=512)
    assert row["latent_dim"] == 7 and row["fitted_on"] == "8 of 12 training images (a seeded sample)"


def test_the_row_has_what_a_model_row_has():
    rng = np.random.default_rng(3)
    train, test = rng.integers(0, 256, (30, SIZE, SIZE), dtype=np.uint8), rng.integers(0, 256, (9, SIZE, SIZE), dtype=np.uint8)
    row = pca_baseline(imageset(train), imageset(test), components=4)
    assert row["n"] == 9 and row["split"] == "test" and set(row["per_class"]) == {"a", "b"}
    assert row["parameters"] == 5 * SIZE * SIZE and not row["bypasses_bottleneck"]
    for m in ("mse", "psnr", "ssim"):
        lo, hi = row[m]["ci95"]
        assert lo <= row[m]["mean"] <= hi
    assert row["mse"]["mean"] == pytest.approx(float(np.mean(
        ((pca_reconstruct(test, *pca_basis(train, 4)) - test / 255.0) ** 2).mean((1, 2)))), rel=1e-5)
