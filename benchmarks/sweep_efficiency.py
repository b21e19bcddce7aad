"""Benchmark: TPE + pruning against random search without pruning, same number of trials.

A reduced real problem: the study's AE and search space (lr x batch size x latent size, 27
configurations) on the real Training folder at 64x64 with a fixed subset (``data.limit``), each
trial allowed ``--epochs`` epochs. We record the epochs spent and the best validation loss reached
(per-pixel MSE). The goal: on every seed, reach the same best loss as random search (within
``--tolerance``, 5%) with at most 30% of its epochs.

How each method is measured:
- Random search without pruning, exactly: training is seeded, so a configuration always gives the
  same curve. The whole grid is trained once (grid sampler, no pruner); each seed then draws
  ``--trials`` configurations from it as RandomSampler does (with repeats).
- TPE + pruning: ``run_sweep`` itself, ``--trials`` trials per seed and pruner (real training).
- Epochs are counted alike: a configuration trains once. ``brainae sweep`` answers a trial that
  repeats an earlier configuration from that trial's result (0 epochs), and random search is
  charged for its distinct configurations only; ``epochs_fraction_of_naive_random`` charges it
  trials x epochs instead.
- Replay: the same TPE sampler and pruner run over the grid's recorded curves for many more seeds
  and trial counts (``--replay-seeds``, ``--replay-trials``), in seconds. Seeded training makes
  this exact; the results file says whether the replay reproduced every real run.

    python benchmarks/sweep_efficiency.py [--data ../shared/data/brain-tumor-mri] [--trials 40] [--epochs 10] \\
        [--limit 100] [--pruners sha median hyperband] [--seeds 0 1 2] [--replay-seeds 20] [--tag cpu]
    # re-analyse a results file without training (new replay settings; the real runs are kept)
    python benchmarks/sweep_efficiency.py --reanalyse benchmarks/results/sweep_efficiency_cpu.json

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
import optuna
import torch

from brainae.config import build_config
from brainae.data.load import load_data
from brainae.sweeps.runner import run_sweep
from brainae.sweeps.space import Space, seed_space
from brainae.sweeps.study import PRUNERS, SweepOptions, make_pruner, make_sampler

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri"
BASE = "random, no pruning"
NO_REPEATS = "random, no pruning, no repeats"
# How random search's epochs are counted; each TPE run is compared with it under all three.
ACCOUNTINGS = {
    "per_trial": ("random search charged for every trial (trials x epochs), as a plain random search "
                  "without result reuse spends them: the issue's wording"),
    "no_repeats": "random search that never repeats a configuration (a shuffled grid), charged for every trial",
    "distinct": ("random search with repeats, charged for its distinct configurations only (brainae sweep "
                 "reuses a repeated configuration's result): the strictest"),
}
sys.path.insert(0, str(Path(__file__).parent))
from train_real import command_line, machine, portable_path  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=10, help="epoch budget of every trial")
    ap.add_argument("--limit", type=int, default=100, help="training images (validation scales with it)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pruners", nargs="+", default=["sha", "median", "hyperband"],
                    choices=[p for p in PRUNERS if p != "none"])
    ap.add_argument("--replay-seeds", type=int, default=20, help="seeds 0..N-1 replayed on the grid's curves")
    ap.add_argument("--replay-trials", type=int, nargs="+", default=[20, 30, 40])
    ap.add_argument("--tolerance", type=float, default=0.05, help="'same best loss': within this fraction")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no oversubscription on a shared CPU)")
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--reanalyse", metavar="RESULTS.json", help="recompute summary and replay from a results file "
                    "(its grid curves and real runs; trials, seeds, epochs and pruners come from the file)")
    args = ap.parse_args()
    if args.reanalyse:
        return reanalyse(args)
    if not Path(args.data).is_dir():
        print(f"real data not found at {args.data}; pass --data (benchmark skipped)", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    cfg = build_config("ae", preset="seed", data=args.data, image_size=args.image_size, limit=args.limit,
                       accelerator="cpu")
    cfg.train.progress = False
    data = load_data(cfg.data, progress=False)
    space = Space("seed-reduced", seed_space().params, epochs=[args.epochs])
    work = Path(tempfile.mkdtemp(prefix="brainae-sweep-bench-"))
    start_all = time.perf_counter()
    runs = []
    try:
        grid = run_sweep(cfg, SweepOptions("ae", work / "grid", space, trials=len(_grid_points(space)),
                                           sampler="grid", pruner="none", seed=0, quiet=True), data=data)
        table = {_key(t["params"]): t["value"] for t in grid["trials"] if t["state"] == "complete"}
        curves = {_key(t["params"]): list(t["intermediate"].values()) for t in grid["trials"]}
        grid_seconds = sum(t["seconds"] or 0 for t in grid["trials"])
        print(f"grid: {len(table)} configurations x {args.epochs} epochs in {grid_seconds:.0f} s; "
              f"best {min(table.values()):.5f}", flush=True)
        for seed in args.seeds:
            for repeats in (True, False):
                r = random_search(table, seed, args.trials, args.epochs, repeats)
                runs.append({**r, "seconds": round(r["unique_configs"] / len(table) * grid_seconds, 1)})
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

    result = {
        "machine": machine(), "torch_threads": args.threads,
        "data": f"{portable_path(args.data)} (Training folder), {args.image_size}x{args.image_size}, "
                f"{int((data.splits == 'train').sum())} train / {int((data.splits == 'val').sum())} val images",
        "model": "ae (the study's network)", "space": [r["key"] + " " + r["values"] for r in space.table()],
        "trials": args.trials, "epochs_per_trial": args.epochs, "seeds": args.seeds, "tolerance": args.tolerance,
        "command": command_line("sweep_efficiency.py"),
        "total_seconds": round(time.perf_counter() - start_all, 1),
    }
    analyse(result, runs, table, curves, space, args)
    return 0


def reanalyse(args: argparse.Namespace) -> int:
    """Summary, replay and markdown again from a results file: no training, the real runs unchanged."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    old = json.loads(Path(args.reanalyse).read_text())
    args.trials, args.epochs, args.seeds = old["trials"], old["epochs_per_trial"], old["seeds"]
    args.pruners = [r["method"].split(" + ")[1] for r in old["summary"] if r["method"].startswith("tpe")]
    space = Space("seed-reduced", seed_space().params, epochs=[args.epochs])
    # in the grid's training order, as in the original run: random search draws by position in it
    table = {_parse_key_str(k, space): old["grid"][k] for k in old["grid_curves"]}
    curves = {_parse_key_str(k, space): c for k, c in old["grid_curves"].items()}
    runs = [{k: v for k, v in r.items() if k in ("seed", "method", "best_val_loss", "epochs_run", "epochs_naive",
                                                 "unique_configs", "states", "best_params", "seconds")}
            for r in old["runs"] if r["method"] != NO_REPEATS]
    for seed in args.seeds:  # derived from the grid, like random search itself
        runs.append(random_search(table, seed, args.trials, args.epochs, repeats=False))
    result = {k: old[k] for k in ("machine", "torch_threads", "data", "model", "space", "trials", "epochs_per_trial",
                                  "seeds", "command", "total_seconds")}
    result["tolerance"] = args.tolerance
    result["reanalysed_with"] = command_line("sweep_efficiency.py")
    analyse(result, runs, table, curves, space, args)
    return 0


