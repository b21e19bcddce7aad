"""Search spaces: named presets (``seed``, ``wide``) and YAML files of dotted config keys.

A space is a list of ``Param``s, each naming a config key (``train.lr``) or one of two derived
keys, ``model.depth`` and ``model.base_width``, which together set ``model.channels`` (width
doubles per layer, as in the study's 32-64-128-256-512).

Epochs are a budget, not a sampled parameter. The study searched epochs {10, 20, 40} as one more
dimension, which trains a 10-epoch trial from scratch and a 40-epoch trial from scratch again.
Here every trial is allowed the largest value (40) and the pruner stops unpromising trials early,
so one 40-epoch trial also answers "how good is it after 10 and 20 epochs". The best trial's
epoch count is reported on the space's grid: the smallest listed value at or above the epoch
where its validation loss was lowest.

A YAML space file maps keys to distributions::

    train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    train.batch_size: {type: categorical, choices: [16, 32, 64]}
    model.depth: {type: int, low: 3, high: 5}
    train.epochs: {type: categorical, choices: [10, 20, 40]}   # the budget: max is used
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from brainae.config import Config, apply_dict, coerce, validate
from brainae.errors import BrainaeError
from brainae.models import own_options  # importing the models registers them
from brainae.registry import model_spec, model_specs

DERIVED = {"model.depth": int, "model.base_width": int}  # set model.channels together
TYPES = ("float", "int", "categorical")


@dataclass
class Param:
    key: str  # dotted config key, e.g. train.lr
    type: str  # float | int | categorical
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[int] = None
    choices: Optional[list] = None

    def suggest(self, trial) -> Any:
        """Ask ``trial`` for a value; list-valued choices travel through Optuna as JSON strings."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=self.step or 1, log=self.log)
        value = trial.suggest_categorical(self.key, self.optuna_choices())
        return json.loads(value) if self.has_lists() else value

    def has_lists(self) -> bool:
        return any(isinstance(c, (list, tuple)) for c in self.choices or [])

    def optuna_choices(self) -> list:
        return [json.dumps(c) for c in self.choices] if self.has_lists() else list(self.choices)

    def describe(self) -> str:
        """One line for tables: ``{1e-3, 5e-4}`` or ``[1e-4, 1e-2] log``."""
        if self.type == "categorical":
            return "{" + ", ".join(_fmt(c) for c in self.choices) + "}"
        return f"[{_fmt(self.low)}, {_fmt(self.high)}]" + (" log" if self.log else "")


