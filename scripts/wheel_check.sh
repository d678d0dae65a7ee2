#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it into a fresh virtual
# environment (no checkout on its path), then from another folder analyse the demo clip with the
# shipped model and open the app offscreen on it (both come from inside the wheel).
# Run after scripts/setup.sh (CI: .ci/run). Downloads are served from pip's cache.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "[wheel] building the wheel"
"${AVSTUDIO_VENV:-.venv}/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps -w "$tmp/dist" .
echo "[wheel] installing $(basename "$tmp"/dist/*.whl) into a fresh venv"
"${PYTHON:-python3}" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$tmp"/dist/*.whl
mkdir "$tmp/elsewhere"
cd "$tmp/elsewhere"
echo "[wheel] avstudio analyze (the demo clip, the default model) from $(pwd)"
"$tmp/venv/bin/avstudio" analyze "$ROOT/resources/demo.mp4" --out out --quiet > summary.txt
shapes=$("$tmp/venv/bin/python" -c "from avstudio.assets import shipped; print(shipped('models') / 'shapes')")
echo "[wheel] avstudio analyze with the shipped shapes model (it has a separator: stems) $shapes"
"$tmp/venv/bin/avstudio" analyze "$ROOT/resources/demo.mp4" --model "$shapes" --out out_shapes --quiet > summary2.txt
"$tmp/venv/bin/python" - <<'PY'
import json, pathlib, numpy as np
import avstudio
from avstudio.assets import default_model_dir, demo_clip
pkg = pathlib.Path(avstudio.__file__).parent
assert "site-packages" in str(pkg), pkg
assert default_model_dir().is_relative_to(pkg) and demo_clip().is_relative_to(pkg), (default_model_dir(), demo_clip())
s = json.loads(pathlib.Path("out/summary.json").read_text())
h = np.load("out/heatmaps.npz")["heatmaps"]
assert s["k"] >= 1 and h.shape[0] == s["frames"] > 0, (s, h.shape)
stems = sorted(p.name for p in pathlib.Path("out_shapes/stems").iterdir())
assert stems, stems
print(f"[wheel] ok: {s['frames']} frames, k={s['k']}; shapes model stems {stems}")
PY
echo "[wheel] the app, offscreen, on the demo clip shipped in the wheel"
QT_QPA_PLATFORM=offscreen AVSTUDIO_NO_AUDIO=1 AVSTUDIO_SETTINGS="$tmp/settings.ini" \
  AVSTUDIO_CACHE="$tmp/cache" "$tmp/venv/bin/python" -c "import sys; from avstudio.gui.app import main; sys.exit(main())" \
  --no-audio --benchmark-startup | tee app.txt
grep -q "startup to first frame" app.txt
echo "[wheel] done"
