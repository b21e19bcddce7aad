"""keep_freed_memory: large tensors come from the heap and their pages stay with the process."""
import subprocess
import sys

import pytest

from brainae.training.memory import _glibc

PRELUDE = """
import ctypes, torch
from brainae.training.memory import _glibc, keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = _glibc()
libc.mallinfo2.restype = MallInfo2
def mapped_after_big_tensor():
    x = torch.ones(40 << 20, dtype=torch.uint8)  # 40 MB: above glibc's largest mmap threshold
    return libc.mallinfo2().hblkhd, x
"""
CHECK = PRELUDE + """
before, x = mapped_after_big_tensor(); del x
assert before >= 40 << 20, before  # glibc's default: its own mapping
assert keep_freed_memory() is True
after, x = mapped_after_big_tensor(); del x
assert after < 40 << 20, after  # now from the heap
kept = libc.mallinfo2().fordblks
assert kept >= 40 << 20, kept  # and still the process's after the free: no page faults next step
print("ok")
"""
INFERENCE = PRELUDE + """
import numpy as np
from brainae.models.ae import ConvAE
from brainae.training.precision import reconstructions
before, x = mapped_after_big_tensor(); del x
assert before >= 40 << 20, before
recon = reconstructions(ConvAE(image_size=32, channels=[4, 8]).eval(), np.zeros((3, 32, 32), np.uint8))
assert recon.shape == (3, 32, 32)
after, x = mapped_after_big_tensor(); del x
assert after < 40 << 20, after  # the inference loop tuned the allocator
print("ok")
"""
NEEDS_MALLINFO2 = pytest.mark.skipif(_glibc() is None or not hasattr(_glibc(), "mallinfo2"), reason="needs Linux with glibc >= 2.33")


def run_fresh(code: str) -> None:
    # a fresh interpreter: the tuning is process-wide and the test needs glibc's defaults first
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@NEEDS_MALLINFO2
def test_big_tensors_come_from_the_heap_and_stay():
    run_fresh(CHECK)


@NEEDS_MALLINFO2
def test_inference_keeps_freed_memory_too():
    run_fresh(INFERENCE)


def test_is_a_no_op_without_glibc(monkeypatch):
    from brainae.training import memory

    memory.keep_freed_memory.cache_clear()
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    try:
        assert memory.keep_freed_memory() is False
    finally:
        memory.keep_freed_memory.cache_clear()
