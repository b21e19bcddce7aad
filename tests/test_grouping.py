"""Splits by group: copies, --group-by ids and given test splits never leak into training."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from brainae.cli import main
from brainae.config import DataConfig
from brainae.data.grouping import assign_group_splits, stratified_group_split
from brainae.data.duplicates import find_duplicates
from brainae.data.load import load_data
from brainae.errors import BrainaeError
from brainae.evaluation.metrics import bootstrap_ci


def _plant_copies(root, n_exact=6, n_near=4):
    """Byte copies and brightened copies of files, renamed, inside the same class folders."""
    files = sorted(root.rglob("*.png"))
    planted = []
    for k, f in enumerate(files[:n_exact]):
        copy = f.with_name(f"copy{k}_{f.name}")
        shutil.copyfile(f, copy)
        planted.append((f, copy))
    for k, f in enumerate(files[n_exact:n_exact + n_near]):
        arr = np.asarray(Image.open(f).convert("L")).astype(np.int16)
        near = f.with_name(f"near{k}_{f.name}")
        Image.fromarray(np.clip(arr + 3, 0, 255).astype(np.uint8)).save(near)
        planted.append((f, near))
    return planted


def _splits_of(ds, path):
    return {str(ds.splits[i]) for i, s in enumerate(ds.sources) if s == str(path)}


def test_copies_never_cross_carved_splits(image_folder):
    root = image_folder(per_class=20)
    planted = _plant_copies(root)
    grouped = load_data(DataConfig(spec=str(root), image_size=32), progress=False)
    for original, copy in planted:
        assert _splits_of(grouped, original) == _splits_of(grouped, copy)
    dups = find_duplicates(grouped, near_threshold=2)
    for g in dups["exact"] + dups["near"]:
        assert len(set(grouped.splits[g])) == 1
    # the same folder split image by image: with these copies some do cross (the leak being removed)
    raw = load_data(DataConfig(spec=str(root), image_size=32, keep_duplicates=True, seed=3), progress=False)
    crossing = sum(_splits_of(raw, a) != _splits_of(raw, b) for a, b in planted)
    assert crossing > 0
    assert grouped.grouping["unit"] == "image" and "exact copies" in grouped.grouping["kinds"]


def test_given_test_copies_are_left_out_of_training(image_folder, tmp_path):
    root = image_folder(layout="Training/Testing", per_class=10)
    tests = sorted((root / "Testing").rglob("*.png"))[:5]
    for k, f in enumerate(tests):  # the public dataset's fault: test files also in the training folder
        shutil.copyfile(f, root / "Training" / f.parent.name / f"dup{k}.png")
    ds = load_data(DataConfig(spec=str(root), image_size=32), progress=False)
    copies = {str(root / "Training" / f.parent.name / f"dup{k}.png") for k, f in enumerate(tests)}
    assert not copies & set(ds.sources)  # none of them trains or selects the model
    assert {s for s, _ in ds.removed} == copies
    assert ds.grouping["removed"]["reasons"] == {"train: copy of a test image": 5}
    assert all(_splits_of(ds, f) == {"test"} for f in tests)
    kept = load_data(DataConfig(spec=str(root), image_size=32, keep_duplicates=True), progress=False)
    assert copies <= set(kept.sources) and not kept.removed

    out = tmp_path / "run"
    args = ["train", "--data", str(root), "--image-size", "16", "--epochs", "1", "--preset", "quick", "--no-progress",
            "--set", "model.channels=[4,8]", "--set", "model.latent_dim=4", "--out", str(out)]
    assert main(args) == 0
    listed = dict(line.split("\t") for line in (out / "removed.txt").read_text().splitlines())
    assert set(listed) == copies and set(listed.values()) == {"train: copy of a test image"}
    grouping = json.loads((out / "data.json").read_text())["grouping"]
    assert grouping["removed"]["count"] == 5 and grouping["split"].startswith("given test")


def test_group_by_regex_keeps_each_patient_in_one_split(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for cls in ("glioma", "no_tumor"):
        for p in range(8):
            for s in range(3):
                path = root / cls / f"P{cls[0]}{p:02d}_slice{s}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(path)
    ds = load_data(DataConfig(spec=str(root), image_size=16, group_by=r"^(P\w+?)_"), progress=False)
    names = ds.grouping["names"]
    assert ds.grouping["unit"] == "id" and ds.grouping["group_by"]["unmatched"] == 0
    assert not set(names["train"]) & set(names["val"]) and not set(names["train"]) & set(names["test"])
    assert not set(names["val"]) & set(names["test"])
    assert sum(len(v) for v in names.values()) == 16
    for name in names["test"]:
        assert all(ds.splits[i] == "test" for i, g in enumerate(ds.group_names) if g == name)
    with pytest.raises(BrainaeError, match="matches no file name"):
        load_data(DataConfig(spec=str(root), image_size=16, group_by=r"^patient(\d+)"), progress=False)
    with pytest.raises(BrainaeError, match="not a valid regular expression"):
        load_data(DataConfig(spec=str(root), image_size=16, group_by=r"(P"), progress=False)


def test_too_few_groups_is_one_clear_error(tmp_path):
    root = tmp_path / "data"
    for p in range(2):
        for s in range(6):
            path = root / "a" / f"P{p}_{s}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.random.default_rng(p * 10 + s).integers(0, 255, (20, 20), dtype=np.uint8)).save(path)
    with pytest.raises(BrainaeError, match="too small to give every split one id: 2 id"):
        load_data(DataConfig(spec=str(root), image_size=16, group_by=r"^(P\d)_"), progress=False)


def test_stratified_group_split_keeps_groups_whole_and_near_the_fractions():
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 30, size=60)
    comp = np.repeat(np.arange(60), sizes)
    labels = np.repeat(rng.integers(0, 3, size=60), sizes)
    split = stratified_group_split(labels, comp, {"test": 0.15, "val": 0.15}, seed=0)
    for g in range(60):
        assert len(set(split[comp == g])) == 1
    for name in ("val", "test"):
        assert 0.08 < (split == name).mean() < 0.22
        assert set(labels[split == name]) == {0, 1, 2}  # every class is represented


def test_groups_spanning_given_splits_keep_the_held_out_members():
    labels = np.zeros(6, int)
    given = ["train", "train", "test", None, None, "val"]
    comp = np.array([0, 1, 0, 2, 3, 1])  # 0 spans train/test, 1 spans train/val
    from brainae.data.grouping import drop_cross_split_members

    keep, removed = drop_cross_split_members(np.array([g or "train" for g in given]), comp,
                                             [f"f{i}" for i in range(6)], "", [""] * 6)
    assert keep.tolist() == [False, False, True, True, True, True]
    assert removed == [("f0", "train: copy of a test image"), ("f1", "train: copy of a val image")]
    splits, how = assign_group_splits(labels[keep], [g for g, k in zip(given, keep) if k], comp[keep], 0.2, 0.2, 0)
    assert splits[0] == "test" and splits[-1] == "val" and how == "given"


def test_grouped_bootstrap_resamples_whole_groups():
    values = np.repeat([10.0, 20.0, 30.0, 40.0], 25)  # four subjects, identical slices within each
    groups = np.repeat(np.arange(4), 25)
    lo_g, hi_g = bootstrap_ci(values, groups=groups)
    lo_i, hi_i = bootstrap_ci(values)
    assert hi_g - lo_g > 3 * (hi_i - lo_i)  # 100 slices of 4 subjects carry the evidence of 4, not 100
    assert bootstrap_ci(values, groups=np.arange(100)) == (lo_i, hi_i)
    assert bootstrap_ci(values, groups=np.zeros(100)) == (25.0, 25.0)


def test_inspect_reports_the_default_split_and_raw_shows_the_leak(image_folder, tmp_path, capsys):
    root = image_folder(layout="Training/Testing", per_class=8)
    f = sorted((root / "Testing").rglob("*.png"))[0]
    shutil.copyfile(f, root / "Training" / f.parent.name / "leak.png")
    out = tmp_path / "inspect.json"
    assert main(["data", "inspect", str(root), "--no-progress", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["leaks"]["test_in_train_or_val"] == {"exact": 0, "near": 0}
    assert all(v == 0 for kind in ("exact", "near") for v in report["duplicates"][kind]["across_splits"].values())
    assert report["grouping"]["removed"]["count"] == 1 and report["removed"]["first"][0][0].endswith("leak.png")
    assert "left out 1: train: copy of a test image" in capsys.readouterr().out
    assert main(["data", "inspect", str(root), "--raw", "--no-progress", "--json", str(out)]) == 0
    raw = json.loads(out.read_text())
    assert raw["leaks"]["test_in_train_or_val"]["exact"] == 1 and raw["grouping"]["removed"]["count"] == 0


def test_a_testing_folder_alone_is_all_test_and_split_all_scores_everything(image_folder, tmp_path, capsys):
    train_root = image_folder(per_class=10, name="train_data")
    run = tmp_path / "run"
    assert main(["train", "--data", str(train_root), "--image-size", "16", "--epochs", "1", "--preset", "quick",
                 "--no-progress", "--set", "model.channels=[4,8]", "--set", "model.latent_dim=4", "--out", str(run)]) == 0
    external = image_folder(layout="Training/Testing", per_class=4, name="external", seed=5)
    shutil.rmtree(external / "Training")
    assert main(["evaluate", str(run), "--data", str(external), "--no-progress"]) == 0
    result = json.loads((run / "eval" / "test.json").read_text())
    assert result["n"] == len(list((external / "Testing").rglob("*.*")))
    plain = image_folder(per_class=5, name="plain", seed=7)
    assert main(["evaluate", str(run), "--data", str(plain), "--split", "all", "--no-progress"]) == 0
    assert json.loads((run / "eval" / "all.json").read_text())["n"] == 15
