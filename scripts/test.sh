#!/usr/bin/env bash
# Set up .venv and run the linter (ruff, complexity at most 15), the type checker (mypy, on
# the packages without torch code) and the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,bench,train,cluster
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
