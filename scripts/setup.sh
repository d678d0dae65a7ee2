#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages + the Python package.
# Used by the README's two commands and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
PKGS="libportaudio2 xvfb xauth libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 \
libxcb-keysyms1 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 \
libdbus-1-3 libfontconfig1 libfluidsynth3 timgm6mb-soundfont"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "[setup] installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
PY=${PYTHON:-python3}
if ! $PY -c "import avstudio, torch, torchaudio, PySide6, pyqtgraph, av, pytest, pytestqt" >/dev/null 2>&1 \
   || [ "${AVSTUDIO_REINSTALL:-0}" = 1 ]; then
  echo "[setup] installing Python packages (torch 2.11 is large: a few minutes the first time)"
  $PY -m pip install -q --disable-pip-version-check -e ".[test]"
else
  $PY -m pip install -q --disable-pip-version-check --no-deps -e . >/dev/null
fi
echo "[setup] done"
