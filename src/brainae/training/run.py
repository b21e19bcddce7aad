"""Open a finished (or interrupted) run folder: its config and its trained network (and, for a VAE,
the mixture fitted to its training codes that it samples from, ``prior.pt``).

The network comes from ``weights/best.safetensors`` when the run has it (every run trained since it
was added does; see ``weights.py``), else from a Lightning checkpoint read without pickle.
"""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from brainae import __version__
from brainae.config import Config, load_config, to_dict
from brainae.errors import BrainaeError
from brainae.io import atomic_path
from brainae.models import build_model, clear_untaken_structure
from brainae.models.prior import MixturePrior
from brainae.training.precision import encode_codes
from brainae.training.weights import WEIGHTS_FILE, load_network_state, read_weights, save_weights

PRIOR_FILE = "prior.pt"


def run_config(run: str | Path) -> Config:
    """A run folder's config.yaml as its network is rebuilt: a structure key its model does not take
    (written by a brainae that ignored it, e.g. model.bottleneck of an ae) is reset, not refused."""
    cfg = load_config(Path(run) / "config.yaml")
    clear_untaken_structure(cfg.model)
    return cfg


def load_run(run_dir: str | Path, which: str = "best", device: str = "cpu") -> tuple[torch.nn.Module, Config]:
    """The network of a run in eval mode, with the run's resolved config.

    which: "best" (lowest validation loss) or "last"; falls back to last when best is missing.
    See :func:`network_file` for which file the weights come from.

    Example:
        >>> model, cfg = load_run("runs/ae")  # doctest: +SKIP
    """
    run = Path(run_dir)
    if which not in ("best", "last"):
        raise BrainaeError(f"which must be 'best' or 'last', not '{which}'")
    if not (run / "config.yaml").is_file():
        raise BrainaeError(f"{run} is not a brainae run folder (no config.yaml); pass the --out of 'brainae train'")
    cfg = run_config(run)
    _warn_if_split_image_by_image(run)
    source = network_file(run, which)
    if source.suffix == ".safetensors":
        state = read_weights(source)[0]
    else:
        state = network_state(read_checkpoint(source, map_location=device)["state_dict"])
    model = build_model(cfg.model, cfg.data.image_size)
    load_network_state(model, state, source, run / "config.yaml")
    if hasattr(model, "code_prior") and (run / PRIOR_FILE).is_file():
        try:
            model.code_prior = MixturePrior.from_state(torch.load(run / PRIOR_FILE, map_location="cpu", weights_only=True))
        except Exception as e:
            raise BrainaeError(f"{run / PRIOR_FILE} cannot be read ({type(e).__name__}); delete it to sample "
                               f"from N(0, I)") from None
    return model.to(device).eval(), cfg


def network_state(module_state: dict) -> dict:
    """The network's own state dict from a checkpoint's (the LightningModule holds it as ``model``)."""
    return {k.removeprefix("model."): v for k, v in module_state.items() if k.startswith("model.")}


def weights_metadata(cfg: Config, source: str) -> dict[str, str]:
    """What a safetensors file says about itself: enough to rebuild its network without the run folder."""
    return {"brainae": __version__, "model": cfg.model.name, "image_size": str(cfg.data.image_size),
            "source": source, "config": json.dumps(to_dict(cfg))}


def write_best_weights(run_dir: str | Path, cfg: Config) -> Optional[Path]:
    """Write ``RUN/weights/best.safetensors``: the network of ``checkpoints/best.ckpt`` alone (no optimizer,
    EMA or loop state; with ``train.ema`` the network is the averaged one, as in the checkpoint).

    ``train`` calls it when a run ends, with the run's config; None when the run kept no best checkpoint
    (no finite validation loss).

    Example:
        >>> write_best_weights("runs/ae", cfg)  # doctest: +SKIP
        PosixPath('runs/ae/weights/best.safetensors')
    """
    run = Path(run_dir)
    ckpt = run / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        return None
    net = network_state(read_checkpoint(ckpt)["state_dict"])
    return save_weights(run / WEIGHTS_FILE, net, weights_metadata(cfg, "checkpoints/best.ckpt"))


def load_model(run_dir: str | Path, which: str = "best", device: str = "cpu") -> torch.nn.Module:
    """The trained network of a run, in eval mode: :func:`load_run` without the config.

    It returns a ``ModelOutput`` (``.recon``, ``.z``, ...); a VAE keeps its fitted ``code_prior``.

    Example:
        >>> model = load_model("runs/ae")  # doctest: +SKIP
        >>> model(torch.rand(2, 1, 128, 128)).recon.shape  # doctest: +SKIP
        torch.Size([2, 1, 128, 128])
    """
    return load_run(run_dir, which, device)[0]


def network_file(run: Path, which: str = "best") -> Path:
    """The file :func:`load_run` reads the network from.

    "best": ``weights/best.safetensors``, unless ``checkpoints/best.ckpt`` was written after it: a
    resumed run stopped before it ended leaves the weights of its earlier session behind, and the
    newer checkpoint holds the better network. Without the weights, the checkpoint (best, else last).
    """
    ckpt = run / "checkpoints" / f"{which}.ckpt"
    weights = run / WEIGHTS_FILE
    if which == "best" and weights.is_file():
        if not (ckpt.is_file() and ckpt.stat().st_mtime_ns > weights.stat().st_mtime_ns):
            return weights
    if not ckpt.is_file():
        ckpt = run / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise BrainaeError(f"{run} has no checkpoint yet (checkpoints/best.ckpt); train it first")
    return ckpt


def _warn_if_split_image_by_image(run: Path) -> None:
    """Runs trained before grouped splits: their own test split is carved differently now."""
    try:
        grouped = "grouping" in json.loads((run / "data.json").read_text())
    except (OSError, ValueError):
        return
    if not grouped:
        print(f"brainae: note: {run} was trained on an image-by-image split; its data now splits by group, so its "
              f"test images may include some it trained on. Retrain it for honest test scores", file=sys.stderr)


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """A Lightning checkpoint read with ``weights_only=True``: tensors, numbers, strings and containers only.

    A checkpoint that needs anything else (a pickled class or function) is refused and never unpickled:
    unpickling runs whatever code the file names, and run folders are shared between people.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise BrainaeError(f"checkpoint {path} holds Python objects beyond weights, which loading would have to run "
                           f"as code; refused. Retrain the run, or load it only if you trust its author") from None
    except Exception as e:
        raise BrainaeError(f"checkpoint {path} cannot be read ({type(e).__name__}); it may be truncated: retrain the "
                           f"run, or delete the file to fall back to the other checkpoint") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise BrainaeError(f"checkpoint {path} is not a brainae/Lightning checkpoint (no state_dict); retrain the run")
    return ckpt


def fit_code_prior(model: torch.nn.Module, images: np.ndarray, components: int, seed: int = 0) -> MixturePrior:
    """A :class:`MixturePrior` of the codes (the posterior means) of ``images`` (uint8 (N, H, W)):
    pass the training split only, so samples never borrow from validation or test images."""
    model.eval()
    return MixturePrior.fit(torch.from_numpy(encode_codes(model, images)), components, seed=seed)


def write_code_prior(run_dir: str | Path, prior: MixturePrior) -> Path:
    """Save ``prior`` as the run's ``prior.pt`` (atomically); :func:`load_run` attaches it."""
    path = Path(run_dir) / PRIOR_FILE
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(prior.state(), f)  # an open file: a full disk keeps its errno (a file name loses it)
    return path
