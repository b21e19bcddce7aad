"""Benchmark: every architecture variant after the same training budget, on the real data.

One table: parameters, latent size, whether skips bypass the bottleneck, training and inference
images per second on this machine, validation PSNR / SSIM (the validation split carved from the
Training folder, seed 0; the test split is never used), and for denoisers PSNR at sigma 0.1, 0.2,
0.3 against BM3D on the same noisy validation images. Checks the architecture issue's goals:

- AE with a true 512-d bottleneck (no skips) >= the study's AE recipe + 4 dB on validation;
- VAE at latent 512 >= the study's VAE recipe + 3 dB (its samples: benchmarks/vae_samples.py);
- a skip/residual DAE >= BM3D's PSNR at every sigma and >= 300 x BM3D's images per second.

    python benchmarks/architectures.py --epochs 6 --limit 800 --work RUNS --tag cpu
    python benchmarks/architectures.py --variants study_ae,resae --epochs 2 --limit 200 --tag smoke
    python benchmarks/architectures.py --retime --work RUNS --limit 800 --tag cpu   # speeds again, on a quiet machine
    python benchmarks/architectures.py --rescore --work RUNS --limit 800 --tag cpu  # denoising scores again, no training

Every variant trains with the seed preset (the study's batch 16) plus the overrides listed in
VARIANTS, for the same number of epochs on the same images.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
sys.path.insert(0, str(Path(__file__).parent))

from train_real import command_line, machine, portable_path  # noqa: E402

from brainae.config import build_config  # noqa: E402
from brainae.data.load import load_data  # noqa: E402
from brainae.evaluation.denoise import denoise_benchmark  # noqa: E402
from brainae.evaluation.evaluate import evaluate, model_facts  # noqa: E402
from brainae.training.run import load_run  # noqa: E402
from brainae.training.train import train  # noqa: E402

LEVELS = "gaussian:0.1,0.2,0.3"
MODERN = ["train.optimizer=adamw", "train.weight_decay=1e-4", "train.schedule=onecycle", "train.lr=2e-3"]
SPATIAL = ["model.channels=[32,64,128,256]", "model.bottleneck=spatial"]  # 512 = 8 channels x 8 x 8 at 128 px
# name -> (registered model, role, overrides); role ae/vae compare reconstructions, dae denoising
VARIANTS = {
    "study_ae": ("ae", "ae", []),
    "resae": ("resae", "ae", SPATIAL + MODERN + ["train.augment=flip"]),
    "resae_wide": ("resae", "ae", ["model.channels=[48,96,192,384]", "model.bottleneck=spatial"] + MODERN),
    "study_vae": ("vae", "vae", []),
    "study_vae_long": ("vae", "vae", []),  # the study's VAE recipe, run with more --epochs (a same-budget baseline)
    "resvae": ("resvae", "vae", SPATIAL + MODERN[:3] + ["train.lr=1e-3", "train.augment=flip"]),
    "resvae_4x4": ("resvae", "vae", ["model.channels=[32,64,128,256,512]", "model.bottleneck=spatial"] + MODERN[:3]
                   + ["train.lr=1e-3", "train.augment=flip"]),  # 512 = 32 channels x 4 x 4: a coarser code
    "resvae_4x4_long": ("resvae", "vae", ["model.channels=[32,64,128,256,512]", "model.bottleneck=spatial"] + MODERN[:3]
                        + ["train.lr=1e-3", "train.augment=flip"]),  # resvae_4x4, run with more --epochs
    "resvae_gauss": ("resvae", "vae", ["model.channels=[32,64,128,256,512]", "model.bottleneck=spatial",
                                       "model.likelihood=gaussian"] + MODERN + ["train.augment=flip"]),
    "resvae_bce_long": ("resvae", "vae", ["model.channels=[32,64,128,256,512]", "model.bottleneck=spatial"]
                        + MODERN + ["train.augment=flip"]),  # resvae_gauss with BCE: what the likelihood adds
    "resvae_dense": ("resvae", "vae", ["model.channels=[32,64,128,256]", "model.bottleneck=dense"] + MODERN[:3]
                     + ["train.lr=1e-3", "train.augment=flip"]),
    "study_dae": ("dae", "dae", ["train.noise=gaussian:0.1,0.2,0.3"]),
    "skipae_dae": ("skipae", "dae", ["model.channels=[16,32,64,128]", "model.skips=[0,1,2]",
                                     "train.noise=gaussian:0.05-0.35"] + MODERN),
    "skipae_dae_long": ("skipae", "dae", ["model.channels=[16,32,64,128]", "model.skips=[0,1,2]",
                                          "train.noise=gaussian:0.05-0.35"] + MODERN),  # run with more --epochs
    "skipae_dae_small": ("skipae", "dae", ["model.channels=[8,16,32,64]", "model.skips=[0,1,2]",
                                           "train.noise=gaussian:0.05-0.35"] + MODERN),
    "skipae_dae_small_long": ("skipae", "dae", ["model.channels=[8,16,32,64]", "model.skips=[0,1,2]",
                                                "train.noise=gaussian:0.05-0.35"] + MODERN),  # more --epochs
    "skipae_dae_small_psnr": ("skipae", "dae", ["model.channels=[8,16,32,64]", "model.skips=[0,1,2]",
                                                "train.noise=gaussian:0.05-0.35", "train.loss=psnr"] + MODERN),
    "unet_dae": ("unet", "dae", ["model.channels=[16,32,64]", "model.residual_output=true",
                                 "train.noise=gaussian:0.05-0.35"] + MODERN),
}


@torch.no_grad()
def inference_rate(model: torch.nn.Module, images: np.ndarray, batch: int = 64) -> float:
    """Images per second of one forward pass over ``images`` (uint8 (N, H, W)), after one warm-up batch."""
    x = torch.from_numpy(images[:, None]).float() / 255.0
    model(x[:batch])
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        model(x[i:i + batch])
    return len(x) / (time.perf_counter() - start)


def run_variant(name: str, data, args, work: Path) -> dict:
    model_name, role, overrides = VARIANTS[name]
    cfg = build_config(model_name, preset="seed", data=str(args.data), epochs=args.epochs, limit=args.limit,
                       overrides=overrides)
    cfg.train.progress = not args.no_progress
    print(f"== {name}: {model_name} {' '.join(overrides)}", flush=True)
    result = train(cfg, work / name, overwrite=True, data=data)
    model, run_cfg = load_run(work / name)
    val = data.split("val")
    ev = evaluate(work / name, split="val", dataset=val, run=(model, run_cfg))
    row = {
        "variant": name, "model": model_name, "role": role, "overrides": overrides, **model_facts(model),
        "epochs": result["epochs"], "best_epoch": result["best_epoch"],
        "train_images_per_second": round(result["n_train"] * result["epochs"] / result["seconds"], 1),
        "inference_images_per_second": round(inference_rate(model, val.images), 1),
        "val_psnr": ev["psnr"], "val_ssim": ev["ssim"],
    }
    if role == "dae":
        row["denoise"] = denoise_row(name, model, denoise_sample(val, args.denoise_n))
    print(f"   val PSNR {ev['psnr']['mean']:.2f} dB, {row['train_images_per_second']} img/s training", flush=True)
    return row


def denoise_sample(val, n: int):
    """``n`` validation images drawn at random (seed 0), as ``brainae denoise --limit`` draws test images.
    Not the first ``n``: the split is ordered by class, so those would all be one class (one source)."""
    if n >= len(val):
        return val
    return val.subset(np.sort(np.random.default_rng(0).choice(len(val), n, replace=False)))


def denoise_row(name: str, model: torch.nn.Module, sample) -> dict:
    res, _ = denoise_benchmark({name: model}, sample, LEVELS, [], seed=0)
    return {lv: {k: res["results"][lv][name][k] for k in ("psnr", "ssim", "images_per_second")} for lv in res["levels"]}


def sample_text(n: int, val) -> str:
    return (f"denoising on {min(n, len(val))} of the {len(val)} validation images drawn at random (seed 0), one seeded "
            f"noise draw per sigma")


def baseline_rows(data, n: int) -> dict:
    res, _ = denoise_benchmark({}, denoise_sample(data.split("val"), n), LEVELS, ["bm3d"], seed=0)
    if "bm3d" not in res["methods"]:
        return {"skipped": res["skipped"]}
    return {lv: {k: res["results"][lv]["bm3d"][k] for k in ("psnr", "ssim", "images_per_second")} for lv in res["levels"]}


def check_goals(rows: dict, bm3d: dict) -> dict:
    def psnr(v: str) -> float:
        return rows[v]["val_psnr"]["mean"]

    goals = {}
    aes = [v for v, r in rows.items() if r["role"] == "ae" and v != "study_ae" and not r["bypasses_bottleneck"]
           and r["latent_dim"] == 512]
    if "study_ae" in rows and aes:
        best = max(aes, key=psnr)
        goals["ae_plus_4db"] = {"variant": best, "gain_db": round(psnr(best) - psnr("study_ae"), 2),
                                "met": psnr(best) - psnr("study_ae") >= 4}
    study_vaes = {r["epochs"]: v for v, r in rows.items() if r["model"] == "vae" and not r["overrides"]}
    vaes = [v for v, r in rows.items() if r["role"] == "vae" and v not in study_vaes.values() and r["latent_dim"] == 512]
    if "study_vae" in rows and vaes:
        best = max(vaes, key=psnr)
        goals["vae_plus_3db"] = {"variant": best, "gain_db": round(psnr(best) - psnr("study_vae"), 2),
                                 "met": psnr(best) - psnr("study_vae") >= 3}
        # the same comparison against the study's recipe trained for as many epochs, where one was
        same = [v for v in vaes if rows[v]["epochs"] in study_vaes]
        if same:
            best = max(same, key=lambda v: psnr(v) - psnr(study_vaes[rows[v]["epochs"]]))
            base = study_vaes[rows[best]["epochs"]]
            goals["vae_plus_3db_same_epochs"] = {"variant": best, "baseline": base, "epochs": rows[best]["epochs"],
                                                 "gain_db": round(psnr(best) - psnr(base), 2),
                                                 "met": psnr(best) - psnr(base) >= 3}
    if "skipped" not in bm3d:
        for v, r in rows.items():
            if r["role"] != "dae" or v == "study_dae":
                continue
            per = {lv: {"psnr_gap_db": round(r["denoise"][lv]["psnr"]["mean"] - b["psnr"]["mean"], 2),
                        "speed_ratio": round(r["denoise"][lv]["images_per_second"] / b["images_per_second"], 1)}
                   for lv, b in bm3d.items()}
            goals[f"dae_{v}"] = {"per_level": per,
                                 "psnr_met": all(p["psnr_gap_db"] >= 0 for p in per.values()),
                                 "speed_met": all(p["speed_ratio"] >= 300 for p in per.values())}
    return goals


def fmt(ci: dict, digits: int = 2) -> str:
    return f"{ci['mean']:.{digits}f}"


def markdown(result: dict) -> str:
    rows, bm3d = result["rows"], result["bm3d"]
    levels = LEVELS.split(":")[1].split(",")
    setup = " ".join(t for t in (result["setup"], result.get("rescored", ""), result.get("retimed", "")) if t)
    lines = [f"# Architectures ({result['machine']})", "", f"{result['date']}; `{result['command']}`; {setup}", "",
             "| variant | model | epochs | latent | parameters | skips bypass | train img/s | inference img/s | val PSNR (dB) | val SSIM | "
             + " | ".join(f"denoise PSNR s={s}" for s in levels) + " |",
             "| --- " * (10 + len(levels)) + "|"]
    for v, r in rows.items():
        den = [fmt(r["denoise"][f"gaussian:{s}"]["psnr"]) if "denoise" in r else "-" for s in levels]
        lines.append(f"| {v} | {r['model']} | {r['epochs']} | {r['latent_dim']} | {r['parameters']:,} | {'yes' if r['bypasses_bottleneck'] else 'no'} "
                     f"| {r['train_images_per_second']} | {r['inference_images_per_second']} | {fmt(r['val_psnr'])} "
                     f"[{r['val_psnr']['ci95'][0]:.2f}, {r['val_psnr']['ci95'][1]:.2f}] | {fmt(r['val_ssim'], 3)} | "
                     + " | ".join(den) + " |")
    if "skipped" not in bm3d:
        rate = np.mean([b["images_per_second"] for b in bm3d.values()])
        lines.append(f"| BM3D | - | - | - | - | - | - | {rate:.2f} | - | - | "
                     + " | ".join(fmt(bm3d[f'gaussian:{s}']['psnr']) for s in levels) + " |")
    lines += ["", "Overrides per variant (on top of preset seed):", ""]
    lines += [f"- {v}: `{' '.join(r['overrides']) or '(none: the study recipe)'}`" for v, r in rows.items()]
    lines += ["", "Goals:", ""]
    for g, r in result["goals"].items():
        lines.append(f"- {g}: {json.dumps(r)}")
    return "\n".join(lines) + "\n"


def retime(args) -> None:
    """Measure every speed again from the kept run folders, when the machine is quiet.

    Training runs for an hour while other jobs may share the CPU; images per second are only
    comparable when measured back to back on an idle machine, so this re-measures inference (which is
    also each denoiser's speed: a network's cost does not depend on the noise level) and BM3D.
    """
    from brainae.data.noise import parse_noise_levels
    from brainae.evaluation.denoise import classical_denoiser, noisy_images

    path = args.out / f"architectures_{args.tag}.json"
    result = json.loads(path.read_text())
    cfg = build_config("ae", preset="seed", data=str(args.data), limit=args.limit)
    val = load_data(cfg.data, progress=False).split("val")
    load_before = [round(v, 2) for v in os.getloadavg()]
    for v, r in result["rows"].items():
        model, _ = load_run(args.work / v)
        rate = round(inference_rate(model, val.images), 1)
        r["inference_images_per_second"] = rate
        for lv in r.get("denoise", {}):
            r["denoise"][lv]["images_per_second"] = rate
        print(f"{v}: {rate} img/s", flush=True)
    clean = val.images[:args.bm3d_n].astype(np.float32) / 255.0
    for li, nz in enumerate(parse_noise_levels(LEVELS)):
        if nz.spec in result["bm3d"]:
            noisy = noisy_images(clean, nz, 0, li)
            start = time.perf_counter()
            classical_denoiser("bm3d", nz)(noisy)
            result["bm3d"][nz.spec]["images_per_second"] = round(len(noisy) / (time.perf_counter() - start), 3)
            print(f"bm3d {nz.spec}: {result['bm3d'][nz.spec]['images_per_second']} img/s", flush=True)
    result["retimed"] = (f"Speeds re-measured back to back with --retime ({args.bm3d_n} images for BM3D, every "
                        f"validation image for the networks, batch 64), load average before "
                        f"{load_before}, after {[round(v, 2) for v in os.getloadavg()]}.")
    write_result(result, path)


def rescore(args) -> None:
    """Score every denoiser row and BM3D again on ``--denoise-n`` validation images drawn at random, from
    the kept run folders (no training); the speeds are kept."""
    path = args.out / f"architectures_{args.tag}.json"
    result = json.loads(path.read_text())
    cfg = build_config("ae", preset="seed", data=str(args.data), limit=args.limit)
    data = load_data(cfg.data, progress=False)
    sample = denoise_sample(data.split("val"), args.denoise_n)
    for v, r in result["rows"].items():
        if r["role"] == "dae":
            speed = {lv: d["images_per_second"] for lv, d in r["denoise"].items()}  # keep the --retime speeds
            r["denoise"] = denoise_row(v, load_run(args.work / v)[0], sample)
            for lv, d in r["denoise"].items():
                d["images_per_second"] = speed[lv]
            print(f"{v}: " + ", ".join(f"{d['psnr']['mean']:.2f}" for d in r["denoise"].values()), flush=True)
    fresh = baseline_rows(data, args.denoise_n)
    for lv, b in fresh.items():
        if lv in result["bm3d"]:
            b["images_per_second"] = result["bm3d"][lv]["images_per_second"]
    result["bm3d"] = fresh
    result["rescored"] = (f"Denoising scored again with --rescore: {sample_text(args.denoise_n, data.split('val'))} "
                          f"(classes {np.bincount(sample.labels).tolist()}); speeds unchanged.")
    write_result(result, path)


def write_result(result: dict, path: Path) -> None:
    """Goals checked again, then ``path`` (.json) and its .md written, and the table printed."""
    result["goals"] = check_goals(result["rows"], result["bm3d"])
    path.write_text(json.dumps(result, indent=1))
    path.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--limit", type=int, default=1000, help="training images (validation shrinks in proportion)")
    ap.add_argument("--denoise-n", type=int, default=60,
                    help="validation images for the denoising comparison (drawn at random, seed 0)")
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--work", type=Path, help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--add", action="store_true",
                    help="add --variants to the finished result of the same --tag (needs the same --work and --limit)")
    ap.add_argument("--retime", action="store_true",
                    help="only re-measure the speeds of a finished run (needs --work with its run folders)")
    ap.add_argument("--bm3d-n", type=int, default=10, help="images BM3D is timed on with --retime")
    ap.add_argument("--rescore", action="store_true",
                    help="only score the denoisers and BM3D again on --denoise-n validation images (needs --work)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    if args.retime or args.rescore:
        if not args.work:
            sys.exit("--retime and --rescore need --work, the folder that holds the run folders")
        return retime(args) if args.retime else rescore(args)
    if not args.data.is_dir():
        sys.exit(f"data folder {args.data} not found; pass --data")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant {unknown[0]} (choose from {', '.join(VARIANTS)})")
    start = time.time()
    cfg = build_config("ae", preset="seed", data=str(args.data), limit=args.limit)
    data = load_data(cfg.data, progress=not args.no_progress)
    work = args.work or Path(tempfile.mkdtemp(prefix="brainae-arch-"))
    stem = args.out / f"architectures_{args.tag}"
    earlier = json.loads(stem.with_suffix(".json").read_text()) if args.add else {"rows": {}, "bm3d": {"skipped": "no DAE"}}
    rows = {**earlier["rows"], **{v: run_variant(v, data, args, work) for v in names}}
    bm3d = earlier["bm3d"]
    if "skipped" in bm3d and any(r["role"] == "dae" for r in rows.values()):
        bm3d = baseline_rows(data, args.denoise_n)
    counts = {s: int((data.splits == s).sum()) for s in ("train", "val")}
    took = f"{(time.time() - start) / 60:.1f} min; load average at the end: {[round(v, 2) for v in os.getloadavg()]}"
    command = command_line("architectures.py")
    result = {
        "machine": machine(), "date": datetime.date.today().isoformat(), "command": command,
        "setup": (f"{portable_path(args.data)} at 128x128, split seed 0: {counts['train']} training / {counts['val']} validation images; "
                  f"{args.epochs} epochs per variant; {sample_text(args.denoise_n, data.split('val'))}; torch threads {torch.get_num_threads()}; total {took}."),
        "rows": rows, "bm3d": bm3d,
    }
    if args.add:
        result["command"] = earlier["command"] + "; then " + command
        result["setup"] = earlier["setup"] + f" Then {', '.join(names)} added with --add ({took})."
        if earlier.get("rescored"):
            result["rescored"] = earlier["rescored"]
        if earlier.get("retimed"):  # the added rows' speeds are from right after their training
            result["retimed"] = earlier["retimed"].rstrip(".") + f", before {', '.join(names)} were added."
    args.out.mkdir(parents=True, exist_ok=True)
    write_result(result, stem.with_suffix(".json"))


if __name__ == "__main__":
    main()
