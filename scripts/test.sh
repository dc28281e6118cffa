#!/usr/bin/env bash
# Set up and run every test: virtual environment, packages, Debian's chromium and the real photos that
# Debian's darknet and opencv-doc ship (tests read them), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements-dev.txt
missing=""
command -v chromium >/dev/null || missing="$missing chromium"
[ -f /usr/share/darknet/data/dog.jpg ] || missing="$missing darknet"
[ -f /usr/share/doc/opencv-doc/examples/data/messi5.jpg ] || missing="$missing opencv-doc"
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends $missing
fi
# Two workers, each file in one of them (its module fixtures are built once); `-n 0` runs in one process.
# --no-loadscope-reorder hands the files out in tests/conftest.py's order, the longest first (pytest-xdist
# would otherwise sort them by their number of tests, and a long file of few tests could run alone at the end).
exec .venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder "$@"
