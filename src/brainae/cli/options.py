"""What the commands share: the parser class (one-line errors), argument types that refuse bad values
with a reason, and the option groups several commands take (config, data, analysed runs, verbosity)."""
from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import Iterator


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
