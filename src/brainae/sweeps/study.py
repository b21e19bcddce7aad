"""The Optuna study behind a sweep: its options, storage, sampler and pruner, and how it is created,
resumed and checked.

Storage: ``sqlite:///DIR/sweep.db`` by default, so running the same command again resumes the
study. Any SQLAlchemy URL (PostgreSQL, MySQL) or a journal file (``journal:PATH``, or a path ending
in .log/.journal) lets workers on many machines share one study. RDB storages keep a heartbeat:
a running trial whose worker has been silent for two heartbeats is marked failed and retried once
(see ``fail_stale``); a worker on this machine found dead is handled at once (``owners``).
One --out folder holds one study (``check_out``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from brainae.config import Config, to_dict
from brainae.errors import BrainaeError
from brainae.io import write_json
from brainae.sweeps.owners import RETRIES, Retry, stamp
from brainae.sweeps.space import Space

SAMPLERS = ("tpe", "gp", "random", "grid")
PRUNERS = ("sha", "hyperband", "median", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# heartbeats, multivariate TPE and the retry callback are "experimental" in Optuna 5 and warn on every use
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class SweepOptions:
    """What ``brainae sweep`` asks for; ``trials`` is the study's total, not the number added."""

    model: str
    out: Path
    space: Space
    trials: int = 20
    timeout: Optional[float] = None
    sampler: str = "tpe"
    pruner: str = "sha"
    storage: Optional[str] = None
    study_name: Optional[str] = None
    workers: int = 1
    trials_per_device: int = 0  # >0: this many workers per GPU (per CPU when there is none), overriding workers
    seed: Optional[int] = 0
    wandb: bool = False
    quiet: bool = False
    heartbeat: int = 60  # seconds; a trial silent for 2x this is failed and retried

    @property
    def name(self) -> str:
        return self.study_name or f"brainae-{self.model}"


def budget(cfg: Config, space: Space) -> int:
    """Epochs every trial may train: the space's largest ``train.epochs``, else the config's."""
    return space.max_epochs if space.epochs else cfg.train.epochs


def check_options(opts: SweepOptions) -> None:
    """Refuse budgets that cannot mean what they say (``--trials 0`` used to run nothing, a
    negative or zero ``--epochs`` to train without end or for 40 epochs), before any work."""
    checks = [(opts.trials >= 1, "--trials", "at least 1 (the study's total)", opts.trials),
              (opts.workers >= 1, "--workers", "at least 1", opts.workers),
              (opts.trials_per_device >= 0, "--trials-per-device", "at least 1 (or 0: use --workers)", opts.trials_per_device),
              (opts.timeout is None or opts.timeout > 0, "--timeout", "more than 0 seconds (leave it out for no limit)",
               opts.timeout)]
    if opts.space.epochs:
        checks.append((min(opts.space.epochs) >= 1, "--epochs", "at least 1 (each trial's epoch budget)",
                       min(opts.space.epochs)))
    for ok, flag, need, value in checks:
        if not ok:
            raise BrainaeError(f"{flag} must be {need}; got {value}")


# ---------------------------------------------------------------- storage


def storage_url(storage: Optional[str], out: Path) -> str:
    return storage or f"sqlite:///{(out / 'sweep.db').resolve()}"


