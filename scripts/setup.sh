#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: the Debian packages, then the project's own
# virtual environment (.venv) holding the Python packages (Debian's python3 is "externally
# managed", PEP 668: it refuses `pip install` outside a virtual environment).
# Used by the README's two commands and by CI. $PYTHON: the Python that makes the venv
# (default: python3); $AVSTUDIO_VENV: where the venv goes (default: .venv);
# AVSTUDIO_REINSTALL=1: install the Python packages again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
PKGS="python3 python3-venv libportaudio2 xvfb xauth libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 \
libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
libxcb-shape0 libdbus-1-3 libfontconfig1 libfluidsynth3 timgm6mb-soundfont \
qabcs-data mate-backgrounds lomiri-wallpapers-16.04 btanks-data etw-data gnome-shell-pomodoro-data"
# the last six: the photographic world's media (pictures with their recordings, photographs,
# ambient recordings; see avstudio/data/photo_bank.py and docs/ground_truth.md)
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "[setup] installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

VENV=${AVSTUDIO_VENV:-.venv}
PY="$VENV/bin/python"
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 10)' >/dev/null 2>&1; then
  echo "[setup] making the virtual environment $VENV"
  rm -rf "$VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
# install again when pyproject.toml changed, the checkout moved or a package is missing
stamp="$VENV/.avstudio-setup"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(pwd)"
if [ "${AVSTUDIO_REINSTALL:-0}" = 1 ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
   || ! "$PY" -c "import avstudio, torch, torchaudio, PySide6, pyqtgraph, av, pytest, pytestqt" >/dev/null 2>&1; then
  echo "[setup] installing Python packages into $VENV (torch 2.11 is large: a few minutes the first time)"
  "$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi
echo "[setup] done ($VENV)"
