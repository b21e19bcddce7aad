"""Slow tests on the study's real Training folder (../shared/data/brain-tumor-mri)."""
from pathlib import Path

import numpy as np
import pytest

from brainae.config import DataConfig
from brainae.data.load import load_data

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-tumor-mri"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REAL / "Training").is_dir(), reason=f"real data not found at {REAL}"),
]


def test_real_folder_loads_every_image_with_stratified_carved_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINAE_CACHE", str(tmp_path))
    ds = load_data(DataConfig(spec=str(REAL), image_size=64), progress=False)
    assert len(ds) == 2870 and not ds.skipped
    assert ds.classes == ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]
    assert np.bincount(ds.labels).tolist() == [826, 822, 395, 827]
    for split, share in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        assert abs((ds.splits == split).mean() - share) < 0.01
    assert len(set(ds.original_sizes)) > 100 and "RGB" in ds.modes
    again = load_data(DataConfig(spec=str(REAL), image_size=64), progress=False)  # from the cache
    assert np.array_equal(again.images, ds.images) and list(again.splits) == list(ds.splits)
