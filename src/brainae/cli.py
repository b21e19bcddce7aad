"""Thin command line: parse arguments, call the library, turn user mistakes into one-line errors."""
from __future__ import annotations

import argparse
import errno
import functools
import os
import sys
from pathlib import Path
from typing import Iterator

from brainae.errors import BrainaeError


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, unless the help already states it.

    A default of None means "decided elsewhere" (the preset, the run, the data): such helps say where
    in words. On/off flags are off unless given, which needs no saying.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        if ("default" in text or not action.option_strings or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or default == []):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with the project's error contract: one line on stderr, exit code 2, no usage block."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)  # sub-commands are made by this class too
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        command = self.prog.removeprefix("brainae").strip()
        self.exit(2, f"brainae: error: {command + ': ' if command else ''}{message} (see --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return value


def _writable(path: Path) -> None:
    """Refuse a path whose nearest existing folder cannot be written (read-only mount, permissions)."""
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write under {parent} (read-only or no permission); choose another place")


def _out_dir(text: str) -> str:
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("the output folder is empty")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; name a folder")
    _writable(path)
    return text


def _out_file(text: str) -> str:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name a file such as {Path(text) / 'report.json'}")
    _writable(path.parent if str(path.parent) else Path("."))
    return text


POSITIVE, COUNT = _int_at_least(1), _int_at_least(0)
NO_PROGRESS_HELP = "no progress bars or progress lines on stderr (--quiet does this for every command)"

DATA_HELP = (
    "data spec: phantom[:N] (embedded synthetic slices, the default), a folder of class sub-folders "
    "(optionally Training/Testing or train/val/test), hf:OWNER/NAME[@REVISION] "
    "(e.g. hf:benschill/brain-tumor-collection), a .nii/.nii.gz file or nifti:FOLDER"
)


@functools.lru_cache(maxsize=None)  # help texts quote presets dozens of times per parser
def _preset(name: str, key: str, model: str = "ae"):
    """A value of a preset file (e.g. ``_preset("quick", "train.epochs")``), or the config default, for help texts."""
    from brainae.config import Config, load_preset

    section, field = key.split(".")
    return load_preset(name, model).get(section, {}).get(field, getattr(getattr(Config(), section), field))


def _config_args(p: argparse.ArgumentParser, default_preset: str, run: bool = True) -> None:
    """The flags that resolve a config (train, study, config show); run: also those of a command that trains."""
    from brainae.config import LOGGERS, preset_names

    p.add_argument("--data", metavar="SPEC", help=DATA_HELP)
    p.add_argument("--preset", default=default_preset, choices=preset_names(),
                   help=f"seed: the study's best settings ({_preset('seed', 'train.epochs')} epochs at "
                        f"{_preset('seed', 'data.image_size')} px); quick: {_preset('quick', 'train.epochs')} epochs at "
                        f"{_preset('quick', 'data.image_size')} px, minutes on a CPU (default {default_preset})")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML file with model/data/train sections, applied after the preset (default: none)")
    p.add_argument("--epochs", type=POSITIVE, help=f"training epochs (default: the preset's, seed {_preset('seed', 'train.epochs')}, "
                        f"quick {_preset('quick', 'train.epochs')})")
    p.add_argument("--batch-size", type=POSITIVE, help="images per training batch (default 16, the study's)")
    p.add_argument("--lr", type=_positive_float,
                   help=f"learning rate (default: the preset's; seed: AE {_preset('seed', 'train.lr'):g}, VAE "
                        f"{_preset('seed', 'train.lr', 'vae'):g} as in the study; quick: {_preset('quick', 'train.lr'):g})")
    p.add_argument("--latent-dim", type=POSITIVE, help="size of the code (default 512; the study tried 512, 1024 and 2048)")
    p.add_argument("--limit", type=COUNT, help="at most N training images (val/test shrink in proportion); 0 = all "
                   f"(default: the preset's, seed {_preset('seed', 'data.limit')}, quick {_preset('quick', 'data.limit')})")
    p.add_argument("--image-size", type=_int_at_least(8), help=f"square size images are resized to (default: the preset's, seed {_preset('seed', 'data.image_size')}, "
                        f"quick {_preset('quick', 'data.image_size')})")
    p.add_argument("--seed", type=COUNT, help="training seed (default 0)")
    p.add_argument("--precision", choices=["auto", "32", "bf16-mixed", "16-mixed"],
                   help="number format: auto (default) trains in bf16-mixed where the CPU (AVX512-BF16, AMX) or "
                        "GPU computes bf16 natively and in 32 elsewhere; weights and metrics stay float32")
    p.add_argument("--accelerator", choices=["auto", "cpu", "cuda", "mps"], help="device (default auto)")
    p.add_argument("--devices", type=POSITIVE,
                   help="number of GPUs (or CPU processes); more than one trains with DDP (default 1)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the network, with CUDA graphs on a GPU (small batches wait on kernel launches "
                        "there); the first epoch also compiles, so it pays only on longer runs; off by default")
    p.add_argument("--dedupe", action="store_true", default=None,
                   help="drop duplicate images within a split (copies across splits are grouped anyway); off by default")
    p.add_argument("--noise", metavar="SPEC",
                   help="train as a denoiser: noisy input, clean target, noise drawn afresh per batch "
                        "(gaussian:0.3, rician:0.1, salt_pepper:0.05, poisson:0.1; several levels, e.g. "
                        "gaussian:0.1,0.2,0.3, give each image a random one); default: no noise, but "
                        "gaussian:0.3 for --model dae")
    p.add_argument("--normal-only", metavar="CLASS",
                   help="train and validate on this class only (e.g. no_tumor), for anomaly detection; test split "
                        "unchanged (default: every class)")
    g = p.add_argument_group("architecture and training options (defaults: the study's recipe)")
    g.add_argument("--skips", type=_levels, metavar="LEVELS",
                   help="skipae: encoder levels whose features bypass the bottleneck, e.g. 0,1 (0 = finest); '' for "
                        "none (default: none)")
    g.add_argument("--residual-output", action="store_true", default=None,
                   help="denoisers: predict the noise and subtract it from the input (output = input - noise)")
    g.add_argument("--loss", metavar="NAME",
                   help="mse | l1 | bce | ssim | ms_ssim | mixed (0.16*l1+0.84*ms_ssim) | psnr (minus the mean PSNR per "
                        "image: blind denoisers) | a weighted mix like "
                        "0.2*l1+0.8*ssim; default: the model's own (AE mse, VAE bce+kl)")
    g.add_argument("--augment", metavar="KINDS",
                   help="on-the-fly training augmentation: flip,affine,intensity or all (default: none)")
    g.add_argument("--optimizer", choices=["adam", "adamw"],
                   help="adamw decouples --set train.weight_decay from the gradient (default adam)")
    g.add_argument("--schedule", choices=["none", "cosine", "onecycle"],
                   help="learning-rate schedule, stepped per batch (default none)")
    g.add_argument("--early-stopping", type=COUNT, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation loss (default 0 = off)")
    g.add_argument("--ema", type=float, metavar="DECAY", help="keep an exponential moving average of the weights (e.g. 0.999); "
                                                                 "validation and checkpoints use it (default 0 = off)")
    g.add_argument("--likelihood", choices=["bernoulli", "gaussian"],
                   help="VAE decoder: bernoulli (BCE, the study's; the default) or gaussian with its variance fitted to "
                        "the batch's error, which weighs reconstruction against the KL term in the images' own error scale")
    g.add_argument("--prior-components", type=COUNT, metavar="K",
                   help="VAE: after training, fit K Gaussians to the training codes (prior.pt) and sample from them "
                        "instead of N(0, I), which the codes never fill (default 30, at most a tenth of the "
                        "training images; 0 = off)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. --set model.channels=[16,32,64,128] --set data.normalize=zscore; "
                        "'brainae config show' prints them all")
    p.add_argument("--logger", choices=LOGGERS,
                   help="where the run also logs its metrics, inside the run folder: csv (history.csv only; it is "
                        "written with every logger), tensorboard, mlflow (a SQLite store) or wandb (offline unless "
                        "WANDB_MODE says otherwise); the last three need pip install 'brainae[NAME]' (default csv)")
    if run:
        p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    _data_args(p)


DATA_FLAGS = ("group_by", "keep_duplicates", "modality", "slices", "crop_foreground", "axis")


def _data_args(p: argparse.ArgumentParser) -> None:
    """How the data is grouped into splits and how NIfTI volumes are sliced: shared by every command that loads data."""
    g = p.add_argument_group("splits and volumes (splits never separate a subject, a volume or copies of one image)")
    g.add_argument("--group-by", metavar="REGEX",
                   help="image folders: a regular expression on file names whose match (or first group) is a patient "
                        "id, e.g. '^(P\\d+)_'; files sharing an id stay in one split (default: none; volumes and "
                        "copies of one image are grouped regardless)")
    g.add_argument("--keep-duplicates", action="store_true", default=None,
                   help="split copies of one image independently and keep training copies of a given test split's "
                        "images (the old, leaking behaviour; for measuring the leak)")
    g.add_argument("--modality", metavar="NAME[,NAME]",
                   help="NIfTI subjects: the image to use (t1, t1ce, t2, flair, ...; default t1, else the first found); "
                        "a comma list such as t1,flair stacks them as input channels. Masks (seg, mask, label, dseg) "
                        "are never images: they label each slice tumor / no_tumor")
    g.add_argument("--slices", metavar="RANGE",
                   help="NIfTI: which non-empty slices of each volume: A:B (indices), 0.6 (the central 60%%) or 0.2:0.8 "
                        "(default: all)")
    g.add_argument("--crop-foreground", action="store_true", default=None,
                   help="NIfTI: crop each scan to its head before resizing")
    g.add_argument("--axis", type=int, choices=[0, 1, 2], help="NIfTI: slicing axis, 0 sagittal, 1 coronal, 2 axial (default)")


def _levels(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma list of levels such as 0,1") from None


def _names(text: str) -> list[str]:
    from brainae.models import model_names

    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in model_names()]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model '{(unknown or [text])[0]}' (registered: {', '.join(model_names())})")
    return names


def _analysis_args(p: argparse.ArgumentParser, out_default: str, many: bool = True,
                   example: str = "study/runs/ae study/runs/vae") -> None:
    """RUN_DIR(s), --data, --out and --no-progress: shared by the commands that analyse trained runs."""
    if many:
        p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help=f"one or more run folders (e.g. {example})")
    else:
        p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (the --out of 'brainae train')")
    p.add_argument("--data", metavar="SPEC", help="test images from another dataset (the run's preprocessing is applied; "
                   "default: the run's own test split)")
    p.add_argument("--out", metavar="DIR", type=_out_dir, help=f"output folder (default: {out_default})")
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)


