"""Networks (plain nn.Modules). Importing this package registers every model variant."""
import torch

from brainae.models import ae, vae  # noqa: F401  (registration side effect)
from brainae.models import dae  # noqa: F401
from brainae.models import resae, skipae, unet  # noqa: F401
from brainae.models.residual import residual_output
from brainae.registry import get, names


def build_model(cfg, image_size: int):
    """Build the registered model ``cfg.name`` for square images of ``image_size`` pixels.

    With ``cfg.residual_output`` the network's output is read as noise and subtracted from the input
    (see ``brainae.models.residual``).

    Conv weights are stored channels-last: oneDNN's CPU convolutions (and tensor-core GPU kernels)
    run on that layout, and otherwise convert every activation back and forth. Training and inference
    are about 1.8x faster on a 2-core CPU (``benchmarks/architectures.py --retime``); the values are
    the same, only the memory order differs.
    """
    model = residual_output(get("model", cfg.name)(cfg, image_size), cfg)
    return model.to(memory_format=torch.channels_last)


def model_names() -> list[str]:
    return names("model")
