#!/usr/bin/env bash
# Install (first time) and start the studio at http://127.0.0.1:7860 on the embedded model, offline, on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
