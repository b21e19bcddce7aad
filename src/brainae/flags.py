"""The shortcut flags: one table of every ``--flag`` that sets a config key.

The CLI makes its argparse options from it (for every command that takes them), ``build_config`` maps
keyword names to dotted keys with it, and ``train --resume`` reads which flags a run may change. A new
setting with a flag is one row here (and its field in ``config.py``).

Help texts may quote preset values as ``{seed:train.epochs}``; the CLI fills them in from the preset files.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flag:
    key: str  # the dotted config key it sets
    help: str
    type: str = "text"  # how the CLI reads it: text, int, float, count (>= 0), positive (>= 1), positive_float, image_size, levels
    choices: tuple = ()
    metavar: str | None = None
    switch: bool = False  # an on flag (store_true); absent leaves the config's value
    group: str = "main"  # where --help lists it: main, architecture, data
    resumable: bool = False  # train --resume may change it; the rest stays the run's own
    cli: bool = True  # False: a keyword of build_config only


FLAGS: dict[str, Flag] = {
    "epochs": Flag("train.epochs", "training epochs (default: the preset's, seed {seed:train.epochs}, quick "
                   "{quick:train.epochs})", "positive", resumable=True),
    "batch_size": Flag("train.batch_size", "images per training batch (default 16, the study's)", "positive",
                       resumable=True),
    "lr": Flag("train.lr", "learning rate (default: the preset's; seed: AE {seed:train.lr}, VAE {seed:train.lr:vae} "
               "as in the study; quick: AE {quick:train.lr}, VAE {quick:train.lr:vae})", "positive_float", resumable=True),
    "latent_dim": Flag("model.latent_dim", "size of the code (default 512; the study tried 512, 1024 and 2048)", "positive"),
    "limit": Flag("data.limit", "at most N training images (val/test shrink in proportion); 0 = all (default: the "
                  "preset's, seed {seed:data.limit}, quick {quick:data.limit})", "count"),
    "image_size": Flag("data.image_size", "square size images are resized to (default: the preset's, seed "
                       "{seed:data.image_size}, quick {quick:data.image_size})", "image_size"),
    "seed": Flag("train.seed", "training seed (default 0)", "count", resumable=True),
    "precision": Flag("train.precision", "number format: auto (default) trains in bf16-mixed where the CPU (AVX512-BF16, "
                      "AMX) or GPU computes bf16 natively and in 32 elsewhere, where a CPU would emulate bf16 many times slower "
                      "(a warning says so); weights and metrics stay float32",
                      choices=("auto", "32", "bf16-mixed", "16-mixed"), resumable=True),
    "accelerator": Flag("train.accelerator", "device (default auto)", choices=("auto", "cpu", "cuda", "mps"),
                        resumable=True),
    "devices": Flag("train.devices", "number of GPUs (or CPU processes); more than one trains with DDP (default 1)",
                    "positive", resumable=True),
    "cuda_graphs": Flag("train.cuda_graphs", "the GPU fast path: each batch's forward and backward replayed as one "
                        "CUDA graph, 16 steps per Lightning batch, checkpoints at most every 30 s; on, auto (on wherever "
                        "it applies) or off (the default until a GPU run has checked it; see docs/speed.md)",
                        choices=("off", "on", "auto")),
    "compile": Flag("train.compile", "torch.compile the network, with CUDA graphs on a GPU (small batches wait on kernel "
                    "launches there); the first epoch also compiles, so it pays only on longer runs; off by default",
                    switch=True),
    "dedupe": Flag("data.dedupe", "drop duplicate images within a split (copies across splits are grouped anyway); off "
                   "by default", switch=True),
    "noise": Flag("train.noise", "train as a denoiser: noisy input, clean target, noise drawn afresh per batch "
                  "(gaussian:0.3, rician:0.1, salt_pepper:0.05, poisson:0.1; several levels, e.g. gaussian:0.1,0.2,0.3, "
                  "give each image a random one); default: no noise, but gaussian:0.3 for --model dae", metavar="SPEC"),
    "normal_only": Flag("train.normal_only", "train and validate on this class only (e.g. no_tumor), for anomaly "
                        "detection; test split unchanged (default: every class)", metavar="CLASS"),
    "skips": Flag("model.skips", "skipae: encoder levels whose features bypass the bottleneck, e.g. 0,1 (0 = finest); "
                  "'' for none (default: none)", "levels", metavar="LEVELS", group="architecture"),
    "residual_output": Flag("model.residual_output", "denoisers: predict the noise and subtract it from the input "
                            "(output = input - noise)", switch=True, group="architecture"),
    "loss": Flag("train.loss", "mse | l1 | bce | ssim | ms_ssim | mixed (0.16*l1+0.84*ms_ssim) | psnr (minus the mean "
                 "PSNR per image: blind denoisers) | a weighted mix like 0.2*l1+0.8*ssim; default: the model's own (AE "
                 "mse, VAE bce+kl)", metavar="NAME", group="architecture"),
    "augment": Flag("train.augment", "on-the-fly training augmentation: flip,affine,intensity or all (default: none)",
                    metavar="KINDS", group="architecture"),
    "optimizer": Flag("train.optimizer", "adamw decouples --set train.weight_decay from the gradient (default adam)",
                      choices=("adam", "adamw"), group="architecture"),
    "schedule": Flag("train.schedule", "learning-rate schedule, stepped per batch (default none)",
                     choices=("none", "cosine", "onecycle"), group="architecture"),
    "early_stopping": Flag("train.early_stopping", "stop after PATIENCE epochs without a better validation loss "
                           "(default 0 = off)", "count", metavar="PATIENCE", group="architecture"),
    "ema": Flag("train.ema", "keep an exponential moving average of the weights (e.g. 0.999); validation and "
                "checkpoints use it (default 0 = off)", "float", metavar="DECAY", group="architecture"),
    "likelihood": Flag("model.likelihood", "VAE decoder: bernoulli (BCE, the study's; the default) or gaussian with its "
                       "variance fitted to the batch's error, which weighs reconstruction against the KL term in the "
                       "images' own error scale", choices=("bernoulli", "gaussian"), group="architecture"),
    "prior_components": Flag("model.prior_components", "VAE: after training, fit K Gaussians to the training codes "
                             "(prior.pt) and sample from them instead of N(0, I), which the codes never fill (default "
                             "30, at most a tenth of the training images; 0 = off)", "count", metavar="K",
                             group="architecture"),
    "logger": Flag("train.logger", "where the run also logs its metrics, inside the run folder: csv (history.csv only; "
                   "it is written with every logger), tensorboard, mlflow (a SQLite store) or wandb (offline unless "
                   "WANDB_MODE says otherwise); the last three need pip install 'brainae[NAME]' (default csv)",
                   choices=("csv", "tensorboard", "mlflow", "wandb"), resumable=True),
    "group_by": Flag("data.group_by", "image folders: a regular expression on file names whose match (or first group) "
                     "is a patient id, e.g. '^(P\\d+)_'; files sharing an id stay in one split (default: none; volumes "
                     "and copies of one image are grouped regardless)", metavar="REGEX", group="data"),
    "keep_duplicates": Flag("data.keep_duplicates", "split copies of one image independently and keep training copies "
                            "of a given test split's images (the old, leaking behaviour; for measuring the leak)",
                            switch=True, group="data"),
    "modality": Flag("data.modality", "NIfTI subjects: the image to use (t1, t1ce, t2, flair, ...; default t1, else the "
                     "first found); a comma list such as t1,flair stacks them as input channels. Masks (seg, mask, "
                     "label, dseg) are never images: they label each slice tumor / no_tumor", metavar="NAME[,NAME]",
                     group="data"),
    "slices": Flag("data.slices", "NIfTI: which non-empty slices of each volume: A:B (indices), 0.6 (the central 60%) "
                   "or 0.2:0.8 (default: all)", metavar="RANGE", group="data"),
    "crop_foreground": Flag("data.crop_foreground", "NIfTI: crop each scan to its head before resizing", switch=True,
                            group="data"),
    "axis": Flag("data.nifti_axis", "NIfTI: slicing axis, 0 sagittal, 1 coronal, 2 axial (default)", "int",
                 choices=(0, 1, 2), group="data"),
    "data": Flag("data.spec", "the data spec (the CLI's --data)", cli=False),
    "keep_aspect": Flag("data.keep_aspect", "pad to a square instead of stretching", cli=False),
}


def flat_keys() -> dict[str, str]:
    """Keyword name -> dotted config key, for ``build_config(**flat)``."""
    return {name: f.key for name, f in FLAGS.items()}


def resumable() -> list[str]:
    """The flags ``train --resume`` applies to a run's own config."""
    return [name for name, f in FLAGS.items() if f.resumable]
