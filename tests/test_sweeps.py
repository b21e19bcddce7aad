"""Sweeps: pruning, resume, shared workers, failed trials, results, bad input, the report section."""
import json

import optuna
import pytest

from brainae.cli import main
from brainae.errors import BrainaeError
from brainae.sweeps.command import sweep_setup
from brainae.sweeps.runner import SweepOptions, open_storage, prepare_study, run_sweep, shares
from brainae.sweeps.space import apply_params, epochs_on_grid, load_space, parse_space
from test_training import tiny_config

TINY = ["model.channels=[8,16,32]", "model.latent_dim=16", "train.batch_size=16"]
SPACE = {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "model.latent_dim": {"type": "categorical", "choices": [8, 16]}}
FIGURES = ["sweep_history.png", "sweep_curves.png", "sweep_parallel.png", "sweep_importance.png"]


def tiny_sweep(tmp_path, trials, space=None, epochs=2, model="ae", **kw):
    cfg = tiny_config(model, epochs=epochs)
    sp = parse_space(space or SPACE)
    sp.epochs = [epochs]
    return cfg, SweepOptions(model, tmp_path / "sw", sp, trials=trials, quiet=True, **kw)


class PruneAllButFirst(optuna.pruners.BasePruner):
    """Deterministic stand-in for hyperband/median: every trial after the first stops after epoch 1."""

    def prune(self, study, trial):
        return trial.number > 0


@pytest.fixture(scope="module")
def sweep4(tmp_path_factory):
    """A 4-trial sweep with pruning, shared by the tests that only read its results."""
    mp = pytest.MonkeyPatch()
    mp.setattr("brainae.sweeps.runner.make_pruner", lambda name, n: PruneAllButFirst())
    cfg, opts = tiny_sweep(tmp_path_factory.mktemp("s4"), 4, pruner="median")
    summary = run_sweep(cfg, opts)
    mp.undo()
    return cfg, opts, summary


def test_sweep_with_pruning_writes_results_figures_and_best_run(sweep4):
    _, opts, s = sweep4
    saved = json.loads((opts.out / "sweep.json").read_text())
    assert saved["n_trials"] == 4 and [t["number"] for t in saved["trials"]] == [0, 1, 2, 3]
    assert saved["states"]["complete"] == 1 and saved["states"]["pruned"] == 3
    pruned = [t for t in saved["trials"] if t["state"] == "pruned" and t["epochs_run"]]
    assert pruned and all(t["epochs_run"] == 1 and t["reason"].startswith("pruned after epoch 1") for t in pruned)
    assert saved["epochs"]["budget"] - saved["epochs"]["run"] == saved["epochs"]["saved"] > 0
    assert all(t["seconds"] is not None and t["intermediate"] for t in saved["trials"] if t["epochs_run"])
    assert saved["best"]["number"] == 0 and set(saved["best"]["params"]) == {"train.lr", "model.latent_dim"}
    for f in FIGURES:
        assert (opts.out / f).stat().st_size > 1000, f
    assert (opts.out / "best" / "checkpoints" / "best.ckpt").is_file()
    assert not list((opts.out / "trials").glob("*/checkpoints"))[1:]  # only the best trial keeps checkpoints


def test_rerun_resumes_the_same_study_and_adds_trials(sweep4):
    cfg, opts, _ = sweep4
    opts.trials = 6
    s = run_sweep(cfg, opts)
    numbers = [t["number"] for t in s["trials"]]
    assert numbers == list(range(6))
    assert len(optuna.get_all_study_names(open_storage(f"sqlite:///{opts.out / 'sweep.db'}"))) == 1


def test_two_workers_share_one_study_without_duplicates(tmp_path):
    cfg, opts = tiny_sweep(tmp_path, 4, epochs=1, workers=2, storage=f"journal:{tmp_path / 'sweep.journal'}",
                           pruner="none", sampler="random")
    s = run_sweep(cfg, opts)
    assert sorted(t["number"] for t in s["trials"]) == [0, 1, 2, 3]
    assert all(t["state"] == "complete" for t in s["trials"])
    assert len({t["run_dir"] for t in s["trials"]}) == 4


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path):
    space = {"train.lr": {"type": "categorical", "choices": [1.0e30, 1.0e-3]}}
    cfg, opts = tiny_sweep(tmp_path, 2, space=space, epochs=1, sampler="grid", pruner="none")
    s = run_sweep(cfg, opts)
    by_lr = {t["params"]["train.lr"]: t for t in s["trials"]}
    assert by_lr[1e30]["state"] == "fail" and by_lr[1e30]["reason"].startswith("diverged: non-finite loss")
    assert by_lr[1e-3]["state"] == "complete" and s["best"]["params"]["train.lr"] == 1e-3


def test_repeated_parameters_reuse_the_earlier_result(tmp_path):
    space = {"train.lr": {"type": "categorical", "choices": [1.0e-3]}}
    cfg, opts = tiny_sweep(tmp_path, 2, space=space, epochs=1, sampler="random", pruner="none")
    s = run_sweep(cfg, opts)
    first, second = s["trials"]
    assert second["value"] == first["value"] and second["epochs_run"] == 0 and "trial 0" in second["reason"]


