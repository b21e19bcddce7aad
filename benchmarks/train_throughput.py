"""Benchmark: training and inference speed of brainae against the study's recipe written as a plain PyTorch loop.

The reference is what the study's notebook does: the network built with torch's own layers (brainae's
``ConvTranspose``, which adds its bias after the conv when training on a CPU, made ``nn.ConvTranspose2d``
again), the training images made float32 tensors once, then ``for batch: forward, MSE, backward, Adam
step`` in float32. ``brainae train`` runs the same network (the study's AE), data, split, batch size,
learning rate and epochs with its defaults (``--precision auto``). The two alternate in one run, each in
a fresh process (so peak memory is its own), ``--rounds`` times. Reported per engine:

- images/s: the median over windows of ``--window`` steps, the first window of each run left out (warm-up);
- peak memory: the process's peak resident set (and the GPU's peak allocation on a GPU);
- the validation loss (per-pixel MSE of the model after the last epoch, float32, the same function for both).

Then the inference images/s of the network's reconstructions (``reconstruct``), of ``evaluate``'s
per-image scoring (network, MSE, PSNR and SSIM), of ``denoise``'s network path and of ``anomaly``'s
whole scoring (network, image scores, pixel-level metrics where there are masks), for the
study's AE and the small ``skipae`` denoiser (channels 8-64), in float32 and in the machine's precision.

    python benchmarks/train_throughput.py [--data ../shared/data/brain-tumor-mri] [--epochs 2] [--rounds 3] [--tag cpu]
    python benchmarks/train_throughput.py --data phantom:300 --image-size 64 --epochs 1 --rounds 1 --tag smoke
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from brainae.config import build_config
from brainae.data.load import load_data
from brainae.models import build_network
from brainae.models.blocks import torch_layers  # the plain loop's network: torch's own layers

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri"
PATHS = ("reconstruct", "evaluate", "denoise", "anomaly")  # inference paths timed, in the order of the table
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_real import command_line, data_name, machine, write_results  # noqa: E402


def study_config(args):
    cfg = build_config("ae", preset="seed", data=args.data, epochs=args.epochs, accelerator=args.accelerator,
                       limit=args.limit or None, seed=args.seed)
    cfg.data.image_size = args.image_size
    cfg.train.progress = False
    if args.precision:
        cfg.train.precision = args.precision
    if args.cuda_graphs:
        cfg.train.cuda_graphs = args.cuda_graphs
    if args.compile:
        cfg.train.compile = args.compile == "on"
    return cfg


def device_of(accelerator: str) -> torch.device:
    return torch.device("cuda" if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available()) else "cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def val_mse(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> float:
    """Mean per-pixel MSE of ``model``'s reconstructions of uint8 images, in float32 (the same for both engines)."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(images), 64):
        x = torch.from_numpy(images[i:i + 64, None]).to(device).float() / 255.0
        total += F.mse_loss(model(x).recon.float(), x, reduction="sum").item()
        n += x.numel()
    return total / n


class Windows(L.Callback):
    """Images/s over every ``steps`` training steps, for the brainae engine."""

    def __init__(self, steps: int, batch_size: int, device: torch.device) -> None:
        self.steps, self.batch_size, self.device = steps, batch_size, device
        self.rates: list[float] = []
        self._t, self._k = None, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sync(self.device)
        self._t, self._k = time.perf_counter(), 0  # validation between epochs is not training time

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._k += len(batch[0])  # images: on the GPU fast path a Lightning batch is a chunk of several steps
        if self._k >= self.steps * self.batch_size:
            sync(self.device)
            now = time.perf_counter()
            self.rates.append(self._k / (now - self._t))
            self._t, self._k = now, 0


