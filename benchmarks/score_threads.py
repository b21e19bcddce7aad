"""Benchmark: the anomaly scores' worker threads, with torch's own threads left at the machine's count or at 1.

``score_stack`` cuts a stack into chunks and scores them on one worker thread per core; each chunk's
blurs are torch matrix products. Left at the machine's thread count, torch spread every chunk's
products over all cores again, so two workers ran four threads on two cores. ``map_chunks`` now sets
torch to one thread while its workers run. Timed both ways in one process, alternating window by
window so that the machine's drift hits both, on the validation split of the real data (carved from
its Training folder as ``brainae train`` carves it; the test split is not read):

1. ``score_stack`` alone, on the reconstructions of the small ``skipae`` denoiser (channels 8-64, untrained
   weights: the scores' cost does not depend on them);
2. the whole of ``anomaly_scores`` (network, scores, AUROC/AUPRC) for that denoiser.

The scores of the two ways are checked to be identical. Results go to
benchmarks/results/score_threads_<tag>.{json,md}.

    python benchmarks/score_threads.py [--data ../shared/data/brain-tumor-mri] [--windows 8] [--calls 3] [--tag cpu]
"""
from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from conv_bias import alternating_rates, compare_rates  # noqa: E402
from train_real import command_line, data_name, machine, write_results  # noqa: E402

from brainae.config import build_config  # noqa: E402
from brainae.data.load import load_data  # noqa: E402
from brainae.evaluation import metrics  # noqa: E402
from brainae.evaluation.anomaly import anomaly_scores, default_normal  # noqa: E402
from brainae.evaluation.brain_scores import score_stack  # noqa: E402
from brainae.evaluation.evaluate import reconstruct  # noqa: E402
from brainae.models import build_model  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri"
WAYS = ("torch threads: all (before)", "torch threads: 1 (now)")


def both_ways(fn):
    """{way: callable} running ``fn`` with map_chunks' thread setting switched off (before) and on (now)."""
    def before():
        kept = metrics.torch_threads
        metrics.torch_threads = lambda n: nullcontext()
        try:
            return fn()
        finally:
            metrics.torch_threads = kept
    return {WAYS[0]: before, WAYS[1]: fn}


def markdown(record: dict) -> str:
    lines = ["# The anomaly scores' worker threads: torch's own thread count inside them", "",
             f"- machine: {record['machine']}", f"- command: `{record['command']}`",
             f"- data: {record['data']}, validation split ({record['images']} images, {record['image_size']} px); "
             f"network: {record['network']}, float32", f"- scores identical both ways: {record['identical']}", "",
             "| what | " + " | ".join(WAYS) + " | now / before |", "| --- | --- | --- | --- |"]
    for name in ("score_stack", "anomaly_scores"):
        s = record[name]
        lines.append(f"| `{name}`, images/s | " + " | ".join(str(s["median"][w]) for w in WAYS)
                     + f" | **{s['median_ratio']}x** |")
    for name in ("score_stack", "anomaly_scores"):
        lines += ["", f"`{name}`, window by window, now / before: {', '.join(f'{r}x' for r in record[name]['ratios'])}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--calls", type=int, default=3, help="calls per window")
    ap.add_argument("--tag", default="cpu", help="result files: results/score_threads_<tag>.{json,md}")
    args = ap.parse_args()
    cfg = build_config("skipae", preset="seed", data=args.data)
    cfg.data.image_size = args.image_size
    cfg.model.channels, cfg.model.skips = [8, 16, 32, 64], [0, 1, 2]
    val = load_data(cfg.data, progress=False).split("val")
    torch.manual_seed(0)
    net = build_model(cfg.model, args.image_size).eval()
    normal = default_normal(val.classes)
    images, recons = val.images.astype(np.float32) / 255.0, reconstruct(net, val.images)

    scores = {way: run()[1] for way, run in both_ways(lambda: score_stack(images, recons)).items()}
    identical = all(np.array_equal(scores[WAYS[0]][k], scores[WAYS[1]][k]) for k in scores[WAYS[0]])
    record = {"machine": machine(), "command": command_line("score_threads.py"), "data": data_name(args.data),
              "images": len(val), "image_size": args.image_size, "network": "small skipae denoiser (channels 8-64)",
              "identical": identical}

    def timed(fn) -> dict:
        return compare_rates(alternating_rates(both_ways(fn), args.windows, args.calls, len(val)), WAYS[1], WAYS[0])

    record["score_stack"] = timed(lambda: score_stack(images, recons))
    record["anomaly_scores"] = timed(lambda: anomaly_scores(net, val, normal))
    write_results(f"score_threads_{args.tag}", record, markdown(record))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
