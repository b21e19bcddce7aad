"""Export a trained run for use outside brainae: safetensors weights, ONNX or TorchScript.

Every export is checked before it is kept: the exported file is read back and run on a few of the
run's own test images, and its output must match the run's network (float32, on the CPU) to within
``TOLERANCE``; otherwise nothing is written. ONNX and TorchScript hold the network with a single
output, the reconstruction (:class:`Reconstruction`). A VAE's fitted ``prior.pt`` stays in the
run folder: these files reconstruct, they do not sample.

``training.run.write_best_weights`` writes every run's ``weights/best.safetensors`` when it ends.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn as nn

from brainae.config import Config
from brainae.data.types import with_channels
from brainae.errors import BrainaeError, first_line
from brainae.evaluation.evaluate import resolve_eval_data
from brainae.io import atomic_path
from brainae.models import build_model
from brainae.training.run import load_run, weights_metadata
from brainae.training.weights import load_network_state, read_weights, save_weights

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}
TOLERANCE = 1e-4  # max abs difference, on [0, 1] pixels: far below one grey level (1/255)
CHECK_IMAGES = 4


class Reconstruction(nn.Module):
    """``net`` with one tensor output, the reconstruction: (B, C, H, W) in [0, 1] -> (B, C, H, W).

    Models return a ``ModelOutput``, which tracing and the ONNX exporter cannot carry as a graph
    output, and an exported model is wanted for its image. In eval mode a VAE decodes its mean
    code, so the output is deterministic.

    Example:
        >>> from brainae.models.ae import ConvAE
        >>> Reconstruction(ConvAE(image_size=32, channels=(4, 8), latent_dim=8)).eval()(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).recon  # (B, C, H, W)


def check_images(cfg: Config, n: int = CHECK_IMAGES) -> tuple[torch.Tensor, str]:
    """Up to ``n`` test images of the run's data, preprocessed as it was trained: float (N, C, H, W) in [0, 1].

    When the data cannot be read here (a folder on another machine), random images of the run's
    size instead, and the description says so.
    """
    try:
        images = resolve_eval_data(cfg, None, "test", progress=False).images[:n]
        return torch.from_numpy(with_channels(images)).float() / 255.0, f"{len(images)} test images"
    except BrainaeError as e:
        size = cfg.data.image_size
        x = torch.rand(n, cfg.model.in_channels, size, size, generator=torch.Generator().manual_seed(0))
        return x, f"{n} random images (the run's data is not readable here: {str(e)[:80]})"


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """The exporters warn about their own deprecations and optional packages, not about the model."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        onnx_log.setLevel(level)


def _example(x: torch.Tensor) -> torch.Tensor:
    # two images: torch.export fixes a batch dimension traced at size 1, and the files should take any batch
    return x.repeat(2, 1, 1, 1)[:2]


def _onnx(net: nn.Module, cfg: Config, x: torch.Tensor, path: Path) -> np.ndarray:
    import onnxruntime

    with _quiet_exporters():
        torch.onnx.export(Reconstruction(net).eval(), (_example(x),), str(path), dynamo=True, external_data=False,
                          input_names=["image"], output_names=["recon"], verbose=False,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _torchscript(net: nn.Module, cfg: Config, x: torch.Tensor, path: Path) -> np.ndarray:
    with _quiet_exporters():
        traced = torch.jit.trace(Reconstruction(net).eval(), _example(x), check_trace=False)  # checked below, on every image
        with open(path, "wb") as f:
            torch.jit.save(traced, f)
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(x).numpy()


def _safetensors(net: nn.Module, cfg: Config, x: torch.Tensor, path: Path) -> np.ndarray:
    save_weights(path, net.state_dict(), weights_metadata(cfg, "export"))
    fresh = build_model(cfg.model, cfg.data.image_size).eval()  # rebuilt from the config alone, as a user would
    load_network_state(fresh, read_weights(path)[0], path, "the run's config")
    with torch.no_grad():
        return fresh(x).recon.numpy()


WRITERS: dict[str, Callable[[nn.Module, Config, torch.Tensor, Path], np.ndarray]] = {
    "onnx": _onnx, "torchscript": _torchscript, "safetensors": _safetensors,
}


def _require(fmt: str) -> None:
    if fmt not in FORMATS:
        raise BrainaeError(f"export format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise BrainaeError(f"ONNX export needs {', '.join(missing)} (onnxruntime checks the file); "
                               f"pip install 'brainae[onnx]'")


def export_network(net: nn.Module, cfg: Config, x: torch.Tensor, path: str | Path, fmt: str) -> float:
    """Write ``net`` (built from ``cfg``) to ``path`` as ``fmt`` and return the largest difference between
    the file's reconstructions of ``x`` and ``net``'s. Above ``TOLERANCE`` it raises and writes nothing.

    Example:
        >>> export_network(model, cfg, torch.rand(4, 1, 128, 128), "ae.onnx", "onnx")  # doctest: +SKIP
        5.96e-08
    """
    _require(fmt)
    net = net.cpu().eval()
    with torch.no_grad():
        expected = net(x).recon.float().numpy()
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            got = WRITERS[fmt](net, cfg, x, tmp)
        except (BrainaeError, OSError):
            raise
        except Exception as e:
            detail = first_line(e)[:160]
            raise BrainaeError(f"{fmt} export of model '{cfg.model.name}' failed ({type(e).__name__}: {detail}); "
                               f"export as safetensors, which stores any network") from None
        diff = float(np.abs(got.astype(np.float32) - expected).max()) if got.shape == expected.shape else float("inf")
        if not diff <= TOLERANCE:
            raise BrainaeError(f"the {fmt} export of model '{cfg.model.name}' differs from the run's network by up to "
                               f"{diff:.3g} (more than {TOLERANCE:g}); nothing was written to {path}")
    return diff


def export_run(run_dir: str | Path, fmt: str, out: Optional[str | Path] = None, which: str = "best") -> dict:
    """Export a run's network as ``fmt`` (onnx, torchscript or safetensors) to ``out``, checked on its test images.

    out: default ``RUN/export/<which>.onnx`` (``.torchscript.pt``, ``.safetensors``).
    Returns the file, its size, the images checked on and the largest difference found.

    Example:
        >>> export_run("runs/ae", "onnx")["max_abs_diff"] < 1e-4  # doctest: +SKIP
        True
    """
    _require(fmt)  # these checks come before the run and its data are loaded
    path = Path(out) if out else Path(run_dir) / "export" / f"{which}{FORMATS[fmt]}"
    if path.is_dir():
        raise BrainaeError(f"--out {path} is a folder; name a file such as {path / (which + FORMATS[fmt])}")
    model, cfg = load_run(run_dir, which)
    x, checked_on = check_images(cfg)
    diff = export_network(model, cfg, x, path, fmt)
    return {"path": str(path), "format": fmt, "which": which, "bytes": path.stat().st_size,
            "checked_on": checked_on, "max_abs_diff": diff, "tolerance": TOLERANCE}
