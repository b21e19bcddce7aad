"""Networks (plain nn.Modules). Importing this package registers every model variant: the built-in
ones, then those of installed plugins (the ``brainae.models`` entry-point group).

``build_model`` is where brainae's config meets a network: it picks the keys a model's ``args``
dataclass declares out of the config's ``model`` section, builds the network, and turns a network's
own complaint about an argument into a one-line error naming the config key.
"""
import dataclasses
import typing
from typing import Any

import torch

from brainae.config import ModelConfig, coerce
from brainae.errors import BrainaeError
from brainae.models import ae, vae  # noqa: F401  (registration side effect)
from brainae.models import dae  # noqa: F401
from brainae.models import resae, skipae, unet  # noqa: F401
from brainae.models.residual import ResidualOutput
from brainae.registry import ModelSpec, load_entry_points, model_spec, model_specs, names, resolve

# Keys that choose a network's structure. A model that does not take one refuses a value other than
# the default, rather than quietly train a different network than the one asked for; other keys a
# model does not take (a VAE's beta given to an AE in a study) are not read.
STRUCTURE_KEYS = ("skips", "bottleneck")
CONFIG_KEYS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


def own_options(spec: ModelSpec) -> tuple[str, ...]:
    """The arguments of ``spec`` that have no key of their own in the model section: ``model.options.NAME``."""
    return tuple(a for a in spec.arg_names if a not in CONFIG_KEYS)


def model_arguments(cfg: ModelConfig, spec: ModelSpec) -> Any:
    """``spec.args`` filled from the config's model section (and ``model.options`` for arguments that have
    no key there); a structure key or an option it does not take is refused."""
    taken, options = spec.arg_names, own_options(spec)
    default = ModelConfig()
    for key in STRUCTURE_KEYS:
        if key not in taken and not spec.wraps and getattr(cfg, key) != getattr(default, key):
            takers = [s.name for s in model_specs() if key in s.arg_names]
            raise BrainaeError(f"config key 'model.{key}' does not apply to {spec.name}; clear it, or choose a "
                               f"model that takes it ({', '.join(takers) or 'none'})")
    stray = sorted(set(cfg.options) - set(options))
    if stray and not spec.wraps:
        raise BrainaeError(f"config key 'model.options.{stray[0]}': {spec.name} has no such argument "
                           f"(its own options: {', '.join(options) or 'none'}); remove it")
    hints = typing.get_type_hints(spec.args)
    values = {k: _copy(getattr(cfg, k)) for k in taken if k in CONFIG_KEYS}
    values.update({k: coerce(cfg.options[k], hints[k], f"model.options.{k}") for k in options if k in cfg.options})
    return spec.args(**values)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value  # the network must not share the config's lists


def _config_error(error: ValueError, spec: ModelSpec) -> BrainaeError | None:
    """A network's ValueError whose message starts with the argument it concerns, as an error in that
    config key; None for any other ValueError (a fault in the code, which keeps its traceback)."""
    message = str(error)
    word = message.split(" ", 1)[0].rstrip(":")
    if word == "image_size":
        return BrainaeError(f"config key 'data.image_size'{message[len(word):]}")
    if word in spec.arg_names:
        key = f"model.{word}" if word in CONFIG_KEYS else f"model.options.{word}"
        return BrainaeError(f"config key '{key}'{message[len(word):]}")
    return None


def build_network(cfg: ModelConfig, image_size: int) -> torch.nn.Module:
    """The registered model ``cfg.name``, built from the keys its ``args`` declare."""
    spec = model_spec(cfg.name)
    args = model_arguments(cfg, spec)
    if spec.wraps:
        resolve(cfg)  # refuses a wrapper that names itself, or a cycle of wrappers, with the config key
        return spec.build(args, build_network(dataclasses.replace(cfg, name=getattr(args, spec.wraps)), image_size))
    try:
        return spec.build(args, image_size)
    except BrainaeError:
        raise
    except ValueError as e:  # a network's own check of its arguments
        error = _config_error(e, spec)
        if error is None:
            raise
        raise error from None


def residual_output(model: torch.nn.Module, cfg: ModelConfig) -> torch.nn.Module:
    """``model`` wrapped by :class:`ResidualOutput` when ``cfg.residual_output`` is set, else ``model``."""
    if cfg.residual_output and resolve(cfg).variational:
        raise BrainaeError(
            "config key 'model.residual_output' cannot wrap a variational model (its output is sampled, "
            "not a noise estimate); set it false or use a non-variational model such as resae or unet"
        )
    return ResidualOutput(model) if cfg.residual_output else model


def build_model(cfg: ModelConfig, image_size: int) -> torch.nn.Module:
    """Build the registered model ``cfg.name`` for square images of ``image_size`` pixels.

    With ``cfg.residual_output`` the network's output is read as noise and subtracted from the input
    (see ``brainae.models.residual``).

    Conv weights are stored channels-last: oneDNN's CPU convolutions run on that layout and otherwise
    convert every activation back and forth. On a 2-core CPU the small conv nets train and infer about
    1.8x faster (``benchmarks/architectures.py --retime``), the study's AE, whose time goes mostly to
    its linear layers, 1.2x (``benchmarks/train_real.py``). The values are the same (tested); only
    the memory order differs.
    """
    model = residual_output(build_network(cfg, image_size), cfg)
    return model.to(memory_format=torch.channels_last)


def clear_untaken_structure(cfg: ModelConfig) -> None:
    """Reset the structure keys and drop the options ``cfg``'s model does not take: a study applies
    ``--skips``, ``--bottleneck`` or a plugin's ``model.options`` to the models among those compared that
    take them."""
    taken = resolve(cfg).arg_names
    for key in STRUCTURE_KEYS:
        if key not in taken:
            setattr(cfg, key, getattr(ModelConfig(), key))
    cfg.options = {k: v for k, v in cfg.options.items() if k in taken}


def model_names() -> list[str]:
    return names("model")


load_entry_points("brainae.models")  # models of installed plugins (examples/plugin_model)
