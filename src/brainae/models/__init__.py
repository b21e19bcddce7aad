"""Networks (plain nn.Modules). Importing this package registers every model variant."""
from brainae.models import ae, vae  # noqa: F401  (registration side effect)
from brainae.models import dae  # noqa: F401
from brainae.models import resae, skipae, unet  # noqa: F401
from brainae.models.residual import residual_output
from brainae.registry import get, names


def build_model(cfg, image_size: int):
    """Build the registered model ``cfg.name`` for square images of ``image_size`` pixels.

    With ``cfg.residual_output`` the network's output is read as noise and subtracted from the input
    (see ``brainae.models.residual``).
    """
    return residual_output(get("model", cfg.name)(cfg, image_size), cfg)


def model_names() -> list[str]:
    return names("model")
