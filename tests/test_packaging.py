"""The wheel a user installs carries the shipped model and the app's resources (there is no
checkout beside it): built here, unpacked into a folder of its own and run from another folder.
CI also installs it into a fresh virtual environment and analyses the demo clip
(scripts/wheel_check.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import make_video

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_model_and_resources_and_works_from_elsewhere(tmp_path):
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                        "--no-build-isolation", "-w", str(dist), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (wheel,) = dist.glob("avstudio-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [p.relative_to(ROOT).as_posix() for d in ("models", "resources") for p in (ROOT / d).rglob("*")
               if p.is_file()]
    assert shipped and not [p for p in shipped if f"avstudio/{p}" not in names]
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "docs/"))]

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what installing a wheel does, minus the scripts
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clip = make_video(elsewhere / "clip.mp4", 12, size=(64, 48), audio_kind="noise")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AVSTUDIO_MODEL")}
    env["PYTHONPATH"] = str(site)
    check = (
        "import json, sys, avstudio\n"
        "from avstudio.assets import default_model_dir, demo_clip, resource\n"
        "from avstudio.nets.checkpoint import load_model\n"
        "b = load_model(None)\n"
        "print(json.dumps({'package': avstudio.__file__, 'model': sorted(b.paths.values()),\n"
        "                  'demo': str(demo_clip()), 'icon': resource('icons', 'play.svg').is_file(),\n"
        "                  'qss': resource('style.qss').is_file(), 'demo_ok': demo_clip().is_file()}))\n"
        "from avstudio.cli import main\n"
        f"rc = main(['analyze', {clip.name!r}, '--out', 'out', '--quiet'])\n"
        "from avstudio.assets import shipped\n"  # the shapes model (it has a separator), also inside
        f"sys.exit(rc or main(['analyze', {clip.name!r}, '--model', str(shipped('models') / 'shapes'), "
        "'--out', 'out_shapes', '--quiet']))\n")
    r = subprocess.run([sys.executable, "-c", check], cwd=elsewhere, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[0])
    assert Path(got["package"]).parent == site / "avstudio"
    assert got["model"] and all(Path(p).is_relative_to(site / "avstudio" / "models" / "default") for p in got["model"])
    assert Path(got["demo"]).is_relative_to(site) and got["demo_ok"] and got["icon"] and got["qss"]
    summary = json.loads((elsewhere / "out" / "summary.json").read_text())
    assert summary["frames"] == 12 and (elsewhere / "out" / "heatmaps.npz").is_file()
    # the default (photo) model has no separator: no stems; the shipped shapes model writes them
    assert not (elsewhere / "out" / "stems").exists() or not list((elsewhere / "out" / "stems").iterdir())
    shapes = json.loads((elsewhere / "out_shapes" / "summary.json").read_text())
    assert shapes["frames"] == 12 and sorted(p.name for p in (elsewhere / "out_shapes" / "stems").iterdir())