def worker_plain(args, cfg, ds, device) -> dict:
    """The study's recipe the plain way: float32 tensors prepared once, a bare loop."""
    train_images = ds.split("train").images
    x_all = torch.from_numpy(train_images[:, None].copy()).float().div_(255.0).to(device)
    torch.manual_seed(args.seed)
    model = torch_layers(build_network(cfg.model, cfg.data.image_size)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    bs, n = cfg.train.batch_size, len(x_all)
    steps = n // bs if n % bs == 1 else -(-n // bs)  # as brainae: a last batch of one image is dropped
    rates, epoch_seconds = [], []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + epoch)).to(device)
        sync(device)
        start = t = time.perf_counter()
        for s in range(steps):
            x = x_all[order[s * bs:(s + 1) * bs]]
            loss = F.mse_loss(model(x).recon, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (s + 1) % args.window == 0:
                sync(device)
                now = time.perf_counter()
                rates.append(args.window * bs / (now - t))
                t = now
        sync(device)
        epoch_seconds.append(time.perf_counter() - start)
    return {"rates": rates, "epoch_seconds": epoch_seconds, "precision": "32",
            "val_loss": val_mse(model, ds.split("val").images, device)}


def worker_brainae(args, cfg, ds, device) -> dict:
    from brainae.training.callbacks import read_history
    from brainae.training.train import train

    windows = Windows(args.window, cfg.train.batch_size, device)
    out = Path(tempfile.mkdtemp(prefix="brainae-throughput-")) / "ae"
    train(cfg, out, data=ds, callbacks=[windows])
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location=device, weights_only=True)["state_dict"]
    model = build_network(cfg.model, cfg.data.image_size).to(device)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    config_precision = (out / "config.yaml").read_text().split("precision:")[1].split()[0].strip("'\"")
    return {"rates": windows.rates, "epoch_seconds": [r["seconds"] for r in read_history(out / "history.csv")],
            "precision": config_precision, "val_loss": val_mse(model, ds.split("val").images, device)}