def test_report_section_shows_spaces_best_configs_and_figures(sweep4):
    from types import SimpleNamespace

    from brainae.report.build import SECTION_MODULES, _env
    from brainae.sweeps.report import sweep_section

    assert "brainae.sweeps.report" in SECTION_MODULES
    _, _, s = sweep4
    assert sweep_section(SimpleNamespace(extras={})) is None
    sec = sweep_section(SimpleNamespace(extras={"sweeps": {"ae": s}}))
    html = _env().get_template(f"sections/{sec.id}.html.j2").render(s=sec, **sec.context)
    assert sec.title == "Hyperparameter search"
    assert "train.lr" in html and "saved <b>" in html and html.count("data:image/png;base64,") == 4
    assert "0.003926" in html  # the study's reported AE best, beside ours


def test_space_files_and_presets(tmp_path):
    assert load_space("seed").max_epochs == 40 and len(load_space("wide", "vae").params) > len(load_space("wide").params)
    cfg = tiny_config()
    apply_params(cfg, {"model.depth": 4, "model.base_width": 8, "train.lr": 0.01})
    assert cfg.model.channels == [8, 16, 32, 64] and cfg.train.lr == 0.01
    assert epochs_on_grid(13, [10, 20, 40]) == 20 and epochs_on_grid(40, [10, 20, 40]) == 40
    assert shares(5, 2) == [3, 2] and sum(shares(61, 4)) == 61
    f = tmp_path / "space.yaml"
    f.write_text("model.channels: {type: categorical, choices: [[8, 16, 32], [16, 32, 64]]}\n"
                 "train.epochs: {type: categorical, choices: [1, 2]}\n")
    sp = load_space(str(f))
    assert sp.epochs == [1, 2] and sp.keys() == ["model.channels"]
    _, opts = sweep_setup("ae", tmp_path / "o", data="phantom:120", preset="quick", space=str(f), trials=2)
    assert opts.space.max_epochs == 8 and opts.trials == 2
    with pytest.raises(BrainaeError, match="model.name"):
        parse_space({"model.name": {"type": "categorical", "choices": ["vae"]}})


@pytest.mark.parametrize("content, message", [
    ("train.lr: {type: float, low: 1e-4\n", "not valid YAML"),
    ("train.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2}\n", "unknown config key 'train.learning_rate'"),
    ("", "is empty"),
    ("train.lr: {type: float, low: 0.1, high: 0.01}\n", "low <= high"),
    ("train.batch_size: {type: categorical, choices: [16, big]}\n", "train.batch_size"),
])
def test_bad_space_files_give_one_line_errors(tmp_path, capsys, content, message):
    f = tmp_path / "space.yaml"
    f.write_text(content)
    code = main(["sweep", "--space", str(f), "--data", "phantom:120", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("brainae: error:")


def test_bad_storage_study_and_options_give_one_line_errors(tmp_path, capsys):
    cfg, opts = sweep_setup("ae", tmp_path / "o", data="phantom:120", preset="quick", study_name="shared")
    prepare_study(cfg, opts, open_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    base = ["sweep", "--data", "phantom:120", "--preset", "quick", "--out", str(tmp_path / "o")]
    cases = [
        (["--model", "vae", "--study", "shared", "--storage", f"sqlite:///{tmp_path / 'o.db'}"], "made with another model"),
        (["--space", "wide", "--study", "shared", "--storage", f"sqlite:///{tmp_path / 'o.db'}"], "another search space"),
        (["--storage", "sqlite:////no/such/folder/sweep.db"], "cannot open sweep storage"),
        (["--storage", "postgresql://user:secret@nohost/db"], "cannot open sweep storage"),
        (["--storage", "journal:/no/such/folder/sweep.log"], "does not exist"),
        (["--sampler", "grid", "--space", "wide"], "categorical keys only"),
        (["--wandb"], "pip install wandb"),
    ]
    for extra, message in cases:
        code = main(base + extra)
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (extra, err)
        assert "secret" not in err


def test_the_readme_space_example_loads(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?train\.epochs.*?)```", readme, re.S).group(1)
    f = tmp_path / "space.yaml"
    f.write_text("\n".join(line.strip() for line in block.splitlines()))
    sp = load_space(str(f))
    assert sp.max_epochs == 40 and "model.depth" in sp.keys() and "train.epochs" not in sp.keys()


def test_sweep_help_explains_every_option(capsys):
    from brainae.cli import build_parser

    parser = build_parser()
    sweep = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "sweep")[1]
    for action in sweep._actions:
        assert action.help, action.option_strings
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = capsys.readouterr().out
    for option in ["--space", "--trials", "--timeout", "--sampler", "--pruner", "--storage", "--study", "--workers",
                   "--preset", "--wandb", "--out"]:
        assert option in out
