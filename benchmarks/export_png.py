"""Write a data spec's preprocessed images as 8-bit PNGs in the folder layout brainae reads.

Used to carry the real data (82 MB of JPEGs) to a GPU machine as 128x128 PNGs (about 30 MB):
reading them back at the same size is lossless, so runs there see the same pixels as here.

    python benchmarks/export_png.py ../shared/data/brain-tumor-mri .device_data/brain-tumor-mri
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from brainae.config import DataConfig
from brainae.data.load import load_data


def main(src: str, dest: str, size: int = 128) -> None:
    ds = load_data(DataConfig(spec=src, image_size=size))
    split_dir = {"train": "Training", "val": "Training", "test": "Training"}  # splits are re-carved there
    for img, label, source in zip(ds.images, ds.labels, ds.sources):
        out = Path(dest) / split_dir["train"] / ds.classes[label] / (Path(source).stem + ".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(out)
    print(f"wrote {len(ds)} images to {dest}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
