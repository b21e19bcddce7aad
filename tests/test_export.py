"""Slim weights (weights/best.safetensors) and `brainae export`: every registered model round-trips
through TorchScript and safetensors, the study's models through ONNX; damaged files are one-line errors."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from brainae import export
from brainae.cli import main
from brainae.config import Config, build_config
from brainae.errors import BrainaeError
from brainae.export import export_network, export_run
from brainae.models import build_model, model_names
from brainae.training.run import PRIOR_FILE, load_model, load_run, network_file
from brainae.training.train import train
from brainae.training.weights import WEIGHTS_FILE, read_weights, save_weights

SIZE = 32


def tiny(name: str, **sets) -> Config:
    """A config every registered model accepts at 32 px (the spatial codes need latent_dim % 64 == 0)."""
    sets = {"model.channels": "[4,8]", "model.latent_dim": 64, "train.progress": "false", **sets}
    return build_config(name, data="phantom:40", image_size=SIZE, epochs=1, overrides=[f"{k}={v}" for k, v in sets.items()])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained tiny AE, and a VAE with a fitted code prior (its own cache: conftest's is per test)."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINAE_CACHE", str(root / "cache"))
        train(tiny("ae", **{"model.latent_dim": 16}), root / "ae")
        train(tiny("vae", **{"model.latent_dim": 16, "model.prior_components": 2}), root / "vae")
    return root


@pytest.fixture
def run(runs, tmp_path):
    """A private copy of the AE run (copytree keeps the files' times, which load_run compares)."""
    return shutil.copytree(runs / "ae", tmp_path / "ae")


def set_mtime(path, seconds_from_now: float) -> None:
    t = path.stat().st_mtime + seconds_from_now
    os.utime(path, (t, t))


def same_network(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", [*model_names(), "resae+residual"])
def test_every_registered_model_exports_as_torchscript_and_safetensors(name, tmp_path):
    model_name, _, extra = name.partition("+")
    cfg = tiny(model_name, **({"model.residual_output": "true"} if extra else {}))
    torch.manual_seed(0)
    net = build_model(cfg.model, SIZE).eval()
    x = torch.rand(3, cfg.model.in_channels, SIZE, SIZE)
    assert export_network(net, cfg, x, tmp_path / "net.pt", "torchscript") <= export.TOLERANCE
    traced = torch.jit.load(str(tmp_path / "net.pt"))
    assert traced(x[:1]).shape == (1, 1, SIZE, SIZE)  # traced on two images, runs on any batch
    assert export_network(net, cfg, x, tmp_path / "net.safetensors", "safetensors") == 0.0
    state, meta = read_weights(tmp_path / "net.safetensors")
    assert state.keys() == net.state_dict().keys() and meta["model"] == model_name


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_onnx_round_trip(name, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'brainae[onnx]')")
    pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript (pip install 'brainae[onnx]')")
    cfg = tiny(name)
    net = build_model(cfg.model, SIZE).eval()
    x = torch.rand(4, 1, SIZE, SIZE)
    assert export_network(net, cfg, x, tmp_path / "net.onnx", "onnx") <= export.TOLERANCE
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"image": x[:3].numpy()})  # any batch size, not just the traced one
    with torch.no_grad():
        assert abs(out - net(x[:3]).recon.numpy()).max() <= export.TOLERANCE


def test_training_writes_slim_weights_that_load_like_the_checkpoint(run):
    weights, ckpt = run / WEIGHTS_FILE, run / "checkpoints" / "best.ckpt"
    assert weights.is_file() and not list(run.rglob("*.tmp"))
    # no optimizer moments or loop state: half the size of the checkpoint to resume from, at most
    assert weights.stat().st_size < (run / "checkpoints" / "last.ckpt").stat().st_size / 2
    state, meta = read_weights(weights)
    model, cfg = load_run(run)
    assert state.keys() == model.state_dict().keys()  # the network's own names, nothing else
    assert meta["source"] == "checkpoints/best.ckpt" and meta["model"] == "ae"
    assert network_file(run) == weights and not model.training
    shutil.rmtree(run / "weights")
    assert network_file(run) == ckpt
    from_ckpt = load_model(run)
    assert same_network(model, from_ckpt)
    x = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model(x).recon, from_ckpt(x).recon)


def test_weights_are_read_first_and_a_newer_checkpoint_wins(run):
    weights, ckpt = run / WEIGHTS_FILE, run / "checkpoints" / "best.ckpt"
    ckpt.write_bytes(b"damaged")  # were it read, loading would fail
    set_mtime(ckpt, -60)
    assert not load_model(run).training  # from the weights alone
    set_mtime(ckpt, +120)  # a resumed run stopped early: its best.ckpt is newer than the weights
    with pytest.raises(BrainaeError, match="checkpoint .*best.ckpt"):
        load_model(run)
    shutil.rmtree(run / "checkpoints")  # weights and config.yaml alone are a complete run to load
    assert load_model(run) is not None


def _garbage(path):
    torch.save({"state_dict": {}}, path)  # a pickle, not safetensors


def _truncated(path):
    path.write_bytes(path.read_bytes()[:200])


def _integer_weights(path):
    state, _ = read_weights(path)
    save_weights(path, {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in state.items()})


def _missing_tensor(path):
    state, _ = read_weights(path)
    save_weights(path, dict(list(state.items())[1:]))


@pytest.mark.parametrize("damage, message", [
    (_garbage, "not a readable safetensors file"),
    (_truncated, "not a readable safetensors file"),
    (_integer_weights, "torch.int32"),
    (_missing_tensor, "does not fit the network"),
])
def test_damaged_weights_are_a_one_line_error(run, capsys, damage, message):
    damage(run / WEIGHTS_FILE)
    assert main(["evaluate", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.safetensors" in err[0] and message in err[0], err
    assert "Traceback" not in err[0]


def test_a_vae_loaded_from_slim_weights_keeps_its_code_prior(runs, tmp_path):
    run = shutil.copytree(runs / "vae", tmp_path / "vae")
    shutil.rmtree(run / "checkpoints")  # only weights/, config.yaml and prior.pt are left to load
    assert (run / PRIOR_FILE).is_file()
    model = load_model(run)
    assert model.code_prior is not None and model.code_prior.components == 2
    assert model.sample(3).shape == (3, 1, SIZE, SIZE)


@pytest.mark.parametrize("fmt", ["torchscript", "safetensors", "onnx"])
def test_cli_export_checks_the_file_against_the_run(run, tmp_path, capsys, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'brainae[onnx]')")
        pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript (pip install 'brainae[onnx]')")
    out = tmp_path / "exported" / f"ae.{fmt}"
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "checked on 4 test images" in printed and "largest difference" in printed
    assert not list(out.parent.glob("*.tmp"))


def test_export_defaults_to_the_run_folder_and_can_take_the_last_epoch(run):
    result = export_run(run, "torchscript", which="last")
    assert result["path"] == str(run / "export" / "last.torchscript.pt") and result["max_abs_diff"] <= 1e-4


def test_an_export_that_differs_from_the_run_is_not_kept(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # any difference, even 0, now fails the check
    out = tmp_path / "ae.pt"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs from the run's network" in err[0]
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_onnx_without_its_packages_says_what_to_install(run, capsys, monkeypatch):
    real = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda m, *a: None if m == "onnxruntime" else real(m, *a))
    assert main(["export", str(run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxruntime" in err[0] and "brainae[onnx]" in err[0]
