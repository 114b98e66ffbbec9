#!/usr/bin/env bash
# Create .venv with idfcompress (editable) plus the given extras, and the CPU build of
# PyTorch when an extra needs it (flow, test, train).
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh test,bench
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-bench}
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
case ",${extras}," in
*,flow,* | *,test,* | *,train,*) .venv/bin/python -m pip install -q "torch==2.13.0" ;;
esac
.venv/bin/python -m pip install -q -e ".[${extras}]"
