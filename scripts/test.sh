#!/usr/bin/env bash
# Set up .venv, lint, and run the test suite (what CI runs). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VPY=.venv/bin/python
"$VPY" -m ruff check src tests
"$VPY" -m ruff format --check src tests
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$VPY" -m pytest -q -p no:cacheprovider "$@"
