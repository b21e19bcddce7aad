"""What the commands share: the parser class (one-line errors), argument types that refuse bad values
with a reason, and the option groups several commands take (config, data, analysed runs, verbosity)."""
from __future__ import annotations

import argparse
import functools
import os
import re
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


RUN_DIR_HELP = "a run folder (the --out of 'brainae train')"
RUN_DATA_HELP = ("test images from another dataset (the run's preprocessing is applied; default: the run's own "
                 "test split)")
CONFIG_HELP = "YAML file with model/data/train sections, applied after the preset (default: none)"

# The options several commands declare: (argparse names, keywords). A command adds one with
# ``add_common(p, name, **changes)``, changing only what differs for it (help, metavar, required).
COMMON: dict[str, tuple[tuple[str, ...], dict]] = {
    "run_dir": (("run_dir",), dict(metavar="RUN_DIR", help=RUN_DIR_HELP)),
    "data": (("--data",), dict(metavar="SPEC", help=DATA_HELP)),
    "out": (("--out",), dict(required=True, metavar="DIR", type=_out_dir, help="output folder")),
    "no_progress": (("--no-progress",), dict(action="store_true", help=NO_PROGRESS_HELP)),
    "model": (("--model",), dict(default="ae", help="registered model (see 'brainae models')")),
    "config": (("--config",), dict(metavar="FILE.yaml", help=CONFIG_HELP)),
    "set": (("--set",), dict(dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="any config key, e.g. --set model.channels=[16,32,64,128] --set data.normalize=zscore; "
                                  "'brainae config show' prints them all")),
}


def add_common(p, name: str, **changes) -> None:
    """Add the shared option ``name`` (a row of ``COMMON``) to ``p``, with ``changes`` to its keywords."""
    names, keywords = COMMON[name]
    if name == "model":  # the registered names, read when a parser is built (plugins included)
        from brainae.models import model_names

        keywords = {**keywords, "choices": model_names()}
    p.add_argument(*names, **{**keywords, **changes})


@functools.lru_cache(maxsize=None)  # help texts quote presets dozens of times per parser
def _preset(name: str, key: str, model: str = "ae"):
    """A value of a preset file (e.g. ``_preset("quick", "train.epochs")``), or the config default, for help texts."""
    from brainae.config import Config, load_preset

    section, field = key.split(".")
    return load_preset(name, model).get(section, {}).get(field, getattr(getattr(Config(), section), field))


def _fill(text: str) -> str:
    """A table help text with its ``{preset:key[:model]}`` values filled in, ready for argparse."""
    def value(m: re.Match) -> str:
        v = _preset(m.group(1), m.group(2), m.group(3) or "ae")
        return f"{v:g}" if isinstance(v, float) else str(v)

    return re.sub(r"\{(\w+):([\w.]+)(?::(\w+))?\}", value, text).replace("%", "%%")


def add_flags(p, names) -> None:
    """The argparse options of the shortcut flags ``names`` (rows of ``brainae.flags.FLAGS``)."""
    from brainae.flags import FLAGS

    types = {"text": None, "int": int, "float": float, "count": COUNT, "positive": POSITIVE,
             "positive_float": _positive_float, "image_size": _int_at_least(8), "levels": _levels}
    for name in names:
        f = FLAGS[name]
        kw: dict = {"help": _fill(f.help)}
        if f.switch:
            kw.update(action="store_true", default=None)
        else:
            kw.update({k: v for k, v in (("type", types[f.type]), ("choices", list(f.choices) or None),
                                         ("metavar", f.metavar)) if v is not None})
        p.add_argument("--" + name.replace("_", "-"), **kw)


def flags_in(group: str) -> list[str]:
    from brainae.flags import FLAGS

    return [name for name, f in FLAGS.items() if f.cli and f.group == group]


DATA_FLAGS = tuple(flags_in("data"))
GROUPS = {"architecture": "architecture and training options (defaults: the study's recipe)",
          "data": "splits and volumes (splits never separate a subject, a volume or copies of one image)"}


def _config_args(p: argparse.ArgumentParser, default_preset: str, run: bool = True) -> None:
    """The flags that resolve a config (train, study, config show); run: also those of a command that trains."""
    from brainae.config import preset_names

    add_common(p, "data")
    p.add_argument("--preset", default=default_preset, choices=preset_names(),
                   help=f"seed: the study's best settings ({_preset('seed', 'train.epochs')} epochs at "
                        f"{_preset('seed', 'data.image_size')} px); quick: {_preset('quick', 'train.epochs')} epochs at "
                        f"{_preset('quick', 'data.image_size')} px, minutes on a CPU (default {default_preset})")
    add_common(p, "config")
    add_flags(p, flags_in("main"))
    add_flags(p.add_argument_group(GROUPS["architecture"]), flags_in("architecture"))
    add_common(p, "set")
    if run:
        add_common(p, "no_progress")
    _data_args(p)


def _data_args(p: argparse.ArgumentParser) -> None:
    """How the data is grouped into splits and how NIfTI volumes are sliced: shared by every command that loads data."""
    add_flags(p.add_argument_group(GROUPS["data"]), flags_in("data"))


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
        add_common(p, "run_dir")
    add_common(p, "data", help=RUN_DATA_HELP)
    add_common(p, "out", required=False, help=f"output folder (default: {out_default})")
    add_common(p, "no_progress")


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
