"""Sweeps: pruning, resume, shared workers, dead workers, failed trials, results, W&B, bad input,
the report section."""
import json
import multiprocessing as mp
import os
import signal
import struct
import time

import optuna
import pytest

from brainae.cli import main
from brainae.config import load_preset
from brainae.errors import BrainaeError
from brainae.sweeps.command import format_summary, sweep_setup
from brainae.sweeps.runner import run_sweep, shares
from brainae.sweeps.space import _check_param, apply_params, epochs_on_grid, load_space, model_params, parse_space, seed_space
from brainae.sweeps.study import SweepOptions, make_sampler, open_storage, prepare_study
from test_training import tiny_config

TINY = ["model.channels=[8,16,32]", "model.latent_dim=16", "train.batch_size=16"]
TINY_CLI = TINY + ["data.image_size=32", "train.accelerator=cpu"]
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
    for ckpt in ("best.ckpt", "last.ckpt"):  # best/ links the trial's checkpoints: one copy on disk
        assert (opts.out / "best" / "checkpoints" / ckpt).samefile(opts.out / "trials" / "0000" / "checkpoints" / ckpt)
    assert not (opts.out / "best" / "config.yaml").samefile(opts.out / "trials" / "0000" / "config.yaml")
    assert (opts.out / "best" / "weights" / "best.safetensors").is_file()  # written for the copy alone
    assert not list((opts.out / "trials").glob("*/weights"))


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


def _stuck_worker(cfg, opts):
    """A worker whose first trial never ends (its training sleeps), so it can be killed while RUNNING."""
    import brainae.sweeps.objective

    brainae.sweeps.objective.train = lambda *args, **kwargs: time.sleep(600)
    run_sweep(cfg, opts)


def _running_trials(opts, timeout=120.0):
    url = f"sqlite:///{opts.out / 'sweep.db'}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not (opts.out / "sweep.db").is_file():  # the worker creates it
            time.sleep(0.5)
            continue
        try:
            study = optuna.load_study(study_name=opts.name, storage=open_storage(url, opts.heartbeat))
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            # a trial is RUNNING before the worker has drawn its parameters: a worker killed in between leaves
            # a trial without them, which is not what these tests kill
            if running and all(t.params for t in running):
                return running
        except KeyError:  # the worker has not created the study yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"no trial started running within {timeout} s")


@pytest.mark.slow  # Optuna's heartbeats are wall-clock seconds in the database: no clock to inject, and it flaked in CI
def test_a_killed_workers_trial_is_failed_by_heartbeat_and_retried(tmp_path):
    cfg, opts = tiny_sweep(tmp_path, 2, epochs=1, pruner="none", sampler="random", heartbeat=1)
    worker = mp.get_context("spawn").Process(target=_stuck_worker, args=(cfg, opts))
    worker.start()
    try:
        assert [t.number for t in _running_trials(opts)] == [0]
        time.sleep(1.5)  # a heartbeat or two recorded
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.join()
    # past the grace period (2 heartbeats of 1 s) for certain: SQLite stores heartbeats in whole
    # seconds, and the last beat may have come just before the kill, so 2.5 s was not always enough
    time.sleep(4.0)

    s = run_sweep(cfg, opts)
    dead, retry, new = s["trials"]
    assert dead["state"] == "fail" and "stopped sending heartbeats; retried as trial 1" in dead["reason"]
    assert retry["retry_of"] == 0 and retry["params"] == dead["params"]
    assert retry["state"] == "complete" and retry["epochs_run"] == 1 and retry["run_dir"].endswith("0001")
    # the dead worker's trial does not use up the budget: 2 trials ran besides it
    assert new["state"] == "complete" and new["retry_of"] is None
    assert s["states"] == {"complete": 2, "pruned": 0, "fail": 1, "running": 0, "waiting": 0}
    assert "1 retried after their worker stopped" in format_summary(s)
    assert run_sweep(cfg, opts)["n_trials"] == 3  # and a rerun finds the study complete


