"""User mistakes on the command line end in one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brainae.cli import main

from conftest import fake_slice, write_image

FAST = ["--epochs", "1", "--limit", "8", "--image-size", "32", "--no-progress", "--accelerator", "cpu"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(capsys, argv: list, *needles) -> str:
    rc, out, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2, (rc, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("brainae: error: "), err
    assert "Traceback" not in err + out
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture
def flat_images(tmp_path) -> Path:
    """A folder with images directly in it, no class sub-folders."""
    root = tmp_path / "flat"
    for i in range(4):
        write_image(root / f"{i}.png", fake_slice(np.random.default_rng(i), 50, 50))
    return root


# ---------------------------------------------------------------- bad --data


def _data_commands(spec: str, tmp_path: Path) -> dict[str, list]:
    return {
        "inspect": ["data", "inspect", spec, "--image-size", "32", "--no-progress"],
        "train": ["train", "--data", spec, "--out", tmp_path / "run", *FAST],
        "study": ["study", "--data", spec, "--out", tmp_path / "study", *FAST],
    }


@pytest.mark.parametrize("command", ["inspect", "train", "study"])
def test_unknown_data_form(command, capsys, tmp_path):
    line = assert_user_error(capsys, _data_commands("foo:bar", tmp_path)[command], "foo:bar")
    assert "phantom" in line  # says what the known forms are
    assert not (tmp_path / "run").exists() and not (tmp_path / "study").exists()  # nothing written


@pytest.mark.parametrize("command", ["inspect", "train", "study"])
def test_missing_data_folder(command, capsys, tmp_path):
    missing = tmp_path / "no-such-folder"
    assert_user_error(capsys, _data_commands(str(missing), tmp_path)[command], missing)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["inspect", "train"])
def test_folder_without_class_subfolders(command, capsys, tmp_path, flat_images):
    line = assert_user_error(capsys, _data_commands(str(flat_images), tmp_path)[command], flat_images)
    assert "class sub-folders" in line
    assert not (tmp_path / "run").exists()


def test_folder_of_unreadable_images(capsys, tmp_path):
    root = tmp_path / "bad"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        (root / cls / "x.jpg").write_bytes(b"garbage")
    assert_user_error(capsys, ["data", "inspect", root, "--no-progress"], root, "no readable images")


# ---------------------------------------------------------------- config keys and files


def test_unknown_override_key(capsys, tmp_path):
    line = assert_user_error(capsys, ["train", "--out", tmp_path / "run", *FAST, "--set", "model.latentdim=3"],
                             "model.latentdim")
    assert "latent_dim" in line  # lists the known keys
    assert not (tmp_path / "run").exists()


def test_unknown_override_section(capsys, tmp_path):
    assert_user_error(capsys, ["train", "--out", tmp_path / "run", *FAST, "--set", "optim.lr=0.1"], "optim")


def test_bad_override_type(capsys, tmp_path):
    assert_user_error(capsys, ["train", "--out", tmp_path / "run", *FAST, "--set", "train.epochs=abc"],
                      "train.epochs", "abc")


@pytest.mark.parametrize("override, needle", [("epochs=3", "epochs"), ("train.epochs", "train.epochs"),
                                              ("data.normalize=gamma", "data.normalize"),
                                              ("train.epochs=0", "train.epochs")])
def test_malformed_or_out_of_range_override(override, needle, capsys, tmp_path):
    assert_user_error(capsys, ["train", "--out", tmp_path / "run", *FAST, "--set", override], needle)


def test_study_rejects_bad_override(capsys, tmp_path):
    assert_user_error(capsys, ["study", "--out", tmp_path / "s", *FAST, "--set", "model.latentdim=3"],
                      "model.latentdim")


def test_config_file_unknown_key(capsys, tmp_path):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("train:\n  epochs: 2\n  epochz: 3\n")
    assert_user_error(capsys, ["train", "--config", cfg, "--out", tmp_path / "run", *FAST], "train.epochz")
    assert not (tmp_path / "run").exists()


def test_config_file_invalid_yaml(capsys, tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("train:\n  epochs: [1, 2\n  lr: 0.1\n")
    assert_user_error(capsys, ["train", "--config", cfg, "--out", tmp_path / "run", *FAST], cfg, "YAML")


def test_config_file_not_a_mapping_or_missing(capsys, tmp_path):
    cfg = tmp_path / "list.yaml"
    cfg.write_text("- 1\n- 2\n")
    assert_user_error(capsys, ["train", "--config", cfg, "--out", tmp_path / "run", *FAST], cfg)
    missing = tmp_path / "missing.yaml"
    assert_user_error(capsys, ["train", "--config", missing, "--out", tmp_path / "run", *FAST], missing)


# ---------------------------------------------------------------- run folders


def test_evaluate_not_a_run_folder(capsys, tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    assert_user_error(capsys, ["evaluate", folder, "--no-progress"], folder, "run folder")
    assert not (folder / "eval").exists()
    assert_user_error(capsys, ["evaluate", tmp_path / "missing", "--no-progress"], tmp_path / "missing")


def test_resume_into_empty_folder(capsys, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert_user_error(capsys, ["train", "--resume", "--out", out, *FAST], out, "resume")
    assert list(out.iterdir()) == []


def test_out_folder_already_has_files(capsys, tmp_path):
    out = tmp_path / "used"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert_user_error(capsys, ["train", "--out", out, *FAST], out, "--resume")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"


# ---------------------------------------------------------------- help and models


HELP = {
    (): ["study", "train", "evaluate", "data", "models"],
    ("study",): ["--out", "--data", "--preset", "--config", "--set", "--epochs", "--limit"],
    ("train",): ["--model", "--out", "--resume", "--data", "--preset", "--set", "--epochs"],
    ("evaluate",): ["RUN_DIR", "--data", "--split"],
    ("data",): ["inspect"],
    ("data", "inspect"): ["SPEC", "--image-size", "--near-threshold", "--json"],
    ("models",): ["usage: brainae models"],
}


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: " ".join(c) or "top")
def test_help(command, capsys):
    capsys.readouterr()
    code = main([*command, "--help"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    for option in HELP[command]:
        assert option in out, (option, out)


def test_models_lists_ae_and_vae(capsys):
    rc, out, err = run_cli(capsys, "models")
    assert rc == 0 and err == ""
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert {"ae", "vae"} <= set(names)
    for line in out.splitlines():
        assert len(line.split(maxsplit=1)) == 2, line  # every model has a one-line description


def test_argparse_usage_errors_exit_2(capsys):
    assert main(["train"]) == 2  # --out is required
    err = capsys.readouterr().err
    assert "--out" in err and err.count("\n") == 1 and err.startswith("brainae: error: train:")
    assert main(["train", "--out", "x", "--model", "gan"]) == 2
    err = capsys.readouterr().err
    assert "gan" in err and err.count("\n") == 1 and "usage:" not in err


def test_python_dash_m_brainae(tmp_path):
    env = {**os.environ, "BRAINAE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "brainae", "--help"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "usage: brainae" in proc.stdout and "study" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "brainae", "data", "inspect", "foo:bar", "--no-progress"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("brainae: error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_config_file_error_names_the_file(tmp_path, capsys):
    bad = tmp_path / "exp.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    assert main(["train", "--config", str(bad), "--data", "phantom:40", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "exp.yaml" in err and "train.epochz" in err


def test_split_folders_without_train_are_refused(tmp_path, capsys):
    for split in ("val", "test"):
        d = tmp_path / "data" / split / "a"
        d.mkdir(parents=True)
    assert main(["data", "inspect", str(tmp_path / "data"), "--no-progress"]) == 2
    assert "no Training/train folder" in capsys.readouterr().err
