"""Atomic writes: a crash, Ctrl-C or a full disk never leaves a half-written checkpoint, cache or report.

Every file goes to a temporary file beside its target and is renamed onto it only once complete, so
readers see the old file or the new one, never a mix. The renamed file gets the permissions a plain
``open(path, "w")`` would give it: the process umask (and a folder's default ACL) for a new file,
the existing file's mode for a replaced one.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from brainae.errors import BrainaeError

_DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


class DiskFullError(BrainaeError, OSError):
    """Writing a file failed because its filesystem is full (ENOSPC) or the user's quota is (EDQUOT).

    The previous version of the file is untouched and no temporary file is left. It is a
    BrainaeError, so the CLI prints one line, and an OSError with the original errno, so code that
    treats a write as optional (the preprocessing cache) goes on without it as for any failed write.
    """

    def __init__(self, path: Path, code: int) -> None:
        super().__init__(f"cannot write {path}: the disk is full ({_DISK_FULL[code]}); "
                         f"free some space on it (or choose another folder) and run again")
        self.errno, self.filename = code, str(path)

    def __str__(self) -> str:  # OSError's would be "[Errno 28] None: 'path'"
        return self.args[0]

    def __reduce__(self):  # survives pickling (multiprocessing) with its message, errno and file
        return type(self), (Path(self.filename), self.errno)


def disk_full_cause(exc: BaseException) -> Optional[int]:
    """ENOSPC or EDQUOT when ``exc`` or an exception it was raised from is a full-disk OSError, else None.

    Libraries that wrap the OSError (and chain it) are seen through; torch.save given a file name
    is not, because its C++ writer drops the errno: give it an open file instead (see atomic_path).

    Example:
        >>> disk_full_cause(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
        True
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return None


def _create_temp(path: Path) -> tuple[Path, int]:
    """Create an empty private temp file beside ``path``; return it and the mode the result should get."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            # 0o666 through the kernel: the mode a new file gets here (umask, or the folder's default ACL)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        try:
            mode = os.fstat(fd).st_mode & 0o777
            try:
                mode = os.stat(path).st_mode & 0o777  # replacing a file keeps its mode, as open(path, "w") does
            except (FileNotFoundError, NotADirectoryError):
                pass
            os.fchmod(fd, 0o600)  # owner-writable while it is written, whatever the umask
        finally:
            os.close(fd)
        return tmp, mode


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The finished file gets the mode a normally written file would (see the module docstring). If the
    disk is full, the block's OSError (or one it chains) becomes :class:`DiskFullError`; in every
    failure the previous ``path`` is intact and the temporary file is removed. Write through an open
    file (``open(tmp, "wb")``) rather than by name: some writers (torch.save) lose the errno otherwise.

    Example:
        >>> with atomic_path("out.npz") as tmp, open(tmp, "wb") as f:  # doctest: +SKIP
        ...     np.savez(f, x=x)
    """
    path = Path(path)
    tmp: Optional[Path] = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, mode = _create_temp(path)
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except DiskFullError:
        raise
    except BaseException as e:
        code = disk_full_cause(e)
        if code is None:
            raise
        raise DiskFullError(path, code) from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: object) -> None:
    """Write ``obj`` as indented JSON atomically; numpy scalars and arrays and paths are converted."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: object) -> object:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
