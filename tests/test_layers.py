"""The package's layers hold: a module imports its own layer or lower ones, never a higher one.

    foundation (errors, io, progress, registry, flags, config, the package's __version__)
      -> data -> models -> training -> evaluation, visualization, export -> sweeps -> analyses
      -> report -> study -> cli

The study is above the report: it computes everything (brainae.analyses among it), then asks the
report, which only draws, to render it.

Every import counts, those inside functions too: a lazy import is still a dependency. The imports
that break the order today are listed in KNOWN_UPWARD, each with what should replace it; a new one
fails this test, and so does an entry that no longer exists (the list only shrinks).
"""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "brainae"
RANK = {"errors": 0, "io": 0, "progress": 0, "registry": 0, "flags": 0, "config": 0,
        "data": 1, "models": 2, "training": 3, "evaluation": 4, "visualization": 4, "export": 4,
        "sweeps": 5, "analyses": 6, "report": 7, "study": 8, "cli": 9, "__main__": 9}

# (importing module, imported module): the debt of issue 16, to be paid off, not added to
KNOWN_UPWARD: set[tuple[str, str]] = set()


def rank(module: str):
    parts = module.split(".")
    if parts[0] != "brainae":
        return None
    return 0 if len(parts) == 1 else RANK.get(parts[1])  # the package root: its __version__


def imports() -> set[tuple[str, str]]:
    found = set()
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add((module, node.module))
            elif isinstance(node, ast.Import):
                found.update((module, alias.name) for alias in node.names)
    return found


def upward() -> set[tuple[str, str]]:
    out = set()
    for importer, imported in imports():
        mine, theirs = rank(importer), rank(imported)
        if importer != "brainae" and mine is not None and theirs is not None and theirs > mine:
            out.add((importer, imported))
    return out


def test_no_module_imports_a_higher_layer():
    new = upward() - KNOWN_UPWARD
    assert not new, "upward imports (a lower layer must not depend on a higher one): " + ", ".join(
        f"{a} -> {b}" for a, b in sorted(new))


def test_the_list_of_known_upward_imports_only_shrinks():
    gone = KNOWN_UPWARD - upward()
    assert not gone, "no longer imported, remove from KNOWN_UPWARD: " + ", ".join(f"{a} -> {b}" for a, b in sorted(gone))


def test_every_package_has_a_layer():
    top = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
           if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file())) and p.name != "__init__.py"}
    assert top <= set(RANK), f"give these a layer in RANK: {sorted(top - set(RANK))}"


def test_config_checks_come_from_the_registry_and_the_root_loads_them():
    """config.validate runs the spec parsers their own layers register; the package root's build_config
    has them all, so a bad spec fails there (in a fresh interpreter: nothing else imported first)."""
    import subprocess
    import sys

    code = ("import brainae\nfrom brainae.registry import config_checks\n"
            "assert not config_checks(), 'importing the root must not load the parsers'\n"
            "for flat in ({'noise': 'gaussian'}, {'loss': 'nope'}, {'augment': 'spin'}, {'slices': 'half'}):\n"
            "    try:\n"
            "        brainae.build_config('ae', **flat)\n"
            "    except brainae.BrainaeError as e:\n"
            "        print(sorted(flat)[0], 'refused:', str(e).splitlines()[0])\n"
            "print(sorted(config_checks()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.count("refused:") == 4, out
    assert "['data.slices', 'train.augment', 'train.loss', 'train.noise']" in out


def test_modules_and_functions_stay_short():
    """No module over 400 lines, no function over 80: a file or function past that holds two things."""
    long_modules, long_functions = [], []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 400:
            long_modules.append(path.relative_to(SRC).as_posix())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long_functions.append(f"{path.relative_to(SRC).as_posix()}:{node.name}")
    assert not long_modules and not long_functions, (long_modules, long_functions)
