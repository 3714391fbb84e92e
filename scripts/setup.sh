#!/usr/bin/env bash
# Create .venv (once) and install lavt into it with a CPU torch from PyPI/local wheels.
# Override the torch requirement with LAVT_TORCH (e.g. LAVT_TORCH="torch>=2.6" for a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
if ! "$VPY" -c "import lavt, torch, transformers, pycocotools, pytest, ruff, filelock, fastapi, uvicorn, multipart, prometheus_client, httpx, playwright, schemathesis, onnx, onnxruntime, onnxslim, onnxconverter_common, huggingface_hub, supervision, h5py, av, build, setuptools" >/dev/null 2>&1; then
  # torch first and pinned, so that nothing pulls a multi-GB CUDA build on a CPU machine
  "$VPY" -m pip install -q "${LAVT_TORCH:-torch==2.13.0}" 2> >(grep -v "^WARNING: Location" >&2)
  "$VPY" -m pip install -q -e ".[dev,serve,onnx,hub,supervision,video]" 2> >(grep -v -e "^WARNING: Location" -e "BuildBackendWarning" -e "return '\\\\n'.join" >&2)
fi
# The browser test drives the system Chromium (Playwright's own download cannot work here).
# Installed through apt only in CI or when asked (LAVT_INSTALL_CHROMIUM=1), as root or
# through password-less sudo.
if [ ! -x /usr/bin/chromium ] && { [ "${CI:-}" = "true" ] || [ "${LAVT_INSTALL_CHROMIUM:-}" = "1" ]; }; then
  SUDO=""
  [ "$(id -u)" = "0" ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium >/dev/null
  else
    echo "setup.sh: /usr/bin/chromium missing; install it with: sudo apt-get install chromium" >&2
  fi
fi
