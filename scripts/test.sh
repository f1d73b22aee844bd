#!/usr/bin/env bash
# Install everything the tests need (first time) and run the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
exec .venv/bin/python -m pytest "$@"
