"""The argument parser: one function per command, the shared option groups in ``cli.options``."""
from __future__ import annotations

import argparse

from brainae.cli.commands import (cmd_anomaly, cmd_config_show, cmd_denoise, cmd_evaluate, cmd_export, cmd_inspect,
                                  cmd_latent, cmd_layers, cmd_models, cmd_reconstruct, cmd_study, cmd_sweep, cmd_synth,
                                  cmd_train)
from brainae.cli.options import (COUNT, DATA_HELP, POSITIVE, RUN_DATA_HELP, Parser, _analysis_args, _config_args,
                                 _data_args, _int_at_least, _names, _out_dir, _out_file, _positive_float, _preset,
                                 _verbosity_args, add_common, add_flags, walk_parsers)


def build_parser() -> argparse.ArgumentParser:
    from brainae import __version__

    parser = Parser(
        prog="brainae",
        description="Train, tune, compare and inspect convolutional autoencoders on brain MRI.",
        epilog="Start with 'brainae study --out study' (embedded phantom data, a few minutes on a CPU).",
    )
    parser.add_argument("--version", action="version", version=f"brainae {__version__}",
                        help="print brainae's version and exit; with -v also torch's, the CPU and GPUs, and the precision "
                             "--precision auto picks on each (for bug reports)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_study(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_data(sub)
    _add_reconstruct(sub)
    _add_layers(sub)
    _add_latent(sub)
    _add_denoise(sub)
    _add_anomaly(sub)
    _add_sweep(sub)
    _add_models(sub)
    _add_export(sub)
    _add_config(sub)

    for i, p in enumerate(walk_parsers(parser)):  # every command, those added above and any added later
        _verbosity_args(p, top=i == 0)
    return parser


def _add_study(sub) -> None:
    from brainae.models import model_names

    p = sub.add_parser("study", help="train AE and VAE (or --models), evaluate on the test split, write report.html",
                       description="Train the study's AE and VAE (or the --models given) on the same data and split, "
                                   "evaluate them on the test split and write DIR/report.html and DIR/summary.json.")
    _config_args(p, "quick")
    p.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                   help="search hyperparameters before training (default on): --preset seed runs the study's sweeps "
                        "(17 AE, 61 VAE trials) and trains with the best; quick runs 3 one-epoch trials per model "
                        "for the report only. Results in DIR/sweeps/; a rerun resumes them")
    p.add_argument("--models", type=_names, default=None, metavar="LIST",
                   help=f"models to train and compare (default ae,vae; registered: {','.join(model_names())}); "
                        "architecture flags such as --skips apply to every model that uses them")
    add_common(p, "out", help="output folder (report.html, summary.json, runs/)")
    p.set_defaults(func=cmd_study)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model into a run folder",
                       description="Train one autoencoder; the run folder holds config, history, checkpoints and metrics.")
    add_common(p, "model")
    _config_args(p, "seed")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt (--epochs extends it)")
    add_common(p, "out", metavar="RUN_DIR", help="run folder to create")
    p.set_defaults(func=cmd_train)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="held-out MSE/PSNR/SSIM with 95%% intervals",
                       description="Evaluate a run's best checkpoint; writes RUN_DIR/eval/<split>.json and prints a table.")
    add_common(p, "run_dir")
    add_common(p, "data", help=RUN_DATA_HELP)
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="which images to score (default test); all: every image, for someone else's dataset "
                        "(a folder holding only Testing/ or test/ is all test)")
    p.add_argument("--baseline", choices=["pca"],
                   help="also score the same images through PCA with as many components as the network's code, "
                        "fitted on the run's training split: the linear code the network must beat (default: none)")
    add_common(p, "no_progress")
    p.set_defaults(func=cmd_evaluate)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="data tools (inspect, synth)")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = dsub.add_parser("inspect", help="counts, sizes, modes, grouping, duplicates and split leaks",
                        description="What the default loading makes of SPEC: counts per split and class, image sizes "
                                    "and modes, how it was split (by subject, volume, --group-by id or image, with "
                                    "copies grouped), what was left out and why, and exact and near-duplicate images "
                                    "within and across splits (0 across splits by construction; --raw shows the data "
                                    "before grouping).")
    q.add_argument("spec", metavar="SPEC", help=DATA_HELP)
    q.add_argument("--image-size", type=_int_at_least(8), default=128, help="size used for near-duplicate hashing (default 128)")
    q.add_argument("--near-threshold", type=COUNT, default=2,
                   help="max Hamming distance of 64-bit perceptual hashes for near duplicates, used for the split "
                        "groups too (default 2, the training default data.near_threshold; 4 also groups "
                        "neighbouring slices of one series)")
    q.add_argument("--raw", action="store_true",
                   help="the data as it is: split image by image, nothing grouped or left out (shows the leaks that "
                        "the default loading removes)")
    q.add_argument("--json", metavar="FILE", type=_out_file, help="also write the report as JSON (default: print only)")
    add_common(q, "no_progress")
    _data_args(q)
    q.set_defaults(func=cmd_inspect)

    q = dsub.add_parser("synth", help="write a small synthetic NIfTI dataset (BraTS-like or BIDS) with tumour masks",
                        description="Write phantom heads as NIfTI volumes in the BraTS-like layout "
                                    "(<subject>/<subject>_{t1,t1ce,t2,flair,seg}.nii.gz) or BIDS (sub-XX/[ses-YY/]anat/"
                                    "sub-XX_T1w.nii.gz with _dseg / _mask), with anisotropic voxels and a non-RAS "
                                    "storage order as clinical scans have; about two thirds of the subjects carry a "
                                    "tumour. For trying brainae on volumes without a download.")
    q.add_argument("out", metavar="DIR", type=_out_dir, help="folder to create")
    q.add_argument("--layout", default="brats", choices=["brats", "bids"], help="folder layout (default brats)")
    q.add_argument("--subjects", type=POSITIVE, default=12, help="number of subjects, 1 to 99 (default 12)")
    q.add_argument("--seed", type=COUNT, default=0, help="seed of the phantoms (default 0)")
    q.set_defaults(func=cmd_synth)


