"""A linear baseline for the held-out comparison: principal components of the training images.

An autoencoder with a code of k numbers is worth its training only where it reconstructs better than
the best linear code of the same size: projecting each image on the top k principal directions of the
training images (PCA). The study's report puts that row under the networks' rows, scored by the same
functions on the same test split. The basis is fitted on the training split alone, so the test images
are as unseen as they are for the networks.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import eigh

from brainae.data.types import ImageSet, with_channels
from brainae.evaluation.evaluate import metrics_table, reconstruction_metrics

NULL_EIGENVALUE = 1e-12  # eigenvalues below this fraction of the largest are rounding: no direction
FEATURE_BLOCK = 4096  # pixels per float64 block of the products
MAX_FIT_IMAGES = 4000  # the basis is fitted on at most this many training images (a seeded sample): see pca_basis


def _flat(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(with_channels(images).reshape(len(images), -1)).float().div_(255.0)


def pca_basis(images: np.ndarray, components: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), basis (D, k)) of uint8 images (N, H, W) or (N, C, H, W): their top k principal directions.

    k is at most N - 1 (the centred images span no more), fewer where images repeat. The directions
    come from the eigenvectors of the images' Gram matrix (N x N), cheaper than a singular value
    decomposition of the (N, D) matrix while N is at most D; beyond MAX_FIT_IMAGES images a seeded
    sample is used, plenty for the few hundred directions of a code.

    Example:
        >>> mean, basis = pca_basis(np.random.default_rng(0).integers(0, 255, (20, 8, 8), dtype=np.uint8), 5)
        >>> tuple(basis.shape)
        (64, 5)
    """
    if len(images) > MAX_FIT_IMAGES:
        images = images[np.sort(np.random.default_rng(seed).choice(len(images), MAX_FIT_IMAGES, replace=False))]
    x = _flat(images)
    n, d = x.shape
    mean = (x.sum(0, dtype=torch.float64) / n).float()
    x -= mean
    # Products accumulate in float64, a block of pixels at a time (a float64 copy of 4,000 images of
    # 256x256 would take 2 GB). With float32 sums the small eigenvalues were rounding noise, the
    # directions divided by their roots stopped being unit length, and a full-rank basis scored 15 dB.
    blocks = [slice(i, min(i + FEATURE_BLOCK, d)) for i in range(0, d, FEATURE_BLOCK)]
    gram = sum(x[:, b].double() @ x[:, b].double().T for b in blocks)
    k = max(1, min(components, n - 1, d))
    # only the top k eigenpairs (LAPACK's subset driver: about half the time of all of them at N = 4,000)
    values, vectors = eigh(gram.numpy(), subset_by_index=[n - k, n - 1])
    values, vectors = torch.from_numpy(values[::-1].copy()), torch.from_numpy(vectors[:, ::-1].copy())
    k = max(1, int((values > values[0] * NULL_EIGENVALUE).sum()))  # the directions the images do span
    scale = vectors[:, :k] / values[:k].sqrt()
    # the right singular vectors: unit length, orthogonal
    basis = torch.cat([(x[:, b].double().T @ scale).float() for b in blocks])
    return mean, basis


def fitted_on(n_train: int) -> str:
    """What the basis saw, for the report: "1200 training images", or "4000 of 4200 training images (a seeded sample)"."""
    if n_train > MAX_FIT_IMAGES:
        return f"{MAX_FIT_IMAGES} of {n_train} training images (a seeded sample)"
    return f"{n_train} training images"


def pca_reconstruct(images: np.ndarray, mean: torch.Tensor, basis: torch.Tensor) -> np.ndarray:
    """Reconstructions (float32 in [0, 1], shaped like the input, as a network's) of uint8 images through the basis."""
    x = _flat(images)
    recon = ((x - mean) @ basis) @ basis.T + mean
    return recon.clamp_(0, 1).reshape(images.shape).numpy()


def pca_baseline(train: ImageSet, test: ImageSet, components: int, seed: int = 0, batch_size: int = 256,
                 split: str = "test") -> dict:
    """The PCA row of the held-out comparison: ``metrics_table`` of the test reconstructions through the
    top ``components`` principal directions of the training images, with the facts a model row has.
    split: the name of the split ``test`` holds (``brainae evaluate --split val`` scores the validation one).

    Example:
        >>> row = pca_baseline(full.split("train"), full.split("test"), components=512)  # doctest: +SKIP
        >>> row["psnr"]["mean"], row["latent_dim"]  # doctest: +SKIP
    """
    mean, basis = pca_basis(train.images, components, seed)
    values = reconstruction_metrics(test.images, lambda part: pca_reconstruct(part, mean, basis), batch_size)
    return {"model": "pca", "split": split, "latent_dim": int(basis.shape[1]), "parameters": int(basis.numel() + mean.numel()),
            "bypasses_bottleneck": False, "fitted_on": fitted_on(len(train)),
            **metrics_table(values, test, seed)}