def worker_inference(args, cfg, ds, device) -> dict:
    """Images/s of the reconstructions, evaluate's and anomaly's scoring and denoise's network path, float32 and the
    machine's precision."""
    from brainae.evaluation.anomaly import anomaly_scores, default_normal
    from brainae.evaluation.denoise import network_denoiser
    from brainae.evaluation.evaluate import image_metrics, reconstruct
    from brainae.models import build_model
    from brainae.training.precision import inference_precision

    val = ds.split("val")
    images = np.concatenate([val.images] * max(1, -(-args.infer_images // len(val))))[:args.infer_images]
    normal = default_normal(val.classes)
    small = build_config("skipae", preset="seed", data=args.data)
    small.model.channels, small.model.skips = [8, 16, 32, 64], [0, 1, 2]
    nets = {"study AE (ae)": build_model(cfg.model, cfg.data.image_size),
            "small skipae denoiser (channels 8-64)": build_model(small.model, cfg.data.image_size)}
    result = {}
    for name, net in nets.items():
        net = net.to(device).eval()
        denoise = network_denoiser(net)
        noisy = images.astype(np.float32) / 255.0
        for precision in ("32", "auto"):
            os.environ["BRAINAE_INFERENCE_PRECISION"] = precision
            row = {"precision": inference_precision(device)}
            # anomaly: the whole of anomaly_scores (network, the four image scores and, where the data has
            # tumour masks, the pixel-level metrics) over the validation split
            for path, fn, n in (("reconstruct", lambda: reconstruct(net, images), len(images)),
                                ("evaluate", lambda: image_metrics(net, images), len(images)),
                                ("denoise", lambda: denoise(noisy), len(images)),
                                ("anomaly", lambda: anomaly_scores(net, val, normal), len(val))):
                fn()  # warm-up
                rates = []
                for _ in range(args.infer_repeats):
                    sync(device)
                    t = time.perf_counter()
                    fn()
                    sync(device)
                    rates.append(n / (time.perf_counter() - t))
                row[f"{path}_images_per_second"] = round(statistics.median(rates), 1)
            result.setdefault(name, {})[precision] = row
    os.environ.pop("BRAINAE_INFERENCE_PRECISION", None)
    return {"images": len(images), "anomaly_images": len(val), "networks": result}


def run_worker(args) -> int:
    device = device_of(args.accelerator)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cfg = study_config(args)
    ds = load_data(cfg.data, progress=False)
    fn = {"plain": worker_plain, "brainae": worker_brainae, "inference": worker_inference}[args.worker]
    result = fn(args, cfg, ds, device)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if device.type == "cuda":
        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    Path(args.json).write_text(json.dumps(result))
    return 0


def spawn(args, worker: str, seed: int, dest: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", worker, "--json", str(dest), "--seed", str(seed)]
    for key in ("data", "epochs", "accelerator", "image_size", "limit", "window", "precision", "cuda_graphs", "compile",
                "infer_images", "infer_repeats"):
        value = getattr(args, key)
        if value not in (None, ""):
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    subprocess.run(cmd, check=True)
    return json.loads(dest.read_text())


def summarise(runs: dict[str, list[dict]], skip_first: bool = True) -> dict:
    """Per engine: the median images/s over all windows but each run's first, memory and validation losses."""
    def timed(run: dict) -> list[float]:
        return run["rates"][1:] if skip_first else run["rates"]

    out = {}
    for engine, rs in runs.items():
        rates = [r for run in rs for r in timed(run)]
        out[engine] = {
            "images_per_second": round(statistics.median(rates), 1) if rates else None,
            "windows": len(rates),
            "precision": rs[0]["precision"],
            "seconds_per_epoch": round(statistics.median([s for run in rs for s in run["epoch_seconds"]]), 2),
            "peak_rss_mib": max(run["peak_rss_mib"] for run in rs),
            "peak_gpu_mib": max((run.get("peak_gpu_mib", 0) for run in rs), default=0) or None,
            "val_loss": [round(run["val_loss"], 6) for run in rs],
        }
    plain, ours = out.get("plain"), out.get("brainae")
    if plain and ours and plain["images_per_second"] and ours["images_per_second"]:
        ours["speedup_vs_plain"] = round(ours["images_per_second"] / plain["images_per_second"], 2)
        # each round's two runs ran back to back, so their ratio is the least touched by the machine's load drifting
        ours["speedup_per_round"] = [round(statistics.median(timed(b)) / statistics.median(timed(p)), 2)
                                     for p, b in zip(runs["plain"], runs["brainae"]) if timed(p) and timed(b)]
        ours["val_loss_vs_plain"] = round(float(np.mean(ours["val_loss"]) / np.mean(plain["val_loss"]) - 1), 4)
    return out


def merge_inference(rounds: list[dict]) -> dict:
    """One inference record from several runs: per network, precision and path, the median images/s of the
    runs and every run's value (``..._per_round``), since this machine's speed drifts from run to run."""
    merged = {k: v for k, v in rounds[0].items() if k != "networks"}
    merged["rounds"] = len(rounds)
    merged["networks"] = {}
    for name, by_precision in rounds[0]["networks"].items():
        for precision, row in by_precision.items():
            out = {"precision": row["precision"]}
            for key in row:
                if key.endswith("_images_per_second"):
                    values = [r["networks"][name][precision][key] for r in rounds]
                    out[key] = round(statistics.median(values), 1)
                    out[key.replace("_images_per_second", "_per_round")] = values
            merged["networks"].setdefault(name, {})[precision] = out
    return merged


def markdown(record: dict) -> str:
    s = record["training"]
    lines = [f"# Training throughput: {record['benchmark']}", "", f"- machine: {record['machine']}",
             f"- date: {record['date']}", f"- command: `{record['command']}`", f"- data: {record['data']}",
             f"- images: {record['images']}", "",
             "| engine | precision | images/s (median of windows) | s/epoch | peak RSS MiB | val loss after the same epochs |",
             "| --- | --- | --- | --- | --- | --- |"]
    for engine, r in s.items():
        label = "plain PyTorch loop (the reference)" if engine == "plain" else "`brainae train`"
        lines.append(f"| {label} | {r['precision']} | {r['images_per_second']} | {r['seconds_per_epoch']} | "
                     f"{r['peak_rss_mib']} | {', '.join(str(v) for v in r['val_loss'])} |")
    if "speedup_vs_plain" in s.get("brainae", {}):
        per_round = ", ".join(f"{v}x" for v in s["brainae"].get("speedup_per_round", []))
        lines += ["", f"brainae / plain: **{s['brainae']['speedup_vs_plain']}x** images/s"
                      + (f" (round by round: {per_round})" if per_round else "")
                      + f"; validation loss {100 * s['brainae']['val_loss_vs_plain']:+.2f}% against the plain loop's."]
    if record.get("inference"):
        inf = record["inference"]
        lines += ["", f"Inference: the median of {inf.get('rounds', 1)} run(s), each a fresh process; the range in brackets.",
                  "", "| network | path | float32 images/s | machine precision | images/s |", "| --- | --- | --- | --- | --- |"]

        def cell(row: dict, path: str) -> str:
            values = row.get(f"{path}_per_round", [])
            spread = f" [{min(values)}, {max(values)}]" if len(values) > 1 else ""
            return f"{row[f'{path}_images_per_second']}{spread}"

        for name, by in inf["networks"].items():
            for path in PATHS:
                lines.append(f"| {name} | `{path}` | {cell(by['32'], path)} | {by['auto']['precision']} | "
                             f"{cell(by['auto'], path)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="plain / brainae pairs, alternating which goes first")
    ap.add_argument("--window", type=int, default=20, help="training steps per timing window")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--precision", default="", help="brainae's --precision (default: its own, auto)")
    ap.add_argument("--cuda-graphs", default="", choices=["", "on", "off", "auto"],
                    help="brainae's --cuda-graphs, the GPU fast path (default: its own, off)")
    ap.add_argument("--compile", default="", choices=["", "on", "off"], help="brainae's --compile (default: its own)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--limit", type=int, default=0, help="fewer training images (smoke tests only)")
    ap.add_argument("--infer-images", type=int, default=512)
    ap.add_argument("--infer-repeats", type=int, default=5)
    ap.add_argument("--infer-rounds", type=int, default=3,
                    help="inference runs, each a fresh process: the table shows their median and range")
    ap.add_argument("--no-inference", action="store_true")
    ap.add_argument("--tag", default="cpu", help="result files: results/train_throughput_<tag>.{json,md}")
    ap.add_argument("--worker", choices=["plain", "brainae", "inference"], help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return run_worker(args)
    if not args.data.startswith("phantom") and not Path(args.data).is_dir():
        print(f"real data not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    os.environ.setdefault("BRAINAE_CACHE", tempfile.mkdtemp(prefix="brainae-throughput-cache-"))
    cfg = study_config(args)
    ds = load_data(cfg.data, progress=False)  # decodes once; the workers read the cache
    tmp = Path(tempfile.mkdtemp(prefix="brainae-throughput-"))
    runs: dict[str, list[dict]] = {"plain": [], "brainae": []}
    for r in range(args.rounds):
        order = ("plain", "brainae") if r % 2 == 0 else ("brainae", "plain")
        for engine in order:
            print(f"round {r + 1}/{args.rounds}: {engine}", file=sys.stderr, flush=True)
            runs[engine].append(spawn(args, engine, args.seed + r, tmp / f"{engine}{r}.json"))
    record = {
        "benchmark": f"the study's AE recipe (batch {cfg.train.batch_size}, {args.image_size} px, lr {cfg.train.lr}), "
                     f"{args.epochs} epoch(s) per run, {args.rounds} round(s)",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": command_line("train_throughput.py"),
        "data": data_name(args.data),
        "images": {"train": int((ds.splits == "train").sum()), "val": int((ds.splits == "val").sum())},
        "training": summarise(runs),
        "raw": runs,
    }
    if not args.no_inference:
        rounds = []
        for r in range(args.infer_rounds):
            print(f"inference {r + 1}/{args.infer_rounds}", file=sys.stderr, flush=True)
            rounds.append(spawn(args, "inference", args.seed, tmp / f"inference{r}.json"))
        record["inference"] = merge_inference(rounds)
    write_results(f"train_throughput_{args.tag}", record, markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
