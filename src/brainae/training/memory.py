"""Keep freed memory in the process on Linux, so a CPU training or inference step does not fault its pages in again.

glibc serves large blocks (its threshold grows to at most 32 MB) with ``mmap`` and hands them back to the
kernel on ``free``; it also trims the heap's free top beyond 128 KB. A training step allocates and frees
the same large tensors every time: the bf16 copies of the linear layers' weights, their gradients,
the activations. Each new block is then zeroed by the kernel page by page, which took about 40% of a
CPU step for the quick preset's network (16384 x 512 linear layers) and about a tenth for the study's
128 px network, whose tensors are smaller (``benchmarks/results/malloc_cpu.md``).

``keep_freed_memory`` makes glibc serve every block from the heap and keep up to ``TRIM_BYTES`` of free
heap: the next step reuses those pages. It changes how much memory the process keeps, not what it
computes. ``train`` calls it, and so does ``map_batches``, the one inference loop of evaluate, denoise and
anomaly (``benchmarks/results/malloc_cpu.md``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's <malloc.h>
TRIM_BYTES = 256 << 20
TOP_PAD_BYTES = 64 << 20


@lru_cache(maxsize=1)
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:  # musl and other C libraries: nothing to tune
        return None


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Tune glibc's allocator once per process; True where it took effect (Linux with glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in
               ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_BYTES), (M_TOP_PAD, TOP_PAD_BYTES)))
