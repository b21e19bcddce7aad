"""Command-line conventions: --version, help and defaults for every option, progress on stderr only (bars at a
terminal, one line per epoch in a log), --quiet / --verbose, `config show`, and --logger."""
from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brainae import __version__
from brainae.cli import build_parser, main, walk_parsers

TINY = ["--data", "phantom:60", "--image-size", "32", "--epochs", "1", "--accelerator", "cpu",
        "--set", "model.channels=[8,16,32]", "--set", "model.latent_dim=16"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def options() -> list[tuple[str, argparse.Action]]:
    """(command, action) for every argument of every command, sub-commands included, but -h."""
    return [(p.prog, a) for p in walk_parsers(build_parser()) for a in p._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def name(prog: str, action: argparse.Action) -> str:
    return f"{prog} {'/'.join(action.option_strings) or action.dest}"


# ---------------------------------------------------------------- --version and --help


@pytest.mark.parametrize("argv", [["--version"], ["-q", "--version"], ["--version", "models"]])
def test_version(capsys, argv):
    # the first two are answered before the parser is built, the last by the parser's own --version
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 0 and out == f"brainae {__version__}\n" and err == ""


def test_every_option_of_every_command_has_help():
    found = options()
    assert {"brainae train", "brainae config show", "brainae data inspect"} <= {prog for prog, _ in found}
    missing = [name(prog, a) for prog, a in found if not (a.help or "").strip()]
    assert not missing, f"options without help text: {missing}"


def test_every_option_shows_its_default():
    """The help says the default in words, or the formatter appends it; flags are off unless given."""
    def shown(a: argparse.Action) -> bool:
        if a.required or a.nargs == 0 or not a.option_strings:  # required, on/off flags, positionals
            return True
        return "default" in (a.help or "") or a.default not in (None, argparse.SUPPRESS)

    missing = [name(prog, a) for prog, a in options() if not shown(a)]
    assert not missing, f"options whose default --help does not show: {missing}"


def test_help_renders_defaults(capsys):
    rc, out, _ = run_cli(capsys, "train", "--help")
    assert rc == 0
    text = " ".join(out.split())  # help is wrapped at the terminal width
    assert "(default: ae)" in text and "(default csv)" in text and "(default 16" in text
    assert "(default: None)" not in text and "(default: False)" not in text


# ---------------------------------------------------------------- progress output


def test_log_file_gets_one_line_per_epoch_and_no_bars(tmp_path):
    """stdout and stderr to files, as in `brainae train ... > log 2>&1`: no carriage returns, under 1 KB."""
    out_file, err_file = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_file, "wb") as out, open(err_file, "wb") as err:
        proc = subprocess.run([sys.executable, "-m", "brainae", "train", *TINY, "--out", str(tmp_path / "run")],
                              stdout=out, stderr=err, timeout=600)
    stdout, stderr = out_file.read_text(), err_file.read_text()
    assert proc.returncode == 0, stderr[-2000:]
    assert len(stdout) + len(stderr) < 1024, stdout + stderr
    assert "\r" not in stdout + stderr
    assert stdout.startswith("trained ae for 1 epochs") and len(stdout.splitlines()) == 1  # results only
    # the run's speed and the precision that set it, which auto chose for this machine
    speed = re.search(r"\(([\d.]+) s an epoch, (\d+) training images/s, precision (32|bf16-mixed)\)", stdout)
    assert speed, stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert float(speed[1]) == float(f"{metrics['seconds_per_epoch']:.3g}")
    assert int(speed[2]) == round(metrics["n_train"] / metrics["seconds_per_epoch"])
    lines = [ln for ln in stderr.splitlines() if ln.startswith("epoch 1/1 ")]
    assert len(lines) == 1 and "train_loss" in lines[0] and "val_loss" in lines[0] and lines[0].endswith(" s")


def test_bars_at_a_terminal_go_to_stderr(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("brainae.progress.bars", lambda: True)  # as when stderr is a terminal
    rc, out, err = run_cli(capsys, "train", *TINY, "--out", tmp_path / "run")
    assert rc == 0
    assert "Epoch 0" in err and "%|" in err  # Lightning's bar
    assert "\r" not in out and "%|" not in out and out.startswith("trained ae")
    assert "epoch 1/1 " not in err  # the bar replaces the line


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_results_only(capsys, tmp_path, where):
    argv = ["--quiet", "train", *TINY] if where == "before" else ["train", *TINY, "--quiet"]
    rc, out, err = run_cli(capsys, *argv, "--out", tmp_path / "run")
    assert rc == 0, err
    assert err == ""
    assert out.startswith("trained ae for 1 epochs") and "epoch 1/1" not in out
    assert (tmp_path / "run" / "history.csv").is_file()


def test_no_progress_still_works(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "train", *TINY, "--no-progress", "--out", tmp_path / "run")
    assert rc == 0 and "epoch 1/1" not in err and "%|" not in err


def test_quiet_and_verbose_parse_before_and_after_the_command(capsys):
    parse = build_parser().parse_args
    assert parse(["--quiet", "train", "--out", "x"]).quiet is True  # the command's default does not reset it
    assert parse(["train", "-q", "--out", "x"]).quiet is True
    assert parse(["data", "inspect", "phantom", "--verbose"]).verbose is True
    assert parse(["models"]).quiet is False
    rc, _, err = run_cli(capsys, "--quiet", "models", "--verbose")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--quiet and --verbose" in err


def test_verbose_lets_lightning_speak():
    from brainae.progress import VERBOSE, set_verbosity
    from brainae.training.train import quiet_lightning

    level = logging.getLogger("lightning.pytorch").level
    previous = set_verbosity(VERBOSE)
    try:
        quiet_lightning()
        assert logging.getLogger("lightning.pytorch").level == logging.INFO
    finally:
        set_verbosity(previous)
        logging.getLogger("lightning.pytorch").setLevel(level)


def test_data_bars_follow_the_rule(monkeypatch, capsys):
    from brainae.progress import bar

    assert list(bar(range(3), desc="x")) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")  # not a terminal: no bar
    monkeypatch.setattr("brainae.progress.bars", lambda: True)
    list(bar(range(3), desc="counting"))
    out, err = capsys.readouterr()
    assert out == "" and "counting" in err


# ---------------------------------------------------------------- config show


def test_config_show_prints_the_resolved_config(capsys, tmp_path):
    from brainae.config import build_config, from_dict, to_dict

    argv = ["--model", "vae", "--preset", "quick", "--epochs", "3", "--logger", "tensorboard",
            "--set", "model.beta=0.25", "--set", "data.normalize=zscore"]
    rc, out, err = run_cli(capsys, "config", "show", *argv)
    assert rc == 0, err
    shown = yaml.safe_load(out)
    assert shown["model"]["name"] == "vae" and shown["model"]["beta"] == 0.25
    assert shown["data"]["normalize"] == "zscore" and shown["train"]["epochs"] == 3
    assert shown["train"]["lr"] == 1e-3 and shown["data"]["image_size"] == 64  # the quick preset's VAE rate
    assert shown["model"]["channels"] == [32, 64] and shown["data"]["spec"] == "phantom:6000"
    assert build_config("vae", "quick").train.epochs == 7 != build_config("ae", "quick").train.epochs  # per model
    assert build_config("ae", "quick").train.lr == 2e-3
    assert shown["train"]["logger"] == "tensorboard"
    expected = build_config("vae", "quick", overrides=["model.beta=0.25", "data.normalize=zscore"], epochs=3,
                            logger="tensorboard")
    assert to_dict(from_dict(shown)) == to_dict(expected)
    # saved, it is a --config file that resolves to the same config
    (tmp_path / "c.yaml").write_text(out)
    rc, again, _ = run_cli(capsys, "config", "show", "--model", "vae", "--config", tmp_path / "c.yaml")
    assert rc == 0 and yaml.safe_load(again) == shown


def test_config_show_refuses_an_unknown_key_in_one_line(capsys):
    rc, out, err = run_cli(capsys, "config", "show", "--set", "train.logr=1")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and "train.logr" in err


# ---------------------------------------------------------------- --logger


def test_study_passes_the_logger_through():
    from brainae.study import study_configs

    assert build_parser().parse_args(["study", "--logger", "wandb", "--out", "x"]).logger == "wandb"
    cfgs = study_configs(None, "quick", None, [], logger="tensorboard")
    assert {c.train.logger for c in cfgs.values()} == {"tensorboard"}


def test_unknown_logger_is_refused(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "train", *TINY, "--set", "train.logger=neptune", "--out", tmp_path / "run")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "train.logger" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("logger, modules", [("tensorboard", ["tensorboard", "tensorboardX"]),
                                             ("mlflow", ["mlflow"]), ("wandb", ["wandb"])])
def test_missing_logger_package_is_one_line(capsys, monkeypatch, tmp_path, logger, modules):
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)  # import machinery: "not installed"
    rc, out, err = run_cli(capsys, "train", *TINY, "--logger", logger, "--out", tmp_path / "run")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("brainae: error: ") and f"pip install 'brainae[{logger}]'" in err
    assert not (tmp_path / "run").exists()  # refused before any data was loaded or written


def test_tensorboard_logger_writes_event_files(capsys, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    rc, out, err = run_cli(capsys, "train", *TINY, "--logger", "tensorboard", "--out", run)
    assert rc == 0, err
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"val_loss", "train_loss_epoch"} <= set(events.Tags()["scalars"])
    assert (run / "history.csv").is_file()  # written whatever the logger: the report reads it
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["logger"] == "tensorboard"


def test_wandb_logger_runs_offline_by_default(capsys, monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    for var in ("WANDB_MODE", "WANDB_DIR", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    run = tmp_path / "run"
    rc, out, err = run_cli(capsys, "train", *TINY, "--logger", "wandb", "--out", run)
    assert rc == 0, err
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))


def test_mlflow_logger_writes_a_local_store(capsys, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    run = tmp_path / "run"
    rc, out, err = run_cli(capsys, "train", *TINY, "--logger", "mlflow", "--out", run)
    assert rc == 0, err
    client = mlflow.MlflowClient(f"sqlite:///{Path(run, 'mlflow.db').resolve()}")
    (logged,) = client.search_runs([client.get_experiment_by_name("brainae").experiment_id])
    assert "val_loss" in logged.data.metrics and logged.info.run_name == "run"


def test_the_flags_table_is_what_train_parses_and_what_build_config_maps():
    """brainae/flags.py is the one list of shortcut flags: each row a config field, each CLI row a --flag
    of train whose value reaches that key."""
    from brainae.config import Config, build_config
    from brainae.flags import FLAGS

    fields = {f"{s}.{name}" for s in ("model", "data", "train") for name in getattr(Config(), s).__dataclass_fields__}
    assert {f.key for f in FLAGS.values()} <= fields
    train = next(p for p in walk_parsers(build_parser()) if p.prog.endswith(" train"))
    dests = {a.dest for a in train._actions}
    assert {n for n, f in FLAGS.items() if f.cli} <= dests
    args = train.parse_args(["--out", "o", "--early-stopping", "3", "--cuda-graphs", "off", "--axis", "1"])
    from brainae.cli.commands import _flat

    cfg = build_config("ae", **_flat(args))
    assert (cfg.train.early_stopping, cfg.train.cuda_graphs, cfg.data.nifti_axis) == (3, "off", 1)


def test_inference_over_many_batches_draws_a_bar(monkeypatch, capsys):
    """evaluate's scoring and the network loop of anomaly, denoise and reconstruct show a bar (at a terminal)
    when there is more than one batch; a single batch passes without one."""
    import numpy as np

    from brainae.config import build_config
    from brainae.evaluation.evaluate import image_metrics, reconstruct
    from brainae.models import build_model

    monkeypatch.setattr("brainae.progress.bars", lambda: True)
    net = build_model(build_config("ae", preset="quick", data="phantom:10").model, 32).eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32), dtype=np.uint8)
    reconstruct(net, images, batch_size=8)
    assert capsys.readouterr().err == ""
    reconstruct(net, images, batch_size=2)
    assert "network" in capsys.readouterr().err
    metrics = image_metrics(net, images, batch_size=2)
    assert "scoring" in capsys.readouterr().err and len(metrics["psnr"]) == 5
