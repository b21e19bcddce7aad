"""hub_items through the real datasets.load_dataset, on tiny datasets built in tmp_path (no network)."""
from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

datasets = pytest.importorskip("datasets")
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value  # noqa: E402

import brainae.data.hub as hub  # noqa: E402
from brainae.data.hub import PARQUET_REVISION, hub_items  # noqa: E402
from brainae.errors import BrainaeError  # noqa: E402

CLASSES = ["glioma", "meningioma", "notumor"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Keep datasets' Arrow cache in tmp_path and make sure nothing tries the network."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def _pixels(value: int) -> np.ndarray:
    """A 6x8 grey image identified by ``value`` (its [1, 1] pixel), not constant so decoding is checked."""
    arr = np.full((6, 8), value, np.uint8)
    arr[0, :] = np.arange(8, dtype=np.uint8) * 7
    return arr


def _expected():
    """{split: {value: class}}: 12 train and 6 test images over 3 classes, each value unique."""
    out, value = {}, 10
    for split, per_class in (("train", 4), ("test", 2)):
        out[split] = {}
        for c in CLASSES:
            for _ in range(per_class):
                out[split][value] = c
                value += 5
    return out


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_pixels(value)).save(buf, "PNG")
    return buf.getvalue()


def _write_parquet(root, layout: str = "data/{split}-00000-of-00001.parquet", label_feature=None):
    feats = Features({"image": datasets.Image(), "label": label_feature or ClassLabel(names=CLASSES)})
    for split, values in _expected().items():
        ds = Dataset.from_dict(
            {
                "image": [{"bytes": _png(v), "path": None} for v in values],
                "label": [CLASSES.index(c) for c in values.values()],
            },
            features=feats,
        )
        out = root / layout.format(split=split)
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(out))
    return root


def _check(items, name):
    expected = _expected()
    assert Counter(it.split for it in items) == {"train": 12, "test": 6}
    assert {it.label for it in items} == set(CLASSES)
    seen = {"train": set(), "test": set()}
    for it in items:
        assert it.source.startswith(f"hf:{name}/{it.split}/")
        img = it.load()
        assert isinstance(img, Image.Image)
        arr = np.array(img.convert("L"))
        value = int(arr[1, 1])
        assert expected[it.split][value] == it.label  # right label for this very image
        np.testing.assert_array_equal(arr, _pixels(value))  # pixels survive the round trip
        seen[it.split].add(value)
    assert seen == {s: set(v) for s, v in expected.items()}  # every image exactly once
    assert len({it.fingerprint for it in items}) == len(items)


def test_imagefolder_layout(tmp_path):
    root = tmp_path / "brain-if"
    for split, values in _expected().items():
        for value, c in values.items():
            (root / split / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(_pixels(value)).save(root / split / c / f"{value}.png")
    _check(hub_items(str(root)), str(root))


def test_parquet_layout(tmp_path):
    root = _write_parquet(tmp_path / "brain-pq")
    _check(hub_items(str(root)), str(root))


def test_listing_decodes_nothing(tmp_path, monkeypatch):
    root = _write_parquet(tmp_path / "brain-pq")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    items = hub_items(str(root))
    assert opened == []
    items[3].load()
    assert len(opened) == 1


def test_split_names_are_mapped(tmp_path, monkeypatch):
    feats = Features({"image": datasets.Image(), "label": ClassLabel(names=["a", "b"])})
    ds = Dataset.from_dict({"image": [{"bytes": _png(1), "path": None}], "label": [1]}, features=feats)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: DatasetDict(training=ds, validation=ds, testing=ds))
    assert sorted((it.split, it.label) for it in hub_items("x/y")) == [("test", "b"), ("train", "b"), ("val", "b")]

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: DatasetDict(train=ds, extra=ds))
    with pytest.raises(BrainaeError, match="split 'extra'"):
        hub_items("x/y")


def test_plain_label_column_and_unlabelled_rows(tmp_path, monkeypatch):
    feats = Features({"img": datasets.Image(), "labels": Value("string")})
    ds = Dataset.from_dict({"img": [{"bytes": _png(1), "path": None}], "labels": ["tumour"]}, features=feats)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: DatasetDict(train=ds))
    (item,) = hub_items("x/y")
    assert item.label == "tumour" and np.array(item.load())[1, 1] == 1

    # ClassLabel's -1 ("no label") must not silently become the last class.
    feats = Features({"image": datasets.Image(), "label": ClassLabel(names=["a", "b"])})
    ds = Dataset.from_dict({"image": [{"bytes": _png(1), "path": None}] * 2, "label": [0, -1]}, features=feats)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: DatasetDict(test=ds))
    with pytest.raises(BrainaeError, match="1 rows without a valid label"):
        hub_items("x/y")


