"""pyproject declares what brainae imports, nothing it does not, with a lower bound for each; the torch
pin of scripts/setup.sh lies inside pyproject's range (the lowest-versions check is scripts/check_lowest_deps.sh)."""
from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Imported only behind a check that they are installed, with a fallback or a note when absent
OPTIONAL = {
    "sklearn": "fANOVA importances and t-SNE; PED-ANOVA and PCA otherwise",
    "umap": "UMAP panels of `brainae latent`",
    "wandb": "the [wandb] extra: brainae sweep --wandb",
    "onnxruntime": "the [onnx] extra: brainae export --format onnx runs the file to check it",
}


@functools.lru_cache(maxsize=None)
def third_party_imports() -> dict[str, list[str]]:
    """Top-level module -> files of src/brainae that import it (absolute imports, stdlib left out)."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "src" / "brainae").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("brainae", "__future__"):
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


@functools.lru_cache(maxsize=None)
def module_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


def distribution(module: str) -> str:
    dists = module_distributions().get(module)
    assert dists, f"{module} is imported by brainae but not installed here"
    return canonicalize_name(dists[0])


def requirements(names: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, names)}


RUNTIME = requirements(PROJECT["dependencies"])


def test_every_imported_package_is_declared():
    missing = {m: files[:2] for m, files in third_party_imports().items()
               if m not in OPTIONAL and distribution(m) not in RUNTIME}
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_every_declared_package_is_imported():
    imported = {distribution(m) for m in third_party_imports() if m not in OPTIONAL}
    assert set(RUNTIME) - imported == set(), "declared but never imported: drop them"
    assert "optuna-integration" not in RUNTIME


def test_optional_imports_are_optional_extras_or_undeclared():
    extras = {name for reqs in PROJECT["optional-dependencies"].values() for name in requirements(reqs)}
    for module in OPTIONAL:
        assert module in third_party_imports(), f"{module} is no longer imported: drop it from OPTIONAL"
        if module in module_distributions():
            assert distribution(module) not in RUNTIME
    assert "wandb" in extras and "bm3d" in extras  # bm3d is loaded by name (importlib), so no import line


@pytest.mark.parametrize("req", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"])
def test_every_dependency_has_a_lower_bound(req):
    r = Requirement(req)
    lows = [s for s in r.specifier if s.operator == ">="]
    assert len(lows) == 1, f"{req}: give one lower bound (>=X) that scripts/check_lowest_deps.sh can install"
    assert not [s for s in r.specifier if s.operator in ("==", "~=", "===")], f"{req}: ranges only, pins go in setup"


def test_installed_versions_satisfy_pyproject():
    for name, r in RUNTIME.items():
        assert r.specifier.contains(md.version(name), prereleases=True), f"{name} {md.version(name)} outside {r}"


def test_setup_pins_a_torch_inside_the_declared_range():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    pins = re.findall(r"torch==([0-9][0-9a-z.+]*)", setup)
    assert len(set(pins)) == 1, "scripts/setup.sh pins exactly one torch (check_lowest_deps.sh reads it there)"
    torch_req = RUNTIME["torch"]
    assert torch_req.specifier.contains(pins[0])
    assert not torch_req.specifier.contains("3.0"), "keep torch below 3: a major version may break checkpoints"