def redact(url: str) -> str:
    """The URL without its password, for logs and sweep.json."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".journal"))


def open_storage(url: str, heartbeat: int = 60) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; unreachable or malformed URLs give one BrainaeError line."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend
    from sqlalchemy.exc import IntegrityError, OperationalError

    try:
        if is_journal(url):
            path = Path(url.removeprefix("journal:"))
            if not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if "://" not in url:
            raise ValueError("expected a SQLAlchemy URL such as sqlite:///sweep.db or postgresql://host/db, "
                             "or journal:FILE")
        for attempt in range(3):
            try:
                with warnings.catch_warnings():  # pytest and -W flags reset the module-level filter
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return RDBStorage(with_driver(url), heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                                      heartbeat_stale_trial_callback=Retry(max_retry=RETRIES))
            except (IntegrityError, OperationalError) as e:
                # workers started together on a new database race to create its tables; the loser
                # sees a duplicate row or "table ... already exists" and finds them made a moment later
                lost_race = isinstance(e, IntegrityError) or "already exists" in str(e)
                if attempt == 2 or not lost_race:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        missing = _missing_module(e)
        if missing in DRIVERS:
            first = f"the database driver '{missing}' is not installed: {DRIVERS[missing]}"
        raise BrainaeError(f"cannot open sweep storage {redact(url)}: {type(e).__name__}: {first}") from None


DRIVERS = {"psycopg": "pip install 'psycopg[binary]' (or psycopg2-binary)", "psycopg2": "pip install psycopg2-binary",
           "pymysql": "pip install pymysql", "MySQLdb": "pip install mysqlclient"}


def with_driver(url: str) -> str:
    """``postgresql://`` with whichever PostgreSQL driver is installed. SQLAlchemy 2.1 made psycopg
    (version 3) the default where 2.0 used psycopg2, so the same URL needed a different package
    depending on the SQLAlchemy version; either driver works with Optuna."""
    from importlib.util import find_spec

    if url.startswith("postgresql://") and find_spec("psycopg") is None and find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _missing_module(e: BaseException) -> Optional[str]:
    while e is not None:  # Optuna wraps the driver's ModuleNotFoundError in an ImportError of its own
        if isinstance(e, ModuleNotFoundError):
            return e.name
        e = e.__cause__ or e.__context__
    return None


def load_study(opts: SweepOptions, **kwargs) -> optuna.Study:
    """The study in ``opts``' storage (after ``prepare_study`` created it); kwargs go to optuna.load_study."""
    storage = open_storage(storage_url(opts.storage, opts.out), opts.heartbeat)
    return optuna.load_study(study_name=opts.name, storage=storage, **kwargs)


# ---------------------------------------------------------------- sampler and pruner


class TrialSampler(optuna.samplers.BaseSampler):
    """The chosen sampler, made afresh for every trial with a seed drawn from (seed, trial number).

    Trial numbers are unique in a study, so no two trials share a random stream: not two workers,
    not two machines, not a sweep restarted after a crash (with one fixed seed, a restarted sampler
    drew the first trials' points again). TPE and GP refit on the study's trials for every trial
    and random keeps nothing between trials, so a fresh sampler per trial changes nothing else.
    ``per_trial=False`` keeps the first sampler for every trial (grid search: see make_sampler).
    Before it samples, each trial records its owner (``owners.stamp``), so a crash at any
    later moment leaves a running trial whose worker can be checked.
    """

    def __init__(self, make, seed: Optional[int], per_trial: bool = True) -> None:
        self._make, self._seed, self._per_trial = make, seed, per_trial
        self._number, self._inner = None, make(seed)  # made once here so bad choices fail at once

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if self._per_trial and trial.number != self._number:
            seed = None if self._seed is None else int(np.random.SeedSequence([self._seed, trial.number]).generate_state(1)[0])
            self._number, self._inner = trial.number, self._make(seed)
        return self._inner

    def before_trial(self, study, trial):
        stamp(study, trial)
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def make_sampler(name: str, space: Space, seed: Optional[int], trials: int) -> TrialSampler:
    """The sampler ``name`` behind a TrialSampler (see there for how it is seeded).

    Grid search keeps one sampler for all trials: its seed shuffles the grid once, and trial n takes
    point n of that order (then any unvisited point), so a sampler shuffled afresh per trial repeated
    points and skipped others (20 of the study's 27 in 27 trials). One order also survives restarts.
    """
    return TrialSampler(functools.partial(_sampler, name, space, trials=trials), seed, per_trial=name != "grid")


