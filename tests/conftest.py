"""Shared fixtures: an isolated preprocessing cache and a factory for small image-folder datasets."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
from PIL import Image

# Split folder names per layout, and how many images each split folder gets per class by default
# (``per_class`` for the training folder, half of it, at least 2, for the others).
LAYOUTS = {
    None: [None],
    "Training/Testing": ["Training", "Testing"],
    "train/val/test": ["train", "val", "test"],
}


@pytest.fixture(autouse=True)
def cache_env(tmp_path_factory, monkeypatch) -> Path:
    """Point BRAINAE_CACHE at a fresh folder for every test, so nothing touches ~/.cache."""
    path = tmp_path_factory.mktemp("brainae-cache")
    monkeypatch.setenv("BRAINAE_CACHE", str(path))
    return path


def fake_slice(rng: np.random.Generator, width: int, height: int, class_index: int = 0) -> np.ndarray:
    """A uint8 (height, width) image that looks roughly like an MRI slice: a bright noisy ellipse
    ("head") on a black background, with a class-dependent blob so classes differ."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = height / 2 + rng.uniform(-2, 2), width / 2 + rng.uniform(-2, 2)
    ry, rx = height * rng.uniform(0.35, 0.45), width * rng.uniform(0.3, 0.42)
    head = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img = np.zeros((height, width), np.float32)
    img[head] = 90 + 40 * np.cos(xx[head] / 5.0) + rng.normal(0, 12, int(head.sum()))
    if class_index > 0:  # a "tumour": a bright disc whose size grows with the class index
        by, bx = cy + rng.uniform(-ry / 3, ry / 3), cx + rng.uniform(-rx / 3, rx / 3)
        r = min(width, height) * 0.06 * class_index
        img[(yy - by) ** 2 + (xx - bx) ** 2 <= r**2] = 230
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image(path: Path, arr: np.ndarray, mode: str = "L") -> Path:
    """Save a uint8 (H, W) array as ``mode`` ("L" or "RGB"); the suffix picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))
    if mode == "RGB":
        img = Image.merge("RGB", (img, img.point(lambda v: v * 0.9), img.point(lambda v: v * 0.8)))
    elif mode != "L":
        img = img.convert(mode)
    img.save(path, **({"quality": 90} if path.suffix.lower() in (".jpg", ".jpeg") else {}))
    return path


@pytest.fixture
def image_folder(tmp_path) -> Callable[..., Path]:
    """Factory: ``image_folder(layout=None, classes=("glioma", "meningioma", "no_tumor"), per_class=8,
    seed=0, name="data", split_counts=None) -> root``.

    layout: None (``root/<class>/``), "Training/Testing" or "train/val/test" (``root/<split>/<class>/``).
    per_class: images per class in the (only / training) folder; other split folders get
        ``max(2, per_class // 2)`` unless ``split_counts`` maps split folder name -> count.
    Images alternate PNG/JPEG and grayscale/RGB, sizes 40..90 px (non-square), named
    ``<class>_<split>_<i>.<ext>``; content is deterministic for ``seed``.
    """
    def make(layout: Optional[str] = None, classes=("glioma", "meningioma", "no_tumor"), per_class: int = 8,
             seed: int = 0, name: str = "data", split_counts: Optional[dict] = None) -> Path:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, not {layout!r}")
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        for s_i, split in enumerate(LAYOUTS[layout]):
            default = per_class if s_i == 0 else max(2, per_class // 2)
            n = (split_counts or {}).get(split, default)
            for c_i, cls in enumerate(classes):
                folder = root / split / cls if split else root / cls
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    w, h = (int(v) for v in rng.integers(40, 91, size=2))
                    ext = ".png" if i % 2 == 0 else ".jpg"
                    mode = "RGB" if (i // 2) % 2 == 0 else "L"
                    write_image(folder / f"{cls}_{split or 'all'}_{i}{ext}", fake_slice(rng, w, h, c_i), mode)
        return root

    return make


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory):
    """One tiny `brainae study` (phantom, 32 px, 1 epoch) shared by the tests of its outputs."""
    from brainae.cli import main

    out = tmp_path_factory.mktemp("study")
    code = main(["study", "--data", "phantom:120", "--epochs", "1", "--image-size", "32", "--no-progress",
                 "--set", "model.channels=[8,16,32]", "--set", "model.latent_dim=16", "--out", str(out)])
    assert code == 0
    return out


def assert_same_values_and_grads(out, ref, wrt: tuple, ref_wrt: tuple, tol: float = 1e-12) -> None:
    """``out`` equals ``ref``, and so do the gradients of both (under one random output gradient) with
    respect to ``wrt`` and ``ref_wrt``, pairwise: a layer written another way against torch's, in float64."""
    import torch

    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    grad = torch.randn_like(out)
    for a, r in zip(torch.autograd.grad(out, wrt, grad), torch.autograd.grad(ref, ref_wrt, grad)):
        torch.testing.assert_close(a, r, rtol=tol, atol=tol)
