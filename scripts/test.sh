#!/usr/bin/env bash
# Set up the project (CPU torch from the local wheel when available) and run lint + tests.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first and pinned, so that nothing pulls a multi-GB CUDA build on a CPU machine
# (override with LAVT_TORCH, e.g. LAVT_TORCH="torch>=2.6" on a machine with a GPU)
"$VPY" -m pip install -q "${LAVT_TORCH:-torch==2.13.0}"
"$VPY" -m pip install -q -e ".[dev]"
"$VPY" -m ruff check src tests
"$VPY" -m ruff format --check src tests
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$VPY" -m pytest -q "$@"