@dataclass
class Space:
    name: str
    params: list[Param]
    epochs: list[int] = field(default_factory=list)  # the budget grid; max(epochs) is trained

    @property
    def max_epochs(self) -> Optional[int]:
        return max(self.epochs) if self.epochs else None

    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def is_categorical(self) -> bool:
        return all(p.type == "categorical" for p in self.params)

    def grid(self) -> dict[str, list]:
        return {p.key: p.optuna_choices() for p in self.params}

    def fingerprint(self) -> str:
        """A short hash of the space, stored with the study so a reused name with another space is refused."""
        blob = json.dumps([dataclasses.asdict(p) for p in self.params] + [self.epochs], sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def table(self) -> list[dict]:
        rows = [{"key": p.key, "values": p.describe()} for p in self.params]
        if self.epochs:
            rows.append({"key": "train.epochs", "values": "{" + ", ".join(map(str, self.epochs)) + "} (budget: "
                         f"{self.max_epochs}, pruned early)"})
        return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return json.dumps(v) if isinstance(v, (list, tuple)) else str(v)


def _cat(key: str, *choices) -> Param:
    return Param(key, "categorical", choices=list(choices))


SEED_EPOCHS = [10, 20, 40]


def seed_space() -> Space:
    """The study's grid: lr x batch size x latent size, with epochs {10, 20, 40} as the budget."""
    return Space("seed", [
        _cat("train.lr", 1e-3, 5e-4, 1e-4),
        _cat("train.batch_size", 16, 32, 64),
        _cat("model.latent_dim", 512, 1024, 2048),
    ], epochs=list(SEED_EPOCHS))


def model_params(model: str) -> list[Param]:
    """The keys registered model ``model`` declares for ``--space wide`` (``ModelSpec.search``)."""
    params = []
    for key, choices in model_spec(model).search.items():
        params.append(_cat(key, *choices) if isinstance(choices, list) else parse_space({key: choices}).params[0])
    return params


# model keys every model reads through build_model, whatever its own arguments
BUILD_KEYS = ("model.name", "model.residual_output")


def takes(model: str, key: str) -> bool:
    """Whether registered model ``model`` reads ``key``: train.* and data.* keys always, model.* keys
    when its arguments have them (depth and base width set its channels). A wrapper (``dae``) reads
    what the model it wraps reads, which only its config names, so it is taken to read every key."""
    spec = model_spec(model)
    return key in BUILD_KEYS or bool(spec.wraps) or spec.reads(key)


def for_model(space: Space, model: str) -> Space:
    """``space`` without the keys ``model`` does not read: searching one would retrain one network
    under different names.

    Example:
        >>> [p.key for p in for_model(seed_space(), "unet").params]
        ['train.lr', 'train.batch_size']
    """
    return dataclasses.replace(space, params=[p for p in space.params if takes(model, p.key)])


def wide_space(model: str) -> Space:
    """The seed space plus the architecture, optimiser and regularisation the study fixed by hand,
    and the keys that only ``model`` has (``model_params``).

    train.loss is never searched: it changes what the validation loss measures, so trials with
    different losses would not compare.

    Example:
        >>> [p.key for p in wide_space("skipae").params][-3:]
        ['model.blocks', 'model.skips', 'model.bottleneck']
    """
    params = seed_space().params + [
        _cat("model.depth", 3, 4, 5),
        _cat("model.base_width", 16, 32, 64),
        _cat("model.kernel_size", 3, 5),
        # stride 4 fits 128 px only at depth 3; other combinations fail at once with the reason recorded
        _cat("model.stride", 2, 4),
        _cat("model.activation", "leaky_relu", "relu", "gelu", "silu"),
        _cat("model.norm", "batch", "group", "instance", "none"),
        _cat("train.optimizer", "adam", "adamw"),
        _cat("train.schedule", "none", "cosine", "onecycle"),
        Param("train.weight_decay", "float", low=1e-7, high=1e-3, log=True),
    ]
    if model_spec(model).variational:  # every variational model weighs its KL term by model.beta
        params.append(Param("model.beta", "float", low=0.1, high=4.0, log=True))
    own = model_params(model)  # a model's own range for a common key replaces the common one
    params = [p for p in params if p.key not in {q.key for q in own}] + own
    return Space("wide", params, epochs=list(SEED_EPOCHS))


def tiny_space(epochs: int = 1) -> Space:
    """The seed grid at latent 512 with a budget of ``epochs``: the quick study's demonstration.

    Larger latents are left out because at 128 px their dense layers make each checkpoint
    0.25-0.4 GB, and writing those took longer than the one-epoch trials themselves.
    """
    params = [p for p in seed_space().params if p.key != "model.latent_dim"] + [_cat("model.latent_dim", 512)]
    return Space("quick", params, epochs=[epochs])


def load_space(spec: str, model: str = "ae") -> Space:
    """``seed``, ``wide`` or a YAML file; every key is checked against the config dataclasses.

    Example:
        >>> [p.key for p in load_space("seed").params]
        ['train.lr', 'train.batch_size', 'model.latent_dim']
    """
    if spec == "seed":
        return for_model(seed_space(), model)
    if spec == "wide":
        return for_model(wide_space(model), model)
    if spec == "quick":
        return for_model(tiny_space(), model)
    path = Path(spec)
    if not path.is_file():
        raise BrainaeError(f"space '{spec}' is neither seed, wide nor an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise BrainaeError(f"space file {path} is not valid YAML") from None
    if data is None or data == {}:
        raise BrainaeError(f"space file {path} is empty; list at least one key, e.g. train.lr: {{type: float, low: 1e-4, high: 1e-2, log: true}}")
    if not isinstance(data, dict):
        raise BrainaeError(f"space file {path} must map dotted config keys to distributions")
    try:
        return parse_space(data, name=path.stem)
    except BrainaeError as e:
        raise BrainaeError(f"space file {path}: {e}") from None


def parse_space(data: dict, name: str = "custom") -> Space:
    """Build a Space from ``{dotted key: {type: ..., ...}}``; refuses unknown keys and bad values."""
    params, epochs = [], []
    for key, spec in data.items():
        key = str(key)
        if not isinstance(spec, dict) or "type" not in spec:
            raise BrainaeError(f"key '{key}' needs a mapping with a type (float, int or categorical)")
        unknown = set(spec) - {"type", "low", "high", "log", "step", "choices"}
        if unknown:
            raise BrainaeError(f"key '{key}': unknown field(s) {', '.join(sorted(unknown))}")
        p = Param(key, spec["type"], spec.get("low"), spec.get("high"), bool(spec.get("log", False)),
                  spec.get("step"), spec.get("choices"))
        _check_param(p)
        if key == "train.epochs":
            values = p.choices if p.type == "categorical" else [int(p.high)]
            epochs = sorted(int(v) for v in values)
            if epochs[0] < 1:
                raise BrainaeError(f"key 'train.epochs': every value must be at least 1 (an epoch budget); got {epochs[0]}")
            continue
        params.append(p)
    if not params:
        raise BrainaeError("the space has no parameter to search (train.epochs alone is only the budget)")
    return Space(name, params, epochs)


def _field_type(key: str) -> Any:
    if key in DERIVED:
        return DERIVED[key]
    if key == "model.name":
        raise BrainaeError("key 'model.name' cannot be searched; run one sweep per --model")
    if key == "train.loss":
        raise BrainaeError("key 'train.loss' cannot be searched: it changes what the validation loss measures, "
                           "so trials would not compare; set it with --set train.loss=... and search the rest")
    parts = key.split(".")
    if parts[:2] == ["model", "options"] and len(parts) == 3:
        return option_type(parts[2])
    if len(parts) != 2:
        raise BrainaeError(f"unknown config key '{key}' (use section.key, e.g. train.lr)")
    section, name = parts
    hints = typing.get_type_hints(Config)
    if section not in hints:
        raise BrainaeError(f"unknown config key '{key}' (sections: {', '.join(hints)})")
    sub = typing.get_type_hints(hints[section])
    if name not in sub:
        raise BrainaeError(f"unknown config key '{key}' (known in {section}: {', '.join(sorted(sub))}, "
                           f"and model.depth, model.base_width)")
    return sub[name]


def option_type(name: str) -> Any:
    """The type of ``model.options.NAME``: that argument's type in the registered model that has it."""
    for spec in model_specs():
        if name in own_options(spec):
            return typing.get_type_hints(spec.args)[name]
    raise BrainaeError(f"unknown config key 'model.options.{name}': no registered model has an option {name} "
                       "('brainae models' lists each model's)")


def _check_param(p: Param) -> None:
    tp = _field_type(p.key)
    if p.type not in TYPES:
        raise BrainaeError(f"key '{p.key}': type must be float, int or categorical, not {p.type!r}")
    if p.type == "categorical":
        if not isinstance(p.choices, list) or not p.choices:
            raise BrainaeError(f"key '{p.key}': categorical needs a non-empty list of choices")
        for c in p.choices:
            coerce(c, tp, p.key)
        return
    if p.low is None or p.high is None:
        raise BrainaeError(f"key '{p.key}': {p.type} needs low and high")
    if tp not in (int, float):
        raise BrainaeError(f"key '{p.key}' is not a number setting; use type: categorical")
    if p.type == "float" and tp is int:
        raise BrainaeError(f"key '{p.key}' takes whole numbers; use type: int or categorical")
    for v in (p.low, p.high):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise BrainaeError(f"key '{p.key}': low and high must be numbers")
    if p.low > p.high or (p.log and p.low <= 0):
        raise BrainaeError(f"key '{p.key}': needs low <= high{' and low > 0 for log' if p.log else ''}")


def apply_params(cfg: Config, params: dict[str, Any]) -> Config:
    """Set sampled values on ``cfg`` in place (derived depth/base width become model.channels)."""
    nested: dict = {}
    for key, value in params.items():
        if key in DERIVED:
            continue
        *path, name = key.split(".")  # model.options.NAME has three parts
        node = nested
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value
    apply_dict(cfg, nested)
    if "model.depth" in params or "model.base_width" in params:
        depth = int(params.get("model.depth", len(cfg.model.channels)))
        base = int(params.get("model.base_width", cfg.model.channels[0]))
        cfg.model.channels = [base * 2 ** i for i in range(depth)]
    validate(cfg)
    return cfg


def epochs_on_grid(best_epoch: Optional[int], grid: list[int]) -> Optional[int]:
    """The smallest grid value at or above ``best_epoch`` (the study's way to name an epoch count)."""
    if best_epoch is None or not grid:
        return best_epoch
    return next((g for g in sorted(grid) if g >= best_epoch), max(grid))
