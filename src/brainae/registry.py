"""Registries: noises, losses and denoisers by name, and models with their contract.

``register(kind, name)`` puts a function in a table by name (noises, losses, denoisers). Models get
more: the registry is the one place that knows models by name.

A model is one file: a plain ``nn.Module``, a dataclass of the keyword arguments its builder takes
(typed, with defaults: the model's own config) and a builder decorated with
``@register_model(name, args=..., ...)``, which also states what the rest of brainae must know about
it: whether it is variational and which of its own keys ``--space wide`` searches. What it reads
from the config's ``model`` section is its arguments' field names: it takes ``model.skips`` when its
arguments have ``skips``, and sweeps never search a key it does not take. Sweeps, the study, the CLI
and the tests ask the registry; nothing else keeps a list of models. Built-in models are registered
when ``brainae.models`` is imported (``brainae.models.build_model`` turns a config into a network);
other packages add theirs through the ``brainae.models`` entry-point group (``examples/plugin_model``),
and noises, losses and classical denoisers through ``brainae.noises``, ``brainae.losses`` and
``brainae.denoisers`` (``load_entry_points``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, is_dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from brainae.errors import BrainaeError


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is and does.

    build: ``(args, image_size) -> nn.Module`` whose forward returns a ``ModelOutput`` and whose
        ``loss(out, target, recon_loss)`` returns a dict with ``loss`` (and ``mse``). A wrapper's
        builder is ``(args, network) -> nn.Module``: it gets the model it wraps already built.
    args: the dataclass of the builder's keyword arguments, all the model reads of the config: a field
        named as a key of the ``model`` section comes from it (``latent_dim`` is ``model.latent_dim``),
        any other from ``model.options`` (a plugin's own setting: ``model.options.pool``).
    variational: it encodes a distribution and samples its code (``encode_dist``): trained with a KL
        term weighted by ``model.beta``, which ``--space wide`` searches for every such model.
    search: its own keys for ``--space wide``: a list of choices, or a mapping such as
        ``{"type": "float", "low": 0.1, "high": 4.0, "log": True}`` (the space-file format).
    wraps: the argument naming another model it builds and trains differently (``dae``:
        ``backbone``); a configured model then has that model's capabilities (``resolve``).
    """

    name: str
    build: Callable
    args: type
    variational: bool = False
    search: dict[str, Any] = field(default_factory=dict)
    wraps: str = ""
    source: str = "brainae"  # the package that registered it (a plugin's distribution name)

    @property
    def summary(self) -> str:
        return (self.build.__doc__ or "").strip().splitlines()[0] if self.build.__doc__ else ""

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.args))

    def reads(self, key: str) -> bool:
        """Whether its builder reads config key ``key``: ``model.NAME`` or ``model.options.NAME`` among its
        arguments, ``model.depth`` and ``model.base_width`` (the sweeps' keys that set ``model.channels``)
        when it takes channels; keys outside the model section are every model's."""
        if not key.startswith("model."):
            return True
        name = "channels" if key in ("model.depth", "model.base_width") else key.rsplit(".", 1)[1]
        return name in self.arg_names

    @property
    def takes_skips(self) -> bool:
        """It reads ``model.skips`` (encoder levels that bypass the bottleneck)."""
        return "skips" in self.arg_names


_REGISTRIES: dict[str, dict[str, Callable]] = {}


def register(kind: str, name: str) -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        table = _REGISTRIES.setdefault(kind, {})
        if name in table:
            raise ValueError(f"{kind} '{name}' registered twice")
        table[name] = fn
        return fn

    return deco


def get(kind: str, name: str) -> Callable:
    if kind == "model":
        return model_spec(name).build
    table = _REGISTRIES.get(kind, {})
    if name not in table:
        raise BrainaeError(f"unknown {kind} '{name}' (choose from: {', '.join(sorted(table)) or 'none'})")
    return table[name]


def names(kind: str) -> list[str]:
    return sorted(_MODELS) if kind == "model" else sorted(_REGISTRIES.get(kind, {}))


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, args: type, variational: bool = False, search: dict[str, Any] | None = None,
                   wraps: str = "", source: str = "brainae") -> Callable[[Callable], Callable]:
    """Decorator: register ``fn`` as the builder of model ``name`` with its contract (``ModelSpec``)."""
    def deco(fn: Callable) -> Callable:
        if name in _MODELS:
            raise ValueError(f"model '{name}' registered twice ({_MODELS[name].source} and {source})")
        if not is_dataclass(args):
            raise ValueError(f"model '{name}': args must be a dataclass of the builder's keyword arguments")
        spec = ModelSpec(name, fn, args, variational, dict(search or {}), wraps, source)
        stray = [k for k in spec.search if not spec.reads(k)]
        if stray or (wraps and wraps not in spec.arg_names):
            raise ValueError(f"model '{name}' searches or wraps keys its args do not have: {stray or wraps}")
        _MODELS[name] = spec
        return fn

    return deco


def resolve(model_cfg) -> ModelSpec:
    """The spec whose capabilities a configured model has: a wrapper's (``dae``) are its backbone's."""
    spec, seen = model_spec(model_cfg.name), set()
    while spec.wraps:
        seen.add(spec.name)
        inner = getattr(model_cfg, spec.wraps)
        if inner in seen:
            raise BrainaeError(f"config key 'model.{spec.wraps}' must name another model (e.g. ae or vae), not {inner}")
        spec = model_spec(inner)
    return spec


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name`` (``brainae.models`` must have been imported: it registers them)."""
    if name not in _MODELS:
        raise BrainaeError(f"unknown model '{name}' (choose from: {', '.join(sorted(_MODELS)) or 'none'}); "
                           "brainae models lists them")
    return _MODELS[name]


def model_specs() -> list[ModelSpec]:
    return [_MODELS[n] for n in sorted(_MODELS)]


_CHECKS: dict[str, Callable[[Any], Any]] = {}


def register_check(key: str) -> Callable[[Callable], Callable]:
    """Decorator: ``fn(value)`` raises BrainaeError when the config key ``key`` (e.g. ``train.noise``)
    holds a spec it cannot parse. The module that parses a spec registers its parser here, so config
    validation runs it without importing that module (``brainae.config.validate``)."""
    def deco(fn: Callable) -> Callable:
        if key in _CHECKS and _CHECKS[key] is not fn:
            raise ValueError(f"a check for config key '{key}' registered twice")
        _CHECKS[key] = fn
        return fn

    return deco


def config_checks() -> dict[str, Callable[[Any], Any]]:
    """Config key -> the parser that checks its value, for every spec parser registered so far."""
    return dict(_CHECKS)


def load_entry_points(group: str) -> list[str]:
    """Import every module the entry points of ``group`` name; importing one registers what it adds.

    A plugin that fails to import is reported on stderr in one line and left out: one broken package
    must not stop brainae. Returns the names of the entry points loaded.
    """
    loaded = []
    for ep in entry_points(group=group):
        try:
            ep.load()
            loaded.append(ep.name)
        except Exception as e:  # any error in someone else's package
            print(f"brainae: plugin '{ep.name}' ({ep.value}) could not be loaded and is left out: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
    return loaded
