"""Benchmark: TPE + pruning against random search without pruning, same number of trials.

A reduced real problem: the study's AE and search space (lr x batch size x latent size) on the
real Training folder at 64x64 with a fixed subset (``data.limit``), each trial allowed
``--epochs`` epochs. For every seed, TPE + pruning runs ``--trials`` trials through ``run_sweep``; random search
without pruning draws the same number of trials from the fully trained grid (see main). We
record the epochs spent and the best validation loss reached (per-pixel MSE). The goal: reach the same best loss
(within ``--tolerance``, 5%) with at most 30% of the epochs.

    python benchmarks/sweep_efficiency.py [--data ../shared/data/brain-tumor-mri] [--trials 20] [--epochs 10] \\
        [--limit 100] [--pruners median hyperband] [--seeds 0 1 2] [--tag cpu]

Results: benchmarks/results/sweep_efficiency_<tag>.json and .md (the machine is named in both).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from brainae.config import build_config
from brainae.data.load import load_data
from brainae.sweeps.runner import SweepOptions, run_sweep
from brainae.sweeps.space import Space, seed_space

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri"
sys.path.insert(0, str(Path(__file__).parent))
from train_real import machine  # noqa: E402

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10, help="epoch budget of every trial")
    ap.add_argument("--limit", type=int, default=100, help="training images (validation scales with it)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pruners", nargs="+", default=["median", "hyperband"], choices=["median", "hyperband"])
    ap.add_argument("--tolerance", type=float, default=0.05, help="'same best loss': within this fraction")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no oversubscription on a shared CPU)")
    ap.add_argument("--tag", default="cpu")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        print(f"real data not found at {args.data}; pass --data (benchmark skipped)", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)

    cfg = build_config("ae", preset="seed", data=args.data, image_size=args.image_size, limit=args.limit,
                       accelerator="cpu")
    cfg.train.progress = False
    data = load_data(cfg.data, progress=False)
    space = Space("seed-reduced", seed_space().params, epochs=[args.epochs])
    work = Path(tempfile.mkdtemp(prefix="brainae-sweep-bench-"))
    start_all = time.perf_counter()
    runs = []
    try:
        # Random search without pruning, exactly: training is seeded, so a configuration always gives
        # the same curve. Train the whole 27-point grid once (grid sampler, no pruner), then draw each
        # seed's random search from it, as RandomSampler draws categorical values (with repeats).
        grid = run_sweep(cfg, SweepOptions("ae", work / "grid", space, trials=len(_grid_points(space)),
                                           sampler="grid", pruner="none", seed=0, quiet=True), data=data)
        table = {_key(t["params"]): t["value"] for t in grid["trials"] if t["state"] == "complete"}
        grid_seconds = sum(t["seconds"] or 0 for t in grid["trials"])
        print(f"grid: {len(table)} configurations x {args.epochs} epochs in {grid_seconds:.0f} s; "
              f"best {min(table.values()):.5f}", flush=True)
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            keys = list(table)
            draws = [keys[i] for i in rng.integers(0, len(keys), size=args.trials)]
            unique = sorted(set(draws))
            runs.append({"seed": seed, "method": "random, no pruning", "best_val_loss": min(table[k] for k in draws),
                         "epochs_run": len(unique) * args.epochs, "epochs_naive": args.trials * args.epochs,
                         "unique_configs": len(unique),
                         "seconds": round(len(unique) / len(table) * grid_seconds, 1)})
            for pruner in args.pruners:
                out = work / f"tpe-{pruner}-{seed}"
                t0 = time.perf_counter()
                s = run_sweep(cfg, SweepOptions("ae", out, space, trials=args.trials, sampler="tpe", pruner=pruner,
                                                seed=seed, quiet=True), data=data)
                runs.append({"seed": seed, "method": f"tpe + {pruner}", "best_val_loss": s["best"]["value"],
                             "epochs_run": s["epochs"]["run"], "epochs_naive": args.trials * args.epochs,
                             "unique_configs": len({_key(t["params"]) for t in s["trials"]}),
                             "states": s["states"], "best_params": s["best"]["params"],
                             "seconds": round(time.perf_counter() - t0, 1)})
                shutil.rmtree(out, ignore_errors=True)
            for r in runs[-1 - len(args.pruners):]:
                print(f"seed {seed} {r['method']:<20} epochs {r['epochs_run']:>4} (naive {r['epochs_naive']})"
                      f"  best {r['best_val_loss']:.5f}  {r['seconds']:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = "random, no pruning"
    refs = {r["seed"]: r for r in runs if r["method"] == base}
    summary = []
    for method in [base] + [f"tpe + {p}" for p in args.pruners]:
        rows = [r for r in runs if r["method"] == method]
        ratio = [r["epochs_run"] / refs[r["seed"]]["epochs_run"] for r in rows]
        rel = [r["best_val_loss"] / refs[r["seed"]]["best_val_loss"] - 1 for r in rows]
        row = {
            "method": method, "epochs_mean": float(np.mean([r["epochs_run"] for r in rows])),
            "epochs_fraction_of_random": float(np.mean(ratio)),
            "epochs_fraction_of_naive_random": float(np.mean([r["epochs_run"] / r["epochs_naive"] for r in rows])),
            "best_val_loss_mean": float(np.mean([r["best_val_loss"] for r in rows])),
            "best_val_loss_per_seed": [r["best_val_loss"] for r in rows],
            "best_loss_vs_random": float(np.mean(rel)), "worst_seed_best_loss_vs_random": float(np.max(rel)),
            "grid_rank_of_best": [sorted(table.values()).index(r["best_val_loss"]) + 1
                                  if r["best_val_loss"] in table.values() else None for r in rows],
        }
        if method != base:
            row["goal_met"] = bool(row["epochs_fraction_of_random"] <= 0.30
                                   and row["worst_seed_best_loss_vs_random"] <= args.tolerance)
        summary.append(row)
    result = {
        "machine": machine(), "torch_threads": args.threads,
        "data": f"{args.data} (Training folder), {args.image_size}x{args.image_size}, "
                f"{int((data.splits == 'train').sum())} train / {int((data.splits == 'val').sum())} val images",
        "model": "ae (the study's network)", "space": [r["key"] + " " + r["values"] for r in space.table()],
        "trials": args.trials, "epochs_per_trial": args.epochs, "seeds": args.seeds, "tolerance": args.tolerance,
        "goal": "same best validation loss (within tolerance, every seed) for at most 30% of the epochs of random search",
        "note": "epochs of random search count each distinct configuration once (brainae reuses the result of a "
                "repeated configuration); epochs_fraction_of_naive_random counts every trial",
        "command": "python benchmarks/sweep_efficiency.py " + " ".join(sys.argv[1:]),
        "grid": {_key_str(k): v for k, v in sorted(table.items(), key=lambda kv: kv[1])},
        "total_seconds": round(time.perf_counter() - start_all, 1), "summary": summary, "runs": runs,
    }
    res_dir = ROOT / "benchmarks" / "results"
    (res_dir / f"sweep_efficiency_{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# Sweep efficiency ({result['machine']})", "", f"`{result['command']}`: {result['data']}; "
          f"{args.trials} trials x up to {args.epochs} epochs, seeds {args.seeds}; "
          f"total {result['total_seconds'] / 60:.1f} min.", "",
          "| method | epochs (mean) | epochs vs random (distinct configs / every trial) | best val. loss (mean) | "
          "best loss vs random (mean / worst seed) | rank of best in the 27-point grid | goal met |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary:
        md.append(f"| {r['method']} | {r['epochs_mean']:.0f} | {100 * r['epochs_fraction_of_random']:.0f}% / "
                  f"{100 * r['epochs_fraction_of_naive_random']:.0f}% | {r['best_val_loss_mean']:.5f} | "
                  f"{100 * r['best_loss_vs_random']:+.1f}% / {100 * r['worst_seed_best_loss_vs_random']:+.1f}% | "
                  f"{r['grid_rank_of_best']} | {'baseline' if r['method'] == base else 'yes' if r['goal_met'] else 'no'} |")
    (res_dir / f"sweep_efficiency_{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def _grid_points(space: Space) -> list:
    return list(itertools.product(*[p.choices for p in space.params]))


def _key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def _key_str(key: tuple) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in key)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
