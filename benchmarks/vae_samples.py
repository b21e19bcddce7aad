"""Benchmark: do a VAE's samples look like the images it was trained on?

For every VAE row of the architectures benchmark (its kept run folders), draws codes from N(0, I)
and from a mixture fitted to the training codes (fitted here for every row, as `brainae train` fits
its prior.pt), decodes them, and measures:

- Frechet distance to the validation images in the feature space of an independent autoencoder
  trained on the same training images (the resae_wide row's encoder; its codes reduced to their top
  32 principal directions, fitted on training images). Lower is closer. Two references: training
  images themselves (what real images score: the floor) and the VAE's reconstructions of training
  images (what this decoder's best sampler would score: samples cannot be sharper than those).
- Copying: the mean PSNR of each sample to its nearest training image, next to the same for the
  reconstructions of validation images (never seen in training). A sampler that copies training
  images would sit well above the latter.

Writes vae_samples_<tag>.json / .md and two figures: per VAE, N(0, I) and mixture draws; and the VAE
whose mixture draws score best up close, with the nearest training image under each draw. The test
split is never used.

    python benchmarks/vae_samples.py --work /tmp/arch/runs --limit 800 --tag cpu
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from architectures import DEFAULT_DATA  # noqa: E402
from train_real import command_line, machine  # noqa: E402

from brainae.config import build_config  # noqa: E402
from brainae.data.load import load_data  # noqa: E402
from brainae.training.run import fit_code_prior, load_run  # noqa: E402
from brainae.visualization.latent import decode_codes, encode_images, image_rows_figure, pca  # noqa: E402
from brainae.visualization.plots import figure_png  # noqa: E402

FEATURES = "resae_wide"  # the independent autoencoder whose codes are the feature space
FEATURE_DIMS = 32


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a (N, D) and b (M, D)."""
    m1, m2 = a.mean(axis=0), b.mean(axis=0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * root))


