#!/usr/bin/env bash
# Check that pyproject's lower bounds are true: install every direct dependency at the lowest version
# pyproject allows (">=X" becomes "==X"; what they pull in resolves as usual), then import everything
# brainae imports and run the tests.
#
#   bash scripts/check_lowest_deps.sh                 # all fast tests (about as long as the normal run)
#   bash scripts/check_lowest_deps.sh tests/test_io.py -k umask   # any pytest arguments instead
#
# torch stays at the build scripts/setup.sh pins (a lower torch would be a multi-GB download here), so
# torch's own lower bound is that pin. The venv (Python 3.11+, for tomllib) goes to $LOWEST_VENV
# (default /tmp/brainae-lowest) and is reused: a rerun only reinstalls what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_PROGRESS_BAR=off PIP_DISABLE_PIP_VERSION_CHECK=1
VENV=${LOWEST_VENV:-/tmp/brainae-lowest}
PY=${PYTHON:-python3}
TORCH=$(grep -oE 'torch==[0-9][0-9a-z.+]*' scripts/setup.sh | head -1)
[ -n "$TORCH" ] || { echo "no torch==X pin found in scripts/setup.sh" >&2; exit 1; }

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pins="$VENV/lowest-constraints.txt"
# pyproject -> one "name==lowest" line per direct dependency (runtime and the test extra)
"$VENV/bin/python" - "$TORCH" >"$pins" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = project["dependencies"] + project["optional-dependencies"]["test"]
print(sys.argv[1])  # torch: the tested build, never a download
for req in reqs:
    name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", req).groups()
    if name == "torch":
        continue
    low = re.search(r">=\s*([^,;\s]+)", spec)
    if not low:
        sys.exit(f"pyproject: '{req}' has no lower bound (name>=X); give it one")
    print(f"{name}=={low.group(1)}")
EOF
echo "lowest versions:"; sed 's/^/  /' "$pins"
"$VENV/bin/python" -m pip install -q "$TORCH"
"$VENV/bin/python" -m pip install -q -c "$pins" -e ".[test]"
"$VENV/bin/python" -m pip check
# pytest.importorskip would turn a broken import into a skip: import every third-party module first
"$VENV/bin/python" - <<'EOF'
import importlib, importlib.metadata as md, re
mods = ["torch", "lightning", "torchmetrics", "numpy", "scipy.ndimage", "scipy.sparse.csgraph", "PIL.Image",
        "skimage.restoration", "skimage.metrics", "datasets", "nibabel", "matplotlib.figure", "jinja2", "yaml",
        "tqdm.auto", "optuna.storages.journal", "sqlalchemy.exc", "pywt", "wandb", "safetensors.torch",
        "onnx", "onnxscript", "onnxruntime", "brainae.cli", "brainae.export",
        "brainae.training.train", "brainae.sweeps.runner", "brainae.data.inspect", "brainae.study"]
for m in mods:
    importlib.import_module(m)
names = [re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in md.requires("brainae") if "extra ==" not in r]
print("imports fine with " + ", ".join(f"{n} {md.version(n)}" for n in names))
EOF
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
