#!/usr/bin/env bash
# Create .venv and install brainae with its test tools. torch is pinned to the tested CPU build here;
# pyproject keeps a range so other machines (CUDA, MPS) can bring their own build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
echo "brainae installed in .venv (activate with: . .venv/bin/activate)"
