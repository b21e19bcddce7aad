"""Benchmark: a denoising autoencoder against BM3D and the scikit-image denoisers on real MRI.

Held-out images: the test split carved (seed 0, 15%) from the real Training folder, which the DAE
never saw in training or model selection. Gaussian noise at sigma 0.1, 0.2, 0.3 (one seeded draw,
the same noisy images for every method). Records PSNR / SSIM with 95% intervals and images per
second on this machine, and checks the issue's goals: DAE PSNR >= BM3D's at every sigma, and DAE
images per second >= 300 x BM3D's.

    python benchmarks/denoise_bench.py --run RUN_DIR [--data ../shared/data/brain-tumor-mri/Training] [--n 60]
    python benchmarks/denoise_bench.py --epochs 3            # trains a DAE here first (slow on a CPU)

The committed result used the ``skipae_dae_small_psnr`` run of benchmarks/architectures.py (a small
blind skipae trained with the psnr loss for 120 epochs on 799 training images of the same split, on
this CPU); earlier results (the study's AE as a DAE, trained on an H100 with denoise_gpu_train.sh)
are in the git history. A network's images/s is timed over repeated passes. BM3D needs the optional ``bm3d`` package (pip install 'brainae[bm3d]').
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
sys.path.insert(0, str(Path(__file__).parent))

from train_real import command_line, machine, portable_path, without_option  # noqa: E402

from brainae.evaluation.denoise import DEFAULT_BASELINES, format_denoise_table, run_denoise  # noqa: E402


def reassemble(run: Path) -> None:
    """A run packed by denoise_gpu_train.sh: join checkpoints/best.ckpt from its 15 MB parts."""
    parts = sorted(run.glob("best.ckpt.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    ckpt = run / "checkpoints" / "best.ckpt"
    if parts and not ckpt.is_file():
        ckpt.parent.mkdir(exist_ok=True)
        ckpt.write_bytes(b"".join(p.read_bytes() for p in parts))


def train_here(data: str, epochs: int) -> Path:
    from brainae.config import build_config
    from brainae.training.train import train

    cfg = build_config("dae", preset="seed", data=data, epochs=epochs, noise="gaussian:0.1,0.2,0.3")
    out = Path(tempfile.mkdtemp(prefix="brainae-dae-")) / "dae"
    train(cfg, out)
    return out


def goals(result: dict, dae: str) -> dict:
    if "bm3d" not in result["methods"]:
        return {"checked": False, "why": result["skipped"].get("bm3d", "bm3d not run")}
    out = {"checked": True, "per_level": {}}
    for lv in result["levels"]:
        r = result["results"][lv]
        out["per_level"][lv] = {
            "dae_psnr": r[dae]["psnr"]["mean"], "bm3d_psnr": r["bm3d"]["psnr"]["mean"],
            "psnr_goal_met": r[dae]["psnr"]["mean"] >= r["bm3d"]["psnr"]["mean"],
            "speed_ratio": r[dae]["images_per_second"] / r["bm3d"]["images_per_second"],
            "speed_goal_met": r[dae]["images_per_second"] >= 300 * r["bm3d"]["images_per_second"],
        }
    out["psnr_goal_met"] = all(v["psnr_goal_met"] for v in out["per_level"].values())
    out["speed_goal_met"] = all(v["speed_goal_met"] for v in out["per_level"].values())
    return out


def markdown(result: dict, meta: dict) -> str:
    lines = [f"# Denoising benchmark ({meta['machine']})", "",
             f"{meta['date']}; `{meta['command']}`; {result['n']} held-out test images of {result['data']}; "
             f"DAE run {meta['dae_trained']}. Load average (1, 5, 15 min) when it finished: "
             f"{meta['load_average']} (a busy machine makes images/s noisy).", "",
             "| method | " + " | ".join(f"{lv} PSNR (dB)" for lv in result["levels"]) + " | "
             + " | ".join(f"{lv} SSIM" for lv in result["levels"]) + " | images/s |",
             "| --- |" + " --- |" * (2 * len(result["levels"]) + 1)]
    for m in result["methods"]:
        rs = [result["results"][lv][m] for lv in result["levels"]]
        psnr = [f"{r['psnr']['mean']:.2f} [{r['psnr']['ci95'][0]:.2f}, {r['psnr']['ci95'][1]:.2f}]" for r in rs]
        ssim = [f"{r['ssim']['mean']:.3f} [{r['ssim']['ci95'][0]:.3f}, {r['ssim']['ci95'][1]:.3f}]" for r in rs]
        ips = [r["images_per_second"] for r in rs]
        speed = "-" if None in ips else f"{sum(ips) / len(ips):,.1f}"
        lines.append(f"| {m} | " + " | ".join(psnr + ssim) + f" | {speed} |")
    g = meta["goals"]
    if g.get("checked"):
        lines += ["", f"Goals: DAE PSNR >= BM3D at every sigma: **{'met' if g['psnr_goal_met'] else 'not met'}**; "
                  f"DAE images/s >= 300 x BM3D: **{'met' if g['speed_goal_met'] else 'not met'}** "
                  f"(ratios {', '.join(format(v['speed_ratio'], ',.0f') + 'x' for v in g['per_level'].values())})."]
    for name, why in result["skipped"].items():
        lines.append(f"\nSkipped {name}: {why}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the real Training folder (class sub-folders)")
    ap.add_argument("--run", help="a trained DAE run folder (or one packed by denoise_gpu_train.sh)")
    ap.add_argument("--epochs", type=int, default=3, help="without --run: train a DAE here for this many epochs")
    ap.add_argument("--n", type=int, default=60, help="held-out images to evaluate (seeded choice from the test split)")
    ap.add_argument("--noise", default="gaussian:0.1,0.2,0.3")
    ap.add_argument("--baselines", default=",".join(DEFAULT_BASELINES))
    ap.add_argument("--tag", default="cpu", help="result files: results/denoise_bench_<tag>.{json,md}")
    ap.add_argument("--dae-trained", default="", help="where the DAE was trained, for the record")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        print(f"real data not found at {args.data}; pass --data (skipping the benchmark)", file=sys.stderr)
        return 0
    if args.run:
        run = Path(args.run)
        reassemble(run)
    else:
        run = train_here(args.data, args.epochs)
        args.dae_trained = args.dae_trained or f"here, {args.epochs} epochs"
    out = Path(tempfile.mkdtemp(prefix="brainae-denoise-"))
    result = run_denoise([run], data=args.data, noise=args.noise, baselines=args.baselines.split(","), out=out,
                         limit=args.n, progress=True)
    print(format_denoise_table(result))
    dae = result["networks"][0]
    meta = {
        "benchmark": "DAE vs BM3D and scikit-image denoisers, Gaussian noise, held-out real MRI (128x128)",
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "command": command_line("denoise_bench.py", without_option(sys.argv[1:], "--dae-trained")),
        "dae_trained": args.dae_trained or portable_path(run),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "goals": goals(result, dae),
    }
    results_dir = Path(os.environ.get("BENCH_RESULTS", ROOT / "benchmarks" / "results"))
    results_dir.mkdir(parents=True, exist_ok=True)
    result["data"] = portable_path(result["data"])
    keep = {k: v for k, v in result.items() if k not in ("out_dir", "figures", "runs")}
    (results_dir / f"denoise_bench_{args.tag}.json").write_text(json.dumps({**meta, **keep}, indent=2))
    (results_dir / f"denoise_bench_{args.tag}.md").write_text(markdown(result, meta))
    # only the plot: the example grid shows real images, which stay out of the repository
    for f in ("denoise_psnr.png",):
        if (out / f).is_file():
            (results_dir / f"denoise_bench_{args.tag}_{f.removeprefix('denoise_')}").write_bytes((out / f).read_bytes())
    print(f"written: {results_dir / f'denoise_bench_{args.tag}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
