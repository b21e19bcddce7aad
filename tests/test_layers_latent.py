"""Inside the models: hooks on every conv layer of every registered model, the latent space, VAE
generation, the `layers` / `latent` commands and their report sections."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from brainae.cli import main
from brainae.config import ModelConfig
from brainae.errors import BrainaeError
from brainae.models import build_model, model_names
from brainae.visualization.latent import (
    centroid_distances, decode_codes, encode_images, interpolate, is_generative, pca, sample_prior, traverse,
)
from brainae.visualization.layers import CONV_TYPES, capture_layers, conv_layers, layer_stats
from brainae.data.examples import spread_over_classes
from brainae.visualization.runs import parse_pick

TINY = dict(channels=[8, 16, 32], latent_dim=16)


def tiny_model(name: str, size: int = 32) -> nn.Module:
    torch.manual_seed(0)
    try:
        return build_model(ModelConfig(name=name, **TINY), size).eval()
    except BrainaeError:  # a spatial code must tile the deepest map: fall back to a dense one
        return build_model(ModelConfig(name=name, bottleneck="dense", **TINY), size).eval()


def assert_png(path):
    assert path.is_file(), path
    with Image.open(path) as im:
        im.verify()
        assert im.format == "PNG" and im.size[0] > 50 and im.size[1] > 50


@pytest.mark.parametrize("name", model_names())
def test_hooks_capture_every_conv_layer_with_its_shape(name):
    model = tiny_model(name)
    x = torch.rand(3, 1, 32, 32)
    acts, recon = capture_layers(model, x)
    assert recon.shape == (3, 32, 32)
    convs = [n for n, m in model.named_modules() if isinstance(m, CONV_TYPES)]
    assert convs and acts
    # every conv of the model is shown: captured as itself or inside exactly one captured level
    for conv in convs:
        owners = [a for a in acts if conv == a or conv.startswith(a + ".")]
        assert len(owners) == 1, f"{conv} captured by {owners}"
    assert "encoder" in next(iter(acts))  # run order: the first level captured is the first encoder level
    # each capture is what that module outputs in a plain forward pass (after its norm and activation)
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = [modules[n].register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o)) for n in acts]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for n, a in acts.items():
        np.testing.assert_allclose(a, seen[n].numpy(), rtol=1e-5, atol=1e-6)
    assert not any(m._forward_hooks for m in model.modules())  # hooks are removed


def test_study_models_capture_the_study_layers():
    names = [n for n, _ in conv_layers(build_model(ModelConfig(name="ae"), 128))]
    assert names == [f"encoder.{i}" for i in range(5)] + [f"decoder.{i}" for i in range(5)]


def test_layer_stats_match_the_activations():
    acts, _ = capture_layers(tiny_model("ae"), torch.rand(2, 1, 32, 32))
    for row in layer_stats(acts):
        a = acts[row["layer"]]
        assert row["shape"] == list(a.shape[1:])
        assert row["mean"] == pytest.approx(float(a.mean()), rel=1e-5, abs=1e-7)
        assert row["std"] == pytest.approx(float(a.std()), rel=1e-5)
        assert 0.0 <= row["near_zero"] <= 1.0
        means = a.mean(axis=(0, 2, 3))
        assert means[row["top_channels"][0]] == pytest.approx(means.max())


@pytest.mark.parametrize("name", [n for n in model_names() if is_generative(tiny_model(n))])
@pytest.mark.parametrize("size", [32, 64])
def test_vae_samples_are_input_sized_images_in_unit_range(name, size):
    model = tiny_model(name, size)
    samples = sample_prior(model, 5, seed=1)
    assert samples.shape == (5, size, size)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    np.testing.assert_array_equal(samples, sample_prior(model, 5, seed=1))  # seeded
    grid = traverse(model, np.random.default_rng(0).normal(size=(40, TINY["latent_dim"])).astype(np.float32), k=3)
    assert grid.shape == (3, 6, size, size) and grid.min() >= 0 and grid.max() <= 1


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_interpolation_endpoints_are_the_decoded_endpoint_codes(name):
    model = tiny_model(name)
    images = (np.random.default_rng(0).random((2, 32, 32)) * 255).astype(np.uint8)
    line = interpolate(model, images[0], images[1], steps=5)
    assert line.shape == (5, 32, 32)
    ends = decode_codes(model, encode_images(model, images))
    np.testing.assert_allclose(line[0], ends[0], atol=1e-5)
    np.testing.assert_allclose(line[-1], ends[1], atol=1e-5)


def test_pca_and_centroid_distances():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 6)) * np.array([5, 3, 2, 1, 0.5, 0.1])
    p = pca(z, k=4)
    ev = p["explained"]
    assert np.all(np.diff(ev) <= 1e-12) and ev.sum() <= 1 + 1e-9
    eig = np.sort(np.linalg.eigvalsh(np.cov(z.T)))[::-1]
    np.testing.assert_allclose(ev, eig[:4] / eig.sum(), rtol=1e-6)
    labels = np.repeat([0, 1, 2], 20)
    z[labels == 1] += 10
    c = centroid_distances(z, labels, ["a", "b", "c", "empty"])
    d = np.array(c["distances"])
    assert c["classes"] == ["a", "b", "c"] and np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    assert d[0, 1] > d[0, 2]


@pytest.mark.parametrize("module", ["layers", "latent", "runs"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"brainae.visualization.{module}")
    result = doctest.testmod(mod, extraglobs={"np": np, "torch": torch})
    assert result.failed == 0


def test_spread_over_classes_takes_every_class_in_turn():
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    assert spread_over_classes(np.arange(7), labels, 4).tolist() == [0, 4, 6, 1]


# --- the commands and the report, on a tiny study -------------------------------------------------

def test_layers_command_writes_figures_and_json(study_dir, tmp_path, capsys):
    runs = [str(study_dir / "runs" / m) for m in ("ae", "vae")]
    out = tmp_path / "layers"
    assert main(["layers", *runs, "--images", "3", "--out", str(out), "--no-progress"]) == 0
    assert "encoder.0" in capsys.readouterr().out
    result = json.loads((out / "layers.json").read_text())
    assert result["images"] == 3 and len(result["test_indices"]) == 3 and set(result["models"]) == {"ae", "vae"}
    for m, rows in result["models"].items():
        model = tiny_model(m)
        acts, _ = capture_layers(model, torch.rand(1, 1, 32, 32))
        assert [r["layer"] for r in rows] == list(acts)
        assert [r["shape"] for r in rows] == [list(a.shape[1:]) for a in acts.values()]
    assert len(result["figures"]) == 1 + 2 * (1 + len(acts))
    for name in result["figures"]:
        assert_png(out / name)
    assert {"channel_means.png", "ae_top_channels.png", "vae_channels_encoder_0.png"} <= set(result["figures"])


def test_pick_takes_the_named_classes():
    ds = SimpleNamespace(classes=["no_tumor", "tumor"], labels=np.array([0, 1, 0, 1, 1, 0]))
    idx = parse_pick("tumor:2,no_tumor:1", ds)
    assert ds.labels[idx].tolist() == [1, 1, 0] and len(set(idx.tolist())) == 3
    assert len(parse_pick("tumor:10", ds)) == 3  # as many as there are
    for bad in ("tumor", "tumor:0", "glioma:2"):
        with pytest.raises(BrainaeError):
            parse_pick(bad, ds)


def test_layers_command_refuses_an_unknown_class(study_dir, capsys):
    code = main(["layers", str(study_dir / "runs" / "ae"), "--pick", "glioma:2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("brainae: error:") and "glioma" in err and len(err.strip().splitlines()) == 1


def test_latent_command_writes_figures_and_json(study_dir, tmp_path):
    runs = [str(study_dir / "runs" / m) for m in ("ae", "vae")]
    out = tmp_path / "latent"
    assert main(["latent", *runs, "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "latent.json").read_text())
    summary = json.loads((study_dir / "summary.json").read_text())
    assert result["n"] == summary["models"]["ae"]["test"]["n"]
    assert "PCA" in result["projections"]
    for m, r in result["models"].items():
        ev = np.array(r["explained_variance"])
        assert r["latent_dim"] == 16 and len(ev) == 10
        assert np.all(ev >= 0) and np.all(np.diff(ev) <= 1e-7) and ev.sum() <= 1 + 1e-6
        d = np.array(r["centroids"]["distances"])
        assert r["centroids"]["classes"] == ["no_tumor", "tumor"]
        assert d.shape == (2, 2) and np.allclose(d, d.T) and np.allclose(np.diag(d), 0) and d[0, 1] > 0
        assert r["generative"] == (m == "vae")
    assert set(result["figures"]) == {"projections.png", "explained.png", "interpolation.png",
                                      "vae_samples.png", "vae_traversal.png"}
    for name in result["figures"]:
        assert_png(out / name)


def test_report_holds_inside_and_latent_sections(study_dir):
    from report_html import report_sections

    sections = report_sections((study_dir / "report.html").read_text())
    inside, latent = sections["inside"], sections["latent"]
    assert (inside.title, latent.title) == ("Inside the network", "Latent space")
    layers = {row["layer"].split()[0] for row in inside.table_with("layer")}  # "decoder.2 (pre-sigmoid)"
    assert {"encoder.0", "decoder.2"} <= layers and inside.images >= 3  # a stats row per layer, and its figures
    assert "prior" in latent.text and latent.images >= 5
