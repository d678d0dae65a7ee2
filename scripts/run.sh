#!/usr/bin/env bash
# Install everything (Debian packages + the project's .venv, idempotent) and open the app on the
# demo clip. Without a display, the window opens on a virtual screen (Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${AVSTUDIO_VENV:-.venv}/bin/python"
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "[run] no display: starting the app on a virtual screen (xvfb-run)"
  exec xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" main.py "$@"
fi
exec "$PY" main.py "$@"
