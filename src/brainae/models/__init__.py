"""Networks (plain nn.Modules). Importing this package registers every model variant: the built-in
ones, then those of installed plugins (the ``brainae.models`` entry-point group)."""
import torch

from brainae.models import ae, vae  # noqa: F401  (registration side effect)
from brainae.models import dae  # noqa: F401
from brainae.models import resae, skipae, unet  # noqa: F401
from brainae.models.residual import residual_output
from brainae.registry import load_entry_points, model_spec, names


def build_model(cfg, image_size: int):
    """Build the registered model ``cfg.name`` for square images of ``image_size`` pixels.

    With ``cfg.residual_output`` the network's output is read as noise and subtracted from the input
    (see ``brainae.models.residual``).

    Conv weights are stored channels-last: oneDNN's CPU convolutions run on that layout and otherwise
    convert every activation back and forth. On a 2-core CPU the small conv nets train and infer about
    1.8x faster (``benchmarks/architectures.py --retime``), the study's AE, whose time goes mostly to
    its linear layers, 1.2x (``benchmarks/train_real.py``). The values are the same (tested); only
    the memory order differs.
    """
    model = residual_output(model_spec(cfg.name).build(cfg, image_size), cfg)
    return model.to(memory_format=torch.channels_last)


def model_names() -> list[str]:
    return names("model")


load_entry_points("brainae.models")  # models of installed plugins (examples/plugin_model)
