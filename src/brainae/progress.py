"""How brainae reports progress: bars at a terminal, plain lines in a log, nothing when quiet.

Bars and per-epoch lines go to stderr, so that stdout holds the results (tables, "written: ..."
lines) and can be piped or parsed. A bar redraws itself with carriage returns many times a second: at a terminal
that is one live line, in a log file or CI output it is kilobytes of noise per epoch. So bars are
drawn only when stderr is a terminal; elsewhere the work reports one line per epoch instead.

The verbosity is process-wide (set once by the command line's --quiet / --verbose), like a logging
level: the library functions that draw bars are called from many places and need not pass it along.
"""
from __future__ import annotations

import os
import sys
from typing import Iterable, Optional

from tqdm.auto import tqdm

QUIET, NORMAL, VERBOSE = -1, 0, 1
_level = NORMAL


def set_verbosity(level: int) -> int:
    """Set QUIET, NORMAL or VERBOSE for this process; returns the previous level (to restore it)."""
    global _level
    previous, _level = _level, level
    return previous


def quiet() -> bool:
    return _level <= QUIET


def verbose() -> bool:
    return _level >= VERBOSE


def bars() -> bool:
    """True where progress bars help: not quiet, and stderr is a terminal.

    TQDM_DISABLE (tqdm's own switch) is honoured too: Lightning constructs its bars with an explicit
    ``disable=``, which tqdm's environment defaults never override.
    """
    if quiet() or os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def bar(iterable: Iterable, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar over ``iterable`` on stderr, drawn only when ``enabled`` and ``bars()``.

    Example:
        >>> sum(bar(range(3), desc="counting"))
        3
    """
    return tqdm(iterable, file=sys.stderr, disable=not (enabled and bars()), **kwargs)


def line(message: str, enabled: bool = True) -> None:
    """One progress line on stderr, unless quiet (or ``enabled`` is False)."""
    if enabled and not quiet():
        print(message, file=sys.stderr, flush=True)


def format_epoch(row: dict, epochs: Optional[int] = None) -> str:
    """The line printed per epoch where no bar is drawn.

    Example:
        >>> format_epoch({"epoch": 3, "train_loss": 0.0123, "val_loss": 0.0131, "val_psnr": 27.04, "seconds": 12.3}, 8)
        'epoch 3/8  train_loss 0.0123  val_loss 0.0131  val_psnr 27.04  12.3 s'
    """
    parts = [f"epoch {int(row['epoch'])}" + (f"/{epochs}" if epochs and epochs > 0 else "")]
    for key, form in (("train_loss", ".4g"), ("val_loss", ".4g"), ("val_psnr", ".2f")):
        if row.get(key) is not None:  # NaN stays visible: it is how a diverged epoch shows
            parts.append(f"{key} {row[key]:{form}}")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)
