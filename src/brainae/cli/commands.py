"""The commands: each takes the parsed arguments, calls the library and prints what it did."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from brainae.cli.options import DATA_FLAGS
from brainae.errors import BrainaeError


def _flat(args: argparse.Namespace) -> dict:
    """The shortcut flags given on the command line (None where absent), for ``build_config(**flat)``."""
    from brainae.flags import FLAGS

    return {name: getattr(args, name, None) for name, f in FLAGS.items() if f.cli}


def _data_flags(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k, None) for k in DATA_FLAGS}


def cmd_train(args: argparse.Namespace) -> None:
    from brainae.config import apply_dict, apply_overrides, build_config, validate
    from brainae.training.train import train

    if args.resume and (Path(args.out) / "config.yaml").is_file():
        from brainae.training.run import run_config

        cfg = run_config(args.out)  # continue the run as it was configured
        from brainae.flags import FLAGS, resumable

        given = {k: v for k, v in _flat(args).items() if v is not None and k in resumable()}
        apply_dict(cfg, {"train": {FLAGS[k].key.split(".", 1)[1]: v for k, v in given.items()}})  # all train.*
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
    print(f"trained {cfg.model.name} for {result['epochs']} epochs ({epoch_speed(result, cfg.train.precision)}): "
          f"best validation loss {result['best_val_loss']:.5g} at epoch {result['best_epoch']}; run folder {args.out}")


def epoch_speed(metrics: dict, precision: str) -> str:
    """'12.3 s an epoch, 163 training images/s, precision 32': what a run's speed was and what set it. An
    epoch's seconds include its validation pass, so the images/s are of whole epochs.

    Example:
        >>> epoch_speed({"seconds_per_epoch": 12.3, "n_train": 2005}, "bf16-mixed")
        '12.3 s an epoch, 163 training images/s, precision bf16-mixed'
    """
    per_epoch = metrics.get("seconds_per_epoch")
    if not per_epoch:
        return f"precision {precision}"
    return f"{per_epoch:.3g} s an epoch, {metrics['n_train'] / per_epoch:.0f} training images/s, precision {precision}"


def cmd_evaluate(args: argparse.Namespace) -> None:
    from brainae.evaluation.evaluate import evaluate, format_per_class, format_table

    result = evaluate(args.run_dir, data=args.data, split=args.split, progress=not args.no_progress,
                      baseline=args.baseline)
    print(format_table({result["model"]: result, **result.get("baselines", {})}))
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
    from brainae.models import own_options  # importing the models registers them
    from brainae.registry import model_specs

    for spec in model_specs():
        traits = [t for t, on in (("variational", spec.variational), ("skips", spec.takes_skips)) if on]
        traits += [f"plugin: {spec.source}"] if spec.source != "brainae" else []
        print(f"{spec.name:<8} {spec.summary}" + (f" [{', '.join(traits)}]" if traits else ""))
        keys = own_options(spec)
        shared = ",".join(a for a in spec.arg_names if a not in keys)
        wrapped = f" and the keys of the model model.{spec.wraps} names" if spec.wraps else ""
        own = f", model.options.{{{','.join(keys)}}}" if keys else ""
        print(f"{'':<8} reads model.{{{shared}}}{own}{wrapped}")


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