def _add_reconstruct(sub) -> None:
    p = sub.add_parser("reconstruct", help="write reconstructions and residual maps (NIfTI volumes or PNGs)",
                       description="Reconstruct a dataset with a run's best checkpoint and write, for NIfTI data, "
                                   "one folder per scan with <modality>_{input,recon,residual}.nii.gz on the scan's "
                                   "own grid and affine (open them over the original in ITK-SNAP or FSLeyes; "
                                   "intensities in the normalised 0..1 units the network sees), for images "
                                   "<class>/<name>_{input,recon,residual}.png; plus reconstruct.json.")
    add_common(p, "run_dir")
    add_common(p, "data", help="data to reconstruct (default: the run's own), preprocessed as the run was")
    p.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                   help="which images (default all)")
    add_common(p, "out")
    add_common(p, "no_progress")
    p.set_defaults(func=cmd_reconstruct)


def _add_layers(sub) -> None:
    p = sub.add_parser("layers", help="what every conv layer outputs (forward hooks), AE and VAE side by side",
                       description="Hook every conv / transposed-conv block of each run's network and write, to "
                                   "--out: channel_means.png (the mean over channels of every layer, input and "
                                   "reconstruction at both ends, all runs on the same test images), "
                                   "<model>_top_channels.png (the most active channels per layer), "
                                   "<model>_channels_<layer>.png (every channel for the first image) and layers.json "
                                   "(per layer: output shape, mean, std, share of near-zero activations).")
    _analysis_args(p, "the first RUN_DIR/layers")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--images", type=POSITIVE, default=5, metavar="N", help="N test images, spread over the classes (default 5)")
    g.add_argument("--pick", metavar="CLASS:N,...", help="N seeded-random test images of each named class, e.g. tumor:3,no_tumor:2 "
                   "(default: --images)")
    p.set_defaults(func=cmd_layers)


def _add_latent(sub) -> None:
    p = sub.add_parser("latent", help="latent space: projections by class, interpolation, VAE samples",
                       description="Encode the test split with each run's network and write, to --out: "
                                   "projections.png (PCA, plus UMAP / t-SNE when installed, coloured by class), "
                                   "explained.png, interpolation.png (a line in latent space between two test images "
                                   "of different classes, all runs side by side), for a VAE <model>_samples.png "
                                   "(decoded draws from N(0, I) and from the mixture fitted to the training codes) and <model>_traversal.png (along the top principal "
                                   "directions), and latent.json (explained variance, class centroid distances).")
    _analysis_args(p, "the first RUN_DIR/latent")
    p.set_defaults(func=cmd_latent)