def test_missing_image_column(tmp_path):
    root = tmp_path / "no-images" / "data"
    root.mkdir(parents=True)
    Dataset.from_dict(
        {"text": ["a", "b"], "label": [0, 1]}, features=Features({"text": Value("string"), "label": ClassLabel(names=["x", "y"])})
    ).to_parquet(str(root / "train-00000-of-00001.parquet"))
    with pytest.raises(BrainaeError) as e:
        hub_items(str(root.parent))
    msg = str(e.value)
    assert "has no image column" in msg
    assert "columns: text, label" in msg and str(root.parent) in msg and "\n" not in msg


def test_missing_label_column(tmp_path, monkeypatch):
    ds = Dataset.from_dict({"image": [{"bytes": _png(1), "path": None}]}, features=Features({"image": datasets.Image()}))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: DatasetDict(train=ds))
    with pytest.raises(BrainaeError, match=r"has no label column \(columns: image\)"):
        hub_items("x/y")


def _script_dataset(tmp_path):
    root = tmp_path / "brain-tumor-collection"
    root.mkdir()
    (root / "brain-tumor-collection.py").write_text("import datasets  # a loading script\n")
    return root


def test_script_dataset_is_refused_by_datasets(tmp_path):
    """What the fallback relies on: datasets >= 4 raises RuntimeError for a loading script."""
    root = _script_dataset(tmp_path)
    with pytest.raises(RuntimeError, match="Dataset scripts are no longer supported"):
        datasets.load_dataset(str(root))


def test_script_dataset_falls_back_to_parquet_export(tmp_path, monkeypatch):
    root = _script_dataset(tmp_path)
    # The hub's refs/convert/parquet branch lays files out as CONFIG/SPLIT/NNNN.parquet.
    export = _write_parquet(tmp_path / "export", layout="default/{split}/0000.parquet")
    real, calls = datasets.load_dataset, []

    def fake(path, revision=None, **kw):
        calls.append((path, revision))
        return real(str(export) if revision == PARQUET_REVISION else path, revision=revision, **kw)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    items = hub_items(str(root), revision="v1")
    assert calls == [(str(root), "v1"), (str(root), PARQUET_REVISION)]
    _check(items, str(root))
    assert all(it.fingerprint.startswith(PARQUET_REVISION + ":") for it in items)


def test_script_dataset_without_export_raises_one_line(tmp_path, monkeypatch):
    root = _script_dataset(tmp_path)
    real, calls = datasets.load_dataset, []
    monkeypatch.setattr(datasets, "load_dataset", lambda path, revision=None, **kw: calls.append(revision) or real(path, revision=revision, **kw))
    with pytest.raises(BrainaeError) as e:
        hub_items(str(root))
    assert calls == [None, PARQUET_REVISION]
    msg = str(e.value)
    assert "\n" not in msg and "loading script" in msg and "local folder" in msg and 'datasets<4' in msg


def test_unreachable_hub_is_one_line(monkeypatch):
    # HF_HUB_OFFLINE (set by the fixture) makes datasets raise ConnectionError without touching the network.
    with pytest.raises(BrainaeError) as e:
        hub_items("nobody-xyz/not-a-dataset-xyz")
    assert "\n" not in str(e.value) and "HF_HUB_OFFLINE" in str(e.value)


def test_not_found_is_one_line(tmp_path, monkeypatch):
    from datasets.exceptions import DatasetNotFoundError

    (tmp_path / "empty").mkdir()
    with pytest.raises(BrainaeError, match="not found"):  # real path: a local folder without data files
        hub_items(str(tmp_path / "empty"))

    def missing(path, revision=None, **kw):
        raise DatasetNotFoundError(f"Dataset '{path}' doesn't exist on the Hub or cannot be accessed.")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(BrainaeError, match="not found") as e:
        hub_items("nobody/missing", revision="v2")
    assert "v2" in str(e.value) and "\n" not in str(e.value)


def test_other_errors_propagate(monkeypatch):
    def broken(path, revision=None, **kw):
        raise RuntimeError("something else")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(RuntimeError, match="something else"):
        hub_items("x/y")


def test_hf_spec_end_to_end_through_load_data(tmp_path, monkeypatch):
    """`--data hf:...` goes through the same loader, the cache, and keeps the source's test split."""
    from brainae.config import DataConfig
    from brainae.data.load import load_data

    monkeypatch.setenv("BRAINAE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    feats = Features({"image": datasets.Image(), "label": ClassLabel(names=CLASSES)})
    for split, n in (("train", 30), ("test", 9)):
        imgs = [Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)) for _ in range(n)]
        ds = Dataset.from_dict({"image": imgs, "label": [i % 3 for i in range(n)]}, features=feats)
        ds.to_parquet(str(tmp_path / "pq" / "data" / f"{split}-00000-of-00001.parquet"))
    data = load_data(DataConfig(spec=f"hf:{tmp_path / 'pq'}", image_size=16), progress=False)
    assert data.classes == CLASSES and data.images.shape == (39, 16, 16)
    assert (data.splits == "test").sum() == 9  # the source's test split, untouched
    assert (data.splits == "val").sum() >= 3 and all(s.startswith("hf:") for s in data.sources)
    assert all(s.split("/")[-2] == "test" for s, sp in zip(data.sources, data.splits) if sp == "test")
