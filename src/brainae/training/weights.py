"""Slim weights: a network's state dict alone, stored as safetensors (``RUN/weights/best.safetensors``).

A Lightning checkpoint also carries the optimizer's moments and loop state (about three times the
network), and reading it goes through torch.load, which must be kept from unpickling code (see
``run.read_checkpoint``). A safetensors file is a JSON header plus raw tensor bytes: reading it can
run nothing, it loads without Lightning, and other frameworks read it too. The run's
``config.yaml`` says which network the tensors fit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from brainae.errors import BrainaeError, first_line
from brainae.io import atomic_write_bytes

WEIGHTS_FILE = Path("weights") / "best.safetensors"  # inside a run folder


def save_weights(path: str | Path, state: dict[str, torch.Tensor], metadata: Optional[dict[str, str]] = None) -> Path:
    """Write ``state`` (a network's ``state_dict()``) to ``path`` as safetensors, atomically.

    Tensors are stored on the CPU, in their own dtypes, in the default memory layout (safetensors
    has no strides; conv weights kept channels-last by ``build_model`` are copied to it).

    Example:
        >>> save_weights("net.safetensors", model.state_dict(), {"model": "ae"})  # doctest: +SKIP
    """
    odd = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise TypeError(f"state dict entries that are not tensors cannot be stored as safetensors: {odd[:3]}")
    # a copy of each: tensors that share memory (tied weights) would otherwise be refused
    tensors = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in state.items()}
    path = Path(path)
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata={"format": "pt", **(metadata or {})}))
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file; a damaged or foreign file is a one-line error."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError, TypeError, RuntimeError) as e:
        detail = first_line(e, type(e).__name__)[:120]
        raise BrainaeError(f"{path} is not a readable safetensors file ({detail}); delete it to load the run's "
                           f"checkpoint instead, or export the run again") from None
    return state, metadata


def load_network_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path,
                       config: str | Path) -> None:
    """Load ``state`` into ``model`` strictly: every key, shape and dtype must match the network.

    source, config: the files named in the error (the weights, and the config that built ``model``).

    A dtype is checked too because ``load_state_dict`` would silently cast (a file whose float
    weights were replaced by integers would load as garbage instead of failing).
    """
    expected = model.state_dict()
    wrong = [k for k, v in state.items() if k in expected and v.dtype != expected[k].dtype]
    if wrong:
        k = wrong[0]
        raise BrainaeError(f"{source} stores {k} as {state[k].dtype}, but the network that {config} describes "
                           f"needs {expected[k].dtype}; the file is damaged or from another run")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = first_line(e, "shapes differ")
        raise BrainaeError(f"{source} does not fit the network that {config} describes ({detail[:160]}); "
                           f"restore the run's config.yaml") from None