def analyse(result: dict, runs: list[dict], table: dict, curves: dict, space: Space, args: argparse.Namespace) -> None:
    """Summarise the real runs, replay more seeds and trial counts, write the .json and .md results."""
    summary = summarise(runs, [f"tpe + {p}" for p in args.pruners], table, args.tolerance)
    t0 = time.perf_counter()
    replayed = {(r["seed"], r["method"]): replay(curves, space, r["method"].split(" + ")[1], args.trials, r["seed"])
                for r in runs if r["method"].startswith("tpe")}
    mismatches = [f"seed {seed} {method}" for (seed, method), (epochs, best) in replayed.items()
                  if (epochs, best) != next((r["epochs_run"], r["best_val_loss"]) for r in runs
                                            if r["seed"] == seed and r["method"] == method)]
    replay_rows = []
    for trials in args.replay_trials:
        sim = []
        for seed in range(args.replay_seeds):
            sim.append(random_search(table, seed, trials, args.epochs))
            sim.append(random_search(table, seed, trials, args.epochs, repeats=False))
            for pruner in args.pruners:
                epochs, best = replay(curves, space, pruner, trials, seed)
                sim.append({"seed": seed, "method": f"tpe + {pruner}", "best_val_loss": best, "epochs_run": epochs,
                            "epochs_naive": trials * args.epochs})
        for row in summarise(sim, [f"tpe + {p}" for p in args.pruners], table, args.tolerance):
            replay_rows.append({"trials": trials, **{k: v for k, v in row.items() if k not in ("best_val_loss_per_seed",
                                                                                            "grid_rank_of_best")}})
    print(f"replay: {len(args.replay_trials) * args.replay_seeds * len(args.pruners)} runs in "
          f"{time.perf_counter() - t0:.0f} s; reproduces the real runs: {not mismatches}", flush=True)

    result.update({
        "goal": "the same best validation loss as random search (within tolerance) for at most 30% of its epochs, "
                "checked on every seed",
        "accountings": ACCOUNTINGS,
        "note": "a TPE trial that repeats an earlier configuration costs 0 epochs (brainae sweep reuses the earlier "
                "result); random search is charged as each accounting says",
        "pruners": {p: _describe(make_pruner(p, args.epochs)) for p in args.pruners},
        # the sampler each trial gets (TrialSampler makes one per trial, seeded from the seed and the trial number)
        "tpe": (_describe(make_sampler("tpe", space, 0, args.trials)._inner) + ", n_startup_trials = trials // 3 "
                "within [3, 10], made afresh for every trial with a seed drawn from (seed, trial number)"),
        "summary": summary, "runs": runs,
        "replay": {"seeds": f"0..{args.replay_seeds - 1}", "reproduces_real_runs": not mismatches,
                   "mismatches": mismatches, "rows": replay_rows},
        "grid": {_key_str(k): v for k, v in sorted(table.items(), key=lambda kv: kv[1])},
        "grid_curves": {_key_str(k): c for k, c in curves.items()},  # loss per epoch, in training order
    })
    res_dir = Path(os.environ.get("BENCH_RESULTS", ROOT / "benchmarks" / "results"))
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / f"sweep_efficiency_{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result, args)
    (res_dir / f"sweep_efficiency_{args.tag}.md").write_text(md)
    print(md)


