"""Open a finished (or interrupted) run folder: its config and its trained network."""
from __future__ import annotations

from pathlib import Path

import torch

from brainae.config import Config, load_config
from brainae.errors import BrainaeError
from brainae.models import build_model


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
    return model.to(device).eval(), cfg
