"""Thin command line: parse arguments, call the library, turn user mistakes into one-line errors."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from brainae.errors import BrainaeError

DATA_HELP = (
    "data spec: phantom[:N] (embedded synthetic slices, the default), a folder of class sub-folders "
    "(optionally Training/Testing or train/val/test), hf:OWNER/NAME[@REVISION] "
    "(e.g. hf:benschill/brain-tumor-collection), a .nii/.nii.gz file or nifti:FOLDER"
)


def _config_args(p: argparse.ArgumentParser, default_preset: str) -> None:
    from brainae.config import preset_names

    p.add_argument("--data", metavar="SPEC", help=DATA_HELP)
    p.add_argument("--preset", default=default_preset, choices=preset_names(),
                   help=f"seed: the study's best settings (40 epochs); quick: a few epochs on a few hundred images (default {default_preset})")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with model/data/train sections, applied after the preset")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate (Adam)")
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--limit", type=int, help="at most N training images (val/test shrink in proportion); 0 = all")
    p.add_argument("--image-size", type=int, help="square size images are resized to (default 128)")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--precision", choices=["32", "bf16-mixed", "16-mixed"])
    p.add_argument("--accelerator", choices=["auto", "cpu", "cuda", "mps"], help="device (default auto)")
    p.add_argument("--devices", type=int, help="number of GPUs; more than one trains with DDP")
    p.add_argument("--dedupe", action="store_true", default=None, help="drop duplicate images that would leak into validation/test")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. --set model.channels=[16,32,64,128] --set data.normalize=zscore")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")


def _flat(args: argparse.Namespace) -> dict:
    return dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, latent_dim=args.latent_dim,
                limit=args.limit, seed=args.seed, precision=args.precision, devices=args.devices,
                accelerator=args.accelerator, image_size=args.image_size, dedupe=args.dedupe)


def cmd_train(args: argparse.Namespace) -> None:
    from brainae.config import apply_dict, apply_overrides, build_config, load_config, validate
    from brainae.training.train import train

    if args.resume and (Path(args.out) / "config.yaml").is_file():
        cfg = load_config(Path(args.out) / "config.yaml")  # continue the run as it was configured
        flat = {k: v for k, v in _flat(args).items() if v is not None}
        keys = {"epochs": "train", "batch_size": "train", "lr": "train", "seed": "train", "precision": "train",
                "devices": "train", "accelerator": "train"}
        apply_dict(cfg, {"train": {k: v for k, v in flat.items() if keys.get(k) == "train"}})
        apply_overrides(cfg, args.overrides)
        validate(cfg)
    else:
        cfg = build_config(args.model, args.preset, args.config, args.overrides, data=args.data, **_flat(args))
    cfg.train.progress = not args.no_progress
    result = train(cfg, args.out, resume=args.resume)
    if "epochs" not in result:  # a DDP worker process: rank 0 reports
        return
    print(f"trained {cfg.model.name} for {result['epochs']} epochs: best validation loss {result['best_val_loss']:.5g} "
          f"at epoch {result['best_epoch']}; run folder {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from brainae.evaluation.evaluate import evaluate, format_per_class, format_table

    result = evaluate(args.run_dir, data=args.data, split=args.split, progress=not args.no_progress)
    print(format_table({result["model"]: result}))
    print("per class:\n" + format_per_class(result))
    print(f"written: {Path(args.run_dir) / 'eval' / (args.split + '.json')}")


def cmd_study(args: argparse.Namespace) -> None:
    from brainae.study import run_study

    run_study(args.out, data=args.data, preset=args.preset, config_file=args.config, overrides=args.overrides,
              progress=not args.no_progress, **{k: v for k, v in _flat(args).items() if k != "data"})


def cmd_inspect(args: argparse.Namespace) -> None:
    from brainae.config import DataConfig
    from brainae.data.inspect import format_inspection, inspect_imageset
    from brainae.data.load import load_data
    from brainae.io import write_json

    ds = load_data(DataConfig(spec=args.spec, image_size=args.image_size), progress=not args.no_progress)
    report = inspect_imageset(ds, near_threshold=args.near_threshold)
    print(format_inspection(report))
    if args.json:
        write_json(args.json, report)
        print(f"written: {args.json}")


def cmd_models(args: argparse.Namespace) -> None:
    from brainae.models import model_names
    from brainae.registry import get

    for name in model_names():
        doc = (get("model", name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:<8} {doc}")


def build_parser() -> argparse.ArgumentParser:
    from brainae.models import model_names

    parser = argparse.ArgumentParser(
        prog="brainae",
        description="Train, tune, compare and inspect convolutional autoencoders on brain MRI.",
        epilog="Start with 'brainae study --out study' (embedded phantom data, a few minutes on a CPU).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("study", help="train AE and VAE, evaluate on the test split, write report.html",
                       description="Train the study's AE and VAE on the same data and split, evaluate both on the "
                                   "test split and write DIR/report.html and DIR/summary.json.")
    _config_args(p, "quick")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (report.html, summary.json, runs/)")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("train", help="train one model into a run folder",
                       description="Train one autoencoder; the run folder holds config, history, checkpoints and metrics.")
    p.add_argument("--model", default="ae", choices=model_names(), help="registered model (see 'brainae models')")
    _config_args(p, "seed")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt (--epochs extends it)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to create")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="held-out MSE/PSNR/SSIM with 95%% intervals",
                       description="Evaluate a run's best checkpoint; writes RUN_DIR/eval/<split>.json and prints a table.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", metavar="SPEC", help="another dataset to evaluate on (the run's preprocessing is applied)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("data", help="data tools (inspect)")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = dsub.add_parser("inspect", help="counts, sizes, modes, duplicates and split leaks",
                        description="Counts per split and class, image sizes and modes, exact and near-duplicate "
                                    "images within and across splits (leaks).")
    q.add_argument("spec", metavar="SPEC", help=DATA_HELP)
    q.add_argument("--image-size", type=int, default=128, help="size used for near-duplicate hashing (default 128)")
    q.add_argument("--near-threshold", type=int, default=2,
                   help="max Hamming distance of 64-bit perceptual hashes for near duplicates (default 2; "
                        "4 also groups neighbouring slices of one series)")
    q.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=cmd_inspect)

    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except BrainaeError as e:
        print(f"brainae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brainae: interrupted; completed epochs are in checkpoints/last.ckpt (continue with --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
