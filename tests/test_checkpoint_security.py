"""A run folder's checkpoints are read without pickle: a crafted file never runs its payload."""
from __future__ import annotations

import shutil

import pytest
import torch

from brainae.cli import main

TINY = ["--data", "phantom:60", "--image-size", "32", "--set", "model.channels=[8,16]",
        "--set", "model.latent_dim=8", "--preset", "quick", "--no-progress"]


class Payload:
    """Unpickling this writes ``marker``: what an attacker's checkpoint would do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("secure") / "run"
    assert main(["train", "--model", "ae", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    return out


def _craft(run, name, marker):
    """Replace ``checkpoints/<name>.ckpt`` by the real checkpoint plus a code-running object."""
    path = run / "checkpoints" / f"{name}.ckpt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["payload"] = Payload(marker)
    torch.save(ckpt, path)
    return path


def test_crafted_checkpoint_would_run_with_pickle(clean_run, tmp_path):
    """The test's payload is real: a plain torch.load of the crafted file writes the marker."""
    run = tmp_path / "run"
    shutil.copytree(clean_run, run)
    marker = tmp_path / "marker"
    path = _craft(run, "best", marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("command", [
    ["evaluate", "{run}"],
    ["layers", "{run}", "--images", "2"],
    ["latent", "{run}"],
    ["denoise", "{run}", "--baselines", "none", "--limit", "4", "--noise", "gaussian:0.1"],
    ["anomaly", "{run}"],
    ["train", "--resume", "--epochs", "2", "--no-progress", "--out", "{run}"],
])
def test_crafted_checkpoint_is_refused(clean_run, tmp_path, capsys, command):
    run = tmp_path / "run"
    shutil.copytree(clean_run, run)
    marker = tmp_path / "marker"
    for name in ("best", "last"):
        _craft(run, name, marker)
    config_before = (run / "config.yaml").read_bytes()
    code = main([c.format(run=run) for c in command])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert not marker.exists()
    assert err[-1].startswith("brainae: error: checkpoint") and "refused" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert (run / "config.yaml").read_bytes() == config_before


def test_truncated_checkpoint_is_one_line(clean_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(clean_run, run)
    best = run / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:1000])
    assert main(["evaluate", str(run), "--no-progress"]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_resume_with_another_network_changes_nothing(clean_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(clean_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code = main(["train", "--resume", "--epochs", "2", "--no-progress", "--set", "model.latent_dim=4", "--out", str(run)])
    assert code == 2
    assert "does not fit the configured network" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_resume_from_a_truncated_last_checkpoint_is_one_line(clean_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(clean_run, run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:2000])
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", "--epochs", "1", "--no-progress", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be read" in err[0] and "last.ckpt" in err[0]
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_evaluate_a_run_whose_config_no_longer_fits_its_checkpoint(clean_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(clean_run, run)
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("latent_dim: 8", "latent_dim: 16"))
    assert main(["evaluate", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit the network" in err[0] and "config.yaml" in err[0]
