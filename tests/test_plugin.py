"""A model from another package: examples/plugin_model, installed, works everywhere with no change to brainae."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin_model"
COMMON = ["--data", "phantom:60", "--image-size", "32", "--accelerator", "cpu", "--epochs", "1", "--no-progress"]


@pytest.mark.slow
def test_an_installed_plugin_model_lists_trains_sweeps_and_joins_the_study(tmp_path):
    source, site = tmp_path / "plugin_model", tmp_path / "site"
    shutil.copytree(EXAMPLE, source)  # pip builds in the source folder: keep the checkout clean
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT / "src")]))

    def brainae(*args):
        r = subprocess.run([sys.executable, "-m", "brainae", *args], env=env, capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    assert "tinyae" in brainae("models") and "plugin: brainae-tinyae" in brainae("models")
    assert "model.options.{pool}" in brainae("models")  # its own setting, which brainae has no key for
    brainae("train", "--model", "tinyae", *COMMON, "--set", "model.options.pool=max", "--out", str(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["model"] == "tinyae"
    assert "pool: max" in (tmp_path / "run" / "config.yaml").read_text()
    brainae("sweep", "--model", "tinyae", "--space", "wide", "--preset", "quick", "--trials", "3", *COMMON,
            "--out", str(tmp_path / "sweep"))
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    latent = next(row for row in sweep["space"]["table"] if row["key"] == "model.latent_dim")
    assert "32" in str(latent) and sweep["states"]["complete"] >= 1  # the plugin's own range for its code
    assert any(row["key"] == "model.options.pool" for row in sweep["space"]["table"])  # and its own option
    brainae("study", "--models", "ae,tinyae", "--no-sweep", *COMMON, "--out", str(tmp_path / "study"))
    summary = json.loads((tmp_path / "study" / "summary.json").read_text())
    assert set(summary["models"]) == {"ae", "tinyae"} and (tmp_path / "study" / "report.html").is_file()


def test_noises_losses_and_denoisers_come_from_their_entry_point_groups_too(monkeypatch, capsys):
    """A plugin package's noise registers through the brainae.noises group; a broken one is left out in one line."""
    import types

    import torch

    from brainae import registry
    from brainae.data.noise import parse_noise

    def speckle(x, level, g):
        return x * (1 + level * torch.randn(x.shape, generator=g, device=x.device))

    module = types.SimpleNamespace(load=lambda: registry.register("noise", "speckle_plugin")(speckle))

    class EntryPoint:
        def __init__(self, name, load):
            self.name, self.value, self.load = name, f"pkg_{name}", load

    def broken():
        raise ImportError("No module named 'torch_extra'")

    groups = {"brainae.noises": [EntryPoint("speckle", module.load), EntryPoint("bad", broken)]}
    monkeypatch.setattr(registry, "entry_points", lambda group: groups.get(group, []))
    monkeypatch.setitem(registry._REGISTRIES, "noise", dict(registry._REGISTRIES["noise"]))  # undone after the test
    assert registry.load_entry_points("brainae.noises") == ["speckle"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plugin 'bad'" in err[0] and "left out" in err[0]
    x = torch.full((1, 1, 8, 8), 0.5)
    assert not torch.equal(parse_noise("speckle_plugin:0.2")(x, generator=0), x)
    for group in ("brainae.models", "brainae.losses", "brainae.denoisers"):
        assert registry.load_entry_points(group) == []