def _sampler(name: str, space: Space, seed: Optional[int], trials: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # a third of the trials (3 to 10) explore at random before TPE models the good region
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, trials // 3)),
                                          multivariate=True, constant_liar=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(3, min(10, trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if not space.is_categorical():
            ranged = [p.key for p in space.params if p.type != "categorical"]
            raise BrainaeError(f"--sampler grid needs categorical keys only; {', '.join(ranged)} are ranges")
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    raise BrainaeError(f"unknown sampler '{name}' (choose from {', '.join(SAMPLERS)})")


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
    if name == "sha":
        # Asynchronous successive halving: after 1, 4, 16, ... epochs a trial goes on only if it is among
        # the best quarter of the trials that reached that epoch. Hyperband runs several such ladders
        # with later first rungs as a hedge against misleading early epochs; on the study's AE one
        # ladder from epoch 1 found the same best for about 60% of Hyperband's epochs (81 against 129)
        # (benchmarks/sweep_efficiency.py).
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4)
    if name == "median":
        # From the first epoch on, stop a trial whose best loss so far is worse than the median of the
        # complete trials at the same epoch, once two have completed. Only complete trials set the bar,
        # so a trial better than half of them runs in full; stricter percentiles or start-ups lost the
        # best configuration on some seeds (benchmarks/sweep_efficiency.py).
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise BrainaeError(f"unknown pruner '{name}' (choose from {', '.join(PRUNERS)})")


# ---------------------------------------------------------------- the study


def config_fingerprint(cfg: Config) -> str:
    """Everything that changes the objective except the searched keys and machine settings."""
    d = to_dict(cfg)
    # keys added later (logger, deterministic) are dropped too, so studies stored before them still resume
    for k in ("progress", "accelerator", "devices", "num_workers", "logger", "deterministic"):
        d["train"].pop(k, None)
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def prepare_study(cfg: Config, opts: SweepOptions, storage) -> optuna.Study:
    """Create the study or load it to resume; refuse a name already used by another model or space."""
    attrs = {"brainae_model": opts.model, "brainae_space": opts.space.fingerprint(),
             "brainae_config": config_fingerprint(cfg)}
    study = optuna.create_study(study_name=opts.name, storage=storage, direction="minimize", load_if_exists=True)
    old = study.user_attrs
    if "brainae_model" not in old:
        if study.trials:
            raise BrainaeError(f"study '{opts.name}' exists and was not made by brainae sweep; choose another --study")
        for k, v in attrs.items():
            study.set_user_attr(k, v)
        study.set_user_attr("brainae_space_table", opts.space.table())
        return study
    what = [label for key, label in [("brainae_model", "model"), ("brainae_space", "search space"),
                                     ("brainae_config", "data/training settings")] if old.get(key) != attrs[key]]
    if what:
        raise BrainaeError(f"study '{opts.name}' was made with another {' and '.join(what)} "
                           f"(model {old['brainae_model']}); choose another --study name or --out folder")
    return study


def fail_stale(study: optuna.Study) -> None:
    """Fail the running trials of dead workers now (RDB storages), so their retries are queued.

    Optuna does this itself before each trial; doing it before counting the study's trials lets a
    rerun see the dead worker's trial as failed-and-retried rather than as still running.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def retried_by(trials: list[FrozenTrial]) -> dict[int, int]:
    """Failed trial number -> the number of the trial that retries it (heartbeat retries only)."""
    return {t.system_attrs["retry_history"][-1]: t.number for t in trials if t.system_attrs.get("retry_history")}


def counted(trials: list[FrozenTrial]) -> int:
    """Trials that count towards ``--trials``: finished or running, except failures queued for a retry
    (a dead worker does not use up the budget; its retry, once run, counts instead)."""
    retried = retried_by(trials)
    return sum(t.state == TrialState.RUNNING or (t.state in FINISHED and t.number not in retried) for t in trials)


# ---------------------------------------------------------------- the --out folder

OWNER_FILE = "sweep_study.json"


def _out_record(opts: SweepOptions) -> dict:
    # the default storage is named by None, not by its absolute path, so a moved folder still resumes
    return {"study": opts.name, "model": opts.model, "storage": redact(opts.storage) if opts.storage else None}


def check_out(opts: SweepOptions) -> None:
    """One --out folder holds one study: refuse, before anything is written, a sweep of another
    study (another --model, --study or --storage) into a folder that holds one, since it would
    overwrite the first one's sweep.json, figures, best/ and trial folders. The same command resumes."""
    path = opts.out / OWNER_FILE
    try:
        held = json.loads(path.read_text())
    except FileNotFoundError:  # folders written before this file existed name their study in sweep.json
        try:
            held = {k: json.loads((opts.out / "sweep.json").read_text()).get(k) for k in ("study", "model")}
        except (OSError, ValueError):
            return
    except ValueError:
        raise BrainaeError(f"{path} is not valid JSON; restore it or choose another --out") from None
    mine = _out_record(opts)
    if any(k in held and held[k] != mine[k] for k in ("study", "storage")):
        where = f" in {held['storage']}" if held.get("storage") else ""
        raise BrainaeError(f"{opts.out} holds the sweep of study '{held.get('study')}' (model {held.get('model')}){where}; "
                           f"one folder holds one study: choose another --out, or rerun that study's command to resume it")


def claim_out(opts: SweepOptions) -> None:
    """Name this study in --out (once its study is created or resumed; see ``check_out``)."""
    if not (opts.out / OWNER_FILE).is_file():
        write_json(opts.out / OWNER_FILE, _out_record(opts))
