"""The error contract, table-driven: every user mistake is one line `brainae: error: ...`, exit code 2, no
traceback, and the outputs already on disk (a trained run, an unrelated file) are left exactly as they were."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from brainae.cli import main

from conftest import fake_slice, write_image

TINY = ["--data", "phantom:60", "--image-size", "32", "--set", "model.channels=[8,16]", "--preset", "quick",
        "--no-progress", "--epochs", "1"]
FAST = ["--data", "phantom:60", "--image-size", "32", "--preset", "quick", "--no-progress", "--epochs", "1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A trained run, an image folder, an unrelated file and broken config files, shared read-only."""
    root = tmp_path_factory.mktemp("bad")
    assert main(["train", *TINY, "--set", "model.latent_dim=8", "--out", str(root / "run")]) == 0
    for c, name in enumerate(("glioma", "no_tumor")):
        for i in range(6):
            write_image(root / "data" / name / f"{name}{i}.png", fake_slice(np.random.default_rng(10 * c + i), 40, 40, c))
    (root / "afile").write_text("keep me\n")
    (root / "bad.yaml").write_bytes(b"train: {lr: \xff\xfe}\n")
    (root / "broken.yaml").write_text("train: {lr: [\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    return root


def _snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "eval" not in p.parts}


CASES = [
    # argument parsing: every flag's type and range, one line instead of a usage block
    ([], "the following arguments are required"),
    (["nosuchcommand"], "invalid choice"),
    (["train", "--model", "nope", "--out", "{tmp}/x"], "invalid choice: 'nope'"),
    (["train", *FAST, "--epochs", "0", "--out", "{tmp}/x"], "--epochs: 0 is below 1"),
    (["train", *FAST, "--epochs", "-1", "--out", "{tmp}/x"], "--epochs: -1 is below 1"),
    (["train", *FAST, "--epochs", "two", "--out", "{tmp}/x"], "'two' is not a whole number"),
    (["train", *FAST, "--batch-size", "0", "--out", "{tmp}/x"], "--batch-size: 0 is below 1"),
    (["train", *FAST, "--lr", "0", "--out", "{tmp}/x"], "positive finite number"),
    (["train", *FAST, "--lr=-1e-3", "--out", "{tmp}/x"], "positive finite number"),
    (["train", *FAST, "--lr", "inf", "--out", "{tmp}/x"], "positive finite number"),
    (["train", *FAST, "--lr", "nan", "--out", "{tmp}/x"], "positive finite number"),
    (["train", *FAST, "--latent-dim", "0", "--out", "{tmp}/x"], "--latent-dim: 0 is below 1"),
    (["train", *FAST, "--latent-dim", "100000000", "--out", "{tmp}/x"], "model.latent_dim' must be 1..65536"),
    (["train", *FAST, "--image-size", "4", "--out", "{tmp}/x"], "--image-size: 4 is below 8"),
    (["train", *FAST, "--seed", "-1", "--out", "{tmp}/x"], "--seed: -1 is below 0"),
    (["train", *FAST, "--devices", "0", "--out", "{tmp}/x"], "--devices: 0 is below 1"),
    (["train", *FAST, "--accelerator", "tpu", "--out", "{tmp}/x"], "invalid choice: 'tpu'"),
    (["train", *FAST, "--precision", "8", "--out", "{tmp}/x"], "invalid choice: '8'"),
    (["train", *FAST, "--limit", "-1", "--out", "{tmp}/x"], "--limit: -1 is below 0"),
    (["train", *FAST, "--early-stopping", "-2", "--out", "{tmp}/x"], "--early-stopping: -2 is below 0"),
    (["train", *FAST, "--optimizer", "sgd", "--out", "{tmp}/x"], "invalid choice: 'sgd'"),
    (["train", *FAST, "--axis", "3", "--out", "{tmp}/x"], "invalid choice: 3"),
    # config keys and values
    (["train", *FAST, "--set", "model.channels=[0,16]", "--out", "{tmp}/x"], "model.channels' must list positive"),
    (["train", *FAST, "--set", "model.in_channels=3", "--out", "{tmp}/x"], "model.in_channels' is 3 but the data has 1"),
    (["train", *FAST, "--set", "model.in_channels=0", "--out", "{tmp}/x"], "model.in_channels' must be at least 1"),
    (["train", *FAST, "--set", "train.weight_decay=-1", "--out", "{tmp}/x"], "train.weight_decay' must be 0 or"),
    (["train", *FAST, "--set", "train.num_workers=-1", "--out", "{tmp}/x"], "train.num_workers' must be 0"),
    (["train", *FAST, "--set", "model.kernel_size=0", "--out", "{tmp}/x"], "must be at least 1"),
    (["train", *FAST, "--set", "train.seed=-5", "--out", "{tmp}/x"], "train.seed' must be in 0..4294967295"),
    (["train", *FAST, "--set", "data.seed=-5", "--out", "{tmp}/x"], "data.seed' must be in 0..4294967295"),
    (["train", *FAST, "--set", "model.beta=-1", "--out", "{tmp}/x"], "model.beta' must be 0 or"),
    (["train", *FAST, "--set", "data.val_fraction=0.9", "--out", "{tmp}/x"], "must leave training data"),
    (["train", *FAST, "--set", "data.normalize=foo", "--out", "{tmp}/x"], "data.normalize' must be none"),
    (["train", *FAST, "--set", "data.near_threshold=99", "--out", "{tmp}/x"], "data.near_threshold' must be 0..32"),
    (["train", *FAST, "--set", "nokey=1", "--out", "{tmp}/x"], "name the section too"),
    (["train", *FAST, "--set", "model.nokey=1", "--out", "{tmp}/x"], "unknown config key 'model.nokey'"),
    (["train", *FAST, "--set", "train.epochs=abc", "--out", "{tmp}/x"], "config key 'train.epochs': expected int"),
    (["train", *FAST, "--set", "train.precision=16-mixed", "--accelerator", "cpu", "--out", "{tmp}/x"],
     "16-mixed needs a GPU"),
    (["train", *FAST, "--noise", "gaussian:abc", "--out", "{tmp}/x"], "gaussian"),
    (["train", *FAST, "--loss", "nope", "--out", "{tmp}/x"], "nope"),
    (["train", *FAST, "--augment", "nope", "--out", "{tmp}/x"], "nope"),
    (["train", *FAST, "--slices", "abc", "--out", "{tmp}/x"], "data.slices 'abc'"),
    (["train", *FAST, "--group-by", "(", "--out", "{tmp}/x"], "not a valid regular expression"),
    (["train", *FAST, "--accelerator", "cuda", "--out", "{tmp}/x"], "has 0 CUDA GPU(s)"),
    # config files: missing, a folder, not UTF-8, not YAML, not a mapping
    (["train", *FAST, "--config", "{tmp}/missing.yaml", "--out", "{tmp}/x"], "not found"),
    (["train", *FAST, "--config", "{tmp}", "--out", "{tmp}/x"], "is a folder"),
    (["train", *FAST, "--config", "{tmp}/bad.yaml", "--out", "{tmp}/x"], "is not UTF-8 text"),
    (["train", *FAST, "--config", "{tmp}/broken.yaml", "--out", "{tmp}/x"], "is not valid YAML"),
    (["train", *FAST, "--config", "{tmp}/list.yaml", "--out", "{tmp}/x"], "must hold a mapping"),
    # data specs
    (["train", *FAST, "--data", "", "--out", "{tmp}/x"], "--data is empty"),
    (["train", *FAST, "--data", "{tmp}/missing", "--out", "{tmp}/x"], "neither an existing folder"),
    (["train", *FAST, "--data", "nosuch:thing", "--out", "{tmp}/x"], "unknown data form"),
    (["train", *FAST, "--data", "phantom:abc", "--out", "{tmp}/x"], "whole number"),
    (["train", *FAST, "--data", "phantom:3", "--out", "{tmp}/x"], "at least 10 slices"),
    (["train", *FAST, "--data", "{tmp}/afile", "--out", "{tmp}/x"], "neither an existing folder"),
    # outputs and runs: nothing already written changes
    (["train", *FAST, "--out", "{tmp}/afile"], "afile is a file"),
    (["train", *FAST, "--out", "{tmp}/run"], "already holds files"),
    (["train", "--resume", "--epochs", "1", "--set", "model.latent_dim=4", "--no-progress", "--out", "{tmp}/run"],
     "does not fit the configured network"),
    (["train", "--resume", "--epochs", "2", "--no-progress", "--out", "{tmp}/run"],
     "over 1 epochs; resume it with --epochs 1"),  # the quick preset's one-cycle schedule spans the run's epochs
    (["train", "--resume", *FAST, "--out", "{tmp}/fresh"], "nothing to resume"),
    (["study", *FAST, "--models", "nope", "--out", "{tmp}/s"], "unknown model 'nope'"),
    (["study", *FAST, "--out", "{tmp}/afile"], "afile is a file"),
    (["study", *FAST, "--epochs", "0", "--out", "{tmp}/s"], "--epochs: 0 is below 1"),
    (["evaluate", "{tmp}/nothere"], "not a brainae run folder"),
    (["evaluate", "{tmp}/data"], "not a brainae run folder"),
    (["evaluate", "{tmp}/run", "--split", "nope"], "invalid choice: 'nope'"),
    (["evaluate", "{tmp}/run", "--data", "{tmp}/missing", "--no-progress"], "neither an existing folder"),
    (["data", "inspect", "{tmp}/missing"], "neither an existing folder"),
    (["data", "inspect", "phantom:60", "--json", "{tmp}", "--no-progress"], "is a folder; name a file"),
    (["data", "inspect", "phantom:60", "--near-threshold", "-1"], "--near-threshold: -1 is below 0"),
    (["data", "inspect", "phantom:60", "--image-size", "2"], "--image-size: 2 is below 8"),
    (["data", "inspect", "{tmp}/data", "--group-by", "^zzz(\\d+)", "--no-progress"], "matches no file name"),
    (["data", "synth", "{tmp}/afile"], "afile is a file"),
    (["data", "synth", "{tmp}/run"], "is not an empty folder"),
    (["data", "synth", "{tmp}/syn", "--subjects", "0"], "--subjects: 0 is below 1"),
    (["data", "synth", "{tmp}/syn", "--layout", "nope"], "invalid choice: 'nope'"),
    (["layers", "{tmp}/run", "--images", "0"], "--images: 0 is below 1"),
    (["layers", "{tmp}/run", "--out", "{tmp}/afile"], "afile is a file"),
    (["latent", "{tmp}/nothere"], "not a brainae run folder"),
    (["denoise", "{tmp}/run", "--limit", "-1"], "--limit: -1 is below 0"),
    (["denoise", "{tmp}/run", "--noise", "nope", "--no-progress"], "nope"),
    (["denoise", "{tmp}/run", "--baselines", "nope", "--no-progress"], "nope"),
    (["anomaly", "{tmp}/run", "--normal", "nope", "--no-progress"], "'nope' is not a class"),
    (["anomaly", "{tmp}/run", "--out", "{tmp}/afile"], "afile is a file"),
    (["reconstruct", "{tmp}/run", "--out", "{tmp}/afile"], "afile is a file"),
    (["reconstruct", "{tmp}/nothere", "--out", "{tmp}/r"], "not a brainae run folder"),
    (["sweep", *FAST, "--trials", "0", "--out", "{tmp}/sw"], "--trials: 0 is below 1"),
    (["sweep", *FAST, "--workers", "0", "--out", "{tmp}/sw"], "--workers: 0 is below 1"),
    (["sweep", *FAST, "--timeout", "0", "--out", "{tmp}/sw"], "positive finite number"),
    (["sweep", *FAST, "--out", "{tmp}/sw", "--sampler", "nope"], "invalid choice: 'nope'"),
    (["sweep", "--model", "nope", "--out", "{tmp}/sw"], "invalid choice: 'nope'"),
    (["sweep", *FAST, "--out", "{tmp}/afile"], "afile is a file"),
]


