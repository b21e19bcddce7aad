"""Where the time of a ``brainae train`` epoch goes, and how fast the bare step can be, on this machine.

1. The study's AE recipe (preset seed, batch 16) trained for a few epochs under each variant in
   ``VARIANTS``, in one process with the data loaded once, under Lightning's SimpleProfiler: seconds
   per epoch (the first left out: warm-up, compilation) and the profiler's costliest actions. The
   profiler times the host: on a GPU, time spent waiting for the device shows up wherever the host
   waits (a checkpoint copy, a loss read), which is what it is meant to find.
2. The floor: the same network's training step (forward, MSE, backward, fused Adam) on one fixed
   batch, eager and, on a GPU, replayed as one CUDA graph: milliseconds per step.

    python benchmarks/gpu_profile.py --data .device_data/brain-tumor-mri --epochs 4 --tag gpu
    python benchmarks/gpu_profile.py --data phantom:300 --image-size 32 --epochs 2 --accelerator cpu --tag smoke
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.profilers import SimpleProfiler

from brainae.config import build_config
from brainae.data.load import load_data
from brainae.models import build_model
from brainae.training.callbacks import read_history
from brainae.training.train import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_real import command_line, data_name, machine, write_results  # noqa: E402

# name -> config overrides on top of the study's recipe (brainae's defaults: deterministic, precision
# auto, no CUDA graphs); "graphs" is the fast path of training/graphs.py
VARIANTS = {
    "default": [],
    "graphs": ["train.cuda_graphs=on"],
    "graphs_nondeterministic": ["train.cuda_graphs=on", "train.deterministic=false"],
    "graphs_fp32": ["train.cuda_graphs=on", "train.precision=32"],
    "nondeterministic": ["train.deterministic=false"],
    "nondeterministic_compile": ["train.deterministic=false", "train.compile=true"],
}


def profiled_trainer(profiler: SimpleProfiler):
    """lightning.Trainer with ``profiler`` added, for the runs of this script only."""
    base = L.Trainer

    class ProfiledTrainer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "profiler": profiler})

    return base, ProfiledTrainer


def profile_variant(args, ds, overrides: list[str], out: Path) -> dict:
    cfg = build_config("ae", preset="seed", data=args.data, epochs=args.epochs, accelerator=args.accelerator,
                       overrides=[f"data.image_size={args.image_size}", "train.progress=false", *overrides])
    profiler = SimpleProfiler()
    base, patched = profiled_trainer(profiler)
    L.Trainer = patched
    try:
        metrics = train(cfg, out, data=ds, slim_weights=False)
    except Exception as e:  # a variant that fails (a compile error on this machine) is recorded, not fatal
        return {"overrides": overrides, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    finally:
        L.Trainer = base
    secs = [r["seconds"] for r in read_history(out / "history.csv")]
    totals = {k: (float(np.sum(v)), len(v)) for k, v in profiler.recorded_durations.items()}
    top = sorted(totals.items(), key=lambda kv: -kv[1][0])[:14]
    return {
        "overrides": overrides,
        "precision": cfg.train.precision,
        "fit_seconds": metrics["seconds"],
        "first_epoch_seconds": round(secs[0], 3),
        "later_epoch_seconds": round(float(np.median(secs[1:])), 3) if len(secs) > 1 else None,
        "steps_per_epoch": metrics["n_train"] // cfg.train.batch_size,
        "best_val_loss": metrics["best_val_loss"],
        "profile_top": [{"action": k, "seconds": round(s, 3), "calls": n} for k, (s, n) in top],
    }


def step_floor(args, device: torch.device, steps: int = 200) -> dict:
    """Milliseconds per bare training step of the study's AE on one batch of 16, eager and as a CUDA graph."""
    cfg = build_config("ae", preset="seed", overrides=[f"data.image_size={args.image_size}"])
    out = {}
    for precision in ("32", "bf16"):
        if precision == "bf16" and not (device.type == "cuda" and torch.cuda.is_bf16_supported()):
            continue
        torch.manual_seed(0)
        model = build_model(cfg.model, args.image_size).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True, capturable=device.type == "cuda")
        x = torch.rand(16, 1, args.image_size, args.image_size, device=device).contiguous(memory_format=torch.channels_last)

        def step():
            opt.zero_grad(set_to_none=False)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.mse_loss(model(x).recon.float(), x)
            loss.backward()
            opt.step()
            return loss

        def timed(fn) -> float:
            for _ in range(10):
                fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return round(1000 * (time.perf_counter() - t) / steps, 3)

        out[f"eager_{precision}_ms"] = timed(step)
        if device.type == "cuda":
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    step()
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            out[f"graph_{precision}_ms"] = timed(graph.replay)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="phantom:300")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--variants", default="default,graphs,graphs_nondeterministic,graphs_fp32",
                   help=f"comma-separated names from {', '.join(VARIANTS)}")
    p.add_argument("--tag", default="cpu")
    args = p.parse_args(argv)
    cfg = build_config("ae", preset="seed", data=args.data, overrides=[f"data.image_size={args.image_size}"])
    ds = load_data(cfg.data)
    device = torch.device("cuda" if args.accelerator in ("cuda", "gpu") or (
        args.accelerator == "auto" and torch.cuda.is_available()) else "cpu")
    results = {"floor": step_floor(args, device)}
    print("floor", results["floor"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            r = profile_variant(args, ds, VARIANTS[name], Path(tmp) / name)
            results[name] = r
            print(name, {k: v for k, v in r.items() if k != "profile_top"}, flush=True)
            for row in r.get("profile_top", [])[:8]:
                print(f"   {row['seconds']:8.3f} s {row['calls']:6d}  {row['action']}", flush=True)
    lines = ["| variant | s/epoch (after the first) | first epoch s | precision | best val loss |", "|---|---|---|---|---|"]
    for name in args.variants.split(","):
        r = results[name]
        lines.append(f"| {name} | {r.get('later_epoch_seconds', r.get('error'))} | {r.get('first_epoch_seconds')} | "
                     f"{r.get('precision')} | {r.get('best_val_loss')} |")
    lines.append("")
    lines.append("Bare step, ms: " + ", ".join(f"{k} {v}" for k, v in results["floor"].items()))
    write_results(f"gpu_profile_{args.tag}", {
        "command": command_line("gpu_profile.py"), "machine": machine(), "data": data_name(args.data),
        "image_size": args.image_size, "epochs": args.epochs, **results},
        f"# Where an epoch's time goes ({machine()})\n\n`{command_line('gpu_profile.py')}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