def _add_denoise(sub) -> None:
    p = sub.add_parser("denoise", help="denoising: trained runs against classical denoisers at several noise levels",
                       description="Add seeded noise to the test split (the same noisy images for every method) and "
                                   "denoise it with every RUN_DIR's network and with classical denoisers. Per level and "
                                   "method: PSNR and SSIM (mean, 95%% bootstrap interval), PSNR inside the tumour masks "
                                   "where the data has them, images per second. Writes denoise.json, "
                                   "denoise_examples_<level>.png (original / noisy / each method) and denoise_psnr.png "
                                   "(PSNR and SSIM against the level). Baseline parameters follow the known sigma.")
    _analysis_args(p, "the first RUN_DIR/denoise", example="a dae run and study/runs/ae")
    p.add_argument("--noise", default="gaussian:0.1,0.2,0.3", metavar="SPEC",
                   help="noise kind and levels, e.g. gaussian:0.1,0.2,0.3 (default), rician:0.05,0.1, "
                        "salt_pepper:0.05, poisson:0.1")
    p.add_argument("--baselines", default="nlm,tv,wavelet,bilateral,median,bm3d", metavar="LIST",
                   help="classical denoisers, comma-separated, or none: nlm (non-local means), tv (total variation), "
                        "wavelet, bilateral, median, bm3d (optional package bm3d, free for non-commercial use only; "
                        "skipped with a note when absent). Default: all")
    p.add_argument("--limit", type=COUNT, default=0, metavar="N", help="at most N test images (seeded choice; 0 = all). "
                   "BM3D takes seconds per 128x128 image on a CPU")
    p.add_argument("--seed", type=COUNT, default=0, help="seed of the noise and of the image choice (default 0)")
    p.set_defaults(func=cmd_denoise)


def _add_anomaly(sub) -> None:
    p = sub.add_parser("anomaly", help="tumour detection by reconstruction error (AUROC, AUPRC, Dice)",
                       description="Score every test image by its reconstruction error inside the brain (pixel MSE, "
                                   "1 - SSIM, 99th percentile of the residual) and report image-level AUROC and AUPRC "
                                   "for tumour versus healthy; where the data has tumour masks (phantom), also "
                                   "pixel-level AUROC/AUPRC of the residual map and the best Dice over thresholds. "
                                   "Writes anomaly.json, anomaly_residuals.png and anomaly_scores.png. Train the run "
                                   "on healthy images only ('brainae train --normal-only no_tumor') for the textbook setup.")
    _analysis_args(p, "RUN_DIR/anomaly", many=False)
    p.add_argument("--normal", metavar="CLASS", help="the healthy class (default: the run's --normal-only class, "
                   "else a class named no_tumor / healthy / normal); every other class counts as tumour")
    p.set_defaults(func=cmd_anomaly)


