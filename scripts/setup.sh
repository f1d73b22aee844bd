#!/usr/bin/env bash
# Install the studio into ./.venv. torch is pinned to the CPU wheel and installed first:
# an unpinned torch makes pip pull a CUDA build with several GB of packages.
# Usage: scripts/setup.sh [--test]   (--test also installs the test tools and Debian's Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The pip installs are skipped when nothing they depend on changed since the last run (a warm start
# then takes a second instead of ten): the stamp is a hash of pyproject.toml and this script, plus the mode.
stamp_file=.venv/.setup-stamp
hash="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
mode="${1:-run}"
have="$(cat "$stamp_file" 2>/dev/null || true)"
if [ "$have" != "$hash $mode" ] && [ "$have" != "$hash --test" ]; then  # a --test install holds a run's needs
  pip install -q torch==2.13.0
  if [ "$mode" = "--test" ]; then
    pip install -q -e ".[test]"
  else
    pip install -q -e .
  fi
  echo "$hash $mode" > "$stamp_file"
fi
if [ "$mode" = "--test" ]; then
  # Debian packages for the browser tests (chromium), the PostgreSQL test (a throwaway local server) and the
  # Ray test (`ip` brings up loopback in the network namespace its cluster runs in; Ray itself is in .[test])
  missing=""
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$missing postgresql"
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
      echo "setup: missing Debian packages:$missing; run: sudo apt-get install$missing (their tests will be skipped)" >&2
    fi
  fi
fi