def _wandb_records(path):
    """The protobuf records of an offline ``run-*.wandb`` file: a 7-byte file header, then 32 KiB
    blocks of chunks, each with a 7-byte header (CRC32, length, type: 1 whole, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw, pos, chunks = path.read_bytes(), 7, b""
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        room = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7]) if room >= 7 else (0, 0, 0)
        if kind == 0:  # block padding
            pos += room
            continue
        chunks += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def _wandb_run(path):
    """name, config, history rows and summary of one offline run file (values decoded from JSON)."""
    run = {"config": {}, "history": [], "summary": {}}
    for r in _wandb_records(path):
        kind = r.WhichOneof("record_type")
        items = {"run": lambda: r.run.config.update, "config": lambda: r.config.update,
                 "history": lambda: r.history.item, "summary": lambda: r.summary.update}.get(kind, lambda: [])()
        values = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
        if kind == "run":
            run["name"] = r.run.display_name
        if kind in ("run", "config"):
            run["config"].update(values)
        elif kind == "history":
            run["history"].append(values)
        elif kind == "summary":
            run["summary"].update(values)
    return run


def test_wandb_logs_every_trial_as_an_offline_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install -e '.[test]' installs it)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))  # nothing written outside tmp_path, no login
    (tmp_path / "wandb-dir").mkdir()
    out = tmp_path / "sw"
    code = main(["sweep", "--model", "ae", "--data", "phantom:120", "--preset", "quick", "--epochs", "2",
                 "--trials", "2", "--sampler", "grid", "--pruner", "none", "--space", str(_lr_space(tmp_path)),
                 "--wandb", "--no-progress", "--out", str(out)] + [a for kv in TINY_CLI for a in ("--set", kv)])
    assert code in (0, None), capsys.readouterr().err
    trials = {f"trial-{t['number']}": t for t in json.loads((out / "sweep.json").read_text())["trials"]}
    files = sorted((tmp_path / "wandb-dir" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and not (out / "wandb").exists()
    for run in map(_wandb_run, files):
        t = trials[run["name"]]
        assert run["config"]["train.lr"] == t["params"]["train.lr"]
        assert [h["_step"] for h in run["history"]] == [1, 2]
        assert [h["val_loss"] for h in run["history"]] == pytest.approx(list(t["intermediate"].values()))
        assert run["summary"]["state"] == "complete" and run["summary"]["value"] == pytest.approx(t["value"])
        assert run["summary"]["epochs_run"] == 2


def test_wandb_missing_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # as if not installed
    code = main(["sweep", "--data", "phantom:120", "--preset", "quick", "--wandb", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install wandb" in err and err.count("\n") == 1


def _lr_space(tmp_path):
    f = tmp_path / "lr.yaml"
    f.write_text("train.lr: {type: categorical, choices: [1.0e-3, 5.0e-4]}\n")
    return f


def test_report_section_shows_spaces_best_configs_and_figures(sweep4):
    from types import SimpleNamespace

    from brainae.report.build import SECTION_MODULES, _env
    from brainae.report.sections.sweeps import sweep_section

    assert "brainae.report.sections.sweeps" in SECTION_MODULES
    _, _, s = sweep4
    assert sweep_section(SimpleNamespace(extras={})) is None
    sec = sweep_section(SimpleNamespace(extras={"sweeps": {"ae": s}}))
    html = _env().get_template(f"sections/{sec.id}.html.j2").render(s=sec, **sec.context)
    assert sec.title == "Hyperparameter search"
    from report_html import report_sections

    parsed = report_sections(f'<section id="{sec.id}">{html}</section>')[sec.id]
    best = {r["setting"]: r for r in parsed.table_with("setting")}
    assert best["train.lr"]["AE (study)"] == "0.0005" and best["train.lr"]["AE (ours)"] not in ("", "–")
    assert best["the study's best training loss (training split, its own units)"]["AE (study)"].startswith("0.003926")
    assert "saved" in parsed.text and parsed.images == 4  # the epochs pruning saved; the four figures


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
    assert opts.space.max_epochs == load_preset("quick", "ae")["train"]["epochs"] and opts.trials == 2
    with pytest.raises(BrainaeError, match="model.name"):
        parse_space({"model.name": {"type": "categorical", "choices": ["vae"]}})


@pytest.mark.parametrize("model", ["ae", "vae", "resae", "resvae", "skipae", "unet"])
def test_wide_space_adds_the_keys_each_model_has(model):
    keys = load_space("wide", model).keys()
    for p in load_space("wide", model).params:
        _check_param(p)  # every key is a config key and every choice fits its type
    assert {"model.depth", "train.optimizer", "train.schedule", "train.weight_decay"} <= set(keys)
    assert ("model.beta" in keys) == (model in ("vae", "resvae"))
    assert ("model.blocks" in keys) == (model in ("resae", "resvae", "skipae", "unet"))
    assert ("model.skips" in keys) == (model == "skipae")
    assert ("model.bottleneck" in keys) == (model in ("resae", "skipae"))
    assert "train.loss" not in keys and len(keys) == len(set(keys))


def test_a_model_registered_later_gets_the_searches_its_contract_declares(monkeypatch):
    """The registry, not a table in the sweeps, says what a model's wide space holds."""
    from brainae import registry
    from dataclasses import dataclass

    from brainae.models.vae import build_vae

    @dataclass
    class LaterArgs:  # no kernel_size: never searched for it
        latent_dim: int = 16
        blocks: int = 1
        beta: float = 1.0

    spec = registry.ModelSpec("laterae", build_vae, LaterArgs, variational=True, search={"model.blocks": [1, 2, 3]},
                              source="a-plugin")
    monkeypatch.setitem(registry._MODELS, "laterae", spec)
    keys = load_space("wide", "laterae").keys()
    assert "model.beta" in keys and "model.blocks" in keys  # variational: its KL weight is searched too
    assert "model.kernel_size" not in keys and "model.skips" not in keys
    assert load_space("seed", "laterae").keys() == ["train.lr", "train.batch_size", "model.latent_dim"]