def _flat(args: argparse.Namespace) -> dict:
    return dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, latent_dim=args.latent_dim,
                limit=args.limit, seed=args.seed, precision=args.precision, devices=args.devices,
                accelerator=args.accelerator, image_size=args.image_size, dedupe=args.dedupe,
                noise=args.noise, normal_only=args.normal_only, skips=args.skips, residual_output=args.residual_output,
                loss=args.loss, augment=args.augment, optimizer=args.optimizer, schedule=args.schedule,
                early_stopping=args.early_stopping, ema=args.ema, likelihood=args.likelihood,
                prior_components=args.prior_components, compile=getattr(args, "compile", None), logger=args.logger,
                **_data_flags(args))


def _data_flags(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k, None) for k in DATA_FLAGS}


def cmd_train(args: argparse.Namespace) -> None:
    from brainae.config import apply_dict, apply_overrides, build_config, load_config, validate
    from brainae.training.train import train

    if args.resume and (Path(args.out) / "config.yaml").is_file():
        cfg = load_config(Path(args.out) / "config.yaml")  # continue the run as it was configured
        flat = {k: v for k, v in _flat(args).items() if v is not None}
        keys = {"epochs": "train", "batch_size": "train", "lr": "train", "seed": "train", "precision": "train",
                "devices": "train", "accelerator": "train", "logger": "train"}
        apply_dict(cfg, {"train": {k: v for k, v in flat.items() if keys.get(k) == "train"}})
        apply_overrides(cfg, args.overrides)
        validate(cfg)
    else:
        cfg = build_config(args.model, args.preset, args.config, args.overrides, data=args.data, **_flat(args))
    cfg.train.progress = not args.no_progress
    result = train(cfg, args.out, resume=args.resume)
    if "epochs" not in result:  # a DDP worker process: rank 0 reports
        return
    if result["diverged"]:
        kept = f"best.ckpt holds epoch {result['best_epoch']}" if result["best_epoch"] else "no epoch was kept"
        raise BrainaeError(f"training diverged at epoch {result['diverged_at_epoch'] or result['epochs']} (the loss "
                           f"became NaN or infinite) and stopped; {kept}. Lower --lr or use --precision 32")
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
              progress=not args.no_progress, sweep=args.sweep, models=args.models, **{k: v for k, v in _flat(args).items() if k != "data"})


