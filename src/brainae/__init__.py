"""brainae: train, tune, compare and inspect convolutional autoencoders on brain MRI.

The Python API is what the ``brainae`` command calls:

    build_config   defaults < preset < YAML file < keyword flags < dotted overrides -> Config
    train          train one model into a self-describing run folder; returns its metrics
    evaluate       held-out MSE / PSNR / SSIM with 95% intervals, overall and per class
    load_model     a run's trained network, in eval mode (load_run: with its config)
    export_run     the network as ONNX, TorchScript or safetensors, checked against the run
    run_study      train AE and VAE on one split, evaluate both, write report.html
    list_models    the registered model names

Train a tiny AE on 40 embedded phantom slices, score it, and run it on new images:

    >>> import torch
    >>> from brainae import build_config, train, evaluate, load_model
    >>> cfg = build_config("ae", data="phantom:40", image_size=32, epochs=1,
    ...                    overrides=["model.channels=[8,16]", "model.latent_dim=16", "train.progress=false"])
    >>> run = train(cfg, "runs/tiny-ae")["run_dir"]
    >>> evaluate(run, progress=False)["psnr"]["mean"] > 0
    True
    >>> model = load_model(run)  # from runs/tiny-ae/weights/best.safetensors
    >>> model(torch.rand(2, 1, 32, 32)).recon.shape
    torch.Size([2, 1, 32, 32])

Names are imported on first use, so ``import brainae`` (and ``brainae --version``) loads neither
torch nor Lightning.
"""
import importlib
from typing import TYPE_CHECKING, Any

from brainae.errors import BrainaeError

__version__ = "0.1.0"

# public name -> (module, attribute there)
_LAZY = {
    "build_config": ("brainae.config", "build_config"),
    "load_config": ("brainae.config", "load_config"),
    "Config": ("brainae.config", "Config"),
    "train": ("brainae.training.train", "train"),
    "evaluate": ("brainae.evaluation.evaluate", "evaluate"),
    "load_model": ("brainae.training.run", "load_model"),
    "load_run": ("brainae.training.run", "load_run"),
    "export_run": ("brainae.export", "export_run"),
    "run_study": ("brainae.study", "run_study"),
    "list_models": ("brainae.models", "model_names"),
}

__all__ = ["BrainaeError", "__version__", "load_checks", *_LAZY]

# The modules that parse config specs register their parsers as config checks (registry.register_check);
# config validation runs what is registered, so whoever builds configs loads these first. The package
# root is where every layer may be named.
CHECK_OWNERS = ("brainae.data.nifti", "brainae.data.noise", "brainae.training.augment", "brainae.training.losses")


def load_checks() -> None:
    """Register every built-in config check (bad noise, loss, augmentation or slice specs then fail in
    ``build_config``, before any data is loaded)."""
    for module in CHECK_OWNERS:
        importlib.import_module(module)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'brainae' has no attribute '{name}'")
    module, attr = _LAZY[name]
    if name == "build_config":  # Config and load_config need no parser: they stay light
        load_checks()
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # editors and type checkers see the real signatures
    from brainae.config import Config, build_config, load_config
    from brainae.evaluation.evaluate import evaluate
    from brainae.export import export_run
    from brainae.models import model_names as list_models
    from brainae.study import run_study
    from brainae.training.run import load_model, load_run
    from brainae.training.train import train