def nearest(images: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each image (N, H, W): the index of its nearest reference image (M, H, W) and their MSE."""
    x = images.reshape(len(images), -1).astype(np.float64)
    r = reference.reshape(len(reference), -1).astype(np.float64)
    d = (x ** 2).sum(1)[:, None] - 2 * x @ r.T + (r ** 2).sum(1)[None]
    index = d.argmin(axis=1)
    return index, np.maximum(d[np.arange(len(x)), index] / x.shape[1], 0)


def nearest_psnr(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSNR (dB, range 1) of each image (N, H, W) to its nearest reference image (M, H, W)."""
    return -10 * np.log10(np.maximum(nearest(images, reference)[1], 1e-10))


def diagonal_draws(prior, n: int, g: torch.Generator) -> torch.Tensor:
    """Draws from the same mixture with each unit independent (each component's diagonal covariance):
    the ablation that shows why brainae draws with the full covariance."""
    which = torch.multinomial(prior.weights, n, replacement=True, generator=g)
    share = prior.resp / prior.resp.sum(dim=0)  # (N, K), columns sum to 1
    var = share.T @ prior.codes.pow(2) - prior.means.pow(2)
    return prior.means[which] + var.clamp_min(0)[which].sqrt() * torch.randn(n, prior.codes.shape[1], generator=g)


def best_figure(model: torch.nn.Module, name: str, train) -> Figure:
    """One VAE (with its fitted mixture) up close: N(0, I) draws, 16 mixture draws, and under each the
    nearest training image (by pixel distance), to show the samples are new images and not copies."""
    g = torch.Generator().manual_seed(1)
    normal = model.sample(8, generator=g, prior="normal").numpy()[:, 0]
    mixture = model.sample(16, generator=g, prior="fitted").numpy()[:, 0]
    index = nearest(mixture, train.images / 255.0)[0]
    rows = {"z ~ N(0, I)": normal}
    for half in (0, 1):
        part = slice(8 * half, 8 * half + 8)
        rows[f"z ~ mixture of {model.code_prior.components}" + " " * half] = mixture[part]
        rows["nearest training\nimage" + " " * half] = train.images[index[part]] / 255.0
    return image_rows_figure(rows, [], f"{name}: decoded samples, and the training image nearest to each")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, required=True, help="the architectures benchmark's run folders")
    ap.add_argument("--limit", type=int, default=800, help="as given to the architectures benchmark")
    ap.add_argument("--components", type=int, default=30, help="mixture size (brainae's default)")
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    arch = json.loads((args.out / f"architectures_{args.tag}.json").read_text())
    vaes = [v for v, r in arch["rows"].items() if r["role"] == "vae" and (args.work / v).is_dir()]
    if not vaes or not (args.work / FEATURES).is_dir():
        sys.exit(f"need the VAE run folders and {FEATURES} in {args.work} (run benchmarks/architectures.py first)")
    data = load_data(build_config("ae", preset="seed", data=str(args.data), limit=args.limit).data, progress=False)
    train, val = data.split("train"), data.split("val")
    n = len(val)
    rng = np.random.default_rng(0)
    train_pick = np.sort(rng.choice(len(train), n, replace=False))

    feature_net = load_run(args.work / FEATURES)[0]
    basis = pca(encode_images(feature_net, train.images), FEATURE_DIMS)

    def features(images: np.ndarray) -> np.ndarray:
        return (encode_images(feature_net, images) - basis["mean"]) @ basis["components"].T

    val_features = features(val.images)
    rows, figure_rows, models = {}, {}, {}
    floor = frechet_distance(features(train.images[train_pick]), val_features)
    for v in vaes:
        model, _ = load_run(args.work / v)
        # fitted afresh for every row, as `brainae train` fits it, so rows trained before it did compare alike
        model.code_prior = fit_code_prior(model, train.images, args.components, seed=0)
        models[v] = model
        g = torch.Generator().manual_seed(0)
        normal = model.sample(n, generator=g, prior="normal").numpy()[:, 0]
        mixture = model.sample(n, generator=g, prior="fitted").numpy()[:, 0]
        diagonal = decode_codes(model, diagonal_draws(model.code_prior, n, g).numpy())
        recon_train = decode_codes(model, encode_images(model, train.images[train_pick]))
        recon_val = decode_codes(model, encode_images(model, val.images))
        rows[v] = {
            "mixture_components": model.code_prior.components,
            "fd_normal": round(frechet_distance(features(normal), val_features), 1),
            "fd_mixture": round(frechet_distance(features(mixture), val_features), 1),
            "fd_mixture_diagonal": round(frechet_distance(features(diagonal), val_features), 1),
            "fd_train_reconstructions": round(frechet_distance(features(recon_train), val_features), 1),
            "nearest_train_psnr_mixture": round(float(nearest_psnr(mixture, train.images / 255.0).mean()), 2),
            "nearest_train_psnr_val_reconstructions": round(float(nearest_psnr(recon_val, train.images / 255.0).mean()), 2),
            "val_psnr": round(arch["rows"][v]["val_psnr"]["mean"], 2),
        }
        figure_rows[f"{v}\nz ~ N(0, I)"] = normal[:8]
        figure_rows[f"{v}\nmixture of {model.code_prior.components}"] = mixture[:8]
        print(v, rows[v], flush=True)
    fig = image_rows_figure(figure_rows, [], "Decoded samples of every VAE (validation and test images never used)")
    (args.out / f"vae_samples_{args.tag}.png").write_bytes(figure_png(fig, dpi=55))
    best = min(rows, key=lambda v: rows[v]["fd_mixture"])
    (args.out / f"vae_samples_{args.tag}_best.png").write_bytes(figure_png(best_figure(models[best], best, train), dpi=72))

    result = {
        "machine": machine(), "date": datetime.date.today().isoformat(), "command": command_line("vae_samples.py"),
        "setup": (f"{n} samples per sampler, against the {n} validation images; features: the {FEATURES} encoder, "
                  f"top {FEATURE_DIMS} principal directions of its training codes; copying checked against the "
                  f"{len(train)} training images. Every mixture ({args.components} components) fitted by this script to the "
                  f"codes of the training images (seed 0), as `brainae train` does after training."),
        "fd_real_training_images": round(floor, 1), "rows": rows,
    }
    (args.out / f"vae_samples_{args.tag}.json").write_text(json.dumps(result, indent=1))
    lines = [f"# VAE samples ({result['machine']})", "", f"{result['date']}; `{result['command']}`; {result['setup']}", "",
             f"Frechet distance to the validation images (lower is closer): real training images score "
             f"**{result['fd_real_training_images']}**.", "",
             "| variant | val PSNR (dB) | mixture | FD, z ~ N(0, I) | FD, z ~ mixture | FD, mixture with independent units "
             "| FD, reconstructed training images | nearest-training PSNR, mixture samples "
             "| nearest-training PSNR, validation reconstructions |",
             "| --- " * 9 + "|"]
    for v, r in rows.items():
        lines.append(f"| {v} | {r['val_psnr']} | {r['mixture_components']} | {r['fd_normal']} | {r['fd_mixture']} | "
                     f"{r['fd_mixture_diagonal']} | "
                     f"{r['fd_train_reconstructions']} | {r['nearest_train_psnr_mixture']} | "
                     f"{r['nearest_train_psnr_val_reconstructions']} |")
    (args.out / f"vae_samples_{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