def _add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep", help="hyperparameter search (Optuna): offline, pruned, resumable, many workers",
        description="Search hyperparameters of one model on the validation loss (per pixel; never the test split). "
                    "Trials live in a study in --storage, so running the same command again resumes it and adds "
                    "trials up to --trials; workers on other machines join by naming the same --storage and "
                    "--study. Writes DIR/sweep.json, DIR/best/ (the best trial's run folder) and four "
                    "DIR/sweep_*.png figures.",
        epilog="Example: brainae sweep --model ae --space seed --trials 17 --out sweeps/ae")
    add_common(p, "data")
    add_common(p, "model", help="registered model to tune (default ae)")
    p.add_argument("--preset", default="seed", choices=["quick", "seed"],
                   help=f"base settings every trial starts from: seed = the study's ({_preset('seed', 'data.image_size')} px, "
                        f"all images, {_preset('seed', 'train.epochs')}-epoch budget), quick = "
                        f"{_preset('quick', 'data.image_size')} px and a {_preset('quick', 'train.epochs')}-epoch budget (default seed)")
    add_common(p, "config")
    add_common(p, "set", help="fix any config key for every trial, e.g. --set data.normalize=zscore")
    p.add_argument("--space", default="seed", metavar="seed|wide|FILE.yaml",
                   help="search space: seed = the study's grid (lr {1e-3,5e-4,1e-4}, batch {16,32,64}, latent "
                        "{512,1024,2048}, epochs {10,20,40} as the budget); wide = seed plus depth, base width, kernel, "
                        "stride, activation, norm, weight decay, optimizer, schedule (beta for VAEs; blocks, skips and bottleneck for the "
                        "models that have them); or a YAML file of dotted keys, "
                        "e.g. 'train.lr: {type: float, low: 1e-4, high: 1e-2, log: true}' (default seed)")
    p.add_argument("--trials", type=POSITIVE, default=20, help="total trials in the study, counting those already run (default 20)")
    p.add_argument("--timeout", type=_positive_float, metavar="S", help="stop starting new trials after S seconds (per worker; default: no limit)")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "gp", "random", "grid"],
                   help="tpe: Bayesian (tree-structured Parzen), gp: Gaussian process, random, grid: every combination "
                        "(categorical spaces only) (default tpe)")
    p.add_argument("--pruner", default="sha", choices=["sha", "hyperband", "median", "none"],
                   help="stop unpromising trials early on their validation loss per epoch: sha (successive halving "
                        "from epoch 1: the fewest epochs in benchmarks/sweep_efficiency.py), hyperband (several "
                        "halving ladders: more epochs, a hedge when early epochs mislead), median (worse than the "
                        "median of complete trials at the same epoch), none (default sha)")
    p.add_argument("--epochs", type=POSITIVE, metavar="N", help="epoch budget of each trial (default: the space's largest "
                   f"train.epochs value, 40 for seed/wide; the preset's {_preset('quick', 'train.epochs')} with --preset quick)")
    add_flags(p, ["limit", "image_size", "accelerator"])  # as train has them, for every trial
    p.add_argument("--storage", metavar="URL",
                   help="where the study lives (default sqlite:///DIR/sweep.db): any SQLAlchemy URL "
                        "(postgresql://user:pw@host/db, mysql://...) or a journal file (journal:PATH, or a path ending "
                        "in .log/.journal) shared by workers on several machines")
    p.add_argument("--study", metavar="NAME", help="study name inside the storage (default brainae-MODEL); a name "
                   "used before with another model, space or data is refused")
    p.add_argument("--workers", type=POSITIVE, default=1, metavar="K",
                   help="local worker processes sharing the study (each loads the data once; default 1)")
    p.add_argument("--trials-per-device", type=POSITIVE, default=0, metavar="K",
                   help="K workers per GPU, each GPU shared by K trials at once (the study's batch-16 networks leave "
                        "most of a large GPU idle); on a machine without a GPU, K workers; overrides --workers")
    p.add_argument("--seed", type=COUNT, default=0, help="sampler seed: trial N draws with a seed made from this and N, so workers, machines and restarts never repeat draws (default 0)")
    p.add_argument("--wandb", action="store_true", help="also log every trial as a W&B run, offline unless WANDB_MODE "
                   "says otherwise, under $WANDB_DIR (default DIR/wandb); needs pip install 'brainae[wandb]'; upload "
                   "later with 'wandb sync'")
    add_common(p, "out", help="sweep folder: sweep.db, sweep.json, best/, trials/, figures")
    add_common(p, "no_progress", help="no line per trial (for logs)")
    p.set_defaults(func=cmd_sweep)


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(func=cmd_models)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a run's network as ONNX, TorchScript or safetensors, checked against the run",
                       description="Write a run's network to one file for use outside brainae, read it back and run "
                                   "it on a few of the run's test images; it is kept only if its output matches the "
                                   "run's to within 1e-4. ONNX and TorchScript take images (B, C, H, W) in [0, 1] and "
                                   "return the reconstruction; safetensors holds the weights, with the config in its "
                                   "metadata. Every run also has weights/best.safetensors from training.",
                       epilog="Example: brainae export runs/ae --format onnx --out ae.onnx")
    add_common(p, "run_dir")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript", "safetensors"],
                   help="onnx (needs pip install 'brainae[onnx]'), torchscript (torch.jit, for LibTorch) or "
                        "safetensors (weights only)")
    p.add_argument("--out", metavar="FILE", help="file to write (default RUN_DIR/export/<which>.onnx, "
                   ".torchscript.pt or .safetensors)")
    p.add_argument("--which", default="best", choices=["best", "last"],
                   help="best: lowest validation loss (default); last: the last finished epoch")
    p.set_defaults(func=cmd_export)


def _add_config(sub) -> None:
    p = sub.add_parser("config", help="config tools (show)")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    q = csub.add_parser("show", help="print the resolved config that 'brainae train' would use, as YAML",
                        description="Resolve the config as 'brainae train' does (defaults < preset < --config file < "
                                    "flags < --set) and print it as YAML, in the form of a run's config.yaml; save it "
                                    "and pass it back with --config. Two values are settled only when training "
                                    "starts: precision auto, and the default noise of a denoising model.",
                        epilog="Example: brainae config show --model vae --preset quick --set model.beta=0.5")
    add_common(q, "model")
    _config_args(q, "seed", run=False)
    q.set_defaults(func=cmd_config_show)