def random_search(table: dict, seed: int, trials: int, epochs: int, repeats: bool = True) -> dict:
    """Random search drawn from the trained grid (``table`` in its training order). With ``repeats``, as
    RandomSampler draws categorical values: uniformly, with repeats. Without, a shuffled grid: no
    configuration twice, so at most the grid's size of trials."""
    keys = list(table)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(keys), size=trials) if repeats else rng.permutation(len(keys))[:trials]
    draws = [keys[i] for i in picks]
    unique = set(draws)
    return {"seed": seed, "method": BASE if repeats else NO_REPEATS, "best_val_loss": min(table[k] for k in draws),
            "epochs_run": len(unique) * epochs, "epochs_naive": len(draws) * epochs, "unique_configs": len(unique)}


def replay(curves: dict, space: Space, pruner: str, trials: int, seed: int) -> tuple[int, float]:
    """(epochs run, best value) of ``run_sweep``'s TPE + ``pruner`` with the grid's curves as training:
    the same sampler, pruner, reuse of repeated configurations and pruning rule (report the epoch's
    loss; prune before the last epoch only) as brainae.sweeps.objective."""
    epochs = len(next(iter(curves.values())))
    # the study's name too: Hyperband assigns trials to brackets by a hash of name and trial number
    study = optuna.create_study(study_name=SweepOptions("ae", Path(), space).name, pruner=make_pruner(pruner, epochs),
                                sampler=make_sampler("tpe", space, seed, trials))
    spent = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal spent
        params = {p.key: p.suggest(trial) for p in space.params}
        for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                                 optuna.trial.TrialState.PRUNED)):
            if t.number != trial.number and t.params == trial.params:
                if t.state == optuna.trial.TrialState.PRUNED:
                    raise optuna.TrialPruned()
                return t.value
        curve = curves[_key(params)]
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, step=epoch)
            if epoch < epochs and trial.should_prune():
                spent += epoch
                raise optuna.TrialPruned()
        spent += epochs
        return min(curve)

    study.optimize(objective, n_trials=trials)
    done = [t.value for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    return spent, min(done) if done else float("inf")


def summarise(runs: list[dict], methods: list[str], table: dict, tolerance: float) -> list[dict]:
    """Per method and accounting: epochs and best loss relative to random search of the same seed, and
    on how many seeds the goal was met. Adds the per-seed comparisons to ``runs``."""
    ranked = sorted(table.values())
    refs = {(r["method"], r["seed"]): r for r in runs if r["method"] in (BASE, NO_REPEATS)}
    summary = []
    for method in [BASE, NO_REPEATS] + methods:
        rows = [r for r in runs if r["method"] == method]
        row = {"method": method, "epochs_mean": float(np.mean([r["epochs_run"] for r in rows])),
               "best_val_loss_mean": float(np.mean([r["best_val_loss"] for r in rows])),
               "best_val_loss_per_seed": [r["best_val_loss"] for r in rows],
               "grid_rank_of_best": [ranked.index(r["best_val_loss"]) + 1 if r["best_val_loss"] in ranked else None
                                     for r in rows]}
        if method in methods:
            for name in ACCOUNTINGS:
                for r in rows:
                    ref = refs[(NO_REPEATS if name == "no_repeats" else BASE, r["seed"])]
                    cost = ref["epochs_run"] if name == "distinct" else ref["epochs_naive"]
                    frac = round(r["epochs_run"] / cost, 4)
                    rel = round(r["best_val_loss"] / ref["best_val_loss"] - 1, 4)
                    r[name] = {"epochs_fraction": frac, "best_loss_vs_random": rel,
                               "goal_met": bool(frac <= 0.30 and rel <= tolerance)}
                frac = [r[name]["epochs_fraction"] for r in rows]
                rel = [r[name]["best_loss_vs_random"] for r in rows]
                met = sum(r[name]["goal_met"] for r in rows)
                row[name] = {"epochs_fraction_mean": float(np.mean(frac)), "epochs_fraction_max": float(np.max(frac)),
                             "best_loss_vs_random_mean": float(np.mean(rel)), "best_loss_vs_random_max": float(np.max(rel)),
                             "seeds_meeting_goal": met, "goal_met": met == len(rows)}
        summary.append(row)
    return summary


def markdown(result: dict, args: argparse.Namespace) -> str:
    acc = list(ACCOUNTINGS)
    md = [f"# Sweep efficiency ({result['machine']})", "", f"`{result['command']}`: {result['data']}; "
          f"{args.trials} trials x up to {args.epochs} epochs, seeds {args.seeds}; "
          f"total {result['total_seconds'] / 60:.1f} min"
          + (f"; summary and replay recomputed by `{result['reanalysed_with']}`" if result.get("reanalysed_with") else "")
          + ".", "", f"Goal: {result['goal']}. Random search's epochs, three ways:", ""]
    md += [f"- **{name}**: {text}." for name, text in ACCOUNTINGS.items()]
    md += ["", "| method | epochs (mean) | best val. loss (mean) | rank of best in the 27-point grid | "
           + " | ".join(f"{a}: epochs vs random, mean / worst seed; best loss vs random, worst seed; goal" for a in acc)
           + " |", "| --- " * (4 + len(acc)) + "|"]
    for r in result["summary"]:
        if r["method"].startswith("tpe"):
            cells = [_cell(r[a], len(args.seeds)) for a in acc]
        else:  # a baseline: of the no_repeats accounting, or of the other two
            cells = ["baseline" if (a == "no_repeats") == (r["method"] == NO_REPEATS) else "-" for a in acc]
        md.append(f"| {r['method']} | {r['epochs_mean']:.0f} | {r['best_val_loss_mean']:.5f} | {r['grid_rank_of_best']} | "
                  + " | ".join(cells) + " |")
    md += ["", "Per seed (epochs vs random and goal, per accounting):", "",
           "| seed | method | distinct configs | epochs | best val. loss | " + " | ".join(acc) + " |",
           "| --- " * (5 + len(acc)) + "|"]
    for r in sorted(result["runs"], key=lambda r: r["seed"]):
        cells = [f"{100 * r[a]['epochs_fraction']:.0f}%, {100 * r[a]['best_loss_vs_random']:+.1f}%, "
                 f"{'yes' if r[a]['goal_met'] else 'no'}" if a in r else "" for a in acc]
        md.append(f"| {r['seed']} | {r['method']} | {r['unique_configs']} | {r['epochs_run']} | "
                  f"{r['best_val_loss']:.5f} | " + " | ".join(cells) + " |")
    rp = result["replay"]
    md += ["", f"Replay on the grid's curves, seeds {rp['seeds']} (reproduces every real run above: "
           f"{'yes' if rp['reproduces_real_runs'] else 'no: ' + ', '.join(rp['mismatches'])}):", "",
           "| trials | method | " + " | ".join(acc) + " |", "| --- " * (2 + len(acc)) + "|"]
    for r in rp["rows"]:
        if r["method"].startswith("tpe"):
            md.append(f"| {r['trials']} | {r['method']} | "
                      + " | ".join(_cell(r[a], args.replay_seeds) for a in acc) + " |")
    md += ["", f"Epochs: {result['note']}.", "",
           "Pruners: " + "; ".join(f"{k}: {v}" for k, v in result["pruners"].items()) + f". TPE: {result['tpe']}."]
    return "\n".join(md) + "\n"


def _cell(s: dict, seeds: int) -> str:
    return (f"{100 * s['epochs_fraction_mean']:.0f}% / {100 * s['epochs_fraction_max']:.0f}%; "
            f"{100 * s['best_loss_vs_random_max']:+.1f}%; {'**met**' if s['goal_met'] else 'no'} "
            f"({s['seeds_meeting_goal']}/{seeds})")


def _describe(obj) -> str:
    """``MedianPruner(n_startup_trials=2, ...)``: the settings the product uses, for the results file."""
    attrs = {k.lstrip("_"): v for k, v in vars(obj).items() if isinstance(v, (int, float, str, bool)) and v is not None}
    return f"{type(obj).__name__}({', '.join(f'{k}={v}' for k, v in sorted(attrs.items()))})"


def _grid_points(space: Space) -> list:
    return list(itertools.product(*[p.choices for p in space.params]))


def _key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def _key_str(key: tuple) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in key)


def _parse_key_str(text: str, space: Space) -> tuple:
    """``_key_str``'s inverse: "latent_dim=2048, batch_size=16, lr=0.001" -> the ``_key`` tuple."""
    full = {p.key.split(".")[-1]: p.key for p in space.params}
    return _key({full[k]: json.loads(v) for k, v in (item.split("=") for item in text.split(", "))})


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
