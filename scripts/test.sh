#!/usr/bin/env bash
# Install everything (Debian + Python packages, idempotent) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
python3 -m pytest -q -ra "$@"
