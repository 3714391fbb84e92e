#!/usr/bin/env bash
# Create .venv (once) and install lavt into it with a CPU torch from PyPI/local wheels.
# Override the torch requirement with LAVT_TORCH (e.g. LAVT_TORCH="torch>=2.6" for a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
if ! "$VPY" -c "import lavt, torch, transformers, pycocotools, pytest, ruff, onnx, onnxruntime, onnxslim, onnxconverter_common" >/dev/null 2>&1; then
  # torch first and pinned, so that nothing pulls a multi-GB CUDA build on a CPU machine
  "$VPY" -m pip install -q "${LAVT_TORCH:-torch==2.13.0}" 2> >(grep -v "^WARNING: Location" >&2)
  "$VPY" -m pip install -q -e ".[dev,onnx]" 2> >(grep -v -e "^WARNING: Location" -e "BuildBackendWarning" -e "return '\\\\n'.join" >&2)
fi