def cmd_inspect(args: argparse.Namespace) -> None:
    from brainae.config import build_config
    from brainae.data.inspect import format_inspection, inspect_imageset
    from brainae.data.load import load_data
    from brainae.io import write_json

    cfg = build_config("ae", data=args.spec, image_size=args.image_size,
                       overrides=[f"data.near_threshold={args.near_threshold}"], **_data_flags(args)).data
    ds = load_data(cfg, progress=not args.no_progress, require_training=False, raw=args.raw)
    report = inspect_imageset(ds, near_threshold=args.near_threshold)
    print(format_inspection(report))
    if args.json:
        write_json(args.json, report)
        print(f"written: {args.json}")


def cmd_synth(args: argparse.Namespace) -> None:
    from brainae.data.synth_nifti import write_synthetic_nifti

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BrainaeError(f"{out} already exists and is not an empty folder; choose a new folder")
    summary = write_synthetic_nifti(out, layout=args.layout, subjects=args.subjects, seed=args.seed)
    tumours = sum(s["tumor"] for s in summary["subjects"])
    print(f"wrote {len(summary['subjects'])} {args.layout} subjects ({tumours} with a tumour) to {out}: "
          f"{'x'.join(map(str, summary['shape']))} voxels of {' x '.join(map(str, summary['spacing_mm']))} mm, "
          f"stored {summary['orientation']}")
    print(f"try: brainae train --data {out} --normal-only no_tumor --out runs/{args.layout}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from brainae.evaluation.reconstruct import run_reconstruct

    result = run_reconstruct(args.run_dir, args.out, data=args.data, split=args.split, progress=not args.no_progress)
    print(f"reconstructed {result['n_images']} images ({result['split']}): {len(result['files'])} "
          f"{result['format'].upper()} files and reconstruct.json in {args.out}")


def cmd_layers(args: argparse.Namespace) -> None:
    from brainae.visualization.runs import run_layers

    result = run_layers(args.run_dirs, args.out, data=args.data, images=args.images, pick=args.pick,
                        progress=not args.no_progress)
    for m, rows in result["models"].items():
        print(f"{m.upper()}: " + ", ".join(f"{r['layer']} {'x'.join(map(str, r['shape']))}" for r in rows))
    print(f"written: {len(result['figures'])} figures and layers.json in {result['out_dir']}")


def cmd_latent(args: argparse.Namespace) -> None:
    from brainae.visualization.runs import run_latent

    result = run_latent(args.run_dirs, args.out, data=args.data, progress=not args.no_progress)
    for m, r in result["models"].items():
        ev = r["explained_variance"]
        print(f"{m.upper()}: latent {r['latent_dim']}, PC1 {ev[0]:.1%}, top {len(ev)} PCs {sum(ev):.1%} of the variance")
    print(f"written: {len(result['figures'])} figures and latent.json in {result['out_dir']}")


def cmd_denoise(args: argparse.Namespace) -> None:
    from brainae.evaluation.denoise import format_denoise_table, parse_baselines, run_denoise

    result = run_denoise(args.run_dirs, data=args.data, noise=args.noise, baselines=parse_baselines(args.baselines),
                         out=args.out, limit=args.limit, seed=args.seed, progress=not args.no_progress)
    print(format_denoise_table(result))
    print(f"written: denoise.json and figures in {result['out_dir']}")


def cmd_anomaly(args: argparse.Namespace) -> None:
    from brainae.evaluation.anomaly import format_anomaly, run_anomaly

    result = run_anomaly(args.run_dir, data=args.data, normal=args.normal, out=args.out, progress=not args.no_progress)
    print(format_anomaly(result))
    print(f"written: anomaly.json and figures in {result['out_dir']}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from brainae.sweeps.command import format_summary, sweep_setup
    from brainae.sweeps.runner import run_sweep

    cfg, opts = sweep_setup(
        args.model, args.out, data=args.data, preset=args.preset, config_file=args.config, overrides=args.overrides,
        space=args.space, epochs=args.epochs, limit=args.limit, image_size=args.image_size,
        accelerator=args.accelerator, trials=args.trials, timeout=args.timeout, sampler=args.sampler,
        pruner=args.pruner, storage=args.storage, study_name=args.study, workers=args.workers,
        trials_per_device=args.trials_per_device, seed=args.seed, wandb=args.wandb, quiet=args.no_progress,
    )
    try:
        summary = run_sweep(cfg, opts)
    except KeyboardInterrupt:
        print("brainae: interrupted; finished trials are stored (the running one is marked failed); "
              "run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    print(format_summary(summary))
    print(f"written: {Path(args.out) / 'sweep.json'} and sweep_*.png")


def cmd_models(args: argparse.Namespace) -> None:
    import brainae.models  # noqa: F401  (registers the models)
    from brainae.registry import model_specs

    for spec in model_specs():
        traits = [t for t, on in (("variational", spec.variational), ("skips", spec.takes_skips)) if on]
        traits += [f"plugin: {spec.source}"] if spec.source != "brainae" else []
        print(f"{spec.name:<8} {spec.summary}" + (f" [{', '.join(traits)}]" if traits else ""))


def cmd_export(args: argparse.Namespace) -> None:
    from brainae.export import export_run

    r = export_run(args.run_dir, args.format, out=args.out, which=args.which)
    print(f"exported the {r['which']} network of {args.run_dir} as {r['format']}: {r['path']} ({r['bytes'] / 1e6:.2f} MB)")
    print(f"checked on {r['checked_on']}: largest difference from the run {r['max_abs_diff']:.2g} "
          f"(limit {r['tolerance']:g}, pixels in [0, 1])")


def cmd_config_show(args: argparse.Namespace) -> None:
    from brainae.config import build_config, config_yaml

    cfg = build_config(args.model, args.preset, args.config, args.overrides, data=args.data, **_flat(args))
    sys.stdout.write(config_yaml(cfg))


def walk_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-command parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from walk_parsers(sub)


def _verbosity_args(p: argparse.ArgumentParser, top: bool) -> None:
    """--quiet / --verbose, accepted before the command and after it (``brainae train --quiet ...``).

    After the command their default is SUPPRESS: a sub-command's default would otherwise overwrite
    the value given before the command.
    """
    g = p.add_mutually_exclusive_group()
    default = False if top else argparse.SUPPRESS
    g.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="only results and errors: no progress bars, no per-epoch lines")
    g.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="more detail: also Lightning's own messages and warnings, and the network's summary")


def build_parser() -> argparse.ArgumentParser:
    from brainae import __version__
    from brainae.models import model_names

    parser = Parser(
        prog="brainae",
        description="Train, tune, compare and inspect convolutional autoencoders on brain MRI.",
        epilog="Start with 'brainae study --out study' (embedded phantom data, a few minutes on a CPU).",
    )
    parser.add_argument("--version", action="version", version=f"brainae {__version__}",
                        help="print brainae's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument("--out", required=True, metavar="DIR", type=_out_dir, help="output folder (report.html, summary.json, runs/)")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("train", help="train one model into a run folder",
                       description="Train one autoencoder; the run folder holds config, history, checkpoints and metrics.")
    p.add_argument("--model", default="ae", choices=model_names(), help="registered model (see 'brainae models')")
    _config_args(p, "seed")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt (--epochs extends it)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", type=_out_dir, help="run folder to create")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="held-out MSE/PSNR/SSIM with 95%% intervals",
                       description="Evaluate a run's best checkpoint; writes RUN_DIR/eval/<split>.json and prints a table.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (the --out of 'brainae train')")
    p.add_argument("--data", metavar="SPEC", help="another dataset to evaluate on (the run's preprocessing is applied; "
                   "default: the run's own test split)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="which images to score (default test); all: every image, for someone else's dataset "
                        "(a folder holding only Testing/ or test/ is all test)")
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    p.set_defaults(func=cmd_evaluate)

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
    q.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
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

    p = sub.add_parser("reconstruct", help="write reconstructions and residual maps (NIfTI volumes or PNGs)",
                       description="Reconstruct a dataset with a run's best checkpoint and write, for NIfTI data, "
                                   "one folder per scan with <modality>_{input,recon,residual}.nii.gz on the scan's "
                                   "own grid and affine (open them over the original in ITK-SNAP or FSLeyes; "
                                   "intensities in the normalised 0..1 units the network sees), for images "
                                   "<class>/<name>_{input,recon,residual}.png; plus reconstruct.json.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (the --out of 'brainae train')")
    p.add_argument("--data", metavar="SPEC", help="data to reconstruct (default: the run's own), preprocessed as the run was")
    p.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                   help="which images (default all)")
    p.add_argument("--out", required=True, metavar="DIR", type=_out_dir, help="output folder")
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    p.set_defaults(func=cmd_reconstruct)

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

    p = sub.add_parser("latent", help="latent space: projections by class, interpolation, VAE samples",
                       description="Encode the test split with each run's network and write, to --out: "
                                   "projections.png (PCA, plus UMAP / t-SNE when installed, coloured by class), "
                                   "explained.png, interpolation.png (a line in latent space between two test images "
                                   "of different classes, all runs side by side), for a VAE <model>_samples.png "
                                   "(decoded draws from N(0, I) and from the mixture fitted to the training codes) and <model>_traversal.png (along the top principal "
                                   "directions), and latent.json (explained variance, class centroid distances).")
    _analysis_args(p, "the first RUN_DIR/latent")
    p.set_defaults(func=cmd_latent)

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

    p = sub.add_parser(
        "sweep", help="hyperparameter search (Optuna): offline, pruned, resumable, many workers",
        description="Search hyperparameters of one model on the validation loss (per pixel; never the test split). "
                    "Trials live in a study in --storage, so running the same command again resumes it and adds "
                    "trials up to --trials; workers on other machines join by naming the same --storage and "
                    "--study. Writes DIR/sweep.json, DIR/best/ (the best trial's run folder) and four "
                    "DIR/sweep_*.png figures.",
        epilog="Example: brainae sweep --model ae --space seed --trials 17 --out sweeps/ae")
    p.add_argument("--data", metavar="SPEC", help=DATA_HELP)
    p.add_argument("--model", default="ae", choices=model_names(), help="registered model to tune (default ae)")
    p.add_argument("--preset", default="seed", choices=["quick", "seed"],
                   help=f"base settings every trial starts from: seed = the study's ({_preset('seed', 'data.image_size')} px, "
                        f"all images, {_preset('seed', 'train.epochs')}-epoch budget), quick = "
                        f"{_preset('quick', 'data.image_size')} px and a {_preset('quick', 'train.epochs')}-epoch budget (default seed)")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML file with model/data/train sections, applied after the preset (default: none)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fix any config key for every trial, e.g. --set data.normalize=zscore")
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
    p.add_argument("--limit", type=COUNT, help="at most N training images (val shrinks in proportion); 0 = all "
                   f"(default: the preset's, seed {_preset('seed', 'data.limit')}, quick {_preset('quick', 'data.limit')})")
    p.add_argument("--image-size", type=_int_at_least(8), help=f"square size images are resized to (default: the preset's, seed {_preset('seed', 'data.image_size')}, "
                        f"quick {_preset('quick', 'data.image_size')})")
    p.add_argument("--accelerator", choices=["auto", "cpu", "cuda", "mps"], help="device for every trial (default auto)")
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
    p.add_argument("--out", required=True, metavar="DIR", type=_out_dir, help="sweep folder: sweep.db, sweep.json, best/, trials/, figures")
    p.add_argument("--no-progress", action="store_true", help="no line per trial (for logs)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("export", help="export a run's network as ONNX, TorchScript or safetensors, checked against the run",
                       description="Write a run's network to one file for use outside brainae, read it back and run "
                                   "it on a few of the run's test images; it is kept only if its output matches the "
                                   "run's to within 1e-4. ONNX and TorchScript take images (B, C, H, W) in [0, 1] and "
                                   "return the reconstruction; safetensors holds the weights, with the config in its "
                                   "metadata. Every run also has weights/best.safetensors from training.",
                       epilog="Example: brainae export runs/ae --format onnx --out ae.onnx")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (the --out of 'brainae train')")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript", "safetensors"],
                   help="onnx (needs pip install 'brainae[onnx]'), torchscript (torch.jit, for LibTorch) or "
                        "safetensors (weights only)")
    p.add_argument("--out", metavar="FILE", help="file to write (default RUN_DIR/export/<which>.onnx, "
                   ".torchscript.pt or .safetensors)")
    p.add_argument("--which", default="best", choices=["best", "last"],
                   help="best: lowest validation loss (default); last: the last finished epoch")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("config", help="config tools (show)")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    q = csub.add_parser("show", help="print the resolved config that 'brainae train' would use, as YAML",
                        description="Resolve the config as 'brainae train' does (defaults < preset < --config file < "
                                    "flags < --set) and print it as YAML, in the form of a run's config.yaml; save it "
                                    "and pass it back with --config. Two values are settled only when training "
                                    "starts: precision auto, and the default noise of a denoising model.",
                        epilog="Example: brainae config show --model vae --preset quick --set model.beta=0.5")
    q.add_argument("--model", default="ae", choices=model_names(), help="registered model (see 'brainae models')")
    _config_args(q, "seed", run=False)
    q.set_defaults(func=cmd_config_show)

    for i, p in enumerate(walk_parsers(parser)):  # every command, those added above and any added later
        _verbosity_args(p, top=i == 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if "--version" in args_in and set(args_in) <= {"--version", "-q", "--quiet", "-v", "--verbose"}:
        # answered before the parser, which imports torch for the model names
        from brainae import __version__

        print(f"brainae {__version__}")
        return 0
    from brainae.progress import NORMAL, QUIET, VERBOSE, set_verbosity

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.quiet and args.verbose:  # one before the command, the other after it
            parser.error("--quiet and --verbose exclude each other; choose one")
    except SystemExit as e:  # --help or --version (0), or a one-line argument error (2), already printed
        return int(e.code or 0)
    if args.quiet:
        args.no_progress = True  # the commands' own switch for bars, progress lines and sweeps' trial lines
    previous = set_verbosity(QUIET if args.quiet else VERBOSE if args.verbose else NORMAL)
    try:
        args.func(args)
    except BrainaeError as e:
        print(f"brainae: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused: full disk, read-only mount, permissions, a vanished file
        where = f" {e.filename}" if e.filename else ""
        what = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or type(e).__name__)
        print(f"brainae: error: cannot write or read{where}: {what}; earlier outputs are left as they were",
              file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "alloc" not in str(e) and "out of memory" not in str(e):
            raise
        print("brainae: error: out of memory; use a smaller --batch-size, --latent-dim, --image-size or model.channels",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brainae: interrupted; completed epochs are in checkpoints/last.ckpt (continue with --resume)", file=sys.stderr)
        return 130
    finally:
        set_verbosity(previous)  # main() called in-process (tests, notebooks) leaves no trace
    return 0


if __name__ == "__main__":
    sys.exit(main())
