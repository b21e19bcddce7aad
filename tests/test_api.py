"""The public Python API: `from brainae import ...` names, loaded lazily, and the package's example runs."""
from __future__ import annotations

import doctest
import subprocess
import sys

import pytest

import brainae


def test_package_example_runs(tmp_path, monkeypatch):
    """The usage example in brainae's docstring (build_config -> train -> evaluate -> load_model) as written."""
    monkeypatch.chdir(tmp_path)  # it trains into runs/tiny-ae
    result = doctest.testmod(brainae, optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted >= 7 and result.failed == 0
    assert (tmp_path / "runs" / "tiny-ae" / "weights" / "best.safetensors").is_file()


def test_import_brainae_loads_neither_torch_nor_lightning():
    code = "import sys, brainae; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_resolves_to_the_library_function():
    from brainae.config import build_config
    from brainae.training.run import load_model
    from brainae.training.train import train

    for name in brainae.__all__:
        assert getattr(brainae, name) is not None, name
    assert brainae.train is train and brainae.build_config is build_config and brainae.load_model is load_model
    assert {"ae", "vae"} <= set(brainae.list_models())
    assert set(brainae.__all__) <= set(dir(brainae))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        brainae.nope  # noqa: B018
