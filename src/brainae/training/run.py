"""Open a finished (or interrupted) run folder: its config and its trained network (and, for a VAE,
the mixture fitted to its training codes that it samples from, ``prior.pt``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from brainae.config import Config, load_config
from brainae.errors import BrainaeError
from brainae.io import atomic_path
from brainae.models import build_model
from brainae.models.prior import MixturePrior

PRIOR_FILE = "prior.pt"


def load_run(run_dir: str | Path, which: str = "best", device: str = "cpu") -> tuple[torch.nn.Module, Config]:
    """The network of a run in eval mode, with the run's resolved config.

    which: "best" (lowest validation loss) or "last"; falls back to last when best is missing.

    Example:
        >>> model, cfg = load_run("runs/ae")  # doctest: +SKIP
    """
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise BrainaeError(f"{run} is not a brainae run folder (no config.yaml); pass the --out of 'brainae train'")
    cfg = load_config(run / "config.yaml")
    ckpt = run / "checkpoints" / f"{which}.ckpt"
    if not ckpt.is_file():
        ckpt = run / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise BrainaeError(f"{run} has no checkpoint yet (checkpoints/best.ckpt); train it first")
    try:
        state = torch.load(ckpt, map_location=device, weights_only=False)["state_dict"]
    except Exception as e:
        raise BrainaeError(f"checkpoint {ckpt} cannot be read ({type(e).__name__}); retrain or use --which last") from None
    model = build_model(cfg.model, cfg.data.image_size)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    if hasattr(model, "code_prior") and (run / PRIOR_FILE).is_file():
        try:
            model.code_prior = MixturePrior.from_state(torch.load(run / PRIOR_FILE, map_location="cpu", weights_only=True))
        except Exception as e:
            raise BrainaeError(f"{run / PRIOR_FILE} cannot be read ({type(e).__name__}); delete it to sample "
                               f"from N(0, I)") from None
    return model.to(device).eval(), cfg


def fit_code_prior(model: torch.nn.Module, images: np.ndarray, components: int, seed: int = 0) -> MixturePrior:
    """A :class:`MixturePrior` of the codes (the posterior means) of ``images`` (uint8 (N, H, W)):
    pass the training split only, so samples never borrow from validation or test images."""
    from brainae.visualization.latent import encode_images  # matplotlib loads only when a prior is fitted

    model.eval()
    return MixturePrior.fit(torch.from_numpy(encode_images(model, images)), components, seed=seed)


def write_code_prior(run_dir: str | Path, prior: MixturePrior) -> Path:
    """Save ``prior`` as the run's ``prior.pt`` (atomically); :func:`load_run` attaches it."""
    path = Path(run_dir) / PRIOR_FILE
    with atomic_path(path) as tmp:
        torch.save(prior.state(), tmp)
    return path
