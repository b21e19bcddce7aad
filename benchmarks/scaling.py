"""Benchmark: training time and memory of the study's AE recipe against image size and dataset size.

Image sizes 64 / 128 / 256 px; the real Training folder as it is (1x) and four times over (4x). The 4x
set repeats the preprocessed images of the memory-mapped cache in a larger cache-format file (decoding
11,480 JPEGs would measure the decoder, not training); each copy keeps its image's group, so no split
separates copies. Each configuration trains in a fresh process for ``--steps`` batches of 16 (the first
``--window`` left out as warm-up); seconds per epoch are the training images over the measured images/s.

Memory: the peak private (anonymous) memory of the process, sampled every 50 ms: what training takes
and the OS cannot reclaim. Pages of the mapped cache file are the OS's page cache, reclaimable and
shared, so they are reported apart (peak resident set, which counts them).

    python benchmarks/scaling.py [--data ../shared/data/brain-tumor-mri] [--sizes 64,128,256] [--scales 1,4] [--tag cpu]
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
import threading
import time
from pathlib import Path

import numpy as np

from brainae.config import build_config
from brainae.data.load import load_data

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_real import command_line, data_name, machine, write_results  # noqa: E402


def anon_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


class PeakAnon(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.running = anon_kib(), True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, anon_kib())
            time.sleep(0.05)


def repeated(ds, times: int, folder: Path):
    """``ds`` ``times`` over, its images in a memory-mapped file like the cache's."""
    path = folder / f"x{times}.images.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(times * len(ds), *ds.images.shape[1:]))
    for k in range(times):
        mm[k * len(ds):(k + 1) * len(ds)] = ds.images
    mm.flush()
    del mm
    out = ds.subset(np.arange(len(ds)))
    out.images = np.load(path, mmap_mode="r")
    out.labels, out.splits = np.tile(ds.labels, times), np.tile(ds.splits, times)
    out.groups = np.tile(ds.groups, times)
    out.sources = [f"{s}#copy{k}" for k in range(times) for s in ds.sources]
    return out


def worker(args) -> int:
    import lightning as L

    from brainae.training.train import train

    sampler = PeakAnon()
    cfg = build_config("ae", preset="seed", data=args.data, epochs=1, accelerator="cpu", image_size=args.size,
                       overrides=["data.limit=0"])
    cfg.train.progress = False
    ds = load_data(cfg.data, progress=False)
    tmp = Path(tempfile.mkdtemp(prefix="brainae-scaling-"))
    if args.scale > 1:
        ds = repeated(ds, args.scale, tmp)
    sampler.start()
    times: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            times.append(time.perf_counter())
            if len(times) >= args.steps:
                trainer.should_stop = True

    train(cfg, tmp / "run", data=ds, callbacks=[Clock()])
    sampler.running = False
    bs = cfg.train.batch_size
    windows = [args.window * bs / (times[i + args.window] - times[i])
               for i in range(args.window, len(times) - args.window, args.window)]
    ips = statistics.median(windows)
    n_train = int((ds.splits == "train").sum())
    result = {"image_size": args.size, "scale": args.scale, "n_train": n_train,
              "data_mib": round(ds.images.nbytes / 2 ** 20, 1), "images_per_second": round(ips, 1),
              "seconds_per_epoch": round(n_train / ips, 1), "steps_measured": len(times) - args.window,
              "peak_private_mib": round(sampler.peak / 1024, 1),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "images_mapped": isinstance(ds.images, np.memmap)}
    Path(args.json).write_text(json.dumps(result))
    return 0


def markdown(record: dict) -> str:
    lines = [f"# Scaling: {record['benchmark']}", "", f"- machine: {record['machine']}", f"- date: {record['date']}",
             f"- command: `{record['command']}`", f"- data: {record['data']}", "",
             "| image size | data | training images | images (MiB) | images/s | s/epoch | peak private MiB | peak RSS MiB (with mapped pages) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in record["rows"]:
        lines.append(f"| {r['image_size']} | {r['scale']}x | {r['n_train']} | {r['data_mib']} | {r['images_per_second']} | "
                     f"{r['seconds_per_epoch']} | {r['peak_private_mib']} | {r['peak_rss_mib']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--scales", default="1,4")
    ap.add_argument("--steps", type=int, default=60, help="training batches measured per configuration")
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not args.data.startswith("phantom") and not Path(args.data).is_dir():
        print(f"real data not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    os.environ.setdefault("BRAINAE_CACHE", tempfile.mkdtemp(prefix="brainae-scaling-cache-"))
    tmp = Path(tempfile.mkdtemp(prefix="brainae-scaling-"))
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        load_data(build_config("ae", preset="seed", data=args.data, image_size=size).data, progress=False)  # decode once
        for scale in [int(s) for s in args.scales.split(",")]:
            print(f"{size} px, {scale}x", file=sys.stderr, flush=True)
            dest = tmp / f"{size}_{scale}.json"
            subprocess.run([sys.executable, __file__, "--worker", "--data", args.data, "--size", str(size),
                            "--scale", str(scale), "--steps", str(args.steps), "--window", str(args.window),
                            "--json", str(dest)], check=True)
            rows.append(json.loads(dest.read_text()))
    record = {
        "benchmark": f"the study's AE recipe (batch 16, bf16 where native), {args.steps} batches per configuration",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": command_line("scaling.py"),
        "data": data_name(args.data),
        "rows": rows,
    }
    write_results(f"scaling_{args.tag}", record, markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
