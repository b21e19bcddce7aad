"""Thin command line: parse arguments, call the library, turn user mistakes into one-line errors.

``options.py`` holds what commands share, ``parser.py`` one function per command, ``commands.py`` what
each command does.
"""
from __future__ import annotations

import errno
import sys

from brainae.cli.commands import _flat  # noqa: F401  (used by tests and the sweep command's help checks)
from brainae.cli.options import walk_parsers  # noqa: F401
from brainae.cli.parser import build_parser
from brainae.errors import BrainaeError


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if "--version" in args_in and set(args_in) <= {"--version", "-q", "--quiet", "-v", "--verbose"}:
        # answered before the parser, which imports torch for the model names
        from brainae import __version__

        print(f"brainae {__version__}")
        if {"-v", "--verbose"} & set(args_in):  # what a bug report needs: torch, CPU, GPUs, the precision auto picks
            from brainae.training.precision import machine_lines

            print("\n".join(machine_lines()))
        return 0
    from brainae import load_checks
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
    load_checks()  # config checks of the spec parsers, so a bad --noise fails before any work
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
