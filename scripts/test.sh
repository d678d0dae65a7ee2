#!/usr/bin/env bash
# Install everything (Debian packages + the project's .venv, idempotent) and run the test suite
# (the linters run inside it: tests/test_lint.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
exec "${AVSTUDIO_VENV:-.venv}/bin/python" -m pytest -q -ra "$@"
