#!/usr/bin/env bash
# Set up and run the app: virtual environment, packages, demo models (first run only), server.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
.venv/bin/python -m training.demo          # builds models/demo/* once; real models in models/<task>/ win
exec .venv/bin/python app.py "$@"
