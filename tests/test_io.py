"""brainae.io: written files get the mode a plain file would (umask), and a full disk is one clear
error that leaves the previous file intact and no temporary file behind; injected and on a real tmpfs."""
from __future__ import annotations

import doctest
import errno
import os
import pickle
import shutil
import stat
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import brainae.io as bio
from brainae.cli import main
from brainae.config import DataConfig
from brainae.data.load import load_data
from brainae.errors import BrainaeError
from brainae.io import DiskFullError, atomic_path, atomic_write_bytes, atomic_write_text, disk_full_cause, write_json


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_disk_full(exc: BaseException, path: Path, code: int = errno.ENOSPC) -> None:
    assert isinstance(exc, DiskFullError) and isinstance(exc, BrainaeError) and isinstance(exc, OSError)
    assert exc.errno == code and exc.filename == str(path)
    msg = str(exc)
    assert "\n" not in msg and str(path) in msg and "the disk is full" in msg


# ---------------------------------------------------------------- file modes


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_new_files_get_the_mode_of_a_plain_file(tmp_path, mask):
    with umask(mask):
        (tmp_path / "plain.txt").write_text("x")  # what any other program would create here
        write_json(tmp_path / "metrics.json", {"a": np.float32(1.5)})
        atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
        atomic_write_bytes(tmp_path / "fig.png", b"\x89PNG")
        with atomic_path(tmp_path / "cache.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, x=np.arange(3))
        with atomic_path(tmp_path / "prior.pt") as tmp:
            torch.save({"w": torch.ones(2)}, tmp)  # a writer that reopens the temp file by name
    want = 0o666 & ~mask
    assert mode(tmp_path / "plain.txt") == want
    for name in ("metrics.json", "config.yaml", "fig.png", "cache.npz", "prior.pt"):
        assert mode(tmp_path / name) == want, name
    assert files(tmp_path) == ["cache.npz", "config.yaml", "fig.png", "metrics.json", "plain.txt", "prior.pt"]
    assert (tmp_path / "metrics.json").read_text() == '{\n  "a": 1.5\n}\n'
    with np.load(tmp_path / "cache.npz") as z:
        assert z["x"].tolist() == [0, 1, 2]


def test_a_replaced_file_keeps_its_mode_as_with_open(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("old\n")
    path.chmod(0o640)  # the user's choice, which open(path, "w") would keep too
    with umask(0o077):
        atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n" and mode(path) == 0o640
    path.chmod(0o604)
    with umask(0o022):
        atomic_write_text(path, "newer\n")
    assert path.read_text() == "newer\n" and mode(path) == 0o604 and files(tmp_path) == ["history.csv"]


def test_the_preprocessing_cache_and_the_report_follow_the_umask(image_folder, cache_env, tmp_path, monkeypatch):
    from brainae.report import build

    root = image_folder(None, per_class=3)
    monkeypatch.setattr(build, "render_report", lambda study: "<html></html>")
    with umask(0o027):
        load_data(DataConfig(spec=str(root), image_size=32), progress=False)
        build.write_report(object(), tmp_path / "study" / "report.html")
    (cache,) = cache_env.glob("*.npz")
    assert mode(cache) == 0o640 and mode(tmp_path / "study" / "report.html") == 0o640


def _train_under_umask(out: Path, mask: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "brainae", "train", "--model", "ae", "--data", "phantom:40", "--epochs", "1",
           "--batch-size", "16", "--set", "model.channels=[8,16]", "--set", "model.latent_dim=8",
           "--set", "data.image_size=32", "--accelerator", "cpu", "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.umask(mask))


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_a_training_run_follows_the_umask(tmp_path, mask):
    out = tmp_path / "run"
    proc = _train_under_umask(out, mask)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = ["config.yaml", "data.json", "history.csv", "metrics.json", "env.json"]
    assert {p: oct(mode(out / p)) for p in written} == {p: oct(0o666 & ~mask) for p in written}
    # Lightning writes the checkpoints: through fsspec, which applies the umask from 2025.5.0 on
    # (before, they stay at mkstemp's 0600); either way they are complete and loadable
    for ckpt in ("best.ckpt", "last.ckpt"):
        assert "state_dict" in torch.load(out / "checkpoints" / ckpt, map_location="cpu", weights_only=True)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- full disk, injected


class _FillsUp:
    """A file object whose write puts half the data on disk, then fails as a full disk does."""

    def __init__(self, real, code: int):
        self.real, self.code = real, code

    def write(self, data):
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        raise OSError(self.code, os.strerror(self.code))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def _fill_up_in_io(monkeypatch, code: int = errno.ENOSPC) -> None:
    """Make every write of brainae.io's helpers fail like a full disk, after writing half."""
    monkeypatch.setattr(bio, "open", lambda p, m="r", *a, **kw: _FillsUp(open(p, m, *a, **kw), code), raising=False)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize("write", [
    lambda p: write_json(p, {"epoch": 2, "x": list(range(200))}),
    lambda p: atomic_write_text(p, "epoch,val_loss\n" * 200),
    lambda p: atomic_write_bytes(p, bytes(4000)),
], ids=["json", "text", "bytes"])
def test_disk_full_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch, code, write):
    path = tmp_path / "metrics.json"
    path.write_bytes(b"previous")
    _fill_up_in_io(monkeypatch, code)
    with pytest.raises(DiskFullError) as e:
        write(path)
    assert_disk_full(e.value, path, code)
    assert ("quota" in str(e.value)) == (code == errno.EDQUOT)
    assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == code
    assert path.read_bytes() == b"previous" and files(tmp_path) == ["metrics.json"]


def test_disk_full_for_a_new_file_leaves_nothing(tmp_path, monkeypatch):
    _fill_up_in_io(monkeypatch)
    with pytest.raises(DiskFullError):
        atomic_write_text(tmp_path / "new" / "report.html", "<html>" * 1000)
    assert files(tmp_path / "new") == []


def test_disk_full_inside_a_block_and_through_a_wrapping_library(tmp_path):
    path = tmp_path / "images.npz"
    path.write_bytes(b"previous")
    with pytest.raises(DiskFullError) as e:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert_disk_full(e.value, path)
    with pytest.raises(DiskFullError) as e:
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            try:
                raise OSError(errno.EDQUOT, "Disk quota exceeded")
            except OSError as low:
                raise RuntimeError("writer failed") from low
    assert_disk_full(e.value, path, errno.EDQUOT)
    assert path.read_bytes() == b"previous" and files(tmp_path) == ["images.npz"]


def test_nested_atomic_writes_report_the_inner_file(tmp_path, monkeypatch):
    _fill_up_in_io(monkeypatch)
    with pytest.raises(DiskFullError) as e:
        with atomic_path(tmp_path / "outer.txt") as tmp:
            tmp.write_text("outer")
            atomic_write_text(tmp_path / "inner.txt", "inner")
    assert_disk_full(e.value, tmp_path / "inner.txt")
    assert files(tmp_path) == []


def test_disk_full_error_pickles_and_docstring_examples_run(tmp_path):
    e = pickle.loads(pickle.dumps(DiskFullError(tmp_path / "a.json", errno.EDQUOT)))
    assert_disk_full(e, tmp_path / "a.json", errno.EDQUOT)
    result = doctest.testmod(bio)
    assert result.attempted >= 1 and result.failed == 0


def test_other_write_errors_stay_what_they_are(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("previous")
    with pytest.raises(OSError) as e:
        with atomic_path(path) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.EIO, "Input/output error")
    assert type(e.value) is OSError and e.value.errno == errno.EIO
    with pytest.raises(ValueError):
        with atomic_path(path) as tmp:
            raise ValueError("not a disk problem")
    assert disk_full_cause(ValueError("x")) is None
    assert path.read_text() == "previous" and files(tmp_path) == ["history.csv"]


def test_cli_says_the_disk_is_full_in_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "inspect.json"
    out.write_text('{"previous": true}\n')
    _fill_up_in_io(monkeypatch)
    assert main(["data", "inspect", "phantom:40", "--json", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"brainae: error: cannot write {out}: the disk is full")
    assert out.read_text() == '{"previous": true}\n' and files(tmp_path) == ["inspect.json"]


def test_a_full_disk_costs_the_cache_but_not_the_data_or_the_previous_cache(image_folder, cache_env, monkeypatch):
    root = image_folder(None, per_class=3)
    first = load_data(DataConfig(spec=str(root), image_size=32), progress=False)
    (cache,) = cache_env.glob("*.npz")
    (images,) = cache_env.glob("*.images.npy")
    cache.write_bytes(b"previous, damaged")  # so the next load rebuilds and rewrites it
    images.write_bytes(b"previous images")

    def save_fills_up(f, *arrays, **named):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", save_fills_up)
    monkeypatch.setattr(np, "savez", save_fills_up)
    again = load_data(DataConfig(spec=str(root), image_size=32), progress=False)
    np.testing.assert_array_equal(again.images, first.images)
    assert cache.read_bytes() == b"previous, damaged" and images.read_bytes() == b"previous images"
    assert files(cache_env) == sorted([cache.name, images.name])


def test_the_report_on_a_full_disk_keeps_the_previous_report(tmp_path, monkeypatch):
    from brainae.report import build

    path = tmp_path / "report.html"
    path.write_text("<html>previous</html>")
    monkeypatch.setattr(build, "render_report", lambda study: "<html>" + "x" * 10000)
    _fill_up_in_io(monkeypatch)
    with pytest.raises(DiskFullError) as e:
        build.write_report(object(), path)
    assert_disk_full(e.value, path)
    assert path.read_text() == "<html>previous</html>" and files(tmp_path) == ["report.html"]


# ---------------------------------------------------------------- full disk, for real: a tiny tmpfs


@pytest.fixture
def tiny_fs(tmp_path):
    """A 256 KiB tmpfs mounted at tmp_path/fs (needs root; skipped where mounting is not allowed)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "fs"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", f"brainae-test-{uuid.uuid4().hex[:8]}",
                           str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def test_tmpfs_full_disk_keeps_the_previous_file_and_frees_the_temp(tiny_fs):
    path = tiny_fs / "metrics.json"
    write_json(path, {"epoch": 1})
    free = free_bytes(tiny_fs)
    with pytest.raises(DiskFullError) as e:
        atomic_write_bytes(path, bytes(free + 8192))
    assert_disk_full(e.value, path)
    assert path.read_text() == '{\n  "epoch": 1\n}\n' and files(tiny_fs) == ["metrics.json"]
    assert free_bytes(tiny_fs) == free  # the partial temp file is gone, not just hidden
    write_json(path, {"epoch": 2})  # and the disk still takes what fits
    assert path.read_text() == '{\n  "epoch": 2\n}\n'


def test_tmpfs_torch_save_needs_an_open_file_to_say_disk_full(tiny_fs):
    path = tiny_fs / "prior.pt"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save({"w": torch.ones(4)}, f)
    big = {"w": torch.zeros(free_bytes(tiny_fs) // 4 + 4096)}
    with pytest.raises(DiskFullError) as e:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(big, f)
    assert_disk_full(e.value, path)
    # by name, torch's C++ writer drops the errno: still atomic, but the error is torch's own
    with pytest.raises(RuntimeError) as e:
        with atomic_path(path) as tmp:
            torch.save(big, tmp)
    assert not isinstance(e.value, BrainaeError)
    assert torch.load(path, weights_only=True)["w"].tolist() == [1.0] * 4 and files(tiny_fs) == ["prior.pt"]


def test_tmpfs_full_cache_folder(image_folder, tiny_fs, monkeypatch):
    monkeypatch.setenv("BRAINAE_CACHE", str(tiny_fs))
    root = image_folder(None, per_class=3)
    first = load_data(DataConfig(spec=str(root), image_size=32), progress=False)
    (cache,) = tiny_fs.glob("*.npz")
    (images,) = tiny_fs.glob("*.images.npy")
    cache.write_bytes(b"previous, damaged")
    images.write_bytes(b"previous images")
    with open(tiny_fs / "filler", "wb") as f:  # leave a page or two: less than the cache needs
        f.write(bytes(max(0, free_bytes(tiny_fs) - 8192)))
    again = load_data(DataConfig(spec=str(root), image_size=32), progress=False)
    np.testing.assert_array_equal(again.images, first.images)
    assert cache.read_bytes() == b"previous, damaged" and images.read_bytes() == b"previous images"
    assert files(tiny_fs) == sorted([cache.name, images.name, "filler"])
