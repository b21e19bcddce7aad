"""Typed configuration: dataclasses, YAML presets, strict dotted overrides.

A run's resolved config is saved as ``config.yaml`` in its folder, so every run describes itself
and can be rebuilt from that file alone. Unknown keys and wrong types fail loudly with the key's
name: a typo in a sweep or a preset must never be silently ignored.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from brainae.errors import BrainaeError
from brainae.flags import FLAGS
from brainae.flags import flat_keys as flag_keys
from brainae.registry import config_checks

PRESET_DIR = Path(__file__).parent / "configs"
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")
LOGGERS = FLAGS["logger"].choices  # csv, tensorboard, mlflow, wandb
MAX_LATENT = 65536


@dataclass
class DataConfig:
    spec: str = "phantom"  # phantom[:N] | folder path | hf:OWNER/NAME[@REV] | file.nii[.gz] | nifti:PATH
    image_size: int = 128
    keep_aspect: Optional[bool] = None  # pad to square instead of stretching; None: pad NIfTI slices, stretch images (the study)
    normalize: str = "none"  # none | minmax | percentile | zscore (per image; NIfTI volumes are also normalised per volume)
    val_fraction: float = 0.15  # carved from the training data
    test_fraction: float = 0.15  # only used when the source has no test split
    limit: int = 0  # keep at most this many training images (0 = all); val/test scale with it
    dedupe: bool = False  # drop duplicates within a split (copies across splits are grouped or left out anyway)
    keep_duplicates: bool = False  # split copies image by image, and train on copies of given test images (the old way)
    near_threshold: int = 2  # pHash bits within which two images are copies that no split may separate
    group_by: str = ""  # regex on file names whose match (or first group) is a patient id, e.g. ^(P\d+)_
    nifti_axis: int = 2
    modality: str = ""  # NIfTI subjects: the image to use, or a comma list stacked as channels (t1,flair); "" = t1, else the first found
    slices: str = ""  # NIfTI: slices per volume: "" every non-empty one | A:B indices | 0.6 the central share | 0.2:0.8
    crop_foreground: bool = False  # NIfTI: crop each scan to its head before resizing
    phantom_tumor_fraction: float = 0.5
    seed: int = 0  # split seed, separate from the training seed so splits stay fixed


@dataclass
class ModelConfig:
    name: str = "ae"
    latent_dim: int = 512
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    kernel_size: int = 3
    stride: int = 2
    activation: str = "leaky_relu"  # leaky_relu | relu | gelu | silu
    norm: str = "batch"  # batch | group | instance | none
    in_channels: int = 1
    beta: float = 1.0  # VAE: weight of the KL term
    vae_reduction: str = "sum"  # sum: BCE+KL summed (the study) | mean: per pixel, comparable across sizes
    likelihood: str = "bernoulli"  # VAE decoder: bernoulli (BCE, the study) | gaussian (variance fitted per batch)
    prior_components: int = 30  # VAE: after training, fit this many Gaussians to the training codes to sample from; 0 = N(0, I) only
    backbone: str = "ae"  # wrapper models (dae): the registered model they wrap
    blocks: int = 1  # resae / skipae / unet: residual blocks per resolution level
    skips: list[int] = field(default_factory=list)  # skipae: encoder levels (0 = finest) whose features bypass the bottleneck
    bottleneck: str = "auto"  # dense: flatten + linear (the study) | spatial: 1x1 conv to a small map | auto: the model's choice
    residual_output: bool = False  # denoisers: the network predicts the noise, output = input - noise
    options: dict[str, Any] = field(default_factory=dict)  # a model's own arguments that have no key above (a plugin's): model.options.NAME


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.0
    precision: str = "auto"  # auto (bf16-mixed where the CPU or GPU computes bf16 natively, else 32) | 32 | bf16-mixed | 16-mixed
    accelerator: str = "auto"  # auto | cpu | cuda | mps
    devices: int = 1
    num_workers: int = 0
    seed: int = 0
    progress: bool = True
    noise: str = ""  # e.g. gaussian:0.3: train as a denoiser (noisy input, clean target), noise drawn per batch
    normal_only: str = ""  # a class name: train and validate on that class only (anomaly detection); test unchanged
    loss: str = ""  # "" = the model's own (AE: mse, VAE: bce + kl) | mse | l1 | bce | ssim | ms_ssim | mixed, e.g. 0.2*l1+0.8*ms_ssim
    optimizer: str = "adam"  # adam | adamw (decoupled weight decay)
    schedule: str = "none"  # none | cosine | onecycle (learning rate per step)
    early_stopping: int = 0  # patience in epochs on validation loss; 0 = off
    ema: float = 0.0  # decay of an exponential moving average of the weights (e.g. 0.999); 0 = off
    compile: bool = False  # torch.compile the network (on a GPU with CUDA graphs); pays on GPUs, not on this kind of CPU
    augment: str = ""  # comma list of flip, affine, intensity (or "all"); applied on the fly to training batches
    cuda_graphs: str = "off"  # off | on | auto (on wherever it applies): the GPU fast path (steps in chunks, each batch one CUDA graph replay), see training/graphs.py
    deterministic: bool = True  # deterministic algorithms (a warning where an op has none): same seed, same numbers; false lets a GPU pick its fastest kernels
    logger: str = "csv"  # csv: history.csv only (always written) | tensorboard | mlflow | wandb: also that logger, under the run folder


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def _fail(key: str, expected: str, value: Any):
    raise BrainaeError(f"config key '{key}': expected {expected}, got {value!r}")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the field type ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is dict:
        if not isinstance(value, dict):
            _fail(key, "a mapping of names to values", value)
        return {str(k): v for k, v in value.items()}
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            _fail(key, "a list", value)
        return [coerce(v, item_tp, key) for v in value]
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return coerce(value, [a for a in typing.get_args(tp) if a is not type(None)][0], key)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        _fail(key, "a number", value)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. precision: 32 written without quotes
    if tp is str and isinstance(value, bool):
        return "on" if value else "off"  # YAML 1.1 reads on/off (cuda_graphs: off) as booleans
    if tp in (int, bool, str) and not (isinstance(value, tp) and (tp is bool or not isinstance(value, bool))):
        _fail(key, tp.__name__, value)
    return value


def _hints(obj: Any) -> dict:
    return typing.get_type_hints(type(obj))


def apply_dict(cfg: Config, values: dict, prefix: str = "") -> Config:
    """Merge a nested dict into ``cfg`` in place; unknown keys raise BrainaeError."""
    if not isinstance(values, dict):
        raise BrainaeError(f"config section '{prefix or 'root'}' must be a mapping, got {values!r}")
    target = cfg
    for part in prefix.split(".") if prefix else []:
        target = getattr(target, part)
    hints = _hints(target)
    for k, v in values.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in hints:
            known = ", ".join(sorted(hints))
            raise BrainaeError(f"unknown config key '{key}' (known here: {known})")
        current = getattr(target, k)
        if dataclasses.is_dataclass(current):
            apply_dict(cfg, v, key)
        elif isinstance(current, dict):  # model.options: merged, so --set model.options.a=1 keeps b
            setattr(target, k, {**current, **coerce(v, hints[k], key)})
        else:
            setattr(target, k, coerce(v, hints[k], key))
    return cfg


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``key=value`` strings such as ``train.lr=1e-3`` (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise BrainaeError(f"override '{item}' must look like section.key=value, e.g. train.lr=1e-3")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if "." not in key:
            raise BrainaeError(f"override '{item}': name the section too, e.g. train.{key}=...")
        section, name = key.rsplit(".", 1)
        nested: dict = {name: value}
        for part in reversed(section.split(".")):
            nested = {part: nested}
        apply_dict(cfg, nested)
    return cfg


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise BrainaeError(f"config file {path} is a folder; name a YAML file")
    if not path.is_file():
        raise BrainaeError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise BrainaeError(f"config file {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    except OSError as e:
        raise BrainaeError(f"config file {path} cannot be read ({e.strerror}); check its permissions") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise BrainaeError(f"config file {path}{where} is not valid YAML; fix it or start from a preset") from None
    if not isinstance(data, dict):
        raise BrainaeError(f"config file {path} must hold a mapping of sections (model, data, train)")
    return data


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str, model: str) -> dict:
    """A preset's values for ``model``: its common part merged with its ``per_model`` part."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise BrainaeError(f"unknown preset '{name}' (choose from: {', '.join(preset_names())})")
    data = read_yaml(path)
    per_model = data.pop("per_model", {}) or {}
    return _merge(data, per_model.get(model, {}))


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_config(
    model: str = "ae",
    preset: Optional[str] = None,
    config_file: Optional[str] = None,
    overrides: Optional[list[str]] = None,
    **flat: Any,
) -> Config:
    """Resolve a config: defaults < preset < YAML file < flat flags < ``--set`` overrides.

    flat: shortcut flags that map to dotted keys (``epochs`` -> ``train.epochs``); None is skipped.

    Noise, loss, augmentation and slice specs are checked by the parsers registered so far
    (``validate``); ``brainae.build_config``, the package's, registers them all first.

    Example:
        >>> build_config("vae", preset="quick", epochs=2).train.epochs
        2
    """
    cfg = Config()
    cfg.model.name = model
    if preset:
        apply_dict(cfg, load_preset(preset, model))
    if config_file:
        try:
            apply_dict(cfg, read_yaml(config_file))
        except BrainaeError as e:
            msg = str(e)
            raise BrainaeError(msg if config_file in msg else f"{config_file}: {msg}") from None
    cfg.model.name = model
    flat_keys = flag_keys()  # brainae/flags.py: one table of the shortcut flags
    for k, v in flat.items():
        if v is None:
            continue
        if k not in flat_keys:
            raise BrainaeError(f"unknown option '{k}'")
        section, name = flat_keys[k].split(".")
        apply_dict(cfg, {section: {name: v}})
    apply_overrides(cfg, overrides or [])
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Range checks that types alone cannot express."""
    m, d, t = cfg.model, cfg.data, cfg.train
    checks = [
        (t.epochs >= 1, "train.epochs", "must be at least 1"),
        (t.batch_size >= 1, "train.batch_size", "must be at least 1"),
        (math.isfinite(t.lr) and t.lr > 0, "train.lr", "must be a positive finite number such as 5e-4"),
        (math.isfinite(t.weight_decay) and t.weight_decay >= 0, "train.weight_decay", "must be 0 or a positive number"),
        (t.num_workers >= 0, "train.num_workers", "must be 0 (load in the main process) or a number of processes"),
        (t.devices >= 1, "train.devices", "must be at least 1 (more than one trains with DDP)"),
        (0 <= t.seed < 2**32, "train.seed", "must be in 0..4294967295"),
        (0 <= d.seed < 2**32, "data.seed", "must be in 0..4294967295"),
        (t.accelerator in ACCELERATORS, "train.accelerator", f"must be one of {', '.join(ACCELERATORS)}"),
        (t.logger in LOGGERS, "train.logger", f"must be one of {', '.join(LOGGERS)}"),
        (1 <= m.latent_dim <= MAX_LATENT, "model.latent_dim",
         f"must be 1..{MAX_LATENT} (the study used 512-2048; a larger code only costs memory)"),
        (len(m.channels) >= 1, "model.channels", "needs at least one layer"),
        (all(c >= 1 for c in m.channels), "model.channels", "must list positive widths, e.g. [32,64,128]"),
        (m.in_channels >= 1, "model.in_channels", "must be at least 1 (it follows the data's modalities)"),
        (m.kernel_size >= 1 and m.stride >= 1, "model.kernel_size / model.stride", "must be at least 1"),
        (math.isfinite(m.beta) and m.beta >= 0, "model.beta", "must be 0 or a positive number"),
        (0 <= d.phantom_tumor_fraction <= 1, "data.phantom_tumor_fraction", "must be in [0, 1]"),
        (d.val_fraction + d.test_fraction < 1, "data.val_fraction + data.test_fraction", "must leave training data (< 1)"),
        (cfg.data.image_size >= 8, "data.image_size", "must be at least 8"),
        (0 < cfg.data.val_fraction < 1, "data.val_fraction", "must be between 0 and 1"),
        (0 <= cfg.data.test_fraction < 1, "data.test_fraction", "must be in [0, 1)"),
        (cfg.data.normalize in ("none", "minmax", "percentile", "zscore"), "data.normalize",
         "must be none, minmax, percentile or zscore"),
        (cfg.train.precision in ("auto", "32", "bf16-mixed", "16-mixed", "64"), "train.precision",
         "must be auto, 32, bf16-mixed or 16-mixed"),
        (cfg.data.limit >= 0, "data.limit", "must be 0 (all) or positive"),
        (0 <= cfg.data.near_threshold <= 32, "data.near_threshold", "must be 0..32 bits (2 is data inspect's rule)"),
        (cfg.data.nifti_axis in (0, 1, 2), "data.nifti_axis", "must be 0 (sagittal), 1 (coronal) or 2 (axial)"),
        (cfg.model.vae_reduction in ("sum", "mean"), "model.vae_reduction", "must be sum or mean"),
        (cfg.model.likelihood in ("bernoulli", "gaussian"), "model.likelihood", "must be bernoulli or gaussian"),
        (cfg.model.prior_components >= 0, "model.prior_components", "must be 0 (off) or a number of components"),
        (cfg.model.blocks >= 1, "model.blocks", "must be at least 1"),
        (cfg.model.bottleneck in ("auto", "dense", "spatial"), "model.bottleneck", "must be auto, dense or spatial"),
        (all(0 <= s < len(cfg.model.channels) for s in cfg.model.skips), "model.skips",
         f"must list encoder levels between 0 and {len(cfg.model.channels) - 1} (one per model.channels entry)"),
        (cfg.train.optimizer in ("adam", "adamw"), "train.optimizer", "must be adam or adamw"),
        (cfg.train.schedule in ("none", "cosine", "onecycle"), "train.schedule", "must be none, cosine or onecycle"),
        (cfg.train.early_stopping >= 0, "train.early_stopping", "must be 0 (off) or a patience in epochs"),
        (0 <= cfg.train.ema < 1, "train.ema", "must be in [0, 1): a decay such as 0.999, or 0 for off"),
        (cfg.train.cuda_graphs in ("auto", "on", "off"), "train.cuda_graphs", "must be auto, on or off"),
        (t.precision != "16-mixed" or t.accelerator != "cpu", "train.precision", "16-mixed needs a GPU; use bf16-mixed on a CPU"),
    ]
    for ok, key, msg in checks:
        if not ok:
            raise BrainaeError(f"config key '{key}' {msg}")
    for key, check in config_checks().items():  # spec parsers, registered by the modules that own them
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value:  # "" is every spec's "none"
            check(value)  # a bad spec fails here, before any data is loaded


def from_dict(values: dict) -> Config:
    return apply_dict(Config(), values)


def config_yaml(cfg: Config) -> str:
    """The config as config.yaml holds it (and ``brainae config show`` prints it)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: Path) -> None:
    from brainae.io import atomic_write_text

    atomic_write_text(path, config_yaml(cfg))


def load_config(path: Path) -> Config:
    return from_dict(read_yaml(path))