def test_list_valued_choices_round_trip_through_optuna():
    skips = next(p for p in model_params("skipae") if p.key == "model.skips")
    assert skips.suggest(optuna.trial.FixedTrial({"model.skips": "[0, 1]"})) == [0, 1]
    cfg = apply_params(tiny_config(), {"model.skips": [0, 1], "model.blocks": 2, "train.optimizer": "adamw"})
    assert cfg.model.skips == [0, 1] and cfg.model.blocks == 2 and cfg.train.optimizer == "adamw"


def test_sweep_accepts_every_registered_model():
    from brainae.cli import build_parser
    from brainae.models import model_names

    parser = build_parser()
    for name in model_names():
        assert parser.parse_args(["sweep", "--model", name, "--out", "o"]).model == name


@pytest.mark.parametrize("content, message", [
    ("train.lr: {type: float, low: 1e-4\n", "not valid YAML"),
    ("train.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2}\n", "unknown config key 'train.learning_rate'"),
    ("", "is empty"),
    ("train.lr: {type: float, low: 0.1, high: 0.01}\n", "low <= high"),
    ("train.batch_size: {type: categorical, choices: [16, big]}\n", "train.batch_size"),
    ("train.loss: {type: categorical, choices: [mse, l1]}\n", "'train.loss' cannot be searched"),
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
    assert main(["sweep", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ["--space", "--trials", "--timeout", "--sampler", "--pruner", "--storage", "--study", "--workers",
                   "--preset", "--wandb", "--out"]:
        assert option in out


def test_spaces_leave_out_keys_a_model_does_not_read():
    from brainae.sweeps.space import load_space

    assert "model.latent_dim" in [p.key for p in load_space("seed", "ae").params]
    for spec in ("seed", "wide", "quick"):
        assert "model.latent_dim" not in [p.key for p in load_space(spec, "unet").params]


def test_study_preset_seed_runs_the_studys_sweeps_and_trains_with_their_best(tmp_path, monkeypatch):
    """brainae study --preset seed: 17 AE and 61 VAE trials over the study's grid with a 40-epoch budget,
    pruned by the default pruner; the best settings (and epochs on the grid) replace the preset's.
    The sweep itself is replaced here (hours on a CPU); what it is asked to do is checked."""
    from brainae.config import build_config
    from brainae.sweeps import runner
    from brainae.sweeps.command import study_sweeps

    asked = {}

    def fake_run_sweep(cfg, opts, data=None):
        asked[opts.model] = opts
        best = {"train.lr": 1e-4, "train.batch_size": 64, "model.latent_dim": 2048}
        return {"best": {"params": best, "epochs": 20, "value": 0.01}, "trials": [], "epochs": {}}

    monkeypatch.setattr(runner, "run_sweep", fake_run_sweep)
    cfgs = {m: build_config(m, preset="seed") for m in ("ae", "vae")}
    results = study_sweeps(cfgs, data=None, out=tmp_path, preset="seed", progress=False)
    assert asked["ae"].trials == 17 and asked["vae"].trials == 61
    for m, opts in asked.items():
        assert (opts.sampler, opts.pruner) == ("tpe", SweepOptions(m, tmp_path, opts.space).pruner) == ("tpe", "sha")
        assert {p.key for p in opts.space.params} == {"train.lr", "train.batch_size", "model.latent_dim"}
        assert max(opts.space.epochs) == 40 and results[m]["applied"]
        assert (cfgs[m].train.lr, cfgs[m].train.batch_size, cfgs[m].model.latent_dim, cfgs[m].train.epochs) == \
            (1e-4, 64, 2048, 20)


def test_study_preset_quick_sweeps_a_small_slice_and_keeps_the_presets_settings(tmp_path, monkeypatch):
    """The quick demonstration: one-epoch trials on the first 64 training and 192 validation images only
    (validating the whole split every trial took most of the main job's sweep time); nothing is applied."""
    from brainae.config import build_config
    from brainae.data.load import load_data
    from brainae.sweeps import runner
    from brainae.sweeps.command import QUICK_TRAIN_IMAGES, QUICK_VAL_IMAGES, study_sweeps

    seen = {}

    def fake_run_sweep(cfg, opts, data=None):
        seen[opts.model] = (opts, data)
        return {"best": {"params": {"train.lr": 1e-4}, "epochs": 1, "value": 0.01}, "trials": [], "epochs": {}}

    monkeypatch.setattr(runner, "run_sweep", fake_run_sweep)
    cfgs = {m: build_config(m, preset="quick", data="phantom:1400", image_size=16) for m in ("ae", "vae")}
    full = load_data(cfgs["ae"].data, progress=False)
    assert (full.splits == "val").sum() > QUICK_VAL_IMAGES and (full.splits == "train").sum() > QUICK_TRAIN_IMAGES
    results = study_sweeps(cfgs, full, tmp_path, "quick", progress=False)
    for m, (opts, data) in seen.items():
        assert (data.splits == "train").sum() == QUICK_TRAIN_IMAGES and (data.splits == "val").sum() == QUICK_VAL_IMAGES
        assert not (data.splits == "test").any() and opts.trials == 3 and max(opts.space.epochs) == 1
        assert not results[m]["applied"] and cfgs[m].train.lr == {"ae": 2e-3, "vae": 1e-3}[m]  # the preset's, not the sweep's


def test_opening_a_new_database_survives_a_worker_that_made_the_tables_first(tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    real, calls = optuna.storages.RDBStorage, []

    def racing(url, **kw):  # the first try loses the race to create the tables, as a second worker can
        calls.append(url)
        if len(calls) == 1:
            raise OperationalError("CREATE TABLE studies", {}, Exception("table studies already exists"))
        return real(url, **kw)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    assert open_storage(f"sqlite:///{tmp_path / 'sweep.db'}", heartbeat=1) is not None and len(calls) == 2

    def broken(url, **kw):  # any other database error is not retried and stays one line
        calls.append(url)
        raise OperationalError("connect", {}, Exception("unable to open database file"))

    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(BrainaeError, match="cannot open sweep storage .*unable to open database file"):
        open_storage(f"sqlite:///{tmp_path / 'other.db'}")
    assert len(calls) == 1


@pytest.mark.parametrize("seed", [0, 7, None])
def test_grid_search_visits_every_point_of_the_studys_grid_once(seed):
    """27 trials cover the 27 points; a sweep restarted on the same storage goes on with the points left."""
    space = seed_space()
    storage = optuna.storages.InMemoryStorage()

    def run(trials):
        study = optuna.create_study(study_name="g", storage=storage, load_if_exists=True,
                                    sampler=make_sampler("grid", space, seed, 27))
        study.optimize(lambda t: float(len([p.suggest(t) for p in space.params])), n_trials=trials)
        return [tuple(sorted(t.params.items())) for t in study.trials]

    run(10)  # then a restart with a fresh sampler object
    points = run(17)
    assert len(points) == 27 and len(set(points)) == 27
