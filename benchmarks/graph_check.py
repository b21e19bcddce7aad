"""Does the CUDA-graph training step (training/graphs.py) learn what the eager step learns? (GPU only.)

A. The study's AE, the same initial weights and the same real batches (a batch of 5 every 50 steps, which
   runs eagerly between replays, as an epoch's last batch does): the loss after N steps, eager against
   ``GraphedStep``, and the gradients of the first step compared one by one.
B. ``brainae train`` on a slice of the data, ``train.cuda_graphs`` on against off: validation loss per epoch.
   (This part found that Lightning's zero_grad before each validation broke the graph path: see
   ``AutoencoderModule.on_validation_model_zero_grad``.)

    python benchmarks/graph_check.py --data .device_data/brain-tumor-mri
"""
from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from brainae.config import build_config
from brainae.data.load import load_data
from brainae.models import build_model
from brainae.training.graphs import GraphedStep
from brainae.training.callbacks import read_history
from brainae.training.train import train


def batches(images: np.ndarray, steps: int, device) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    out = []
    for s in range(steps):
        n = 5 if s % 50 == 49 else 16
        x = torch.from_numpy(images[rng.choice(len(images), n, replace=False)][:, None]).to(device).float() / 255
        out.append(x.contiguous(memory_format=torch.channels_last))
    return out


class AssignedGradients(GraphedStep):
    """The first version of GraphedStep: gradients set to None before capture, so that the captured
    backward allocates them in graph memory. Kept here to show what it did."""

    def __init__(self, model, step_fn, example, autocast_dtype=None):
        self.model, self.step_fn, self.autocast_dtype = model, step_fn, autocast_dtype
        self.input = example.detach().clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._run()
        torch.cuda.current_stream().wait_stream(side)
        for p in model.parameters():
            p.grad = None
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.terms = self._run()


def run(model, xs, graphed=None) -> tuple[list[float], list[torch.Tensor]]:
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True)

    def fwd_bwd(x):
        loss = F.mse_loss(model(x).recon, x)
        loss.backward()
        return {"loss": loss.detach()}

    graph, losses, first_grads = None, [], None
    for x in xs:
        if graphed and graph is None and len(x) == 16:
            graph = graphed(model, fwd_bwd, x)
        if graph is not None and graph.matches(x):
            terms = graph(x)
        else:
            model.zero_grad(set_to_none=False)
            terms = fwd_bwd(x)
        if first_grads is None:
            first_grads = [p.grad.detach().clone() for p in model.parameters()]
        opt.step()
        losses.append(terms["loss"].item())
    return losses, first_grads


def part_a(images, device, steps: int) -> None:
    cfg = build_config("ae", preset="seed")
    torch.manual_seed(0)
    base = build_model(cfg.model, 128).to(device)
    xs = batches(images, steps, device)
    eager, g_eager = run(copy.deepcopy(base), xs)
    curves = {"eager": eager}
    for name, cls in (("GraphedStep", GraphedStep), ("assigned grads (first version)", AssignedGradients)):
        model = copy.deepcopy(base)
        curves[name], g = run(model, xs, graphed=cls)
        # over all weights at once: a conv bias before BatchNorm has a zero gradient up to rounding, so
        # its own relative difference is noise over noise
        diff = torch.sqrt(sum(((a - b).float() ** 2).sum() for a, b in zip(g_eager, g)))
        norm = torch.sqrt(sum((a.float() ** 2).sum() for a in g_eager))
        print(f"A. {name}: first-step gradients, relative difference {float(diff / norm):.2e}", flush=True)
    for s in (0, 10, 50, 100, steps // 2, steps - 1):
        print(f"   step {s:4d}: " + "   ".join(f"{k} {np.mean(v[max(0, s - 4):s + 1]):.5f}" for k, v in curves.items()))


def part_b(data: str, epochs: int) -> None:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("off", "on"):
            cfg = build_config("ae", preset="seed", data=data, epochs=epochs, limit=600,
                               overrides=[f"train.cuda_graphs={mode}", "train.progress=false"])
            m = train(cfg, Path(tmp) / mode)
            rows[mode] = [round(r["val_loss"], 5) for r in read_history(Path(tmp) / mode / "history.csv")]
            print(f"B. cuda_graphs={mode}: {m['seconds']} s, val loss per epoch {rows[mode]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=".device_data/brain-tumor-mri")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    ds = load_data(build_config("ae", preset="seed", data=args.data).data)
    device = torch.device("cuda")
    part_a(ds.split("train").images, device, args.steps)
    part_b(args.data, args.epochs)


if __name__ == "__main__":
    main()
