#!/usr/bin/env bash
# Set up .venv, lint, and run the test suite (what CI runs).
#   bash scripts/test.sh           every test that can run on this machine
#   bash scripts/test.sh --fast    only the tests not marked slow (pytest -m "not slow")
# Any other argument goes to pytest (a path, -k EXPR, -x, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then fast=1; else args+=("$arg"); fi
done
bash scripts/setup.sh
VPY=.venv/bin/python
"$VPY" -m ruff check src tests
"$VPY" -m ruff format --check src tests
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ "$fast" = 1 ]; then
  exec "$VPY" -m pytest -q -p no:cacheprovider -m "not slow" ${args[@]+"${args[@]}"}
fi
exec "$VPY" -m pytest -q -p no:cacheprovider ${args[@]+"${args[@]}"}
