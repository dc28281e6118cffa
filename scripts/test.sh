#!/usr/bin/env bash
# Set up and run every test: virtual environment, packages, Debian's chromium, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements-dev.txt
if ! command -v chromium >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q && $sudo apt-get install -y -q chromium
fi
# Two workers, each file in one of them (its module fixtures are built once); `-n 0` runs in one process.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
