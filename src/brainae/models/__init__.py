"""Networks (plain nn.Modules). Importing this package registers every model variant."""
from brainae.models import ae, vae  # noqa: F401  (registration side effect)
from brainae.models import dae  # noqa: F401
from brainae.registry import get, names


def build_model(cfg, image_size: int):
    """Build the registered model ``cfg.name`` for square images of ``image_size`` pixels."""
    return get("model", cfg.name)(cfg, image_size)


def model_names() -> list[str]:
    return names("model")