def _ids():
    return [f"{i:02d}-" + "-".join(a.strip("-") for a in argv[:2] if not a.startswith("{")) for i, (argv, _) in
            enumerate(CASES)]


@pytest.mark.parametrize("argv, expected", CASES, ids=_ids())
def test_user_mistake_is_one_line_and_changes_nothing(base, tmp_path, capsys, argv, expected):
    work = tmp_path / "w"
    shutil.copytree(base, work)
    before = _snapshot(work)
    capsys.readouterr()
    code = main([a.replace("{tmp}", str(work)) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("brainae: error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in out + err
    after = _snapshot(work)
    assert {k: v for k, v in after.items() if k in before} == before  # earlier outputs are untouched
    assert not (work / "x").exists() or not any((work / "x").rglob("*.ckpt"))


def test_at_least_sixty_cases():
    assert len(CASES) >= 60


def test_dangling_links_and_unlistable_folders_are_skipped_and_counted(tmp_path, monkeypatch):
    import os

    from brainae.config import DataConfig
    from brainae.data import folder
    from brainae.data.load import load_data

    root = tmp_path / "data"
    for c, name in enumerate(("glioma", "no_tumor")):
        for i in range(8):
            write_image(root / name / f"{i}.png", fake_slice(np.random.default_rng(10 * c + i), 40, 40, c))
    (root / "glioma" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "glioma" / "locked").mkdir()
    real_walk = os.walk

    def walk(top, onerror=None, **kw):  # as root no folder is unreadable: make one so
        if str(top).endswith("glioma") and onerror:
            onerror(PermissionError(13, "Permission denied", str(root / "glioma" / "locked")))
        yield from real_walk(top, onerror=onerror, **kw)

    monkeypatch.setattr(folder.os, "walk", walk)
    ds = load_data(DataConfig(spec=str(root), image_size=16), progress=False)
    skipped = dict(ds.skipped)
    assert set(skipped) == {str(root / "glioma" / "gone.png"), str(root / "glioma" / "locked")}
    assert "FileNotFoundError" in skipped[str(root / "glioma" / "gone.png")]
    assert "PermissionError" in skipped[str(root / "glioma" / "locked")]
    assert len(ds) == 16


def test_out_on_a_read_only_mount_is_refused_before_any_work(tmp_path, capsys):
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a read-only tmpfs is not permitted here")
    try:
        capsys.readouterr()
        assert main(["train", *FAST, "--out", str(ro / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "read-only or no permission" in err[0]
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
